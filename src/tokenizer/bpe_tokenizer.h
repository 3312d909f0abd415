// GPT-2 style byte-level BPE (the tokenizer of the real MiniMax releases): added tokens are
// split out first, the rest is pre-tokenized, each piece is spelled in the byte alphabet and
// merged pair by pair in rank order.
#pragma once
#include <cstdint>
#include <mutex>
#include <string>
#include <unordered_map>
#include <utility>
#include <vector>

#include "tokenizer/added_tokens.h"
#include "tokenizer/pretokenizer.h"
#include "tokenizer/tokenizer.h"

namespace mmx {

// Everything a byte-level BPE file layout describes, before validation.
struct BpeSpec {
  std::string source;                                       // file name(s) for error messages
  std::vector<std::pair<std::string, int64_t>> vocab;       // byte-alphabet spelling -> id
  std::vector<std::pair<std::string, std::string>> merges;  // in rank order
  std::vector<AddedToken> added;
  PreTokenizer pre_tokenizer = PreTokenizer::byte_level(false);
  bool ignore_merges = false;  // a piece found whole in the vocab is not merged
  bool byte_fallback = false;  // a byte missing from the alphabet becomes <0xAB>
  std::string unk_token;       // used for a byte missing from the alphabet; may be empty
};

class BpeTokenizer final : public Tokenizer {
 public:
  // Validates and builds; throws Code::Format naming spec.source and the problem (duplicate
  // ids, ids that leave gaps, merges naming unknown tokens, ...).
  explicit BpeTokenizer(BpeSpec spec);

  std::string kind() const override { return "bpe"; }
  int32_t vocab_size() const override { return int32_t(bytes_.size()); }
  std::vector<int32_t> encode(std::string_view text, bool parse_special) const override;
  std::string token_bytes(int32_t id) const override;
  std::string decode(const std::vector<int32_t>& ids) const override;
  // Added tokens by their content, other tokens by their spelling in the byte alphabet as
  // vocab.json / tokenizer.json write it (e.g. "Ġthe").
  int32_t token_id(std::string_view piece) const override;
  bool is_special(int32_t id) const override;

 private:
  struct Merge {
    int32_t rank, result;
  };
  void index_tokens(const BpeSpec& spec);
  void index_merges(const BpeSpec& spec);
  void index_byte_symbols(const BpeSpec& spec);
  void encode_piece(const std::string& piece, std::vector<int32_t>& out) const;
  void merge_symbols(std::vector<int32_t>& symbols) const;
  int32_t byte_symbol(unsigned char b) const;

  std::string source_;
  std::vector<std::string> spelling_;  // per id: vocab spelling, or content for added tokens
  std::vector<std::string> bytes_;     // per id: the output bytes
  std::vector<uint8_t> special_;
  std::unordered_map<std::string, int32_t> vocab_;  // spelling -> id (model vocabulary)
  std::unordered_map<std::string, int32_t> added_;  // content -> id (added tokens)
  std::unordered_map<uint64_t, Merge> merges_;      // (left id << 32 | right id) -> merge
  int32_t byte_symbol_[256];  // id of each byte's one-character token, -1 when absent
  int32_t byte_fallback_[256];
  int32_t unk_id_ = -1;
  bool ignore_merges_ = false;
  PreTokenizer pre_tokenizer_;
  AddedTokenMatcher matcher_;

  // Pieces repeat a lot in natural text; remember recent results (bounded).
  mutable std::mutex cache_mutex_;
  mutable std::unordered_map<std::string, std::vector<int32_t>> cache_;
};

}  // namespace mmx
