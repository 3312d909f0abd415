// cuBLASLt bf16 matrix products for the CUDA backend, in the row-major terms the backend
// uses: out[M, N] = x[M, K] · W[N, K]^T, bf16 inputs, fp32 compute, bf16 or fp32 output.
// Plans (descriptors + the heuristic's algorithm) are cached per shape, alignment and output
// type, so steady-state calls cost one cublasLtMatmul.
#pragma once
#include <cublasLt.h>
#include <cuda_runtime.h>

#include <cstdint>
#include <map>
#include <memory>
#include <tuple>

namespace mmx::cuda {

class LtGemm {
 public:
  // workspace: device memory the algorithms may use (owned by the caller).
  LtGemm(void* workspace, size_t workspace_bytes);
  ~LtGemm();
  LtGemm(const LtGemm&) = delete;
  LtGemm& operator=(const LtGemm&) = delete;

  // x: [M, K] row stride ldx; w: [N, K] row stride ldw; out: [M, N] row stride ldo, bf16
  // (out_f32 false) or fp32. All leading dimensions in elements.
  void matmul(const void* x, int64_t ldx, const void* w, int64_t ldw, void* out, int64_t ldo,
              bool out_f32, int64_t M, int64_t N, int64_t K, cudaStream_t stream);

 private:
  struct Plan;
  using Key = std::tuple<int64_t, int64_t, int64_t, int64_t, int64_t, int64_t, bool, int, int, int>;
  Plan& plan(const Key& key);

  cublasLtHandle_t handle_ = nullptr;
  void* workspace_ = nullptr;
  size_t workspace_bytes_ = 0;
  std::map<Key, std::unique_ptr<Plan>> plans_;
};

}  // namespace mmx::cuda
