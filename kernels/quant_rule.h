// The W8A16 quantisation rule, shared by the host (minimax-quantize, tests) and the device
// (CudaBackend::prepare quantises bf16/fp32 checkpoints on the GPU): per output row,
// symmetric, scale = max|w| / 127, q = round-half-even(w / scale) clamped to [-127, 127];
// an all-zero row gets scale 0 and q = 0. Dequantised value: q * scale.
// Plain C++ unless compiled by nvcc, where the functions are usable in kernels too.
#pragma once
#include <cmath>
#include <cstdint>

#if defined(__CUDACC__)
#define MMX_HOST_DEVICE __host__ __device__
#else
#define MMX_HOST_DEVICE
#endif

namespace mmx {

MMX_HOST_DEVICE inline float int8_row_scale(float absmax) { return absmax / 127.0f; }

MMX_HOST_DEVICE inline int8_t int8_quantize(float w, float scale) {
  if (scale == 0.0f) return 0;
  float q = rintf(w / scale);
  q = q > 127.0f ? 127.0f : (q < -127.0f ? -127.0f : q);
  return int8_t(q);
}

}  // namespace mmx
