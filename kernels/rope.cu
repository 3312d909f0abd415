// RoPE + KV append: a row of CTAs per token, each CTA a few of the token's head rows. The
// token's cos/sin table is built in shared memory, then q (to q_out), k (to the cache, rotated)
// and v (to the cache) are written.
#include "kernels/rope.h"

#include <cuda_bf16.h>

#include "kernels/common.cuh"

namespace mmx::cuda {
namespace {

using bf16 = __nv_bfloat16;
constexpr int kThreads = 128;

// One warp per row of d values: the token's q heads, then its k heads, then its v heads. A q or
// k row has its first `rotary` dims rotated (NeoX rotate-half, like the CPU reference:
// x_j' = a c - b s, x_{j+half}' = b c + a s) and the rest copied; a v row is copied. q rows go
// to q_out, k and v rows to the token's place in the KV cache (its page looked up once per row).
constexpr int kRowsPerBlock = kThreads / kWarp;

__global__ void __launch_bounds__(kThreads) rope_append_kernel(RopeAppendArgs a) {
  extern __shared__ float trig[];  // cos [rotary/2] then sin [rotary/2]
  const int64_t t = blockIdx.x;
  // The sequence owning row t: the last one starting at or before it.
  int lo = 0, hi = a.n_seqs - 1;
  while (lo < hi) {
    const int mid = (lo + hi + 1) / 2;
    if (a.seqs[mid].row <= t) lo = mid; else hi = mid - 1;
  }
  const KvSeqDesc seq = a.seqs[lo];
  const int pos = seq.start_pos + int(t - seq.row);
  const int half = a.rotary_dim / 2, d = a.kv.head_dim, nkv = a.kv.kv_heads;
  float* cs = trig;
  float* sn = trig + half;
  for (int j = threadIdx.x; j < half; j += blockDim.x) {
    const float angle = float(pos) * a.inv_freq[j];  // fp32, as the reference computes it
    sincosf(angle, &sn[j], &cs[j]);
  }
  __syncthreads();

  const int lane = threadIdx.x % kWarp;
  const int row = int(blockIdx.y) * kRowsPerBlock + int(threadIdx.x) / kWarp;
  if (row >= a.heads + 2 * nkv) return;
  const int64_t qw = int64_t(a.heads) * d, kw = int64_t(nkv) * d;
  const bf16* x;
  bf16* y;
  bool rotate = true;
  if (row < a.heads) {
    x = static_cast<const bf16*>(a.q) + t * qw + int64_t(row) * d;
    y = static_cast<bf16*>(a.q_out) + t * qw + int64_t(row) * d;
  } else if (row < a.heads + nkv) {
    const int g = row - a.heads;
    x = static_cast<const bf16*>(a.k) + t * kw + int64_t(g) * d;
    y = kv_row(seq, a.kv, pos, g, false);
  } else {
    const int g = row - a.heads - nkv;
    x = static_cast<const bf16*>(a.v) + t * kw + int64_t(g) * d;
    y = kv_row(seq, a.kv, pos, g, true);
    rotate = false;
  }
  for (int i = lane; i < d; i += kWarp) {
    if (rotate && i < a.rotary_dim) {
      if (i >= half) continue;  // written together with its partner i - half
      const float p = __bfloat162float(x[i]), q = __bfloat162float(x[i + half]);
      y[i] = __float2bfloat16_rn(p * cs[i] + (-q) * sn[i]);
      y[i + half] = __float2bfloat16_rn(q * cs[i] + p * sn[i]);
    } else {
      y[i] = x[i];
    }
  }
}

}  // namespace

void rope_append_kv(const RopeAppendArgs& a, cudaStream_t stream) {
  if (a.total_tokens == 0) return;
  MMX_CHECK(a.n_seqs > 0 && a.rotary_dim % 2 == 0 && a.rotary_dim <= a.kv.head_dim && a.heads > 0,
            Code::InvalidArgument, "rope_append_kv: inconsistent arguments");
  MMX_CHECK(a.total_tokens <= 0x7fffffff, Code::InvalidArgument, "rope_append_kv: too many tokens in one call");
  const size_t smem = size_t(a.rotary_dim) * sizeof(float);
  const int rows = a.heads + 2 * a.kv.kv_heads;
  const dim3 grid(unsigned(a.total_tokens), unsigned(ceil_div(rows, kRowsPerBlock)));
  rope_append_kernel<<<grid, kThreads, smem, stream>>>(a);
  MMX_CUDA_CHECK_LAUNCH("rope/KV append kernel");
}

}  // namespace mmx::cuda
