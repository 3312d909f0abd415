// bench_attention: the CUDA attention ops at MiniMax-01 shape (64 query heads x 128, 8 KV
// heads) on one GPU, each next to its floor and the peer figure from
// ../shared/anchors/README.md (measured on the lent H100):
//   lightning prefill, T = 8k / 32k / 128k     vs flash-linear-attention 17.2 M tokens/s
//   lightning decode step, B = 1 / 16 / 64     vs the 4 MiB-per-sequence state floor (and fla)
//   softmax prefill, T = 8k / 32k / 128k       vs PyTorch SDPA 1.97 / 28.6 / 507 ms
//   softmax decode, 1 query vs 128k KV         vs PyTorch SDPA 194 us
// Floors: bytes / 3.0 TB/s and FLOPs / 700 TFLOP/s (the measured copy and GEMM ceilings),
// the larger of the two. Times are medians of event-timed repetitions after a warm-up.
//
// Usage: bench_attention [--json FILE] [--quick]   (--quick: T <= 32k, fewer repetitions)
#include <cuda_runtime.h>

#include <nlohmann/json.hpp>

#include <algorithm>
#include <cmath>
#include <cstdio>
#include <cstring>
#include <fstream>
#include <functional>
#include <memory>
#include <random>
#include <string>
#include <vector>

#include "backend/cuda/attention.h"
#include "backend/cuda/device_memory.h"
#include "core/dtype.h"
#include "core/error.h"
#include "kernels/cuda_check.h"

namespace {

using nlohmann::json;
constexpr double kBandwidth = 3.0e12;  // bytes/s, device copy ceiling
constexpr double kMatrixRate = 700e12;  // FLOP/s, cuBLAS bf16 ceiling
constexpr int64_t kHeads = 64, kKvHeads = 8, kDim = 128;

struct Options {
  std::string json_path;
  bool quick = false;
};

// A device buffer with a growing scratch allocator and one stream: what CudaBackend hands to
// CudaAttention, in miniature.
class Device {
 public:
  Device() { MMX_CUDA(cudaStreamCreateWithFlags(&stream_, cudaStreamNonBlocking)); }
  ~Device() {
    cudaStreamSynchronize(stream_);
    for (void* p : owned_) cudaFree(p);
    cudaFree(scratch_);
    cudaStreamDestroy(stream_);
  }
  cudaStream_t stream() const { return stream_; }
  mmx::cuda::AttentionEnv env() {
    mmx::cuda::AttentionEnv e;
    e.device = 0;
    e.stream = stream_;
    e.scratch = [this](size_t bytes) {
      if (bytes > scratch_bytes_) {
        MMX_CUDA(cudaStreamSynchronize(stream_));
        MMX_CUDA(cudaFree(scratch_));
        scratch_ = nullptr;
        MMX_CUDA(cudaMalloc(&scratch_, bytes));
        scratch_bytes_ = bytes;
      }
      return scratch_;
    };
    e.upload = [this](const void* src, size_t bytes, void* dst) { staging_.upload(src, bytes, dst, stream_); };
    return e;
  }
  // n bf16 values of N(0,1) (SiLU'd when silu), a random 8 MiB block repeated: real data,
  // never zeros, without generating gigabytes on the host.
  void* random_bf16(size_t n, uint64_t seed, bool silu) {
    void* p = nullptr;
    MMX_CUDA(cudaMalloc(&p, n * 2));
    owned_.push_back(p);
    const size_t block = std::min<size_t>(n, size_t(1) << 22);
    std::vector<uint16_t> host(block);
    std::mt19937_64 rng(seed);
    std::normal_distribution<float> dist(0.0f, 1.0f);
    for (auto& h : host) {
      float x = dist(rng);
      h = mmx::f32_to_bf16(silu ? x / (1.0f + std::exp(-x)) : x);
    }
    for (size_t at = 0; at < n; at += block)
      MMX_CUDA(cudaMemcpyAsync(static_cast<uint16_t*>(p) + at, host.data(), std::min(block, n - at) * 2,
                               cudaMemcpyHostToDevice, stream_));
    MMX_CUDA(cudaStreamSynchronize(stream_));  // `host` dies here
    return p;
  }
  void* zeros_bf16(size_t n) {
    void* p = nullptr;
    MMX_CUDA(cudaMalloc(&p, n * 2));
    owned_.push_back(p);
    MMX_CUDA(cudaMemsetAsync(p, 0, n * 2, stream_));
    return p;
  }
  void release_all() {
    MMX_CUDA(cudaStreamSynchronize(stream_));
    for (void* p : owned_) cudaFree(p);
    owned_.clear();
  }

