#include "tokenizer/bpe_tokenizer.h"

#include <algorithm>
#include <cstdio>
#include <queue>

#include "core/error.h"
#include "tokenizer/byte_level.h"
#include "tokenizer/tokenizer_internal.h"
#include "tokenizer/utf8.h"

namespace mmx {
namespace {

constexpr size_t kMaxCachedPieceBytes = 256;
constexpr size_t kMaxCacheEntries = 1 << 16;

uint64_t pair_key(int32_t left, int32_t right) {
  return (uint64_t(uint32_t(left)) << 32) | uint32_t(right);
}

// The output bytes of a vocabulary token the way Hugging Face's ByteLevel decoder produces
// them: the byte-alphabet reading when every character belongs to the alphabet, the text as is
// otherwise. Added tokens outside the vocabulary are always their text as is, so that
// decode(encode(text)) == text; Hugging Face would read "café" as bytes (and print "caf\uFFFD").
std::string output_bytes(const std::string& spelling) {
  std::string raw;
  return byte_level::decode(spelling, raw) ? raw : spelling;
}

std::string quoted(const std::string& s) { return "\"" + s + "\""; }

}  // namespace

BpeTokenizer::BpeTokenizer(BpeSpec spec)
    : source_(std::move(spec.source)),
      ignore_merges_(spec.ignore_merges),
      pre_tokenizer_(std::move(spec.pre_tokenizer)) {
  index_tokens(spec);
  index_merges(spec);
  index_byte_symbols(spec);
}

// Every id must name exactly one token, and ids must run 0..n-1 without gaps.
void BpeTokenizer::index_tokens(const BpeSpec& spec) {
  struct Entry {
    int64_t id;
    const std::string* text;
    bool added;
  };
  std::vector<Entry> entries;
  entries.reserve(spec.vocab.size() + spec.added.size());
  for (const auto& [spelling, id] : spec.vocab) {
    MMX_CHECK(id >= 0 && id < INT32_MAX, Code::Format,
              source_ + ": token " + quoted(spelling) + " has invalid id " + std::to_string(id));
    MMX_CHECK(vocab_.emplace(spelling, int32_t(id)).second, Code::Format,
              source_ + ": token " + quoted(spelling) + " appears twice in the vocabulary");
    entries.push_back({id, &spelling, false});
  }
  for (const AddedToken& t : spec.added) {
    MMX_CHECK(
        t.id >= 0, Code::Format,
        source_ + ": added token " + quoted(t.content) + " has invalid id " + std::to_string(t.id));
    MMX_CHECK(!t.content.empty(), Code::Format,
              source_ + ": added token with id " + std::to_string(t.id) + " has empty content");
    auto in_vocab = vocab_.find(t.content);
    if (in_vocab == vocab_.end())
      entries.push_back({t.id, &t.content, true});
    else
      MMX_CHECK(in_vocab->second == t.id, Code::Format,
                source_ + ": added token " + quoted(t.content) + " has id " + std::to_string(t.id) +
                    " but the vocabulary gives it id " + std::to_string(in_vocab->second));
    auto [it, fresh] = added_.emplace(t.content, t.id);
    MMX_CHECK(fresh || it->second == t.id, Code::Format,
              source_ + ": added token " + quoted(t.content) + " is listed with ids " +
                  std::to_string(it->second) + " and " + std::to_string(t.id));
  }
  MMX_CHECK(!entries.empty(), Code::Format, source_ + ": the vocabulary is empty");
  std::sort(entries.begin(), entries.end(),
            [](const Entry& a, const Entry& b) { return a.id < b.id; });
  for (size_t i = 0; i < entries.size(); ++i) {
    const Entry& e = entries[i];
    if (i > 0 && entries[i - 1].id == e.id) {
      // The same token listed twice (two added-token entries) is fine; two tokens are not.
      MMX_CHECK(*entries[i - 1].text == *e.text, Code::Format,
                source_ + ": id " + std::to_string(e.id) + " is used by both " +
                    quoted(*entries[i - 1].text) + " and " + quoted(*e.text));
      continue;
    }
    MMX_CHECK(e.id == int64_t(spelling_.size()), Code::Format,
              source_ + ": no token has id " + std::to_string(spelling_.size()) +
                  " (ids must run from 0 without gaps; the next id is " + std::to_string(e.id) +
                  ")");
    spelling_.push_back(*e.text);
    bytes_.push_back(e.added ? *e.text : output_bytes(*e.text));
  }
  special_.assign(spelling_.size(), 0);
  for (const AddedToken& t : spec.added) {
    special_[size_t(t.id)] = t.special;
    matcher_.add(t);
  }
}

void BpeTokenizer::index_merges(const BpeSpec& spec) {
  merges_.reserve(spec.merges.size());
  for (size_t rank = 0; rank < spec.merges.size(); ++rank) {
    const auto& [left, right] = spec.merges[rank];
    const std::string where = source_ + ": merge " + std::to_string(rank + 1) + " (" +
                              quoted(left) + " " + quoted(right) + ")";
    auto l = vocab_.find(left), r = vocab_.find(right), m = vocab_.find(left + right);
    MMX_CHECK(l != vocab_.end(), Code::Format, where + " names unknown token " + quoted(left));
    MMX_CHECK(r != vocab_.end(), Code::Format, where + " names unknown token " + quoted(right));
    MMX_CHECK(m != vocab_.end(), Code::Format,
              where + ": the merged token " + quoted(left + right) + " is not in the vocabulary");
    // A repeated merge takes its last rank, as in Hugging Face tokenizers.
    merges_[pair_key(l->second, r->second)] = Merge{int32_t(rank), m->second};
  }
}

void BpeTokenizer::index_byte_symbols(const BpeSpec& spec) {
  for (int b = 0; b < 256; ++b) {
    auto it = vocab_.find(byte_level::char_of_byte(uint8_t(b)));
    byte_symbol_[b] = it == vocab_.end() ? -1 : it->second;
    char name[8];
    std::snprintf(name, sizeof name, "<0x%02X>", b);
    auto fb = vocab_.find(name);
    byte_fallback_[b] = spec.byte_fallback && fb != vocab_.end() ? fb->second : -1;
  }
  if (!spec.unk_token.empty()) {
    unk_id_ = token_id(spec.unk_token);
    MMX_CHECK(unk_id_ >= 0, Code::Format,
              source_ + ": unk_token " + quoted(spec.unk_token) + " is not in the vocabulary");
  }
}

int32_t BpeTokenizer::byte_symbol(unsigned char b) const {
  if (byte_symbol_[b] >= 0) return byte_symbol_[b];
  if (byte_fallback_[b] >= 0) return byte_fallback_[b];
  if (unk_id_ >= 0) return unk_id_;
  char hex[8];
  std::snprintf(hex, sizeof hex, "0x%02X", b);
  fail(Code::InvalidArgument, "text contains byte " + std::string(hex) + " which the " + source_ +
                                  " vocabulary cannot represent (no byte symbol, no unk_token)");
}

// Lowest rank first, leftmost first among equal ranks (the order Hugging Face merges in).
void BpeTokenizer::merge_symbols(std::vector<int32_t>& ids) const {
  const int n = int(ids.size());
  if (n < 2) return;
  std::vector<int> prev(n), next(n);
  std::vector<uint8_t> alive(n, 1);
  for (int i = 0; i < n; ++i) prev[i] = i - 1, next[i] = i + 1 < n ? i + 1 : -1;
  struct Candidate {
    int32_t rank, pos, result;
    bool operator>(const Candidate& o) const {
      return rank != o.rank ? rank > o.rank : pos > o.pos;
    }
  };
  std::priority_queue<Candidate, std::vector<Candidate>, std::greater<Candidate>> queue;
  auto consider = [&](int pos) {
    if (pos < 0 || next[pos] < 0) return;
    auto it = merges_.find(pair_key(ids[pos], ids[next[pos]]));
    if (it != merges_.end()) queue.push({it->second.rank, pos, it->second.result});
  };
  for (int i = 0; i + 1 < n; ++i) consider(i);
  while (!queue.empty()) {
    const Candidate c = queue.top();
    queue.pop();
    const int right = alive[c.pos] ? next[c.pos] : -1;
    if (right < 0) continue;
    auto it = merges_.find(pair_key(ids[c.pos], ids[right]));
    if (it == merges_.end() || it->second.result != c.result) continue;  // stale candidate
    ids[c.pos] = c.result;
    alive[right] = 0;
    next[c.pos] = next[right];
    if (next[right] >= 0) prev[next[right]] = c.pos;
    consider(prev[c.pos]);
    consider(c.pos);
  }
  int out = 0;
  for (int i = 0; i >= 0; i = next[i]) ids[out++] = ids[i];
  ids.resize(out);
}

void BpeTokenizer::encode_piece(const std::string& piece, std::vector<int32_t>& out) const {
  if (ignore_merges_) {
    auto whole = vocab_.find(byte_level::encode(piece));
    if (whole != vocab_.end()) {
      out.push_back(whole->second);
      return;
    }
  }
  const bool cacheable = piece.size() <= kMaxCachedPieceBytes;
  if (cacheable) {
    std::lock_guard<std::mutex> lock(cache_mutex_);
    auto it = cache_.find(piece);
    if (it != cache_.end()) {
      out.insert(out.end(), it->second.begin(), it->second.end());
      return;
    }
  }
  std::vector<int32_t> ids;
  ids.reserve(piece.size());
  for (char c : piece) ids.push_back(byte_symbol(static_cast<unsigned char>(c)));
  merge_symbols(ids);
  out.insert(out.end(), ids.begin(), ids.end());
  if (cacheable) {
    std::lock_guard<std::mutex> lock(cache_mutex_);
    if (cache_.size() >= kMaxCacheEntries) cache_.clear();
    cache_.emplace(piece, std::move(ids));
  }
}

std::vector<int32_t> BpeTokenizer::encode(std::string_view text, bool parse_special) const {
  check_utf8_input(text);
  std::vector<int32_t> out;
  for (const auto& segment : matcher_.split(text, parse_special)) {
    if (segment.id >= 0) {
      out.push_back(segment.id);
      continue;
    }
    for (const std::string& piece : pre_tokenizer_.split(segment.text)) encode_piece(piece, out);
  }
  return out;
}

std::string BpeTokenizer::token_bytes(int32_t id) const {
  check_token_id(id, vocab_size());
  return bytes_[size_t(id)];
}

std::string BpeTokenizer::decode(const std::vector<int32_t>& ids) const {
  std::string raw;
  for (int32_t id : ids) {
    check_token_id(id, vocab_size());
    raw += bytes_[size_t(id)];
  }
  return utf8::sanitized(raw);
}

int32_t BpeTokenizer::token_id(std::string_view piece) const {
  const std::string key(piece);
  auto a = added_.find(key);
  if (a != added_.end()) return a->second;
  auto v = vocab_.find(key);
  return v == vocab_.end() ? -1 : v->second;
}

bool BpeTokenizer::is_special(int32_t id) const {
  return id >= 0 && id < vocab_size() && special_[size_t(id)];
}

}  // namespace mmx
