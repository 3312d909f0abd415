#include "tokenizer/spm_tokenizer.h"

#include "core/error.h"
#include "tokenizer/spm_model_proto.h"
#include "tokenizer/utf8.h"

namespace mmx {
namespace {

constexpr std::string_view kSpaceSymbol = "\xE2\x96\x81";       // ▁
constexpr std::string_view kUnknownSurface = " \xE2\x81\x87 ";  // sentencepiece's " ⁇ "

std::string spaces_for_symbols(const std::string& piece) {
  std::string out;
  for (size_t pos = 0; pos < piece.size();) {
    if (piece.compare(pos, kSpaceSymbol.size(), kSpaceSymbol) == 0) {
      out.push_back(' ');
      pos += kSpaceSymbol.size();
    } else {
      out.push_back(piece[pos++]);
    }
  }
  return out;
}

// "<0xAB>" -> byte 0xAB.
bool parse_byte_piece(const std::string& piece, char& byte) {
  if (piece.size() != 6 || piece.compare(0, 3, "<0x") != 0 || piece[5] != '>') return false;
  int value = 0;
  for (int i = 3; i < 5; ++i) {
    const char c = piece[size_t(i)];
    const int digit = c >= '0' && c <= '9' ? c - '0' : c >= 'A' && c <= 'F' ? c - 'A' + 10 : -1;
    if (digit < 0) return false;
    value = value * 16 + digit;
  }
  byte = char(value);
  return true;
}

void load(sentencepiece::SentencePieceProcessor& sp, const std::string& model,
          const std::string& where) {
  const auto status = sp.LoadFromSerializedProto(model);
  MMX_CHECK(status.ok(), Code::Format,
            where + ": sentencepiece cannot load the model: " + status.ToString());
}

}  // namespace

SentencePieceTokenizer::SentencePieceTokenizer(const std::string& model, const std::string& where,
                                               const TokenizerConfig& config) {
  const spm_proto::ModelInfo info = spm_proto::parse(model, where);
  const std::string plain = spm_proto::with_user_defined_unused(model);
  load(processors_[1][1], model, where);
  load(processors_[1][0], spm_proto::without_dummy_prefix(model), where);
  load(processors_[0][1], plain, where);
  load(processors_[0][0], spm_proto::without_dummy_prefix(plain), where);
  MMX_CHECK(size_t(processors_[1][1].GetPieceSize()) == info.pieces.size(), Code::Format,
            where + ": piece count disagrees with sentencepiece's reading of the model");

  const bool drops_dummy_prefix = info.add_dummy_prefix || info.remove_extra_whitespaces;
  for (size_t id = 0; id < info.pieces.size(); ++id) {
    const spm_proto::Piece& p = info.pieces[id];
    std::string bytes;
    char byte = 0;
    bool textual = false;  // decoded like ordinary text ("▁" -> " ")
    switch (p.type) {
      case spm_proto::Byte:
        MMX_CHECK(
            parse_byte_piece(p.text, byte), Code::Format,
            where + ": byte piece " + std::to_string(id) + " is \"" + p.text + "\", not <0xAB>");
        bytes.assign(1, byte);
        break;
      case spm_proto::Control:
        bytes = p.text;
        break;
      case spm_proto::Unknown:
        bytes = std::string(kUnknownSurface);
        break;
      default:
        bytes = spaces_for_symbols(p.text);
        textual = true;
    }
    bytes_.push_back(std::move(bytes));
    special_.push_back(p.type == spm_proto::Control || p.type == spm_proto::UserDefined);
    drops_space_at_start_.push_back(textual && drops_dummy_prefix &&
                                    p.text.compare(0, kSpaceSymbol.size(), kSpaceSymbol) == 0);
    ids_.emplace(p.text, int32_t(id));
    if (p.type == spm_proto::Control) {
      AddedToken t;
      t.content = p.text;
      t.id = int32_t(id);
      matcher_.add(t);
    }
  }
  add_config_tokens(config, where);
  bos_id_ = processors_[1][1].bos_id();
  eos_id_ = processors_[1][1].eos_id();
}

// tokenizer_config.json may mark pieces special or add tokens after the model's pieces.
void SentencePieceTokenizer::add_config_tokens(const TokenizerConfig& config,
                                               const std::string& where) {
  for (const AddedToken& t : config.added_tokens) {
    const std::string what = "tokenizer_config.json: added token \"" + t.content + "\" (id " +
                             std::to_string(t.id) + ")";
    if (size_t(t.id) < bytes_.size()) {
      auto it = ids_.find(t.content);
      MMX_CHECK(it != ids_.end() && it->second == t.id, Code::Format,
                what + " does not match piece " + std::to_string(t.id) + " of " + where);
      if (t.special) special_[size_t(t.id)] = 1;
      continue;
    }
    MMX_CHECK(size_t(t.id) == bytes_.size(), Code::Format,
              what + " leaves a gap: the next free id is " + std::to_string(bytes_.size()));
    MMX_CHECK(ids_.emplace(t.content, t.id).second, Code::Format,
              what + " duplicates an existing token");
    bytes_.push_back(t.content);
    special_.push_back(t.special);
    drops_space_at_start_.push_back(0);
    matcher_.add(t);
  }
  for (const std::string& content : config.special_contents) {
    auto it = ids_.find(content);
    if (it != ids_.end()) special_[size_t(it->second)] = 1;
  }
}

std::vector<int32_t> SentencePieceTokenizer::encode(std::string_view text,
                                                    bool parse_special) const {
  check_utf8_input(text);
  std::vector<int32_t> out;
  bool at_start = true;
  for (const auto& segment : matcher_.split(text, parse_special)) {
    if (segment.id >= 0) {
      out.push_back(segment.id);
    } else {
      std::vector<int> ids;
      const auto status = processors_[parse_special][at_start].Encode(segment.text, &ids);
      MMX_CHECK(status.ok(), Code::Internal, "sentencepiece encode failed: " + status.ToString());
      out.insert(out.end(), ids.begin(), ids.end());
    }
    at_start = false;
  }
  return out;
}

std::string SentencePieceTokenizer::token_bytes(int32_t id) const {
  check_token_id(id, vocab_size());
  return bytes_[size_t(id)];
}

std::string SentencePieceTokenizer::token_bytes_at_start(int32_t id) const {
  check_token_id(id, vocab_size());
  const std::string& b = bytes_[size_t(id)];
  return drops_space_at_start_[size_t(id)] ? b.substr(1) : b;
}

std::string SentencePieceTokenizer::decode(const std::vector<int32_t>& ids) const {
  std::string raw;
  for (size_t i = 0; i < ids.size(); ++i)
    raw += i == 0 ? token_bytes_at_start(ids[i]) : token_bytes(ids[i]);
  return utf8::sanitized(raw);
}

int32_t SentencePieceTokenizer::token_id(std::string_view piece) const {
  auto it = ids_.find(std::string(piece));
  return it == ids_.end() ? -1 : it->second;
}

bool SentencePieceTokenizer::is_special(int32_t id) const {
  return id >= 0 && id < vocab_size() && special_[size_t(id)];
}

std::unique_ptr<Tokenizer> load_sentencepiece(const std::string& path,
                                              const TokenizerConfig& config) {
  return std::make_unique<SentencePieceTokenizer>(read_tokenizer_file(path), "tokenizer.model",
                                                  config);
}

}  // namespace mmx
