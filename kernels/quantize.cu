#include "kernels/quantize.h"

#include "kernels/common.cuh"
#include "kernels/quant_rule.h"

namespace mmx::cuda {
namespace {

__device__ __forceinline__ float load_as_f32(const void* src, DType t, int64_t i) {
  switch (t) {
    case DType::F32: return static_cast<const float*>(src)[i];
    case DType::BF16: return __bfloat162float(static_cast<const __nv_bfloat16*>(src)[i]);
    case DType::F16: return __half2float(static_cast<const __half*>(src)[i]);
    default: return 0.0f;  // rejected on the host
  }
}

void check_float_type(DType t, const char* what) {
  MMX_CHECK(t == DType::F32 || t == DType::BF16 || t == DType::F16, Code::Unsupported,
            std::string(what) + ": source dtype " + dtype_name(t) + " is not a float type");
}

// One block per row: absmax reduction, then the shared rounding rule.
__global__ void quantize_kernel(const void* src, DType t, int64_t cols, int8_t* q, float* scale) {
  __shared__ float red[32];
  __shared__ float row_max;
  const int64_t base = int64_t(blockIdx.x) * cols;
  float amax = 0.0f;
  for (int64_t c = threadIdx.x; c < cols; c += blockDim.x)
    amax = fmaxf(amax, fabsf(load_as_f32(src, t, base + c)));
  // Reduce within warps, then warp 0 across the warps' results.
  amax = warp_max(amax);
  if (threadIdx.x % kWarp == 0) red[threadIdx.x / kWarp] = amax;
  __syncthreads();
  if (threadIdx.x < kWarp) {
    float m = threadIdx.x < blockDim.x / kWarp ? red[threadIdx.x] : 0.0f;
    m = warp_max(m);
    if (threadIdx.x == 0) row_max = m;
  }
  __syncthreads();
  const float s = int8_row_scale(row_max);
  if (threadIdx.x == 0) scale[blockIdx.x] = s;
  for (int64_t c = threadIdx.x; c < cols; c += blockDim.x)
    q[base + c] = int8_quantize(load_as_f32(src, t, base + c), s);
}

__global__ void dequantize_kernel(const int8_t* q, const float* scale, int64_t rows, int64_t cols,
                                  __nv_bfloat16* out) {
  const int64_t n = rows * cols;
  const int64_t stride = int64_t(gridDim.x) * blockDim.x;
  if ((cols % 8) == 0) {
    // Eight int8 (8 bytes) in, eight bf16 (16 bytes) out per step; a row never straddles.
    for (int64_t v = int64_t(blockIdx.x) * blockDim.x + threadIdx.x; v < n / 8; v += stride) {
      const int64_t r = (v * 8) / cols;
      const float s = scale[r];
      const int2 raw = reinterpret_cast<const int2*>(q)[v];
      const int8_t* b = reinterpret_cast<const int8_t*>(&raw);
      float f[8];
#pragma unroll
      for (int j = 0; j < 8; ++j) f[j] = float(b[j]) * s;
      reinterpret_cast<Bf16x8*>(out)[v] = f32_to_bf16x8(f);
    }
  } else {
    for (int64_t i = int64_t(blockIdx.x) * blockDim.x + threadIdx.x; i < n; i += stride)
      out[i] = __float2bfloat16(float(q[i]) * scale[i / cols]);
  }
}

__global__ void convert_bf16_kernel(const void* src, DType t, int64_t n, __nv_bfloat16* dst) {
  for (int64_t i = int64_t(blockIdx.x) * blockDim.x + threadIdx.x; i < n;
       i += int64_t(gridDim.x) * blockDim.x)
    dst[i] = __float2bfloat16(load_as_f32(src, t, i));
}

__global__ void convert_f32_kernel(const void* src, DType t, int64_t n, float* dst) {
  for (int64_t i = int64_t(blockIdx.x) * blockDim.x + threadIdx.x; i < n;
       i += int64_t(gridDim.x) * blockDim.x)
    dst[i] = load_as_f32(src, t, i);
}

// splitmix64 finaliser over (seed, index): a stateless counter-based generator, so any
// element can be generated independently and the result does not depend on the launch shape.
__device__ __forceinline__ uint64_t mix64(uint64_t x) {
  x ^= x >> 30;
  x *= 0xbf58476d1ce4e5b9ull;
  x ^= x >> 27;
  x *= 0x94d049bb133111ebull;
  x ^= x >> 31;
  return x;
}

__device__ __forceinline__ float uniform_pm1(uint64_t seed, int64_t i) {  // [-1, 1)
  const uint64_t h = mix64(seed ^ (uint64_t(i) * 0x9e3779b97f4a7c15ull + 0x632be59bd9b4e019ull));
  return float(h >> 40) * (2.0f / 16777216.0f) - 1.0f;
}

__global__ void fill_bf16_kernel(__nv_bfloat16* dst, int64_t n, uint64_t seed, float mean,
                                 float hw) {
  for (int64_t i = int64_t(blockIdx.x) * blockDim.x + threadIdx.x; i < n;
       i += int64_t(gridDim.x) * blockDim.x)
    dst[i] = __float2bfloat16(mean + hw * uniform_pm1(seed, i));
}

__global__ void fill_f32_kernel(float* dst, int64_t n, uint64_t seed, float mean, float hw) {
  for (int64_t i = int64_t(blockIdx.x) * blockDim.x + threadIdx.x; i < n;
       i += int64_t(gridDim.x) * blockDim.x)
    dst[i] = mean + hw * uniform_pm1(seed, i);
}

__global__ void fill_int8_kernel(int8_t* q, float* scale, int64_t rows, int64_t cols,
                                 uint64_t seed, float row_scale) {
  const int64_t n = rows * cols;
  for (int64_t i = int64_t(blockIdx.x) * blockDim.x + threadIdx.x; i < n;
       i += int64_t(gridDim.x) * blockDim.x) {
    // 255 equally likely values -127..127.
    const uint64_t h = mix64(seed ^ (uint64_t(i) * 0x9e3779b97f4a7c15ull));
    q[i] = int8_t(int(h % 255u) - 127);
    if (i < rows) scale[i] = row_scale;
  }
}

constexpr int kThreads = 256;

}  // namespace

void quantize_rows_int8(const void* src, DType src_type, int64_t rows, int64_t cols, int8_t* q,
                        float* scale, cudaStream_t stream) {
  check_float_type(src_type, "quantize_rows_int8");
  if (rows <= 0 || cols <= 0) return;
  quantize_kernel<<<unsigned(rows), kThreads, 0, stream>>>(src, src_type, cols, q, scale);
  MMX_CUDA_CHECK_LAUNCH("quantize kernel launch");
}

void dequantize_int8_to_bf16(const int8_t* q, const float* scale, int64_t rows, int64_t cols,
                             __nv_bfloat16* out, cudaStream_t stream) {
  if (rows <= 0 || cols <= 0) return;
  // The vector path (cols % 8 == 0) moves 8 int8 and 8 bf16 at a time.
  MMX_CHECK(cols % 8 != 0 || (aligned16(out) && (reinterpret_cast<uintptr_t>(q) & 7u) == 0),
            Code::Internal, "dequantize_int8_to_bf16: misaligned buffers");
  dequantize_kernel<<<grid_for(ceil_div(rows * cols, 8), kThreads, 8192), kThreads, 0, stream>>>(
      q, scale, rows, cols, out);
  MMX_CUDA_CHECK_LAUNCH("dequantize kernel launch");
}

void convert_to_bf16(const void* src, DType src_type, int64_t n, __nv_bfloat16* dst,
                     cudaStream_t stream) {
  check_float_type(src_type, "convert_to_bf16");
  if (n <= 0) return;
  convert_bf16_kernel<<<grid_for(n, kThreads), kThreads, 0, stream>>>(src, src_type, n, dst);
  MMX_CUDA_CHECK_LAUNCH("convert_to_bf16 kernel launch");
}

void convert_to_f32(const void* src, DType src_type, int64_t n, float* dst, cudaStream_t stream) {
  check_float_type(src_type, "convert_to_f32");
  if (n <= 0) return;
  convert_f32_kernel<<<grid_for(n, kThreads), kThreads, 0, stream>>>(src, src_type, n, dst);
  MMX_CUDA_CHECK_LAUNCH("convert_to_f32 kernel launch");
}

void fill_uniform_bf16(__nv_bfloat16* dst, int64_t n, uint64_t seed, float mean, float half_width,
                       cudaStream_t stream) {
  if (n <= 0) return;
  fill_bf16_kernel<<<grid_for(n, kThreads, 8192), kThreads, 0, stream>>>(dst, n, seed, mean,
                                                                         half_width);
  MMX_CUDA_CHECK_LAUNCH("fill_uniform_bf16 kernel launch");
}

void fill_uniform_f32(float* dst, int64_t n, uint64_t seed, float mean, float half_width,
                      cudaStream_t stream) {
  if (n <= 0) return;
  fill_f32_kernel<<<grid_for(n, kThreads, 8192), kThreads, 0, stream>>>(dst, n, seed, mean,
                                                                        half_width);
  MMX_CUDA_CHECK_LAUNCH("fill_uniform_f32 kernel launch");
}

void fill_uniform_int8(int8_t* q, float* scale, int64_t rows, int64_t cols, uint64_t seed,
                       float row_scale, cudaStream_t stream) {
  if (rows <= 0 || cols <= 0) return;
  fill_int8_kernel<<<grid_for(rows * cols, kThreads, 8192), kThreads, 0, stream>>>(
      q, scale, rows, cols, seed, row_scale);
  MMX_CUDA_CHECK_LAUNCH("fill_uniform_int8 kernel launch");
}

}  // namespace mmx::cuda
