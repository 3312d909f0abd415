// RoPE + KV append: one CTA per token. The token's cos/sin table is built once in shared
// memory, then q (to q_out), k (to the cache, rotated) and v (to the cache) are written.
#include "kernels/rope.h"

#include <cuda_bf16.h>

#include "kernels/common.cuh"

namespace mmx::cuda {
namespace {

using bf16 = __nv_bfloat16;
constexpr int kThreads = 128;

// Rotates the first `rotary` dims of `heads` rows of d values (NeoX rotate-half, like the
// CPU reference: x_j' = a c - b s, x_{j+half}' = b c + a s) and copies the rest.
// dst(h) gives the destination row of head h.
template <typename Dst>
__device__ void rotate_rows(const bf16* src, int heads, int d, int rotary, const float* cs, const float* sn,
                            Dst dst) {
  const int half = rotary / 2;
  for (int e = threadIdx.x; e < heads * d; e += blockDim.x) {
    const int h = e / d, i = e % d;
    if (i >= half && i < rotary) continue;  // written together with its partner i - half
    const bf16* x = src + int64_t(h) * d;
    bf16* y = dst(h);
    if (i < half) {
      const float a = __bfloat162float(x[i]), b = __bfloat162float(x[i + half]);
      y[i] = __float2bfloat16_rn(a * cs[i] + (-b) * sn[i]);
      y[i + half] = __float2bfloat16_rn(b * cs[i] + a * sn[i]);
    } else {
      y[i] = x[i];
    }
  }
}

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

  const int64_t qw = int64_t(a.heads) * d, kw = int64_t(nkv) * d;
  bf16* q_out = static_cast<bf16*>(a.q_out) + t * qw;
  rotate_rows(static_cast<const bf16*>(a.q) + t * qw, a.heads, d, a.rotary_dim, cs, sn,
              [&](int h) { return q_out + int64_t(h) * d; });
  rotate_rows(static_cast<const bf16*>(a.k) + t * kw, nkv, d, a.rotary_dim, cs, sn,
              [&](int g) { return kv_row(seq, a.kv, pos, g, false); });
  const bf16* v = static_cast<const bf16*>(a.v) + t * kw;
  for (int e = threadIdx.x; e < nkv * d; e += blockDim.x) kv_row(seq, a.kv, pos, e / d, true)[e % d] = v[e];
}

}  // namespace

void rope_append_kv(const RopeAppendArgs& a, cudaStream_t stream) {
  if (a.total_tokens == 0) return;
  MMX_CHECK(a.n_seqs > 0 && a.rotary_dim % 2 == 0 && a.rotary_dim <= a.kv.head_dim && a.heads > 0,
            Code::InvalidArgument, "rope_append_kv: inconsistent arguments");
  MMX_CHECK(a.total_tokens <= 0x7fffffff, Code::InvalidArgument, "rope_append_kv: too many tokens in one call");
  const size_t smem = size_t(a.rotary_dim) * sizeof(float);
  rope_append_kernel<<<unsigned(a.total_tokens), kThreads, smem, stream>>>(a);
  MMX_CUDA_CHECK_LAUNCH("rope/KV append kernel");
}

}  // namespace mmx::cuda
