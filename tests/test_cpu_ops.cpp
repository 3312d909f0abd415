// CPU reference ops against straightforward double-precision references on fresh random inputs
// (model-spec §4-§7), plus the portable state format.
#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <memory>
#include <cstring>
#include <random>

#include "backend/backend.h"
#include "backend/cpu/cpu_kernels.h"
#include "backend/state_format.h"
#include "core/error.h"
#include "model/random_model.h"
#include "test_util.h"

namespace {

using mmx::Act;
using mmx::Code;
using mmx::ThreadPool;
namespace cpu = mmx::cpu;

size_t sz(int64_t n) { return static_cast<size_t>(n); }

std::vector<float> randn(size_t n, uint64_t seed, float scale = 1.0f) {
  std::mt19937_64 rng(seed);
  std::normal_distribution<float> dist(0.0f, scale);
  std::vector<float> v(n);
  for (auto& x : v) x = dist(rng);
  return v;
}

double rel_err(const std::vector<float>& got, const std::vector<double>& want) {
  std::vector<float> w(want.begin(), want.end());
  // Compare against the float-rounded reference only for the scale; the difference uses double.
  double maxdiff = 0, maxref = 1e-30;
  for (size_t i = 0; i < got.size(); ++i) {
    if (!std::isfinite(got[i])) return INFINITY;
    maxdiff = std::max(maxdiff, std::fabs(double(got[i]) - want[i]));
    maxref = std::max(maxref, std::fabs(want[i]));
  }
  return maxdiff / maxref;
}

// Expects `fn` to throw mmx::Error with `code`.
template <class Fn>
void expect_code(Code code, Fn&& fn) {
  try {
    fn();
    ADD_FAILURE() << "expected mmx::Error " << mmx::code_name(code);
  } catch (const mmx::Error& e) {
    EXPECT_EQ(e.code(), code) << e.what();
  }
}

// ---- GEMM -----------------------------------------------------------------------------------

TEST(CpuOps, GemmMatchesDoubleReference) {
  ThreadPool pool(2);
  struct Shape { int64_t M, N, K; };
  for (Shape s : {Shape{1, 300, 70}, Shape{5, 7, 3}, Shape{37, 129, 64}, Shape{300, 4, 64}, Shape{64, 513, 33}}) {
    auto A = randn(size_t(s.M * s.K), 1), B = randn(size_t(s.N * s.K), 2);
    std::vector<float> C(sz(s.M * s.N));
    cpu::gemm_nt(pool, s.M, s.N, s.K, A.data(), s.K, B.data(), s.K, C.data(), s.N);
    std::vector<double> want(C.size());
    for (int64_t m = 0; m < s.M; ++m)
      for (int64_t n = 0; n < s.N; ++n) {
        double acc = 0;
        for (int64_t k = 0; k < s.K; ++k) acc += double(A[size_t(m * s.K + k)]) * B[size_t(n * s.K + k)];
        want[size_t(m * s.N + n)] = acc;
      }
    EXPECT_LT(rel_err(C, want), 1e-6) << s.M << "x" << s.N << "x" << s.K;
  }
}

// ---- lightning attention --------------------------------------------------------------------

// q|k|v interleaved rows [n, 3d] as the backend sees one head.
struct HeadInput {
  int64_t n, d;
  std::vector<float> qkv;
  const float* q() const { return qkv.data(); }
  const float* k() const { return qkv.data() + d; }
  const float* v() const { return qkv.data() + 2 * d; }
  int64_t ld() const { return 3 * d; }
};

HeadInput head_input(int64_t n, int64_t d, uint64_t seed) {
  HeadInput in{n, d, randn(size_t(n * 3 * d), seed, 0.5f)};
  return in;
}

// The one-token recurrence in double: S = lam*S + k^T v, o = q S.
std::vector<double> ref_recurrence(const HeadInput& in, double lam, std::vector<double>* S) {
  const int64_t d = in.d;
  std::vector<double> out(sz(in.n * d), 0.0);
  for (int64_t t = 0; t < in.n; ++t) {
    const float *q = in.q() + t * in.ld(), *k = in.k() + t * in.ld(), *v = in.v() + t * in.ld();
    for (int64_t i = 0; i < d; ++i)
      for (int64_t j = 0; j < d; ++j) {
        double& s = (*S)[size_t(i * d + j)];
        s = lam * s + double(k[i]) * v[j];
        out[size_t(t * d + j)] += double(q[i]) * s;
      }
  }
  return out;
}

struct LightningCase {
  int64_t n;
  double lam;
};

void check_lightning(int64_t block, int64_t d, LightningCase c, uint64_t seed) {
  HeadInput in = head_input(c.n, d, seed);
  // Start from a nonzero state, as a chunk after earlier chunks would.
  std::vector<float> S = randn(size_t(d * d), seed + 1, 0.3f);
  std::vector<double> S_ref(S.begin(), S.end());
  std::vector<double> want = ref_recurrence(in, c.lam, &S_ref);
  std::vector<float> out(sz(c.n * d));
  cpu::LightningScratch scratch;
  cpu::lightning_head(in.q(), in.k(), in.v(), in.ld(), c.n, d, c.lam, block, S.data(), out.data(), d,
                      &scratch);
  EXPECT_LT(rel_err(out, want), 2e-6) << "n=" << c.n << " block=" << block << " lambda=" << c.lam;
  EXPECT_LT(rel_err(S, S_ref), 2e-6) << "state, n=" << c.n << " block=" << block << " lambda=" << c.lam;
}

TEST(CpuOps, LightningBlocksMatchRecurrenceAtBlockEdges) {
  const int64_t B = 16, d = 16;
  uint64_t seed = 10;
  for (int64_t n : {int64_t(1), B - 1, B, B + 1, 3 * B + 5})
    for (double lam : {0.999, 0.9, 0.5})  // slow, middle, fast heads
      check_lightning(B, d, {n, lam}, seed++);
}

TEST(CpuOps, LightningFastHeadsNeitherOverflowNorLoseAccuracy) {
  // With the official block of 256, lambda^(-255) is ~1e110 for lambda = exp(-0.99): a
  // factorisation through lambda^(-j) would overflow fp32 long before the block ends.
  const int64_t B = 256, d = 8;
  uint64_t seed = 50;
  for (double lam : {std::exp(-0.99), 1e-3, 1e-30})
    for (int64_t n : {int64_t(255), int64_t(600)}) check_lightning(B, d, {n, lam}, seed++);
}

TEST(CpuOps, LightningInterBlockTermDecaysByLambdaToTheIPlusOne) {
  // With k = v = 0 only the carried state speaks: o_i = lambda^(i+1) q_i S0 at every position,
  // also in the second block (lambda^(B+i+1)). Applying lambda^i (as vLLM's Triton prefill
  // does) would be off by a factor lambda: 22-28% for the fastest head of a 4-head layer.
  const int64_t B = 16, d = 8, n = B + 5;
  const double lam = std::exp(-0.25);
  HeadInput in = head_input(n, d, 77);
  for (int64_t t = 0; t < n; ++t)
    for (int64_t j = d; j < 3 * d; ++j) in.qkv[size_t(t * 3 * d + j)] = 0.0f;
  std::vector<float> S0 = randn(size_t(d * d), 78), S = S0;
  std::vector<float> out(sz(n * d));
  cpu::LightningScratch scratch;
  cpu::lightning_head(in.q(), in.k(), in.v(), in.ld(), n, d, lam, B, S.data(), out.data(), d, &scratch);
  for (int64_t t = 0; t < n; ++t) {
    std::vector<double> qS(sz(d), 0.0);
    for (int64_t i = 0; i < d; ++i)
      for (int64_t j = 0; j < d; ++j) qS[size_t(j)] += double(in.q()[t * in.ld() + i]) * S0[size_t(i * d + j)];
    std::vector<float> got(out.begin() + t * d, out.begin() + (t + 1) * d);
    std::vector<double> want(sz(d)), wrong(sz(d));
    for (int64_t j = 0; j < d; ++j) {
      want[size_t(j)] = std::pow(lam, double(t + 1)) * qS[size_t(j)];
      wrong[size_t(j)] = std::pow(lam, double(t)) * qS[size_t(j)];
    }
    EXPECT_LT(rel_err(got, want), 1e-6) << "position " << t;
    EXPECT_GT(rel_err(got, wrong), 0.15) << "position " << t;
  }
}

TEST(CpuOps, LightningChunkingDoesNotChangeTheResult) {
  const int64_t B = 16, d = 16, n = 3 * B + 5;
  const double lam = 0.8;
  HeadInput in = head_input(n, d, 90);
  std::vector<float> S_whole(sz(d * d), 0.0f), S_chunked = S_whole;
  std::vector<float> whole(sz(n * d)), chunked(sz(n * d));
  cpu::LightningScratch scratch;
  cpu::lightning_head(in.q(), in.k(), in.v(), in.ld(), n, d, lam, B, S_whole.data(), whole.data(), d, &scratch);
  int64_t t = 0;
  for (int64_t len : {7, 1, 20, 1, 100}) {
    len = std::min(len, n - t);
    cpu::lightning_head(in.q() + t * in.ld(), in.k() + t * in.ld(), in.v() + t * in.ld(), in.ld(), len, d,
                        lam, B, S_chunked.data(), chunked.data() + t * d, d, &scratch);
    t += len;
  }
  ASSERT_EQ(t, n);
  EXPECT_LT(mmx_test::max_rel_error(chunked.data(), whole.data(), whole.size()), 2e-6);
  EXPECT_LT(mmx_test::max_rel_error(S_chunked.data(), S_whole.data(), S_whole.size()), 2e-6);
}

// ---- RoPE -----------------------------------------------------------------------------------

TEST(CpuOps, RopeRotatesOnlyTheFirstRotaryDims) {
  const int64_t heads = 3, hd = 16, rd = 8;
  const double theta = 1e7;
  auto inv = cpu::rope_inv_freq(theta, rd);
  ASSERT_EQ(inv.size(), size_t(rd / 2));
  for (int64_t j = 0; j < rd / 2; ++j)
    EXPECT_NEAR(inv[size_t(j)], std::pow(theta, -2.0 * double(j) / double(rd)), 2e-7 * inv[size_t(j)]);
  for (int64_t pos : {0, 1, 5, 1000, 70000}) {
    std::vector<float> x = randn(size_t(heads * hd), uint64_t(pos) + 3), y = x;
    cpu::apply_rope(y.data(), heads, hd, rd, pos, inv);
    for (int64_t h = 0; h < heads; ++h) {
      const float* a = x.data() + h * hd;
      const float* b = y.data() + h * hd;
      for (int64_t j = 0; j < rd / 2; ++j) {
        // The reference angle uses the fp32 inv_freq and an fp32 product, as transformers does.
        double ang = double(float(pos) * inv[size_t(j)]);
        double c = std::cos(ang), s = std::sin(ang);
        EXPECT_NEAR(b[j], a[j] * c - a[j + rd / 2] * s, 1e-5) << "pos " << pos << " dim " << j;
        EXPECT_NEAR(b[j + rd / 2], a[j + rd / 2] * c + a[j] * s, 1e-5) << "pos " << pos << " dim " << j;
      }
      for (int64_t j = rd; j < hd; ++j) EXPECT_EQ(b[j], a[j]) << "pass-through dim " << j << " changed";
    }
    if (pos == 0) EXPECT_EQ(x, y);
  }
}

// ---- softmax attention group and routing kernels --------------------------------------------

TEST(CpuOps, AttendGroupMatchesSoftmaxReference) {
  const int64_t group = 3, d = 8, ctx = 37, nkv = 2, ldkv = nkv * d, g = 1;
  auto q = randn(size_t(group * d), 5), K = randn(size_t(ctx * ldkv), 6), V = randn(size_t(ctx * ldkv), 7);
  std::vector<float> scores(sz(group * ctx)), out(sz(group * d));
  const float scale = float(1.0 / std::sqrt(double(d)));
  cpu::attend_group(q.data(), K.data() + g * d, V.data() + g * d, ldkv, ctx, group, d, scale,
                    scores.data(), out.data());
  std::vector<double> want(out.size(), 0.0);
  for (int64_t h = 0; h < group; ++h) {
    std::vector<double> p(sz(ctx));
    double mx = -INFINITY, sum = 0;
    for (int64_t t = 0; t < ctx; ++t) {
      double s = 0;
      for (int64_t i = 0; i < d; ++i) s += double(q[size_t(h * d + i)]) * K[size_t(t * ldkv + g * d + i)];
      p[size_t(t)] = s / std::sqrt(double(d));
      mx = std::max(mx, p[size_t(t)]);
    }
    for (auto& x : p) sum += (x = std::exp(x - mx));
    for (int64_t t = 0; t < ctx; ++t)
      for (int64_t i = 0; i < d; ++i) want[size_t(h * d + i)] += p[size_t(t)] / sum * V[size_t(t * ldkv + g * d + i)];
  }
  EXPECT_LT(rel_err(out, want), 1e-6);
}

TEST(CpuOps, RouterPicksTopKRenormalisesAndBreaksTiesByLowerIndex) {
  const int64_t E = 6, K = 2;
  int32_t experts[K];
  float w[K];
  std::vector<float> logits = {0.1f, 2.0f, -1.0f, 1.5f, 0.3f, 1.9f};
  cpu::route_top_k(logits.data(), E, K, experts, w);
  EXPECT_EQ(experts[0], 1);
  EXPECT_EQ(experts[1], 5);
  const double p1 = std::exp(2.0), p5 = std::exp(1.9);
  EXPECT_NEAR(w[0], p1 / (p1 + p5), 1e-6);
  EXPECT_NEAR(w[0] + w[1], 1.0, 1e-6);
  // Ties: equal logits keep the lower expert first, and the tie wins over later equal ones.
  std::vector<float> tied = {0.5f, 3.0f, 0.5f, 3.0f, 3.0f, -2.0f};
  cpu::route_top_k(tied.data(), E, K, experts, w);
  EXPECT_EQ(experts[0], 1);
  EXPECT_EQ(experts[1], 3);
  EXPECT_FLOAT_EQ(w[0], 0.5f);
  std::vector<float> all_equal(sz(E), 0.0f);
  int32_t three[3];
  float w3[3];
  cpu::route_top_k(all_equal.data(), E, 3, three, w3);
  EXPECT_EQ(three[0], 0);
  EXPECT_EQ(three[1], 1);
  EXPECT_EQ(three[2], 2);
  EXPECT_NEAR(w3[0] + w3[1] + w3[2], 1.0f, 1e-6);
}

// ---- backend ops on a random model ---------------------------------------------------------

class CpuBackendOps : public ::testing::Test {
 protected:
  void SetUp() override {
    config_ = mmx::tiny_test_config();
    config_.block_size = 16;  // so short test sequences cross lightning blocks
    model_ = mmx::make_random_model(config_, 7);
    mmx::BackendOptions opts;
    opts.threads = 2;
    be_ = mmx::create_backend(opts);
    be_->prepare(*model_);
    be_->begin_step();
  }
  Act put(const std::vector<float>& v, int64_t rows, int64_t cols) {
    Act a = be_->alloc(rows, cols);
    be_->upload(v.data(), a);
    return a;
  }
  std::vector<float> get(Act a) {
    std::vector<float> v(sz(a.rows * a.cols));
    be_->download(a, v.data());
    return v;
  }
  const mmx::LayerWeights& layer(int i) const { return model_->weights().layers[sz(i)]; }
  int first_layer(mmx::LayerKind kind) const {
    for (int i = 0; i < int(config_.layers); ++i)
      if (config_.layer_kinds[sz(i)] == kind) return i;
    return -1;
  }

