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

// Typed access: activations are bf16, the residual stream fp32; math is always fp32.
// load8/store8 move 8 elements (16 or 32 bytes) at index v*8, for 16-byte aligned pointers.
__device__ __forceinline__ float load1(const bf16* p, int64_t i) { return __bfloat162float(p[i]); }
__device__ __forceinline__ float load1(const float* p, int64_t i) { return p[i]; }
__device__ __forceinline__ void store1(bf16* p, int64_t i, float v) { p[i] = __float2bfloat16(v); }
__device__ __forceinline__ void store1(float* p, int64_t i, float v) { p[i] = v; }
__device__ __forceinline__ void load8(const bf16* p, int64_t v, float* f) {
  bf16x8_to_f32(reinterpret_cast<const Bf16x8*>(p)[v], f);
}
__device__ __forceinline__ void load8(const float* p, int64_t v, float* f) {
  const float4 a = reinterpret_cast<const float4*>(p)[2 * v], b = reinterpret_cast<const float4*>(p)[2 * v + 1];
  f[0] = a.x, f[1] = a.y, f[2] = a.z, f[3] = a.w, f[4] = b.x, f[5] = b.y, f[6] = b.z, f[7] = b.w;
}
__device__ __forceinline__ void store8(bf16* p, int64_t v, const float* f) {
  reinterpret_cast<Bf16x8*>(p)[v] = f32_to_bf16x8(f);
}
__device__ __forceinline__ void store8(float* p, int64_t v, const float* f) {
  reinterpret_cast<float4*>(p)[2 * v] = make_float4(f[0], f[1], f[2], f[3]);
  reinterpret_cast<float4*>(p)[2 * v + 1] = make_float4(f[4], f[5], f[6], f[7]);
}

// out[i] = op(a[i], b ? b[i] : 0). out may alias a or b (same type): each element is read and
// written by the same thread.
template <typename Op, bool kVec, typename A, typename B, typename O>
__global__ void binary_kernel(const A* a, const B* b, O* out, int64_t n, Op op) {
  const int64_t stride = int64_t(gridDim.x) * blockDim.x;
  int64_t i = int64_t(blockIdx.x) * blockDim.x + threadIdx.x;
  if constexpr (kVec) {
    const int64_t n8 = n / 8;
    for (int64_t v = i; v < n8; v += stride) {
      float fa[8], fb[8] = {0, 0, 0, 0, 0, 0, 0, 0}, fo[8];
      load8(a, v, fa);
      if (b) load8(b, v, fb);
#pragma unroll
      for (int j = 0; j < 8; ++j) fo[j] = op(fa[j], fb[j]);
      store8(out, v, fo);
    }
    i += n8 * 8;  // the tail, at most 7 elements
  }
  for (; i < n; i += stride) {
    const float fb = b ? load1(b, i) : 0.0f;
    store1(out, i, op(load1(a, i), fb));
  }
}

