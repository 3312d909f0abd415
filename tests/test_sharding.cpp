// Tensor-parallel attention and expert-parallel MoE on the CPU: R ranks as R threads, each
// with its own CpuBackend holding only its slice of the weights, joined by the in-process
// communicator. Their logits must match the unsharded forward pass over prefill chunks and
// decode steps of batched sequences (states stay per rank).
#include <gtest/gtest.h>

#include <algorithm>
#include <chrono>
#include <cmath>
#include <cstdio>
#include <exception>
#include <memory>
#include <random>
#include <string>
#include <thread>

#include "backend/backend.h"
#include "backend/cpu/inproc_comm.h"
#include "backend/shard.h"
#include "core/error.h"
#include "model/forward.h"
#include "model/random_model.h"
#include "test_util.h"

namespace {

using mmx_test::max_position_rel_error;

using mmx::Shard;
using mmx::ShardPlan;

// Sharding only reorders fp32 sums (per-rank partial products, then the all-reduce).
constexpr double kTolerance = 1e-5;

size_t sz(int64_t n) { return static_cast<size_t>(n); }

std::unique_ptr<mmx::Backend> cpu_backend() {
  mmx::BackendOptions opts;
  opts.threads = 1;  // the ranks are the parallelism
  return mmx::create_backend(opts);
}

// 8 heads (2 KV heads), 8 experts, 5 layers with a softmax layer in the middle so that local
// and global layer indices differ, and a small block so chunks cross block edges.
mmx::ModelConfig shard_test_config() {
  mmx::ModelConfig c = mmx::tiny_test_config();
  c.heads = 8;
  c.kv_heads = 2;
  c.head_dim = 16;
  c.experts = 8;
  c.layers = 5;
  c.layer_kinds = {mmx::LayerKind::Lightning, mmx::LayerKind::Lightning, mmx::LayerKind::Softmax,
                   mmx::LayerKind::Lightning, mmx::LayerKind::Lightning};
  c.block_size = 8;
  return c;
}

// Steps over two sequences: each entry is {tokens of sequence 0, tokens of sequence 1}
// (0: not in this step). Prefill in chunks of different sizes, then decode tokens.
const std::vector<std::pair<int64_t, int64_t>> kPlan = {{13, 0}, {11, 20}, {1, 1}, {1, 5}, {1, 1}, {1, 1}};

// Runs kPlan from fresh states; returns the logits of every row of every step.
std::vector<float> run_plan(const mmx::Model& model, mmx::Backend& be) {
  const int64_t V = model.config().vocab;
  std::mt19937_64 rng(7);
  std::uniform_int_distribution<int32_t> id(0, int32_t(V - 1));
  std::unique_ptr<mmx::SeqState> st[2] = {be.new_state(), be.new_state()};
  mmx::Forward fwd(model, be);
  std::vector<float> all, logits;
  for (const auto& step : kPlan) {
    mmx::StepBatch b;
    std::vector<int32_t> tokens, rows;
    for (int s = 0; s < 2; ++s) {
      const int64_t n = s == 0 ? step.first : step.second;
      if (n == 0) continue;
      b.seqs.push_back({st[s].get(), n, st[s]->tokens});
      for (int64_t i = 0; i < n; ++i) {
        rows.push_back(int32_t(tokens.size()));
        tokens.push_back(id(rng));
      }
    }
    fwd.run(b, tokens, rows, &logits);
    all.insert(all.end(), logits.begin(), logits.end());
  }
  return all;
}

// Runs fn(rank, backend) on one thread per rank, each backend prepared as that rank. A rank
// that throws aborts the group so the others cannot hang; the first error is rethrown.
struct Ranks {
  std::vector<std::unique_ptr<mmx::Backend>> backends;
  std::vector<std::unique_ptr<mmx::cpu::InprocCommunicator>> comms;
};

Ranks make_ranks(const mmx::Model& model, int world, bool split_attention, bool split_experts) {
  Ranks r;
  r.comms = mmx::cpu::InprocGroup::make(world);
  for (int i = 0; i < world; ++i) {
    r.backends.push_back(cpu_backend());
    r.backends.back()->set_shard(Shard{i, world, split_attention, split_experts}, r.comms[sz(i)].get());
    r.backends.back()->prepare(model);
  }
  return r;
}

template <class Fn>
void on_each_rank(Ranks& ranks, Fn fn) {
  const size_t world = ranks.backends.size();
  std::vector<std::exception_ptr> errors(world);
  std::vector<std::thread> threads;
  for (size_t i = 0; i < world; ++i)
    threads.emplace_back([&, i] {
      try {
        fn(int(i), *ranks.backends[i]);
      } catch (...) {
        errors[i] = std::current_exception();
        ranks.comms[i]->abort();
      }
    });
  for (auto& t : threads) t.join();
  for (auto& e : errors)
    if (e) std::rethrow_exception(e);
}

// The sharded run's logits on every rank, checked against the unsharded run.
void expect_sharded_matches(const mmx::ModelConfig& c, int world, bool split_attention, bool split_experts,
                            uint64_t seed) {
  auto model = mmx::make_random_model(c, seed);
  auto whole = cpu_backend();
  whole->prepare(*model);
  const std::vector<float> want = run_plan(*model, *whole);

  Ranks ranks = make_ranks(*model, world, split_attention, split_experts);
  std::vector<std::vector<float>> got(sz(world));
  on_each_rank(ranks, [&](int rank, mmx::Backend& be) { got[sz(rank)] = run_plan(*model, be); });
  const double err = max_position_rel_error(got[0], want, c.vocab);
  std::printf("  [measured] world %d, attention %s, experts %s: max rel error %.2e\n", world,
              split_attention ? "split" : "replicated", split_experts ? "split" : "replicated", err);
  EXPECT_LE(err, kTolerance);
  // Replicated parts see identical all-reduced inputs, so every rank computes the same bits.
  for (int r = 1; r < world; ++r) EXPECT_EQ(got[sz(r)], got[0]) << "rank " << r;
}

TEST(InprocComm, AllReduceAndAllGatherGiveEveryRankTheSameResult) {
  constexpr int kWorld = 3;
  auto comms = mmx::cpu::InprocGroup::make(kWorld);
  std::vector<std::vector<float>> sums(kWorld), gathered(kWorld);
  std::vector<std::vector<uint16_t>> bf(kWorld);
  std::vector<std::thread> threads;
  for (int r = 0; r < kWorld; ++r)
    threads.emplace_back([&, r] {
      auto& comm = *comms[sz(r)];
      for (int rep = 0; rep < 50; ++rep) {  // repeated calls must not race on shared slots
        sums[sz(r)].assign(7, 0.0f);
        for (int i = 0; i < 7; ++i) sums[sz(r)][sz(i)] = float(r * 10 + i + rep);
        comm.all_reduce_sum(sums[sz(r)].data(), 7, mmx::DType::F32, nullptr);
      }
      bf[sz(r)] = {mmx::f32_to_bf16(float(r + 1)), mmx::f32_to_bf16(0.5f)};
      comm.all_reduce_sum(bf[sz(r)].data(), 2, mmx::DType::BF16, nullptr);
      const float mine[2] = {float(r), float(-r)};
      gathered[sz(r)].assign(2 * kWorld, 0.0f);
      comm.all_gather(mine, gathered[sz(r)].data(), 2, mmx::DType::F32, nullptr);
    });
  for (auto& t : threads) t.join();
  for (int r = 0; r < kWorld; ++r) {
    for (int i = 0; i < 7; ++i) EXPECT_EQ(sums[sz(r)][sz(i)], float(30 + 3 * i + 3 * 49)) << r << " " << i;
    EXPECT_EQ(mmx::bf16_to_f32(bf[sz(r)][0]), 6.0f);
    EXPECT_EQ(mmx::bf16_to_f32(bf[sz(r)][1]), 1.5f);
    EXPECT_EQ(gathered[sz(r)], std::vector<float>({0, 0, 1, -1, 2, -2}));
  }
}

TEST(InprocComm, MismatchedCallsAndAbortThrowInsteadOfHanging) {
  {
    auto comms = mmx::cpu::InprocGroup::make(2);
    std::vector<mmx::Code> codes(2, mmx::Code::Ok);
    std::vector<std::thread> threads;
    for (int r = 0; r < 2; ++r)
      threads.emplace_back([&, r] {
        std::vector<float> buf(sz(4 + r));  // ranks disagree on the size
        try {
          comms[sz(r)]->all_reduce_sum(buf.data(), 4 + r, mmx::DType::F32, nullptr);
        } catch (const mmx::Error& e) {
          codes[sz(r)] = e.code();
        }
      });
    for (auto& t : threads) t.join();
    EXPECT_EQ(codes[0], mmx::Code::Internal);
    EXPECT_EQ(codes[1], mmx::Code::Internal);
  }
  {
    auto comms = mmx::cpu::InprocGroup::make(2);
    mmx::Code code = mmx::Code::Ok;
    std::thread waiter([&] {
      float x = 1;
      try {
        comms[1]->all_reduce_sum(&x, 1, mmx::DType::F32, nullptr);  // rank 0 never comes
      } catch (const mmx::Error& e) {
        code = e.code();
      }
    });
    std::this_thread::sleep_for(std::chrono::milliseconds(20));
    comms[0]->abort();
    waiter.join();
    EXPECT_EQ(code, mmx::Code::State);
  }
}

TEST(ShardPlan, SplitsHeadsKvHeadsAndExperts) {
  mmx::ModelConfig c = shard_test_config();  // 8 heads, 2 KV heads, 8 experts, F 96
  ShardPlan p = ShardPlan::make(c, Shard{3, 4});
  EXPECT_EQ(p.head0, 6);
  EXPECT_EQ(p.heads, 2);
  EXPECT_EQ(p.kv_head0, 1);  // 4 heads per KV head: heads 6, 7 share KV head 1 (replicated on ranks 2, 3)
  EXPECT_EQ(p.kv_heads, 1);
  EXPECT_EQ(p.expert0, 6);
  EXPECT_EQ(p.experts, 2);
  EXPECT_EQ(p.ffn, 96);
  p = ShardPlan::make(c, Shard{1, 2});
  EXPECT_EQ(p.kv_head0, 1);
  EXPECT_EQ(p.kv_heads, 1);
  // 6 experts over 4 ranks: 2 groups of 3 experts, each expert's FFN split in 2.
  c.experts = 6;
  p = ShardPlan::make(c, Shard{3, 4});
  EXPECT_EQ(p.expert_groups, 2);
  EXPECT_EQ(p.expert0, 3);
  EXPECT_EQ(p.experts, 3);
  EXPECT_EQ(p.ffn0, 48);
  EXPECT_EQ(p.ffn, 48);
  // Nothing split: the whole model.
  p = ShardPlan::make(c, Shard{1, 4, false, false});
  EXPECT_FALSE(p.sharded());
  EXPECT_EQ(p.heads, 8);
  EXPECT_EQ(p.experts, 6);
}

TEST(ShardPlan, CountsThatDoNotDivideAreRejectedClearly) {
  mmx::ModelConfig c = shard_test_config();
  auto message = [](const mmx::ModelConfig& cfg, Shard s) -> std::string {
    try {
      ShardPlan::make(cfg, s);
    } catch (const mmx::Error& e) {
      EXPECT_EQ(e.code(), mmx::Code::Unsupported) << e.what();
      return e.what();
    }
    return "no error";
  };
  EXPECT_NE(message(c, Shard{0, 3}).find("8 attention heads to divide evenly among 3 ranks"), std::string::npos);
  c.heads = 12;  // 12 heads over 4 ranks is fine, but 3 KV heads neither divide 4 nor 4 them
  c.kv_heads = 3;
  EXPECT_NE(message(c, Shard{0, 4}).find("3 KV heads"), std::string::npos);
  c = shard_test_config();
  c.experts = 3;
  c.intermediate = 97;
  EXPECT_NE(message(c, Shard{0, 2, false, true}).find("3 experts do not divide among 2 ranks"), std::string::npos);
  EXPECT_EQ(message(c, Shard{0, 2, false, false}), "no error");  // replicated: nothing to divide
  EXPECT_THROW(ShardPlan::make(c, Shard{2, 2}), mmx::Error);     // rank outside the world

  // The backend reports it at prepare(), before any weight is touched.
  auto model = mmx::make_random_model(shard_test_config(), 3);
  auto comms = mmx::cpu::InprocGroup::make(3);
  auto be = cpu_backend();
  be->set_shard(Shard{0, 3}, comms[0].get());
  EXPECT_THROW(be->prepare(*model), mmx::Error);
  auto wrong = cpu_backend();
  EXPECT_THROW(wrong->set_shard(Shard{1, 3}, comms[0].get()), mmx::Error);  // communicator of rank 0
}

TEST(Sharding, TensorParallelAttentionMatchesUnsharded) {
  for (int world : {2, 4}) expect_sharded_matches(shard_test_config(), world, true, false, 31);
}

TEST(Sharding, ExpertParallelMoeMatchesUnsharded) {
  for (int world : {2, 4}) expect_sharded_matches(shard_test_config(), world, false, true, 32);
}

TEST(Sharding, TensorAndExpertParallelTogetherMatchUnsharded) {
  for (int world : {2, 4}) expect_sharded_matches(shard_test_config(), world, true, true, 33);
}

TEST(Sharding, OneHeadPerRankWithReplicatedKvHeadsMatchesUnsharded) {
  mmx::ModelConfig c = mmx::tiny_test_config();  // 4 heads, 2 KV heads, layer 3 softmax
  c.block_size = 8;
  expect_sharded_matches(c, 4, true, true, 34);
}

TEST(Sharding, ExpertsSplitAlongTheirFfnWhenTheyDoNotDivide) {
  mmx::ModelConfig c = shard_test_config();
  c.experts = 6;  // over 4 ranks: 2 groups of 3 experts, each expert's FFN in halves
  expect_sharded_matches(c, 4, false, true, 35);
  c.experts = 3;  // over 2 ranks: every rank holds half of every expert
  expect_sharded_matches(c, 2, true, true, 36);
}

TEST(Sharding, RanksHoldOnlyTheirShareOfTheState) {
  auto model = mmx::make_random_model(shard_test_config(), 37);
  auto whole = cpu_backend();
  whole->prepare(*model);
  Ranks tp = make_ranks(*model, 4, true, false);
  // 8 heads over 4 ranks: a quarter of each lightning state; one of 2 KV heads per rank.
  EXPECT_EQ(tp.backends[0]->state_bytes(100) * 4, whole->state_bytes(100) + 100 * 2 * 16 * 4 * 2);
  auto st = tp.backends[0]->new_state();
  std::vector<uint8_t> image;
  EXPECT_THROW(tp.backends[0]->save_state(*st, &image), mmx::Error);  // holds 2 of 8 heads
  // Expert parallelism alone leaves attention whole: states save as usual.
  Ranks ep = make_ranks(*model, 2, false, true);
  EXPECT_EQ(ep.backends[1]->state_bytes(100), whole->state_bytes(100));
  ep.backends[1]->save_state(*ep.backends[1]->new_state(), &image);
  EXPECT_FALSE(image.empty());
}

TEST(Sharding, WorldOfOneIsTheUnshardedPath) {
  mmx::ModelConfig c = shard_test_config();
  auto model = mmx::make_random_model(c, 38);
  auto plain = cpu_backend();
  plain->prepare(*model);
  auto one = cpu_backend();
  one->set_shard(Shard{0, 1}, nullptr);
  one->prepare(*model);
  EXPECT_EQ(run_plan(*model, *one), run_plan(*model, *plain));
}

}  // namespace
