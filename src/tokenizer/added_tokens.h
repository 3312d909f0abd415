// Added tokens (special tokens and tokens added after training) and how they are found in
// text before the main tokenizer runs, following Hugging Face tokenizers: leftmost-longest
// match; tokens marked `normalized` are looked for in a second pass inside the text the
// first pass left over.
#pragma once
#include <cstdint>
#include <memory>
#include <string>
#include <string_view>
#include <vector>

namespace mmx {

class Regex;

struct AddedToken {
  std::string content;
  int32_t id = -1;
  bool special = true;       // recognised in text only when the caller asks for special tokens
  bool lstrip = false;       // a match also swallows the whitespace on its left
  bool rstrip = false;       // ... and on its right
  bool single_word = false;  // only matches when not inside a word
  bool normalized = false;   // matched in the second pass
};

class AddedTokenMatcher {
 public:
  AddedTokenMatcher();

  void add(const AddedToken& token);  // an empty content is ignored
  bool empty() const { return tokens_.empty(); }

  // A piece of the input: plain text (id == -1) or a recognised token.
  struct Segment {
    std::string_view text;
    int32_t id;
  };
  // Splits `text` into plain-text pieces and tokens. Non-special tokens are always
  // recognised; special ones only when `include_special`. Empty plain pieces are omitted.
  std::vector<Segment> split(std::string_view text, bool include_special) const;

 private:
  void find_in(std::string_view text, bool normalized_pass, bool include_special,
               std::vector<Segment>& out) const;
  bool is_word_char_before(std::string_view text, size_t pos) const;
  bool is_word_char_at(std::string_view text, size_t pos) const;

  std::vector<AddedToken> tokens_;
  // Token indices by first byte, longest first, so the first hit is the longest match.
  std::vector<std::vector<uint32_t>> by_first_byte_;
  std::shared_ptr<const Regex> word_char_;  // built when a single_word token is added
};

}  // namespace mmx
