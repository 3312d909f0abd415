// Sentencepiece models (tokenizer.model) through the system sentencepiece library.
//
// Token bytes: "▁" stands for a space; byte-fallback pieces <0xAB> are the raw byte; control
// pieces (<s>, </s>) are their own text, like special tokens of byte-level BPE (sentencepiece's
// decoder would hide them); the unknown piece is sentencepiece's " ⁇ ".
//
// Leading space: when encoding, sentencepiece adds a dummy "▁" in front of the text; its
// decoder drops one leading "▁" from the first piece again. token_bytes_at_start does the
// same, so decode() and StreamDecoder both give "Hello" for ["▁Hello"] and " Hello" for
// ["▁", "▁Hello"] (the first piece's space is the dropped one).
//
// Special tokens: user-defined symbols are matched by sentencepiece itself, so with
// parse_special the ids equal sentencepiece's own encoding. Without parse_special a second
// processor in which those pieces are UNUSED encodes them as ordinary text. Control pieces
// (never matched by sentencepiece) and tokens added by tokenizer_config.json are split out
// first; text after such a token is encoded without the dummy prefix, as text after a
// user-defined symbol is.
#pragma once
#include <sentencepiece_processor.h>

#include <cstdint>
#include <string>
#include <unordered_map>
#include <vector>

#include "tokenizer/added_tokens.h"
#include "tokenizer/tokenizer.h"
#include "tokenizer/tokenizer_internal.h"

namespace mmx {

class SentencePieceTokenizer final : public Tokenizer {
 public:
  // `model` is the content of tokenizer.model; `where` names it for errors.
  SentencePieceTokenizer(const std::string& model, const std::string& where,
                         const TokenizerConfig& config);

  std::string kind() const override { return "sentencepiece"; }
  int32_t vocab_size() const override { return int32_t(bytes_.size()); }
  std::vector<int32_t> encode(std::string_view text, bool parse_special) const override;
  std::string token_bytes(int32_t id) const override;
  std::string token_bytes_at_start(int32_t id) const override;
  std::string decode(const std::vector<int32_t>& ids) const override;
  // Pieces as the model writes them ("▁the", "<0x0A>"), or added token contents.
  int32_t token_id(std::string_view piece) const override;
  bool is_special(int32_t id) const override;

 private:
  void add_config_tokens(const TokenizerConfig& config, const std::string& where);

  // [with special tokens?][at the start of the text?]
  sentencepiece::SentencePieceProcessor processors_[2][2];
  std::vector<std::string> bytes_;                // per id
  std::vector<uint8_t> special_;                  // per id
  std::vector<uint8_t> drops_space_at_start_;     // per id
  std::unordered_map<std::string, int32_t> ids_;  // piece or added content -> id
  AddedTokenMatcher matcher_;  // control pieces and tokens added by tokenizer_config.json
};

}  // namespace mmx
