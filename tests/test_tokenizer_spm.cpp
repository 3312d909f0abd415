// Sentencepiece (tokenizer.model) against the Python sentencepiece package (fixtures from
// tools/tokenizer_fixtures/make_tokenizer_fixtures.py), plus malformed models.
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

const json& fixture() {
  static const json j = json::parse(read_file(data_path("tokenizer/spm_cases.json")));
  return j;
}

std::unique_ptr<Tokenizer> load_spm() {
  auto tok = Tokenizer::load_dir(data_path("tokenizer/spm"));
  EXPECT_NE(tok, nullptr);
  return tok;
}

// A temp dir holding the fixture model plus the given tokenizer_config.json.
struct SpmDir {
  TempDir dir;
  explicit SpmDir(const std::string& config) {
    write_file(dir.file("tokenizer.model"), read_file(data_path("tokenizer/spm/tokenizer.model")));
    if (!config.empty()) write_file(dir.file("tokenizer_config.json"), config);
  }
};

std::string load_error(const std::string& dir) {
  try {
    Tokenizer::load_dir(dir);
  } catch (const mmx::Error& e) {
    return std::string(mmx::code_name(e.code())) + ": " + e.what();
  }
  return "loaded";
}

TEST(Spm, MatchesPythonSentencepiece) {
  auto tok = load_spm();
  ASSERT_TRUE(tok);
  EXPECT_EQ(tok->kind(), "sentencepiece");
  EXPECT_EQ(tok->vocab_size(), fixture()["vocab_size"].get<int32_t>());
  const json& cases = fixture()["cases"];
  ASSERT_GT(cases.size(), 30u);
  for (const json& c : cases) {
    const std::string text = c["text"];
    SCOPED_TRACE("text: " + text.substr(0, 80));
    const auto ids = tok->encode(text, true);
    EXPECT_EQ(ids, c["ids"].get<std::vector<int32_t>>());
    EXPECT_EQ(tok->encode(text, false), c["ids_plain"].get<std::vector<int32_t>>());
    EXPECT_EQ(tok->decode(ids), c["decoded"].get<std::string>());
  }
}

TEST(Spm, PieceTable) {
  auto tok = load_spm();
  ASSERT_TRUE(tok);
  int bytes = 0;
  for (const json& p : fixture()["pieces"]) {
    const int32_t id = p["id"];
    const std::string piece = p["piece"];
    SCOPED_TRACE(piece);
    EXPECT_EQ(tok->token_id(piece), id);
    if (p["byte"].get<bool>()) {
      ++bytes;
      ASSERT_EQ(tok->token_bytes(id).size(), 1u);
      EXPECT_EQ(uint8_t(tok->token_bytes(id)[0]), std::stoi(piece.substr(3, 2), nullptr, 16));
    } else if (p["control"].get<bool>()) {
      EXPECT_TRUE(tok->is_special(id));
      EXPECT_EQ(tok->token_bytes(id), piece);
    } else if (!p["unknown"].get<bool>()) {
      std::string expected;
      for (size_t i = 0; i < piece.size();)
        if (piece.compare(i, 3, "\xE2\x96\x81") == 0)
          expected += ' ', i += 3;
        else
          expected += piece[i++];
      EXPECT_EQ(tok->token_bytes(id), expected);
    }
  }
  EXPECT_EQ(bytes, 256);
  EXPECT_EQ(tok->token_bytes(fixture()["unk_id"]), " \xE2\x81\x87 ");
  EXPECT_EQ(tok->token_id("no such piece"), -1);
  EXPECT_TRUE(tok->is_special(tok->token_id("<end_of_sentence>")));  // user-defined symbol
  EXPECT_FALSE(tok->is_special(tok->token_id("\xE2\x96\x81the")));
}

TEST(Spm, LeadingSpaceOfFirstPieceIsDropped) {
  auto tok = load_spm();
  ASSERT_TRUE(tok);
  const int32_t the = tok->token_id("\xE2\x96\x81the"), space = tok->token_id("\xE2\x96\x81");
  ASSERT_GE(the, 0);
  ASSERT_GE(space, 0);
  EXPECT_EQ(tok->token_bytes(the), " the");
  EXPECT_EQ(tok->token_bytes_at_start(the), "the");
  EXPECT_EQ(tok->decode({the, the}), "the the");
  EXPECT_EQ(tok->decode({space, the}), " the");  // only the first piece's space goes
  const int32_t eos = tok->token_id("<end_of_sentence>");
  EXPECT_EQ(tok->decode({eos, the}), "<end_of_sentence> the");
}

TEST(Spm, ControlPiecesAreSpecialOnlyWhenAsked) {
  auto tok = load_spm();
  ASSERT_TRUE(tok);
  const int32_t s_end = tok->token_id("</s>");
  ASSERT_GE(s_end, 0);
  const auto with = tok->encode("done</s>next", true);
  EXPECT_EQ(std::count(with.begin(), with.end(), s_end), 1);
  EXPECT_EQ(tok->decode(with), "done</s>next");
  const auto without = tok->encode("done</s>next", false);
  EXPECT_EQ(std::count(without.begin(), without.end(), s_end), 0);
  EXPECT_EQ(tok->decode(without), "done</s>next");
}

