// W8A16 matrix products on the tensor cores (mma.sync m16n8k16 bf16, sm_80+) for the middle
// range of M: more rows than the GEMV keeps in registers, too few for dequantise + cuBLASLt to
// pay for its extra bytes. int8 weights are streamed once per 64-row tile of activations and
// converted to bf16 in registers; fp32 accumulation; bf16 out.
//   out[m, n] = sum_k x[m, k] * W[n, k] * scale[n]
// Dense, or grouped over MoE experts through a device tile list (no host synchronisation);
// optionally gated (W is [2N, K], W1 rows then W3 rows; out = SiLU(x W1^T) * (x W3^T)).
// When the grid is too small to fill the GPU, K is split across blocks and the partial sums
// are added in a fixed order by a second kernel (deterministic; no float atomics).
#pragma once
#include <cuda_bf16.h>
#include <cuda_runtime.h>

#include <cstddef>
#include <cstdint>

namespace mmx::cuda {

constexpr int kMmaTileRows = 64;  // activation rows per tile (MoE tile lists use it)

struct MmaGemmArgs {
  const __nv_bfloat16* x = nullptr;  // [*, K] activations
  const int32_t* x_rows = nullptr;   // logical row i reads x row x_rows[i] (null: row i)
  // Dense: one weight and M rows.
  const int8_t* w = nullptr;
  const float* scale = nullptr;
  int64_t M = 0;
  // Grouped: expert e's logical rows [offsets[e], offsets[e+1]); tile t covers rows
  // [tile_row0[t], +64) of expert tile_expert[t], t < *tile_count <= max_tiles.
  const int32_t* offsets = nullptr;
  const int32_t* tile_expert = nullptr;
  const int32_t* tile_row0 = nullptr;
  const int32_t* tile_count = nullptr;
  int64_t max_tiles = 0;
  int64_t rows_total = 0;  // logical rows (size of out / partials)
  const void* const* weights = nullptr;
  const float* const* scales = nullptr;
  int64_t N = 0, K = 0;  // output features, reduction length (K % 16 == 0)
  bool gated = false;
  __nv_bfloat16* out = nullptr;  // [rows, N]
};

// True when the kernel handles this K (16-byte weight rows).
inline bool w8a16_mma_supported(int64_t K) { return K > 0 && K % 16 == 0; }

// Bytes of fp32 partial sums a launch needs with split-K (0 without); `sm_count` sizes the
// grid. The caller passes a buffer of at least that size to w8a16_mma.
size_t w8a16_mma_workspace(const MmaGemmArgs& a, int sm_count, int* split);

void w8a16_mma(const MmaGemmArgs& a, int split, float* workspace, cudaStream_t stream);

// Tile list of the grouped form: for each expert with rows, ceil(rows / 64) tiles.
// max_tiles (grid bound) = ceil(total_rows / 64) + experts.
void moe_tile_list(const int32_t* offsets, int64_t E, int32_t* tile_expert, int32_t* tile_row0,
                   int32_t* tile_count, cudaStream_t stream);

}  // namespace mmx::cuda
