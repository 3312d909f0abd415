#include "kernels/elementwise.h"

#include <string>

#include "kernels/common.cuh"

namespace mmx::cuda {
namespace {

// ---- element-wise ops: 8 elements per 16-byte access where all operands are aligned, a
// scalar loop for the tail and for unaligned operands.

struct SiluOp {
  __device__ float operator()(float x, float) const { return silu_f32(x); }
};
struct SigmoidMulOp {  // a = gate, b = x
  __device__ float operator()(float gate, float x) const { return sigmoid_f32(gate) * x; }
};
struct ScaleAddOp {
  float alpha, beta;
  __device__ float operator()(float h, float a) const { return alpha * h + beta * a; }
};

// out[i] = op(a[i], b ? b[i] : 0). out may alias a or b: each element is read and written by
// the same thread.
template <typename Op, bool kVec>
__global__ void binary_kernel(const bf16* a, const bf16* b, bf16* out, int64_t n, Op op) {
  const int64_t stride = int64_t(gridDim.x) * blockDim.x;
  int64_t i = int64_t(blockIdx.x) * blockDim.x + threadIdx.x;
  if constexpr (kVec) {
    const int64_t n8 = n / 8;
    for (int64_t v = i; v < n8; v += stride) {
      float fa[8], fb[8] = {0, 0, 0, 0, 0, 0, 0, 0}, fo[8];
      bf16x8_to_f32(reinterpret_cast<const Bf16x8*>(a)[v], fa);
      if (b) bf16x8_to_f32(reinterpret_cast<const Bf16x8*>(b)[v], fb);
#pragma unroll
      for (int j = 0; j < 8; ++j) fo[j] = op(fa[j], fb[j]);
      reinterpret_cast<Bf16x8*>(out)[v] = f32_to_bf16x8(fo);
    }
    i += n8 * 8;  // the tail, at most 7 elements
  }
  for (; i < n; i += stride) {
    const float fb = b ? __bfloat162float(b[i]) : 0.0f;
    out[i] = __float2bfloat16(op(__bfloat162float(a[i]), fb));
  }
}

template <typename Op>
void launch_binary(const bf16* a, const bf16* b, bf16* out, int64_t n, Op op, cudaStream_t s,
                   const char* what) {
  if (n <= 0) return;
  constexpr int kThreads = 256;
  const bool vec = aligned16(a) && aligned16(out) && (!b || aligned16(b));
  if (vec) {
    binary_kernel<Op, true><<<grid_for(ceil_div(n, 8), kThreads), kThreads, 0, s>>>(a, b, out, n, op);
  } else {
    binary_kernel<Op, false><<<grid_for(n, kThreads), kThreads, 0, s>>>(a, b, out, n, op);
  }
  MMX_CUDA_CHECK_LAUNCH(what);
}

// ---- RMSNorm: one block per row; fp32 statistics; the second pass re-reads x (L1/L2 hit).
template <bool kVec>
__global__ void rms_norm_kernel(const bf16* x, const float* w, float eps, bf16* out,
                                int64_t cols) {
  __shared__ float red[32];
  const bf16* xr = x + int64_t(blockIdx.x) * cols;
  bf16* outr = out + int64_t(blockIdx.x) * cols;
  float ss = 0.0f;
  if constexpr (kVec) {
    const int64_t c8 = cols / 8;
    for (int64_t v = threadIdx.x; v < c8; v += blockDim.x) {
      float f[8];
      bf16x8_to_f32(reinterpret_cast<const Bf16x8*>(xr)[v], f);
#pragma unroll
      for (int j = 0; j < 8; ++j) ss += f[j] * f[j];
    }
  } else {
    for (int64_t c = threadIdx.x; c < cols; c += blockDim.x) {
      const float f = __bfloat162float(xr[c]);
      ss += f * f;
    }
  }
  // Every thread has read all of its elements before anyone writes (out may alias x).
  const float inv = rsqrtf(block_sum(ss, red) / float(cols) + eps);
  if constexpr (kVec) {
    const int64_t c8 = cols / 8;
    for (int64_t v = threadIdx.x; v < c8; v += blockDim.x) {
      float f[8];
      bf16x8_to_f32(reinterpret_cast<const Bf16x8*>(xr)[v], f);
#pragma unroll
      for (int j = 0; j < 8; ++j) f[j] = f[j] * inv * w[v * 8 + j];
      reinterpret_cast<Bf16x8*>(outr)[v] = f32_to_bf16x8(f);
    }
  } else {
    for (int64_t c = threadIdx.x; c < cols; c += blockDim.x)
      outr[c] = __float2bfloat16(__bfloat162float(xr[c]) * inv * w[c]);
  }
}

__global__ void embed_kernel(const int32_t* ids, const bf16* table, int64_t V, int64_t H,
                             bf16* out) {
  const int64_t t = blockIdx.x;
  const int32_t id = ids[t];
  bf16* dst = out + t * H;
  if (id < 0 || id >= V) {
    for (int64_t c = threadIdx.x; c < H; c += blockDim.x) dst[c] = __float2bfloat16(0.0f);
    return;
  }
  const bf16* src = table + int64_t(id) * H;
  for (int64_t c = threadIdx.x; c < H; c += blockDim.x) dst[c] = src[c];
}

__global__ void gather_kernel(const bf16* x, int64_t x_rows, const int32_t* rows, int64_t cols,
                              bf16* out) {
  const int64_t i = blockIdx.x;
  const int32_t r = rows[i];
  bf16* dst = out + i * cols;
  if (r < 0 || r >= x_rows) {  // never expected; zeros keep a bug from reading out of bounds
    for (int64_t c = threadIdx.x; c < cols; c += blockDim.x) dst[c] = __float2bfloat16(0.0f);
    return;
  }
  const bf16* src = x + int64_t(r) * cols;
  if ((cols % 8) == 0 && aligned16(x) && aligned16(out)) {
    for (int64_t v = threadIdx.x; v < cols / 8; v += blockDim.x)
      reinterpret_cast<Bf16x8*>(dst)[v] = reinterpret_cast<const Bf16x8*>(src)[v];
  } else {
    for (int64_t c = threadIdx.x; c < cols; c += blockDim.x) dst[c] = src[c];
  }
}

__global__ void f32_to_bf16_kernel(const float* src, bf16* dst, int64_t n) {
  for (int64_t i = int64_t(blockIdx.x) * blockDim.x + threadIdx.x; i < n;
       i += int64_t(gridDim.x) * blockDim.x)
    dst[i] = __float2bfloat16(src[i]);
}

__global__ void bf16_to_f32_kernel(const bf16* src, float* dst, int64_t n) {
  for (int64_t i = int64_t(blockIdx.x) * blockDim.x + threadIdx.x; i < n;
       i += int64_t(gridDim.x) * blockDim.x)
    dst[i] = __bfloat162float(src[i]);
}

int row_threads(int64_t cols) {
  // Enough threads to cover a row in a few passes; a multiple of 32 (block_sum needs it).
  int64_t t = ceil_div(cols, 8 * kWarp) * kWarp;
  if (t < 64) t = 64;
  if (t > 1024) t = 1024;
  return int(t);
}

}  // namespace

void rms_norm(const bf16* x, const float* w, float eps, bf16* out, int64_t rows, int64_t cols,
              cudaStream_t stream) {
  if (rows <= 0 || cols <= 0) return;
  const int threads = row_threads(cols);
  if (cols % 8 == 0 && aligned16(x) && aligned16(out)) {
    rms_norm_kernel<true><<<unsigned(rows), threads, 0, stream>>>(x, w, eps, out, cols);
  } else {
    rms_norm_kernel<false><<<unsigned(rows), threads, 0, stream>>>(x, w, eps, out, cols);
  }
  MMX_CUDA_CHECK_LAUNCH("rms_norm kernel launch");
}

void silu_inplace(bf16* x, int64_t n, cudaStream_t stream) {
  launch_binary(x, nullptr, x, n, SiluOp{}, stream, "silu kernel launch");
}

void sigmoid_mul(const bf16* gate, bf16* x, int64_t n, cudaStream_t stream) {
  launch_binary(gate, x, x, n, SigmoidMulOp{}, stream, "sigmoid_mul kernel launch");
}

void scale_add(const bf16* h, float alpha, const bf16* a, float beta, bf16* out, int64_t n,
               cudaStream_t stream) {
  launch_binary(h, a, out, n, ScaleAddOp{alpha, beta}, stream, "scale_add kernel launch");
}

void embed_rows(const int32_t* ids, int64_t T, const bf16* table, int64_t V, int64_t H,
                bf16* out, cudaStream_t stream) {
  if (T <= 0) return;
  embed_kernel<<<unsigned(T), row_threads(H), 0, stream>>>(ids, table, V, H, out);
  MMX_CUDA_CHECK_LAUNCH("embed kernel launch");
}

void gather_rows(const bf16* x, int64_t x_rows, const int32_t* rows, int64_t n, int64_t cols,
                 bf16* out, cudaStream_t stream) {
  if (n <= 0) return;
  gather_kernel<<<unsigned(n), row_threads(cols), 0, stream>>>(x, x_rows, rows, cols, out);
  MMX_CUDA_CHECK_LAUNCH("gather_rows kernel launch");
}

void f32_to_bf16(const float* src, bf16* dst, int64_t n, cudaStream_t stream) {
  if (n <= 0) return;
  f32_to_bf16_kernel<<<grid_for(n, 256), 256, 0, stream>>>(src, dst, n);
  MMX_CUDA_CHECK_LAUNCH("f32_to_bf16 kernel launch");
}

void bf16_to_f32(const bf16* src, float* dst, int64_t n, cudaStream_t stream) {
  if (n <= 0) return;
  bf16_to_f32_kernel<<<grid_for(n, 256), 256, 0, stream>>>(src, dst, n);
  MMX_CUDA_CHECK_LAUNCH("bf16_to_f32 kernel launch");
}

}  // namespace mmx::cuda

namespace mmx::cuda {

void check_kernel_image(int device) {
  cudaFuncAttributes attr{};
  const cudaError_t err = cudaFuncGetAttributes(&attr, f32_to_bf16_kernel);
  if (err == cudaSuccess) return;
  cudaGetLastError();
  cudaDeviceProp props{};
  cudaGetDeviceProperties(&props, device);
  throw Error(Code::Device,
              "CUDA backend: this build has no kernels for device " + std::to_string(device) + " (" +
                  props.name + ", compute capability " + std::to_string(props.major) + "." +
                  std::to_string(props.minor) + "): " + cudaGetErrorString(err) +
                  "; rebuild with CMAKE_CUDA_ARCHITECTURES including this GPU");
}

}  // namespace mmx::cuda
