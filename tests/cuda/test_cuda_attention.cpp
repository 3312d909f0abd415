// CudaAttention (lightning + softmax attention, device sequence states) against fp64 host
// references and against the CPU backend's ops on fresh random bf16 inputs. Outputs are
// poisoned (bf16 NaN) before every call, so an unwritten element fails the comparison.
#include <gtest/gtest.h>

#include <cuda_runtime.h>

#include <algorithm>
#include <cmath>
#include <cstring>
#include <memory>
#include <random>
#include <string>
#include <vector>

#include "backend/backend.h"
#include "backend/cuda/device_memory.h"
#include "backend/cuda/attention.h"
#include "backend/cuda/device_memory.h"
#include "backend/state_format.h"
#include "kernels/flash_attention.h"
#include "core/dtype.h"
#include "core/error.h"
#include "model/random_model.h"
#include "test_util.h"

namespace {

using mmx::Code;
using mmx::LayerKind;
using mmx::ModelConfig;
using mmx::SeqState;
using mmx::StepBatch;

constexpr double kBf16Tol = 1e-2;   // outputs: bf16 inputs, bf16 outputs
constexpr double kStateTol = 1e-3;  // the fp32 lightning state

void cuda_ok(cudaError_t err, const char* what) {
  if (err != cudaSuccess) throw std::runtime_error(std::string(what) + ": " + cudaGetErrorString(err));
}

// ---- device plumbing ------------------------------------------------------------------------

class DeviceBuffer {
 public:
  explicit DeviceBuffer(size_t bytes) : bytes_(std::max<size_t>(bytes, 16)) { cuda_ok(cudaMalloc(&p_, bytes_), "cudaMalloc"); }
  ~DeviceBuffer() { cudaFree(p_); }
  DeviceBuffer(const DeviceBuffer&) = delete;
  DeviceBuffer& operator=(const DeviceBuffer&) = delete;
  void* get() const { return p_; }
  size_t bytes() const { return bytes_; }

 private:
  void* p_ = nullptr;
  size_t bytes_;
};

// One stream, a growing scratch buffer and a CudaAttention for `config`.
class Gpu {
 public:
  explicit Gpu(const ModelConfig& config, int page_tokens = 256) {
    cuda_ok(cudaSetDevice(0), "cudaSetDevice");
    cuda_ok(cudaStreamCreateWithFlags(&stream_, cudaStreamNonBlocking), "cudaStreamCreate");
    mmx::cuda::AttentionEnv env;
    env.device = 0;
    env.stream = stream_;
    env.scratch = [this](size_t bytes) { return scratch(bytes); };
    env.upload = [this](const void* src, size_t bytes, void* dst) { staging_.upload(src, bytes, dst, stream_); };
    attn_ = std::make_unique<mmx::cuda::CudaAttention>(config, env, page_tokens);
  }
  ~Gpu() {
    attn_.reset();
    cudaStreamSynchronize(stream_);
    scratch_.reset();
    cudaStreamDestroy(stream_);
  }
  mmx::cuda::CudaAttention& attn() { return *attn_; }
  cudaStream_t stream() const { return stream_; }
  void sync() { cuda_ok(cudaStreamSynchronize(stream_), "cudaStreamSynchronize"); }

  // Copies and fills go on the attention stream: the legacy default stream is not ordered
  // with a non-blocking one.
  std::unique_ptr<DeviceBuffer> upload(const std::vector<uint16_t>& bits) {
    auto b = std::make_unique<DeviceBuffer>(bits.size() * 2);
    cuda_ok(cudaMemcpyAsync(b->get(), bits.data(), bits.size() * 2, cudaMemcpyHostToDevice, stream_), "upload");
    sync();  // `bits` may die right after
    return b;
  }
  // An output buffer of n bf16 values, every one NaN.
  std::unique_ptr<DeviceBuffer> poisoned(size_t n) {
    auto b = std::make_unique<DeviceBuffer>(n * 2);
    cuda_ok(cudaMemsetAsync(b->get(), 0xff, n * 2, stream_), "poison");
    return b;
  }
  std::vector<float> download(const DeviceBuffer& b, size_t n) {
    std::vector<uint16_t> bits(n);
    cuda_ok(cudaMemcpyAsync(bits.data(), b.get(), n * 2, cudaMemcpyDeviceToHost, stream_), "download");
    sync();
    std::vector<float> f(n);
    for (size_t i = 0; i < n; ++i) f[i] = mmx::bf16_to_f32(bits[i]);
    return f;
  }

