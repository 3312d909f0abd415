// Tokenizer::load_dir, tokenizer_config.json, and checks shared by the implementations.
#include "tokenizer/tokenizer.h"

#include <filesystem>
#include <fstream>
#include <nlohmann/json.hpp>
#include <sstream>
#include <unordered_map>

#include "core/error.h"
#include "tokenizer/bpe_tokenizer.h"
#include "tokenizer/tokenizer_internal.h"
#include "tokenizer/utf8.h"

namespace mmx {

namespace fs = std::filesystem;
using nlohmann::json;

namespace {

// Real tokenizer files are at most tens of MB; refuse anything absurd before allocating.
constexpr uintmax_t kMaxTokenizerFileBytes = uintmax_t(1) << 30;

// The family's turn markers (model-spec §9), used for bos/eos when nothing names them.
constexpr const char* kFamilyBos = "<beginning_of_sentence>";
constexpr const char* kFamilyEos = "<end_of_sentence>";

// A special-token entry: "text", {"content": "text", ...} or null.
std::optional<std::string> token_content(const json& j, const std::string& key) {
  if (j.is_null()) return std::nullopt;
  if (j.is_string()) return j.get<std::string>();
  MMX_CHECK(j.is_object() && j.contains("content") && j["content"].is_string(), Code::Format,
            "tokenizer_config.json: \"" + key +
                "\" must be a string or an object with a string \"content\"");
  return j["content"].get<std::string>();
}

bool config_flag(const json& j, const char* key, bool fallback) {
  if (!j.contains(key) || j[key].is_null()) return fallback;
  MMX_CHECK(j[key].is_boolean(), Code::Format,
            std::string("tokenizer_config.json: \"") + key + "\" must be true or false");
  return j[key].get<bool>();
}

void read_added_tokens_decoder(const json& decoder, TokenizerConfig& config) {
  MMX_CHECK(decoder.is_object(), Code::Format,
            "tokenizer_config.json: added_tokens_decoder must be an object");
  for (const auto& [key, value] : decoder.items()) {
    const std::string where = "tokenizer_config.json: added_tokens_decoder[\"" + key + "\"]";
    size_t used = 0;
    long long id = -1;
    try {
      id = std::stoll(key, &used);
    } catch (const std::exception&) {
      used = 0;
    }
    MMX_CHECK(used == key.size() && id >= 0 && id < INT32_MAX, Code::Format,
              where + ": the key is not a token id");
    MMX_CHECK(value.is_object() && value.contains("content") && value["content"].is_string(),
              Code::Format, where + ": needs a string \"content\"");
    AddedToken t;
    t.id = int32_t(id);
    t.content = value["content"].get<std::string>();
    t.special = config_flag(value, "special", false);
    t.lstrip = config_flag(value, "lstrip", false);
    t.rstrip = config_flag(value, "rstrip", false);
    t.single_word = config_flag(value, "single_word", false);
    t.normalized = config_flag(value, "normalized", !t.special);
    config.added_tokens.push_back(std::move(t));
  }
}

std::string read_chat_template(const json& j) {
  if (j.is_null()) return {};
  if (j.is_string()) return j.get<std::string>();
  // Several named templates: [{"name": "default", "template": "..."}, ...].
  MMX_CHECK(j.is_array(), Code::Format,
            "tokenizer_config.json: chat_template must be a string or a list of named templates");
  for (const json& entry : j) {
    MMX_CHECK(entry.is_object() && entry.value("template", json()).is_string(), Code::Format,
              "tokenizer_config.json: a chat_template entry lacks a string \"template\"");
    if (entry.value("name", std::string()) == "default")
      return entry["template"].get<std::string>();
  }
  return {};
}

// Builds byte-level BPE and merges in what tokenizer_config.json adds: tokens listed in
// added_tokens_decoder, and special tokens that the vocabulary has but does not mark.
std::unique_ptr<Tokenizer> build_bpe(BpeSpec spec, const TokenizerConfig& config) {
  std::unordered_map<std::string, int32_t> listed;
  for (const AddedToken& t : spec.added) listed.emplace(t.content, t.id);
  for (const AddedToken& t : config.added_tokens) {
    auto [it, fresh] = listed.emplace(t.content, t.id);
    MMX_CHECK(fresh || it->second == t.id, Code::Format,
              "tokenizer_config.json: added token \"" + t.content + "\" has id " +
                  std::to_string(t.id) + " but " + spec.source + " gives it id " +
                  std::to_string(it->second));
    if (fresh) spec.added.push_back(t);
  }
  std::unordered_map<std::string, int64_t> vocab_ids;
  for (const std::string& content : config.special_contents) {
    if (listed.count(content)) continue;
    if (vocab_ids.empty())
      for (const auto& [spelling, id] : spec.vocab) vocab_ids.emplace(spelling, id);
    auto it = vocab_ids.find(content);
    if (it == vocab_ids.end()) continue;  // a special the vocabulary lacks cannot be used
    AddedToken t;
    t.content = content;
    t.id = int32_t(it->second);
    listed.emplace(content, t.id);
    spec.added.push_back(std::move(t));
  }
  return std::make_unique<BpeTokenizer>(std::move(spec));
}

}  // namespace

void check_utf8_input(std::string_view text) {
  const size_t bad = utf8::first_invalid(text);
  MMX_CHECK(bad == text.size(), Code::InvalidArgument,
            "text is not valid UTF-8 (ill-formed byte at offset " + std::to_string(bad) + ")");
}

void check_token_id(int32_t id, int32_t vocab_size) {
  MMX_CHECK(id >= 0 && id < vocab_size, Code::InvalidArgument,
            "token id " + std::to_string(id) + " is out of range [0, " +
                std::to_string(vocab_size) + ")");
}

std::string read_tokenizer_file(const std::string& path) {
  std::error_code ec;
  const uintmax_t size = fs::file_size(path, ec);
  MMX_CHECK(!ec, fs::exists(path) ? Code::Io : Code::NotFound,
            "cannot read " + path + ": " + ec.message());
  MMX_CHECK(size <= kMaxTokenizerFileBytes, Code::Format,
            path + " is " + std::to_string(size) + " bytes, too large for a tokenizer file");
  std::ifstream in(path, std::ios::binary);
  MMX_CHECK(bool(in), Code::Io, "cannot open " + path);
  std::ostringstream ss;
  ss << in.rdbuf();
  MMX_CHECK(!in.bad(), Code::Io, "error while reading " + path);
  return ss.str();
}

static TokenizerConfig read_tokenizer_config_unchecked(const std::string& path) {
  TokenizerConfig config;
  if (!fs::exists(path)) return config;
  json j;
  try {
    j = json::parse(read_tokenizer_file(path));
  } catch (const json::exception& e) {
    fail(Code::Format, "tokenizer_config.json: not valid JSON (" + std::string(e.what()) + ")");
  }
  MMX_CHECK(j.is_object(), Code::Format, "tokenizer_config.json: the top level is not an object");
  auto special = [&](const char* key) -> std::optional<std::string> {
    if (!j.contains(key)) return std::nullopt;
    auto content = token_content(j[key], key);
    if (content) config.special_contents.push_back(*content);
    return content;
  };
  config.bos_token = special("bos_token");
  config.eos_token = special("eos_token");
  special("unk_token");
  special("pad_token");
  if (j.contains("additional_special_tokens") && !j["additional_special_tokens"].is_null()) {
    const json& extra = j["additional_special_tokens"];
    MMX_CHECK(extra.is_array(), Code::Format,
              "tokenizer_config.json: additional_special_tokens must be a list");
    for (const json& e : extra)
      if (auto c = token_content(e, "additional_special_tokens"))
        config.special_contents.push_back(*c);
  }
  if (j.contains("added_tokens_decoder"))
    read_added_tokens_decoder(j["added_tokens_decoder"], config);
  config.add_prefix_space = config_flag(j, "add_prefix_space", false);
  if (j.contains("chat_template")) config.chat_template = read_chat_template(j["chat_template"]);
  return config;
}

TokenizerConfig read_tokenizer_config(const std::string& path) {
  try {
    return read_tokenizer_config_unchecked(path);
  } catch (const json::exception& e) {
    // A value of an unexpected type that the explicit checks do not name.
    fail(Code::Format,
         "tokenizer_config.json: unexpected structure (" + std::string(e.what()) + ")");
  }
}

std::unique_ptr<Tokenizer> Tokenizer::load_dir(const std::string& dir) {
  const fs::path root(dir);
  auto has = [&](const char* name) { return fs::is_regular_file(root / name); };
  if (!has("tokenizer.json") && !has("vocab.json") && !has("merges.txt") && !has("tokenizer.model"))
    return nullptr;

  const TokenizerConfig config = read_tokenizer_config((root / "tokenizer_config.json").string());
  std::unique_ptr<Tokenizer> tok;
  if (has("tokenizer.json")) {
    tok = build_bpe(read_tokenizer_json((root / "tokenizer.json").string()), config);
  } else if (has("vocab.json") && has("merges.txt")) {
    BpeSpec spec =
        read_vocab_merges((root / "vocab.json").string(), (root / "merges.txt").string());
    spec.pre_tokenizer = PreTokenizer::byte_level(config.add_prefix_space);
    tok = build_bpe(std::move(spec), config);
  } else if (has("tokenizer.model")) {
    tok = load_sentencepiece((root / "tokenizer.model").string(), config);
  } else {
    fail(Code::Format, dir + ": " +
                           (has("vocab.json") ? "vocab.json has no merges.txt beside it"
                                              : "merges.txt has no vocab.json beside it"));
  }

  // bos/eos: what tokenizer_config.json names, else the family's markers, else the model's own.
  auto pick = [&](const std::optional<std::string>& configured, const char* family, int32_t own,
                  const char* what) {
    if (configured) {
      const int32_t id = tok->token_id(*configured);
      MMX_CHECK(id >= 0, Code::Format,
                std::string("tokenizer_config.json: ") + what + " \"" + *configured +
                    "\" is not in the vocabulary");
      return id;
    }
    const int32_t id = tok->token_id(family);
    return id >= 0 ? id : own;
  };
  tok->bos_id_ = pick(config.bos_token, kFamilyBos, tok->bos_id_, "bos_token");
  tok->eos_id_ = pick(config.eos_token, kFamilyEos, tok->eos_id_, "eos_token");
  return tok;
}

}  // namespace mmx