TEST(Spm, BosEosPreferConfigThenFamilyMarkers) {
  auto tok = load_spm();
  ASSERT_TRUE(tok);
  // No tokenizer_config.json: the family's markers win over the model's <s> and </s>.
  EXPECT_EQ(tok->bos_id(), tok->token_id("<beginning_of_sentence>"));
  EXPECT_EQ(tok->eos_id(), tok->token_id("<end_of_sentence>"));
  SpmDir d(R"({"bos_token": {"content": "<s>"}, "eos_token": "</s>"})");
  auto configured = Tokenizer::load_dir(d.dir.path());
  ASSERT_TRUE(configured);
  EXPECT_EQ(configured->bos_id(), fixture()["bos_id"].get<int32_t>());
  EXPECT_EQ(configured->eos_id(), fixture()["eos_id"].get<int32_t>());
}

TEST(Spm, TokensAddedByConfig) {
  SpmDir d(R"({"added_tokens_decoder": {
      "2000": {"content": "<tool_call>", "special": true},
      "2001": {"content": "<note>", "special": false}}})");
  auto tok = Tokenizer::load_dir(d.dir.path());
  ASSERT_TRUE(tok);
  EXPECT_EQ(tok->vocab_size(), 2002);
  auto ids = tok->encode("a<tool_call>b<note>c", true);
  EXPECT_EQ(std::count(ids.begin(), ids.end(), 2000), 1);
  EXPECT_EQ(std::count(ids.begin(), ids.end(), 2001), 1);
  EXPECT_EQ(tok->decode(ids), "a<tool_call>b<note>c");
  ids = tok->encode("a<tool_call>b<note>c", false);
  EXPECT_EQ(std::count(ids.begin(), ids.end(), 2000), 0);  // special: plain text here
  EXPECT_EQ(std::count(ids.begin(), ids.end(), 2001), 1);  // not special: always recognised
  EXPECT_TRUE(tok->is_special(2000));
  EXPECT_FALSE(tok->is_special(2001));

  SpmDir gap(R"({"added_tokens_decoder": {"2005": {"content": "<x>"}}})");
  EXPECT_NE(load_error(gap.dir.path()).find("leaves a gap"), std::string::npos);
  SpmDir clash(R"({"added_tokens_decoder": {"5": {"content": "<x>"}}})");
  EXPECT_NE(load_error(clash.dir.path()).find("does not match piece 5"), std::string::npos);
  SpmDir bad_eos(R"({"eos_token": "<eos>"})");
  EXPECT_NE(load_error(bad_eos.dir.path()).find("not in the vocabulary"), std::string::npos);
}

TEST(Spm, MalformedModels) {
  const std::string model = read_file(data_path("tokenizer/spm/tokenizer.model"));
  std::mt19937 rng(11);
  std::vector<std::string> broken = {"", "not a model", model.substr(0, model.size() / 2),
                                     model.substr(0, 7)};
  for (int i = 0; i < 20; ++i) {
    std::string junk(size_t(rng() % 3000 + 1), '\0');
    for (char& c : junk) c = char(rng());
    broken.push_back(junk);
  }
  std::string flipped = model;
  for (int i = 0; i < 50; ++i) flipped[rng() % flipped.size()] ^= char(1 + rng() % 255);
  broken.push_back(flipped);
  for (int i = 0; i < 100; ++i) {  // single-byte edits: most keep the protobuf well-formed
    std::string edited = model;
    edited[rng() % edited.size()] = char(rng());
    broken.push_back(edited);
  }
  for (const std::string& bytes : broken) {
    TempDir dir;
    write_file(dir.file("tokenizer.model"), bytes);
    std::string result = load_error(dir.path());
    // A random edit may still leave a loadable model; anything else must be a Format error.
    if (result == "loaded") {
      auto tok = Tokenizer::load_dir(dir.path());
      tok->decode(tok->encode("Hello <end_of_sentence> 世界 \t", true));
      continue;
    }
    EXPECT_EQ(result.rfind(mmx::code_name(Code::Format), 0), 0u) << result;
    EXPECT_NE(result.find("tokenizer.model"), std::string::npos) << result;
  }
}

TEST(Spm, BadArguments) {
  auto tok = load_spm();
  ASSERT_TRUE(tok);
  for (const std::string bad : {"\xff", "ab\xe2\x82", "\xf0\x9f\x98"}) {
    EXPECT_THROW(tok->encode(bad, true), mmx::Error);
    EXPECT_THROW(tok->encode(bad, false), mmx::Error);
  }
  for (int32_t id : {-5, tok->vocab_size()}) {
    EXPECT_THROW(tok->token_bytes(id), mmx::Error);
    EXPECT_THROW(tok->token_bytes_at_start(id), mmx::Error);
    EXPECT_THROW(tok->decode({id}), mmx::Error);
  }
}

}  // namespace
