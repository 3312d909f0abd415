// Pre-tokenization of byte-level BPE: the text is cut into pieces (words, number runs,
// whitespace runs...) and BPE merges never cross a piece boundary. Supports the Hugging Face
// pre-tokenizers real byte-level tokenizers use: ByteLevel, Split (regex or literal, every
// delimiter behaviour, invert), Digits, and Sequence of them.
#pragma once
#include <memory>
#include <nlohmann/json_fwd.hpp>
#include <string>
#include <string_view>
#include <vector>

namespace mmx {

class Regex;

// The GPT-2 pattern ByteLevel uses when its use_regex is on (the default).
extern const char* const kGpt2Pattern;

class PreTokenizer {
 public:
  // What vocab.json + merges.txt imply: ByteLevel with the GPT-2 pattern.
  static PreTokenizer byte_level(bool add_prefix_space);
  // From tokenizer.json's "pre_tokenizer" value; `where` names the file for errors. Throws
  // Code::Format for malformed entries and Code::Unsupported for kinds this library lacks or
  // when no ByteLevel step is present (only byte-level BPE is supported).
  static PreTokenizer from_json(const nlohmann::json& j, const std::string& where);

  std::vector<std::string> split(std::string_view text) const;

 private:
  enum class Behavior { Isolated, Removed, MergedWithPrevious, MergedWithNext, Contiguous };
  struct Step {
    bool prefix_space = false;  // ByteLevel(add_prefix_space): prepend " " unless present
    std::shared_ptr<const Regex> regex;
    Behavior behavior = Behavior::Isolated;
    bool invert = false;
  };
  void add_json_step(const nlohmann::json& j, const std::string& where, bool& saw_byte_level);
  void add_byte_level(bool add_prefix_space, bool use_regex);
  static void apply(const Step& step, const std::string& piece, std::vector<std::string>& out);

  std::vector<Step> steps_;
};

}  // namespace mmx
