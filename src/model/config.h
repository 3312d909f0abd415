// ModelConfig: one model's shape and constants, parsed from config.json in either the official
// MiniMax spelling or the transformers-native spelling (model-spec §2).
#pragma once
#include <cstdint>
#include <string>
#include <vector>

namespace mmx {

enum class LayerKind : int { Lightning = 0, Softmax = 1 };

struct ModelConfig {
  std::string model_type;  // "minimax_text_01", "minimax_m1" or "minimax"
  bool official_spelling = true;
  int64_t hidden = 0;        // H
  int64_t intermediate = 0;  // F, expert FFN size
  int64_t layers = 0;        // L
  int64_t heads = 0;         // query heads (also lightning heads)
  int64_t kv_heads = 0;      // softmax layers only
  int64_t head_dim = 0;      // d
  int64_t rotary_dim = 0;    // RoPE on the first rotary_dim dims of each head
  int64_t experts = 0;       // E
  int64_t top_k = 0;
  int64_t vocab = 0;
  int64_t max_positions = 0;  // max_position_embeddings (context limit)
  int64_t block_size = 256;   // lightning prefill block (any value gives the same math)
  double rms_eps = 1e-5;
  double lightning_norm_eps = 1e-6;  // fixed by the official code, not read from config
  double rope_theta = 10000.0;
  bool tie_embeddings = false;
  std::vector<LayerKind> layer_kinds;  // size L
  // DeepNorm residual scales: x1 = alpha * norm(x) + beta * sublayer(norm(x)).
  double lightning_alpha = 1, lightning_beta = 1;
  double full_alpha = 1, full_beta = 1;
  double mlp_alpha = 1, mlp_beta = 1;
  // Special tokens when the config names them (-1 when absent).
  int64_t bos_token_id = -1, eos_token_id = -1;

  // Parses config.json text. `source` names the file in error messages.
  // Throws mmx::Error(Code::Format) naming the field for a missing required field, a wrong
  // type, a contradiction (e.g. attn_type_list length != num_hidden_layers) or an unsupported
  // value (postnorm false, hidden_act not silu, heads not a power of two, ...).
  static ModelConfig parse(const std::string& json_text, const std::string& source = "config.json");
  static ModelConfig load(const std::string& path);

  int64_t softmax_layer_count() const;
  // Lightning decay for GLOBAL head h at GLOBAL layer i: lambda = exp(-s_h * f_i) (model-spec §5).
  double lightning_slope(int64_t head) const;       // s_h = 2^(-8(h+1)/heads)
  double lightning_layer_factor(int64_t layer) const;  // f_i = 1 - i/(L-1) + 1e-5, or 1 if L == 1
  double lightning_decay(int64_t layer, int64_t head) const;  // exp(-s_h * f_i)
};

}  // namespace mmx
