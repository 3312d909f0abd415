// CudaBackend's MoE sublayer (model-spec §7): fp32 router and top-k on the device, a stable
// counting sort of the (token, expert) assignments, the experts' SwiGLU over their gathered
// rows, and a deterministic weighted combine (each token sums its k expert outputs in a fixed
// order; no float atomics anywhere).
#include <algorithm>
#include <string>

#include "backend/cuda/cuda_backend.h"
#include "core/error.h"
#include "kernels/cuda_check.h"
#include "kernels/elementwise.h"
#include "kernels/moe.h"
#include "kernels/w8a16_mma.h"

namespace mmx::cuda {
namespace {

using bf16 = __nv_bfloat16;

template <typename T>
T* take(DeviceArena& arena, int64_t n) {
  return static_cast<T*>(arena.alloc(size_t(n) * sizeof(T)));
}

}  // namespace

void CudaBackend::moe(const LayerWeights& lw, Act x, Act out) {
  require_prepared("moe");
  make_current();
  const int64_t H = config_.hidden, E = config_.experts, k = config_.top_k;
  const int64_t F = config_.intermediate, T = x.rows, n = T * k;
  MMX_CHECK(x.cols == H && out.rows == T && out.cols == H, Code::InvalidArgument,
            "cuda backend: moe: input [" + std::to_string(x.rows) + ", " + std::to_string(x.cols) +
                "] and output [" + std::to_string(out.rows) + ", " + std::to_string(out.cols) +
                "] are not [T, hidden]");
  const MoeDeviceLayer& L = weights_->moe(layer_index(lw));
  if (T == 0) return;
  scratch_->reset(stream_);
  DeviceArena& s = *scratch_;
  MMX_CHECK(out.dtype == DType::BF16, Code::InvalidArgument,
            "cuda backend: moe: the output must be a bf16 activation (alloc())");
  const bf16* xp = bf16_input(x);  // the experts' input; the router reads x as it is
  overwritten(out);

  float* logits = take<float>(s, T * E);
  int32_t* topk_idx = take<int32_t>(s, n);
  float* topk_w = take<float>(s, n);
  int32_t* offsets = take<int32_t>(s, E + 1);
  int32_t* sorted_token = take<int32_t>(s, n);
  int32_t* slot = take<int32_t>(s, n);
  int32_t* active = take<int32_t>(s, E);
  int32_t* active_count = take<int32_t>(s, 1);
  bf16* ys = take<bf16>(s, n * H);  // expert outputs, in sorted (expert-major) order

  if (x.dtype == DType::F32)
    router_logits(static_cast<const float*>(x.data), L.router, T, H, E, logits, stream_);
  else
    router_logits(xp, L.router, T, H, E, logits, stream_);
  route_topk(logits, T, E, k, topk_idx, topk_w, stream_);
  moe_permute(topk_idx, n, k, E, offsets, sorted_token, slot, active, active_count, stream_);

  const bool kernels_ok = H % 16 == 0 && F % 16 == 0;  // 16-byte weight rows
  if (kernels_ok && T <= moe_gemv_max())
    moe_grouped_gemv(L, xp, T, offsets, sorted_token, active, active_count, ys);
  else if (kernels_ok && int8_ && T <= tuning_.moe_mma_max_tokens)
    moe_grouped_mma(L, xp, T, offsets, sorted_token, ys);
  else
    moe_expert_gemms(L, xp, T, offsets, sorted_token, ys);

  moe_combine(ys, slot, topk_w, T, k, H, static_cast<bf16*>(out.data), stream_);
}

// Small batches: two launches cover every active expert; the expert row ranges never leave
// the device, so the step needs no host synchronisation.
void CudaBackend::moe_grouped_gemv(const MoeDeviceLayer& L, const bf16* x, int64_t T,
                                   const int32_t* offsets, const int32_t* sorted_token,
                                   const int32_t* active, const int32_t* active_count, bf16* ys) {
  const int64_t H = config_.hidden, E = config_.experts, k = config_.top_k;
  const int64_t F = config_.intermediate, n = T * k;
  bf16* g = take<bf16>(*scratch_, n * F);
  const int max_active = int(std::min(E, n));
  // Rows per active expert to tile for: twice the mean, at most T (a token picks an expert
  // once); experts with more rows take extra passes.
  const int64_t mean = (n + max_active - 1) / max_active;
  const int rows_hint = int(std::max<int64_t>(1, std::min(T, 2 * mean)));

  GroupedGemvArgs up;
  up.x = x;
  up.x_rows = sorted_token;  // gather the tokens' rows on the fly
  up.offsets = offsets;
  up.active = active;
  up.active_count = active_count;
  up.weights = L.w13_data;
  up.scales = L.w13_scale;
  up.dtype = int8_ ? DType::I8 : DType::BF16;
  up.N = F;
  up.K = H;
  up.gated = true;
  up.max_active = max_active;
  up.rows_hint = rows_hint;
  up.out = g;
  grouped_gemv(up, stream_);

  GroupedGemvArgs down = up;
  down.x = g;
  down.x_rows = nullptr;
  down.weights = L.w2_data;
  down.scales = L.w2_scale;
  down.N = H;
  down.K = F;
  down.gated = false;
  down.out = ys;
  grouped_gemv(down, stream_);
}

// Middle batches (int8 weights): the tensor-core kernel over a device-built tile list (64 rows
// of one expert per tile); still no host synchronisation.
void CudaBackend::moe_grouped_mma(const MoeDeviceLayer& L, const bf16* x, int64_t T,
                                  const int32_t* offsets, const int32_t* sorted_token, bf16* ys) {
  const int64_t H = config_.hidden, E = config_.experts, k = config_.top_k;
  const int64_t F = config_.intermediate, n = T * k;
  const int64_t max_tiles = (n + kMmaTileRows - 1) / kMmaTileRows + std::min(E, n);
  int32_t* tile_expert = take<int32_t>(*scratch_, max_tiles);
  int32_t* tile_row0 = take<int32_t>(*scratch_, max_tiles);
  int32_t* tile_count = take<int32_t>(*scratch_, 1);
  bf16* g = take<bf16>(*scratch_, n * F);
  moe_tile_list(offsets, E, tile_expert, tile_row0, tile_count, stream_);

  MmaGemmArgs up;
  up.x = x;
  up.x_rows = sorted_token;
  up.offsets = offsets;
  up.tile_expert = tile_expert;
  up.tile_row0 = tile_row0;
  up.tile_count = tile_count;
  up.max_tiles = max_tiles;
  up.rows_total = n;
  up.weights = L.w13_data;
  up.scales = L.w13_scale;
  up.N = F;
  up.K = H;
  up.gated = true;
  up.out = g;
  MmaGemmArgs down = up;
  down.x = g;
  down.x_rows = nullptr;
  down.weights = L.w2_data;
  down.scales = L.w2_scale;
  down.N = H;
  down.K = F;
  down.gated = false;
  down.out = ys;
  for (const MmaGemmArgs* a : {&up, &down}) {
    int split = 1;
    const size_t ws = w8a16_mma_workspace(*a, sm_count_, &split);
    float* part = ws ? static_cast<float*>(scratch_->alloc(ws)) : nullptr;
    w8a16_mma(*a, split, part, stream_);
  }
}

// Large batches: the expert row counts come to the host (one synchronisation per layer) and
// each expert with rows runs dense products over its gathered rows.
void CudaBackend::moe_expert_gemms(const MoeDeviceLayer& L, const bf16* x, int64_t T,
                                   const int32_t* offsets, const int32_t* sorted_token, bf16* ys) {
  const int64_t H = config_.hidden, E = config_.experts, k = config_.top_k;
  const int64_t F = config_.intermediate, n = T * k;
  std::vector<int32_t> off(size_t(E + 1));
  MMX_CUDA(cudaMemcpyAsync(off.data(), offsets, size_t(E + 1) * 4, cudaMemcpyDeviceToHost, stream_));
  MMX_CUDA(cudaStreamSynchronize(stream_));
  MMX_CHECK(off[size_t(E)] == n, Code::Internal, "cuda backend: moe: routed row count mismatch");
  int64_t max_rows = 0;
  for (int64_t e = 0; e < E; ++e) max_rows = std::max<int64_t>(max_rows, off[size_t(e + 1)] - off[size_t(e)]);

  bf16* xs = take<bf16>(*scratch_, n * H);
  bf16* g = take<bf16>(*scratch_, n * F);
  bf16* h13 = take<bf16>(*scratch_, max_rows * 2 * F);
  gather_rows(x, T, sorted_token, n, H, xs, stream_);
  for (int64_t e = 0; e < E; ++e) {
    const int64_t r0 = off[size_t(e)], rows = off[size_t(e + 1)] - r0;
    if (rows == 0) continue;
    linear_->run(xs + r0 * H, rows, L.w13[size_t(e)], h13, stream_);
    silu_mul_rows(h13, rows, F, g + r0 * F, stream_);
    linear_->run(g + r0 * F, rows, L.w2[size_t(e)], ys + r0 * H, stream_);
  }
}

}  // namespace mmx::cuda