 private:
  void* scratch(size_t bytes) {
    if (!scratch_ || scratch_->bytes() < bytes) {
      sync();  // kernels queued earlier may still use the old buffer
      scratch_ = std::make_unique<DeviceBuffer>(bytes);
    }
    return scratch_->get();
  }
  cudaStream_t stream_ = nullptr;
  std::unique_ptr<DeviceBuffer> scratch_;
  mmx::cuda::HostStaging staging_;  // as CudaBackend uploads the per-call descriptors
  std::unique_ptr<mmx::cuda::CudaAttention> attn_;
};

// ---- inputs ---------------------------------------------------------------------------------

// Random values already rounded to bf16: `bits` go to the GPU, `f` (the same values) to the
// references. silu: the lightning inputs are SiLU outputs.
struct Bf16Values {
  std::vector<uint16_t> bits;
  std::vector<float> f;
};

Bf16Values random_bf16(size_t n, uint64_t seed, float scale, bool silu) {
  std::mt19937_64 rng(seed);
  std::normal_distribution<float> dist(0.0f, scale);
  Bf16Values v;
  v.bits.resize(n);
  v.f.resize(n);
  for (size_t i = 0; i < n; ++i) {
    float x = dist(rng);
    if (silu) x = x / (1.0f + std::exp(-x));
    v.bits[i] = mmx::f32_to_bf16(x);
    v.f[i] = mmx::bf16_to_f32(v.bits[i]);
  }
  return v;
}

double rel_err(const std::vector<float>& got, const std::vector<double>& want) {
  double maxdiff = 0, maxref = 1e-30;
  for (size_t i = 0; i < got.size(); ++i) {
    if (!std::isfinite(got[i])) return INFINITY;
    maxdiff = std::max(maxdiff, std::fabs(double(got[i]) - want[i]));
    maxref = std::max(maxref, std::fabs(want[i]));
  }
  return maxdiff / maxref;
}

ModelConfig make_config(int64_t heads, int64_t kv_heads, int64_t d, std::vector<LayerKind> kinds) {
  ModelConfig c = mmx::tiny_test_config();
  c.heads = heads;
  c.kv_heads = kv_heads;
  c.head_dim = d;
  c.rotary_dim = d / 2;
  c.rope_theta = 10000000.0;
  c.layers = int64_t(kinds.size());
  c.layer_kinds = std::move(kinds);
  c.max_positions = 1 << 18;
  return c;
}

// Sequences with the given token counts, each starting where its state stands.
StepBatch make_batch(const std::vector<SeqState*>& states, const std::vector<int64_t>& n) {
  StepBatch b;
  for (size_t i = 0; i < states.size(); ++i) b.seqs.push_back({states[i], n[i], states[i]->tokens});
  return b;
}
void advance(const StepBatch& b) {
  for (const auto& s : b.seqs) s.state->tokens += s.n_tokens;
}

// ---- fp64 references ------------------------------------------------------------------------

// One sequence's reference state: S per head for a lightning layer, post-RoPE K/V rows for a
// softmax layer.
struct RefSeq {
  std::vector<double> S, K, V;
};

// S <- lambda S + k^T v; o = q S, token by token (model-spec §5). qkv: [n, 3*nh*d] rows.
void ref_lightning(const ModelConfig& c, int layer, const float* qkv, int64_t n, RefSeq* seq, double* out) {
  const int64_t nh = c.heads, d = c.head_dim;
  if (seq->S.empty()) seq->S.assign(size_t(nh * d * d), 0.0);
  for (int64_t h = 0; h < nh; ++h) {
    const double lambda = c.lightning_decay(layer, h);
    double* S = seq->S.data() + h * d * d;
    for (int64_t t = 0; t < n; ++t) {
      const float* q = qkv + t * 3 * nh * d + 3 * d * h;
      const float* k = q + d;
      const float* v = q + 2 * d;
      for (int64_t i = 0; i < d; ++i)
        for (int64_t j = 0; j < d; ++j) S[i * d + j] = lambda * S[i * d + j] + double(k[i]) * v[j];
      for (int64_t j = 0; j < d; ++j) {
        double o = 0;
        for (int64_t i = 0; i < d; ++i) o += double(q[i]) * S[i * d + j];
        out[t * nh * d + h * d + j] = o;
      }
    }
  }
}

// NeoX RoPE on the first rotary_dim dims; the angle is formed in fp32 as every backend does.
void ref_rope(const ModelConfig& c, int64_t pos, double* x) {
  const int64_t half = c.rotary_dim / 2;
  for (int64_t j = 0; j < half; ++j) {
    const float inv = 1.0f / std::pow(float(c.rope_theta), float(2 * j) / float(c.rotary_dim));
    const double angle = double(float(pos) * inv);
    const double a = x[j], b = x[j + half];
    x[j] = a * std::cos(angle) - b * std::sin(angle);
    x[j + half] = b * std::cos(angle) + a * std::sin(angle);
  }
}

// Causal GQA attention for n new tokens at positions seq->K.size()/(nkv*d) onwards. With
// out == nullptr only the cache is extended (the O(n^2) part is skipped).
void ref_softmax(const ModelConfig& c, const float* q, const float* k, const float* v, int64_t n, RefSeq* seq,
                 double* out) {
  const int64_t nh = c.heads, nkv = c.kv_heads, d = c.head_dim, kvw = nkv * d, group = nh / nkv;
  const int64_t start = int64_t(seq->K.size()) / kvw;
  for (int64_t t = 0; t < n; ++t) {
    std::vector<double> kr(k + t * kvw, k + (t + 1) * kvw);
    for (int64_t g = 0; g < nkv; ++g) ref_rope(c, start + t, kr.data() + g * d);
    seq->K.insert(seq->K.end(), kr.begin(), kr.end());
    seq->V.insert(seq->V.end(), v + t * kvw, v + (t + 1) * kvw);
  }
  std::vector<double> scores;
  for (int64_t t = 0; out != nullptr && t < n; ++t) {
    const int64_t ctx = start + t + 1;
    for (int64_t h = 0; h < nh; ++h) {
      std::vector<double> qr(q + t * nh * d + h * d, q + t * nh * d + (h + 1) * d);
      ref_rope(c, start + t, qr.data());
      const int64_t g = h / group;
      scores.assign(size_t(ctx), 0.0);
      double mx = -INFINITY;
      for (int64_t p = 0; p < ctx; ++p) {
        double s = 0;
        for (int64_t i = 0; i < d; ++i) s += qr[size_t(i)] * seq->K[size_t(p * kvw + g * d + i)];
        scores[size_t(p)] = s / std::sqrt(double(d));
        mx = std::max(mx, scores[size_t(p)]);
      }
      double sum = 0;
      for (double& s : scores) sum += (s = std::exp(s - mx));
      for (int64_t i = 0; i < d; ++i) {
        double o = 0;
        for (int64_t p = 0; p < ctx; ++p) o += scores[size_t(p)] * seq->V[size_t(p * kvw + g * d + i)];
        out[t * nh * d + h * d + i] = o / sum;
      }
    }
  }
}

// ---- GPU steps ------------------------------------------------------------------------------

std::vector<float> gpu_lightning(Gpu& gpu, int layer, const Bf16Values& qkv, const StepBatch& b, int64_t out_cols) {
  const size_t T = size_t(b.total_tokens());
  auto in = gpu.upload(qkv.bits);
  auto out = gpu.poisoned(T * size_t(out_cols));
  gpu.attn().lightning(layer, in->get(), b, out->get());
  return gpu.download(*out, T * size_t(out_cols));
}

std::vector<float> gpu_softmax(Gpu& gpu, int layer, const Bf16Values& q, const Bf16Values& k, const Bf16Values& v,
                               const StepBatch& b, int64_t out_cols) {
  const size_t T = size_t(b.total_tokens());
  auto dq = gpu.upload(q.bits), dk = gpu.upload(k.bits), dv = gpu.upload(v.bits);
  auto out = gpu.poisoned(T * size_t(out_cols));
  gpu.attn().softmax(layer, dq->get(), dk->get(), dv->get(), b, out->get());
  return gpu.download(*out, T * size_t(out_cols));
}

// Runs one step of `counts` tokens per sequence through the GPU and the fp64 reference and
// returns the relative error of the outputs. Lightning when `layer` is a lightning layer.
// Inputs are N(0, scale^2) (SiLU'd for lightning). check = false only advances the
// reference (for long softmax prefills whose O(n^2) reference would be slow) and returns 0.
double step_vs_reference(Gpu& gpu, const ModelConfig& c, int layer, const std::vector<SeqState*>& states,
                         std::vector<RefSeq>& refs, const std::vector<int64_t>& counts, uint64_t seed,
                         float scale = 1.0f, bool check = true) {
  const StepBatch b = make_batch(states, counts);
  const int64_t T = b.total_tokens(), nh = c.heads, d = c.head_dim, kvw = c.kv_heads * d;
  std::vector<double> want(size_t(T * nh * d));
  std::vector<float> got;
  if (c.layer_kinds[size_t(layer)] == LayerKind::Lightning) {
    const Bf16Values qkv = random_bf16(size_t(T * 3 * nh * d), seed, scale, true);
    got = gpu_lightning(gpu, layer, qkv, b, nh * d);
    int64_t row = 0;
    for (size_t i = 0; i < states.size(); ++i) {
      ref_lightning(c, layer, qkv.f.data() + row * 3 * nh * d, counts[i], &refs[i], want.data() + row * nh * d);
      row += counts[i];
    }
  } else {
    const Bf16Values q = random_bf16(size_t(T * nh * d), seed, scale, false);
    const Bf16Values k = random_bf16(size_t(T * kvw), seed + 1, scale, false);
    const Bf16Values v = random_bf16(size_t(T * kvw), seed + 2, scale, false);
    got = gpu_softmax(gpu, layer, q, k, v, b, nh * d);
    int64_t row = 0;
    for (size_t i = 0; i < states.size(); ++i) {
      ref_softmax(c, q.f.data() + row * nh * d, k.f.data() + row * kvw, v.f.data() + row * kvw, counts[i], &refs[i],
                  check ? want.data() + row * nh * d : nullptr);
      row += counts[i];
    }
  }
  advance(b);
  if (!check) {
    for (float x : got)
      if (!std::isfinite(x)) return INFINITY;  // still every output must be written and finite
    return 0.0;
  }
  return rel_err(got, want);
}

// The fp32 payload of one layer of a saved state image.
std::vector<float> image_layer(const ModelConfig& c, const std::vector<uint8_t>& image, int layer, bool values = false) {
  const mmx::StateLayout l = mmx::parse_state_image(c, image.data(), image.size());
  const bool lightning = c.layer_kinds[size_t(layer)] == LayerKind::Lightning;
  const uint64_t at = lightning ? l.layer_offset[size_t(layer)] : values ? l.v_offset(layer) : l.k_offset(layer);
  const uint64_t bytes = lightning ? l.lightning_bytes : l.kv_bytes;
  std::vector<float> f(bytes / 4);
  std::memcpy(f.data(), image.data() + at, bytes);
  return f;
}

class CudaAttentionTest : public ::testing::Test {
 protected:
  void SetUp() override {
    if (mmx::cuda_device_count() == 0) GTEST_SKIP() << "no CUDA device";
  }
};

// ---- lightning ------------------------------------------------------------------------------

TEST_F(CudaAttentionTest, LightningPrefillAcrossBlockEdgesMatchesFp64) {
  for (int64_t d : {16, 64, 128}) {
    // Lightning layers only: a saved state must have run every layer it holds.
    const ModelConfig c = make_config(4, 2, d, {LayerKind::Lightning, LayerKind::Lightning});
    Gpu gpu(c);
    for (int64_t n : {1, 63, 64, 65, 197, 300}) {
      for (int layer : {0, 1}) {
        auto st = gpu.attn().new_state();
        std::vector<RefSeq> refs(1);
        EXPECT_LT(step_vs_reference(gpu, c, layer, {st.get()}, refs, {n}, uint64_t(n * 7 + d + layer)), kBf16Tol)
            << "d=" << d << " n=" << n << " layer=" << layer;
        std::vector<uint8_t> image;
        gpu.attn().save_state(*st, &image);
        const std::vector<float> S = image_layer(c, image, layer);
        EXPECT_LT(rel_err(S, refs[0].S), kStateTol) << "state, d=" << d << " n=" << n << " layer=" << layer;
      }
    }
  }
}

TEST_F(CudaAttentionTest, LightningMixedBatchChunkedPrefillAndDecodeMatchFp64) {
  for (int64_t d : {16, 128}) {
    const ModelConfig c = make_config(8, 2, d, {LayerKind::Lightning, LayerKind::Lightning});
    Gpu gpu(c);
    std::vector<std::unique_ptr<SeqState>> owned;
    std::vector<SeqState*> states;
    for (int i = 0; i < 5; ++i) owned.push_back(gpu.attn().new_state()), states.push_back(owned.back().get());
    std::vector<RefSeq> refs(states.size());
    // Different lengths in one launch, then chunks mixed with decode tokens and idle sequences.
    const std::vector<std::vector<int64_t>> steps = {
        {1, 64, 130, 7, 200}, {65, 1, 1, 0, 129}, {1, 1, 1, 1, 1}, {3, 1, 64, 1, 1}, {1, 1, 1, 1, 1}};
    for (size_t s = 0; s < steps.size(); ++s)
      EXPECT_LT(step_vs_reference(gpu, c, 0, states, refs, steps[s], 100 + s), kBf16Tol) << "d=" << d << " step " << s;
    for (size_t i = 0; i < states.size(); ++i) {
      std::vector<uint8_t> image;
      gpu.attn().save_state(*states[i], &image);
      EXPECT_LT(rel_err(image_layer(c, image, 0), refs[i].S), kStateTol) << "d=" << d << " sequence " << i;
    }
  }
}

TEST_F(CudaAttentionTest, LightningFastHeadsStayFinite) {
  // 64 heads: head 0 decays by 0.40 per token, so lambda^-64 would be ~1e25 and lambda^-256
  // would overflow fp32. Large inputs push the products too.
  const ModelConfig c = make_config(64, 8, 16, {LayerKind::Lightning, LayerKind::Softmax});
  Gpu gpu(c);
  auto st = gpu.attn().new_state();
  std::vector<RefSeq> refs(1);
  for (int64_t n : {500, 1, 257})
    EXPECT_LT(step_vs_reference(gpu, c, 0, {st.get()}, refs, {n}, 900 + uint64_t(n), 4.0f), kBf16Tol) << "n=" << n;
}

TEST_F(CudaAttentionTest, LightningStateAfter100kTokensMatchesFp64Recurrence) {
  // Layer 0 decays fast (f = 1), layer 1 barely (f = 1e-5): the state sums ~100k terms.
  const ModelConfig c = make_config(4, 4, 64, {LayerKind::Lightning, LayerKind::Lightning});
  Gpu gpu(c);
  for (int layer : {0, 1}) {
    auto st = gpu.attn().new_state();
    std::vector<RefSeq> refs(1);
    double worst = 0;
    int64_t total = 0;
    for (int64_t chunk : {8192, 8192, 16384, 32768, 32768, 2000, 1, 1, 1})  // 100,003 tokens
      worst = std::max(worst, step_vs_reference(gpu, c, layer, {st.get()}, refs, {chunk}, uint64_t(total += chunk)));
    EXPECT_LT(worst, kBf16Tol) << "outputs, layer " << layer;
    std::vector<uint8_t> image;
    gpu.attn().save_state(*st, &image);
    EXPECT_LT(rel_err(image_layer(c, image, layer), refs[0].S), kStateTol) << "state, layer " << layer;
  }
}

// ---- softmax --------------------------------------------------------------------------------

TEST_F(CudaAttentionTest, SoftmaxPrefillAcrossTileAndPageEdgesMatchesFp64) {
  for (int64_t d : {16, 128})
    for (int page : {16, 256}) {
      const ModelConfig c = make_config(16, 2, d, {LayerKind::Lightning, LayerKind::Softmax, LayerKind::Softmax});
      Gpu gpu(c, page);
      for (int64_t n : {1, 63, 64, 65, 197}) {
        auto st = gpu.attn().new_state();
        // Both softmax layers, so the second layer's slot of each page is exercised.
        for (int layer : {1, 2}) {
          std::vector<RefSeq> r(1);
          st->tokens = 0;
          EXPECT_LT(step_vs_reference(gpu, c, layer, {st.get()}, r, {n}, uint64_t(n + d + layer)), kBf16Tol)
              << "d=" << d << " page=" << page << " n=" << n << " layer=" << layer;
        }
      }
    }
}

TEST_F(CudaAttentionTest, SoftmaxChunkedPrefillMixedWithDecodeMatchesFp64) {
  for (int64_t d : {16, 64, 128}) {
    const ModelConfig c = make_config(8, 2, d, {LayerKind::Softmax});
    Gpu gpu(c, 32);
    std::vector<std::unique_ptr<SeqState>> owned;
    std::vector<SeqState*> states;
    for (int i = 0; i < 4; ++i) owned.push_back(gpu.attn().new_state()), states.push_back(owned.back().get());
    std::vector<RefSeq> refs(states.size());
    const std::vector<std::vector<int64_t>> steps = {
        {100, 1, 33, 64}, {77, 1, 1, 130}, {1, 1, 0, 1}, {1, 90, 1, 1}, {1, 1, 1, 1}};
    for (size_t s = 0; s < steps.size(); ++s)
      EXPECT_LT(step_vs_reference(gpu, c, 0, states, refs, steps[s], 300 + s), kBf16Tol) << "d=" << d << " step " << s;
  }
}

TEST_F(CudaAttentionTest, SoftmaxDecodeOverLongCacheSplitsMatchesFp64) {
  // GQA groups of 8 (one 16-row decode tile) and of 32 (two tiles per KV head).
  for (int64_t kv_heads : {8, 1}) {
    const ModelConfig c = make_config(kv_heads == 8 ? 64 : 32, kv_heads, 128, {LayerKind::Softmax});
    Gpu gpu(c, 256);
    std::vector<std::unique_ptr<SeqState>> owned;
    std::vector<SeqState*> states;
    for (int i = 0; i < 3; ++i) owned.push_back(gpu.attn().new_state()), states.push_back(owned.back().get());
    std::vector<RefSeq> refs(states.size());
    EXPECT_EQ(step_vs_reference(gpu, c, 0, states, refs, {5000, 700, 1}, 41, 1.0f, false), 0.0) << "prefill";
    for (int s = 0; s < 3; ++s)
      EXPECT_LT(step_vs_reference(gpu, c, 0, states, refs, {1, 1, 1}, 50 + s), kBf16Tol) << "decode " << s;
  }
}

// ---- against the CPU backend (the reference implementation) -------------------------------

class CpuTwin {
 public:
  explicit CpuTwin(const ModelConfig& c) : model_(mmx::make_random_model(c, 5)) {
    mmx::BackendOptions opts;
    opts.kind = "cpu";
    opts.threads = 2;
    be_ = mmx::create_backend(opts);
    be_->prepare(*model_);
  }
  mmx::Backend& be() { return *be_; }
  std::vector<float> lightning(int layer, const Bf16Values& qkv, const StepBatch& b, int64_t cols) {
    be_->begin_step();
    mmx::Act in = be_->alloc(b.total_tokens(), int64_t(qkv.f.size()) / std::max<int64_t>(b.total_tokens(), 1));
    mmx::Act out = be_->alloc(b.total_tokens(), cols);
    be_->upload(qkv.f.data(), in);
    be_->lightning_attention(layer, in, b, out);
    std::vector<float> o(size_t(b.total_tokens() * cols));
    be_->download(out, o.data());
    return o;
  }
  std::vector<float> softmax(int layer, const Bf16Values& q, const Bf16Values& k, const Bf16Values& v,
                             const StepBatch& b, int64_t cols, int64_t kv_cols) {
    be_->begin_step();
    const int64_t T = b.total_tokens();
    mmx::Act aq = be_->alloc(T, cols), ak = be_->alloc(T, kv_cols), av = be_->alloc(T, kv_cols), ao = be_->alloc(T, cols);
    be_->upload(q.f.data(), aq);
    be_->upload(k.f.data(), ak);
    be_->upload(v.f.data(), av);
    be_->softmax_attention(layer, aq, ak, av, b, ao);
    std::vector<float> o(size_t(T * cols));
    be_->download(ao, o.data());
    return o;
  }