  mmx::ModelConfig config_;
  std::shared_ptr<mmx::Model> model_;
  std::unique_ptr<mmx::Backend> be_;
};

// x W^T in double.
std::vector<double> ref_linear(const std::vector<float>& x, int64_t T, const mmx::WeightRef& w) {
  std::vector<float> W = w.to_f32();
  std::vector<double> y(sz(T * w.rows), 0.0);
  for (int64_t t = 0; t < T; ++t)
    for (int64_t o = 0; o < w.rows; ++o) {
      double acc = 0;
      for (int64_t i = 0; i < w.cols; ++i) acc += double(x[sz(t * w.cols + i)]) * W[sz(o * w.cols + i)];
      y[sz(t * w.rows + o)] = acc;
    }
  return y;
}

TEST_F(CpuBackendOps, DenseAndElementwiseOpsMatchDoubleReference) {
  const int64_t T = 5, H = config_.hidden;
  const mmx::LayerWeights& l0 = layer(0);
  std::vector<float> xv = randn(sz(T * H), 100, 2.0f);
  Act x = put(xv, T, H);

  Act y = be_->alloc(T, H);
  be_->rms_norm(x, l0.input_norm, 1e-5, y);
  std::vector<float> g = l0.input_norm.to_f32();
  std::vector<double> want(sz(T * H));
  for (int64_t t = 0; t < T; ++t) {
    double ss = 0;
    for (int64_t i = 0; i < H; ++i) ss += double(xv[sz(t * H + i)]) * xv[sz(t * H + i)];
    for (int64_t i = 0; i < H; ++i)
      want[sz(t * H + i)] = g[sz(i)] * xv[sz(t * H + i)] / std::sqrt(ss / double(H) + 1e-5);
  }
  EXPECT_LT(rel_err(get(y), want), 1e-6) << "rms_norm";
  be_->rms_norm(y, l0.input_norm, 1e-5, y);  // aliasing in place is allowed
  EXPECT_TRUE(std::isfinite(get(y)[0]));

  Act out = be_->alloc(T, l0.qkv.rows);
  be_->linear(x, l0.qkv, out);
  EXPECT_LT(rel_err(get(out), ref_linear(xv, T, l0.qkv)), 1e-6) << "linear";

  std::vector<float> gv = randn(sz(T * H), 101, 3.0f);
  Act s = put(xv, T, H), gate = put(gv, T, H);
  be_->silu(s);
  be_->sigmoid_mul(gate, x);
  std::vector<double> want_silu(sz(T * H)), want_sig(sz(T * H));
  for (size_t i = 0; i < want_silu.size(); ++i) {
    want_silu[i] = xv[i] / (1.0 + std::exp(-double(xv[i])));
    want_sig[i] = xv[i] / (1.0 + std::exp(-double(gv[i])));
  }
  EXPECT_LT(rel_err(get(s), want_silu), 1e-6) << "silu";
  EXPECT_LT(rel_err(get(x), want_sig), 1e-6) << "sigmoid_mul";

  Act h = put(xv, T, H), a = put(gv, T, H);
  be_->scale_add(h, 3.5565588200778455, a, 0.5, a);
  std::vector<double> want_sa(sz(T * H));
  for (size_t i = 0; i < want_sa.size(); ++i) want_sa[i] = 3.5565588200778455 * xv[i] + 0.5 * gv[i];
  EXPECT_LT(rel_err(get(a), want_sa), 1e-6) << "scale_add";
}

TEST_F(CpuBackendOps, EmbedAndLogitsUseTheRightRows) {
  const int64_t H = config_.hidden, V = config_.vocab;
  std::vector<int32_t> ids = {3, 0, int32_t(V - 1)};
  Act x = be_->alloc(3, H);
  be_->embed(ids, x);
  std::vector<float> table = model_->weights().embed.to_f32(), got = get(x);
  for (size_t t = 0; t < ids.size(); ++t)
    for (int64_t i = 0; i < H; ++i) ASSERT_EQ(got[t * sz(H) + sz(i)], table[sz(ids[t] * H + i)]);
  expect_code(Code::InvalidArgument, [&] { be_->embed({int32_t(V)}, be_->alloc(1, H)); });

  std::vector<float> logits(2 * sz(V));
  be_->logits(x, {2, 0}, logits.data());
  std::vector<float> rows(2 * sz(H));
  std::copy(got.begin() + 2 * H, got.end(), rows.begin());
  std::copy(got.begin(), got.begin() + H, rows.begin() + H);
  EXPECT_LT(rel_err(logits, ref_linear(rows, 2, model_->weights().lm_head)), 1e-6);
  expect_code(Code::InvalidArgument, [&] { be_->logits(x, {3}, logits.data()); });
}

TEST_F(CpuBackendOps, MoeMatchesDoubleReference) {
  const int64_t T = 9, H = config_.hidden, E = config_.experts, K = config_.top_k, F = config_.intermediate;
  const mmx::LayerWeights& l = layer(1);
  std::vector<float> xv = randn(sz(T * H), 200);
  Act x = put(xv, T, H), out = be_->alloc(T, H);
  be_->moe(l, x, out);
  std::vector<double> router = ref_linear(xv, T, l.router), want(sz(T * H), 0.0);
  for (int64_t t = 0; t < T; ++t) {
    std::vector<double> p(router.begin() + t * E, router.begin() + (t + 1) * E);
    double mx = *std::max_element(p.begin(), p.end()), sum = 0;
    for (auto& v : p) sum += (v = std::exp(v - mx));
    std::vector<int> order(sz(E));
    for (int e = 0; e < int(E); ++e) order[sz(e)] = e;
    std::stable_sort(order.begin(), order.end(), [&](int a, int b) { return p[sz(a)] > p[sz(b)]; });
    double top = 0;
    for (int64_t k = 0; k < K; ++k) top += p[sz(order[sz(k)])];
    std::vector<float> xt(xv.begin() + t * H, xv.begin() + (t + 1) * H);
    for (int64_t k = 0; k < K; ++k) {
      const int e = order[sz(k)];
      std::vector<double> g = ref_linear(xt, 1, l.w1[sz(e)]), u = ref_linear(xt, 1, l.w3[sz(e)]);
      std::vector<float> act(sz(F));
      for (int64_t i = 0; i < F; ++i) act[sz(i)] = float(g[sz(i)] / (1 + std::exp(-g[sz(i)])) * u[sz(i)]);
      std::vector<double> y = ref_linear(act, 1, l.w2[sz(e)]);
      for (int64_t i = 0; i < H; ++i) want[sz(t * H + i)] += p[sz(e)] / top * y[sz(i)];
    }
  }
  EXPECT_LT(rel_err(get(out), want), 1e-5);
}

// Double reference of the lightning core for one sequence: per head the one-token recurrence.
std::vector<double> ref_lightning_seq(const mmx::ModelConfig& c, int layer, const std::vector<float>& qkv,
                                      int64_t n, std::vector<std::vector<double>>* S) {
  const int64_t nh = c.heads, d = c.head_dim;
  std::vector<double> out(sz(n * nh * d), 0.0);
  for (int64_t h = 0; h < nh; ++h) {
    HeadInput in{n, d, {}};
    in.qkv.resize(sz(n * 3 * d));
    for (int64_t t = 0; t < n; ++t)
      std::copy(qkv.begin() + t * 3 * nh * d + h * 3 * d, qkv.begin() + t * 3 * nh * d + (h + 1) * 3 * d,
                in.qkv.begin() + t * 3 * d);
    std::vector<double> o = ref_recurrence(in, c.lightning_decay(layer, h), &(*S)[sz(h)]);
    for (int64_t t = 0; t < n; ++t)
      for (int64_t j = 0; j < d; ++j) out[sz(t * nh * d + h * d + j)] = o[sz(t * d + j)];
  }
  return out;
}

TEST_F(CpuBackendOps, LightningBatchOfDecodeAndPrefillMatchesRecurrence) {
  const int layer = first_layer(mmx::LayerKind::Lightning);
  const int64_t nh = config_.heads, d = config_.head_dim, W = 3 * nh * d;
  auto a = be_->new_state(), b = be_->new_state();
  std::vector<std::vector<double>> Sa(sz(nh), std::vector<double>(sz(d * d), 0.0)), Sb = Sa;
  // Step 1: sequence a prefills 21 tokens alone. Step 2: a decodes one token while b prefills
  // 18 blocks + 12 tokens in the same step (enough work to be spread over the pool).
  std::vector<float> q1 = randn(sz(21 * W), 300, 0.5f);
  mmx::StepBatch s1;
  s1.seqs = {{a.get(), 21, 0}};
  Act o1 = be_->alloc(21, nh * d);
  be_->lightning_attention(layer, put(q1, 21, W), s1, o1);
  EXPECT_LT(rel_err(get(o1), ref_lightning_seq(config_, layer, q1, 21, &Sa)), 1e-5);
  a->tokens = 21;

  std::vector<float> q2 = randn(sz(301 * W), 301, 0.5f);
  mmx::StepBatch s2;
  s2.seqs = {{a.get(), 1, 21}, {b.get(), 300, 0}};
  Act o2 = be_->alloc(301, nh * d);
  be_->lightning_attention(layer, put(q2, 301, W), s2, o2);
  std::vector<float> got = get(o2);
  std::vector<float> qa(q2.begin(), q2.begin() + W), qb(q2.begin() + W, q2.end());
  std::vector<double> want = ref_lightning_seq(config_, layer, qa, 1, &Sa);
  std::vector<double> wb = ref_lightning_seq(config_, layer, qb, 300, &Sb);
  want.insert(want.end(), wb.begin(), wb.end());
  EXPECT_LT(rel_err(got, want), 1e-5);

  s2.seqs = {{a.get(), 1, 22}, {a.get(), 1, 22}};  // one sequence twice in a step
  std::vector<float> two(q2.begin(), q2.begin() + 2 * W);
  expect_code(Code::InvalidArgument,
              [&] { be_->lightning_attention(layer, put(two, 2, W), s2, be_->alloc(2, nh * d)); });
  expect_code(Code::InvalidArgument, [&] {
    be_->lightning_attention(first_layer(mmx::LayerKind::Softmax), put(q1, 21, W), s1, o1);
  });
}

// Double reference of causal GQA attention with partial RoPE over positions 0..P-1.
std::vector<double> ref_softmax_attention(const mmx::ModelConfig& c, const std::vector<float>& q,
                                          const std::vector<float>& k, const std::vector<float>& v,
                                          int64_t P) {
  const int64_t nh = c.heads, nkv = c.kv_heads, d = c.head_dim, rd = c.rotary_dim;
  auto rope = [&](std::vector<double>& x, int64_t heads) {
    for (int64_t p = 0; p < P; ++p)
      for (int64_t h = 0; h < heads; ++h)
        for (int64_t j = 0; j < rd / 2; ++j) {
          double ang = double(p) * std::pow(c.rope_theta, -2.0 * double(j) / double(rd));
          double& a = x[sz((p * heads + h) * d + j)];
          double& b = x[sz((p * heads + h) * d + j + rd / 2)];
          double na = a * std::cos(ang) - b * std::sin(ang), nb = b * std::cos(ang) + a * std::sin(ang);
          a = na;
          b = nb;
        }
  };
  std::vector<double> qd(q.begin(), q.end()), kd(k.begin(), k.end());
  rope(qd, nh);
  rope(kd, nkv);
  std::vector<double> out(sz(P * nh * d), 0.0);
  for (int64_t p = 0; p < P; ++p)
    for (int64_t h = 0; h < nh; ++h) {
      const int64_t g = h / (nh / nkv);  // GQA: kv head g serves query heads g*group .. +group-1
      std::vector<double> s(sz(p + 1));
      for (int64_t t = 0; t <= p; ++t) {
        double acc = 0;
        for (int64_t i = 0; i < d; ++i) acc += qd[sz((p * nh + h) * d + i)] * kd[sz((t * nkv + g) * d + i)];
        s[sz(t)] = acc / std::sqrt(double(d));
      }
      double mx = *std::max_element(s.begin(), s.end()), sum = 0;
      for (auto& x : s) sum += (x = std::exp(x - mx));
      for (int64_t t = 0; t <= p; ++t)
        for (int64_t i = 0; i < d; ++i)
          out[sz((p * nh + h) * d + i)] += s[sz(t)] / sum * v[sz((t * nkv + g) * d + i)];
    }
  return out;
}

TEST_F(CpuBackendOps, SoftmaxAttentionWithCacheMatchesReference) {
  const int layer = first_layer(mmx::LayerKind::Softmax);
  const int64_t nh = config_.heads, nkv = config_.kv_heads, d = config_.head_dim, P = 160;
  std::vector<float> q = randn(sz(P * nh * d), 400), k = randn(sz(P * nkv * d), 401), v = randn(sz(P * nkv * d), 402);
  std::vector<double> want = ref_softmax_attention(config_, q, k, v, P);
  auto st = be_->new_state();
  // Prefill 5, decode 1, then chunks of 4 and 150: each step sees the cache of the earlier ones.
  int64_t pos = 0;
  for (int64_t n : {5, 1, 4, 150}) {
    mmx::StepBatch b;
    b.seqs = {{st.get(), n, pos}};
    auto rows = [&](const std::vector<float>& src, int64_t w) {
      return put(std::vector<float>(src.begin() + pos * w, src.begin() + (pos + n) * w), n, w);
    };
    Act o = be_->alloc(n, nh * d);
    be_->softmax_attention(layer, rows(q, nh * d), rows(k, nkv * d), rows(v, nkv * d), b, o);
    std::vector<double> w(want.begin() + pos * nh * d, want.begin() + (pos + n) * nh * d);
    EXPECT_LT(rel_err(get(o), w), 1e-5) << "chunk at " << pos;
    pos += n;
    st->tokens = pos;
  }
  mmx::StepBatch wrong;
  wrong.seqs = {{st.get(), 1, 3}};  // the cache holds 160 tokens, not 3
  expect_code(Code::InvalidArgument, [&] {
    be_->softmax_attention(layer, put(q, 1, nh * d), put(k, 1, nkv * d), put(v, 1, nkv * d), wrong,
                           be_->alloc(1, nh * d));
  });
}

TEST_F(CpuBackendOps, GqaKvHeadServesItsGroupOfQueryHeads) {
  // Values are constant per KV head (g + 1), so each query head's output reveals its KV head.
  const int layer = first_layer(mmx::LayerKind::Softmax);
  const int64_t nh = config_.heads, nkv = config_.kv_heads, d = config_.head_dim, n = 3;
  std::vector<float> v(sz(n * nkv * d));
  for (int64_t t = 0; t < n; ++t)
    for (int64_t g = 0; g < nkv; ++g)
      for (int64_t i = 0; i < d; ++i) v[sz((t * nkv + g) * d + i)] = float(g + 1);
  auto st = be_->new_state();
  mmx::StepBatch b;
  b.seqs = {{st.get(), n, 0}};
  Act o = be_->alloc(n, nh * d);
  be_->softmax_attention(layer, put(randn(sz(n * nh * d), 1), n, nh * d), put(randn(sz(n * nkv * d), 2), n, nkv * d),
                         put(v, n, nkv * d), b, o);
  std::vector<float> got = get(o);
  for (int64_t t = 0; t < n; ++t)
    for (int64_t h = 0; h < nh; ++h)
      EXPECT_NEAR(got[sz((t * nh + h) * d)], float(h / (nh / nkv) + 1), 1e-5) << "query head " << h;
}

TEST_F(CpuBackendOps, RefusesSyntheticModelsAndUseBeforePrepare) {
  mmx::BackendOptions opts;
  opts.threads = 1;
  auto fresh = mmx::create_backend(opts);
  expect_code(Code::State, [&] { fresh->new_state(); });
  expect_code(Code::Unsupported, [&] { fresh->prepare(*mmx::Model::synthetic(config_)); });
}

// ---- factory --------------------------------------------------------------------------------

TEST(CpuOps, FactoryNamesBackendsAndRefusesUnknownKinds) {
  mmx::BackendOptions opts;
  opts.threads = 1;
  EXPECT_EQ(mmx::create_backend(opts)->name(), "cpu");
  opts.kind = "tpu";
  expect_code(Code::InvalidArgument, [&] { mmx::create_backend(opts); });
  opts.kind = "cpu";
  opts.threads = -3;
  expect_code(Code::InvalidArgument, [&] { mmx::create_backend(opts); });
#ifndef MINIMAX_HAVE_CUDA
  opts.threads = 0;
  opts.kind = "cuda";
  expect_code(Code::Unsupported, [&] { mmx::create_backend(opts); });
  EXPECT_EQ(mmx::cuda_device_count(), 0);
#endif
}

}  // namespace
