// Sharding: which part of the model one rank holds (docs/multi-gpu.md). Attention is tensor
// parallel (heads split), the MoE expert parallel (experts split, each expert's FFN split too
// when the experts do not divide among the ranks); embeddings, norms, router and lm_head are
// replicated. The forward pass (src/model/forward.cpp) and every backend derive the same
// ShardPlan from (config, Shard), so they cannot disagree on a slice.
#pragma once
#include <cstdint>
#include <utility>
#include <vector>

#include "model/config.h"
#include "model/weights.h"

namespace mmx {

struct Shard {
  int rank = 0, world = 1;
  bool split_attention = true;  // tensor-parallel attention; false: every rank runs all heads
  bool split_experts = true;    // expert-parallel MoE; false: every rank runs all experts
};

// What one rank computes. For world == 1 (or nothing split) it is the whole model.
struct ShardPlan {
  Shard shard;
  // Query (and lightning) heads [head0, head0 + heads), softmax KV heads
  // [kv_head0, kv_head0 + kv_heads). heads % world == 0 is required; KV heads are split when
  // kv_heads % world == 0 and replicated (each rank holds the one KV head its query heads
  // share) when world % kv_heads == 0; other counts are rejected.
  int64_t head0 = 0, heads = 0, kv_head0 = 0, kv_heads = 0;
  int64_t head_dim = 0;
  // Experts [expert0, expert0 + experts), each over intermediate rows [ffn0, ffn0 + ffn).
  // The world is a grid of expert_groups = gcd(E, world) groups of ffn_splits = world /
  // expert_groups ranks: rank r holds expert group r / ffn_splits and the (r % ffn_splits)-th
  // slice of their FFN dimension (needs F % ffn_splits == 0). E % world == 0 is plain expert
  // parallelism (ffn_splits = 1).
  int64_t expert0 = 0, experts = 0, ffn0 = 0, ffn = 0;
  int64_t expert_groups = 1, ffn_splits = 1;

  // Whether the sublayer's output is a partial sum that must be all-reduced across ranks.
  bool attention_split() const { return shard.world > 1 && shard.split_attention; }
  bool moe_split() const { return shard.world > 1 && shard.split_experts; }
  bool sharded() const { return attention_split() || moe_split(); }

  // Throws Code::InvalidArgument for a bad rank/world and Code::Unsupported, naming the
  // counts, for heads / KV heads / experts that cannot be divided among the ranks.
  static ShardPlan make(const ModelConfig& config, const Shard& shard);
};

// The block of a weight [rows, cols] that a rank holds: rows [row0, row0 + rows) and columns
// [col0, col0 + cols).
struct WeightBlock {
  int64_t row0 = 0, rows = 0, col0 = 0, cols = 0;
};

// Every weight the rank needs, with its block (the whole weight when not split); weights of
// experts it does not run are left out. Column-parallel weights (qkv, output_gate, q, k, v,
// w1, w3) lose rows, row-parallel ones (out_proj, o, w2) and the lightning output norm lose
// columns. The qkv weight is interleaved per head, so a range of heads is a range of rows.
std::vector<std::pair<const WeightRef*, WeightBlock>> rank_weights(const ModelWeights& weights,
                                                                   const ShardPlan& plan);

}  // namespace mmx