  // Median over `reps` of the time of `iters` back-to-back calls of fn, per call, in us.
  // setup (untimed) runs before every repetition and warm-up.
  double time_us(const std::function<void()>& fn, int reps, int iters = 1, int warmup = 2,
                 const std::function<void()>& setup = {}) {
    for (int i = 0; i < warmup; ++i) {
      if (setup) setup();
      fn();
    }
    cudaEvent_t a, b;
    MMX_CUDA(cudaEventCreate(&a));
    MMX_CUDA(cudaEventCreate(&b));
    std::vector<double> t;
    for (int r = 0; r < reps; ++r) {
      if (setup) setup();
      MMX_CUDA(cudaEventRecord(a, stream_));
      for (int i = 0; i < iters; ++i) fn();
      MMX_CUDA(cudaEventRecord(b, stream_));
      MMX_CUDA(cudaEventSynchronize(b));
      float ms = 0;
      MMX_CUDA(cudaEventElapsedTime(&ms, a, b));
      t.push_back(1e3 * ms / iters);
    }
    cudaEventDestroy(a);
    cudaEventDestroy(b);
    std::sort(t.begin(), t.end());
    return t[t.size() / 2];
  }

 private:
  cudaStream_t stream_ = nullptr;
  void* scratch_ = nullptr;
  size_t scratch_bytes_ = 0;
  std::vector<void*> owned_;
  mmx::cuda::HostStaging staging_;  // per-call descriptors, as CudaBackend uploads them
};

mmx::ModelConfig bench_config(int64_t max_positions) {
  mmx::ModelConfig c;
  c.hidden = 6144;
  c.layers = 2;  // one lightning layer (decay of layer 0 of 2) and one softmax layer
  c.heads = kHeads;
  c.kv_heads = kKvHeads;
  c.head_dim = kDim;
  c.rotary_dim = 64;
  c.rope_theta = 10000000.0;
  c.max_positions = max_positions;
  c.layer_kinds = {mmx::LayerKind::Lightning, mmx::LayerKind::Softmax};
  return c;
}

mmx::StepBatch batch_of(const std::vector<mmx::SeqState*>& states, int64_t n) {
  mmx::StepBatch b;
  for (mmx::SeqState* s : states) b.seqs.push_back({s, n, s->tokens});
  return b;
}

json result(const std::string& name, double us, double floor_us, const std::string& peer, double peer_us) {
  std::printf("%-34s %11.1f us  floor %10.1f us (x%5.2f)", name.c_str(), us, floor_us, us / floor_us);
  if (peer_us > 0) std::printf("  %s %9.1f us (x%5.2f)", peer.c_str(), peer_us, us / peer_us);
  std::printf("\n");
  std::fflush(stdout);
  return {{"name", name}, {"time_us", us}, {"floor_us", floor_us}, {"peer", peer}, {"peer_us", peer_us}};
}

void lightning_benches(Device& dev, const Options& o, json* out) {
  const mmx::ModelConfig c = bench_config(1 << 18);
  mmx::cuda::CudaAttention attn(c, dev.env());
  const int64_t qkv_cols = 3 * kHeads * kDim, out_cols = kHeads * kDim;
  std::vector<int64_t> lengths = {8192, 32768};
  if (!o.quick) lengths.push_back(131072);
  for (int64_t T : lengths) {
    void* qkv = dev.random_bf16(size_t(T * qkv_cols), uint64_t(T), true);
    void* o_buf = dev.zeros_bf16(size_t(T * out_cols));
    auto st = attn.new_state();
    const mmx::StepBatch b = batch_of({st.get()}, T);
    const double us = dev.time_us([&] { attn.lightning(0, qkv, b, o_buf); }, o.quick ? 3 : 5);
    const double bytes = double(T) * (qkv_cols + out_cols) * 2;
    // Per 64-token block and head: Q K^T, A V, Q S and K^T V, each 2*64*128*(64 or 128) FLOPs.
    const double flops = double(T) / 64 * kHeads * 2.0 * 64 * kDim * (64 + 64 + 128 + 128);
    const double floor_us = 1e6 * std::max(bytes / kBandwidth, flops / kMatrixRate);
    json r = result("lightning prefill T=" + std::to_string(T / 1024) + "k", us, floor_us, "fla 17.2M tok/s",
                    1e6 * double(T) / 17.2e6);
    r["tokens_per_s"] = double(T) / (us * 1e-6);
    std::printf("%-34s %11.2f M tokens/s\n", "", double(T) / us);
    out->push_back(r);
    dev.release_all();
  }
  const double fla_decode_us[] = {69, 116, 200};
  int i = 0;
  for (int64_t B : {1, 16, 64}) {
    void* qkv = dev.random_bf16(size_t(B * qkv_cols), uint64_t(B), true);
    void* o_buf = dev.zeros_bf16(size_t(B * out_cols));
    std::vector<std::unique_ptr<mmx::SeqState>> owned;
    std::vector<mmx::SeqState*> states;
    for (int64_t s = 0; s < B; ++s) owned.push_back(attn.new_state()), states.push_back(owned.back().get());
    const mmx::StepBatch b = batch_of(states, 1);
    const double us = dev.time_us([&] { attn.lightning(0, qkv, b, o_buf); }, 5, 50);
    const double floor_us = 1e6 * double(B) * kHeads * kDim * kDim * 4 * 2 / kBandwidth;
    out->push_back(result("lightning decode B=" + std::to_string(B), us, floor_us, "fla", fla_decode_us[i++]));
    owned.clear();
    dev.release_all();
  }
}

void softmax_benches(Device& dev, const Options& o, json* out) {
  const int64_t longest = o.quick ? 32768 : 131072;
  const mmx::ModelConfig c = bench_config(longest + 4096);
  mmx::cuda::CudaAttention attn(c, dev.env());
  const int64_t q_cols = kHeads * kDim, kv_cols = kKvHeads * kDim;
  const double sdpa_ms[] = {1.97, 28.6, 507};
  std::unique_ptr<mmx::SeqState> longest_state;
  int i = 0;
  for (int64_t T : {int64_t(8192), int64_t(32768), int64_t(131072)}) {
    if (T > longest) break;
    void* q = dev.random_bf16(size_t(T * q_cols), uint64_t(T), false);
    void* k = dev.random_bf16(size_t(T * kv_cols), uint64_t(T) + 1, false);
    void* v = dev.random_bf16(size_t(T * kv_cols), uint64_t(T) + 2, false);
    void* o_buf = dev.zeros_bf16(size_t(T * q_cols));
    std::unique_ptr<mmx::SeqState> st;
    // Every repetition prefills a fresh sequence; the previous one is freed first (untimed),
    // so its pages come back from the pool instead of new device allocations.
    auto fresh_state = [&] {
      st.reset();
      st = attn.new_state();
    };
    auto run = [&] {
      attn.softmax(1, q, k, v, batch_of({st.get()}, T), o_buf);
      st->tokens = T;
    };
    const int reps = T >= 131072 ? 1 : (o.quick ? 3 : 5);
    const double us = dev.time_us(run, reps, 1, T >= 131072 ? 0 : 1, fresh_state);
    const double flops = 2.0 * double(T) * double(T) * kDim * kHeads;  // causal QK^T + PV
    out->push_back(result("softmax prefill T=" + std::to_string(T / 1024) + "k", us, 1e6 * flops / kMatrixRate,
                          "SDPA", 1e3 * sdpa_ms[i++]));
    if (T == longest) longest_state = std::move(st);
    st.reset();
    dev.release_all();
  }
  // Decode: one query against the longest cache (it grows by one token per call).
  void* q = dev.random_bf16(size_t(q_cols), 7, false);
  void* k = dev.random_bf16(size_t(kv_cols), 8, false);
  void* v = dev.random_bf16(size_t(kv_cols), 9, false);
  void* o_buf = dev.zeros_bf16(size_t(q_cols));
  mmx::SeqState* st = longest_state.get();
  const double us = dev.time_us(
      [&] {
        attn.softmax(1, q, k, v, batch_of({st}, 1), o_buf);
        st->tokens += 1;
      },
      5, 20);
  const double bytes = double(longest) * kv_cols * 2 * 2;
  out->push_back(result("softmax decode B=1 KV=" + std::to_string(longest / 1024) + "k", us,
                        1e6 * bytes / kBandwidth, "SDPA", longest == 131072 ? 194.0 : 0.0));
  longest_state.reset();
  dev.release_all();
}

}  // namespace