template <typename Op, typename A, typename B, typename O>
void launch_binary(const A* a, const B* b, O* out, int64_t n, Op op, cudaStream_t s,
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
// `low` (optional) receives a bf16 copy of the output: the matrix products' input when the
// output is the fp32 residual stream, written in the same pass.
template <bool kVec, typename In, typename Out>
__global__ void rms_norm_kernel(const In* x, const float* w, float eps, Out* out, bf16* low,
                                int64_t cols) {
  __shared__ float red[32];
  const In* xr = x + int64_t(blockIdx.x) * cols;
  Out* outr = out + int64_t(blockIdx.x) * cols;
  bf16* lowr = low ? low + int64_t(blockIdx.x) * cols : nullptr;
  float ss = 0.0f;
  if constexpr (kVec) {
    const int64_t c8 = cols / 8;
    for (int64_t v = threadIdx.x; v < c8; v += blockDim.x) {
      float f[8];
      load8(xr, v, f);
#pragma unroll
      for (int j = 0; j < 8; ++j) ss += f[j] * f[j];
    }
  } else {
    for (int64_t c = threadIdx.x; c < cols; c += blockDim.x) {
      const float f = load1(xr, c);
      ss += f * f;
    }
  }
  // Every thread has read all of its elements before anyone writes (out may alias x).
  const float inv = rsqrtf(block_sum(ss, red) / float(cols) + eps);
  if constexpr (kVec) {
    const int64_t c8 = cols / 8;
    for (int64_t v = threadIdx.x; v < c8; v += blockDim.x) {
      float f[8];
      load8(xr, v, f);
#pragma unroll
      for (int j = 0; j < 8; ++j) f[j] = f[j] * inv * w[v * 8 + j];
      store8(outr, v, f);
      if (lowr) store8(lowr, v, f);
    }
  } else {
    for (int64_t c = threadIdx.x; c < cols; c += blockDim.x) {
      const float f = load1(xr, c) * inv * w[c];
      store1(outr, c, f);
      if (lowr) store1(lowr, c, f);
    }
  }
}

template <typename Out>
__global__ void embed_kernel(const int32_t* ids, const bf16* table, int64_t V, int64_t H,
                             Out* out) {
  const int64_t t = blockIdx.x;
  const int32_t id = ids[t];
  Out* dst = out + t * H;
  if (id < 0 || id >= V) {
    for (int64_t c = threadIdx.x; c < H; c += blockDim.x) store1(dst, c, 0.0f);
    return;
  }
  const bf16* src = table + int64_t(id) * H;
  for (int64_t c = threadIdx.x; c < H; c += blockDim.x) store1(dst, c, __bfloat162float(src[c]));
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

template <typename In, typename Out>
static void launch_rms_norm(const In* x, const float* w, float eps, Out* out, bf16* low,
                            int64_t rows, int64_t cols, cudaStream_t stream) {
  if (rows <= 0 || cols <= 0) return;
  const int threads = row_threads(cols);
  if (cols % 8 == 0 && aligned16(x) && aligned16(out) && (!low || aligned16(low))) {
    rms_norm_kernel<true><<<unsigned(rows), threads, 0, stream>>>(x, w, eps, out, low, cols);
  } else {
    rms_norm_kernel<false><<<unsigned(rows), threads, 0, stream>>>(x, w, eps, out, low, cols);
  }
  MMX_CUDA_CHECK_LAUNCH("rms_norm kernel launch");
}

void rms_norm(const bf16* x, const float* w, float eps, bf16* out, int64_t rows, int64_t cols,
              cudaStream_t stream) {
  launch_rms_norm(x, w, eps, out, static_cast<bf16*>(nullptr), rows, cols, stream);
}

void rms_norm(const float* x, const float* w, float eps, float* out, bf16* out_bf16,
              int64_t rows, int64_t cols, cudaStream_t stream) {
  launch_rms_norm(x, w, eps, out, out_bf16, rows, cols, stream);
}

void silu_inplace(bf16* x, int64_t n, cudaStream_t stream) {
  launch_binary(x, static_cast<const bf16*>(nullptr), x, n, SiluOp{}, stream, "silu kernel launch");
}

void sigmoid_mul(const bf16* gate, bf16* x, int64_t n, cudaStream_t stream) {
  launch_binary(gate, x, x, n, SigmoidMulOp{}, stream, "sigmoid_mul kernel launch");
}

void scale_add(const bf16* h, float alpha, const bf16* a, float beta, bf16* out, int64_t n,
               cudaStream_t stream) {
  launch_binary(h, a, out, n, ScaleAddOp{alpha, beta}, stream, "scale_add kernel launch");
}

void scale_add(const float* h, float alpha, const bf16* a, float beta, float* out, int64_t n,
               cudaStream_t stream) {
  launch_binary(h, a, out, n, ScaleAddOp{alpha, beta}, stream, "scale_add kernel launch");
}

template <typename Out>
static void launch_embed(const int32_t* ids, int64_t T, const bf16* table, int64_t V, int64_t H,
                         Out* out, cudaStream_t stream) {
  if (T <= 0) return;
  embed_kernel<<<unsigned(T), row_threads(H), 0, stream>>>(ids, table, V, H, out);
  MMX_CUDA_CHECK_LAUNCH("embed kernel launch");
}

void embed_rows(const int32_t* ids, int64_t T, const bf16* table, int64_t V, int64_t H,
                bf16* out, cudaStream_t stream) {
  launch_embed(ids, T, table, V, H, out, stream);
}

void embed_rows(const int32_t* ids, int64_t T, const bf16* table, int64_t V, int64_t H,
                float* out, cudaStream_t stream) {
  launch_embed(ids, T, table, V, H, out, stream);
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
