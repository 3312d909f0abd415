// Softmax attention over the paged KV cache. See flash_attention.h.
//
// Prefill: one CTA per (64 query rows of a sequence, query head); 4 warps own 16 rows each
// and walk 64-key tiles of the cache (double-buffered with cp.async) with an online softmax
// in the log2 domain: S = Q K^T (tensor cores), mask by absolute position, P = exp2(S - m),
// O += P V with P reused straight from the score registers.
//
// Decode: one CTA per (sequence, KV head, up to 16 of its query heads, split of the cache).
// The query heads of a GQA group are the 16 rows of the tile, so every key and value is read
// once per group. Each warp takes 16 keys of every 64-key tile; the 4 warps' partial
// softmaxes are merged in shared memory, and a reduction kernel merges the splits.
#include "kernels/flash_attention.h"

#include <cuda_bf16.h>

#include <algorithm>
#include <cmath>
#include <string>

#include "kernels/common.cuh"
#include "kernels/mma_bf16.cuh"

namespace mmx::cuda {
namespace {

using bf16 = __nv_bfloat16;
constexpr int kWarps = 4;
constexpr int kThreads = kWarps * kWarp;
constexpr int kTile = kFlashTileRows;
constexpr int kDecodeRows = 16;  // query heads per decode CTA
constexpr float kLog2e = 1.4426950408889634f;
static_assert(kTile == kWarps * 16, "each warp owns 16 rows (prefill) or 16 keys (decode) of a tile");

// Rows padded by 16 bytes so the 8 rows an ldmatrix reads fall on distinct banks.
template <int D>
constexpr int kLd = D + 8;
template <int D>
constexpr size_t kTileBytes = size_t(kTile) * kLd<D> * sizeof(bf16);

template <int D>
constexpr size_t prefill_smem_bytes() {
  return 5 * kTileBytes<D>;  // q, k[2], v[2]
}
template <int D>
constexpr size_t decode_smem_bytes() {
  return size_t(kDecodeRows) * kLd<D> * sizeof(bf16) + 4 * kTileBytes<D> + 2 * kWarps * kDecodeRows * sizeof(float);
}

// Loads the 64 keys and values at positions [p0, p0+64) of kv head gk; positions at or past
// `end` are zero-filled (never read: pages past the end may not exist).
template <int D>
__device__ __forceinline__ void load_kv_tile(const KvSeqDesc& seq, const PagedKv& kv, int gk, int p0, int end,
                                             bf16* ks, bf16* vs, const void* any_mapped) {
  constexpr int kPieces = D / 8;
  for (int i = threadIdx.x; i < kTile * kPieces; i += kThreads) {
    const int r = i / kPieces, c8 = (i % kPieces) * 8, pos = p0 + r;
    const bool valid = pos < end;
    const bf16* k = valid ? kv_row(seq, kv, pos, gk, false) + c8 : static_cast<const bf16*>(any_mapped);
    const bf16* v = valid ? kv_row(seq, kv, pos, gk, true) + c8 : static_cast<const bf16*>(any_mapped);
    mma::cp_async16(ks + r * kLd<D> + c8, k, valid);
    mma::cp_async16(vs + r * kLd<D> + c8, v, valid);
  }
}

__device__ __forceinline__ float quad_max(float x) {
  x = fmaxf(x, __shfl_xor_sync(0xffffffffu, x, 1));
  return fmaxf(x, __shfl_xor_sync(0xffffffffu, x, 2));
}
__device__ __forceinline__ float quad_sum(float x) {
  x += __shfl_xor_sync(0xffffffffu, x, 1);
  return x + __shfl_xor_sync(0xffffffffu, x, 2);
}

// Online-softmax step for one thread's two rows (a: g, b: g+8) over NT score tiles already in
// the log2 domain with -inf for masked keys. Rescales o and l, turns s into probabilities.
template <int NT, int NO>
__device__ __forceinline__ void online_softmax(float (&s)[NT][4], float (&o)[NO][4], float (&m)[2], float (&l)[2]) {
  float mx[2] = {-INFINITY, -INFINITY};
#pragma unroll
  for (int j = 0; j < NT; ++j) {
    mx[0] = fmaxf(mx[0], fmaxf(s[j][0], s[j][1]));
    mx[1] = fmaxf(mx[1], fmaxf(s[j][2], s[j][3]));
  }
#pragma unroll
  for (int r = 0; r < 2; ++r) {
    const float m_new = fmaxf(m[r], quad_max(mx[r]));
    // A row with every key masked so far keeps m = -inf; subtracting 0 then keeps exp2 at 0
    // instead of NaN.
    const float m_use = m_new == -INFINITY ? 0.0f : m_new;
    const float corr = exp2f(m[r] - m_use);
    float sum = 0.0f;
#pragma unroll
    for (int j = 0; j < NT; ++j) {
      s[j][2 * r] = exp2f(s[j][2 * r] - m_use);
      s[j][2 * r + 1] = exp2f(s[j][2 * r + 1] - m_use);
      sum += s[j][2 * r] + s[j][2 * r + 1];
    }
    l[r] = l[r] * corr + sum;  // per-thread partial; summed over the quad at the end
#pragma unroll
    for (int j = 0; j < NO; ++j) o[j][2 * r] *= corr, o[j][2 * r + 1] *= corr;
    m[r] = m_new;
  }
}

// o (16 x D) += P (16 x 16 keys, from score tiles s0|s1) * V rows v[0..15].
template <int D>
__device__ __forceinline__ void accumulate_pv(float (&o)[D / 8][4], const float (&s0)[4], const float (&s1)[4],
                                              const bf16* v, int lane) {
  const uint32_t pa[4] = {mma::pack_bf16(s0[0], s0[1]), mma::pack_bf16(s0[2], s0[3]),
                          mma::pack_bf16(s1[0], s1[1]), mma::pack_bf16(s1[2], s1[3])};
#pragma unroll
  for (int np = 0; np < D / 16; ++np) {
    uint32_t b[4];
    mma::ldmatrix_x4_trans(b, v + (((lane >> 3) & 1) * 8 + (lane & 7)) * kLd<D> + np * 16 + (lane >> 4) * 8);
    mma::mma_16816(o[2 * np], pa, b[0], b[1]);
    mma::mma_16816(o[2 * np + 1], pa, b[2], b[3]);
  }
}

template <int D>
__global__ void __launch_bounds__(kThreads) flash_prefill_kernel(FlashArgs a, const FlashTile* tiles) {
  extern __shared__ __align__(16) unsigned char smem[];
  bf16* qs = reinterpret_cast<bf16*>(smem);
  bf16* ks = reinterpret_cast<bf16*>(smem + kTileBytes<D>);      // [2][kTile][ld]
  bf16* vs = reinterpret_cast<bf16*>(smem + 3 * kTileBytes<D>);  // [2][kTile][ld]
  constexpr int LD = kLd<D>;

  const FlashTile tile = tiles[blockIdx.x];
  const KvSeqDesc seq = a.seqs[tile.seq];
  const int h = blockIdx.y, gk = h / (a.heads / a.kv.kv_heads);
  const int tid = threadIdx.x, lane = tid % kWarp, warp = tid / kWarp, g = lane / 4, tq = lane % 4;
  const int q0 = tile.q_tile * kTile;
  const int nq = min(kTile, seq.n_tokens - q0);
  const int pos0 = seq.start_pos + q0;
  const int kv_end = pos0 + nq;  // every key these rows may see lies before it
  const int n_kv_tiles = (kv_end + kTile - 1) / kTile;
  const int64_t ldq = int64_t(a.heads) * D;
  const bf16* qg = static_cast<const bf16*>(a.q) + (seq.row + q0) * ldq + int64_t(h) * D;

  for (int i = tid; i < kTile * (D / 8); i += kThreads) {
    const int r = i / (D / 8), c8 = (i % (D / 8)) * 8;
    mma::cp_async16(qs + r * LD + c8, r < nq ? qg + r * ldq + c8 : qg, r < nq);
  }
  load_kv_tile<D>(seq, a.kv, gk, 0, kv_end, ks, vs, a.q);
  mma::cp_async_commit();

  const float scale_log2 = a.scale * kLog2e;
  const int r0 = warp * 16;
  const int qpos[2] = {pos0 + r0 + g, pos0 + r0 + g + 8};
  float o[D / 8][4];
#pragma unroll
  for (int j = 0; j < D / 8; ++j) o[j][0] = o[j][1] = o[j][2] = o[j][3] = 0.0f;
  float m[2] = {-INFINITY, -INFINITY}, l[2] = {0.0f, 0.0f};

  for (int t = 0; t < n_kv_tiles; ++t) {
    const int buf = t & 1;
    if (t + 1 < n_kv_tiles) {
      // The other buffer was last read in tile t-1, before its closing barrier.
      load_kv_tile<D>(seq, a.kv, gk, (t + 1) * kTile, kv_end, ks + (buf ^ 1) * kTile * LD,
                      vs + (buf ^ 1) * kTile * LD, a.q);
      mma::cp_async_commit();
      mma::cp_async_wait<1>();
    } else {
      mma::cp_async_wait<0>();
    }
    __syncthreads();
    const bf16* kb = ks + buf * kTile * LD;
    const bf16* vb = vs + buf * kTile * LD;

    float s[kTile / 8][4];
#pragma unroll
    for (int j = 0; j < kTile / 8; ++j) s[j][0] = s[j][1] = s[j][2] = s[j][3] = 0.0f;
#pragma unroll
    for (int kk = 0; kk < D / 16; ++kk) {
      uint32_t qa[4];
      mma::ldmatrix_x4(qa, qs + (r0 + (lane & 15)) * LD + kk * 16 + (lane >> 4) * 8);
#pragma unroll
      for (int np = 0; np < kTile / 16; ++np) {
        uint32_t b[4];
        mma::ldmatrix_x4(b, kb + (np * 16 + (lane >> 4) * 8 + (lane & 7)) * LD + kk * 16 + ((lane >> 3) & 1) * 8);
        mma::mma_16816(s[2 * np], qa, b[0], b[1]);
        mma::mma_16816(s[2 * np + 1], qa, b[2], b[3]);
      }
    }
#pragma unroll
    for (int j = 0; j < kTile / 8; ++j)
#pragma unroll
      for (int e = 0; e < 4; ++e) {
        const int kpos = t * kTile + j * 8 + 2 * tq + (e & 1);
        s[j][e] = kpos <= qpos[e / 2] && kpos < kv_end ? s[j][e] * scale_log2 : -INFINITY;
      }
    online_softmax(s, o, m, l);
#pragma unroll
    for (int kk = 0; kk < kTile / 16; ++kk) accumulate_pv<D>(o, s[2 * kk], s[2 * kk + 1], vb + kk * 16 * LD, lane);
    __syncthreads();  // both buffers' readers are done before the next prefetch overwrites one
  }

  bf16* out = static_cast<bf16*>(a.out) + (seq.row + q0) * ldq + int64_t(h) * D;
#pragma unroll
  for (int r = 0; r < 2; ++r) {
    const int row = r0 + g + 8 * r;
    const float inv = 1.0f / quad_sum(l[r]);
    if (row >= nq) continue;
#pragma unroll
    for (int j = 0; j < D / 8; ++j)
      *reinterpret_cast<__nv_bfloat162*>(out + row * ldq + j * 8 + 2 * tq) =
          __floats2bfloat162_rn(o[j][2 * r] * inv, o[j][2 * r + 1] * inv);
  }
}

template <int D>
__global__ void __launch_bounds__(kThreads) flash_decode_kernel(FlashArgs a, const int32_t* dec_seqs,
                                                                DecodeSplits sp, float* part_o, float* part_lse) {
  extern __shared__ __align__(16) unsigned char smem[];
  constexpr int LD = kLd<D>;
  bf16* qs = reinterpret_cast<bf16*>(smem);  // [16][ld]
  bf16* ks = reinterpret_cast<bf16*>(smem + size_t(kDecodeRows) * LD * sizeof(bf16));  // [2][kTile][ld]
  bf16* vs = ks + 2 * kTile * LD;
  float* stat_m = reinterpret_cast<float*>(vs + 2 * kTile * LD);  // [warps][16]
  float* stat_l = stat_m + kWarps * kDecodeRows;

  const KvSeqDesc seq = a.seqs[dec_seqs[blockIdx.z]];
  const int kv_len = seq.start_pos + 1;
  const int split = blockIdx.x;
  const int p_begin = split * sp.split_tokens;
  if (p_begin >= kv_len) return;  // this sequence needs fewer splits (uniform per CTA)
  const int p_end = min(kv_len, p_begin + sp.split_tokens);
  const int group = a.heads / a.kv.kv_heads;
  const int head_blocks = (group + kDecodeRows - 1) / kDecodeRows;
  const int gk = blockIdx.y / head_blocks;
  const int head0 = gk * group + (blockIdx.y % head_blocks) * kDecodeRows;
  const int rows = min(kDecodeRows, gk * group + group - head0);
  const int tid = threadIdx.x, lane = tid % kWarp, warp = tid / kWarp, g = lane / 4, tq = lane % 4;
  const int64_t ldq = int64_t(a.heads) * D;
  const bf16* qg = static_cast<const bf16*>(a.q) + seq.row * ldq + int64_t(head0) * D;

  for (int i = tid; i < kDecodeRows * (D / 8); i += kThreads) {
    const int r = i / (D / 8), c8 = (i % (D / 8)) * 8;
    mma::cp_async16(qs + r * LD + c8, r < rows ? qg + r * D + c8 : qg, r < rows);
  }
  const int n_tiles = (p_end - p_begin + kTile - 1) / kTile;
  load_kv_tile<D>(seq, a.kv, gk, p_begin, p_end, ks, vs, a.q);
  mma::cp_async_commit();

  const float scale_log2 = a.scale * kLog2e;
  float o[D / 8][4];
#pragma unroll
  for (int j = 0; j < D / 8; ++j) o[j][0] = o[j][1] = o[j][2] = o[j][3] = 0.0f;
  float m[2] = {-INFINITY, -INFINITY}, l[2] = {0.0f, 0.0f};

  for (int t = 0; t < n_tiles; ++t) {
    const int buf = t & 1;
    if (t + 1 < n_tiles) {
      load_kv_tile<D>(seq, a.kv, gk, p_begin + (t + 1) * kTile, p_end, ks + (buf ^ 1) * kTile * LD,
                      vs + (buf ^ 1) * kTile * LD, a.q);
      mma::cp_async_commit();
      mma::cp_async_wait<1>();
    } else {
      mma::cp_async_wait<0>();
    }
    __syncthreads();
    const bf16* kb = ks + (buf * kTile + warp * 16) * LD;  // this warp's 16 keys
    const bf16* vb = vs + (buf * kTile + warp * 16) * LD;

    float s[2][4] = {{0.0f, 0.0f, 0.0f, 0.0f}, {0.0f, 0.0f, 0.0f, 0.0f}};
#pragma unroll
    for (int kk = 0; kk < D / 16; ++kk) {
      uint32_t qa[4], b[4];
      mma::ldmatrix_x4(qa, qs + (lane & 15) * LD + kk * 16 + (lane >> 4) * 8);
      mma::ldmatrix_x4(b, kb + ((lane >> 4) * 8 + (lane & 7)) * LD + kk * 16 + ((lane >> 3) & 1) * 8);
      mma::mma_16816(s[0], qa, b[0], b[1]);
      mma::mma_16816(s[1], qa, b[2], b[3]);
    }
#pragma unroll
    for (int j = 0; j < 2; ++j)
#pragma unroll
      for (int e = 0; e < 4; ++e) {
        const int kpos = p_begin + t * kTile + warp * 16 + j * 8 + 2 * tq + (e & 1);
        s[j][e] = kpos < p_end ? s[j][e] * scale_log2 : -INFINITY;
      }
    online_softmax(s, o, m, l);
    accumulate_pv<D>(o, s[0], s[1], vb, lane);
    __syncthreads();
  }

  // Merge the 4 warps' partial softmaxes; the KV buffers are free now (last barrier above).
  float* ob = reinterpret_cast<float*>(ks);  // [warps][16][D] fits in the two K buffers
#pragma unroll
  for (int r = 0; r < 2; ++r) {
    const int row = g + 8 * r;
    const float lsum = quad_sum(l[r]);
    if (tq == 0) stat_m[warp * kDecodeRows + row] = m[r], stat_l[warp * kDecodeRows + row] = lsum;
#pragma unroll
    for (int j = 0; j < D / 8; ++j) {
      float* dst = ob + (warp * kDecodeRows + row) * D + j * 8 + 2 * tq;
      dst[0] = o[j][2 * r];
      dst[1] = o[j][2 * r + 1];
    }
  }
  __syncthreads();
  const int64_t part = (int64_t(blockIdx.z) * sp.max_splits + split) * a.heads + head0;
  for (int i = tid; i < rows * D; i += kThreads) {
    const int row = i / D, c = i % D;
    // Warp 0 always saw the split's first key, so mx is finite.
    float mx = -INFINITY;
#pragma unroll
    for (int w = 0; w < kWarps; ++w) mx = fmaxf(mx, stat_m[w * kDecodeRows + row]);
    float num = 0.0f, den = 0.0f;
#pragma unroll
    for (int w = 0; w < kWarps; ++w) {
      const float f = exp2f(stat_m[w * kDecodeRows + row] - mx);
      num += f * ob[(w * kDecodeRows + row) * D + c];
      den += f * stat_l[w * kDecodeRows + row];
    }
    part_o[(part + row) * D + c] = num / den;
    if (c == 0) part_lse[part + row] = mx + log2f(den);
  }
}

// out row of each (sequence, head) = the splits' partial outputs weighted by their softmax mass.
__global__ void flash_decode_reduce_kernel(FlashArgs a, const int32_t* dec_seqs, DecodeSplits sp,
                                           const float* part_o, const float* part_lse) {
  const int d = a.kv.head_dim, h = blockIdx.x;
  const KvSeqDesc seq = a.seqs[dec_seqs[blockIdx.y]];
  const int n_splits = (seq.start_pos + 1 + sp.split_tokens - 1) / sp.split_tokens;
  const int64_t base = int64_t(blockIdx.y) * sp.max_splits;
  float mx = -INFINITY;
  for (int s = 0; s < n_splits; ++s) mx = fmaxf(mx, part_lse[(base + s) * a.heads + h]);
  for (int c = threadIdx.x; c < d; c += blockDim.x) {
    float num = 0.0f, den = 0.0f;
    for (int s = 0; s < n_splits; ++s) {
      const float w = exp2f(part_lse[(base + s) * a.heads + h] - mx);
      num += w * part_o[((base + s) * a.heads + h) * d + c];
      den += w;
    }
    static_cast<bf16*>(a.out)[seq.row * a.heads * d + int64_t(h) * d + c] = __float2bfloat16_rn(num / den);
  }
}

template <int D>
void launch_prefill(const FlashArgs& a, const FlashTile* tiles, int n_tiles, cudaStream_t stream) {
  constexpr size_t smem = prefill_smem_bytes<D>();
  MMX_CUDA(cudaFuncSetAttribute(flash_prefill_kernel<D>, cudaFuncAttributeMaxDynamicSharedMemorySize, int(smem)));
  flash_prefill_kernel<D><<<dim3(unsigned(n_tiles), unsigned(a.heads)), kThreads, smem, stream>>>(a, tiles);
  MMX_CUDA_CHECK_LAUNCH("flash attention prefill kernel");
}

template <int D>
void launch_decode(const FlashArgs& a, const int32_t* dec_seqs, int n_seqs, const DecodeSplits& sp, float* part_o,
                   float* part_lse, cudaStream_t stream) {
  constexpr size_t smem = decode_smem_bytes<D>();
  MMX_CUDA(cudaFuncSetAttribute(flash_decode_kernel<D>, cudaFuncAttributeMaxDynamicSharedMemorySize, int(smem)));
  const int group = a.heads / a.kv.kv_heads;
  const int head_blocks = (group + kDecodeRows - 1) / kDecodeRows;
  const dim3 grid(unsigned(sp.max_splits), unsigned(a.kv.kv_heads * head_blocks), unsigned(n_seqs));
  flash_decode_kernel<D><<<grid, kThreads, smem, stream>>>(a, dec_seqs, sp, part_o, part_lse);
  MMX_CUDA_CHECK_LAUNCH("flash attention decode kernel");
}

void check_args(const FlashArgs& a, const char* op) {
  MMX_CHECK(flash_head_dim_supported(a.kv.head_dim), Code::Unsupported,
            std::string(op) + ": head_dim " + std::to_string(a.kv.head_dim) + " is not supported (16, 32, 64 or 128)");
  MMX_CHECK(a.heads > 0 && a.kv.kv_heads > 0 && a.heads % a.kv.kv_heads == 0 && a.kv.page_tokens > 0,
            Code::InvalidArgument, std::string(op) + ": inconsistent head counts or page size");
  MMX_CHECK(aligned16(a.q) && aligned16(a.out), Code::InvalidArgument,
            std::string(op) + ": q and out must be 16-byte aligned");
}

}  // namespace

bool flash_head_dim_supported(int64_t d) { return d == 16 || d == 32 || d == 64 || d == 128; }

void flash_prefill(const FlashArgs& a, const FlashTile* tiles, int n_tiles, cudaStream_t stream) {
  if (n_tiles == 0) return;
  check_args(a, "flash prefill");
  MMX_CHECK(a.heads <= 65535, Code::InvalidArgument, "flash prefill: more than 65535 heads");
  switch (a.kv.head_dim) {
    case 16: return launch_prefill<16>(a, tiles, n_tiles, stream);
    case 32: return launch_prefill<32>(a, tiles, n_tiles, stream);
    case 64: return launch_prefill<64>(a, tiles, n_tiles, stream);
    default: return launch_prefill<128>(a, tiles, n_tiles, stream);
  }
}

DecodeSplits plan_decode_splits(int64_t max_kv_len, int n_seqs, int heads, int kv_heads, int target_ctas) {
  MMX_CHECK(max_kv_len > 0 && n_seqs > 0 && kv_heads > 0 && heads % kv_heads == 0, Code::InvalidArgument,
            "plan_decode_splits: inconsistent arguments");
  const int64_t group = heads / kv_heads;
  const int64_t ctas_per_split = int64_t(n_seqs) * kv_heads * ceil_div(group, kDecodeRows);
  const int64_t max_tiles = ceil_div(max_kv_len, kTile);
  const int64_t splits = std::clamp<int64_t>(ceil_div(target_ctas, ctas_per_split), 1, max_tiles);
  DecodeSplits sp;
  sp.split_tokens = int(ceil_div(ceil_div(max_kv_len, splits), kTile) * kTile);
  sp.max_splits = int(ceil_div(max_kv_len, sp.split_tokens));
  return sp;
}

size_t flash_decode_scratch_bytes(int n_seqs, const DecodeSplits& sp, int heads, int head_dim) {
  const size_t parts = size_t(n_seqs) * size_t(sp.max_splits) * size_t(heads);
  return parts * size_t(head_dim) * sizeof(float) + parts * sizeof(float);
}

void flash_decode(const FlashArgs& a, const int32_t* dec_seqs, int n_seqs, const DecodeSplits& sp, void* scratch,
                  cudaStream_t stream) {
  if (n_seqs == 0) return;
  check_args(a, "flash decode");
  MMX_CHECK(n_seqs <= 65535 && sp.max_splits > 0 && sp.split_tokens % kTile == 0, Code::InvalidArgument,
            "flash decode: bad split plan or more than 65535 sequences");
  const int d = a.kv.head_dim;
  float* part_o = static_cast<float*>(scratch);
  float* part_lse = part_o + size_t(n_seqs) * sp.max_splits * a.heads * d;
  switch (d) {
    case 16: launch_decode<16>(a, dec_seqs, n_seqs, sp, part_o, part_lse, stream); break;
    case 32: launch_decode<32>(a, dec_seqs, n_seqs, sp, part_o, part_lse, stream); break;
    case 64: launch_decode<64>(a, dec_seqs, n_seqs, sp, part_o, part_lse, stream); break;
    default: launch_decode<128>(a, dec_seqs, n_seqs, sp, part_o, part_lse, stream); break;
  }
  flash_decode_reduce_kernel<<<dim3(unsigned(a.heads), unsigned(n_seqs)), unsigned(std::min(d, 128)), 0, stream>>>(
      a, dec_seqs, sp, part_o, part_lse);
  MMX_CUDA_CHECK_LAUNCH("flash attention decode reduction kernel");
}

}  // namespace mmx::cuda
