#include "backend/cuda/cuda_linear.h"

#include <algorithm>

#include "core/error.h"
#include "kernels/cuda_check.h"
#include "kernels/quantize.h"
#include "kernels/w8a16_mma.h"

namespace mmx::cuda {

int64_t LinearRunner::dequant_block_rows(int64_t rows, int64_t cols) {
  constexpr int64_t kBlockBytes = int64_t(24) << 20;
  int64_t r = kBlockBytes / (2 * std::max<int64_t>(cols, 1));
  r = std::max<int64_t>(128, r / 128 * 128);  // whole GEMM tiles per block
  return std::min(r, rows);
}

void* LinearRunner::buffer(DeviceBuffer& b, size_t bytes, const char* what, cudaStream_t stream) {
  if (b.size() < bytes) {
    if (capturing(stream)) {
      retired_.push_back(std::move(b));  // recorded kernels read it: kept until a later call
    } else {
      // Kernels queued earlier may still use the old buffer.
      MMX_CUDA(cudaStreamSynchronize(stream));
      retired_.clear();
    }
    b = DeviceBuffer();
    b = DeviceBuffer(budget_, bytes, what);
  }
  return b.get();
}

void LinearRunner::run(const __nv_bfloat16* x, int64_t M, const DeviceMatrix& w,
                       __nv_bfloat16* out, cudaStream_t stream, Path path) {
  if (M <= 0 || w.rows <= 0) return;
  const int64_t N = w.rows, K = w.cols;
  const bool int8 = w.dtype == DType::I8;
  if (path == Path::Auto) {
    if (M <= std::min<int64_t>(gemv_max_rows, kGemvMaxRows))
      path = Path::Gemv;
    else if (int8 && M <= mma_max_rows)
      path = Path::Mma;
    else
      path = Path::Gemm;
  }
  if (path == Path::Gemv && gemv_supported(w)) {
    gemv(x, M, w, out, stream);
    return;
  }
  if (path == Path::Mma && int8 && w8a16_mma_supported(K)) {
    MmaGemmArgs a;
    a.x = x;
    a.w = static_cast<const int8_t*>(w.data);
    a.scale = w.scale;
    a.M = M;
    a.N = N;
    a.K = K;
    a.out = out;
    int split = 1;
    const size_t ws = w8a16_mma_workspace(a, sm_count_, &split);
    float* part = ws ? static_cast<float*>(buffer(partial_, ws, "split-K partial sums", stream)) : nullptr;
    w8a16_mma(a, split, part, stream);
    return;
  }
  if (!int8) {
    lt_.matmul(x, K, w.data, K, out, N, false, M, N, K, stream);
    return;
  }
  MMX_CHECK(w.scale, Code::Internal, "linear: int8 weight without scales");
  const int64_t block = dequant_block_rows(N, K);
  auto* buf = static_cast<__nv_bfloat16*>(buffer(tile_, size_t(block * K) * 2, "dequantised weight block", stream));
  const int8_t* q = static_cast<const int8_t*>(w.data);
  for (int64_t n0 = 0; n0 < N; n0 += block) {
    const int64_t nb = std::min(block, N - n0);
    dequantize_int8_to_bf16(q + n0 * K, w.scale + n0, nb, K, buf, stream);
    lt_.matmul(x, K, buf, K, out + n0, N, false, M, nb, K, stream);
  }
}

}  // namespace mmx::cuda
