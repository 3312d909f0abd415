// Byte-level BPE against the Python `tokenizers` package (fixtures from
// tools/tokenizer_fixtures/make_tokenizer_fixtures.py), for both file layouts, plus malformed
// files and bad arguments.
#include <gtest/gtest.h>

#include <nlohmann/json.hpp>
#include <random>

#include "core/error.h"
#include "test_util.h"
#include "tokenizer/tokenizer.h"

using mmx::Code;
using mmx::Tokenizer;
using mmx_test::data_path;
using mmx_test::read_file;
using mmx_test::TempDir;
using mmx_test::write_file;
using nlohmann::json;

namespace {

std::vector<int32_t> ids_of(const json& j) { return j.get<std::vector<int32_t>>(); }

std::unique_ptr<Tokenizer> load(const std::string& rel) {
  auto tok = Tokenizer::load_dir(data_path(rel));
  EXPECT_NE(tok, nullptr) << rel;
  return tok;
}

Code load_error(const std::string& dir) {
  try {
    Tokenizer::load_dir(dir);
  } catch (const mmx::Error& e) {
    return e.code();
  }
  return Code::Ok;
}

std::string error_message(const std::string& dir) {
  try {
    Tokenizer::load_dir(dir);
  } catch (const mmx::Error& e) {
    return e.what();
  }
  return "";
}

void expect_cases(const Tokenizer& tok, const std::string& cases_file) {
  const json cases = json::parse(read_file(data_path(cases_file)))["cases"];
  ASSERT_GT(cases.size(), 30u);
  for (const json& c : cases) {
    const std::string text = c["text"];
    SCOPED_TRACE("text: " + text.substr(0, 80));
    const auto ids = tok.encode(text, true);
    EXPECT_EQ(ids, ids_of(c["ids"]));
    EXPECT_EQ(tok.encode(text, false), ids_of(c["ids_plain"]));
    EXPECT_EQ(tok.decode(ids), c["decoded"].get<std::string>());
  }
}

class BpeLayouts : public ::testing::TestWithParam<const char*> {};

TEST_P(BpeLayouts, MatchesPythonTokenizers) {
  auto tok = load(GetParam());
  ASSERT_TRUE(tok);
  EXPECT_EQ(tok->kind(), "bpe");
  EXPECT_EQ(tok->vocab_size(), 1506);
  expect_cases(*tok, "tokenizer/bpe_cases.json");
}

TEST_P(BpeLayouts, SpecialTokensAndConfig) {
  auto tok = load(GetParam());
  ASSERT_TRUE(tok);
  EXPECT_EQ(tok->token_id("<beginning_of_sentence>"), 1500);
  EXPECT_EQ(tok->token_id("<end_of_sentence>"), 1501);
  EXPECT_EQ(tok->bos_id(), 1500);
  EXPECT_EQ(tok->eos_id(), 1501);  // eos_token given as {"content": ...}
  EXPECT_TRUE(tok->is_special(1501));
  EXPECT_FALSE(tok->is_special(tok->token_id("<think>")));  // added, not special
  EXPECT_FALSE(tok->is_special(tok->token_id("Ġthe")));
  EXPECT_EQ(tok->token_bytes(tok->token_id("Ġthe")), " the");
  EXPECT_EQ(tok->token_bytes(1501), "<end_of_sentence>");
  EXPECT_EQ(tok->token_id("no such token"), -1);
  EXPECT_FALSE(tok->is_special(-1));
  EXPECT_FALSE(tok->is_special(1 << 30));
}

TEST_P(BpeLayouts, RoundTripsLongDialogue) {
  auto tok = load(GetParam());
  ASSERT_TRUE(tok);
  const std::string all = read_file(mmx_test::shared_path("data/mr-niah-english-20k.jsonl"));
  std::string text;
  const json dialogue = json::parse(all.substr(0, all.find('\n')));
  for (const json& m : dialogue["messages"]) text += m["content"].get<std::string>() + "\n";
  ASSERT_GT(text.size(), 10000u);
  const auto ids = tok->encode(text, false);
  EXPECT_LT(ids.size(), text.size());
  std::string joined;
  for (int32_t id : ids) joined += tok->token_bytes(id);
  EXPECT_EQ(joined, text);
  EXPECT_EQ(tok->decode(ids), text);
}

INSTANTIATE_TEST_SUITE_P(Layouts, BpeLayouts,
                         ::testing::Values("tokenizer/bpe_json", "tokenizer/bpe_files"));

// Split(GPT-4 regex) + ByteLevel(use_regex=false) in a Sequence, "a b" merges, ignore_merges.
TEST(Bpe, Gpt4StyleSequencePreTokenizer) {
  auto tok = load("tokenizer/bpe_gpt4");
  ASSERT_TRUE(tok);
  expect_cases(*tok, "tokenizer/bpe_gpt4_cases.json");
  // Without tokenizer_config.json bos/eos fall back to the family's markers.
  EXPECT_EQ(tok->bos_id(), 1500);
  EXPECT_EQ(tok->eos_id(), 1501);
}

TEST(Bpe, InvalidUtf8AndBadIds) {
  auto tok = load("tokenizer/bpe_json");
  ASSERT_TRUE(tok);
  for (const std::string bad :
       {"abc\xff", "\xc3", "\xed\xa0\x80", "\xc0\xaf", "ok\xf4\x90\x80\x80"}) {
    try {
      tok->encode(bad, true);
      ADD_FAILURE() << "accepted invalid UTF-8";
    } catch (const mmx::Error& e) {
      EXPECT_EQ(e.code(), Code::InvalidArgument);
      EXPECT_NE(std::string(e.what()).find("UTF-8"), std::string::npos);
    }
  }
  for (int32_t id : {-1, 1506, INT32_MAX}) {
    try {
      tok->token_bytes(id);
      ADD_FAILURE() << "token_bytes accepted " << id;
    } catch (const mmx::Error& e) {
      EXPECT_EQ(e.code(), Code::InvalidArgument);
    }
    try {
      tok->decode({1, id});
      ADD_FAILURE() << "decode accepted " << id;
    } catch (const mmx::Error& e) {
      EXPECT_EQ(e.code(), Code::InvalidArgument);
    }
  }
}

TEST(Bpe, DecodeReplacesBrokenUtf8) {
  auto tok = load("tokenizer/bpe_json");
  ASSERT_TRUE(tok);
  // "世" is 3 bytes; each byte has its own token in byte-level BPE.
  const int32_t e4 = tok->token_id("ä"), b8 = tok->token_id("¸");
  ASSERT_GE(e4, 0);
  ASSERT_GE(b8, 0);
  EXPECT_EQ(tok->token_bytes(e4), "\xe4");
  EXPECT_EQ(tok->decode({e4, b8}), "\xEF\xBF\xBD");              // truncated: one U+FFFD
  EXPECT_EQ(tok->decode({b8, b8}), "\xEF\xBF\xBD\xEF\xBF\xBD");  // two stray continuations
}

TEST(Bpe, LoadDirFindsNothing) {
  TempDir dir;
  EXPECT_EQ(Tokenizer::load_dir(dir.path()), nullptr);
  EXPECT_EQ(Tokenizer::load_dir(dir.file("missing")), nullptr);
}

// Copies a fixture layout into a temp dir so single files can be broken.
struct BrokenDir {
  TempDir dir;
  explicit BrokenDir(const std::string& from, std::initializer_list<const char*> files) {
    for (const char* f : files) write_file(dir.file(f), read_file(data_path(from + "/" + f)));
  }
  std::string path() const { return dir.path(); }
};

TEST(BpeMalformed, RandomBytesAsTokenizerJson) {
  std::mt19937 rng(7);
  for (int trial = 0; trial < 20; ++trial) {
    TempDir dir;
    std::string junk(size_t(rng() % 4000), '\0');
    for (char& c : junk) c = char(rng());
    write_file(dir.file("tokenizer.json"), junk);
    EXPECT_EQ(load_error(dir.path()), Code::Format);
  }
  TempDir dir;
  write_file(dir.file("tokenizer.json"), "{\"model\": ");
  EXPECT_NE(error_message(dir.path()).find("tokenizer.json: not valid JSON"), std::string::npos);
}

TEST(BpeMalformed, TruncatedFiles) {
  const std::string json_text = read_file(data_path("tokenizer/bpe_json/tokenizer.json"));
  for (size_t cut : {size_t(1), json_text.size() / 3, json_text.size() - 2}) {
    TempDir dir;
    write_file(dir.file("tokenizer.json"), json_text.substr(0, cut));
    EXPECT_EQ(load_error(dir.path()), Code::Format) << cut;
  }
  BrokenDir d("tokenizer/bpe_files", {"vocab.json", "merges.txt"});
  std::string merges = read_file(data_path("tokenizer/bpe_files/merges.txt"));
  merges = merges.substr(0, merges.size() / 2);
  merges = merges.substr(0, merges.rfind(' ') + 0);  // ends in the middle of a line
  write_file(d.dir.file("merges.txt"), merges);
  EXPECT_EQ(load_error(d.path()), Code::Format);
  EXPECT_NE(error_message(d.path()).find("merges.txt line"), std::string::npos);
}

TEST(BpeMalformed, VocabJsonProblems) {
  BrokenDir d("tokenizer/bpe_files", {"vocab.json", "merges.txt"});
  write_file(d.dir.file("vocab.json"), "[1, 2, 3]");
  EXPECT_EQ(load_error(d.path()), Code::Format);
  EXPECT_NE(error_message(d.path()).find("vocab.json"), std::string::npos);
  write_file(d.dir.file("vocab.json"), R"({"a": "zero"})");
  EXPECT_EQ(load_error(d.path()), Code::Format);
  // Duplicate ids, gaps, merges naming unknown tokens.
  write_file(d.dir.file("merges.txt"), "#version: 0.2\na b\n");
  write_file(d.dir.file("vocab.json"), R"({"a": 0, "b": 0, "ab": 1})");
  EXPECT_NE(error_message(d.path()).find("id 0 is used by both"), std::string::npos);
  write_file(d.dir.file("vocab.json"), R"({"a": 0, "b": 1, "ab": 5})");
  EXPECT_NE(error_message(d.path()).find("no token has id 2"), std::string::npos);
  write_file(d.dir.file("vocab.json"), R"({"a": 0, "b": 1, "ab": 4000000000})");
  EXPECT_EQ(load_error(d.path()), Code::Format);
  write_file(d.dir.file("vocab.json"), R"({"a": 0, "c": 1, "ab": 2})");
  EXPECT_NE(error_message(d.path()).find("unknown token \"b\""), std::string::npos);
  write_file(d.dir.file("vocab.json"), R"({"a": 0, "b": 1, "c": 2})");
  EXPECT_NE(error_message(d.path()).find("merged token \"ab\" is not in the vocabulary"),
            std::string::npos);
  // vocab.json alone is not a tokenizer.
  std::remove(d.dir.file("merges.txt").c_str());
  EXPECT_NE(error_message(d.path()).find("no merges.txt"), std::string::npos);
}

TEST(BpeMalformed, TokenizerJsonProblems) {
  json base = json::parse(read_file(data_path("tokenizer/bpe_json/tokenizer.json")));
  auto error_for = [&](const std::function<void(json&)>& edit) {
    TempDir dir;
    json j = base;
    edit(j);
    write_file(dir.file("tokenizer.json"), j.dump());
    try {
      Tokenizer::load_dir(dir.path());
    } catch (const mmx::Error& e) {
      return std::string(mmx::code_name(e.code())) + ": " + e.what();
    }
    return std::string("loaded");
  };
  auto contains = [](const std::string& s, const std::string& part) {
    return s.find(part) != std::string::npos;
  };
  EXPECT_PRED2(contains, error_for([](json& j) { j["model"]["type"] = "WordPiece"; }),
               "model type \"WordPiece\"");
  EXPECT_PRED2(contains, error_for([](json& j) { j["model"].erase("vocab"); }), "no \"vocab\"");
  EXPECT_PRED2(contains, error_for([](json& j) { j.erase("model"); }), "no \"model\"");
  EXPECT_PRED2(contains, error_for([](json& j) { j["model"]["merges"][3] = 17; }), "merge 4");
  EXPECT_PRED2(contains, error_for([](json& j) { j["model"]["merges"][0] = "Ġ"; }), "merge 1");
  EXPECT_PRED2(contains, error_for([](json& j) {
                 j["model"]["merges"].push_back({"Ġ", "nope"});
               }),
               "unknown token \"nope\"");
  EXPECT_PRED2(contains, error_for([](json& j) { j["added_tokens"][0]["id"] = 3; }),
               "id 3 is used by both");
  EXPECT_PRED2(contains, error_for([](json& j) { j["added_tokens"][0]["id"] = 1600; }),
               "no token has id 1500");
  EXPECT_PRED2(contains, error_for([](json& j) {
                 j["pre_tokenizer"] = {{"type", "Whitespace"}};
               }),
               "unsupported: ");
  EXPECT_PRED2(contains, error_for([](json& j) {
                 j["pre_tokenizer"] = {{"type", "Split"},
                                       {"pattern", {{"Regex", "(unclosed"}}},
                                       {"behavior", "Isolated"}};
               }),
               "does not compile");
  EXPECT_PRED2(contains, error_for([](json& j) {
                 j["normalizer"] = {{"type", "NFKC"}};
               }),
               "normalizer \"NFKC\"");
}

// Random type changes anywhere in tokenizer.json: every outcome is a load or an mmx::Error.
TEST(BpeMalformed, RandomStructuralEditsNeverEscapeAsOtherErrors) {
  const json base = json::parse(read_file(data_path("tokenizer/bpe_json/tokenizer.json")));
  std::vector<std::string> paths;
  const json flat = base.flatten();
  for (const auto& [path, leaf] : flat.items()) paths.push_back(path);
  const json replacements[] = {json(17),       json(-1),      json(1e12),
                               json("x"),      json(nullptr), json::array(),
                               json::object(), json(true),    json::array({"a"})};
  std::mt19937 rng(5);
  for (int trial = 0; trial < 60; ++trial) {
    json j = base;
    json::json_pointer ptr(paths[rng() % paths.size()]);
    for (int up = int(rng() % 3); up > 0 && !ptr.empty(); --up) ptr = ptr.parent_pointer();
    j[ptr] = replacements[rng() % std::size(replacements)];
    TempDir dir;
    write_file(dir.file("tokenizer.json"), j.dump());
    try {
      auto tok = Tokenizer::load_dir(dir.path());
      ASSERT_TRUE(tok);
      tok->decode(tok->encode("Hello <end_of_sentence> 世界", true));
    } catch (const mmx::Error&) {
    } catch (const std::exception& e) {
      ADD_FAILURE() << ptr.to_string() << ": " << e.what();
    }
  }
}

TEST(BpeMalformed, TokenizerConfigProblems) {
  BrokenDir d("tokenizer/bpe_json", {"tokenizer.json"});
  write_file(d.dir.file("tokenizer_config.json"), R"({"eos_token": "<nope>"})");
  EXPECT_NE(error_message(d.path()).find("eos_token \"<nope>\" is not in the vocabulary"),
            std::string::npos);
  write_file(d.dir.file("tokenizer_config.json"), R"({"eos_token": 5})");
  EXPECT_EQ(load_error(d.path()), Code::Format);
  write_file(d.dir.file("tokenizer_config.json"),
             R"({"added_tokens_decoder": {"x": {"content": "a"}}})");
  EXPECT_NE(error_message(d.path()).find("not a token id"), std::string::npos);
  write_file(d.dir.file("tokenizer_config.json"), "not json");
  EXPECT_NE(error_message(d.path()).find("tokenizer_config.json"), std::string::npos);
  // A token the config adds after the vocabulary becomes usable; one leaving a gap is rejected.
  write_file(d.dir.file("tokenizer_config.json"),
             R"({"added_tokens_decoder": {"1506": {"content": "<extra>", "special": true}}})");
  auto tok = Tokenizer::load_dir(d.path());
  ASSERT_TRUE(tok);
  EXPECT_EQ(tok->encode("a<extra>b", true)[1], 1506);
  EXPECT_TRUE(tok->is_special(1506));
  write_file(d.dir.file("tokenizer_config.json"),
             R"({"added_tokens_decoder": {"1510": {"content": "<extra>", "special": true}}})");
  EXPECT_NE(error_message(d.path()).find("no token has id 1506"), std::string::npos);
  write_file(d.dir.file("tokenizer_config.json"),
             R"({"added_tokens_decoder": {"1502": {"content": "<end_of_sentence>"}}})");
  EXPECT_NE(error_message(d.path()).find("tokenizer.json gives it id 1501"), std::string::npos);
}

TEST(Bpe, AddedTokensDecodeToTheirText) {
  BrokenDir d("tokenizer/bpe_json", {"tokenizer.json"});
  write_file(d.dir.file("tokenizer_config.json"), R"({"added_tokens_decoder": {
      "1506": {"content": "caf\u00e9", "special": false},
      "1507": {"content": "\u0120Hi", "special": true}}})");
  auto tok = Tokenizer::load_dir(d.path());
  ASSERT_TRUE(tok);
  for (const std::string text : {"x caf\xC3\xA9 y", "say \xC4\xA0Hi"}) {
    const auto ids = tok->encode(text, true);
    EXPECT_EQ(tok->decode(ids), text);
  }
  EXPECT_EQ(tok->token_bytes(1506), "caf\xC3\xA9");
  EXPECT_EQ(tok->token_bytes(1507), "\xC4\xA0Hi");
}

