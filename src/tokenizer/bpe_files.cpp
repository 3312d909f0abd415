// Reading the two byte-level BPE file layouts: tokenizer.json (Hugging Face tokenizers) and
// vocab.json + merges.txt (the original GPT-2 layout).
#include <nlohmann/json.hpp>

#include "core/error.h"
#include "tokenizer/bpe_tokenizer.h"
#include "tokenizer/tokenizer_internal.h"

namespace mmx {
namespace {

using nlohmann::json;

json parse_json(const std::string& text, const std::string& path) {
  try {
    return json::parse(text);
  } catch (const json::exception& e) {
    fail(Code::Format, path + ": not valid JSON (" + e.what() + ")");
  }
}

void read_vocab(const json& vocab, const std::string& where, BpeSpec& spec) {
  MMX_CHECK(vocab.is_object(), Code::Format,
            where + ": the vocabulary must be an object mapping tokens to ids");
  spec.vocab.reserve(vocab.size());
  for (const auto& [token, id] : vocab.items()) {
    MMX_CHECK(id.is_number_integer(), Code::Format,
              where + ": the id of token \"" + token + "\" is not an integer");
    spec.vocab.emplace_back(token, id.get<int64_t>());
  }
}

// "a b" -> {"a", "b"}; anything but exactly two space-separated parts is malformed.
bool split_merge(const std::string& line, std::pair<std::string, std::string>& merge) {
  const size_t space = line.find(' ');
  if (space == std::string::npos || space == 0 || space + 1 == line.size() ||
      line.find(' ', space + 1) != std::string::npos)
    return false;
  merge = {line.substr(0, space), line.substr(space + 1)};
  return true;
}

void read_json_merges(const json& merges, const std::string& where, BpeSpec& spec) {
  MMX_CHECK(merges.is_array(), Code::Format, where + ": model.merges must be an array");
  spec.merges.reserve(merges.size());
  for (size_t i = 0; i < merges.size(); ++i) {
    const json& m = merges[i];
    std::pair<std::string, std::string> merge;
    const bool ok = m.is_string() ? split_merge(m.get<std::string>(), merge)
                    : m.is_array() && m.size() == 2 && m[0].is_string() && m[1].is_string()
                        ? (merge = {m[0].get<std::string>(), m[1].get<std::string>()}, true)
                        : false;
    MMX_CHECK(ok, Code::Format,
              where + ": merge " + std::to_string(i + 1) +
                  " is neither \"left right\" nor [\"left\", \"right\"]: " + m.dump());
    spec.merges.push_back(std::move(merge));
  }
}

bool optional_flag(const json& j, const char* key, bool fallback, const std::string& where) {
  if (!j.contains(key) || j[key].is_null()) return fallback;
  MMX_CHECK(j[key].is_boolean(), Code::Format, where + ": \"" + key + "\" must be true or false");
  return j[key].get<bool>();
}

void read_added_tokens(const json& added, const std::string& where, BpeSpec& spec) {
  if (added.is_null()) return;
  MMX_CHECK(added.is_array(), Code::Format, where + ": added_tokens must be an array");
  for (const json& t : added) {
    MMX_CHECK(t.is_object() && t.contains("id") && t["id"].is_number_integer() &&
                  t.contains("content") && t["content"].is_string(),
              Code::Format,
              where + ": an added token lacks an integer id or a string content: " + t.dump());
    AddedToken token;
    const int64_t id = t["id"].get<int64_t>();
    MMX_CHECK(id >= 0 && id < INT32_MAX, Code::Format,
              where + ": added token has invalid id " + std::to_string(id));
    token.id = int32_t(id);
    token.content = t["content"].get<std::string>();
    token.special = optional_flag(t, "special", false, where);
    token.lstrip = optional_flag(t, "lstrip", false, where);
    token.rstrip = optional_flag(t, "rstrip", false, where);
    token.single_word = optional_flag(t, "single_word", false, where);
    token.normalized = optional_flag(t, "normalized", !token.special, where);
    spec.added.push_back(std::move(token));
  }
}

void reject_unsupported_model_options(const json& model, const std::string& where) {
  for (const char* key : {"continuing_subword_prefix", "end_of_word_suffix"}) {
    if (!model.contains(key) || model[key].is_null()) continue;
    MMX_CHECK(model[key].is_string(), Code::Format, where + ": model." + key + " must be a string");
    MMX_CHECK(model[key].get<std::string>().empty(), Code::Unsupported,
              where + ": model." + key + " is not supported for byte-level BPE");
  }
}

BpeSpec read_tokenizer_json_unchecked(const std::string& path) {
  const std::string where = "tokenizer.json";
  const json root = parse_json(read_tokenizer_file(path), where);
  MMX_CHECK(root.is_object(), Code::Format, where + ": the top level is not an object");
  MMX_CHECK(root.contains("model") && root["model"].is_object(), Code::Format,
            where + ": no \"model\" object");
  const json& model = root["model"];
  const std::string type = model.value("type", std::string("BPE"));
  MMX_CHECK(type == "BPE", Code::Format,
            where + ": model type \"" + type + "\" is not supported (expected \"BPE\")");
  MMX_CHECK(model.contains("vocab"), Code::Format, where + ": model has no \"vocab\"");
  MMX_CHECK(model.contains("merges"), Code::Format, where + ": model has no \"merges\"");
  reject_unsupported_model_options(model, where);

  BpeSpec spec;
  spec.source = where;
  read_vocab(model["vocab"], where + " model.vocab", spec);
  read_json_merges(model["merges"], where, spec);
  spec.ignore_merges = optional_flag(model, "ignore_merges", false, where);
  spec.byte_fallback = optional_flag(model, "byte_fallback", false, where);
  if (model.contains("unk_token") && model["unk_token"].is_string())
    spec.unk_token = model["unk_token"].get<std::string>();
  if (root.contains("added_tokens")) read_added_tokens(root["added_tokens"], where, spec);

  if (root.contains("normalizer") && !root["normalizer"].is_null()) {
    const json& n = root["normalizer"];
    const std::string ntype = n.is_object() ? n.value("type", std::string("?")) : "?";
    fail(Code::Unsupported, where + ": normalizer \"" + ntype + "\" is not supported");
  }
  spec.pre_tokenizer = PreTokenizer::from_json(root.value("pre_tokenizer", json()), where);
  return spec;
}

}  // namespace

BpeSpec read_tokenizer_json(const std::string& path) {
  try {
    return read_tokenizer_json_unchecked(path);
  } catch (const json::exception& e) {
    // A value of an unexpected type that the explicit checks above do not name.
    fail(Code::Format, "tokenizer.json: unexpected structure (" + std::string(e.what()) + ")");
  }
}

BpeSpec read_vocab_merges(const std::string& vocab_path, const std::string& merges_path) {
  BpeSpec spec;
  spec.source = "vocab.json + merges.txt";
  read_vocab(parse_json(read_tokenizer_file(vocab_path), "vocab.json"), "vocab.json", spec);

  const std::string text = read_tokenizer_file(merges_path);
  size_t line_no = 0, pos = 0;
  while (pos < text.size()) {
    size_t end = text.find('\n', pos);
    if (end == std::string::npos) end = text.size();
    std::string line = text.substr(pos, end - pos);
    pos = end + 1;
    ++line_no;
    if (!line.empty() && line.back() == '\r') line.pop_back();
    if (line.empty() || line.rfind("#version", 0) == 0) continue;
    std::pair<std::string, std::string> merge;
    MMX_CHECK(split_merge(line, merge), Code::Format,
              "merges.txt line " + std::to_string(line_no) +
                  ": expected two tokens separated by one space, got \"" + line + "\"");
    spec.merges.push_back(std::move(merge));
  }
  return spec;
}

}  // namespace mmx
