#include "backend/cuda/cuda_weights.h"

#include <algorithm>
#include <cmath>
#include <string>

#include "core/error.h"
#include "kernels/cuda_check.h"
#include "kernels/quantize.h"

namespace mmx::cuda {
namespace {

using bf16 = __nv_bfloat16;

// Conversions go through a bounded staging buffer, a block of rows at a time.
constexpr size_t kStagingBytes = size_t(64) << 20;

// A uniform int8 in [-127, 127] has standard deviation sqrt((255^2 - 1) / 12).
const float kUniformInt8Std = std::sqrt((255.0f * 255.0f - 1.0f) / 12.0f);

// Synthetic weights: linear layers N(0, 1/fan_in)-like (uniform with that variance).
float linear_half_width(int64_t cols) { return std::sqrt(3.0f / float(cols)); }

uint64_t mix(uint64_t x) {
  x += 0x9e3779b97f4a7c15ull;
  x = (x ^ (x >> 30)) * 0xbf58476d1ce4e5b9ull;
  x = (x ^ (x >> 27)) * 0x94d049bb133111ebull;
  return x ^ (x >> 31);
}

}  // namespace

DeviceWeights::DeviceWeights(MemoryBudget& budget, cudaStream_t stream, bool int8, uint64_t seed)
    : budget_(budget), stream_(stream), int8_(int8), seed_(seed) {}

void* DeviceWeights::allocate(size_t bytes, const WeightRef& w) {
  buffers_.emplace_back(budget_, bytes, "weight " + w.name);
  bytes_ += bytes;
  return buffers_.back().get();
}

uint64_t DeviceWeights::seed_for(const WeightRef& w) const { return mix(seed_ ^ mix(uint64_t(w.id))); }

const void* DeviceWeights::stage(const void* host, size_t bytes) {
  MMX_CHECK(bytes <= staging_.size(), Code::Internal, "weight staging: block too large");
  MMX_CUDA_CHECK(cudaMemcpyAsync(staging_.get(), host, bytes, cudaMemcpyHostToDevice, stream_),
                 "uploading weights (cudaMemcpyAsync)");
  return staging_.get();
}

// Rows per staging block for a tensor of `row_bytes` per row.
static int64_t block_rows(size_t row_bytes) {
  int64_t r = int64_t(kStagingBytes / (row_bytes ? row_bytes : 1));
  return r < 1 ? 1 : r;
}

void DeviceWeights::to_bf16(const WeightRef& w, bf16* dst, float synthetic_half_width) {
  const int64_t n = w.numel();
  if (!w.data) {
    fill_uniform_bf16(dst, n, seed_for(w), 0.0f, synthetic_half_width, stream_);
    return;
  }
  if (w.dtype == DType::BF16) {
    MMX_CUDA_CHECK(cudaMemcpyAsync(dst, w.data, size_t(n) * 2, cudaMemcpyHostToDevice, stream_),
                   ("uploading " + w.name).c_str());
    return;
  }
  if (w.dtype == DType::I8) {  // rare for these tensors: dequantise on the host
    const std::vector<float> f = w.to_f32();
    for (int64_t r0 = 0; r0 < w.rows; r0 += block_rows(size_t(w.cols) * 4)) {
      const int64_t nr = std::min(block_rows(size_t(w.cols) * 4), w.rows - r0);
      const void* src = stage(f.data() + r0 * w.cols, size_t(nr * w.cols) * 4);
      convert_to_bf16(src, DType::F32, nr * w.cols, dst + r0 * w.cols, stream_);
    }
    // `f` is freed on return: wait for the copies that read it.
    MMX_CUDA_CHECK(cudaStreamSynchronize(stream_), "uploading weights");
    return;
  }
  const size_t es = dtype_size(w.dtype);
  const int64_t br = block_rows(size_t(w.cols) * es);
  for (int64_t r0 = 0; r0 < w.rows; r0 += br) {
    const int64_t nr = std::min(br, w.rows - r0);
    const void* src = stage(w.data + size_t(r0 * w.cols) * es, size_t(nr * w.cols) * es);
    convert_to_bf16(src, w.dtype, nr * w.cols, dst + r0 * w.cols, stream_);
  }
}

void DeviceWeights::to_f32(const WeightRef& w, float* dst, float synthetic_mean,
                           float synthetic_half_width) {
  const int64_t n = w.numel();
  if (!w.data) {
    fill_uniform_f32(dst, n, seed_for(w), synthetic_mean, synthetic_half_width, stream_);
    return;
  }
  if (w.dtype == DType::F32) {
    MMX_CUDA_CHECK(cudaMemcpyAsync(dst, w.data, size_t(n) * 4, cudaMemcpyHostToDevice, stream_),
                   ("uploading " + w.name).c_str());
    return;
  }
  if (w.dtype == DType::I8) {
    const std::vector<float> f = w.to_f32();
    MMX_CUDA_CHECK(cudaMemcpyAsync(dst, f.data(), size_t(n) * 4, cudaMemcpyHostToDevice, stream_),
                   ("uploading " + w.name).c_str());
    MMX_CUDA_CHECK(cudaStreamSynchronize(stream_), "uploading weights");
    return;
  }
  const size_t es = dtype_size(w.dtype);
  const int64_t br = block_rows(size_t(w.cols) * es);
  for (int64_t r0 = 0; r0 < w.rows; r0 += br) {
    const int64_t nr = std::min(br, w.rows - r0);
    const void* src = stage(w.data + size_t(r0 * w.cols) * es, size_t(nr * w.cols) * es);
    convert_to_f32(src, w.dtype, nr * w.cols, dst + r0 * w.cols, stream_);
  }
}

DeviceMatrix DeviceWeights::new_matrix(int64_t rows, int64_t cols, const WeightRef& named_after) {
  DeviceMatrix m;
  m.dtype = int8_ ? DType::I8 : DType::BF16;
  m.rows = rows;
  m.cols = cols;
  m.data = allocate(size_t(rows * cols) * (int8_ ? 1 : 2), named_after);
  if (int8_) m.scale = static_cast<const float*>(allocate(size_t(rows) * 4, named_after));
  return m;
}

void DeviceWeights::to_linear(const WeightRef& w, const DeviceMatrix& dst, int64_t row0) {
  MMX_CHECK(w.cols == dst.cols && row0 + w.rows <= dst.rows, Code::Internal,
            "weight " + w.name + " does not fit its device matrix");
  const int64_t rows = w.rows, cols = w.cols;
  if (dst.dtype == DType::BF16) {
    to_bf16(w, static_cast<bf16*>(const_cast<void*>(dst.data)) + row0 * cols,
            linear_half_width(cols));
    return;
  }
  int8_t* q = static_cast<int8_t*>(const_cast<void*>(dst.data)) + row0 * cols;
  float* scale = const_cast<float*>(dst.scale) + row0;
  if (!w.data) {
    const float row_scale = 1.0f / (std::sqrt(float(cols)) * kUniformInt8Std);
    fill_uniform_int8(q, scale, rows, cols, seed_for(w), row_scale, stream_);
    return;
  }
  if (w.dtype == DType::I8) {  // a pre-quantised checkpoint: used as is
    MMX_CHECK(w.scale != nullptr, Code::Format, "int8 weight " + w.name + " has no scales");
    MMX_CUDA_CHECK(cudaMemcpyAsync(q, w.data, size_t(rows * cols), cudaMemcpyHostToDevice, stream_),
                   ("uploading " + w.name).c_str());
    if (w.scale_dtype == DType::F32) {
      MMX_CUDA_CHECK(cudaMemcpyAsync(scale, w.scale, size_t(rows) * 4, cudaMemcpyHostToDevice, stream_),
                     ("uploading scales of " + w.name).c_str());
    } else {
      const void* src = stage(w.scale, size_t(rows) * dtype_size(w.scale_dtype));
      convert_to_f32(src, w.scale_dtype, rows, scale, stream_);
    }
    return;
  }
  const size_t es = dtype_size(w.dtype);
  const int64_t br = block_rows(size_t(cols) * es);
  for (int64_t r0 = 0; r0 < rows; r0 += br) {
    const int64_t nr = std::min(br, rows - r0);
    const void* src = stage(w.data + size_t(r0 * cols) * es, size_t(nr * cols) * es);
    quantize_rows_int8(src, w.dtype, nr, cols, q + r0 * cols, scale + r0, stream_);
  }
}

void DeviceWeights::add_linear(const WeightRef& w) {
  DeviceMatrix m = new_matrix(w.rows, w.cols, w);
  to_linear(w, m, 0);
  linear_[size_t(w.id)] = m;
  shape_[size_t(w.id)] = {w.rows, w.cols};
}

void DeviceWeights::add_vector(const WeightRef& w, float synthetic_mean, float synthetic_half_width) {
  float* p = static_cast<float*>(allocate(size_t(w.numel()) * 4, w));
  to_f32(w, p, synthetic_mean, synthetic_half_width);
  f32_[size_t(w.id)] = p;
  shape_[size_t(w.id)] = {w.rows, w.cols};
}

void DeviceWeights::load(const Model& model) {
  const ModelConfig& c = model.config();
  const ModelWeights& mw = model.weights();
  synthetic_ = model.is_synthetic();
  linear_.assign(size_t(mw.count), DeviceMatrix{});
  f32_.assign(size_t(mw.count), nullptr);
  shape_.assign(size_t(mw.count), {-1, -1});
  moe_.assign(size_t(c.layers), MoeDeviceLayer{});
  staging_ = DeviceBuffer(budget_, kStagingBytes, "weight staging");

  auto check_ref = [&](const WeightRef& w) {
    MMX_CHECK(w.id >= 0 && w.id < mw.count, Code::Internal,
              "weight " + w.name + " has id " + std::to_string(w.id) + " outside [0, " +
                  std::to_string(mw.count) + ")");
    MMX_CHECK(synthetic_ || w.valid(), Code::Format, "weight " + w.name + " has no data");
  };

  check_ref(mw.embed);
  embed_ = static_cast<bf16*>(allocate(size_t(mw.embed.numel()) * 2, mw.embed));
  to_bf16(mw.embed, embed_, std::sqrt(3.0f));
  shape_[size_t(mw.embed.id)] = {mw.embed.rows, mw.embed.cols};
  check_ref(mw.lm_head);
  const bool tied = mw.lm_head.id == mw.embed.id ||
                    (mw.lm_head.data != nullptr && mw.lm_head.data == mw.embed.data &&
                     mw.lm_head.dtype == mw.embed.dtype);
  if (tied) {
    lm_head_ = embed_;
  } else {
    lm_head_ = static_cast<bf16*>(allocate(size_t(mw.lm_head.numel()) * 2, mw.lm_head));
    to_bf16(mw.lm_head, lm_head_, linear_half_width(mw.lm_head.cols));
    shape_[size_t(mw.lm_head.id)] = {mw.lm_head.rows, mw.lm_head.cols};
  }
  check_ref(mw.final_norm);
  add_vector(mw.final_norm, 1.0f, 0.1f);

  for (size_t i = 0; i < mw.layers.size(); ++i) {
    const LayerWeights& l = mw.layers[i];
    for (const WeightRef* n : {&l.input_norm, &l.post_norm}) {
      check_ref(*n);
      add_vector(*n, 1.0f, 0.1f);
    }
    if (l.kind == LayerKind::Lightning) {
      for (const WeightRef* w : {&l.qkv, &l.out_gate, &l.out_proj}) {
        check_ref(*w);
        add_linear(*w);
      }
      check_ref(l.attn_norm);
      add_vector(l.attn_norm, 1.0f, 0.1f);
    } else {
      for (const WeightRef* w : {&l.q, &l.k, &l.v, &l.o}) {
        check_ref(*w);
        add_linear(*w);
      }
    }

    MoeDeviceLayer& moe = moe_[i];
    check_ref(l.router);
    add_vector(l.router, 0.0f, std::sqrt(3.0f / float(c.hidden)));
    moe.router = f32_[size_t(l.router.id)];
    const size_t E = l.w1.size();
    MMX_CHECK(E == size_t(c.experts) && l.w3.size() == E && l.w2.size() == E, Code::Internal,
              "layer " + std::to_string(i) + ": expert weights do not match the config");
    std::vector<const void*> w13_data(E), w2_data(E);
    std::vector<const float*> w13_scale(E), w2_scale(E);
    for (size_t e = 0; e < E; ++e) {
      const WeightRef &w1 = l.w1[e], &w3 = l.w3[e], &w2 = l.w2[e];
      for (const WeightRef* w : {&w1, &w3, &w2}) check_ref(*w);
      MMX_CHECK(w1.rows == w3.rows && w1.cols == w3.cols, Code::Format,
                "expert weights " + w1.name + " and " + w3.name + " differ in shape");
      DeviceMatrix w13 = new_matrix(2 * w1.rows, w1.cols, w1);
      to_linear(w1, w13, 0);
      to_linear(w3, w13, w1.rows);
      moe.w13.push_back(w13);
      // W1 and W3 are also reachable alone, as views of the fused matrix.
      const size_t es = int8_ ? 1 : 2;
      DeviceMatrix v1 = w13, v3 = w13;
      v1.rows = v3.rows = w1.rows;
      v3.data = static_cast<const char*>(w13.data) + size_t(w1.rows * w1.cols) * es;
      if (int8_) v3.scale = w13.scale + w1.rows;
      linear_[size_t(w1.id)] = v1;
      linear_[size_t(w3.id)] = v3;
      shape_[size_t(w1.id)] = {w1.rows, w1.cols};
      shape_[size_t(w3.id)] = {w3.rows, w3.cols};
      add_linear(w2);
      moe.w2.push_back(linear_[size_t(w2.id)]);
      w13_data[e] = w13.data;
      w13_scale[e] = w13.scale;
      w2_data[e] = moe.w2.back().data;
      w2_scale[e] = moe.w2.back().scale;
    }
    // The pointer tables the grouped kernels index by expert.
    void* tables = allocate(4 * E * sizeof(void*), l.router);
    const void** t = static_cast<const void**>(tables);
    MMX_CUDA_CHECK(cudaMemcpyAsync(t, w13_data.data(), E * sizeof(void*), cudaMemcpyHostToDevice, stream_),
                   "uploading expert tables");
    MMX_CUDA_CHECK(cudaMemcpyAsync(t + E, w13_scale.data(), E * sizeof(void*), cudaMemcpyHostToDevice, stream_),
                   "uploading expert tables");
    MMX_CUDA_CHECK(cudaMemcpyAsync(t + 2 * E, w2_data.data(), E * sizeof(void*), cudaMemcpyHostToDevice, stream_),
                   "uploading expert tables");
    MMX_CUDA_CHECK(cudaMemcpyAsync(t + 3 * E, w2_scale.data(), E * sizeof(void*), cudaMemcpyHostToDevice, stream_),
                   "uploading expert tables");
    // The host vectors die with this iteration: the copies must have read them.
    MMX_CUDA_CHECK(cudaStreamSynchronize(stream_), "uploading expert tables");
    moe.w13_data = t;
    moe.w13_scale = reinterpret_cast<const float* const*>(t + E);
    moe.w2_data = t + 2 * E;
    moe.w2_scale = reinterpret_cast<const float* const*>(t + 3 * E);
  }
  MMX_CUDA_CHECK(cudaStreamSynchronize(stream_), "preparing weights");
  staging_ = DeviceBuffer();
}

const DeviceMatrix& DeviceWeights::linear(const WeightRef& w) const {
  MMX_CHECK(w.id >= 0 && size_t(w.id) < linear_.size() && linear_[size_t(w.id)].data,
            Code::InvalidArgument,
            "cuda backend: weight '" + w.name + "' is not a linear weight of the prepared model");
  const DeviceMatrix& m = linear_[size_t(w.id)];
  MMX_CHECK(m.rows == w.rows && m.cols == w.cols, Code::InvalidArgument,
            "cuda backend: weight '" + w.name + "' does not match the prepared copy's shape");
  return m;
}

const float* DeviceWeights::vector_f32(const WeightRef& w) const {
  MMX_CHECK(w.id >= 0 && size_t(w.id) < f32_.size() && f32_[size_t(w.id)], Code::InvalidArgument,
            "cuda backend: weight '" + w.name + "' is not a norm weight of the prepared model");
  MMX_CHECK(shape_[size_t(w.id)] == std::make_pair(w.rows, w.cols), Code::InvalidArgument,
            "cuda backend: weight '" + w.name + "' does not match the prepared copy's shape");
  return f32_[size_t(w.id)];
}

const MoeDeviceLayer& DeviceWeights::moe(int64_t layer) const {
  MMX_CHECK(layer >= 0 && size_t(layer) < moe_.size(), Code::InvalidArgument,
            "cuda backend: moe layer " + std::to_string(layer) + " out of range");
  return moe_[size_t(layer)];
}

}  // namespace mmx::cuda
