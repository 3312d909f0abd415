#include "model/forward.h"

#include <string>

#include "core/error.h"

namespace mmx {

void Forward::run(const StepBatch& batch, const std::vector<int32_t>& tokens,
                  const std::vector<int32_t>& logit_rows, std::vector<float>* logits) {
  const ModelConfig& c = model_.config();
  const ModelWeights& w = model_.weights();
  const int64_t T = batch.total_tokens();
  MMX_CHECK(int64_t(tokens.size()) == T, Code::Internal, "forward: token count does not match batch");
  for (int32_t id : tokens)
    MMX_CHECK(id >= 0 && id < c.vocab, Code::InvalidArgument,
              "token id " + std::to_string(id) + " out of range [0, " + std::to_string(c.vocab) + ")");
  for (const auto& s : batch.seqs)
    MMX_CHECK(s.state && s.start_pos == s.state->tokens, Code::Internal,
              "forward: sequence start position does not match its state");
  for (int32_t r : logit_rows)
    MMX_CHECK(r >= 0 && r < T, Code::Internal, "forward: logit row out of range");

  // Under sharding this rank runs heads [head0, head0 + nh) and its share of the experts;
  // the sublayers whose outputs are partial sums get an all-reduce (docs/multi-gpu.md).
  // Unsharded, nh and nkv are the config's and no collective runs.
  const ShardPlan plan = ShardPlan::make(c, be_.shard());
  const int64_t H = c.hidden, nh = plan.heads, d = c.head_dim, nkv = plan.kv_heads;
  be_.begin_step();
  Act x = be_.alloc_residual(T, H);  // the hidden state
  Act h = be_.alloc_residual(T, H);  // normalised x: sublayer input and residual (post-norm)
  Act a = be_.alloc(T, H);           // sublayer output
  const bool want_logits = logits && !logit_rows.empty();
  be_.begin_layers(batch);
  be_.embed(tokens, x);

  for (int64_t i = 0; i < c.layers; ++i) {
    const LayerWeights& lw = w.layers[size_t(i)];
    // Post-norm with DeepNorm scaling: the residual is the NORMALISED input (model-spec §4).
    be_.rms_norm(x, lw.input_norm, c.rms_eps, h);
    double alpha, beta;
    if (lw.kind == LayerKind::Lightning) {
      Act qkv = be_.alloc(T, 3 * nh * d);
      Act o = be_.alloc(T, nh * d);
      Act gate = be_.alloc(T, nh * d);
      be_.linear(h, lw.qkv, qkv);
      be_.silu(qkv);
      be_.lightning_attention(int(i), qkv, batch, o);
      // The output norm runs over all heads at once, so split heads share its statistic.
      if (plan.attention_split())
        be_.rms_norm_split(o, lw.attn_norm, c.lightning_norm_eps, o);
      else
        be_.rms_norm(o, lw.attn_norm, c.lightning_norm_eps, o);
      be_.linear(h, lw.out_gate, gate);
      be_.sigmoid_mul(gate, o);
      be_.linear(o, lw.out_proj, a);
      if (plan.attention_split()) be_.all_reduce_sum(a);
      alpha = c.lightning_alpha;
      beta = c.lightning_beta;
    } else {
      Act q = be_.alloc(T, nh * d);
      Act k = be_.alloc(T, nkv * d);
      Act v = be_.alloc(T, nkv * d);
      Act o = be_.alloc(T, nh * d);
      be_.linear(h, lw.q, q);
      be_.linear(h, lw.k, k);
      be_.linear(h, lw.v, v);
      be_.softmax_attention(int(i), q, k, v, batch, o);
      be_.linear(o, lw.o, a);
      if (plan.attention_split()) be_.all_reduce_sum(a);
      alpha = c.full_alpha;
      beta = c.full_beta;
    }
    be_.scale_add(h, alpha, a, beta, x);
    be_.rms_norm(x, lw.post_norm, c.rms_eps, h);
    be_.moe(lw, h, a);
    if (plan.moe_split()) be_.all_reduce_sum(a);
    be_.scale_add(h, c.mlp_alpha, a, c.mlp_beta, x);
  }

  if (want_logits) be_.rms_norm(x, w.final_norm, c.rms_eps, h);
  be_.end_layers();
  for (const auto& s : batch.seqs) s.state->tokens += s.n_tokens;

  if (logits) {
    logits->assign(logit_rows.size() * size_t(c.vocab), 0.0f);
    if (want_logits) be_.logits(h, logit_rows, logits->data());
  }
}

}  // namespace mmx
