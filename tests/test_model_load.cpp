// Model::load / from_memory / synthetic: fixtures, progress and cancellation, fingerprints.
#include <gtest/gtest.h>

#include <filesystem>
#include <fstream>

#include "core/error.h"
#include "model/model.h"
#include "model/random_model.h"
#include "tokenizer/tokenizer.h"
#include "test_util.h"

namespace {

using mmx::Code;
using mmx::Model;

std::string fixture(const char* name) { return mmx_test::data_path(std::string("fixtures/") + name); }

// Writes a random model directory: config.json + model.safetensors.
void write_model(const std::string& dir, const mmx::ModelConfig& c, uint64_t seed, bool official) {
  mmx_test::write_file(dir + "/config.json", mmx::config_to_json(c, official));
  mmx::write_safetensors(dir + "/model.safetensors", mmx::random_tensors(c, seed, mmx::DType::F32, official));
}

TEST(ModelLoad, LoadsEveryFixture) {
  for (const char* name : {"tiny_a", "tiny_a_official", "tiny_b", "tiny_c"}) {
    auto m = Model::load(fixture(name));
    EXPECT_EQ(m->dir(), fixture(name));
    EXPECT_FALSE(m->is_synthetic());
    EXPECT_EQ(m->tokenizer(), nullptr) << "fixtures ship no tokenizer";
    EXPECT_EQ(m->fingerprint().size(), 16u);
    EXPECT_EQ(m->fingerprint().find_first_not_of("0123456789abcdef"), std::string::npos);
    EXPECT_EQ(int64_t(m->weights().layers.size()), m->config().layers);
  }
}

TEST(ModelLoad, FingerprintIsStableAndIgnoresSpellingAndSharding) {
  auto a = Model::load(fixture("tiny_a"));
  auto official = Model::load(fixture("tiny_a_official"));
  // Same weights and math; different spelling, block size (no effect on results) and shards.
  EXPECT_EQ(a->fingerprint(), official->fingerprint());
  EXPECT_NE(a->fingerprint(), Model::load(fixture("tiny_b"))->fingerprint());
  EXPECT_NE(a->fingerprint(), Model::load(fixture("tiny_c"))->fingerprint());
  // Pinned: a change here invalidates every saved prefix, so it must be deliberate.
  EXPECT_EQ(a->fingerprint(), "58f0adee74576f9d");
}

TEST(ModelLoad, FingerprintFollowsWeightsAndConfigNotStorage) {
  mmx::ModelConfig c = mmx::tiny_test_config();
  mmx_test::TempDir dir;
  write_model(dir.path(), c, 9, /*official=*/false);
  auto from_file = Model::load(dir.path());
  auto official = Model::from_memory(c, mmx::random_tensors(c, 9, mmx::DType::F32, true));
  EXPECT_EQ(from_file->fingerprint(), official->fingerprint());
  EXPECT_NE(official->fingerprint(), mmx::make_random_model(c, 10)->fingerprint());
  EXPECT_NE(official->fingerprint(), mmx::make_random_model(c, 9, mmx::DType::BF16)->fingerprint());

  mmx::ModelConfig scaled = c;
  scaled.mlp_alpha = 1.5;
  EXPECT_NE(official->fingerprint(), mmx::make_random_model(scaled, 9)->fingerprint());

  // One byte changed inside the sampled start of a tensor changes the digest.
  auto tensors = mmx::random_tensors(c, 9);
  tensors["model.layers.2.block_sparse_moe.experts.3.w2.weight"].bytes[1] ^= 1;
  EXPECT_NE(official->fingerprint(), Model::from_memory(c, tensors)->fingerprint());

  auto shapes = Model::synthetic(c);
  EXPECT_NE(shapes->fingerprint(), official->fingerprint());
  EXPECT_EQ(shapes->fingerprint(), Model::synthetic(c)->fingerprint());
}

TEST(ModelLoad, ReportsProgressInOrder) {
  std::vector<std::pair<double, std::string>> seen;
  Model::load(fixture("tiny_b"), [&](double f, const char* stage) {
    seen.emplace_back(f, stage);
    return true;
  });
  ASSERT_GE(seen.size(), 5u);
  EXPECT_EQ(seen.front().first, 0.0);
  EXPECT_EQ(seen.back().first, 1.0);
  for (size_t i = 1; i < seen.size(); ++i) EXPECT_LE(seen[i - 1].first, seen[i].first) << seen[i].second;
  std::set<std::string> stages;
  for (const auto& s : seen) stages.insert(s.second);
  for (const char* s : {"config", "tensors", "weights", "fingerprint", "tokenizer"}) EXPECT_TRUE(stages.count(s)) << s;
}

TEST(ModelLoad, CancelsAtAnyStage) {
  size_t calls = 0;
  Model::load(fixture("tiny_b"), [&](double, const char*) { return ++calls > 0; });
  for (size_t stop = 1; stop <= calls; ++stop) {
    size_t n = 0;
    try {
      Model::load(fixture("tiny_b"), [&](double, const char*) { return ++n < stop; });
      ADD_FAILURE() << "not cancelled at call " << stop;
    } catch (const mmx::Error& e) {
      EXPECT_EQ(e.code(), Code::Cancelled) << e.what();
      EXPECT_EQ(n, stop);
    }
  }
}

TEST(ModelLoad, RefusesBrokenDirectories) {
  mmx_test::TempDir dir;
  try {
    Model::load(dir.path());
    ADD_FAILURE();
  } catch (const mmx::Error& e) {
    EXPECT_EQ(e.code(), Code::NotFound);
    EXPECT_NE(std::string(e.what()).find("config.json"), std::string::npos);
  }
  mmx::ModelConfig c = mmx::tiny_test_config();
  write_model(dir.path(), c, 1, true);
  c.hidden = 128;  // config no longer matches the tensors
  mmx_test::write_file(dir.file("config.json"), mmx::config_to_json(c, true));
  try {
    Model::load(dir.path());
    ADD_FAILURE();
  } catch (const mmx::Error& e) {
    EXPECT_EQ(e.code(), Code::Format);
    EXPECT_NE(std::string(e.what()).find("model.embed_tokens.weight"), std::string::npos) << e.what();
    EXPECT_NE(std::string(e.what()).find("expected [256, 128]"), std::string::npos) << e.what();
  }
}

TEST(ModelLoad, FromMemoryChecksByteCounts) {
  mmx::ModelConfig c = mmx::tiny_test_config();
  auto t = mmx::random_tensors(c, 1);
  t["model.norm.weight"].bytes.pop_back();
  try {
    Model::from_memory(c, t);
    ADD_FAILURE();
  } catch (const mmx::Error& e) {
    EXPECT_EQ(e.code(), Code::InvalidArgument);
    EXPECT_NE(std::string(e.what()).find("model.norm.weight"), std::string::npos);
  }
}

}  // namespace
