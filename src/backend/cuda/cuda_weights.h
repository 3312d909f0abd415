// The model's weights on one device, in the layout the CUDA kernels want (model-spec §8):
// linear weights (attention projections, experts) int8 + fp32 row scale (W8A16) or bf16;
// embeddings and lm_head bf16; norms and router fp32. Each expert's W1 and W3 are stored as
// one [2F, H] matrix (W1 rows first) so one pass computes the SwiGLU gate and up products.
// Checkpoint weights are uploaded and converted/quantised on the device; a synthetic model
// (no weight bytes) gets deterministic random weights generated in place.
#pragma once
#include <cuda_bf16.h>
#include <cuda_runtime.h>

#include <cstdint>
#include <vector>

#include "backend/cuda/device_memory.h"
#include "kernels/w8a16_gemm.h"
#include "model/model.h"

namespace mmx::cuda {

struct MoeDeviceLayer {
  const float* router = nullptr;             // [E, H]
  std::vector<DeviceMatrix> w13, w2;         // per expert: [2F, H], [H, F]
  // Device arrays of the per-expert pointers, for the grouped kernels.
  const void* const* w13_data = nullptr;
  const float* const* w13_scale = nullptr;
  const void* const* w2_data = nullptr;
  const float* const* w2_scale = nullptr;
};

class DeviceWeights {
 public:
  // int8: W8A16 linear weights (else bf16). seed: synthetic weights only.
  DeviceWeights(MemoryBudget& budget, cudaStream_t stream, bool int8, uint64_t seed);
  void load(const Model& model);

  // Lookups check that the WeightRef belongs to the loaded model and has the expected shape.
  const DeviceMatrix& linear(const WeightRef& w) const;
  const float* vector_f32(const WeightRef& w) const;  // norm weights
  const __nv_bfloat16* embed() const { return embed_; }
  const __nv_bfloat16* lm_head() const { return lm_head_; }
  const MoeDeviceLayer& moe(int64_t layer) const;
  bool int8() const { return int8_; }
  uint64_t bytes() const { return bytes_; }

 private:
  void* allocate(size_t bytes, const WeightRef& w);
  uint64_t seed_for(const WeightRef& w) const;
  // Uploads a checkpoint tensor's bytes (or an I8 tensor's scales) to the staging buffer.
  const void* stage(const void* host, size_t bytes);
  void to_bf16(const WeightRef& w, __nv_bfloat16* dst, float synthetic_half_width);
  void to_f32(const WeightRef& w, float* dst, float synthetic_mean, float synthetic_half_width);
  // Writes w into rows [row0, row0 + w.rows) of a matrix laid out like `dst`.
  void to_linear(const WeightRef& w, const DeviceMatrix& dst, int64_t row0);
  DeviceMatrix new_matrix(int64_t rows, int64_t cols, const WeightRef& named_after);
  void add_linear(const WeightRef& w);
  void add_vector(const WeightRef& w, float synthetic_mean, float synthetic_half_width);

  MemoryBudget& budget_;
  cudaStream_t stream_;
  bool int8_;
  uint64_t seed_;
  bool synthetic_ = false;
  std::vector<DeviceBuffer> buffers_;
  DeviceBuffer staging_;
  uint64_t bytes_ = 0;
  std::vector<DeviceMatrix> linear_;  // by WeightRef::id
  std::vector<const float*> f32_;     // by WeightRef::id
  std::vector<std::pair<int64_t, int64_t>> shape_;  // by id
  __nv_bfloat16* embed_ = nullptr;
  __nv_bfloat16* lm_head_ = nullptr;
  std::vector<MoeDeviceLayer> moe_;
};

}  // namespace mmx::cuda
