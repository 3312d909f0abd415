// The CPU reference kernels (fp32), free of any backend state so the tests can drive them with
// arbitrary shapes and decays. CpuBackend composes them; model-spec §5-§7 is the math.
//
// Threading: OpenBLAS is set to one thread by the CPU backend and every parallel piece runs on
// the backend's ThreadPool, so BLAS calls below are single-threaded and may run concurrently
// from pool workers without oversubscribing the cores.
#pragma once
#include <cmath>
#include <cstdint>
#include <vector>

#include "core/thread_pool.h"

namespace mmx::cpu {

// C[M,N] = A[M,K] * B[N,K]^T + beta * C, row-major with leading dimensions; B is a weight in
// nn.Linear layout [out, in]. Split over N (or M when N is small) across the pool.
void gemm_nt(ThreadPool& pool, int64_t M, int64_t N, int64_t K, const float* A, int64_t lda,
             const float* B, int64_t ldb, float* C, int64_t ldc, float beta = 0.0f);

// Single-threaded version of gemm_nt (for use inside pool tasks).
void gemm_nt_serial(int64_t M, int64_t N, int64_t K, const float* A, int64_t lda, const float* B,
                    int64_t ldb, float* C, int64_t ldc, float beta = 0.0f);

// Scratch buffers of one lightning head computation, reused across calls by one thread.
struct LightningScratch {
  std::vector<float> scores;  // [block, block]
  std::vector<float> keys;    // [block, d] decayed keys
  std::vector<float> powers;  // decay^0 .. decay^block
};

// Lightning attention of one head over n consecutive tokens (model-spec §5). Row t of q, k, v
// starts at q + t*ld (likewise k, v); o_t goes to out + t*ld_out. S is the head's fp32 state
// [d, d] (S[i][j] pairs key dim i with value dim j), updated in place. n == 1 runs the
// recurrence S = decay*S + k^T v, o = q S; n > 1 runs blocks of `block` tokens counted from
// the first of the n tokens:
//   o_i = decay^(i+1) q_i S + sum_{j<=i} decay^(i-j) (q_i . k_j) v_j
//   S  <- decay^m S + sum_j decay^(m-1-j) k_j^T v_j
// Powers are formed directly as decay^e (never decay^-j), so fast heads cannot overflow.
void lightning_head(const float* q, const float* k, const float* v, int64_t ld, int64_t n,
                    int64_t d, double decay, int64_t block, float* S, float* out, int64_t ld_out,
                    LightningScratch* scratch);

// RoPE inverse frequencies, as the reference computes them in fp32:
// inv_freq[j] = 1 / theta^(2j / rotary_dim), j = 0 .. rotary_dim/2 - 1.
std::vector<float> rope_inv_freq(double theta, int64_t rotary_dim);

// NeoX ("rotate half") RoPE at position `pos` on the first rotary_dim dims of each of `heads`
// consecutive head vectors of size head_dim in x; the other dims pass through.
void apply_rope(float* x, int64_t heads, int64_t head_dim, int64_t rotary_dim, int64_t pos,
                const std::vector<float>& inv_freq);

// Causal softmax attention of `group` query heads that share one KV head, for one query token
// that sees the first ctx cached positions (model-spec §6). q: [group, d] contiguous; key row p
// at keys + p*ld_kv (likewise values); out: [group, d] contiguous. scores needs group*ctx floats.
void attend_group(const float* q, const float* keys, const float* values, int64_t ld_kv,
                  int64_t ctx, int64_t group, int64_t d, float scale, float* scores, float* out);

// Router of one token (model-spec §7): fp32 softmax over the E logits, the top k probabilities
// (ties: lower expert index first), renormalised to sum 1. Writes k indices and k weights.
void route_top_k(const float* logits, int64_t E, int64_t k, int32_t* experts, float* weights);

// Elementwise helpers (scalar fp32 reference math).
inline float silu(float x) { return x / (1.0f + std::exp(-x)); }
inline float sigmoid(float x) { return 1.0f / (1.0f + std::exp(-x)); }

}  // namespace mmx::cpu
