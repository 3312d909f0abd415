// Lightning attention on the GPU (model-spec §5). See lightning.h for the math.
//
// Prefill: one CTA per (sequence, head, DV-wide slice of the value dims) walks the sequence
// block by block (kChunk tokens), keeping its D x DV slice of the fp32 state in registers.
// Per block, 4 warps each own 16 query rows for the output and a share of the state tiles:
//   O   = diag(lambda^(i+1)) * (Q * bf16(S))                 inter-block, tensor cores
//   O  += (mask_decay o (Q K^T)) * V                          intra-block, tensor cores
//   S   = lambda^m S + (K o lambda^(m-1-j))^T V               tensor cores, fp32 add to S
// The decayed keys of the state update are split into bf16 hi + lo parts (two products) so
// the fp32 state does not pick up bf16 rounding of the decay factors: the state must hold
// 1e-3 against an fp64 recurrence over 100k tokens. The next block's q/k/v are fetched with
// cp.async while the current one is computed.
//
// Decode: one CTA per (sequence, head, 32 value columns); each thread updates 4 columns of
// a few state rows with 16-byte loads and stores and the CTA reduces o = q S over the rows.
#include "kernels/lightning.h"

#include <cuda_bf16.h>

#include <string>

#include "kernels/common.cuh"
#include "kernels/mma_bf16.cuh"

namespace mmx::cuda {
namespace {

using bf16 = __nv_bfloat16;
constexpr int kChunk = kLightningChunk;
constexpr int kWarps = 4;
constexpr int kThreads = kWarps * kWarp;
static_assert(kChunk == kWarps * 16, "each warp owns 16 rows of a block");

constexpr size_t align16(size_t x) { return (x + 15) & ~size_t(15); }

// Shapes and shared-memory layout of the prefill kernel for head dim D, slice width DV and
// STAGES (2: the next block is prefetched; 1: for devices with less shared memory).
template <int D, int DV, int STAGES>
struct PrefillShape {
  static_assert(D % 16 == 0 && DV % 16 == 0 && D % DV == 0, "unsupported lightning tile shape");
  // Rows are padded by 16 bytes so the 8 rows an ldmatrix reads fall on distinct banks.
  static constexpr int LDK = D + 8;
  static constexpr int LDV = DV + 8;
  static constexpr int MT = D / 16;   // 16-row tiles of the state (rows = key dims)
  static constexpr int NTV = DV / 8;  // 8-column tiles of the slice (value dims)
  // The warps form a WM x WN grid over the state tiles; each owns MPW x NPW of them.
  static constexpr int WM = MT < kWarps ? MT : kWarps;
  static constexpr int WN = kWarps / WM;
  static constexpr int MPW = MT / WM;
  static constexpr int NPW = NTV >= WN ? NTV / WN : 1;
  static_assert(NTV < WN || NTV % WN == 0, "state tiles must split evenly over the warps");

