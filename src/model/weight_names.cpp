#include "model/weight_names.h"

namespace mmx {

std::string layer_prefix(int64_t layer) { return "model.layers." + std::to_string(layer) + "."; }

std::vector<ExpectedTensor> expected_tensors(const ModelConfig& c, bool fused_experts) {
  const int64_t H = c.hidden, F = c.intermediate, E = c.experts;
  const int64_t q_rows = c.heads * c.head_dim, kv_rows = c.kv_heads * c.head_dim;
  std::vector<ExpectedTensor> out = {{"model.embed_tokens.weight", {c.vocab, H}}, {"model.norm.weight", {H}}};
  if (!c.tie_embeddings) out.push_back({"lm_head.weight", {c.vocab, H}});
  for (int64_t i = 0; i < c.layers; ++i) {
    const std::string p = layer_prefix(i);
    out.push_back({p + "input_layernorm.weight", {H}});
    out.push_back({p + "post_attention_layernorm.weight", {H}});
    if (c.layer_kinds[size_t(i)] == LayerKind::Lightning) {
      out.push_back({p + "self_attn.qkv_proj.weight", {3 * q_rows, H}});
      out.push_back({p + "self_attn.output_gate.weight", {q_rows, H}});
      out.push_back({p + "self_attn.out_proj.weight", {H, q_rows}});
      out.push_back({p + "self_attn.norm.weight", {q_rows}});
    } else {
      out.push_back({p + "self_attn.q_proj.weight", {q_rows, H}});
      out.push_back({p + "self_attn.k_proj.weight", {kv_rows, H}});
      out.push_back({p + "self_attn.v_proj.weight", {kv_rows, H}});
      out.push_back({p + "self_attn.o_proj.weight", {H, q_rows}});
    }
    if (fused_experts) {
      out.push_back({p + "mlp.gate.weight", {E, H}});
      out.push_back({p + "mlp.experts.gate_up_proj", {E, 2 * F, H}});
      out.push_back({p + "mlp.experts.down_proj", {E, H, F}});
    } else {
      out.push_back({p + "block_sparse_moe.gate.weight", {E, H}});
      for (int64_t e = 0; e < E; ++e) {
        const std::string x = p + "block_sparse_moe.experts." + std::to_string(e) + ".";
        out.push_back({x + "w1.weight", {F, H}});
        out.push_back({x + "w2.weight", {H, F}});
        out.push_back({x + "w3.weight", {F, H}});
      }
    }
  }
  return out;
}

std::string scale_name_for(const std::string& weight_name) {
  static const std::string suffix = ".weight";
  if (weight_name.size() <= suffix.size() ||
      weight_name.compare(weight_name.size() - suffix.size(), suffix.size(), suffix) != 0)
    return "";
  return weight_name + "_scale";
}

}  // namespace mmx
