// Declarations shared by the tokenizer implementation files (not part of the engine's API).
#pragma once
#include <cstdint>
#include <memory>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "tokenizer/added_tokens.h"

namespace mmx {

class Tokenizer;
struct BpeSpec;

// Throws Code::InvalidArgument naming the offset of the first ill-formed byte.
void check_utf8_input(std::string_view text);
// Throws Code::InvalidArgument when id is outside [0, vocab_size).
void check_token_id(int32_t id, int32_t vocab_size);

// Reads a whole file; Code::NotFound / Code::Io when it cannot, Code::Format when it is
// implausibly large for a tokenizer file.
std::string read_tokenizer_file(const std::string& path);

// What tokenizer_config.json says about tokens and chat formatting.
struct TokenizerConfig {
  std::optional<std::string> bos_token, eos_token;
  std::vector<std::string> special_contents;  // bos, eos, unk, pad, additional_special_tokens
  std::vector<AddedToken> added_tokens;       // added_tokens_decoder, with ids
  bool add_prefix_space = false;
  std::string chat_template;  // "" when none
};
// An absent file gives an empty config; a malformed one throws Code::Format.
TokenizerConfig read_tokenizer_config(const std::string& path);

// The byte-level BPE file layouts.
BpeSpec read_tokenizer_json(const std::string& path);
BpeSpec read_vocab_merges(const std::string& vocab_path, const std::string& merges_path);

std::unique_ptr<Tokenizer> load_sentencepiece(const std::string& path,
                                              const TokenizerConfig& config);

}  // namespace mmx
