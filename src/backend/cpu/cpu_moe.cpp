// CpuBackend's MoE sublayer (model-spec §7): fp32 router softmax, top-k with renormalised
// weights, then per expert one gathered SwiGLU w2(silu(w1 x) * (w3 x)) over its tokens.
// Sharded, the router still sees all experts but only the rank's experts (and its slice of
// their FFN rows) run: the output is this rank's partial sum, all-reduced by the forward pass.
#include <algorithm>
#include <cmath>
#include <cstring>
#include <functional>
#include <limits>
#include <string>

#include "backend/cpu/cpu_backend.h"
#include "core/error.h"

namespace mmx::cpu {

void CpuBackend::moe(const LayerWeights& lw, Act x, Act out) {
  require_prepared("moe");
  const int64_t H = config_.hidden, E = config_.experts, K = config_.top_k, F = plan_.ffn;
  const int64_t T = x.rows;
  MMX_CHECK(x.cols == H && out.rows == T && out.cols == H && x.data != out.data, Code::InvalidArgument,
            "cpu backend: moe: input and output must be distinct [T, hidden] activations");
  MMX_CHECK(int64_t(lw.w1.size()) == E && int64_t(lw.w2.size()) == E && int64_t(lw.w3.size()) == E,
            Code::InvalidArgument, "cpu backend: moe: layer weights do not hold one expert per config expert");
  const float* in = static_cast<const float*>(x.data);
  float* o = static_cast<float*>(out.data);

  std::vector<float> router(static_cast<size_t>(T * E));
  gemm_nt(pool_, T, E, H, in, H, weight(lw.router), H, router.data(), E);
  std::vector<int32_t> chosen(static_cast<size_t>(T * K));
  std::vector<float> chosen_weight(static_cast<size_t>(T * K));
  // Routing one token costs a few operations per expert (softmax, partial sort).
  for_rows(T, E * 8, [&](int64_t b, int64_t e) {
    for (int64_t t = b; t < e; ++t)
      route_top_k(router.data() + t * E, E, K, chosen.data() + t * K, chosen_weight.data() + t * K);
  });
  if (route_observer) {  // test-only, see cpu_backend.h
    std::vector<double> p(static_cast<size_t>(E));
    for (int64_t t = 0; t < T; ++t) {
      float margin = std::numeric_limits<float>::infinity();
      if (K < E) {
        const float* l = router.data() + t * E;
        const float mx = *std::max_element(l, l + E);
        double sum = 0.0;
        for (int64_t e = 0; e < E; ++e) {
          p[size_t(e)] = std::exp(double(l[e]) - double(mx));
          sum += p[size_t(e)];
        }
        // p[K] becomes the (K+1)-th largest, p[0..K-1] the top K.
        std::nth_element(p.begin(), p.begin() + K, p.end(), std::greater<double>());
        margin = float((*std::min_element(p.begin(), p.begin() + K) - p[size_t(K)]) / sum);
      }
      route_observer(t, margin);
    }
  }

  // Tokens of each expert, in token order.
  std::vector<std::vector<int64_t>> slots(static_cast<size_t>(E));  // index into chosen (t*K + k)
  for (int64_t i = 0; i < T * K; ++i) slots[size_t(chosen[size_t(i)])].push_back(i);

  std::memset(o, 0, size_t(T * H) * sizeof(float));
  std::vector<float> xs, gate, up, y;
  // Experts in ascending order, each adding into the output: the same summation order as the
  // reference implementation, so routing ties aside the sums match it bit for bit in fp32.
  for (int64_t e = plan_.expert0; e < plan_.expert0 + plan_.experts; ++e) {
    const auto& mine = slots[size_t(e)];
    const int64_t n = int64_t(mine.size());
    if (n == 0) continue;
    xs.resize(size_t(n * H));
    gate.resize(size_t(n * F));
    up.resize(size_t(n * F));
    y.resize(size_t(n * H));
    for (int64_t r = 0; r < n; ++r)
      std::memcpy(xs.data() + r * H, in + (mine[size_t(r)] / K) * H, size_t(H) * sizeof(float));
    gemm_nt(pool_, n, F, H, xs.data(), H, weight(lw.w1[size_t(e)]), H, gate.data(), F);
    gemm_nt(pool_, n, F, H, xs.data(), H, weight(lw.w3[size_t(e)]), H, up.data(), F);
    for_rows(n, F, [&](int64_t b, int64_t end) {
      for (int64_t i = b * F; i < end * F; ++i) gate[size_t(i)] = cpu::silu(gate[size_t(i)]) * up[size_t(i)];
    });
    gemm_nt(pool_, n, H, F, gate.data(), F, weight(lw.w2[size_t(e)]), F, y.data(), H);
    // One token appears at most once per expert, so rows can be added in parallel.
    for_rows(n, H, [&](int64_t b, int64_t end) {
      for (int64_t r = b; r < end; ++r) {
        const int64_t slot = mine[size_t(r)];
        const float w = chosen_weight[size_t(slot)];
        float* dst = o + (slot / K) * H;
        const float* src = y.data() + r * H;
        for (int64_t i = 0; i < H; ++i) dst[i] += src[i] * w;
      }
    });
  }
}

}  // namespace mmx::cpu
