// Picks how one linear layer runs on the device:
//   M <= gemv_max_rows                 the GEMV kernel (int8 or bf16 weights streamed once)
//   int8 weights, M <= mma_max_rows    the W8A16 tensor-core kernel (weights streamed once per
//                                      64 rows, converted in registers)
//   bf16 weights, larger M             cuBLASLt bf16 GEMM, fp32 compute
//   int8 weights, larger M             the weight is dequantised to bf16 one block of rows at a
//                                      time (a block small enough to stay in L2) and each block
//                                      multiplied by cuBLASLt into its output columns
#pragma once
#include <cuda_bf16.h>
#include <cuda_runtime.h>

#include <vector>

#include "backend/cuda/device_memory.h"
#include "backend/cuda/lt_gemm.h"
#include "kernels/w8a16_gemm.h"

namespace mmx::cuda {

class LinearRunner {
 public:
  enum class Path { Auto, Gemv, Mma, Gemm };

  LinearRunner(LtGemm& lt, MemoryBudget& budget, int sm_count)
      : lt_(lt), budget_(budget), sm_count_(sm_count) {}
  // out [M, w.rows] (row stride w.rows) = x [M, w.cols] (row stride w.cols) · W^T.
  // All work is queued on `stream`, which must be the stream of every call (the scratch
  // buffers are reused in stream order). `path` forces a kernel (tests, benchmarks); a path
  // that cannot run this shape falls back to the GEMM.
  void run(const __nv_bfloat16* x, int64_t M, const DeviceMatrix& w, __nv_bfloat16* out,
           cudaStream_t stream, Path path = Path::Auto);

  // Largest M the GEMV kernel takes in Path::Auto (at most kGemvMaxRows). Its FMA work and
  // activation reads grow with M while the tensor-core kernel's stay hidden behind the weight
  // stream: on the H100 at M=16 the GEMV took 350 µs for qkv against 128 µs for the tensor-
  // core kernel even at M=64; at M=4 the GEMV's 117 µs is about the tensor-core kernel's.
  int64_t gemv_max_rows = 4;
  // Largest M the W8A16 tensor-core kernel takes in Path::Auto.
  int64_t mma_max_rows = 256;

  // Rows of a dequantised bf16 weight block per cuBLASLt call (about 24 MiB: fits in L2).
  static int64_t dequant_block_rows(int64_t rows, int64_t cols);

 private:
  void* buffer(DeviceBuffer& b, size_t bytes, const char* what, cudaStream_t stream);

  LtGemm& lt_;
  MemoryBudget& budget_;
  int sm_count_;
  DeviceBuffer tile_;     // dequantised weight block, grown on demand
  DeviceBuffer partial_;  // split-K partial sums of the tensor-core kernel
  std::vector<DeviceBuffer> retired_;  // outgrown during a stream capture
};

}  // namespace mmx::cuda
