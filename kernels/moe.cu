#include "kernels/moe.h"

#include <string>

#include "kernels/common.cuh"

namespace mmx::cuda {
namespace {

// ---- router: TT tokens per block, one warp per expert at a time, lanes split H.
constexpr int kRouterTokens = 8;
constexpr int kRouterThreads = 256;

__device__ __forceinline__ float to_f32(float v) { return v; }
__device__ __forceinline__ float to_f32(__nv_bfloat16 v) { return __bfloat162float(v); }

// acc[i] = partial dot product of expert row w with token t0+i's x over h = h0, h0+stride, ...
template <typename X>
__device__ __forceinline__ void router_partial(const X* x, const float* w, int64_t H, int64_t t0,
                                               int nt, int64_t h0, int64_t stride,
                                               float (&acc)[kRouterTokens]) {
#pragma unroll
  for (int i = 0; i < kRouterTokens; ++i) acc[i] = 0.0f;
  for (int64_t h = h0; h < H; h += stride) {
    const float wv = w[h];
#pragma unroll
    for (int i = 0; i < kRouterTokens; ++i)
      if (i < nt) acc[i] = fmaf(wv, to_f32(x[(t0 + i) * H + h]), acc[i]);
  }
}

template <typename X>
__global__ void __launch_bounds__(kRouterThreads)
    router_kernel(const X* x, const float* wg, int64_t T, int64_t H, int64_t E,
                  float* logits) {
  const int lane = threadIdx.x % kWarp, warp = threadIdx.x / kWarp;
  const int nwarps = kRouterThreads / kWarp;
  const int64_t t0 = int64_t(blockIdx.x) * kRouterTokens;
  const int nt = int(T - t0 < kRouterTokens ? T - t0 : kRouterTokens);
  for (int64_t e = warp; e < E; e += nwarps) {
    float acc[kRouterTokens];
    router_partial(x, wg + e * H, H, t0, nt, lane, kWarp, acc);
#pragma unroll
    for (int i = 0; i < kRouterTokens; ++i) {
      const float s = warp_sum(acc[i]);
      if (lane == 0 && i < nt) logits[(t0 + i) * E + e] = s;
    }
  }
}

// For few tokens the kernel above runs on a handful of SMs, each streaming every expert's
// router row (E x H fp32: 786 KB for MiniMax-Text-01): 160 µs at one token. Here one block
// per (8 tokens, expert): E times the blocks, each reading one expert's row, its threads
// splitting H; the block then reduces.
template <typename X>
__global__ void __launch_bounds__(kRouterThreads)
    router_expert_kernel(const X* x, const float* wg, int64_t T, int64_t H, int64_t E,
                         float* logits) {
  __shared__ float red[kRouterThreads / kWarp][kRouterTokens];
  const int lane = threadIdx.x % kWarp, warp = threadIdx.x / kWarp;
  const int64_t e = blockIdx.y;
  const int64_t t0 = int64_t(blockIdx.x) * kRouterTokens;
  const int nt = int(T - t0 < kRouterTokens ? T - t0 : kRouterTokens);
  float acc[kRouterTokens];
  router_partial(x, wg + e * H, H, t0, nt, threadIdx.x, kRouterThreads, acc);
#pragma unroll
  for (int i = 0; i < kRouterTokens; ++i) {
    const float s = warp_sum(acc[i]);
    if (lane == 0) red[warp][i] = s;
  }
  __syncthreads();
  if (threadIdx.x < nt) {
    float s = 0.0f;
#pragma unroll
    for (int w8 = 0; w8 < kRouterThreads / kWarp; ++w8) s += red[w8][threadIdx.x];
    logits[(t0 + threadIdx.x) * E + e] = s;
  }
}

// Up to this many tokens the per-expert kernel runs (it reads x once per expert, which for
// many tokens costs more L2 traffic than reading each router row once per 8 tokens).
constexpr int64_t kRouterPerExpertMaxTokens = 256;

// ---- softmax + top-k: one warp per token, the token's probabilities in shared memory.
constexpr int kTopkWarps = 8;

__global__ void topk_kernel(const float* logits, int64_t T, int64_t E, int64_t k,
                            int32_t* topk_idx, float* topk_w) {
  extern __shared__ float probs_all[];
  const int lane = threadIdx.x % kWarp, warp = threadIdx.x / kWarp;
  const int64_t t = int64_t(blockIdx.x) * kTopkWarps + warp;
  if (t >= T) return;  // whole warps leave; only warp-level synchronisation follows
  float* p = probs_all + warp * E;
  const float* l = logits + t * E;

  float m = -INFINITY;
  for (int64_t e = lane; e < E; e += kWarp) m = fmaxf(m, l[e]);
  m = warp_max(m);
  float s = 0.0f;
  for (int64_t e = lane; e < E; e += kWarp) {
    const float v = expf(l[e] - m);
    p[e] = v;
    s += v;
  }
  s = warp_sum(s);
  for (int64_t e = lane; e < E; e += kWarp) {
    const float v = p[e] / s;
    p[e] = v >= 0.0f ? v : -1.0f;  // NaN ranks below every real probability, stays selectable
  }
  __syncwarp();

  float chosen_sum = 0.0f;
  for (int64_t j = 0; j < k; ++j) {
    float bv = -3.0f;  // below NaN's -1 and the -2 that marks chosen experts
    int bi = int(E);
    for (int64_t e = lane; e < E; e += kWarp) {
      const float v = p[e];
      if (v > bv) {  // e ascends per lane: a tie keeps the lower index
        bv = v;
        bi = int(e);
      }
    }
#pragma unroll
    for (int o = kWarp / 2; o > 0; o >>= 1) {
      const float ov = __shfl_xor_sync(0xffffffffu, bv, o);
      const int oi = __shfl_xor_sync(0xffffffffu, bi, o);
      if (ov > bv || (ov == bv && oi < bi)) {
        bv = ov;
        bi = oi;
      }
    }
    __syncwarp();  // every lane has read p[] before lane 0 marks the pick
    if (lane == 0) {
      topk_idx[t * k + j] = bi;
      const float w = bv > 0.0f ? bv : 0.0f;
      topk_w[t * k + j] = w;
      chosen_sum += w;
      p[bi] = -2.0f;
    }
    __syncwarp();
  }
  if (lane == 0) {
    const float inv = chosen_sum > 0.0f ? 1.0f / chosen_sum : 0.0f;
    for (int64_t j = 0; j < k; ++j) topk_w[t * k + j] *= inv;
  }
}

// ---- stable counting sort of assignments by expert, in one block.
constexpr int kPermuteTile = 4096;

__global__ void permute_kernel(const int32_t* idx, int64_t n, int64_t k, int64_t E,
                               int32_t* offsets, int32_t* sorted_token, int32_t* slot,
                               int32_t* active, int32_t* active_count) {
  extern __shared__ int32_t sm[];
  int32_t* cnt = sm;             // [E]
  int32_t* cursor = sm + E;      // [E]
  int32_t* tile = sm + 2 * E;    // [kPermuteTile]
  const int lane = threadIdx.x % kWarp, warp = threadIdx.x / kWarp;
  const int nwarps = blockDim.x / kWarp;

  for (int64_t e = threadIdx.x; e < E; e += blockDim.x) cnt[e] = 0;
  __syncthreads();
  for (int64_t a = threadIdx.x; a < n; a += blockDim.x) atomicAdd(&cnt[idx[a]], 1);
  __syncthreads();
  if (threadIdx.x == 0) {
    int32_t run = 0, na = 0;
    for (int64_t e = 0; e < E; ++e) {
      offsets[e] = run;
      cursor[e] = run;
      if (cnt[e] > 0) active[na++] = int32_t(e);
      run += cnt[e];
    }
    offsets[E] = run;
    for (int64_t e = na; e < E; ++e) active[e] = -1;
    *active_count = na;
  }
  __syncthreads();

  const unsigned lanemask_lt = (1u << lane) - 1u;
  for (int64_t t0 = 0; t0 < n; t0 += kPermuteTile) {
    const int len = int(n - t0 < kPermuteTile ? n - t0 : kPermuteTile);
    for (int i = threadIdx.x; i < len; i += blockDim.x) tile[i] = idx[t0 + i];
    __syncthreads();
    for (int64_t e = warp; e < E; e += nwarps) {
      int32_t base = cursor[e];
      for (int i0 = 0; i0 < len; i0 += kWarp) {
        const int i = i0 + lane;
        const bool hit = i < len && tile[i] == e;
        const unsigned mask = __ballot_sync(0xffffffffu, hit);
        if (hit) {
          const int32_t pos = base + __popc(mask & lanemask_lt);
          const int64_t a = t0 + i;
          sorted_token[pos] = int32_t(a / k);
          slot[a] = pos;
        }
        base += __popc(mask);
      }
      __syncwarp();  // every lane has read cursor[e]
      if (lane == 0) cursor[e] = base;
    }
    __syncthreads();  // the tile is overwritten next
  }
}

__global__ void silu_mul_kernel(const __nv_bfloat16* h, int64_t rows, int64_t F,
                                __nv_bfloat16* g) {
  const int64_t n = rows * F;
  for (int64_t i = int64_t(blockIdx.x) * blockDim.x + threadIdx.x; i < n;
       i += int64_t(gridDim.x) * blockDim.x) {
    const int64_t r = i / F, j = i - r * F;
    const float a = __bfloat162float(h[r * 2 * F + j]);
    const float b = __bfloat162float(h[r * 2 * F + F + j]);
    g[i] = __float2bfloat16(silu_f32(a) * b);
  }
}

template <bool kVec>
__global__ void combine_kernel(const __nv_bfloat16* y, const int32_t* slot, const float* topk_w,
                               int64_t k, int64_t H, __nv_bfloat16* out) {
  const int64_t t = blockIdx.x;
  if constexpr (kVec) {
    for (int64_t v = threadIdx.x; v < H / 8; v += blockDim.x) {
      float acc[8] = {0, 0, 0, 0, 0, 0, 0, 0};
      for (int64_t j = 0; j < k; ++j) {
        const float w = topk_w[t * k + j];
        float f[8];
        bf16x8_to_f32(reinterpret_cast<const Bf16x8*>(y + int64_t(slot[t * k + j]) * H)[v], f);
#pragma unroll
        for (int q = 0; q < 8; ++q) acc[q] = fmaf(w, f[q], acc[q]);
      }
      reinterpret_cast<Bf16x8*>(out + t * H)[v] = f32_to_bf16x8(acc);
    }
  } else {
    for (int64_t h = threadIdx.x; h < H; h += blockDim.x) {
      float acc = 0.0f;
      for (int64_t j = 0; j < k; ++j)
        acc = fmaf(topk_w[t * k + j], __bfloat162float(y[int64_t(slot[t * k + j]) * H + h]), acc);
      out[t * H + h] = __float2bfloat16(acc);
    }
  }
}

}  // namespace

template <typename X>
static void launch_router(const X* x, const float* wg, int64_t T, int64_t H, int64_t E,
                          float* logits, cudaStream_t stream) {
  if (T <= 0 || E <= 0) return;
  if (T <= kRouterPerExpertMaxTokens)
    router_expert_kernel<X><<<dim3(unsigned(ceil_div(T, kRouterTokens)), unsigned(E)), kRouterThreads, 0,
                              stream>>>(x, wg, T, H, E, logits);
  else
    router_kernel<X><<<unsigned(ceil_div(T, kRouterTokens)), kRouterThreads, 0, stream>>>(
        x, wg, T, H, E, logits);
  MMX_CUDA_CHECK_LAUNCH("router kernel launch");
}

void router_logits(const __nv_bfloat16* x, const float* wg, int64_t T, int64_t H, int64_t E,
                   float* logits, cudaStream_t stream) {
  launch_router(x, wg, T, H, E, logits, stream);
}

void router_logits(const float* x, const float* wg, int64_t T, int64_t H, int64_t E,
                   float* logits, cudaStream_t stream) {
  launch_router(x, wg, T, H, E, logits, stream);
}

void route_topk(const float* logits, int64_t T, int64_t E, int64_t k, int32_t* topk_idx,
                float* topk_w, cudaStream_t stream) {
  MMX_CHECK(E > 0 && E <= kMaxExperts && k > 0 && k <= E, Code::Unsupported,
            "MoE routing: " + std::to_string(E) + " experts, top-" + std::to_string(k) +
                " is not supported (at most " + std::to_string(kMaxExperts) + " experts)");
  if (T <= 0) return;
  const size_t smem = size_t(kTopkWarps) * size_t(E) * sizeof(float);
  topk_kernel<<<unsigned(ceil_div(T, kTopkWarps)), kTopkWarps * kWarp, smem, stream>>>(
      logits, T, E, k, topk_idx, topk_w);
  MMX_CUDA_CHECK_LAUNCH("top-k routing kernel launch");
}

void moe_permute(const int32_t* topk_idx, int64_t n, int64_t k, int64_t E, int32_t* offsets,
                 int32_t* sorted_token, int32_t* slot, int32_t* active, int32_t* active_count,
                 cudaStream_t stream) {
  MMX_CHECK(E > 0 && E <= kMaxExperts, Code::Unsupported, "MoE permute: too many experts");
  const int warps = int(E < 32 ? E : 32);
  const size_t smem = (2 * size_t(E) + kPermuteTile) * sizeof(int32_t);
  permute_kernel<<<1, warps * kWarp, smem, stream>>>(topk_idx, n, k, E, offsets, sorted_token,
                                                     slot, active, active_count);
  MMX_CUDA_CHECK_LAUNCH("MoE permute kernel launch");
}

void silu_mul_rows(const __nv_bfloat16* h, int64_t rows, int64_t F, __nv_bfloat16* g,
                   cudaStream_t stream) {
  if (rows <= 0 || F <= 0) return;
  silu_mul_kernel<<<grid_for(rows * F, 256, 8192), 256, 0, stream>>>(h, rows, F, g);
  MMX_CUDA_CHECK_LAUNCH("silu_mul kernel launch");
}

void moe_combine(const __nv_bfloat16* y, const int32_t* slot, const float* topk_w, int64_t T,
                 int64_t k, int64_t H, __nv_bfloat16* out, cudaStream_t stream) {
  if (T <= 0) return;
  int threads = int(ceil_div(H, 8 * kWarp) * kWarp);
  threads = threads < 64 ? 64 : (threads > 1024 ? 1024 : threads);
  if (H % 8 == 0 && aligned16(y) && aligned16(out))
    combine_kernel<true><<<unsigned(T), threads, 0, stream>>>(y, slot, topk_w, k, H, out);
  else
    combine_kernel<false><<<unsigned(T), threads, 0, stream>>>(y, slot, topk_w, k, H, out);
  MMX_CUDA_CHECK_LAUNCH("MoE combine kernel launch");
}

}  // namespace mmx::cuda
