// The weights of one model, mapped from tensor names (model-spec §3, both spellings) onto a
// per-layer structure. Nothing is copied: every WeightRef points into the mapped files.
#pragma once
#include <cstdint>
#include <memory>
#include <string>
#include <vector>

#include "core/dtype.h"
#include "model/config.h"
#include "model/tensor_store.h"

namespace mmx {

// A 1-D or 2-D weight [rows, cols] (1-D: rows = 1) in its on-disk dtype. For the fused expert
// spelling this is a view into the fused tensor. `id` is a dense index (0..count-1) assigned
// by the mapping so backends can keep their own converted copy in a vector.
// Quantised (I8) weights carry per-output-row fp32/bf16 scales in `scale` (rows values). On disk
// an int8 weight "<x>.weight" [rows, cols] comes with "<x>.weight_scale" F32/BF16 [rows]
// (w = q * scale); any 2-D weight may be int8, the fused 3-D expert tensors may not.
struct WeightRef {
  int id = -1;
  std::string name;
  DType dtype = DType::F32;
  int64_t rows = 0, cols = 0;
  const uint8_t* data = nullptr;
  DType scale_dtype = DType::F32;
  const uint8_t* scale = nullptr;  // nullptr unless dtype == I8
  bool valid() const { return data != nullptr; }
  int64_t numel() const { return rows * cols; }
  // Row r converted to fp32 (dequantised for I8) into dst[cols].
  void row_to_f32(int64_t r, float* dst) const;
  // Whole tensor to fp32, row-major [rows, cols].
  std::vector<float> to_f32() const;
};

struct LayerWeights {
  LayerKind kind = LayerKind::Lightning;
  WeightRef input_norm, post_norm;  // [H]
  // lightning
  WeightRef qkv;        // [3*nh*d, H], per head: q rows, k rows, v rows (interleaved per head)
  WeightRef out_gate;   // [nh*d, H]
  WeightRef out_proj;   // [H, nh*d]
  WeightRef attn_norm;  // [nh*d]
  // softmax
  WeightRef q, k, v, o;  // [nh*d,H], [nkv*d,H], [nkv*d,H], [H,nh*d]
  // MoE
  WeightRef router;               // [E, H]
  std::vector<WeightRef> w1, w3;  // [F, H] per expert (gate, up)
  std::vector<WeightRef> w2;      // [H, F] per expert (down)
};

struct ModelWeights {
  WeightRef embed;       // [V, H]
  WeightRef lm_head;     // [V, H]; same data as embed when tied
  WeightRef final_norm;  // [H]
  std::vector<LayerWeights> layers;
  int count = 0;  // number of distinct ids handed out

  // Maps every tensor of `store` onto the structure for `config`. Throws Code::Format naming
  // the tensor for: a missing tensor, a wrong shape, an unsupported dtype, or a tensor left
  // over that no rule maps (derived buffers slope_rate/query_decay/key_decay/diagonal_decay are
  // ignored). Accepts per-expert w1/w3/w2 and fused mlp.experts.gate_up_proj / down_proj.
  static ModelWeights map(const ModelConfig& config, const TensorStore& store);

  // The same mapping over names and shapes only (no data), used to check an index file
  // against a config without the shards (an empty shape means "unknown": not checked).
  // Returns the problems found, each naming the tensor (empty = all good).
  static std::vector<std::string> check_names(
      const ModelConfig& config,
      const std::vector<std::pair<std::string, std::vector<int64_t>>>& names_and_shapes);
};

}  // namespace mmx
