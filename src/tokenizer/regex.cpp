#define PCRE2_CODE_UNIT_WIDTH 8
#include "tokenizer/regex.h"

#include <pcre2.h>

#include "core/error.h"

namespace mmx {

struct Regex::Impl {
  pcre2_code* code = nullptr;
  std::string where;  // names the pattern's source in error messages
};

namespace {

std::string pcre2_message(int rc) {
  PCRE2_UCHAR buf[256];
  if (pcre2_get_error_message(rc, buf, sizeof buf) < 0) return "PCRE2 error " + std::to_string(rc);
  return reinterpret_cast<const char*>(buf);
}

// Match data sized for the pattern; freed when the call ends.
struct MatchData {
  explicit MatchData(const pcre2_code* code)
      : md(pcre2_match_data_create_from_pattern(code, nullptr)) {
    MMX_CHECK(md != nullptr, Code::OutOfMemory, "PCRE2: cannot allocate match data");
  }
  ~MatchData() { pcre2_match_data_free(md); }
  pcre2_match_data* md;
};

// One match attempt at `offset`; returns false when there is no further match. The JIT stack
// can overflow on pathological input; the interpreter is tried before giving up.
bool match_once(const pcre2_code* code, const std::string& where, std::string_view s, size_t offset,
                uint32_t options, pcre2_match_data* md) {
  auto subject = reinterpret_cast<PCRE2_SPTR>(s.data());
  int rc = pcre2_match(code, subject, s.size(), offset, options | PCRE2_NO_UTF_CHECK, md, nullptr);
  if (rc == PCRE2_ERROR_JIT_STACKLIMIT)
    rc = pcre2_match(code, subject, s.size(), offset, options | PCRE2_NO_UTF_CHECK | PCRE2_NO_JIT,
                     md, nullptr);
  if (rc == PCRE2_ERROR_NOMATCH) return false;
  MMX_CHECK(rc >= 0, Code::InvalidArgument,
            "text could not be pre-tokenized with the " + where + " pattern: " + pcre2_message(rc));
  return true;
}

}  // namespace

Regex::Regex(const std::string& pattern, const std::string& where) : impl_(new Impl) {
  impl_->where = where;
  int err = 0;
  PCRE2_SIZE err_offset = 0;
  impl_->code = pcre2_compile(reinterpret_cast<PCRE2_SPTR>(pattern.data()), pattern.size(),
                              PCRE2_UTF | PCRE2_UCP, &err, &err_offset, nullptr);
  MMX_CHECK(impl_->code != nullptr, Code::Format,
            where + ": the regex does not compile at offset " + std::to_string(err_offset) + ": " +
                pcre2_message(err));
  // JIT is an optimisation only: where it is unavailable (CPU, build) matching still works.
  (void)pcre2_jit_compile(impl_->code, PCRE2_JIT_COMPLETE);
}

Regex::~Regex() {
  if (impl_ && impl_->code) pcre2_code_free(impl_->code);
}

void Regex::for_each_match(std::string_view s,
                           const std::function<void(size_t, size_t)>& on_match) const {
  MatchData data(impl_->code);
  size_t offset = 0;
  while (offset < s.size() && match_once(impl_->code, impl_->where, s, offset, 0, data.md)) {
    const PCRE2_SIZE* ov = pcre2_get_ovector_pointer(data.md);
    size_t begin = ov[0], end = ov[1];
    if (end > begin) {
      on_match(begin, end);
      offset = end;
    } else {
      // Empty match: skip one whole character so the next attempt makes progress.
      offset = begin + 1;
      while (offset < s.size() && (static_cast<unsigned char>(s[offset]) & 0xC0) == 0x80) ++offset;
    }
  }
}

bool Regex::matches_prefix(std::string_view s) const {
  MatchData data(impl_->code);
  return match_once(impl_->code, impl_->where, s, 0, PCRE2_ANCHORED, data.md);
}

std::string Regex::quote(std::string_view literal) {
  std::string out;
  for (char c : literal) {
    if (std::string_view("\\^$.|?*+()[]{}-/#").find(c) != std::string_view::npos)
      out.push_back('\\');
    out.push_back(c);
  }
  return out;
}

}  // namespace mmx
