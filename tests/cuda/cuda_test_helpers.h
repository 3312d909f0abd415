// Shared by the CUDA backend tests: GPU presence, the CPU twin, random inputs, error measures.
#pragma once
#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <cstring>
#include <cstdint>
#include <memory>
#include <string>
#include <vector>

#include "backend/backend.h"
#include "core/dtype.h"
#include "model/random_model.h"

// Every CUDA test starts with this: machines without a GPU (CI) skip instead of failing.
#define MMX_SKIP_WITHOUT_GPU()                                                    \
  do {                                                                            \
    if (mmx::cuda_device_count() == 0) GTEST_SKIP() << "no CUDA device (sm_80+)"; \
  } while (0)

namespace cuda_test {

inline std::unique_ptr<mmx::Backend> make_backend(const std::string& kind,
                                                  const std::string& weight_dtype = "") {
  mmx::BackendOptions o;
  o.kind = kind;
  o.threads = 2;
  o.weight_dtype = weight_dtype;
  return mmx::create_backend(o);
}

inline float round_bf16(float x) { return mmx::bf16_to_f32(mmx::f32_to_bf16(x)); }

// n values uniform in [-scale, scale), already bf16-representable so the CPU reference and
// the bf16 device activations start from identical inputs. Deterministic in seed.
inline std::vector<float> random_bf16_values(size_t n, uint64_t seed, float scale = 1.0f) {
  std::vector<float> v(n);
  uint64_t s = seed * 0x9e3779b97f4a7c15ull + 1;
  for (float& x : v) {
    s ^= s << 13;
    s ^= s >> 7;
    s ^= s << 17;
    x = round_bf16(scale * (float(s >> 40) / float(1 << 24) * 2.0f - 1.0f));
  }
  return v;
}

// ||a - b|| / ||b||, infinite if any value is NaN or infinite (an unwritten poisoned output).
inline double norm_rel_error(const std::vector<float>& a, const std::vector<float>& b) {
  if (a.size() != b.size()) return INFINITY;
  double num = 0, den = 1e-30;
  for (size_t i = 0; i < a.size(); ++i) {
    if (!std::isfinite(a[i]) || !std::isfinite(b[i])) return INFINITY;
    num += double(a[i] - b[i]) * double(a[i] - b[i]);
    den += double(b[i]) * double(b[i]);
  }
  return std::sqrt(num / den);
}

// Per row of [rows, cols]: ||a_r - b_r|| / ||b_r||, infinite for a row holding a NaN or an
// infinity. Empty if the sizes differ or are not a whole number of rows.
inline std::vector<double> row_norm_rel_errors(const std::vector<float>& a, const std::vector<float>& b,
                                               int64_t cols) {
  if (a.size() != b.size() || cols <= 0 || b.size() % size_t(cols) != 0) return {};
  std::vector<double> out(b.size() / size_t(cols));
  for (size_t r = 0; r < out.size(); ++r) {
    double num = 0, den = 1e-30;
    for (size_t i = r * size_t(cols); i < (r + 1) * size_t(cols); ++i) {
      if (!std::isfinite(a[i]) || !std::isfinite(b[i])) {
        num = INFINITY;
        break;
      }
      num += double(a[i] - b[i]) * double(a[i] - b[i]);
      den += double(b[i]) * double(b[i]);
    }
    out[r] = std::sqrt(num / den);
  }
  return out;
}

// Where the largest difference is, for failure messages.
inline std::string worst_diff(const std::vector<float>& got, const std::vector<float>& want,
                              int64_t cols) {
  size_t worst = 0;
  double wd = -1;
  for (size_t i = 0; i < got.size() && i < want.size(); ++i) {
    const double d = std::isfinite(got[i]) ? std::fabs(double(got[i]) - double(want[i])) : INFINITY;
    if (d > wd) {
      wd = d;
      worst = i;
    }
  }
  if (got.empty()) return "empty output";
  return "worst at row " + std::to_string(int64_t(worst) / cols) + " col " +
         std::to_string(int64_t(worst) % cols) + ": got " + std::to_string(got[worst]) +
         ", want " + std::to_string(want[worst]);
}

// A config big enough to run every kernel path with several blocks and odd tiles, small
// enough for the CPU reference: hidden 256, 4 heads x 64, 8 experts x 528 (528 = 33 chunks of
// 16: the GEMV's K loop ends mid-block), vocab 1000, two layers (lightning, softmax).
inline mmx::ModelConfig medium_config() {
  mmx::ModelConfig c = mmx::tiny_test_config();
  c.hidden = 256;
  c.heads = 4;
  c.head_dim = 64;
  c.kv_heads = 2;
  c.rotary_dim = 32;
  c.experts = 8;
  c.top_k = 2;
  c.intermediate = 528;
  c.vocab = 1000;
  c.layers = 2;
  c.layer_kinds = {mmx::LayerKind::Lightning, mmx::LayerKind::Softmax};
  return c;
}

}  // namespace cuda_test

