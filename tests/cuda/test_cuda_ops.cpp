// Every op of the CUDA backend against its CPU twin (the fp32 reference) on fresh random
// inputs and random models; outputs are poisoned (NaN) before each run so an unwritten element
// fails. Bound: max |gpu - cpu| / max |cpu| <= 1e-2 where both use identical weights (bf16 and
// pre-quantised int8 models); int8 quantisation at prepare adds its own rounding (2e-2, as a
// norm ratio). Skips without a GPU.
#include <gtest/gtest.h>
#include <cuda_runtime.h>

#include <algorithm>
#include <cmath>
#include <limits>
#include <numeric>
#include <string>
#include <vector>

#include "backend/cuda/cuda_backend.h"
#include "backend/cuda/cuda_linear.h"
#include "core/error.h"
#include "cuda/cuda_test_helpers.h"
#include "kernels/quant_rule.h"
#include "kernels/quantize.h"
#include "model/forward.h"
#include "test_util.h"

using cuda_test::make_backend;
using cuda_test::random_bf16_values;
using mmx::Act;
using mmx::DType;

namespace {

const float kNaN = std::numeric_limits<float>::quiet_NaN();

// A random model prepared on both backends, with helpers for paired activations.
struct Twin {
  std::shared_ptr<mmx::Model> model;
  std::unique_ptr<mmx::Backend> cpu, gpu;

  Twin(const mmx::ModelConfig& c, DType model_dtype, const std::string& gpu_weights,
       uint64_t seed = 1234) {
    model = mmx::make_random_model(c, seed, model_dtype);
    cpu = make_backend("cpu");
    cpu->prepare(*model);
    gpu = make_backend("cuda", gpu_weights);
    gpu->prepare(*model);
    cpu->begin_step();
    gpu->begin_step();
  }
  const mmx::ModelConfig& config() const { return model->config(); }
  const mmx::LayerWeights& layer(int i) const { return model->weights().layers[size_t(i)]; }

