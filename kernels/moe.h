// MoE routing and combination kernels (model-spec §7). The expert products themselves are
// the grouped GEMV (kernels/w8a16_gemm.h) for small batches, or per-expert GEMMs.
//   router_logits: logits[T, E] = x[T, H] · Wg[E, H]^T in fp32 (bf16 or fp32 x, fp32 Wg)
//   route_topk:    softmax over E in fp32, top-k (ties: lower expert index first),
//                  weights renormalised to sum 1
//   moe_permute:   stable counting sort of the T*k assignments by expert (deterministic)
//   silu_mul_rows: g[r, j] = SiLU(h[r, j]) * h[r, F + j] (the GEMM path's SwiGLU)
//   moe_combine:   out[t] = sum_j w[t, j] * y[slot[t*k + j]], j = 0..k-1 in order, fp32
#pragma once
#include <cuda_bf16.h>
#include <cuda_runtime.h>

#include <cstdint>

namespace mmx::cuda {

// Largest expert count the routing kernels support (one shared-memory row per token).
constexpr int kMaxExperts = 1024;

void router_logits(const __nv_bfloat16* x, const float* wg, int64_t T, int64_t H, int64_t E,
                   float* logits, cudaStream_t stream);
void router_logits(const float* x, const float* wg, int64_t T, int64_t H, int64_t E,
                   float* logits, cudaStream_t stream);

void route_topk(const float* logits, int64_t T, int64_t E, int64_t k, int32_t* topk_idx,
                float* topk_w, cudaStream_t stream);

// topk_idx: [n] expert of assignment a = t*k + j. Outputs (all device):
//   offsets[E+1]     expert e's sorted rows are [offsets[e], offsets[e+1])
//   sorted_token[n]  token of sorted row i (assignments keep their order within an expert)
//   slot[n]          sorted row of assignment a
//   active[E], active_count[1]: experts with at least one row, ascending
void moe_permute(const int32_t* topk_idx, int64_t n, int64_t k, int64_t E, int32_t* offsets,
                 int32_t* sorted_token, int32_t* slot, int32_t* active, int32_t* active_count,
                 cudaStream_t stream);

void silu_mul_rows(const __nv_bfloat16* h, int64_t rows, int64_t F, __nv_bfloat16* g,
                   cudaStream_t stream);

void moe_combine(const __nv_bfloat16* y, const int32_t* slot, const float* topk_w, int64_t T,
                 int64_t k, int64_t H, __nv_bfloat16* out, cudaStream_t stream);

}  // namespace mmx::cuda