  static constexpr size_t kq_tile = size_t(kChunk) * LDK * sizeof(bf16);
  static constexpr size_t v_tile = size_t(kChunk) * LDV * sizeof(bf16);
  static constexpr size_t off_q = align16(kDecayPowCount * sizeof(float));
  static constexpr size_t off_k = off_q + STAGES * kq_tile;
  static constexpr size_t off_v = off_k + STAGES * kq_tile;
  static constexpr size_t off_khi = off_v + STAGES * v_tile;
  static constexpr size_t off_klo = off_khi + kq_tile;
  static constexpr size_t off_sb = off_klo + kq_tile;
  static constexpr size_t smem_bytes = off_sb + size_t(D) * LDV * sizeof(bf16);
};

template <int D, int DV, int STAGES>
__global__ void __launch_bounds__(kThreads, 1) lightning_prefill_kernel(LightningArgs a) {
  using P = PrefillShape<D, DV, STAGES>;
  extern __shared__ __align__(16) unsigned char smem[];
  float* pw = reinterpret_cast<float*>(smem);  // lambda^n, n = 0..kChunk
  bf16* qs = reinterpret_cast<bf16*>(smem + P::off_q);
  bf16* ks = reinterpret_cast<bf16*>(smem + P::off_k);
  bf16* vs = reinterpret_cast<bf16*>(smem + P::off_v);
  bf16* khi = reinterpret_cast<bf16*>(smem + P::off_khi);
  bf16* klo = reinterpret_cast<bf16*>(smem + P::off_klo);
  bf16* sb = reinterpret_cast<bf16*>(smem + P::off_sb);  // bf16 copy of the state slice

  const LightningSeqDesc seq = a.seqs[blockIdx.y];
  constexpr int kSlices = D / DV;
  const int h = blockIdx.x / kSlices, dv0 = (blockIdx.x % kSlices) * DV;
  const int tid = threadIdx.x, lane = tid % kWarp, warp = tid / kWarp;
  const int g = lane / 4, tq = lane % 4;
  const int64_t ld_in = 3LL * a.heads * D, ld_out = int64_t(a.heads) * D;
  const bf16* base = static_cast<const bf16*>(a.qkv) + seq.row * ld_in + 3LL * D * h;
  bf16* out = static_cast<bf16*>(a.out) + seq.row * ld_out + int64_t(h) * D + dv0;
  float* state = seq.state + int64_t(h) * D * D;
  const int64_t n = seq.n_tokens;
  const int n_chunks = int((n + kChunk - 1) / kChunk);

  for (int i = tid; i < kDecayPowCount; i += kThreads) pw[i] = a.decay_pow[h * kDecayPowCount + i];

  // Rows past the end of the sequence are zero-filled: they add nothing to any product.
  auto load_chunk = [&](int c, int buf) {
    const int64_t t0 = int64_t(c) * kChunk;
    constexpr int kPieces = D / 8;  // 16-byte pieces per q or k row
    for (int i = tid; i < kChunk * kPieces; i += kThreads) {
      const int r = i / kPieces, c8 = (i % kPieces) * 8;
      const bool valid = t0 + r < n;
      const bf16* src = valid ? base + (t0 + r) * ld_in + c8 : base;
      mma::cp_async16(qs + (buf * kChunk + r) * P::LDK + c8, src, valid);
      mma::cp_async16(ks + (buf * kChunk + r) * P::LDK + c8, valid ? src + D : base, valid);
    }
    constexpr int kVPieces = DV / 8;
    for (int i = tid; i < kChunk * kVPieces; i += kThreads) {
      const int r = i / kVPieces, c8 = (i % kVPieces) * 8;
      const bool valid = t0 + r < n;
      const bf16* src = valid ? base + (t0 + r) * ld_in + 2 * D + dv0 + c8 : base;
      mma::cp_async16(vs + (buf * kChunk + r) * P::LDV + c8, src, valid);
    }
  };

  // This warp's state tiles: rows m0 = (wm*MPW + i)*16, columns n0 = (wn*NPW + j)*8 of the slice.
  const int wm = warp % P::WM, wn = warp / P::WM;
  const bool owns_state = wn * P::NPW < P::NTV;  // false only for idle warps of tiny heads
  float sacc[P::MPW][P::NPW][4];
#pragma unroll
  for (int i = 0; i < P::MPW; ++i)
#pragma unroll
    for (int j = 0; j < P::NPW; ++j) {
      const int row = (wm * P::MPW + i) * 16 + g, col = dv0 + (wn * P::NPW + j) * 8 + 2 * tq;
      float2 lo = make_float2(0.f, 0.f), hi = lo;
      if (owns_state) {
        lo = *reinterpret_cast<const float2*>(state + int64_t(row) * D + col);
        hi = *reinterpret_cast<const float2*>(state + int64_t(row + 8) * D + col);
      }
      sacc[i][j][0] = lo.x, sacc[i][j][1] = lo.y, sacc[i][j][2] = hi.x, sacc[i][j][3] = hi.y;
    }
  auto write_state_bf16 = [&]() {
    if (!owns_state) return;
#pragma unroll
    for (int i = 0; i < P::MPW; ++i)
#pragma unroll
      for (int j = 0; j < P::NPW; ++j) {
        const int row = (wm * P::MPW + i) * 16 + g, col = (wn * P::NPW + j) * 8 + 2 * tq;
        *reinterpret_cast<uint32_t*>(sb + row * P::LDV + col) = mma::pack_bf16(sacc[i][j][0], sacc[i][j][1]);
        *reinterpret_cast<uint32_t*>(sb + (row + 8) * P::LDV + col) =
            mma::pack_bf16(sacc[i][j][2], sacc[i][j][3]);
      }
  };
  write_state_bf16();

  if (STAGES == 2) {
    load_chunk(0, 0);
    mma::cp_async_commit();
  }
  for (int c = 0; c < n_chunks; ++c) {
    const int buf = STAGES == 2 ? (c & 1) : 0;
    if (STAGES == 2 && c + 1 < n_chunks) {
      // The other buffer was last read in block c-1, before its closing barrier.
      load_chunk(c + 1, buf ^ 1);
      mma::cp_async_commit();
      mma::cp_async_wait<1>();
    } else if (STAGES == 2) {
      mma::cp_async_wait<0>();
    } else {
      load_chunk(c, 0);
      mma::cp_async_commit();
      mma::cp_async_wait<0>();
    }
    __syncthreads();  // block c's q/k/v, the state copy sb and pw are visible to all

    const int m = int(n - int64_t(c) * kChunk < kChunk ? n - int64_t(c) * kChunk : kChunk);
    const bf16* qb = qs + buf * kChunk * P::LDK;
    const bf16* kb = ks + buf * kChunk * P::LDK;
    const bf16* vb = vs + buf * kChunk * P::LDV;

    // Keys decayed to the block end, k_j * lambda^(m-1-j), as bf16 hi + lo.
    for (int i = tid; i < kChunk * (D / 8); i += kThreads) {
      const int r = i / (D / 8), c8 = (i % (D / 8)) * 8;
      float f[8], hi[8], lo[8];
      bf16x8_to_f32(*reinterpret_cast<const Bf16x8*>(kb + r * P::LDK + c8), f);
      const float w = r < m ? pw[m - 1 - r] : 0.0f;
#pragma unroll
      for (int e = 0; e < 8; ++e) {
        const float x = f[e] * w;
        hi[e] = __bfloat162float(__float2bfloat16_rn(x));
        lo[e] = x - hi[e];
      }
      *reinterpret_cast<Bf16x8*>(khi + r * P::LDK + c8) = f32_to_bf16x8(hi);
      *reinterpret_cast<Bf16x8*>(klo + r * P::LDK + c8) = f32_to_bf16x8(lo);
    }
    __syncthreads();  // decayed keys ready

    // ---- output rows r0..r0+15 of this warp
    {
      const int r0 = warp * 16;
      float o[P::NTV][4];
#pragma unroll
      for (int j = 0; j < P::NTV; ++j) o[j][0] = o[j][1] = o[j][2] = o[j][3] = 0.0f;
      // Inter-block: O = Q S (S as of the block start).
#pragma unroll
      for (int kk = 0; kk < D / 16; ++kk) {
        uint32_t qa[4];
        mma::ldmatrix_x4(qa, qb + (r0 + (lane & 15)) * P::LDK + kk * 16 + (lane >> 4) * 8);
#pragma unroll
        for (int np = 0; np < P::NTV / 2; ++np) {
          uint32_t b[4];
          mma::ldmatrix_x4_trans(
              b, sb + (kk * 16 + ((lane >> 3) & 1) * 8 + (lane & 7)) * P::LDV + np * 16 + (lane >> 4) * 8);
          mma::mma_16816(o[2 * np], qa, b[0], b[1]);
          mma::mma_16816(o[2 * np + 1], qa, b[2], b[3]);
        }
      }
      const int ra = r0 + g, rb = ra + 8;  // this thread's two rows
      const float da = pw[ra + 1], db = pw[rb + 1];  // lambda^(i+1): exactly i+1
#pragma unroll
      for (int j = 0; j < P::NTV; ++j) o[j][0] *= da, o[j][1] *= da, o[j][2] *= db, o[j][3] *= db;

      // Intra-block scores Q K^T (16 x kChunk), causal with decay lambda^(i-j).
      float s[kChunk / 8][4];
#pragma unroll
      for (int j = 0; j < kChunk / 8; ++j) s[j][0] = s[j][1] = s[j][2] = s[j][3] = 0.0f;
#pragma unroll
      for (int kk = 0; kk < D / 16; ++kk) {
        uint32_t qa[4];
        mma::ldmatrix_x4(qa, qb + (r0 + (lane & 15)) * P::LDK + kk * 16 + (lane >> 4) * 8);
#pragma unroll
        for (int np = 0; np < kChunk / 16; ++np) {
          uint32_t b[4];
          mma::ldmatrix_x4(
              b, kb + (np * 16 + (lane >> 4) * 8 + (lane & 7)) * P::LDK + kk * 16 + ((lane >> 3) & 1) * 8);
          mma::mma_16816(s[2 * np], qa, b[0], b[1]);
          mma::mma_16816(s[2 * np + 1], qa, b[2], b[3]);
        }
      }
#pragma unroll
      for (int j = 0; j < kChunk / 8; ++j)
#pragma unroll
        for (int e = 0; e < 4; ++e) {
          const int row = e < 2 ? ra : rb, col = j * 8 + 2 * tq + (e & 1);
          s[j][e] = col <= row ? s[j][e] * pw[row - col] : 0.0f;
        }
      // O += A V
#pragma unroll
      for (int kk = 0; kk < kChunk / 16; ++kk) {
        const uint32_t pa[4] = {mma::pack_bf16(s[2 * kk][0], s[2 * kk][1]),
                                mma::pack_bf16(s[2 * kk][2], s[2 * kk][3]),
                                mma::pack_bf16(s[2 * kk + 1][0], s[2 * kk + 1][1]),
                                mma::pack_bf16(s[2 * kk + 1][2], s[2 * kk + 1][3])};
#pragma unroll
        for (int np = 0; np < P::NTV / 2; ++np) {
          uint32_t b[4];
          mma::ldmatrix_x4_trans(
              b, vb + (kk * 16 + ((lane >> 3) & 1) * 8 + (lane & 7)) * P::LDV + np * 16 + (lane >> 4) * 8);
          mma::mma_16816(o[2 * np], pa, b[0], b[1]);
          mma::mma_16816(o[2 * np + 1], pa, b[2], b[3]);
        }
      }
      const int64_t t0 = int64_t(c) * kChunk;
#pragma unroll
      for (int j = 0; j < P::NTV; ++j) {
        const int col = j * 8 + 2 * tq;
        if (ra < m)
          *reinterpret_cast<__nv_bfloat162*>(out + (t0 + ra) * ld_out + col) =
              __floats2bfloat162_rn(o[j][0], o[j][1]);
        if (rb < m)
          *reinterpret_cast<__nv_bfloat162*>(out + (t0 + rb) * ld_out + col) =
              __floats2bfloat162_rn(o[j][2], o[j][3]);
      }
    }

    // ---- state update: S = lambda^m S + U, U = Kd^T V with Kd = hi + lo. U gets its own
    // zeroed accumulator and is added with an fp32 FMA: the tensor cores truncate their
    // accumulator, which would bias S (~4e3 after 100k slow-decay tokens) by up to an ulp
    // per product.
    if (owns_state) {
      const float dm = pw[m];
#pragma unroll
      for (int i = 0; i < P::MPW; ++i) {
        uint32_t ahi[kChunk / 16][4], alo[kChunk / 16][4];
        const int kcol = (wm * P::MPW + i) * 16 + ((lane >> 3) & 1) * 8;
#pragma unroll
        for (int kk = 0; kk < kChunk / 16; ++kk) {
          const int krow = kk * 16 + (lane >> 4) * 8 + (lane & 7);
          mma::ldmatrix_x4_trans(ahi[kk], khi + krow * P::LDK + kcol);
          mma::ldmatrix_x4_trans(alo[kk], klo + krow * P::LDK + kcol);
        }
#pragma unroll
        for (int j = 0; j < P::NPW; ++j) {
          float u[4] = {0.0f, 0.0f, 0.0f, 0.0f};
#pragma unroll
          for (int kk = 0; kk < kChunk / 16; ++kk) {
            uint32_t b[2];
            mma::ldmatrix_x2_trans(
                b, vb + (kk * 16 + ((lane >> 3) & 1) * 8 + (lane & 7)) * P::LDV + (wn * P::NPW + j) * 8);
            mma::mma_16816(u, alo[kk], b[0], b[1]);
            mma::mma_16816(u, ahi[kk], b[0], b[1]);
          }
#pragma unroll
          for (int e = 0; e < 4; ++e) sacc[i][j][e] = fmaf(dm, sacc[i][j][e], u[e]);
        }
      }
    }
    __syncthreads();  // every read of this block's tiles, Kd and sb is done
    write_state_bf16();
  }

  if (owns_state) {
#pragma unroll
    for (int i = 0; i < P::MPW; ++i)
#pragma unroll
      for (int j = 0; j < P::NPW; ++j) {
        const int row = (wm * P::MPW + i) * 16 + g, col = dv0 + (wn * P::NPW + j) * 8 + 2 * tq;
        *reinterpret_cast<float2*>(state + int64_t(row) * D + col) = make_float2(sacc[i][j][0], sacc[i][j][1]);
        *reinterpret_cast<float2*>(state + int64_t(row + 8) * D + col) =
            make_float2(sacc[i][j][2], sacc[i][j][3]);
      }
  }
}

// Decode: COLS value columns per CTA, 4 per thread; RP threads share the D state rows.
template <int D>
struct DecodeShape {
  static constexpr int COLS = D < 32 ? D : 32;
  static constexpr int TPR = COLS / 4;  // threads per state row
  static constexpr int RP = D < 32 ? D : 32;  // rows in flight at once
  static constexpr int THREADS = TPR * RP;
  static constexpr int RPT = D / RP;  // rows per thread
  static constexpr int SLICES = D / COLS;
};

template <int D>
__global__ void __launch_bounds__(DecodeShape<D>::THREADS) lightning_decode_kernel(LightningArgs a) {
  using P = DecodeShape<D>;
  __shared__ __align__(16) float partial[P::RP][P::COLS];
  const LightningSeqDesc seq = a.seqs[blockIdx.y];
  const int h = blockIdx.x / P::SLICES, c0 = (blockIdx.x % P::SLICES) * P::COLS;
  const int tid = threadIdx.x, cg = tid % P::TPR, r = tid / P::TPR;
  const int col = c0 + cg * 4;
  const bf16* q = static_cast<const bf16*>(a.qkv) + seq.row * (3LL * a.heads * D) + 3LL * D * h;
  const bf16* k = q + D;
  const bf16* v = q + 2 * D;
  float* S = seq.state + int64_t(h) * D * D;
  const float lambda = a.decay_pow[h * kDecayPowCount + 1];

  const float2 v01 = __bfloat1622float2(*reinterpret_cast<const __nv_bfloat162*>(v + col));
  const float2 v23 = __bfloat1622float2(*reinterpret_cast<const __nv_bfloat162*>(v + col + 2));
  float4 s[P::RPT];
  float kr[P::RPT], qr[P::RPT];
#pragma unroll
  for (int i = 0; i < P::RPT; ++i) {  // every load issued before the first use
    const int row = r + i * P::RP;
    s[i] = *reinterpret_cast<const float4*>(S + int64_t(row) * D + col);
    kr[i] = __bfloat162float(k[row]);
    qr[i] = __bfloat162float(q[row]);
  }
  float acc[4] = {0.0f, 0.0f, 0.0f, 0.0f};
#pragma unroll
  for (int i = 0; i < P::RPT; ++i) {
    const int row = r + i * P::RP;
    float4 x = s[i];
    x.x = lambda * x.x + kr[i] * v01.x;
    x.y = lambda * x.y + kr[i] * v01.y;
    x.z = lambda * x.z + kr[i] * v23.x;
    x.w = lambda * x.w + kr[i] * v23.y;
    *reinterpret_cast<float4*>(S + int64_t(row) * D + col) = x;
    acc[0] += qr[i] * x.x, acc[1] += qr[i] * x.y, acc[2] += qr[i] * x.z, acc[3] += qr[i] * x.w;
  }
  *reinterpret_cast<float4*>(&partial[r][cg * 4]) = make_float4(acc[0], acc[1], acc[2], acc[3]);
  __syncthreads();
  if (tid < P::COLS) {
    float o = 0.0f;
#pragma unroll 8
    for (int i = 0; i < P::RP; ++i) o += partial[i][tid];
    bf16* out = static_cast<bf16*>(a.out) + seq.row * (int64_t(a.heads) * D) + int64_t(h) * D;
    out[c0 + tid] = __float2bfloat16_rn(o);
  }
}

int max_optin_smem() {
  int dev = 0, bytes = 0;
  MMX_CUDA(cudaGetDevice(&dev));
  MMX_CUDA(cudaDeviceGetAttribute(&bytes, cudaDevAttrMaxSharedMemoryPerBlockOptin, dev));
  return bytes;
}

template <int D, int DV, int STAGES>
void launch_prefill(const LightningArgs& a, cudaStream_t stream) {
  using P = PrefillShape<D, DV, STAGES>;
  auto kernel = lightning_prefill_kernel<D, DV, STAGES>;
  MMX_CUDA(cudaFuncSetAttribute(kernel, cudaFuncAttributeMaxDynamicSharedMemorySize, int(P::smem_bytes)));
  kernel<<<dim3(unsigned(a.heads * (D / DV)), unsigned(a.n_seqs)), kThreads, P::smem_bytes, stream>>>(a);
  MMX_CUDA_CHECK_LAUNCH("lightning prefill kernel");
}

template <int D>
void launch_decode(const LightningArgs& a, cudaStream_t stream) {
  using P = DecodeShape<D>;
  lightning_decode_kernel<D>
      <<<dim3(unsigned(a.heads * P::SLICES), unsigned(a.n_seqs)), P::THREADS, 0, stream>>>(a);
  MMX_CUDA_CHECK_LAUNCH("lightning decode kernel");
}

void check_args(const LightningArgs& a, const char* op) {
  MMX_CHECK(lightning_head_dim_supported(a.head_dim), Code::Unsupported,
            std::string(op) + ": head_dim " + std::to_string(a.head_dim) +
                " is not supported (16, 32, 64 or 128)");
  MMX_CHECK(a.heads > 0 && a.n_seqs <= 65535, Code::InvalidArgument,
            std::string(op) + ": no heads, or more than 65535 sequences in one launch");
  MMX_CHECK(aligned16(a.qkv) && aligned16(a.out), Code::InvalidArgument,
            std::string(op) + ": q/k/v and output must be 16-byte aligned");
}

}  // namespace

bool lightning_head_dim_supported(int64_t d) { return d == 16 || d == 32 || d == 64 || d == 128; }

void lightning_prefill(const LightningArgs& a, cudaStream_t stream) {
  if (a.n_seqs == 0) return;
  check_args(a, "lightning prefill");
  switch (a.head_dim) {
    case 16: return launch_prefill<16, 16, 2>(a, stream);
    case 32: return launch_prefill<32, 32, 2>(a, stream);
    case 64: return launch_prefill<64, 64, 2>(a, stream);
    default:
      // sm_89 parts offer ~99 KB per block: fall back to one stage there.
      if (max_optin_smem() >= int(PrefillShape<128, 64, 2>::smem_bytes))
        return launch_prefill<128, 64, 2>(a, stream);
      return launch_prefill<128, 64, 1>(a, stream);
  }
}

void lightning_decode(const LightningArgs& a, cudaStream_t stream) {
  if (a.n_seqs == 0) return;
  check_args(a, "lightning decode");
  switch (a.head_dim) {
    case 16: return launch_decode<16>(a, stream);
    case 32: return launch_decode<32>(a, stream);
    case 64: return launch_decode<64>(a, stream);
    default: return launch_decode<128>(a, stream);
  }
}

}  // namespace mmx::cuda
