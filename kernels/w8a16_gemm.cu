#include "kernels/w8a16_gemm.h"

#include <string>

#include "kernels/common.cuh"

namespace mmx::cuda {
namespace {

constexpr int kThreads = 128;  // one block: kThreads lanes split K, then a block reduction
constexpr int kWarps = kThreads / kWarp;
constexpr int kChunk = 16;     // weights per 16-byte int8 load (two loads for bf16)

struct GemvParams {
  const __nv_bfloat16* x;
  const int32_t* x_rows;
  // dense
  const void* w;
  const float* scale;
  int64_t M;
  // grouped
  const int32_t* offsets;
  const int32_t* active;
  const int32_t* active_count;
  const void* const* weights;
  const float* const* scales;
  int64_t N, K;
  __nv_bfloat16* out;
};

// Weights are read exactly once: bypass L1 so the activations stay there.
__device__ __forceinline__ int4 ld_stream(const void* p) {
  int4 v;
  asm("ld.global.nc.L1::no_allocate.v4.s32 {%0, %1, %2, %3}, [%4];"
      : "=r"(v.x), "=r"(v.y), "=r"(v.z), "=r"(v.w)
      : "l"(p));
  return v;
}

// Four int8 in a word to fp32 without I2F: place (b ^ 0x80) in the mantissa of 2^23 and
// subtract 2^23 + 128 (exact).
__device__ __forceinline__ void i8x4_to_f32(uint32_t w, float* f) {
  const uint32_t u = w ^ 0x80808080u;
  f[0] = __uint_as_float(__byte_perm(u, 0x4b000000u, 0x7540)) - 8388736.0f;
  f[1] = __uint_as_float(__byte_perm(u, 0x4b000000u, 0x7541)) - 8388736.0f;
  f[2] = __uint_as_float(__byte_perm(u, 0x4b000000u, 0x7542)) - 8388736.0f;
  f[3] = __uint_as_float(__byte_perm(u, 0x4b000000u, 0x7543)) - 8388736.0f;
}

__device__ __forceinline__ void bf16x2_to_f32(uint32_t w, float* f) {
  f[0] = __uint_as_float(w << 16);
  f[1] = __uint_as_float(w & 0xffff0000u);
}

// 16 consecutive weights of one row, as fp32 (int8: unscaled; the row scale is applied once
// to the finished dot product).
template <bool kInt8>
__device__ __forceinline__ void load_weights16(const void* row, int64_t chunk, float* f) {
  if constexpr (kInt8) {
    const int4 v = ld_stream(static_cast<const int8_t*>(row) + chunk * kChunk);
    i8x4_to_f32(uint32_t(v.x), f);
    i8x4_to_f32(uint32_t(v.y), f + 4);
    i8x4_to_f32(uint32_t(v.z), f + 8);
    i8x4_to_f32(uint32_t(v.w), f + 12);
  } else {
    const __nv_bfloat16* p = static_cast<const __nv_bfloat16*>(row) + chunk * kChunk;
    const int4 a = ld_stream(p), b = ld_stream(p + 8);
    bf16x2_to_f32(uint32_t(a.x), f);
    bf16x2_to_f32(uint32_t(a.y), f + 2);
    bf16x2_to_f32(uint32_t(a.z), f + 4);
    bf16x2_to_f32(uint32_t(a.w), f + 6);
    bf16x2_to_f32(uint32_t(b.x), f + 8);
    bf16x2_to_f32(uint32_t(b.y), f + 10);
    bf16x2_to_f32(uint32_t(b.z), f + 12);
    bf16x2_to_f32(uint32_t(b.w), f + 14);
  }
}

__device__ __forceinline__ void load_x16(const __nv_bfloat16* p, float* f) {
  const int4 a = __ldg(reinterpret_cast<const int4*>(p));
  const int4 b = __ldg(reinterpret_cast<const int4*>(p) + 1);
  bf16x2_to_f32(uint32_t(a.x), f);
  bf16x2_to_f32(uint32_t(a.y), f + 2);
  bf16x2_to_f32(uint32_t(a.z), f + 4);
  bf16x2_to_f32(uint32_t(a.w), f + 6);
  bf16x2_to_f32(uint32_t(b.x), f + 8);
  bf16x2_to_f32(uint32_t(b.y), f + 10);
  bf16x2_to_f32(uint32_t(b.z), f + 12);
  bf16x2_to_f32(uint32_t(b.w), f + 14);
}

// One block computes R outputs (columns n0 .. n0+R-1) for every row of its group, MT rows
// per pass. WR weight rows are loaded per chunk: R (plain) or 2R (gated: W1 and W3 rows).
// Each thread accumulates over its share of the K chunks; the block then reduces.
template <int MT, int WR, bool kInt8, bool kGated, bool kGrouped>
__global__ void __launch_bounds__(kThreads) gemv_kernel(GemvParams p) {
  constexpr int R = kGated ? WR / 2 : WR;
  __shared__ float red[kWarps][WR * MT];
  __shared__ int64_t xrow[MT];

  int64_t r0 = 0, r1 = p.M;
  const void* W = p.w;
  const float* S = p.scale;
  if constexpr (kGrouped) {
    if (int(blockIdx.y) >= *p.active_count) return;  // fewer experts active than the grid
    const int e = p.active[blockIdx.y];
    r0 = p.offsets[e];
    r1 = p.offsets[e + 1];
    W = p.weights[e];
    S = kInt8 ? p.scales[e] : nullptr;
  }
  const int64_t N = p.N, K = p.K, chunks = K / kChunk;
  const int64_t n0 = int64_t(blockIdx.x) * R;
  const size_t elem = kInt8 ? 1 : 2;

  // Weight row pointers; rows past N are clamped (loaded, never written).
  const char* wrow[WR];
#pragma unroll
  for (int i = 0; i < WR; ++i) {
    const int r = kGated ? (i % R) : i;
    int64_t n = n0 + r < N ? n0 + r : N - 1;
    if (kGated && i >= R) n += N;
    wrow[i] = static_cast<const char*>(W) + size_t(n) * size_t(K) * elem;
  }

  const int lane = threadIdx.x % kWarp, warp = threadIdx.x / kWarp;
  for (int64_t m0 = r0; m0 < r1; m0 += MT) {
    const int mcount = int(r1 - m0 < MT ? r1 - m0 : MT);
    if (threadIdx.x < MT) {
      const int64_t i = m0 + threadIdx.x;
      xrow[threadIdx.x] = threadIdx.x < mcount ? (p.x_rows ? int64_t(p.x_rows[i]) : i) : 0;
    }
    __syncthreads();

    float acc[WR][MT];
#pragma unroll
    for (int i = 0; i < WR; ++i)
#pragma unroll
      for (int m = 0; m < MT; ++m) acc[i][m] = 0.0f;

    for (int64_t c = threadIdx.x; c < chunks; c += kThreads) {
      float wf[WR][kChunk];
#pragma unroll
      for (int i = 0; i < WR; ++i) load_weights16<kInt8>(wrow[i], c, wf[i]);
#pragma unroll
      for (int m = 0; m < MT; ++m) {
        if (m < mcount) {
          float xf[kChunk];
          load_x16(p.x + xrow[m] * K + c * kChunk, xf);
#pragma unroll
          for (int i = 0; i < WR; ++i)
#pragma unroll
            for (int j = 0; j < kChunk; ++j) acc[i][m] = fmaf(wf[i][j], xf[j], acc[i][m]);
        }
      }
    }

#pragma unroll
    for (int i = 0; i < WR; ++i)
#pragma unroll
      for (int m = 0; m < MT; ++m) {
        if (m < mcount) {
          const float v = warp_sum(acc[i][m]);
          if (lane == 0) red[warp][i * MT + m] = v;
        }
      }
    __syncthreads();

    for (int j = threadIdx.x; j < R * MT; j += kThreads) {
      const int r = j / MT, m = j % MT;
      const int64_t n = n0 + r;
      if (m >= mcount || n >= N) continue;
      float a = 0.0f;
#pragma unroll
      for (int w = 0; w < kWarps; ++w) a += red[w][r * MT + m];
      if constexpr (kInt8) a *= S[n];
      if constexpr (kGated) {
        float b = 0.0f;
#pragma unroll
        for (int w = 0; w < kWarps; ++w) b += red[w][(R + r) * MT + m];
        if constexpr (kInt8) b *= S[N + n];
        a = silu_f32(a) * b;
      }
      p.out[(m0 + m) * N + n] = __float2bfloat16(a);
    }
    __syncthreads();  // red and xrow are reused by the next pass
  }
}

int tile_rows(int64_t rows) {
  int mt = 1;
  while (mt < rows && mt < kGemvMaxRows) mt *= 2;
  return mt;
}

template <int MT, int WR, bool kGated, bool kGrouped>
void launch_typed(const GemvParams& p, bool int8, dim3 grid, cudaStream_t s) {
  if (int8)
    gemv_kernel<MT, WR, true, kGated, kGrouped><<<grid, kThreads, 0, s>>>(p);
  else
    gemv_kernel<MT, WR, false, kGated, kGrouped><<<grid, kThreads, 0, s>>>(p);
}

// Weight rows per chunk: many for few activation rows (more bytes in flight), fewer for
// many rows (registers: WR * MT accumulators + WR * 16 converted weights).
template <bool kGated, bool kGrouped>
void launch(const GemvParams& p, bool int8, int mt, int64_t groups, cudaStream_t s) {
  auto grid = [&](int r) { return dim3(unsigned(ceil_div(p.N, r)), unsigned(groups)); };
  constexpr int kDiv = kGated ? 2 : 1;
  switch (mt) {
    case 1: launch_typed<1, 4, kGated, kGrouped>(p, int8, grid(4 / kDiv), s); break;
    case 2: launch_typed<2, 4, kGated, kGrouped>(p, int8, grid(4 / kDiv), s); break;
    case 4: launch_typed<4, 4, kGated, kGrouped>(p, int8, grid(4 / kDiv), s); break;
    case 8: launch_typed<8, 2, kGated, kGrouped>(p, int8, grid(2 / kDiv), s); break;
    default: launch_typed<16, 2, kGated, kGrouped>(p, int8, grid(2 / kDiv), s); break;
  }
}

void check_dtype(DType t) {
  MMX_CHECK(t == DType::I8 || t == DType::BF16, Code::Internal,
            std::string("gemv: weight dtype ") + dtype_name(t) + " is not I8 or BF16");
}

}  // namespace

bool gemv_supported(const DeviceMatrix& w) {
  return (w.dtype == DType::I8 || w.dtype == DType::BF16) && w.cols % kChunk == 0 &&
         aligned16(w.data);
}

void gemv(const __nv_bfloat16* x, int64_t M, const DeviceMatrix& w, __nv_bfloat16* out,
          cudaStream_t stream) {
  check_dtype(w.dtype);
  MMX_CHECK(gemv_supported(w) && aligned16(x), Code::Internal,
            "gemv: unsupported shape or alignment (cols " + std::to_string(w.cols) + ")");
  MMX_CHECK(w.dtype != DType::I8 || w.scale, Code::Internal, "gemv: int8 weight without scales");
  if (M <= 0 || w.rows <= 0) return;
  GemvParams p{};
  p.x = x;
  p.w = w.data;
  p.scale = w.scale;
  p.M = M;
  p.N = w.rows;
  p.K = w.cols;
  p.out = out;
  launch<false, false>(p, w.dtype == DType::I8, tile_rows(M), 1, stream);
  MMX_CUDA_CHECK_LAUNCH("gemv kernel launch");
}

void grouped_gemv(const GroupedGemvArgs& a, cudaStream_t stream) {
  check_dtype(a.dtype);
  MMX_CHECK(a.K % kChunk == 0 && aligned16(a.x), Code::Internal,
            "grouped_gemv: K must be a multiple of 16 (got " + std::to_string(a.K) + ")");
  if (a.max_active <= 0 || a.N <= 0) return;
  GemvParams p{};
  p.x = a.x;
  p.x_rows = a.x_rows;
  p.offsets = a.offsets;
  p.active = a.active;
  p.active_count = a.active_count;
  p.weights = a.weights;
  p.scales = a.scales;
  p.N = a.N;
  p.K = a.K;
  p.out = a.out;
  const bool int8 = a.dtype == DType::I8;
  const int mt = tile_rows(a.rows_hint);
  if (a.gated)
    launch<true, true>(p, int8, mt, a.max_active, stream);
  else
    launch<false, true>(p, int8, mt, a.max_active, stream);
  MMX_CUDA_CHECK_LAUNCH("grouped_gemv kernel launch");
}

}  // namespace mmx::cuda