  // Activations holding `values` on both backends.
  std::pair<Act, Act> input(int64_t rows, int64_t cols, const std::vector<float>& values) {
    Act c = cpu->alloc(rows, cols), g = gpu->alloc(rows, cols);
    cpu->upload(values.data(), c);
    gpu->upload(values.data(), g);
    return {c, g};
  }
  // Output activations; the device one is filled with NaN.
  std::pair<Act, Act> output(int64_t rows, int64_t cols) {
    Act c = cpu->alloc(rows, cols), g = gpu->alloc(rows, cols);
    std::vector<float> poison(size_t(rows * cols), kNaN);
    gpu->upload(poison.data(), g);
    return {c, g};
  }
  static std::vector<float> get(mmx::Backend& be, Act a) {
    std::vector<float> v(size_t(a.rows * a.cols));
    be.download(a, v.data());
    return v;
  }
  // Checks the device result against the CPU result of the same op.
  void expect_close(std::pair<Act, Act> out, double tol, const std::string& what) {
    const auto want = get(*cpu, out.first), got = get(*gpu, out.second);
    const double err = mmx_test::max_rel_error(got.data(), want.data(), want.size());
    EXPECT_LE(err, tol) << what << ": max-relative error " << err << "; "
                        << cuda_test::worst_diff(got, want, out.first.cols);
  }
};

struct Mode {
  DType model_dtype;
  const char* gpu_weights;
  const char* name;
};
// Identical weights on both sides: bf16 checkpoint on bf16 weights, int8 checkpoint as is.
const Mode kExactModes[] = {{DType::BF16, "bf16", "bf16"}, {DType::I8, "int8", "int8"}};

TEST(CudaOps, LinearMatchesCpuForEveryWeightAndBatchSize) {
  MMX_SKIP_WITHOUT_GPU();
  for (const Mode& mode : kExactModes) {
    Twin t(cuda_test::medium_config(), mode.model_dtype, mode.gpu_weights);
    const mmx::LayerWeights &l0 = t.layer(0), &l1 = t.layer(1);
    const mmx::WeightRef* weights[] = {&l0.qkv, &l0.out_gate, &l0.out_proj, &l0.w1[0], &l0.w3[5],
                                       &l0.w2[7], &l1.q,       &l1.k,        &l1.o};
    uint64_t seed = 1;
    for (const mmx::WeightRef* w : weights)
      for (int64_t M : {1, 2, 3, 5, 8, 16, 17, 64, 300}) {
        t.cpu->begin_step();
        t.gpu->begin_step();
        auto x = t.input(M, w->cols, random_bf16_values(size_t(M * w->cols), seed++));
        auto out = t.output(M, w->rows);
        t.cpu->linear(x.first, *w, out.first);
        t.gpu->linear(x.second, *w, out.second);
        t.expect_close(out, 1e-2, std::string(mode.name) + " " + w->name + " M=" + std::to_string(M));
      }
  }
}

TEST(CudaOps, LinearQuantisedAtPrepareStaysCloseToBf16) {
  MMX_SKIP_WITHOUT_GPU();
  Twin t(cuda_test::medium_config(), DType::BF16, "int8");
  const mmx::WeightRef& w = t.layer(0).qkv;
  for (int64_t M : {1, 7, 100}) {
    auto x = t.input(M, w.cols, random_bf16_values(size_t(M * w.cols), 77 + uint64_t(M)));
    auto out = t.output(M, w.rows);
    t.cpu->linear(x.first, w, out.first);
    t.gpu->linear(x.second, w, out.second);
    const auto want = Twin::get(*t.cpu, out.first), got = Twin::get(*t.gpu, out.second);
    EXPECT_LE(cuda_test::norm_rel_error(got, want), 2e-2) << "M=" << M;
  }
}

TEST(CudaOps, ElementwiseOpsMatchCpu) {
  MMX_SKIP_WITHOUT_GPU();
  Twin t(cuda_test::medium_config(), DType::BF16, "bf16");
  const int64_t H = t.config().hidden, D = t.config().heads * t.config().head_dim;
  uint64_t seed = 100;
  // Odd shapes exercise the scalar tails of the 8-wide kernels.
  for (auto [rows, cols] : {std::pair<int64_t, int64_t>{5, 37}, {4, 256}, {1, 8}, {33, 129}}) {
    const size_t n = size_t(rows * cols);
    {
      auto x = t.input(rows, cols, random_bf16_values(n, seed++, 6.0f));
      t.cpu->silu(x.first);
      t.gpu->silu(x.second);
      t.expect_close(x, 1e-2, "silu " + std::to_string(rows) + "x" + std::to_string(cols));
    }
    {
      auto g = t.input(rows, cols, random_bf16_values(n, seed++, 6.0f));
      auto x = t.input(rows, cols, random_bf16_values(n, seed++, 2.0f));
      t.cpu->sigmoid_mul(g.first, x.first);
      t.gpu->sigmoid_mul(g.second, x.second);
      t.expect_close(x, 1e-2, "sigmoid_mul");
    }
    {
      auto h = t.input(rows, cols, random_bf16_values(n, seed++));
      auto a = t.input(rows, cols, random_bf16_values(n, seed++));
      auto out = t.output(rows, cols);
      t.cpu->scale_add(h.first, 1.3, a.first, 0.7, out.first);
      t.gpu->scale_add(h.second, 1.3, a.second, 0.7, out.second);
      t.expect_close(out, 1e-2, "scale_add");
      // In place, as the forward pass uses it (out aliases a).
      t.cpu->scale_add(h.first, 3.5, a.first, 1.0, a.first);
      t.gpu->scale_add(h.second, 3.5, a.second, 1.0, a.second);
      t.expect_close(a, 1e-2, "scale_add in place");
    }
  }
  for (int64_t T : {1, 3, 40}) {
    auto x = t.input(T, H, random_bf16_values(size_t(T * H), seed++, 3.0f));
    auto out = t.output(T, H);
    t.cpu->rms_norm(x.first, t.layer(0).input_norm, 1e-5, out.first);
    t.gpu->rms_norm(x.second, t.layer(0).input_norm, 1e-5, out.second);
    t.expect_close(out, 1e-2, "rms_norm T=" + std::to_string(T));
    auto o = t.input(T, D, random_bf16_values(size_t(T * D), seed++, 0.5f));
    t.cpu->rms_norm(o.first, t.layer(0).attn_norm, 1e-6, o.first);  // in place
    t.gpu->rms_norm(o.second, t.layer(0).attn_norm, 1e-6, o.second);
    t.expect_close(o, 1e-2, "rms_norm in place T=" + std::to_string(T));
  }
}

// The residual stream (alloc_residual) is fp32 on the device: its ops keep fp32 exactly,
// and the products reading it (linear, MoE, logits) take its bf16 copy, which must follow
// every write to it.
TEST(CudaOps, ResidualStreamOpsMatchCpu) {
  MMX_SKIP_WITHOUT_GPU();
  mmx::ModelConfig c = cuda_test::medium_config();
  c.top_k = c.experts;  // no routing near-ties between the fp32 CPU and the bf16 experts' input
  Twin t(c, DType::BF16, "bf16");
  const int64_t H = t.config().hidden, T = 7;
  const size_t n = size_t(T * H);
  auto residual = [&](const std::vector<float>& v) {
    std::pair<Act, Act> a{t.cpu->alloc_residual(T, H), t.gpu->alloc_residual(T, H)};
    t.cpu->upload(v.data(), a.first);
    t.gpu->upload(v.data(), a.second);
    return a;
  };
  std::vector<float> xv(n);
  for (size_t i = 0; i < n; ++i) xv[i] = std::sin(0.37f * float(i)) * 3.0f + 1e-3f * float(i % 7);
  auto x = residual(xv);
  EXPECT_EQ(x.second.dtype, DType::F32);
  EXPECT_EQ(Twin::get(*t.gpu, x.second), xv) << "fp32 upload/download round trip";
  auto h = residual(std::vector<float>(n, kNaN));
  t.cpu->rms_norm(x.first, t.layer(0).input_norm, 1e-5, h.first);
  t.gpu->rms_norm(x.second, t.layer(0).input_norm, 1e-5, h.second);
  t.expect_close(h, 1e-5, "fp32 rms_norm");

  // Products read the bf16 copy written beside h ...
  const mmx::WeightRef& wq = t.layer(0).qkv.rows ? t.layer(0).qkv : t.layer(0).q;
  auto q = t.output(T, wq.rows);
  t.cpu->linear(h.first, wq, q.first);
  t.gpu->linear(h.second, wq, q.second);
  t.expect_close(q, 1e-2, "linear of the residual stream");
  auto m = t.output(T, H);
  t.cpu->moe(t.layer(0), h.first, m.first);
  t.gpu->moe(t.layer(0), h.second, m.second);
  t.expect_close(m, 2e-2, "moe of the residual stream");

  // ... scale_add writes fp32 from fp32 h and bf16 a ...
  t.cpu->scale_add(h.first, 1.7, m.first, 0.9, x.first);
  t.gpu->scale_add(h.second, 1.7, m.second, 0.9, x.second);
  t.expect_close(x, 1e-2, "fp32 scale_add");
  // ... and a copy made of x (no rms_norm wrote one) follows a later write to x.
  t.cpu->linear(x.first, wq, q.first);
  t.gpu->linear(x.second, wq, q.second);
  t.expect_close(q, 1e-2, "linear of a converted residual");
  t.cpu->scale_add(x.first, 0.5, m.first, 2.0, x.first);
  t.gpu->scale_add(x.second, 0.5, m.second, 2.0, x.second);
  t.cpu->linear(x.first, wq, q.first);
  t.gpu->linear(x.second, wq, q.second);
  t.expect_close(q, 1e-2, "linear after the residual changed");
  std::vector<float> yv(n);
  for (size_t i = 0; i < n; ++i) yv[i] = std::cos(0.11f * float(i));
  t.cpu->upload(yv.data(), x.first);
  t.gpu->upload(yv.data(), x.second);
  t.cpu->linear(x.first, wq, q.first);
  t.gpu->linear(x.second, wq, q.second);
  t.expect_close(q, 1e-2, "linear after an upload into the residual");

  std::vector<int32_t> tokens = {3, 0, 17, 17};
  std::pair<Act, Act> e{t.cpu->alloc_residual(4, H), t.gpu->alloc_residual(4, H)};
  t.cpu->embed(tokens, e.first);
  t.gpu->embed(tokens, e.second);
  t.expect_close(e, 0, "fp32 embed");
  const int64_t V = t.config().vocab;
  std::vector<float> want(2 * size_t(V)), got(2 * size_t(V), kNaN);
  t.cpu->logits(h.first, {0, 6}, want.data());
  t.gpu->logits(h.second, {0, 6}, got.data());
  EXPECT_LE(mmx_test::max_rel_error(got.data(), want.data(), want.size()), 1e-2) << "logits of the residual";

  // Mixed element types where an op needs one are refused, naming the op.
  try {
    t.gpu->silu(x.second);
    ADD_FAILURE() << "silu accepted an fp32 activation";
  } catch (const mmx::Error& err) {
    EXPECT_NE(std::string(err.what()).find("silu"), std::string::npos) << err.what();
  }
}

TEST(CudaOps, EmbedAndLogitsMatchCpu) {
  MMX_SKIP_WITHOUT_GPU();
  for (const Mode& mode : kExactModes) {
    Twin t(cuda_test::medium_config(), mode.model_dtype, mode.gpu_weights);
    const int64_t H = t.config().hidden, V = t.config().vocab;
    std::vector<int32_t> tokens = {0, int32_t(V - 1), 17, 17, 999, 3, 512, 64, 1};
    auto e = t.output(int64_t(tokens.size()), H);
    t.cpu->embed(tokens, e.first);
    t.gpu->embed(tokens, e.second);
    t.expect_close(e, 1e-2, std::string(mode.name) + " embed");

    for (int64_t T : {5, 300}) {
      auto x = t.input(T, H, random_bf16_values(size_t(T * H), 500 + uint64_t(T)));
      std::vector<int32_t> rows = {0, int32_t(T - 1), 2, 2};
      for (int64_t r = 0; r < T; r += 7) rows.push_back(int32_t(r));
      std::vector<float> want(rows.size() * size_t(V)), got(rows.size() * size_t(V), kNaN);
      t.cpu->logits(x.first, rows, want.data());
      t.gpu->logits(x.second, rows, got.data());
      const double err = mmx_test::max_rel_error(got.data(), want.data(), want.size());
      EXPECT_LE(err, 1e-2) << mode.name << " logits T=" << T << ": "
                           << cuda_test::worst_diff(got, want, V);
    }
  }
}

// Rows whose k-th and (k+1)-th router probabilities (fp64 on the host) nearly tie can route
// differently under a different summation order; those rows are left out of the comparison.
std::vector<bool> routing_is_clear(const mmx::Model& m, int layer, const std::vector<float>& x,
                                   int64_t T) {
  const auto& c = m.config();
  const std::vector<float> wg = m.weights().layers[size_t(layer)].router.to_f32();
  std::vector<bool> clear(size_t(T), true);
  for (int64_t t = 0; t < T; ++t) {
    std::vector<double> l(size_t(c.experts));
    for (int64_t e = 0; e < c.experts; ++e)
      for (int64_t h = 0; h < c.hidden; ++h)
        l[size_t(e)] += double(x[size_t(t * c.hidden + h)]) * double(wg[size_t(e * c.hidden + h)]);
    std::sort(l.begin(), l.end(), std::greater<double>());
    if (c.top_k < c.experts && l[size_t(c.top_k - 1)] - l[size_t(c.top_k)] < 1e-4)
      clear[size_t(t)] = false;
  }
  return clear;
}

// The MoE paths by batch size, each forced over a range of T: grouped GEMV (several passes
// when an expert has more rows than the register tile), grouped tensor-core kernel (int8; with
// and without split-K), per-expert GEMMs.
struct MoePath {
  const char* name;
  int64_t gemv_max, mma_max;
};
const MoePath kMoePaths[] = {{"auto", -1, -1}, {"gemv", 1 << 30, 0}, {"mma", 0, 1 << 30}, {"gemm", 0, 0}};

TEST(CudaOps, MoeMatchesCpuOnEveryPath) {
  MMX_SKIP_WITHOUT_GPU();
  for (const Mode& mode : kExactModes) {
    Twin t(cuda_test::medium_config(), mode.model_dtype, mode.gpu_weights);
    auto* cuda = dynamic_cast<mmx::cuda::CudaBackend*>(t.gpu.get());
    ASSERT_NE(cuda, nullptr);
    const auto defaults = cuda->tuning();
    const int64_t H = t.config().hidden;
    for (const MoePath& path : kMoePaths) {
      if (std::string(path.name) == "mma" && mode.model_dtype != DType::I8) continue;  // int8 only
      cuda->tuning() = defaults;
      if (path.gemv_max >= 0) cuda->tuning().moe_gemv_max_tokens = cuda->tuning().moe_bf16_gemv_max_tokens = path.gemv_max;
      if (path.mma_max >= 0) cuda->tuning().moe_mma_max_tokens = path.mma_max;
      for (int64_t T : {1, 2, 3, 16, 33, 64, 65, 200}) {
        for (int layer : {0, 1}) {
          t.cpu->begin_step();
          t.gpu->begin_step();
          const auto xv = random_bf16_values(size_t(T * H), 900 + uint64_t(T) * 7 + uint64_t(layer));
          auto x = t.input(T, H, xv);
          auto out = t.output(T, H);
          t.cpu->moe(t.layer(layer), x.first, out.first);
          t.gpu->moe(t.layer(layer), x.second, out.second);
          const auto want = Twin::get(*t.cpu, out.first), got = Twin::get(*t.gpu, out.second);
          EXPECT_EQ(Twin::get(*t.gpu, x.second), xv) << "moe modified its input";
          const auto clear = routing_is_clear(*t.model, layer, xv, T);
          std::vector<float> w2, g2;
          for (int64_t r = 0; r < T; ++r)
            if (clear[size_t(r)])
              for (int64_t h = 0; h < H; ++h) {
                w2.push_back(want[size_t(r * H + h)]);
                g2.push_back(got[size_t(r * H + h)]);
              }
          EXPECT_GE(w2.size(), size_t(H) * size_t(T) / 2) << "too many near-tied rows";
          const double err = mmx_test::max_rel_error(g2.data(), w2.data(), w2.size());
          EXPECT_LE(err, 1e-2) << mode.name << " moe path " << path.name << " layer " << layer
                               << " T=" << T << ": " << cuda_test::worst_diff(g2, w2, H);
        }
      }
    }
    cuda->tuning() = defaults;
  }
}

TEST(CudaOps, MoeIsDeterministic) {
  MMX_SKIP_WITHOUT_GPU();
  Twin t(cuda_test::medium_config(), DType::BF16, "int8");
  const int64_t H = t.config().hidden;
  for (int64_t T : {4, 300}) {
    auto x = t.input(T, H, random_bf16_values(size_t(T * H), 31));
    auto a = t.output(T, H), b = t.output(T, H);
    t.gpu->moe(t.layer(0), x.second, a.second);
    t.gpu->moe(t.layer(0), x.second, b.second);
    EXPECT_EQ(Twin::get(*t.gpu, a.second), Twin::get(*t.gpu, b.second)) << "T=" << T;
  }
}

// ---- kernels driven directly, on shapes no model config produces --------------------------

template <typename T>
struct DevBuf {
  T* p = nullptr;
  explicit DevBuf(size_t n) { EXPECT_EQ(cudaMalloc(&p, std::max<size_t>(n, 1) * sizeof(T)), cudaSuccess); }
  ~DevBuf() { cudaFree(p); }
  void put(const std::vector<T>& v) { ASSERT_EQ(cudaMemcpy(p, v.data(), v.size() * sizeof(T), cudaMemcpyHostToDevice), cudaSuccess); }
  std::vector<T> take(size_t n) const {
    std::vector<T> v(n);
    EXPECT_EQ(cudaMemcpy(v.data(), p, n * sizeof(T), cudaMemcpyDeviceToHost), cudaSuccess);
    return v;
  }
};

std::vector<uint16_t> to_bf16_bits(const std::vector<float>& f) {
  std::vector<uint16_t> b(f.size());
  for (size_t i = 0; i < f.size(); ++i) b[i] = mmx::f32_to_bf16(f[i]);
  return b;
}

TEST(CudaKernels, QuantiseMatchesTheHostRuleExactly) {
  MMX_SKIP_WITHOUT_GPU();
  const int64_t rows = 37, cols = 300;
  auto w = random_bf16_values(size_t(rows * cols), 5, 0.3f);
  for (int64_t c = 0; c < cols; ++c) w[size_t(3 * cols + c)] = 0.0f;  // an all-zero row
  DevBuf<uint16_t> src(w.size());
  src.put(to_bf16_bits(w));
  DevBuf<int8_t> q(w.size());
  DevBuf<float> s(static_cast<size_t>(rows));
  mmx::cuda::quantize_rows_int8(src.p, DType::BF16, rows, cols, q.p, s.p, nullptr);
  ASSERT_EQ(cudaDeviceSynchronize(), cudaSuccess);
  const auto qh = q.take(w.size());
  const auto sh = s.take(size_t(rows));
  for (int64_t r = 0; r < rows; ++r) {
    float amax = 0;
    for (int64_t c = 0; c < cols; ++c) amax = std::max(amax, std::fabs(w[size_t(r * cols + c)]));
    ASSERT_EQ(sh[size_t(r)], mmx::int8_row_scale(amax)) << "row " << r;
    for (int64_t c = 0; c < cols; ++c)
      ASSERT_EQ(qh[size_t(r * cols + c)], mmx::int8_quantize(w[size_t(r * cols + c)], sh[size_t(r)]))
          << "row " << r << " col " << c;
  }
}

// One forced-path run of LinearRunner against a float64 host product of the same weights.
void check_runner(mmx::cuda::LinearRunner& runner, const mmx::cuda::DeviceMatrix& m,
                  const std::vector<double>& w, int64_t M, mmx::cuda::LinearRunner::Path path,
                  uint64_t seed) {
  const int64_t N = m.rows, K = m.cols;
  const auto x = random_bf16_values(size_t(M * K), seed);
  DevBuf<uint16_t> xd(x.size());
  xd.put(to_bf16_bits(x));
  DevBuf<uint16_t> od(size_t(M * N));
  ASSERT_EQ(cudaMemset(od.p, 0xff, size_t(M * N) * 2), cudaSuccess);  // NaN poison
  runner.run(reinterpret_cast<const __nv_bfloat16*>(xd.p), M, m, reinterpret_cast<__nv_bfloat16*>(od.p),
             nullptr, path);
  ASSERT_EQ(cudaDeviceSynchronize(), cudaSuccess);
  const auto ob = od.take(size_t(M * N));
  std::vector<float> got(ob.size()), want(ob.size());
  for (size_t i = 0; i < ob.size(); ++i) got[i] = mmx::bf16_to_f32(ob[i]);
  for (int64_t i = 0; i < M; ++i)
    for (int64_t n = 0; n < N; ++n) {
      double acc = 0;
      for (int64_t k = 0; k < K; ++k) acc += double(x[size_t(i * K + k)]) * w[size_t(n * K + k)];
      want[size_t(i * N + n)] = float(acc);
    }
  const double err = mmx_test::max_rel_error(got.data(), want.data(), want.size());
  EXPECT_LE(err, 1e-2) << dtype_name(m.dtype) << " N=" << N << " K=" << K << " M=" << M << " path "
                       << int(path) << ": " << cuda_test::worst_diff(got, want, N);
}

// LinearRunner on shapes with tails: N not a multiple of the GEMV's rows per block or of the
// tensor-core tile, K not a multiple of 16 (the fallback path) or of the 64-wide k tile, both
// weight types, every path forced (a path that cannot take a shape falls back to the GEMM).
TEST(CudaKernels, LinearRunnerHandlesOddShapes) {
  MMX_SKIP_WITHOUT_GPU();
  using Path = mmx::cuda::LinearRunner::Path;
  mmx::cuda::MemoryBudget budget(0);
  mmx::cuda::DeviceBuffer ws(budget, 32 << 20, "test workspace");
  mmx::cuda::LtGemm lt(ws.get(), ws.size());
  int sms = 0;
  ASSERT_EQ(cudaDeviceGetAttribute(&sms, cudaDevAttrMultiProcessorCount, 0), cudaSuccess);
  mmx::cuda::LinearRunner runner(lt, budget, sms);
  uint64_t seed = 40;
  for (auto [N, K] : {std::pair<int64_t, int64_t>{37, 48}, {5, 4096}, {300, 72}, {1, 16}, {130, 1040}}) {
    const auto wf = random_bf16_values(size_t(N * K), seed++, 0.5f);
    // int8 form by the host rule, and the values each form stands for.
    std::vector<int8_t> q(wf.size());
    std::vector<float> sc(static_cast<size_t>(N));
    std::vector<double> w8(wf.size()), w16(wf.begin(), wf.end());
    for (int64_t r = 0; r < N; ++r) {
      float amax = 0;
      for (int64_t c = 0; c < K; ++c) amax = std::max(amax, std::fabs(wf[size_t(r * K + c)]));
      sc[size_t(r)] = mmx::int8_row_scale(amax);
      for (int64_t c = 0; c < K; ++c) {
        q[size_t(r * K + c)] = mmx::int8_quantize(wf[size_t(r * K + c)], sc[size_t(r)]);
        w8[size_t(r * K + c)] = double(q[size_t(r * K + c)]) * sc[size_t(r)];
      }
    }
    DevBuf<int8_t> qd(q.size());
    qd.put(q);
    DevBuf<float> sd(sc.size());
    sd.put(sc);
    DevBuf<uint16_t> bd(wf.size());
    bd.put(to_bf16_bits(wf));
    for (bool int8 : {true, false}) {
      mmx::cuda::DeviceMatrix m;
      m.dtype = int8 ? DType::I8 : DType::BF16;
      m.rows = N;
      m.cols = K;
      m.data = int8 ? static_cast<const void*>(qd.p) : static_cast<const void*>(bd.p);
      m.scale = int8 ? sd.p : nullptr;
      for (int64_t M : {1, 4, 16, 17, 64, 130})
        for (Path path : {Path::Auto, Path::Gemv, Path::Mma, Path::Gemm})
          check_runner(runner, m, int8 ? w8 : w16, M, path, seed++);
    }
  }
}

// ---- backend behaviour -----------------------------------------------------------------------

TEST(CudaBackend, RejectsBadOptionsAndCallOrder) {
  MMX_SKIP_WITHOUT_GPU();
  try {
    make_backend("cuda", "fp8");
    ADD_FAILURE() << "weight_dtype fp8 accepted";
  } catch (const mmx::Error& e) {
    EXPECT_EQ(e.code(), mmx::Code::InvalidArgument) << e.what();
  }
  mmx::BackendOptions o;
  o.kind = "cuda";
  o.devices = {999};
  try {
    mmx::create_backend(o);
    ADD_FAILURE() << "device 999 accepted";
  } catch (const mmx::Error& e) {
    EXPECT_EQ(e.code(), mmx::Code::Device) << e.what();
  }
  auto be = make_backend("cuda");
  EXPECT_EQ(be->name(), "cuda");
  try {
    be->new_state();
    ADD_FAILURE() << "new_state before prepare accepted";
  } catch (const mmx::Error& e) {
    EXPECT_EQ(e.code(), mmx::Code::State) << e.what();
  }
  auto model = mmx::make_random_model(mmx::tiny_test_config(), 3, DType::BF16);
  be->prepare(*model);
  be->begin_step();
  Act x = be->alloc(2, 64), y = be->alloc(2, 65);
  try {
    be->linear(x, model->weights().layers[0].qkv, y);
    ADD_FAILURE() << "shape mismatch accepted";
  } catch (const mmx::Error& e) {
    EXPECT_EQ(e.code(), mmx::Code::InvalidArgument) << e.what();
  }
}

TEST(CudaBackend, ActivationArenaGrowsAndKeepsData) {
  MMX_SKIP_WITHOUT_GPU();
  auto model = mmx::make_random_model(mmx::tiny_test_config(), 3, DType::BF16);
  auto be = make_backend("cuda");
  be->prepare(*model);
  for (int step = 0; step < 3; ++step) {
    be->begin_step();
    std::vector<Act> acts;
    std::vector<std::vector<float>> values;
    // ~200 MiB in 40 MiB pieces: more than the initial arena.
    for (int i = 0; i < 5; ++i) {
      acts.push_back(be->alloc(1 << 10, 20 << 10));
      values.push_back(random_bf16_values(size_t(1 << 10) * (20 << 10), uint64_t(step * 10 + i)));
      be->upload(values.back().data(), acts.back());
    }
    for (int i = 0; i < 5; ++i) {
      std::vector<float> back(values[size_t(i)].size());
      be->download(acts[size_t(i)], back.data());
      ASSERT_EQ(back, values[size_t(i)]) << "step " << step << " activation " << i;
    }
  }
}

TEST(CudaBackend, SyntheticModelRunsAndIsDeterministic) {
  MMX_SKIP_WITHOUT_GPU();
  auto model = mmx::Model::synthetic(cuda_test::medium_config());
  std::vector<std::vector<float>> results;
  for (const char* wd : {"int8", "int8", "bf16"}) {
    auto be = make_backend("cuda", wd);
    be->prepare(*model);
    auto st = be->new_state();
    mmx::StepBatch b;
    b.seqs.push_back({st.get(), 6, 0});
    std::vector<float> logits;
    mmx::Forward(*model, *be).run(b, {1, 2, 3, 4, 5, 6}, {0, 5}, &logits);
    for (float v : logits) ASSERT_TRUE(std::isfinite(v)) << wd;
    results.push_back(logits);
  }
  EXPECT_EQ(results[0], results[1]) << "synthetic weights are not deterministic";
}

}  // namespace