TEST(Bpe, RealM1TokenizerConfig) {
  // The release's tokenizer_config.json beside a tokenizer that has the family's markers.
  BrokenDir d("tokenizer/bpe_json", {"tokenizer.json"});
  write_file(d.dir.file("tokenizer_config.json"),
             read_file(mmx_test::shared_path("reference/minimax-m1/tokenizer_config.json")));
  auto tok = Tokenizer::load_dir(d.path());
  ASSERT_TRUE(tok);
  EXPECT_EQ(tok->bos_id(), tok->token_id("<beginning_of_sentence>"));
  EXPECT_EQ(tok->eos_id(), tok->token_id("<end_of_sentence>"));
  EXPECT_TRUE(tok->is_special(tok->token_id("<end_of_document>")));
}

TEST(Bpe, PrefersTokenizerJsonOverOtherLayouts) {
  BrokenDir d("tokenizer/bpe_json", {"tokenizer.json"});
  write_file(d.dir.file("tokenizer.model"), "not a sentencepiece model");
  auto tok = Tokenizer::load_dir(d.path());
  ASSERT_TRUE(tok);
  EXPECT_EQ(tok->kind(), "bpe");
}

TEST(Bpe, LongInputsStayLinear) {
  auto tok = load("tokenizer/bpe_json");
  ASSERT_TRUE(tok);
  // One pre-tokenizer piece of 200k spaces and one of 100k letters.
  const std::string spaces(200000, ' '), letters(100000, 'q');
  EXPECT_EQ(tok->decode(tok->encode(spaces + "x", false)), spaces + "x");
  EXPECT_EQ(tok->decode(tok->encode(letters, false)), letters);
}

}  // namespace
