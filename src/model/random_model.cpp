// Random models for tests and benchmarks, the safetensors writer and config.json writer.
#include "model/random_model.h"

#include <algorithm>
#include <cmath>
#include <cstring>
#include <fstream>
#include <nlohmann/json.hpp>

#include "core/error.h"
#include "model/weight_names.h"

namespace mmx {
namespace {

using json = nlohmann::json;

// splitmix64 + Box-Muller: deterministic for a (seed, tensor name) pair, so both expert
// spellings of one seed hold identical values.
class Normal {
 public:
  Normal(uint64_t seed, const std::string& name) : s_(seed) {
    for (unsigned char ch : name) s_ = (s_ ^ ch) * 0x100000001b3ull;
  }
  float next() {
    const double u1 = (double(bits() >> 11) + 1.0) * 0x1.0p-53;  // (0, 1]
    const double u2 = double(bits() >> 11) * 0x1.0p-53;
    return float(std::sqrt(-2.0 * std::log(u1)) * std::cos(6.283185307179586 * u2));
  }

 private:
  uint64_t bits() {
    uint64_t z = (s_ += 0x9e3779b97f4a7c15ull);
    z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ull;
    z = (z ^ (z >> 27)) * 0x94d049bb133111ebull;
    return z ^ (z >> 31);
  }
  uint64_t s_;
};

bool ends_with(const std::string& s, const std::string& suffix) {
  return s.size() >= suffix.size() && s.compare(s.size() - suffix.size(), suffix.size(), suffix) == 0;
}

// Values of one per-expert-spelling tensor: norms ~ 1 + N(0, 0.1), embeddings ~ N(0, 1),
// every other matrix (router included) ~ N(0, 1/fan_in).
std::vector<float> random_values(const ExpectedTensor& t, uint64_t seed) {
  int64_t n = 1;
  for (int64_t d : t.shape) n *= d;
  Normal rng(seed, t.name);
  std::vector<float> v(size_t(n), 0.0f);
  const bool norm = ends_with(t.name, "norm.weight");
  const bool embed = t.name == "model.embed_tokens.weight";
  const float stddev = norm ? 0.1f : embed ? 1.0f : float(1.0 / std::sqrt(double(t.shape.back())));
  for (float& x : v) x = (norm ? 1.0f : 0.0f) + stddev * rng.next();
  return v;
}

Model::OwnedTensor encode(const std::vector<float>& v, std::vector<int64_t> shape, DType dtype) {
  Model::OwnedTensor t;
  t.dtype = dtype;
  t.shape = std::move(shape);
  t.bytes.resize(v.size() * dtype_size(dtype));
  for (size_t i = 0; i < v.size(); ++i) {
    if (dtype == DType::F32) {
      std::memcpy(&t.bytes[i * 4], &v[i], 4);
    } else {
      const uint16_t h = dtype == DType::BF16 ? f32_to_bf16(v[i]) : f32_to_f16(v[i]);
      std::memcpy(&t.bytes[i * 2], &h, 2);
    }
  }
  return t;
}

// Symmetric per-row int8 with an F32 scale tensor "<name>_scale" (see weight_names.h).
void add_int8(std::map<std::string, Model::OwnedTensor>* out, const std::string& name, const std::vector<float>& v,
              const std::vector<int64_t>& shape) {
  const int64_t rows = shape[0], cols = shape[1];
  Model::OwnedTensor q{DType::I8, shape, std::vector<uint8_t>(size_t(rows * cols))};
  std::vector<float> scales(static_cast<size_t>(rows));
  for (int64_t r = 0; r < rows; ++r) {
    float amax = 0;
    for (int64_t c = 0; c < cols; ++c) amax = std::max(amax, std::fabs(v[size_t(r * cols + c)]));
    const float s = amax > 0 ? amax / 127.0f : 1.0f;
    scales[size_t(r)] = s;
    for (int64_t c = 0; c < cols; ++c)
      q.bytes[size_t(r * cols + c)] = uint8_t(int8_t(std::lrint(v[size_t(r * cols + c)] / s)));
  }
  (*out)[name] = std::move(q);
  (*out)[scale_name_for(name)] = encode(scales, {rows}, DType::F32);
}

void put_json_token(json* j, const char* key, int64_t id) { (*j)[key] = id >= 0 ? json(id) : json(nullptr); }

}  // namespace

ModelConfig tiny_test_config() {
  ModelConfig c;
  c.model_type = "minimax_text_01";
  c.official_spelling = true;
  c.hidden = 64;
  c.intermediate = 96;  // differs from hidden so a transposed expert matrix cannot go unnoticed
  c.layers = 4;
  c.heads = 4;
  c.kv_heads = 2;
  c.head_dim = 16;
  c.rotary_dim = 8;
  c.experts = 4;
  c.top_k = 2;
  c.vocab = 256;
  c.max_positions = 4096;
  c.rope_theta = 10000.0;
  c.layer_kinds = {LayerKind::Lightning, LayerKind::Lightning, LayerKind::Lightning, LayerKind::Softmax};
  c.lightning_alpha = 1.3, c.lightning_beta = 0.9;
  c.full_alpha = 1.2, c.full_beta = 1.1;
  c.mlp_alpha = 1.4, c.mlp_beta = 0.8;
  return c;
}

std::map<std::string, Model::OwnedTensor> random_tensors(const ModelConfig& config, uint64_t seed, DType dtype,
                                                         bool official_names) {
  MMX_CHECK(dtype != DType::I8 || official_names, Code::Unsupported,
            "int8 random tensors exist only in the per-expert (official) spelling");
  std::map<std::string, Model::OwnedTensor> out;
  std::map<std::string, std::vector<float>> experts;  // per-expert values kept for fusing
  for (const ExpectedTensor& t : expected_tensors(config, /*fused_experts=*/false)) {
    std::vector<float> v = random_values(t, seed);
    if (!official_names && t.name.find(".experts.") != std::string::npos) {
      experts[t.name] = std::move(v);
    } else if (dtype == DType::I8 && t.shape.size() == 2) {
      add_int8(&out, t.name, v, t.shape);
    } else {
      out[t.name] = encode(v, t.shape, dtype == DType::I8 ? DType::F32 : dtype);
    }
  }
  if (official_names) return out;

  const int64_t E = config.experts, F = config.intermediate, H = config.hidden;
  for (int64_t i = 0; i < config.layers; ++i) {
    const std::string p = layer_prefix(i);
    auto gate = out.extract(p + "block_sparse_moe.gate.weight");
    gate.key() = p + "mlp.gate.weight";
    out.insert(std::move(gate));
    std::vector<float> gate_up, down;
    for (int64_t e = 0; e < E; ++e) {
      const std::string x = p + "block_sparse_moe.experts." + std::to_string(e) + ".";
      for (const char* w : {"w1", "w3"}) {  // w1 rows first, then w3 (model-spec §3)
        const std::vector<float>& v = experts.at(x + w + ".weight");
        gate_up.insert(gate_up.end(), v.begin(), v.end());
      }
      const std::vector<float>& w2 = experts.at(x + "w2.weight");
      down.insert(down.end(), w2.begin(), w2.end());
    }
    out[p + "mlp.experts.gate_up_proj"] = encode(gate_up, {E, 2 * F, H}, dtype);
    out[p + "mlp.experts.down_proj"] = encode(down, {E, H, F}, dtype);
  }
  return out;
}

std::shared_ptr<Model> make_random_model(const ModelConfig& config, uint64_t seed, DType dtype) {
  return Model::from_memory(config, random_tensors(config, seed, dtype, true));
}

void write_safetensors(const std::string& path, const std::map<std::string, Model::OwnedTensor>& tensors,
                       const std::map<std::string, std::string>& metadata) {
  // Data in (element size descending, name) order keeps every tensor aligned to its element
  // size with no gaps between tensors (the reference reader rejects gaps).
  std::vector<const std::pair<const std::string, Model::OwnedTensor>*> order;
  for (const auto& kv : tensors) order.push_back(&kv);
  std::stable_sort(order.begin(), order.end(), [](const auto* a, const auto* b) {
    return dtype_size(a->second.dtype) > dtype_size(b->second.dtype);
  });
  json header = json::object();
  if (!metadata.empty()) header["__metadata__"] = metadata;
  uint64_t offset = 0;
  for (const auto* kv : order) {
    const Model::OwnedTensor& t = kv->second;
    uint64_t numel = 1;
    for (int64_t d : t.shape) numel *= uint64_t(d);
    MMX_CHECK(numel * dtype_size(t.dtype) == t.bytes.size(), Code::InvalidArgument,
              "tensor '" + kv->first + "': byte count does not match its shape");
    header[kv->first] = {{"dtype", dtype_name(t.dtype)}, {"shape", t.shape},
                         {"data_offsets", {offset, offset + t.bytes.size()}}};
    offset += t.bytes.size();
  }
  std::string text = header.dump();
  text.append((8 - text.size() % 8) % 8, ' ');  // data starts 8-byte aligned
  std::ofstream f(path, std::ios::binary | std::ios::trunc);
  MMX_CHECK(f.good(), Code::Io, "cannot create " + path);
  uint8_t len[8];
  for (int i = 0; i < 8; ++i) len[i] = uint8_t(uint64_t(text.size()) >> (8 * i));
  f.write(reinterpret_cast<const char*>(len), 8);
  f.write(text.data(), std::streamsize(text.size()));
  for (const auto* kv : order)
    f.write(reinterpret_cast<const char*>(kv->second.bytes.data()), std::streamsize(kv->second.bytes.size()));
  f.close();
  MMX_CHECK(f.good(), Code::Io, "cannot write " + path);
}

std::string config_to_json(const ModelConfig& c, bool official) {
  json j;
  j["hidden_size"] = c.hidden;
  j["intermediate_size"] = c.intermediate;
  j["num_hidden_layers"] = c.layers;
  j["num_attention_heads"] = c.heads;
  j["num_key_value_heads"] = c.kv_heads;
  j["head_dim"] = c.head_dim;
  j["num_local_experts"] = c.experts;
  j["num_experts_per_tok"] = c.top_k;
  j["vocab_size"] = c.vocab;
  j["max_position_embeddings"] = c.max_positions;
  j["block_size"] = c.block_size;
  j["rms_norm_eps"] = c.rms_eps;
  j["tie_word_embeddings"] = c.tie_embeddings;
  j["hidden_act"] = "silu";
  put_json_token(&j, "bos_token_id", c.bos_token_id);
  put_json_token(&j, "eos_token_id", c.eos_token_id);
  if (official) {
    j["model_type"] = c.model_type.empty() || c.model_type == "minimax" ? "minimax_text_01" : c.model_type;
    j["architectures"] = {j["model_type"] == "minimax_m1" ? "MiniMaxM1ForCausalLM" : "MiniMaxText01ForCausalLM"};
    json kinds = json::array();
    for (LayerKind k : c.layer_kinds) kinds.push_back(int(k));
    j["attn_type_list"] = kinds;
    j["rotary_dim"] = c.rotary_dim;
    j["rope_theta"] = c.rope_theta;
    j["postnorm"] = true;
    j["shared_intermediate_size"] = 0;
    j["layernorm_linear_attention_alpha"] = c.lightning_alpha;
    j["layernorm_linear_attention_beta"] = c.lightning_beta;
    j["layernorm_full_attention_alpha"] = c.full_alpha;
    j["layernorm_full_attention_beta"] = c.full_beta;
    j["layernorm_mlp_alpha"] = c.mlp_alpha;
    j["layernorm_mlp_beta"] = c.mlp_beta;
  } else {
    j["model_type"] = "minimax";
    j["architectures"] = {"MiniMaxForCausalLM"};
    json kinds = json::array();
    for (LayerKind k : c.layer_kinds) kinds.push_back(k == LayerKind::Softmax ? "full_attention" : "linear_attention");
    j["layer_types"] = kinds;
    json rope = {{"rope_type", "default"}, {"rope_theta", c.rope_theta}};
    if (c.rotary_dim != c.head_dim) rope["partial_rotary_factor"] = double(c.rotary_dim) / double(c.head_dim);
    j["rope_parameters"] = rope;
    j["linear_attn_alpha_factor"] = c.lightning_alpha;
    j["linear_attn_beta_factor"] = c.lightning_beta;
    j["full_attn_alpha_factor"] = c.full_alpha;
    j["full_attn_beta_factor"] = c.full_beta;
    j["mlp_alpha_factor"] = c.mlp_alpha;
    j["mlp_beta_factor"] = c.mlp_beta;
  }
  return j.dump(2) + "\n";
}

}  // namespace mmx
