#include "tokenizer/added_tokens.h"

#include <algorithm>

#include "tokenizer/regex.h"
#include "tokenizer/utf8.h"

namespace mmx {
namespace {

// Unicode White_Space (what Rust's char::is_whitespace and so Hugging Face use).
bool is_space(uint32_t cp) {
  return (cp >= 0x09 && cp <= 0x0D) || cp == 0x20 || cp == 0x85 || cp == 0xA0 || cp == 0x1680 ||
         (cp >= 0x2000 && cp <= 0x200A) || cp == 0x2028 || cp == 0x2029 || cp == 0x202F ||
         cp == 0x205F || cp == 0x3000;
}

// Start of the UTF-8 character that ends just before `pos`.
size_t previous_char_start(std::string_view text, size_t pos) {
  size_t p = pos - 1;
  while (p > 0 && (static_cast<unsigned char>(text[p]) & 0xC0) == 0x80) --p;
  return p;
}

}  // namespace

AddedTokenMatcher::AddedTokenMatcher() : by_first_byte_(256) {}

void AddedTokenMatcher::add(const AddedToken& token) {
  if (token.content.empty()) return;
  tokens_.push_back(token);
  auto& bucket = by_first_byte_[static_cast<unsigned char>(token.content[0])];
  bucket.push_back(uint32_t(tokens_.size() - 1));
  std::stable_sort(bucket.begin(), bucket.end(), [&](uint32_t a, uint32_t b) {
    return tokens_[a].content.size() > tokens_[b].content.size();
  });
  if (token.single_word && !word_char_)
    word_char_ = std::make_shared<Regex>("[\\p{L}\\p{N}]", "word-character test");
}

bool AddedTokenMatcher::is_word_char_at(std::string_view text, size_t pos) const {
  return pos < text.size() && word_char_->matches_prefix(text.substr(pos));
}

bool AddedTokenMatcher::is_word_char_before(std::string_view text, size_t pos) const {
  return pos > 0 && is_word_char_at(text, previous_char_start(text, pos));
}

void AddedTokenMatcher::find_in(std::string_view text, bool normalized_pass, bool include_special,
                                std::vector<Segment>& out) const {
  size_t plain_begin = 0, pos = 0;
  while (pos < text.size()) {
    const AddedToken* hit = nullptr;
    for (uint32_t index : by_first_byte_[static_cast<unsigned char>(text[pos])]) {
      const AddedToken& t = tokens_[index];
      if (t.normalized != normalized_pass || (t.special && !include_special)) continue;
      if (text.compare(pos, t.content.size(), t.content) != 0) continue;
      if (t.single_word &&
          (is_word_char_before(text, pos) || is_word_char_at(text, pos + t.content.size())))
        continue;
      hit = &t;
      break;
    }
    if (!hit) {
      ++pos;
      continue;
    }
    size_t begin = pos, end = pos + hit->content.size();
    if (hit->lstrip) {
      while (begin > plain_begin) {
        size_t p = previous_char_start(text, begin), q = p;
        if (!is_space(utf8::next(text, q))) break;
        begin = p;
      }
    }
    if (hit->rstrip) {
      while (end < text.size()) {
        size_t q = end;
        if (!is_space(utf8::next(text, q))) break;
        end = q;
      }
    }
    if (begin > plain_begin) out.push_back({text.substr(plain_begin, begin - plain_begin), -1});
    out.push_back({text.substr(begin, end - begin), hit->id});
    plain_begin = pos = end;
  }
  if (plain_begin < text.size()) out.push_back({text.substr(plain_begin), -1});
}

std::vector<AddedTokenMatcher::Segment> AddedTokenMatcher::split(std::string_view text,
                                                                 bool include_special) const {
  std::vector<Segment> first, result;
  find_in(text, false, include_special, first);
  for (const Segment& s : first) {
    if (s.id >= 0)
      result.push_back(s);
    else
      find_in(s.text, true, include_special, result);
  }
  return result;
}

}  // namespace mmx
