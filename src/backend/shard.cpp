// ShardPlan: the partition of heads and experts among ranks, and each rank's weight blocks.
#include "backend/shard.h"

#include <numeric>
#include <string>

#include "core/error.h"

namespace mmx {
namespace {

std::string num(int64_t v) { return std::to_string(v); }

}  // namespace

ShardPlan ShardPlan::make(const ModelConfig& c, const Shard& s) {
  MMX_CHECK(s.world >= 1 && s.rank >= 0 && s.rank < s.world, Code::InvalidArgument,
            "shard: rank " + num(s.rank) + " of world " + num(s.world) + " is not a valid rank");
  ShardPlan p;
  p.shard = s;
  p.head_dim = c.head_dim;
  p.heads = c.heads;
  p.kv_heads = c.kv_heads;
  p.experts = c.experts;
  p.ffn = c.intermediate;
  const int64_t R = s.world, r = s.rank;

  if (p.attention_split()) {
    MMX_CHECK(c.heads % R == 0, Code::Unsupported,
              "shard: tensor-parallel attention needs the " + num(c.heads) +
                  " attention heads to divide evenly among " + num(R) + " ranks");
    p.heads = c.heads / R;
    p.head0 = r * p.heads;
    if (c.softmax_layer_count() > 0) {
      if (c.kv_heads % R == 0) {
        p.kv_heads = c.kv_heads / R;
        p.kv_head0 = r * p.kv_heads;
      } else if (R % c.kv_heads == 0) {
        // More ranks than KV heads: each KV head is replicated on the R / kv_heads ranks whose
        // query heads (all inside one GQA group, as heads/R divides heads/kv_heads) share it.
        p.kv_heads = 1;
        p.kv_head0 = p.head0 / (c.heads / c.kv_heads);
      } else {
        fail(Code::Unsupported, "shard: tensor-parallel softmax attention needs the " + num(c.kv_heads) +
                                    " KV heads to divide evenly among " + num(R) +
                                    " ranks, or the ranks to be a multiple of the KV heads");
      }
    }
  }

  if (p.moe_split()) {
    p.expert_groups = std::gcd(c.experts, R);
    p.ffn_splits = R / p.expert_groups;
    MMX_CHECK(c.intermediate % p.ffn_splits == 0, Code::Unsupported,
              "shard: expert-parallel MoE: " + num(c.experts) + " experts do not divide among " + num(R) +
                  " ranks, and their FFN size " + num(c.intermediate) + " is not a multiple of " +
                  num(p.ffn_splits) + " for splitting each expert across the remaining ranks");
    p.experts = c.experts / p.expert_groups;
    p.expert0 = (r / p.ffn_splits) * p.experts;
    p.ffn = c.intermediate / p.ffn_splits;
    p.ffn0 = (r % p.ffn_splits) * p.ffn;
  }
  return p;
}

std::vector<std::pair<const WeightRef*, WeightBlock>> rank_weights(const ModelWeights& w, const ShardPlan& p) {
  std::vector<std::pair<const WeightRef*, WeightBlock>> out;
  auto whole = [&](const WeightRef& r) { out.push_back({&r, WeightBlock{0, r.rows, 0, r.cols}}); };
  auto rows = [&](const WeightRef& r, int64_t row0, int64_t n) { out.push_back({&r, WeightBlock{row0, n, 0, r.cols}}); };
  auto cols = [&](const WeightRef& r, int64_t col0, int64_t n) { out.push_back({&r, WeightBlock{0, r.rows, col0, n}}); };
  const int64_t hd = p.head_dim;
  whole(w.embed);
  whole(w.lm_head);
  whole(w.final_norm);
  for (const LayerWeights& l : w.layers) {
    whole(l.input_norm);
    whole(l.post_norm);
    whole(l.router);
    if (l.kind == LayerKind::Lightning) {
      rows(l.qkv, 3 * hd * p.head0, 3 * hd * p.heads);
      rows(l.out_gate, hd * p.head0, hd * p.heads);
      cols(l.out_proj, hd * p.head0, hd * p.heads);
      cols(l.attn_norm, hd * p.head0, hd * p.heads);
    } else {
      rows(l.q, hd * p.head0, hd * p.heads);
      rows(l.k, hd * p.kv_head0, hd * p.kv_heads);
      rows(l.v, hd * p.kv_head0, hd * p.kv_heads);
      cols(l.o, hd * p.head0, hd * p.heads);
    }
    for (int64_t e = p.expert0; e < p.expert0 + p.experts && e < int64_t(l.w1.size()); ++e) {
      rows(l.w1[size_t(e)], p.ffn0, p.ffn);
      rows(l.w3[size_t(e)], p.ffn0, p.ffn);
      cols(l.w2[size_t(e)], p.ffn0, p.ffn);
    }
  }
  return out;
}

}  // namespace mmx
