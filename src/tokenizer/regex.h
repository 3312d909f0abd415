// A compiled PCRE2 pattern in UTF + UCP mode (so \s, \p{L}, \w follow Unicode), JIT-compiled
// when the library supports it. Used by the byte-level BPE pre-tokenizers.
#pragma once
#include <cstddef>
#include <functional>
#include <memory>
#include <string>
#include <string_view>

namespace mmx {

class Regex {
 public:
  // `where` names the source of the pattern for error messages (e.g. "tokenizer.json
  // pre_tokenizer"). Throws Code::Format when the pattern does not compile.
  Regex(const std::string& pattern, const std::string& where);
  ~Regex();
  Regex(const Regex&) = delete;
  Regex& operator=(const Regex&) = delete;

  // Calls on_match(begin, end) for every non-empty, non-overlapping match in `subject`
  // (valid UTF-8), left to right. Safe to call from several threads at once.
  void for_each_match(std::string_view subject,
                      const std::function<void(size_t, size_t)>& on_match) const;

  // True when the pattern matches a prefix of `subject` (anchored at its start).
  bool matches_prefix(std::string_view subject) const;

  // Escapes `literal` so that it matches itself.
  static std::string quote(std::string_view literal);

 private:
  struct Impl;
  std::unique_ptr<Impl> impl_;
};

}  // namespace mmx
