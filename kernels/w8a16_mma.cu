#include "kernels/w8a16_mma.h"

#include <algorithm>
#include <string>

#include "kernels/common.cuh"

namespace mmx::cuda {
namespace {

// Block tile: 64 activation rows x 64 weight rows x 64 k; 4 warps, 2 x 2, each 32 x 32.
constexpr int BM = kMmaTileRows, BN = 64, BK = 64;
constexpr int kThreads = 128;
constexpr int kASize = BM * BK * 2;  // bytes of one bf16 A stage
constexpr int kBSize = BN * BK;      // bytes of one int8 B stage
constexpr int kCStride = BN + 4;     // fp32 epilogue tile row (padded)
constexpr int kSmem = 2 * kASize + 2 * kBSize;
static_assert(BM * kCStride * 4 <= kSmem, "epilogue tile must fit in the pipeline buffers");

struct Params {
  MmaGemmArgs a;
  int64_t wrows;      // rows of W: N, or 2N when gated
  int64_t k_tiles_per_split;
  float* partial;     // [split][rows_total][wrows] when split > 1
};

__device__ __forceinline__ uint32_t smem_u32(const void* p) {
  return static_cast<uint32_t>(__cvta_generic_to_shared(p));
}

// 16 bytes global -> shared, zero-filled when !valid (src is then not read).
__device__ __forceinline__ void cp_async16(void* dst, const void* src, bool valid) {
  const int n = valid ? 16 : 0;
  asm volatile("cp.async.cg.shared.global [%0], [%1], 16, %2;\n" ::"r"(smem_u32(dst)), "l"(src), "r"(n));
}
__device__ __forceinline__ void cp_async_commit() { asm volatile("cp.async.commit_group;\n" ::); }
__device__ __forceinline__ void cp_async_wait_all() { asm volatile("cp.async.wait_all;\n" ::); }

__device__ __forceinline__ int4 ld_stream(const void* p) {
  int4 v;
  asm volatile("ld.global.nc.L1::no_allocate.v4.s32 {%0, %1, %2, %3}, [%4];"
               : "=r"(v.x), "=r"(v.y), "=r"(v.z), "=r"(v.w)
               : "l"(p));
  return v;
}

__device__ __forceinline__ void ldmatrix_x4(uint32_t r[4], const void* p) {
  asm volatile("ldmatrix.sync.aligned.m8n8.x4.shared.b16 {%0, %1, %2, %3}, [%4];\n"
               : "=r"(r[0]), "=r"(r[1]), "=r"(r[2]), "=r"(r[3])
               : "r"(smem_u32(p)));
}

__device__ __forceinline__ void mma_bf16(float c[4], const uint32_t a[4], uint32_t b0, uint32_t b1) {
  asm volatile(
      "mma.sync.aligned.m16n8k16.row.col.f32.bf16.bf16.f32 {%0, %1, %2, %3}, "
      "{%4, %5, %6, %7}, {%8, %9}, {%0, %1, %2, %3};\n"
      : "+f"(c[0]), "+f"(c[1]), "+f"(c[2]), "+f"(c[3])
      : "r"(a[0]), "r"(a[1]), "r"(a[2]), "r"(a[3]), "r"(b0), "r"(b1));
}

// Four int8 -> two bf16x2, exactly (|q| <= 128 fits bf16's 8-bit significand): through fp32
// (2^23 + byte), keeping the upper halves.
__device__ __forceinline__ void i8x4_to_bf16x2(uint32_t w, uint32_t* lo, uint32_t* hi) {
  const uint32_t u = w ^ 0x80808080u;
  const float f0 = __uint_as_float(__byte_perm(u, 0x4b000000u, 0x7540)) - 8388736.0f;
  const float f1 = __uint_as_float(__byte_perm(u, 0x4b000000u, 0x7541)) - 8388736.0f;
  const float f2 = __uint_as_float(__byte_perm(u, 0x4b000000u, 0x7542)) - 8388736.0f;
  const float f3 = __uint_as_float(__byte_perm(u, 0x4b000000u, 0x7543)) - 8388736.0f;
  *lo = __byte_perm(__float_as_uint(f0), __float_as_uint(f1), 0x7632);
  *hi = __byte_perm(__float_as_uint(f2), __float_as_uint(f3), 0x7632);
}

// Shared-memory addresses. A: [BM][BK] bf16, 16-byte chunk c of row r stored at c ^ (r & 7)
// (ldmatrix reads 8 rows of one chunk without bank conflicts). B: [BN][BK] int8, chunk c of row
// r at c ^ ((r >> 1) & 3), each 16-byte chunk permuted so that word q holds k = 2q, 2q+1,
// 2q+8, 2q+9: exactly the B fragment of lane (g, q) for one k16 step.
__device__ __forceinline__ int a_offset(int row, int chunk) { return row * (BK * 2) + ((chunk ^ (row & 7)) << 4); }
__device__ __forceinline__ int b_offset(int row, int chunk) { return row * BK + ((chunk ^ ((row >> 1) & 3)) << 4); }

template <bool kGated, bool kGrouped, bool kSplit>
__global__ void __launch_bounds__(kThreads) mma_kernel(Params p) {
  __shared__ __align__(128) unsigned char smem[kSmem];
  unsigned char* As = smem;
  unsigned char* Bs = smem + 2 * kASize;
  const MmaGemmArgs& a = p.a;

  // ---- which rows, which weight
  int64_t row_begin, row_end;
  const int8_t* W;
  const float* S;
  if constexpr (kGrouped) {
    if (int64_t(blockIdx.y) >= int64_t(*a.tile_count)) return;
    const int e = a.tile_expert[blockIdx.y];
    row_begin = a.tile_row0[blockIdx.y];
    row_end = min(int64_t(a.offsets[e + 1]), row_begin + BM);
    W = static_cast<const int8_t*>(a.weights[e]);
    S = a.scales[e];
  } else {
    row_begin = int64_t(blockIdx.y) * BM;
    row_end = min(a.M, row_begin + BM);
    W = a.w;
    S = a.scale;
  }
  const int64_t N = a.N, K = a.K;
  // Block columns: BN weight rows; gated: BN/2 of W1 then the same BN/2 of W3.
  constexpr int kHalf = BN / 2;
  const int64_t n0 = int64_t(blockIdx.x) * (kGated ? kHalf : BN);
  auto wrow_of = [&](int j, bool* valid) -> int64_t {
    const int64_t n = n0 + (kGated ? (j % kHalf) : j);
    *valid = n < N;
    return kGated && j >= kHalf ? N + n : n;
  };

  const int64_t k_tiles = ceil_div(K, BK);
  const int64_t kt_begin = int64_t(blockIdx.z) * p.k_tiles_per_split;
  const int64_t kt_end = min(k_tiles, kt_begin + p.k_tiles_per_split);

  const int tid = threadIdx.x, lane = tid % kWarp, warp = tid / kWarp;
  const int warp_m = warp / 2, warp_n = warp % 2;
  const int g = lane / 4, q = lane % 4;

  // ---- per-thread load assignments (fixed across k tiles)
  // A: 4 chunks of 16 bytes: rows tid/8 + 16i, chunk tid%8.
  const __nv_bfloat16* a_src[4];
  bool a_valid[4];
  const int a_chunk = tid % 8;
#pragma unroll
  for (int i = 0; i < 4; ++i) {
    const int r = tid / 8 + 16 * i;
    const int64_t logical = row_begin + r;
    a_valid[i] = logical < row_end;
    const int64_t src_row = a_valid[i] ? (a.x_rows ? int64_t(a.x_rows[logical]) : logical) : 0;
    a_src[i] = a.x + src_row * K + a_chunk * 8;
  }
  // B: 2 chunks of 16 bytes: rows tid/4 + 32i, chunk tid%4.
  const int8_t* b_src[2];
  bool b_valid[2];
  const int b_chunk = tid % 4;
#pragma unroll
  for (int i = 0; i < 2; ++i) {
    const int r = tid / 4 + 32 * i;
    bool v;
    const int64_t wr = wrow_of(r, &v);
    b_valid[i] = v;
    b_src[i] = W + (v ? wr : 0) * K + b_chunk * 16;
  }

  auto load_a = [&](int stage, int64_t kt) {
    const int64_t k = kt * BK + a_chunk * 8;
#pragma unroll
    for (int i = 0; i < 4; ++i) {
      const int r = tid / 8 + 16 * i;
      const bool ok = a_valid[i] && k < K;
      cp_async16(As + stage * kASize + a_offset(r, a_chunk), ok ? a_src[i] + kt * BK : a.x, ok);
    }
  };
  int4 b_reg[2];
  auto load_b = [&](int64_t kt) {
    const int64_t k = kt * BK + b_chunk * 16;
#pragma unroll
    for (int i = 0; i < 2; ++i)
      b_reg[i] = (b_valid[i] && k < K) ? ld_stream(b_src[i] + kt * BK) : make_int4(0, 0, 0, 0);
  };
  auto store_b = [&](int stage) {
#pragma unroll
    for (int i = 0; i < 2; ++i) {
      const int r = tid / 4 + 32 * i;
      const uint32_t w0 = uint32_t(b_reg[i].x), w1 = uint32_t(b_reg[i].y);
      const uint32_t w2 = uint32_t(b_reg[i].z), w3 = uint32_t(b_reg[i].w);
      uint4 v;
      v.x = __byte_perm(w0, w2, 0x5410);  // k 0, 1, 8, 9
      v.y = __byte_perm(w0, w2, 0x7632);  // k 2, 3, 10, 11
      v.z = __byte_perm(w1, w3, 0x5410);  // k 4, 5, 12, 13
      v.w = __byte_perm(w1, w3, 0x7632);  // k 6, 7, 14, 15
      *reinterpret_cast<uint4*>(Bs + stage * kBSize + b_offset(r, b_chunk)) = v;
    }
  };

  float acc[2][4][4];
#pragma unroll
  for (int mi = 0; mi < 2; ++mi)
#pragma unroll
    for (int nj = 0; nj < 4; ++nj)
#pragma unroll
      for (int c = 0; c < 4; ++c) acc[mi][nj][c] = 0.0f;

  auto compute = [&](int stage) {
    const unsigned char* A = As + stage * kASize;
    const unsigned char* B = Bs + stage * kBSize;
#pragma unroll
    for (int kk = 0; kk < BK / 16; ++kk) {
      uint32_t af[2][4];
#pragma unroll
      for (int mi = 0; mi < 2; ++mi) {
        const int r = warp_m * 32 + mi * 16 + (lane % 16);
        ldmatrix_x4(af[mi], A + a_offset(r, kk * 2 + lane / 16));
      }
#pragma unroll
      for (int nj = 0; nj < 4; ++nj) {
        const int r = warp_n * 32 + nj * 8 + g;
        const uint32_t w = *reinterpret_cast<const uint32_t*>(B + b_offset(r, kk) + q * 4);
        uint32_t b0, b1;
        i8x4_to_bf16x2(w, &b0, &b1);
#pragma unroll
        for (int mi = 0; mi < 2; ++mi) mma_bf16(acc[mi][nj], af[mi], b0, b1);
      }
    }
  };

  // ---- double-buffered main loop: A through cp.async, B through registers (permuted)
  if (kt_begin < kt_end) {
    load_a(0, kt_begin);
    cp_async_commit();
    load_b(kt_begin);
    store_b(0);
    cp_async_wait_all();
    __syncthreads();
    for (int64_t kt = kt_begin; kt < kt_end; ++kt) {
      const int cur = int((kt - kt_begin) & 1), nxt = cur ^ 1;
      const bool more = kt + 1 < kt_end;
      if (more) {
        load_a(nxt, kt + 1);
        cp_async_commit();
        load_b(kt + 1);
      }
      compute(cur);
      if (more) store_b(nxt);
      cp_async_wait_all();
      __syncthreads();
    }
  }

  // ---- epilogue. Fragment (mi, nj, c): row warp_m*32 + mi*16 + g + 8*(c/2),
  //      column warp_n*32 + nj*8 + 2q + (c%2).
  if constexpr (kSplit) {
    float* part = p.partial + int64_t(blockIdx.z) * a.rows_total * p.wrows;
#pragma unroll
    for (int mi = 0; mi < 2; ++mi)
#pragma unroll
      for (int nj = 0; nj < 4; ++nj)
#pragma unroll
        for (int h = 0; h < 2; ++h) {
          const int64_t row = row_begin + warp_m * 32 + mi * 16 + g + 8 * h;
          if (row >= row_end) continue;
#pragma unroll
          for (int c = 0; c < 2; ++c) {
            bool v;
            const int64_t wr = wrow_of(warp_n * 32 + nj * 8 + 2 * q + c, &v);
            if (v) part[row * p.wrows + wr] = acc[mi][nj][2 * h + c];
          }
        }
    return;
  }
  float* Cs = reinterpret_cast<float*>(smem);  // the pipeline buffers are free now
#pragma unroll
  for (int mi = 0; mi < 2; ++mi)
#pragma unroll
    for (int nj = 0; nj < 4; ++nj)
#pragma unroll
      for (int c = 0; c < 4; ++c) {
        const int r = warp_m * 32 + mi * 16 + g + 8 * (c / 2);
        const int j = warp_n * 32 + nj * 8 + 2 * q + (c % 2);
        bool v;
        const int64_t wr = wrow_of(j, &v);
        Cs[r * kCStride + j] = v ? acc[mi][nj][c] * S[wr] : 0.0f;
      }
  __syncthreads();
  constexpr int kCols = kGated ? kHalf : BN;
  for (int i = tid; i < BM * kCols; i += kThreads) {
    const int r = i / kCols, j = i % kCols;
    const int64_t row = row_begin + r, n = n0 + j;
    if (row >= row_end || n >= N) continue;
    float v = Cs[r * kCStride + j];
    if constexpr (kGated) v = silu_f32(v) * Cs[r * kCStride + kHalf + j];
    a.out[row * N + n] = __float2bfloat16(v);
  }
}

// Sums the split partials in split order, applies the row scales (and the gate).
template <bool kGated, bool kGrouped>
__global__ void reduce_kernel(Params p, int split) {
  const MmaGemmArgs& a = p.a;
  const int64_t N = a.N, total = a.rows_total * N;
  for (int64_t i = int64_t(blockIdx.x) * blockDim.x + threadIdx.x; i < total;
       i += int64_t(gridDim.x) * blockDim.x) {
    const int64_t row = i / N, n = i - row * N;
    const float* s;
    if constexpr (kGrouped) {
      // The expert owning this row: offsets are ascending, E is small.
      int e = 0;
      while (a.offsets[e + 1] <= row) ++e;
      s = a.scales[e];
    } else {
      s = a.scale;
    }
    float x = 0.0f, y = 0.0f;
    for (int z = 0; z < split; ++z) {
      const float* part = p.partial + int64_t(z) * a.rows_total * p.wrows + row * p.wrows;
      x += part[n];
      if constexpr (kGated) y += part[N + n];
    }
    x *= s[n];
    if constexpr (kGated) x = silu_f32(x) * (y * s[N + n]);
    a.out[i] = __float2bfloat16(x);
  }
}

__global__ void tile_list_kernel(const int32_t* offsets, int64_t E, int32_t* tile_expert,
                                 int32_t* tile_row0, int32_t* tile_count) {
  if (threadIdx.x != 0 || blockIdx.x != 0) return;
  int32_t t = 0;
  for (int64_t e = 0; e < E; ++e)
    for (int32_t r = offsets[e]; r < offsets[e + 1]; r += BM) {
      tile_expert[t] = int32_t(e);
      tile_row0[t] = r;
      ++t;
    }
  *tile_count = t;
}

template <bool kGated, bool kGrouped>
void launch(const Params& p, int split, dim3 grid, cudaStream_t s) {
  if (split > 1) {
    mma_kernel<kGated, kGrouped, true><<<grid, kThreads, 0, s>>>(p);
    MMX_CUDA_CHECK_LAUNCH("w8a16 mma kernel launch");
    const int64_t total = p.a.rows_total * p.a.N;
    reduce_kernel<kGated, kGrouped><<<grid_for(total, 256), 256, 0, s>>>(p, split);
    MMX_CUDA_CHECK_LAUNCH("w8a16 mma reduce kernel launch");
  } else {
    mma_kernel<kGated, kGrouped, false><<<grid, kThreads, 0, s>>>(p);
    MMX_CUDA_CHECK_LAUNCH("w8a16 mma kernel launch");
  }
}

int64_t n_tiles(const MmaGemmArgs& a) { return ceil_div(a.N, a.gated ? BN / 2 : BN); }
int64_t m_tiles(const MmaGemmArgs& a) { return a.weights ? a.max_tiles : ceil_div(a.M, BM); }

}  // namespace

size_t w8a16_mma_workspace(const MmaGemmArgs& a, int sm_count, int* split) {
  const int64_t blocks = n_tiles(a) * m_tiles(a);
  const int64_t k_tiles = ceil_div(a.K, BK);
  // Aim for about four blocks per SM; each split keeps at least 4 k tiles of work.
  int64_t s = ceil_div(int64_t(4) * std::max(sm_count, 1), std::max<int64_t>(blocks, 1));
  s = std::min<int64_t>({s, 8, std::max<int64_t>(1, k_tiles / 4)});
  const int64_t rows = a.weights ? a.rows_total : a.M;
  const int64_t wrows = a.gated ? 2 * a.N : a.N;
  // Partials beyond 64 MiB cost more than the idle SMs they would feed.
  while (s > 1 && size_t(s) * size_t(rows) * size_t(wrows) * 4 > (size_t(64) << 20)) --s;
  *split = int(std::max<int64_t>(s, 1));
  return *split > 1 ? size_t(*split) * size_t(rows) * size_t(wrows) * 4 : 0;
}

void w8a16_mma(const MmaGemmArgs& a, int split, float* workspace, cudaStream_t stream) {
  MMX_CHECK(w8a16_mma_supported(a.K) && aligned16(a.x), Code::Internal,
            "w8a16_mma: K must be a multiple of 16 (got " + std::to_string(a.K) + ")");
  const bool grouped = a.weights != nullptr;
  MMX_CHECK(grouped ? (a.scales && a.offsets && a.tile_expert && a.tile_row0 && a.tile_count)
                    : (a.w && a.scale && aligned16(a.w)),
            Code::Internal, "w8a16_mma: incomplete arguments");
  MMX_CHECK(split == 1 || workspace, Code::Internal, "w8a16_mma: split-K needs a workspace");
  if (a.N <= 0 || (grouped ? a.max_tiles <= 0 : a.M <= 0)) return;
  Params p;
  p.a = a;
  if (!grouped) p.a.rows_total = a.M;
  p.wrows = a.gated ? 2 * a.N : a.N;
  const int64_t k_tiles = ceil_div(a.K, BK);
  p.k_tiles_per_split = ceil_div(k_tiles, split);
  const int z = int(ceil_div(k_tiles, p.k_tiles_per_split));  // splits that have work
  p.partial = workspace;
  const dim3 grid(unsigned(n_tiles(a)), unsigned(m_tiles(a)), unsigned(z));
  if (a.gated)
    grouped ? launch<true, true>(p, z, grid, stream) : launch<true, false>(p, z, grid, stream);
  else
    grouped ? launch<false, true>(p, z, grid, stream) : launch<false, false>(p, z, grid, stream);
}

void moe_tile_list(const int32_t* offsets, int64_t E, int32_t* tile_expert, int32_t* tile_row0,
                   int32_t* tile_count, cudaStream_t stream) {
  tile_list_kernel<<<1, 32, 0, stream>>>(offsets, E, tile_expert, tile_row0, tile_count);
  MMX_CUDA_CHECK_LAUNCH("MoE tile list kernel launch");
}

}  // namespace mmx::cuda
