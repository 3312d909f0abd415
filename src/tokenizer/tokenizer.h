// Tokenizers: sentencepiece (tokenizer.model) and GPT-2 byte-level BPE (tokenizer.json, or
// vocab.json + merges.txt), behind one interface; plus the streaming detokeniser and the
// MiniMax chat formats (model-spec §9).
#pragma once
#include <cstdint>
#include <memory>
#include <string>
#include <string_view>
#include <vector>

namespace mmx {

class Tokenizer {
 public:
  virtual ~Tokenizer() = default;

  // Loads the tokenizer found in a model directory, preferring tokenizer.json, then
  // vocab.json + merges.txt, then tokenizer.model; special tokens and bos/eos come from
  // tokenizer_config.json when present. Returns nullptr when the directory has no tokenizer
  // files; throws mmx::Error (Code::Format, naming file and problem) for malformed ones.
  static std::unique_ptr<Tokenizer> load_dir(const std::string& dir);

  virtual std::string kind() const = 0;  // "sentencepiece" or "bpe"
  virtual int32_t vocab_size() const = 0;

  // Text -> ids. With parse_special, added/special tokens written in the text (e.g.
  // "<end_of_sentence>") become their ids; without it they are encoded as plain text.
  // Throws Code::InvalidArgument for invalid UTF-8. No BOS is added here.
  virtual std::vector<int32_t> encode(std::string_view text, bool parse_special) const = 0;

  // The exact bytes token `id` stands for in the output text (special tokens: their text).
  // May be an incomplete UTF-8 sequence (byte-level BPE, sentencepiece byte fallback).
  // Throws Code::InvalidArgument for an id out of range.
  virtual std::string token_bytes(int32_t id) const = 0;

  // The bytes token `id` contributes when it is the first token of an output. Sentencepiece
  // models that add a dummy "▁" prefix while encoding drop it again here (as sentencepiece's
  // own decoder does): a first piece "▁Hello" yields "Hello". Everything else: token_bytes.
  virtual std::string token_bytes_at_start(int32_t id) const { return token_bytes(id); }

  // ids -> text: token_bytes_at_start(ids[0]) followed by token_bytes of the rest, with
  // ill-formed UTF-8 replaced by U+FFFD (one per maximal ill-formed subsequence, as Python's
  // errors="replace" does). Throws Code::InvalidArgument for an id out of range.
  virtual std::string decode(const std::vector<int32_t>& ids) const = 0;

  // Id of a token given its exact text (special or ordinary piece); -1 if none.
  virtual int32_t token_id(std::string_view piece) const = 0;
  virtual bool is_special(int32_t id) const = 0;

  int32_t bos_id() const { return bos_id_; }  // -1 when the tokenizer has none
  int32_t eos_id() const { return eos_id_; }

 protected:
  int32_t bos_id_ = -1, eos_id_ = -1;
};

// Turns a stream of token ids into text deltas that only ever contain whole UTF-8
// characters: bytes of an incomplete character are held back until it completes.
class StreamDecoder {
 public:
  explicit StreamDecoder(const Tokenizer& tok) : tok_(tok) {}
  // Adds one token; returns the newly completed text (possibly empty). Bytes that can no
  // longer become a valid character are returned as U+FFFD right away. The concatenation of
  // all deltas and flush() equals tok.decode(ids). Throws Code::InvalidArgument for a bad id
  // (the decoder is then unchanged).
  std::string push(int32_t id);
  // End of stream: returns what is held back, an incomplete character as U+FFFD. The decoder
  // then starts a new stream.
  std::string flush();

 private:
  const Tokenizer& tok_;
  std::string pending_;
  bool first_ = true;
};

// Chat formats of the family (model-spec §9).
enum class ChatStyle { Text01, M1 };

struct ChatFormat {
  ChatStyle style = ChatStyle::Text01;
  // Picks the style from tokenizer_config.json's chat_template (M1 starts with
  // <begin_of_document>) or, absent, from the model_type.
  static ChatFormat for_model(const std::string& model_dir, const std::string& model_type);
  // messages_json: [{"role":"system"|"user"|"assistant","content": "text" or
  // [{"type":"text","text":"..."}]}, ...]. Throws Code::InvalidArgument / Code::Format with a
  // clear message for malformed JSON, unknown roles or non-text content.
  //
  // M1 follows the chat_template of the M1 release: <begin_of_document> first, all system
  // texts joined into one system turn, then the turns in order. It also takes the role "tool"
  // (content: [{"name": "...", "text": "..."}, ...]). Where a message has several text parts
  // they are joined (the release template reads only the first part of system and user
  // messages). Text-01 writes every message, system included, as its own turn in order.
  std::string apply(const std::string& messages_json, bool add_generation_prompt) const;
  // The same with tool definitions (a JSON array, each written into M1's tools block as
  // transformers' tojson would: key order kept, ", " and ": " separators). An empty
  // tools_json means no tools. Text-01 has no tools block: tools there are InvalidArgument.
  std::string apply(const std::string& messages_json, bool add_generation_prompt,
                    const std::string& tools_json) const;
};

}  // namespace mmx
