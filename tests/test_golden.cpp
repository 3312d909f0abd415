// The CPU reference against the golden fixtures (tests/data/fixtures/README.md): logits of
// transformers' MiniMaxForCausalLM patched to model-spec.md, fp32, for prompts that cross block
// edges, and 16-token greedy continuations from its cached decode path.
#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <cstdio>
#include <cstring>
#include <filesystem>
#include <memory>
#include <string>

#include "backend/backend.h"
#include "model/forward.h"
#include "model/model.h"
#include "model/tensor_store.h"
#include "test_util.h"

namespace {

constexpr double kTolerance = 1e-4;  // per position, relative to that position's max |logit|
constexpr int kPrompts = 5, kGenerations = 2;

size_t sz(int64_t n) { return static_cast<size_t>(n); }

class Golden {
 public:
  explicit Golden(const std::string& path) : file_(mmx::SafetensorsFile::open(path, "golden.safetensors")) {}
  std::vector<float> floats(const std::string& name) const {
    const mmx::TensorInfo& t = info(name);
    std::vector<float> v(sz(t.numel()));
    std::memcpy(v.data(), t.data, v.size() * sizeof(float));
    return v;
  }
  std::vector<int32_t> ints(const std::string& name) const {
    std::vector<float> f = floats(name);
    return std::vector<int32_t>(f.begin(), f.end());  // ids and positions are exact in F32
  }

 private:
  const mmx::TensorInfo& info(const std::string& name) const {
    auto it = file_->tensors().find(name);
    if (it == file_->tensors().end() || it->second.dtype != mmx::DType::F32)
      throw std::runtime_error("golden file lacks F32 tensor " + name);
    return it->second;
  }
  std::unique_ptr<mmx::SafetensorsFile> file_;
};

// Max over rows of max|a - b| / max|b| within the row.
double max_row_rel_error(const std::vector<float>& got, const std::vector<float>& want, int64_t vocab) {
  double worst = 0;
  for (size_t r = 0; r < want.size() / sz(vocab); ++r)
    worst = std::max(worst, mmx_test::max_rel_error(got.data() + r * sz(vocab), want.data() + r * sz(vocab), sz(vocab)));
  return worst;
}

int32_t argmax(const float* row, int64_t n) { return int32_t(std::max_element(row, row + n) - row); }

// The model files of a fixture directory without its golden.safetensors: a directory without
// an index is loaded as "every *.safetensors in it", which would take the golden file for a shard.
std::string model_files_only(const std::string& dir, const mmx_test::TempDir& tmp) {
  for (const auto& entry : std::filesystem::directory_iterator(dir))
    if (entry.path().filename() != "golden.safetensors")
      std::filesystem::copy_file(entry.path(), tmp.file(entry.path().filename().string()));
  return tmp.path();
}

class GoldenModel {
 public:
  explicit GoldenModel(const std::string& dir) : model_(mmx::Model::load(model_files_only(dir, tmp_))) {
    mmx::BackendOptions opts;
    opts.threads = 2;
    be_ = mmx::create_backend(opts);
    be_->prepare(*model_);
  }
  int64_t vocab() const { return model_->config().vocab; }

  // Runs `ids` through a fresh state in chunks of `chunk` tokens (0: one step); returns the
  // logits at `positions` (ascending), [positions.size(), V].
  std::vector<float> prompt_logits(const std::vector<int32_t>& ids, const std::vector<int32_t>& positions,
                                   int64_t chunk = 0) {
    auto st = be_->new_state();
    mmx::Forward fwd(*model_, *be_);
    std::vector<float> all, logits;
    const size_t step = chunk > 0 ? sz(chunk) : ids.size();
    for (size_t at = 0; at < ids.size(); at += step) {
      const size_t n = std::min(step, ids.size() - at);
      std::vector<int32_t> rows;
      for (int32_t p : positions)
        if (size_t(p) >= at && size_t(p) < at + n) rows.push_back(int32_t(size_t(p) - at));
      mmx::StepBatch b;
      b.seqs = {{st.get(), int64_t(n), st->tokens}};
      fwd.run(b, std::vector<int32_t>(ids.begin() + long(at), ids.begin() + long(at + n)), rows, &logits);
      all.insert(all.end(), logits.begin(), logits.end());
    }
    return all;
  }

  // Prefills `prompt`, then decodes greedily for `steps` tokens, feeding the fixture's tokens
  // (`expected`) so one early difference does not hide later ones. Returns the logits that
  // chose each token, [steps, V].
  std::vector<float> greedy_logits(const std::vector<int32_t>& prompt, const std::vector<int32_t>& expected) {
    auto st = be_->new_state();
    mmx::Forward fwd(*model_, *be_);
    std::vector<float> all, logits;
    std::vector<int32_t> feed = prompt;
    for (size_t j = 0; j < expected.size(); ++j) {
      mmx::StepBatch b;
      b.seqs = {{st.get(), int64_t(feed.size()), st->tokens}};
      fwd.run(b, feed, {int32_t(feed.size() - 1)}, &logits);
      all.insert(all.end(), logits.begin(), logits.end());
      feed = {expected[j]};
    }
    return all;
  }