int main(int argc, char** argv) {
  Options o;
  for (int i = 1; i < argc; ++i) {
    const std::string a = argv[i];
    if (a == "--json" && i + 1 < argc) {
      o.json_path = argv[++i];
    } else if (a == "--quick") {
      o.quick = true;
    } else {
      std::fprintf(stderr, "usage: bench_attention [--json FILE] [--quick]\n");
      return 2;
    }
  }
  try {
    int count = 0;
    if (cudaGetDeviceCount(&count) != cudaSuccess || count == 0) {
      std::printf("bench_attention: no CUDA device, nothing to measure\n");
      return 0;
    }
    cudaDeviceProp prop;
    MMX_CUDA(cudaGetDeviceProperties(&prop, 0));
    std::printf("bench_attention on %s: %lld heads x %lld, %lld KV heads, bf16 in/out, fp32 state\n", prop.name,
                (long long)kHeads, (long long)kDim, (long long)kKvHeads);
    Device dev;
    json results = json::array();
    lightning_benches(dev, o, &results);
    softmax_benches(dev, o, &results);
    if (!o.json_path.empty()) std::ofstream(o.json_path) << json{{"device", prop.name}, {"results", results}}.dump(2);
    return 0;
  } catch (const std::exception& e) {
    std::fprintf(stderr, "bench_attention: %s\n", e.what());
    return 1;
  }
}