#include <map>

#include "kernels/quant_rule.h"
#include "model/model.h"

namespace cuda_test {

// The linear weights a W8A16 checkpoint stores as int8 (as minimax-quantize decides).
inline bool is_linear_weight(const std::string& n) {
  auto ends = [&](const char* s) {
    const std::string t(s);
    return n.size() >= t.size() && n.compare(n.size() - t.size(), t.size(), t) == 0;
  };
  for (const char* s : {".qkv_proj.weight", ".output_gate.weight", ".out_proj.weight", ".q_proj.weight",
                        ".k_proj.weight", ".v_proj.weight", ".o_proj.weight"})
    if (ends(s)) return true;
  return n.find(".experts.") != std::string::npos &&
         (ends(".w1.weight") || ends(".w2.weight") || ends(".w3.weight"));
}

// The model with every 2-D float linear weight quantised on the host by the shared rule
// (kernels/quant_rule.h), the rest copied: the CPU reference of a W8A16 device run with
// identical weights.
inline std::shared_ptr<mmx::Model> host_quantised(const mmx::Model& m) {
  std::map<std::string, mmx::Model::OwnedTensor> out;
  for (const std::string& name : m.store().names()) {
    const mmx::TensorInfo& t = m.store().get(name);
    const bool is_float = t.dtype == mmx::DType::F32 || t.dtype == mmx::DType::BF16 ||
                          t.dtype == mmx::DType::F16;
    if (!is_linear_weight(name) || !is_float || t.shape.size() != 2) {
      out[name] = mmx::Model::OwnedTensor{t.dtype, t.shape,
                                          std::vector<uint8_t>(t.data, t.data + t.nbytes)};
      continue;
    }
    const int64_t rows = t.shape[0], cols = t.shape[1];
    mmx::Model::OwnedTensor q{mmx::DType::I8, t.shape, std::vector<uint8_t>(size_t(rows * cols))};
    mmx::Model::OwnedTensor s{mmx::DType::F32, {rows}, std::vector<uint8_t>(size_t(rows) * 4)};
    std::vector<float> row(static_cast<size_t>(cols));
    for (int64_t r = 0; r < rows; ++r) {
      mmx::convert_to_f32(t.dtype, t.data + size_t(r * cols) * mmx::dtype_size(t.dtype), size_t(cols),
                          row.data());
      float amax = 0;
      for (float v : row) amax = std::max(amax, std::fabs(v));
      const float sc = mmx::int8_row_scale(amax);
      std::memcpy(&s.bytes[size_t(r) * 4], &sc, 4);
      for (int64_t c = 0; c < cols; ++c)
        q.bytes[size_t(r * cols + c)] = uint8_t(mmx::int8_quantize(row[size_t(c)], sc));
    }
    out[name] = std::move(q);
    out[name + "_scale"] = std::move(s);
  }
  return mmx::Model::from_memory(m.config(), std::move(out));
}

}  // namespace cuda_test