 private:
  mmx_test::TempDir tmp_;
  std::shared_ptr<mmx::Model> model_;
  std::unique_ptr<mmx::Backend> be_;
};

class GoldenTest : public ::testing::TestWithParam<std::string> {
 protected:
  std::string dir() const { return mmx_test::data_path("fixtures/" + GetParam()); }
  Golden golden() const { return Golden(dir() + "/golden.safetensors"); }
};

TEST_P(GoldenTest, PromptLogitsMatchTheFixtures) {
  GoldenModel m(dir());
  Golden g = golden();
  for (int k = 0; k < kPrompts; ++k) {
    const std::string p = "prompt." + std::to_string(k);
    std::vector<int32_t> ids = g.ints(p + ".ids");
    double err = max_row_rel_error(m.prompt_logits(ids, g.ints(p + ".positions")), g.floats(p + ".logits"), m.vocab());
    std::printf("  [measured] %s prompt %d (%zu tokens): max rel error %.2e\n", GetParam().c_str(), k, ids.size(), err);
    EXPECT_LE(err, kTolerance) << GetParam() << " " << p;
  }
}

TEST_P(GoldenTest, ChunkedPrefillMatchesTheFixtures) {
  GoldenModel m(dir());
  Golden g = golden();
  const std::string p = "prompt." + std::to_string(kPrompts - 1);  // the 700-token prompt
  std::vector<int32_t> ids = g.ints(p + ".ids"), positions = g.ints(p + ".positions");
  std::vector<float> want = g.floats(p + ".logits");
  for (int64_t chunk : {1, 7, 100, 256}) {
    double err = max_row_rel_error(m.prompt_logits(ids, positions, chunk), want, m.vocab());
    std::printf("  [measured] %s chunks of %lld: max rel error %.2e\n", GetParam().c_str(), (long long)chunk, err);
    EXPECT_LE(err, kTolerance) << GetParam() << " chunks of " << chunk;
  }
}

TEST_P(GoldenTest, GreedyContinuationsMatchTheFixtures) {
  GoldenModel m(dir());
  Golden g = golden();
  for (int k = 0; k < kGenerations; ++k) {
    const std::string p = "gen." + std::to_string(k);
    std::vector<int32_t> tokens = g.ints(p + ".tokens");
    std::vector<float> logits = m.greedy_logits(g.ints(p + ".prompt"), tokens);
    double err = max_row_rel_error(logits, g.floats(p + ".logits"), m.vocab());
    std::printf("  [measured] %s generation %d: max rel error %.2e\n", GetParam().c_str(), k, err);
    EXPECT_LE(err, kTolerance) << GetParam() << " " << p;
    for (size_t j = 0; j < tokens.size(); ++j)
      EXPECT_EQ(argmax(logits.data() + j * sz(m.vocab()), m.vocab()), tokens[j]) << p << " step " << j;
  }
}

INSTANTIATE_TEST_SUITE_P(Fixtures, GoldenTest, ::testing::Values("tiny_a", "tiny_b", "tiny_c"));

TEST(Golden, OfficialSpellingGivesTheSameLogits) {
  // tiny_a_official: the same bf16 weights as tiny_a, official config, three shards, and the
  // default block size 256 where tiny_a uses 64. Prompts within one block of both run the
  // same arithmetic and must match exactly; longer ones differ only by rounding.
  GoldenModel transformers_spelling(mmx_test::data_path("fixtures/tiny_a"));
  GoldenModel official(mmx_test::data_path("fixtures/tiny_a_official"));
  Golden g(mmx_test::data_path("fixtures/tiny_a/golden.safetensors"));
  for (int k = 0; k < kPrompts; ++k) {
    const std::string p = "prompt." + std::to_string(k);
    std::vector<int32_t> ids = g.ints(p + ".ids"), positions = g.ints(p + ".positions");
    std::vector<float> a = transformers_spelling.prompt_logits(ids, positions);
    std::vector<float> b = official.prompt_logits(ids, positions);
    if (ids.size() <= 64) EXPECT_EQ(a, b) << p;
    EXPECT_LE(max_row_rel_error(b, a, official.vocab()), 1e-5) << p;
    EXPECT_LE(max_row_rel_error(b, g.floats(p + ".logits"), official.vocab()), kTolerance) << p;
  }
  std::vector<int32_t> prompt = g.ints("gen.0.prompt"), tokens = g.ints("gen.0.tokens");
  EXPECT_EQ(transformers_spelling.greedy_logits(prompt, tokens), official.greedy_logits(prompt, tokens));
}

}  // namespace
