#include "tokenizer/pretokenizer.h"

#include <algorithm>
#include <nlohmann/json.hpp>

#include "core/error.h"
#include "tokenizer/regex.h"

namespace mmx {

const char* const kGpt2Pattern =
    R"('s|'t|'re|'ve|'m|'ll|'d| ?\p{L}+| ?\p{N}+| ?[^\s\p{L}\p{N}]+|\s+(?!\S)|\s+)";

namespace {

std::shared_ptr<const Regex> gpt2_regex() {
  static const auto re = std::make_shared<const Regex>(kGpt2Pattern, "GPT-2 pre-tokenizer");
  return re;
}

bool flag(const nlohmann::json& j, const char* key, bool fallback, const std::string& where) {
  if (!j.contains(key) || j[key].is_null()) return fallback;
  MMX_CHECK(j[key].is_boolean(), Code::Format, where + ": \"" + key + "\" must be true or false");
  return j[key].get<bool>();
}

}  // namespace

void PreTokenizer::add_byte_level(bool add_prefix_space, bool use_regex) {
  if (add_prefix_space) steps_.push_back(Step{true, nullptr, Behavior::Isolated, false});
  if (use_regex) steps_.push_back(Step{false, gpt2_regex(), Behavior::Isolated, false});
}

PreTokenizer PreTokenizer::byte_level(bool add_prefix_space) {
  PreTokenizer p;
  p.add_byte_level(add_prefix_space, true);
  return p;
}

PreTokenizer PreTokenizer::from_json(const nlohmann::json& j, const std::string& where) {
  PreTokenizer p;
  bool saw_byte_level = false;
  MMX_CHECK(
      !j.is_null(), Code::Unsupported,
      where + ": no pre_tokenizer; only byte-level BPE (a ByteLevel pre-tokenizer) is supported");
  p.add_json_step(j, where, saw_byte_level);
  MMX_CHECK(saw_byte_level, Code::Unsupported,
            where + ": the pre_tokenizer has no ByteLevel step; only byte-level BPE is supported");
  return p;
}

void PreTokenizer::add_json_step(const nlohmann::json& j, const std::string& where,
                                 bool& saw_byte_level) {
  MMX_CHECK(j.is_object() && j.contains("type") && j["type"].is_string(), Code::Format,
            where + ": a pre_tokenizer entry is not an object with a \"type\"");
  const std::string type = j["type"].get<std::string>();
  // ByteLevel turns text into its byte alphabet; patterns written for raw text would not see
  // the same characters after it, so it has to come last.
  MMX_CHECK(!saw_byte_level, Code::Unsupported,
            where + ": pre_tokenizer step \"" + type + "\" after ByteLevel is not supported");
  if (type == "Sequence") {
    MMX_CHECK(j.contains("pretokenizers") && j["pretokenizers"].is_array(), Code::Format,
              where + ": Sequence pre_tokenizer without a \"pretokenizers\" array");
    for (const auto& step : j["pretokenizers"]) add_json_step(step, where, saw_byte_level);
  } else if (type == "ByteLevel") {
    add_byte_level(flag(j, "add_prefix_space", true, where), flag(j, "use_regex", true, where));
    saw_byte_level = true;
  } else if (type == "Split") {
    MMX_CHECK(j.contains("pattern") && j["pattern"].is_object(), Code::Format,
              where + ": Split pre_tokenizer without a \"pattern\" object");
    const auto& pat = j["pattern"];
    std::string regex;
    if (pat.contains("Regex") && pat["Regex"].is_string())
      regex = pat["Regex"].get<std::string>();
    else if (pat.contains("String") && pat["String"].is_string())
      regex = Regex::quote(pat["String"].get<std::string>());
    else
      fail(Code::Format, where + ": Split pattern must be {\"Regex\": ...} or {\"String\": ...}");
    MMX_CHECK(!regex.empty(), Code::Format, where + ": Split pattern is empty");
    static const std::pair<const char*, Behavior> kBehaviors[] = {
        {"Isolated", Behavior::Isolated},
        {"Removed", Behavior::Removed},
        {"MergedWithPrevious", Behavior::MergedWithPrevious},
        {"MergedWithNext", Behavior::MergedWithNext},
        {"Contiguous", Behavior::Contiguous}};
    const std::string behavior = j.value("behavior", std::string("Isolated"));
    Step step;
    step.regex = std::make_shared<const Regex>(regex, where + " Split pre_tokenizer");
    step.invert = flag(j, "invert", false, where);
    bool known = false;
    for (const auto& [name, b] : kBehaviors)
      if (behavior == name) step.behavior = b, known = true;
    MMX_CHECK(known, Code::Format, where + ": unknown Split behavior \"" + behavior + "\"");
    steps_.push_back(step);
  } else if (type == "Digits") {
    const bool individual = flag(j, "individual_digits", false, where);
    Step step;
    step.regex = std::make_shared<const Regex>(individual ? "\\p{N}" : "\\p{N}+",
                                               where + " Digits pre_tokenizer");
    steps_.push_back(step);
  } else {
    fail(Code::Unsupported, where + ": pre_tokenizer type \"" + type + "\" is not supported");
  }
}

// One step on one piece, following the delimiter rules of Hugging Face's Split.
void PreTokenizer::apply(const Step& step, const std::string& piece,
                         std::vector<std::string>& out) {
  if (step.prefix_space) {
    out.push_back(!piece.empty() && piece[0] == ' ' ? piece : " " + piece);
    return;
  }
  struct Part {
    size_t begin, end;
    bool is_match;
  };
  std::vector<Part> parts;
  size_t last = 0;
  step.regex->for_each_match(piece, [&](size_t b, size_t e) {
    if (b > last) parts.push_back({last, b, step.invert});
    parts.push_back({b, e, !step.invert});
    last = e;
  });
  if (last < piece.size()) parts.push_back({last, piece.size(), step.invert});

  std::vector<Part> kept;
  bool previous_match = false;
  switch (step.behavior) {
    case Behavior::Isolated:
      kept = parts;
      break;
    case Behavior::Removed:
      for (const Part& p : parts)
        if (!p.is_match) kept.push_back(p);
      break;
    case Behavior::MergedWithPrevious:
      for (const Part& p : parts) {
        if (p.is_match && !previous_match && !kept.empty())
          kept.back().end = p.end;
        else
          kept.push_back(p);
        previous_match = p.is_match;
      }
      break;
    case Behavior::MergedWithNext:
      for (auto it = parts.rbegin(); it != parts.rend(); ++it) {
        if (it->is_match && !previous_match && !kept.empty())
          kept.back().begin = it->begin;
        else
          kept.push_back(*it);
        previous_match = it->is_match;
      }
      std::reverse(kept.begin(), kept.end());
      break;
    case Behavior::Contiguous:
      for (const Part& p : parts) {
        if (p.is_match == previous_match && !kept.empty())
          kept.back().end = p.end;
        else
          kept.push_back(p);
        previous_match = p.is_match;
      }
      break;
  }
  for (const Part& p : kept)
    if (p.end > p.begin) out.push_back(piece.substr(p.begin, p.end - p.begin));
}

std::vector<std::string> PreTokenizer::split(std::string_view text) const {
  std::vector<std::string> pieces;
  if (!text.empty()) pieces.emplace_back(text);
  for (const Step& step : steps_) {
    std::vector<std::string> next;
    next.reserve(pieces.size());
    for (const std::string& piece : pieces) apply(step, piece, next);
    pieces.swap(next);
  }
  return pieces;
}

}  // namespace mmx
