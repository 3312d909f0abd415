// The forward pass on the CPU backend over random models: however a sequence is cut into
// steps (token by token, chunks of any size, batched with other sequences) the logits agree,
// and both checkpoint spellings of the same weights give identical logits.
#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <cstdio>
#include <memory>
#include <random>

#include "backend/backend.h"
#include "model/forward.h"
#include "model/random_model.h"
#include "test_util.h"

namespace {

using mmx_test::max_position_rel_error;

// "The same logits" up to fp32 rounding, relative to each position's max |logit|. The widest
// gap measured is the one-token recurrence against 256-token blocks over 1100 tokens (~5e-6):
// the recurrence rounds the state once per token.
constexpr double kTolerance = 2e-5;

size_t sz(int64_t n) { return static_cast<size_t>(n); }

std::vector<int32_t> random_ids(int64_t n, int64_t vocab, uint64_t seed) {
  std::mt19937_64 rng(seed);
  std::uniform_int_distribution<int32_t> dist(0, int32_t(vocab - 1));
  std::vector<int32_t> ids(sz(n));
  for (auto& id : ids) id = dist(rng);
  return ids;
}

std::unique_ptr<mmx::Backend> cpu_backend(const mmx::Model& model) {
  mmx::BackendOptions opts;
  opts.threads = 2;
  auto be = mmx::create_backend(opts);
  be->prepare(model);
  return be;
}

// Runs `ids` through a fresh state in steps of `chunk` tokens (the last step may be shorter);
// returns the logits of every position, [ids.size(), vocab].
std::vector<float> run_in_chunks(const mmx::Model& model, mmx::Backend& be, const std::vector<int32_t>& ids,
                                 int64_t chunk) {
  auto st = be.new_state();
  mmx::Forward fwd(model, be);
  std::vector<float> all, logits;
  for (size_t at = 0; at < ids.size(); at += sz(chunk)) {
    const size_t n = std::min(sz(chunk), ids.size() - at);
    mmx::StepBatch b;
    b.seqs = {{st.get(), int64_t(n), st->tokens}};
    std::vector<int32_t> rows(n);
    for (size_t i = 0; i < n; ++i) rows[i] = int32_t(i);
    fwd.run(b, std::vector<int32_t>(ids.begin() + long(at), ids.begin() + long(at + n)), rows, &logits);
    all.insert(all.end(), logits.begin(), logits.end());
  }
  return all;
}

TEST(Forward, TokenByTokenDecodeMatchesFullRecompute) {
  mmx::ModelConfig c = mmx::tiny_test_config();
  c.block_size = 16;
  auto model = mmx::make_random_model(c, 21);
  auto be = cpu_backend(*model);
  const std::vector<int32_t> ids = random_ids(50, c.vocab, 1);
  const std::vector<float> whole = run_in_chunks(*model, *be, ids, 50);
  double err = max_position_rel_error(run_in_chunks(*model, *be, ids, 1), whole, c.vocab);
  std::printf("  [measured] token by token vs one step: max rel error %.2e\n", err);
  EXPECT_LT(err, kTolerance);
  // Recomputing a prefix from scratch gives the same last-position logits as the full run.
  for (int64_t len : {17, 33}) {
    std::vector<int32_t> prefix(ids.begin(), ids.begin() + len);
    std::vector<float> again = run_in_chunks(*model, *be, prefix, len);
    std::vector<float> last(again.end() - c.vocab, again.end());
    std::vector<float> want(whole.begin() + (len - 1) * c.vocab, whole.begin() + len * c.vocab);
    EXPECT_LT(max_position_rel_error(last, want, c.vocab), kTolerance) << "prefix " << len;
  }
}

TEST(Forward, AnyPrefillChunkingGivesTheSameLogits) {
  mmx::ModelConfig c = mmx::tiny_test_config();
  c.block_size = 256;  // the official block: 1100 tokens cross four block edges
  auto model = mmx::make_random_model(c, 22);
  auto be = cpu_backend(*model);
  const std::vector<int32_t> ids = random_ids(1100, c.vocab, 2);
  const std::vector<float> whole = run_in_chunks(*model, *be, ids, 1100);
  for (int64_t chunk : {1, 7, 64, 256, 1000}) {
    double err = max_position_rel_error(run_in_chunks(*model, *be, ids, chunk), whole, c.vocab);
    std::printf("  [measured] chunks of %lld: max rel error %.2e\n", (long long)chunk, err);
    EXPECT_LT(err, kTolerance) << "chunks of " << chunk;
  }
}

TEST(Forward, BatchedSequencesMatchEachRunAlone) {
  mmx::ModelConfig c = mmx::tiny_test_config();
  c.block_size = 8;
  auto model = mmx::make_random_model(c, 23);
  auto be = cpu_backend(*model);
  mmx::Forward fwd(*model, *be);
  // Three sequences; per step each takes a prefill chunk or one decode token.
  const std::vector<std::vector<int64_t>> plan = {{30, 5, 0}, {1, 20, 17}, {1, 1, 1}, {1, 9, 1}};
  std::vector<std::vector<int32_t>> ids = {random_ids(33, c.vocab, 3), random_ids(35, c.vocab, 4),
                                           random_ids(19, c.vocab, 5)};
  std::vector<std::unique_ptr<mmx::SeqState>> batched, alone;
  for (int s = 0; s < 3; ++s) {
    batched.push_back(be->new_state());
    alone.push_back(be->new_state());
  }
  for (const auto& step : plan) {
    mmx::StepBatch b;
    std::vector<int32_t> tokens, rows;
    std::vector<std::vector<float>> want;
    for (size_t s = 0; s < 3; ++s) {
      if (step[s] == 0) continue;
      const int64_t at = batched[s]->tokens;
      std::vector<int32_t> chunk(ids[s].begin() + at, ids[s].begin() + at + step[s]);
      b.seqs.push_back({batched[s].get(), step[s], at});
      tokens.insert(tokens.end(), chunk.begin(), chunk.end());
      rows.push_back(int32_t(tokens.size() - 1));  // the last row of each sequence
      mmx::StepBatch one;
      one.seqs = {{alone[s].get(), step[s], at}};
      std::vector<float> logits;
      fwd.run(one, chunk, {int32_t(step[s] - 1)}, &logits);
      want.push_back(logits);
    }
    std::vector<float> got;
    fwd.run(b, tokens, rows, &got);
    for (size_t i = 0; i < want.size(); ++i) {
      std::vector<float> mine(got.begin() + long(i * sz(c.vocab)), got.begin() + long((i + 1) * sz(c.vocab)));
      EXPECT_LT(max_position_rel_error(mine, want[i], c.vocab), kTolerance) << "sequence " << i;
    }
  }
}

TEST(Forward, OfficialAndFusedSpellingsGiveIdenticalLogits) {
  mmx::ModelConfig c = mmx::tiny_test_config();
  c.block_size = 16;
  const std::vector<int32_t> ids = random_ids(40, c.vocab, 6);
  for (mmx::DType dtype : {mmx::DType::F32, mmx::DType::BF16}) {
    auto official = mmx::Model::from_memory(c, mmx::random_tensors(c, 24, dtype, true));
    auto fused = mmx::Model::from_memory(c, mmx::random_tensors(c, 24, dtype, false));
    auto be_official = cpu_backend(*official), be_fused = cpu_backend(*fused);
    std::vector<float> a = run_in_chunks(*official, *be_official, ids, 40);
    std::vector<float> b = run_in_chunks(*fused, *be_fused, ids, 40);
    EXPECT_EQ(a, b) << mmx::dtype_name(dtype);
    EXPECT_TRUE(std::all_of(a.begin(), a.end(), [](float x) { return std::isfinite(x); }));
  }
}

}  // namespace
