// The tensor names and shapes a checkpoint of a given config holds (model-spec §3), in either
// expert spelling. Shared by the weight mapping, random models and shape-only models.
#pragma once
#include <cstdint>
#include <string>
#include <vector>

#include "model/config.h"

namespace mmx {

struct ExpectedTensor {
  std::string name;
  std::vector<int64_t> shape;
};

// "model.layers.<i>."
std::string layer_prefix(int64_t layer);

// Every tensor of a checkpoint for `config` (derived buffers excluded; lm_head only when
// untied). fused_experts: transformers' in-memory spelling (mlp.gate.weight,
// mlp.experts.gate_up_proj [E,2F,H], mlp.experts.down_proj [E,H,F]); otherwise the official
// per-expert spelling (block_sparse_moe.gate.weight, block_sparse_moe.experts.<e>.w{1,2,3}.weight).
std::vector<ExpectedTensor> expected_tensors(const ModelConfig& config, bool fused_experts);

// The per-row scale of an int8 weight "<base>.weight" is "<base>.weight_scale" (F32 or BF16,
// shape [rows]). Returns "" when `weight_name` does not end in ".weight".
std::string scale_name_for(const std::string& weight_name);

}  // namespace mmx
