// StreamDecoder: deltas are whole UTF-8 characters, and deltas + flush reproduce decode().
#include <gtest/gtest.h>

#include <random>

#include "core/error.h"
#include "test_util.h"
#include "tokenizer/tokenizer.h"
#include "tokenizer/utf8.h"

using mmx::StreamDecoder;
using mmx::Tokenizer;
using mmx_test::data_path;

namespace {

const std::string kReplacement = "\xEF\xBF\xBD";

std::shared_ptr<Tokenizer> load(const char* rel) {
  return std::shared_ptr<Tokenizer>(Tokenizer::load_dir(data_path(rel)));
}

// The ids of the tokens that stand for exactly one byte (byte-level symbols or <0xAB> pieces).
std::vector<int32_t> byte_tokens(const Tokenizer& tok) {
  std::vector<int32_t> by_byte(256, -1);
  for (int32_t id = 0; id < tok.vocab_size(); ++id) {
    const std::string b = tok.token_bytes(id);
    if (b.size() == 1 && by_byte[uint8_t(b[0])] < 0 && !tok.is_special(id))
      by_byte[uint8_t(b[0])] = id;
  }
  return by_byte;
}

// Streams `ids` and checks every delta and the total.
void check_stream(const Tokenizer& tok, const std::vector<int32_t>& ids) {
  StreamDecoder dec(tok);
  std::string streamed;
  for (int32_t id : ids) {
    const std::string delta = dec.push(id);
    ASSERT_TRUE(mmx::utf8::is_valid(delta)) << "delta is not valid UTF-8";
    streamed += delta;
  }
  const std::string tail = dec.flush();
  ASSERT_TRUE(mmx::utf8::is_valid(tail));
  EXPECT_EQ(streamed + tail, tok.decode(ids));
}

class StreamBoth : public ::testing::TestWithParam<const char*> {};

TEST_P(StreamBoth, RandomTokenSequences) {
  auto tok = load(GetParam());
  ASSERT_TRUE(tok);
  std::mt19937 rng(1234);
  for (int trial = 0; trial < 300; ++trial) {
    std::vector<int32_t> ids(1 + rng() % 40);
    for (int32_t& id : ids) id = int32_t(rng() % uint32_t(tok->vocab_size()));
    check_stream(*tok, ids);
  }
}

TEST_P(StreamBoth, ByteTokenSequences) {
  auto tok = load(GetParam());
  ASSERT_TRUE(tok);
  const auto by_byte = byte_tokens(*tok);
  std::mt19937 rng(99);
  // Multi-byte characters split into single bytes, with stray bytes mixed in now and then.
  const std::vector<std::string> chars = {"a",        "é", "世", "😀", "👩‍👩‍👧",
                                          "\xCC\x81", " "};
  for (int trial = 0; trial < 300; ++trial) {
    std::string bytes;
    for (int n = 1 + int(rng() % 12); n > 0; --n) {
      if (rng() % 5 == 0)
        bytes += char(0x80 + rng() % 0x80);  // continuation or lead byte out of place
      else
        bytes += chars[rng() % chars.size()];
    }
    if (rng() % 3 == 0) bytes.pop_back();  // cut the last character short
    std::vector<int32_t> ids;
    for (char c : bytes) {
      ASSERT_GE(by_byte[uint8_t(c)], 0) << "no token for byte " << int(uint8_t(c));
      ids.push_back(by_byte[uint8_t(c)]);
    }
    check_stream(*tok, ids);
  }
}

TEST_P(StreamBoth, EncodedTextStreamsBackExactly) {
  auto tok = load(GetParam());
  ASSERT_TRUE(tok);
  const std::string text =
      "Streaming 世界 👩‍👩‍👧‍👦 caf\xC3\xA9\n\tdone <end_of_sentence> tail";
  const auto ids = tok->encode(text, true);
  check_stream(*tok, ids);
  EXPECT_EQ(tok->decode(ids), text);
}

INSTANTIATE_TEST_SUITE_P(Tokenizers, StreamBoth,
                         ::testing::Values("tokenizer/bpe_json", "tokenizer/spm"));

TEST(Stream, HoldsIncompleteCharactersBack) {
  auto tok = load("tokenizer/bpe_json");
  ASSERT_TRUE(tok);
  const auto by_byte = byte_tokens(*tok);
  StreamDecoder dec(*tok);
  const std::string emoji = "\xF0\x9F\x98\x80";
  EXPECT_EQ(dec.push(by_byte[0xF0]), "");
  EXPECT_EQ(dec.push(by_byte[0x9F]), "");
  EXPECT_EQ(dec.push(by_byte[0x98]), "");
  EXPECT_EQ(dec.push(by_byte[0x80]), emoji);
  // Certainly invalid bytes come out as U+FFFD at once, not at flush.
  EXPECT_EQ(dec.push(by_byte[0xFF]), kReplacement);
  EXPECT_EQ(dec.push(by_byte[0xE4]), "");
  EXPECT_EQ(dec.push(by_byte['A']), kReplacement + "A");
  // An incomplete character at the end becomes one U+FFFD at flush.
  EXPECT_EQ(dec.push(by_byte[0xE4]), "");
  EXPECT_EQ(dec.push(by_byte[0xB8]), "");
  EXPECT_EQ(dec.flush(), kReplacement);
  EXPECT_EQ(dec.flush(), "");
}

TEST(Stream, BadIdLeavesDecoderUnchanged) {
  auto tok = load("tokenizer/bpe_json");
  ASSERT_TRUE(tok);
  const auto by_byte = byte_tokens(*tok);
  StreamDecoder dec(*tok);
  EXPECT_EQ(dec.push(by_byte[0xC3]), "");
  EXPECT_THROW(dec.push(-1), mmx::Error);
  EXPECT_THROW(dec.push(tok->vocab_size()), mmx::Error);
  EXPECT_EQ(dec.push(by_byte[0xA9]), "\xC3\xA9");
}

TEST(Stream, SentencepieceLeadingSpacePerStream) {
  auto tok = load("tokenizer/spm");
  ASSERT_TRUE(tok);
  const int32_t the = tok->token_id("\xE2\x96\x81the");
  ASSERT_GE(the, 0);
  StreamDecoder dec(*tok);
  EXPECT_EQ(dec.push(the), "the");
  EXPECT_EQ(dec.push(the), " the");
  EXPECT_EQ(dec.flush(), "");
  EXPECT_EQ(dec.push(the), "the");  // flush starts a new stream
}

}  // namespace
