// Converts a bf16/fp32/fp16 MiniMax checkpoint into a W8A16 one (model-spec §8): every linear
// weight (attention projections, experts) becomes int8 with one fp32 scale per output row
// (kernels/quant_rule.h); embeddings, norms, router and lm_head are copied unchanged.
#pragma once
#include <cstdint>
#include <functional>
#include <string>

namespace mmx::quantize {

struct Options {
  uint64_t shard_bytes = uint64_t(4) << 30;  // a tensor larger than this gets its own shard
  int threads = 0;                           // 0: all cores
  std::function<void(const std::string&)> log;  // progress lines (may be empty)
};

struct Summary {
  int64_t tensors = 0, quantized = 0, shards = 0;
  uint64_t bytes_in = 0, bytes_out = 0;
};

// True for the tensor names that are quantised: the attention projections and the expert
// matrices, in either spelling (model-spec §3).
bool is_quantized_name(const std::string& name);

// The name of the scale tensor that goes with int8 tensor `name`: "<x>.weight" ->
// "<x>.weight_scale" (F32, one value per row), the convention of src/model/weights.cpp.
std::string scale_name(const std::string& name);

// Reads in_dir (config.json + safetensors, single or sharded), writes out_dir:
// model-0000i-of-0000n.safetensors + model.safetensors.index.json, and copies every other
// file of in_dir (config.json, tokenizer files). Fused experts (mlp.experts.gate_up_proj /
// down_proj) are written per expert as mlp.experts.<e>.w1/w3/w2.weight, since int8 weights
// are 2-D with one scale per row. out_dir is created; it must not already hold
// a checkpoint. Throws mmx::Error on any problem.
Summary quantize_checkpoint(const std::string& in_dir, const std::string& out_dir,
                            const Options& options);

}  // namespace mmx::quantize