 private:
  std::shared_ptr<mmx::Model> model_;
  std::unique_ptr<mmx::Backend> be_;
};

std::vector<double> to_double(const std::vector<float>& f) { return std::vector<double>(f.begin(), f.end()); }

TEST_F(CudaAttentionTest, MatchesCpuBackendThroughPrefillDecodeAndSavedStates) {
  for (int64_t d : {16, 128}) {
    ModelConfig c = mmx::tiny_test_config();  // layers 0-2 lightning, 3 softmax
    c.head_dim = d;
    c.rotary_dim = d == 16 ? 8 : 64;
    CpuTwin cpu(c);
    Gpu gpu(c, 32);
    std::vector<std::unique_ptr<SeqState>> gs, cs;
    std::vector<SeqState*> gp, cp;
    for (int i = 0; i < 3; ++i) {
      gs.push_back(gpu.attn().new_state()), gp.push_back(gs.back().get());
      cs.push_back(cpu.be().new_state()), cp.push_back(cs.back().get());
    }
    const int64_t nh = c.heads, kvw = c.kv_heads * d;
    const std::vector<std::vector<int64_t>> steps = {{300, 1, 65}, {1, 129, 1}, {1, 1, 1}, {2, 1, 1}};
    for (size_t s = 0; s < steps.size(); ++s) {
      const StepBatch gb = make_batch(gp, steps[s]), cb = make_batch(cp, steps[s]);
      const int64_t T = gb.total_tokens();
      for (int layer = 0; layer < 4; ++layer) {
        const uint64_t seed = 1000 * s + uint64_t(layer);
        if (c.layer_kinds[size_t(layer)] == LayerKind::Lightning) {
          const Bf16Values qkv = random_bf16(size_t(T * 3 * nh * d), seed, 1.0f, true);
          const auto want = cpu.lightning(layer, qkv, cb, nh * d);
          EXPECT_LT(rel_err(gpu_lightning(gpu, layer, qkv, gb, nh * d), to_double(want)), kBf16Tol)
              << "lightning d=" << d << " step " << s << " layer " << layer;
        } else {
          const Bf16Values q = random_bf16(size_t(T * nh * d), seed, 1.0f, false);
          const Bf16Values k = random_bf16(size_t(T * kvw), seed + 1, 1.0f, false);
          const Bf16Values v = random_bf16(size_t(T * kvw), seed + 2, 1.0f, false);
          const auto want = cpu.softmax(layer, q, k, v, cb, nh * d, kvw);
          EXPECT_LT(rel_err(gpu_softmax(gpu, layer, q, k, v, gb, nh * d), to_double(want)), kBf16Tol)
              << "softmax d=" << d << " step " << s;
        }
      }
      advance(gb);
      advance(cb);
    }
    for (size_t i = 0; i < gp.size(); ++i) {
      std::vector<uint8_t> gi, ci;
      gpu.attn().save_state(*gp[i], &gi);
      cpu.be().save_state(*cp[i], &ci);
      ASSERT_EQ(gi.size(), ci.size());
      for (int layer = 0; layer < 4; ++layer) {
        const bool lightning = c.layer_kinds[size_t(layer)] == LayerKind::Lightning;
        EXPECT_LT(rel_err(image_layer(c, gi, layer), to_double(image_layer(c, ci, layer))),
                  lightning ? kStateTol : kBf16Tol)
            << "saved state d=" << d << " sequence " << i << " layer " << layer;
        if (!lightning) {
          EXPECT_LT(rel_err(image_layer(c, gi, layer, true), to_double(image_layer(c, ci, layer, true))), kBf16Tol)
              << "saved values d=" << d << " sequence " << i;
        }
      }
    }
  }
}

TEST_F(CudaAttentionTest, StatesMoveBetweenBackendsAndClonesContinueIdentically) {
  const ModelConfig c = mmx::tiny_test_config();
  CpuTwin cpu(c);
  Gpu gpu(c, 16);
  const int64_t nh = c.heads, d = c.head_dim, kvw = c.kv_heads * d;
  auto g = gpu.attn().new_state();
  // Build a state on the GPU (100 tokens through every layer), move it to the CPU, clone it
  // on the GPU, then run one more step everywhere: all three must agree.
  auto run_gpu = [&](SeqState* st, int64_t n, uint64_t seed, std::vector<std::vector<float>>* outs) {
    const StepBatch b = make_batch({st}, {n});
    for (int layer = 0; layer < 4; ++layer) {
      if (c.layer_kinds[size_t(layer)] == LayerKind::Lightning)
        outs->push_back(gpu_lightning(gpu, layer, random_bf16(size_t(n * 3 * nh * d), seed + layer, 1.0f, true), b, nh * d));
      else
        outs->push_back(gpu_softmax(gpu, layer, random_bf16(size_t(n * nh * d), seed + 10, 1.0f, false),
                                    random_bf16(size_t(n * kvw), seed + 11, 1.0f, false),
                                    random_bf16(size_t(n * kvw), seed + 12, 1.0f, false), b, nh * d));
    }
    advance(b);
  };
  std::vector<std::vector<float>> ignored, from_g, from_clone;
  run_gpu(g.get(), 100, 1, &ignored);
  std::vector<uint8_t> image;
  gpu.attn().save_state(*g, &image);
  auto on_cpu = cpu.be().load_state(image.data(), image.size());
  EXPECT_EQ(on_cpu->tokens, 100);
  auto clone = gpu.attn().clone_state(*g);
  auto reloaded = gpu.attn().load_state(image.data(), image.size());
  EXPECT_EQ(clone->tokens, 100);
  EXPECT_EQ(reloaded->tokens, 100);

  run_gpu(g.get(), 20, 7, &from_g);
  run_gpu(clone.get(), 20, 7, &from_clone);
  ASSERT_EQ(from_g.size(), from_clone.size());
  for (size_t i = 0; i < from_g.size(); ++i) EXPECT_EQ(from_g[i], from_clone[i]) << "clone diverged at layer " << i;

  // The CPU continues from the GPU's saved state to the same outputs (up to bf16).
  const StepBatch cb = make_batch({on_cpu.get()}, {20});
  for (int layer = 0; layer < 4; ++layer) {
    const uint64_t seed = 7;
    std::vector<float> want;
    if (c.layer_kinds[size_t(layer)] == LayerKind::Lightning)
      want = cpu.lightning(layer, random_bf16(size_t(20 * 3 * nh * d), seed + layer, 1.0f, true), cb, nh * d);
    else
      want = cpu.softmax(layer, random_bf16(size_t(20 * nh * d), seed + 10, 1.0f, false),
                         random_bf16(size_t(20 * kvw), seed + 11, 1.0f, false),
                         random_bf16(size_t(20 * kvw), seed + 12, 1.0f, false), cb, nh * d, kvw);
    EXPECT_LT(rel_err(from_g[size_t(layer)], to_double(want)), kBf16Tol) << "cpu continuation, layer " << layer;
  }
  // A GPU state reloaded from the image continues exactly like the original: the image holds
  // the fp32 S and the bf16 keys/values widened to fp32, both of which round-trip exactly.
  std::vector<std::vector<float>> from_reloaded;
  run_gpu(reloaded.get(), 20, 7, &from_reloaded);
  for (size_t i = 0; i < from_g.size(); ++i) EXPECT_EQ(from_reloaded[i], from_g[i]) << "reloaded state, layer " << i;
}

// ---- bookkeeping and errors -----------------------------------------------------------------

TEST(CudaAttentionPlan, DecodeSplitsCoverTheCacheInWholeTiles) {  // host-only: runs without a GPU
  for (int64_t len : {1, 63, 64, 65, 5000, 131072, 1000000})
    for (int seqs : {1, 7, 64})
      for (int kv_heads : {1, 8}) {
        const mmx::cuda::DecodeSplits sp = mmx::cuda::plan_decode_splits(len, seqs, 64, kv_heads, 264);
        EXPECT_EQ(sp.split_tokens % mmx::cuda::kFlashTileRows, 0);
        EXPECT_GE(int64_t(sp.split_tokens) * sp.max_splits, len) << len;
        EXPECT_LT(int64_t(sp.split_tokens) * (sp.max_splits - 1), len) << "an empty split, len " << len;
        // About the requested CTA count once the cache is long enough to split (rounding the
        // split to whole tiles may cost a few).
        const int64_t head_blocks = (64 / kv_heads + 15) / 16;
        if (len >= 131072) EXPECT_GE(int64_t(sp.max_splits) * seqs * kv_heads * head_blocks, 264 * 3 / 4);
      }
}

TEST_F(CudaAttentionTest, StateBytesCountsLightningStatesTableAndPages) {
  const ModelConfig c = make_config(4, 2, 16, {LayerKind::Lightning, LayerKind::Softmax, LayerKind::Lightning});
  Gpu gpu(c, 16);
  const uint64_t lightning = 2ull * 4 * 16 * 16 * 4;
  const uint64_t table = uint64_t((c.max_positions + 15) / 16) * sizeof(void*);
  const uint64_t page = 1ull * 2 * 2 * 16 * 16 * 2;  // one softmax layer: K and V, 2 kv heads
  EXPECT_EQ(gpu.attn().state_bytes(0), lightning + table);
  EXPECT_EQ(gpu.attn().state_bytes(1), lightning + table + page);
  EXPECT_EQ(gpu.attn().state_bytes(16), lightning + table + page);
  EXPECT_EQ(gpu.attn().state_bytes(17), lightning + table + 2 * page);
}

template <class Fn>
void expect_code(Code code, Fn&& fn) {
  try {
    fn();
    ADD_FAILURE() << "expected mmx::Error " << mmx::code_name(code);
  } catch (const mmx::Error& e) {
    EXPECT_EQ(e.code(), code) << e.what();
  }
}

TEST_F(CudaAttentionTest, RejectsWrongLayersForeignStatesAndOverlongSequences) {
  ModelConfig c = make_config(4, 2, 16, {LayerKind::Lightning, LayerKind::Softmax});
  c.max_positions = 100;
  Gpu gpu(c, 16), other(c, 16);
  auto st = gpu.attn().new_state();
  auto foreign = other.attn().new_state();
  auto buf = gpu.poisoned(4096);
  expect_code(Code::InvalidArgument, [&] { gpu.attn().lightning(1, buf->get(), make_batch({st.get()}, {1}), buf->get()); });
  expect_code(Code::InvalidArgument,
              [&] { gpu.attn().softmax(0, buf->get(), buf->get(), buf->get(), make_batch({st.get()}, {1}), buf->get()); });
  expect_code(Code::InvalidArgument,
              [&] { gpu.attn().lightning(0, buf->get(), make_batch({foreign.get()}, {1}), buf->get()); });
  expect_code(Code::InvalidArgument,
              [&] { gpu.attn().lightning(0, buf->get(), make_batch({st.get(), st.get()}, {1, 1}), buf->get()); });
  auto big = gpu.poisoned(size_t(101 * 4 * 16));
  expect_code(Code::Capacity,
              [&] { gpu.attn().softmax(1, big->get(), big->get(), big->get(), make_batch({st.get()}, {101}), big->get()); });
  std::vector<uint8_t> junk(64, 0);
  expect_code(Code::Format, [&] { gpu.attn().load_state(junk.data(), junk.size()); });
}

}  // namespace
