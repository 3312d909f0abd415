// Linear layers with int8 (W8A16: per-output-row symmetric int8 + fp32 row scale) or bf16
// weights and bf16 activations, fp32 accumulation, bf16 out:
//   out[m, n] = sum_k x[m, k] * W[n, k] * scale[n]
// Small M (decode): a GEMV-style kernel that streams each weight byte once with 16-byte loads
// and keeps up to kGemvMaxRows activation rows in flight. Large M goes through cuBLASLt on a
// dequantised bf16 copy (see src/backend/cuda/linear.h); the grouped form serves the MoE
// experts with per-expert row ranges that stay on the device (no host synchronisation).
#pragma once
#include <cuda_bf16.h>
#include <cuda_runtime.h>

#include <cstdint>

#include "core/dtype.h"

namespace mmx::cuda {

// A weight matrix on the device, row-major [rows, cols]: I8 with scale[rows], or BF16.
struct DeviceMatrix {
  DType dtype = DType::BF16;
  int64_t rows = 0, cols = 0;
  const void* data = nullptr;
  const float* scale = nullptr;  // I8 only
};

// The GEMV kernels keep this many activation rows in registers per pass; more rows are
// processed in passes of this size (re-reading weights from L2).
constexpr int kGemvMaxRows = 16;

// True when the GEMV kernels can run on this shape (16-byte rows: cols % 16 == 0).
bool gemv_supported(const DeviceMatrix& w);

// Dense: out [M, N] (row stride N = w.rows) = x [M, K] (row stride K = w.cols) W^T, any M
// (cost grows with ceil(M / 16) passes over the weights; meant for M <= 16).
void gemv(const __nv_bfloat16* x, int64_t M, const DeviceMatrix& w, __nv_bfloat16* out,
          cudaStream_t stream);

// Grouped over experts. Expert e owns the logical rows [offsets[e], offsets[e+1]); the
// active experts are active[0 .. *active_count) (all device arrays). Logical row i reads
// activation row x_rows ? x_rows[i] : i of x (row stride K) and writes row i of out.
//  - gated = false: W_e is [N, K]; out row stride N.
//  - gated = true:  W_e is [2N, K] (W1 rows then W3 rows); out = SiLU(x W1^T) * (x W3^T),
//    row stride N. This is the SwiGLU front half of an expert.
// weights[e] / scales[e] are device arrays of per-expert pointers (scales only for I8).
// max_active bounds *active_count (grid size); rows_hint (rows per expert expected) picks
// the register tile.
struct GroupedGemvArgs {
  const __nv_bfloat16* x = nullptr;
  const int32_t* x_rows = nullptr;
  const int32_t* offsets = nullptr;
  const int32_t* active = nullptr;
  const int32_t* active_count = nullptr;
  const void* const* weights = nullptr;
  const float* const* scales = nullptr;
  DType dtype = DType::I8;
  int64_t N = 0, K = 0;
  bool gated = false;
  int max_active = 0;
  int rows_hint = 1;
  __nv_bfloat16* out = nullptr;
};
void grouped_gemv(const GroupedGemvArgs& args, cudaStream_t stream);

}  // namespace mmx::cuda
