// Random models for tests and benchmarks: valid tensors for any config, in either spelling.
#pragma once
#include <cstdint>
#include <map>
#include <memory>
#include <string>

#include "model/model.h"

namespace mmx {

// A tiny valid config (hidden 64, 4 heads x 16, 2 KV heads, rotary 8, 4 experts top-2,
// 4 layers with layer 3 softmax, vocab 256, alpha/beta != 1). Tests tweak fields from it.
ModelConfig tiny_test_config();

// Tensors named as in a checkpoint. Weights ~ N(0, 1/fan_in), norm weights ~ 1 + N(0, 0.1),
// router N(0, 1/H); deterministic in `seed`. official_names: block_sparse_moe.experts.e.w*
// (else transformers' fused mlp.experts.gate_up_proj / down_proj + mlp.gate).
std::map<std::string, Model::OwnedTensor> random_tensors(const ModelConfig& config, uint64_t seed,
                                                         DType dtype = DType::F32,
                                                         bool official_names = true);

std::shared_ptr<Model> make_random_model(const ModelConfig& config, uint64_t seed,
                                         DType dtype = DType::F32);

// Writes tensors as one safetensors file (header sorted by name, 8-byte aligned data).
void write_safetensors(const std::string& path,
                       const std::map<std::string, Model::OwnedTensor>& tensors,
                       const std::map<std::string, std::string>& metadata = {});

// Writes config (official spelling when official is true, else transformers-native) as JSON.
std::string config_to_json(const ModelConfig& config, bool official);

}  // namespace mmx
