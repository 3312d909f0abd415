// bench_cuda: the CUDA backend's linear layers, MoE, lm_head, decode steps and chunked prefill
// on a real-shape MiniMax-Text-01 model (hidden 6144, 64 heads x 128, 8 KV heads, 32 experts x
// 9216, vocab 200,064), N layers (default 8: seven lightning + one softmax) with W8A16 weights
// generated on the device (Model::synthetic). Each kernel is shown next to its floor, the
// larger of bytes / 3.0 TB/s and FLOPs / 700 TFLOP/s (../shared/anchors/README.md, measured on
// the lent H100), and the M=1 shapes next to cuBLAS bf16 GEMM timed in the same run.
// Times: medians of event-timed repetitions after warm-up (steps: host wall clock, which
// includes the logits' copy to the host).
//
// Usage: bench_cuda [--layers N] [--json FILE] [--quick] [--long-prompt TOKENS]
#include <cuda_profiler_api.h>
#include <cuda_runtime.h>

#include <nlohmann/json.hpp>

#include <algorithm>
#include <chrono>
#include <cmath>
#include <cstdio>
#include <cstring>
#include <fstream>
#include <functional>
#include <string>
#include <vector>

#include "backend/cuda/cuda_backend.h"
#include "core/error.h"
#include "kernels/cuda_check.h"
#include "kernels/quantize.h"
#include "kernels/w8a16_gemm.h"
#include "model/forward.h"

namespace {

using nlohmann::json;
using mmx::Act;
constexpr double kBandwidth = 3.0e12;   // bytes/s: device copy ceiling
constexpr double kMatrixRate = 700e12;  // FLOP/s: cuBLAS bf16 ceiling

struct Options {
  int layers = 8;
  std::string json_path;
  bool quick = false;
  int64_t long_prompt = 131072;
  int64_t chunk = 4096;
  std::string only;  // one section (linear, peer, moe, lm_head, steps, small, long), for profilers
};

mmx::ModelConfig text01_config(int layers) {
  mmx::ModelConfig c;
  c.model_type = "minimax_text_01";
  c.hidden = 6144;
  c.intermediate = 9216;
  c.layers = layers;
  c.heads = 64;
  c.kv_heads = 8;
  c.head_dim = 128;
  c.rotary_dim = 64;
  c.experts = 32;
  c.top_k = 2;
  c.vocab = 200064;
  c.max_positions = 1 << 20;
  c.rope_theta = 10000000.0;
  c.lightning_alpha = c.full_alpha = c.mlp_alpha = 3.5565588200778455;
  for (int i = 0; i < layers; ++i)
    c.layer_kinds.push_back(i % 8 == 7 ? mmx::LayerKind::Softmax : mmx::LayerKind::Lightning);
  if (layers < 8) c.layer_kinds.back() = mmx::LayerKind::Softmax;  // keep one softmax layer
  return c;
}

double median(std::vector<double> v) {
  std::sort(v.begin(), v.end());
  return v.empty() ? 0 : v[v.size() / 2];
}

// Median time (ms) of fn() on `stream`, event-timed.
double time_gpu(cudaStream_t stream, const std::function<void()>& fn, int warm, int reps) {
  cudaEvent_t a, b;
  MMX_CUDA(cudaEventCreate(&a));
  MMX_CUDA(cudaEventCreate(&b));
  for (int i = 0; i < warm; ++i) fn();
  std::vector<double> t;
  for (int i = 0; i < reps; ++i) {
    MMX_CUDA(cudaEventRecord(a, stream));
    fn();
    MMX_CUDA(cudaEventRecord(b, stream));
    MMX_CUDA(cudaEventSynchronize(b));
    float ms = 0;
    MMX_CUDA(cudaEventElapsedTime(&ms, a, b));
    t.push_back(ms);
  }
  cudaEventDestroy(a);
  cudaEventDestroy(b);
  return median(t);
}

// Median host wall time (ms) of fn(), which synchronises itself.
double time_host(const std::function<void()>& fn, int warm, int reps) {
  for (int i = 0; i < warm; ++i) fn();
  std::vector<double> t;
  for (int i = 0; i < reps; ++i) {
    const auto t0 = std::chrono::steady_clock::now();
    fn();
    t.push_back(std::chrono::duration<double, std::milli>(std::chrono::steady_clock::now() - t0).count());
  }
  return median(t);
}

class Report {
 public:
  // One timed row: floor from bytes and FLOPs; ratio = time / floor.
  void row(const std::string& group, const std::string& name, double ms, double bytes,
           double flops, const std::string& note = "") {
    const double floor_ms = std::max(bytes / kBandwidth, flops / kMatrixRate) * 1e3;
    json r = {{"group", group}, {"name", name}, {"time_us", ms * 1e3}, {"bytes", bytes},
              {"flops", flops}, {"floor_us", floor_ms * 1e3}, {"note", note}};
    if (floor_ms > 0) r["ratio"] = ms / floor_ms;
    rows_.push_back(r);
    std::printf("  %-10s %-44s %11.1f us  floor %10.1f us  x%5.2f  %s\n", group.c_str(),
                name.c_str(), ms * 1e3, floor_ms * 1e3, floor_ms > 0 ? ms / floor_ms : 0.0,
                note.c_str());
    std::fflush(stdout);
  }
  void value(const std::string& key, const json& v) { extra_[key] = v; }
  void write(const std::string& path) const {
    if (path.empty()) return;
    std::ofstream f(path);
    f << json{{"rows", rows_}, {"extra", extra_}}.dump(2) << "\n";
    std::printf("wrote %s\n", path.c_str());
  }
  const std::vector<json>& rows() const { return rows_; }

 private:
  std::vector<json> rows_;
  json extra_ = json::object();
};

struct Bench {
  Options opt;
  std::shared_ptr<mmx::Model> model;
  std::unique_ptr<mmx::Backend> owner;
  mmx::cuda::CudaBackend* be = nullptr;
  Report rep;
  int warm = 3, reps = 10;

  const mmx::ModelConfig& cfg() const { return model->config(); }
  cudaStream_t stream() const { return be->stream(); }

  Act random_act(int64_t rows, int64_t cols, uint64_t seed) {
    Act a = be->alloc(rows, cols);
    mmx::cuda::fill_uniform_bf16(static_cast<__nv_bfloat16*>(a.data), rows * cols, seed, 0.0f, 1.0f,
                                 stream());
    return a;
  }

  void linear_rows() {
    std::printf("linear layers, W8A16 (M = tokens)\n");
    const mmx::LayerWeights& L0 = model->weights().layers[0];
    const mmx::LayerWeights* S = nullptr;
    for (const auto& l : model->weights().layers)
      if (l.kind == mmx::LayerKind::Softmax) S = &l;
    std::vector<std::pair<std::string, const mmx::WeightRef*>> ws = {
        {"qkv 6144->24576", &L0.qkv},     {"out_gate 6144->8192", &L0.out_gate},
        {"out_proj 8192->6144", &L0.out_proj}, {"expert w1 6144->9216", &L0.w1[0]},
        {"expert w2 9216->6144", &L0.w2[0]}};
    if (S) {
      ws.push_back({"q 6144->8192", &S->q});
      ws.push_back({"k 6144->1024", &S->k});
    }
    for (int64_t M : {int64_t(1), int64_t(4), int64_t(8), int64_t(16), int64_t(64), int64_t(256), int64_t(4096)}) {
      for (const auto& [name, w] : ws) {
        const bool main_m = M == 1 || M == 4096;
        if (!main_m && w != &L0.qkv && w != &L0.w2[0]) continue;  // the scaling, on two shapes
        be->begin_step();
        Act x = random_act(M, w->cols, 11), out = be->alloc(M, w->rows);
        const double ms = time_gpu(stream(), [&] { be->linear(x, *w, out); }, warm, reps);
        rep.row("linear", name + " M=" + std::to_string(M), ms, linear_bytes(*w, M), linear_flops(*w, M),
                M <= be->linear_runner().gemv_max_rows ? "int8 GEMV"
                : M <= be->linear_runner().mma_max_rows ? "int8 tensor-core" : "dequant + cuBLASLt");
      }
    }
    // The paths side by side around the switches between them (GEMV / tensor-core at small M,
    // tensor-core / dequant + cuBLASLt at large M).
    using Path = mmx::cuda::LinearRunner::Path;
    for (const mmx::WeightRef* w : {&L0.qkv, &L0.w2[0]}) {
      const mmx::cuda::DeviceMatrix& m = be->device_weights().linear(*w);
      for (int64_t M : {int64_t(4), int64_t(8), int64_t(16), int64_t(64), int64_t(128), int64_t(256), int64_t(1024)}) {
        const std::vector<Path> paths = M <= mmx::cuda::kGemvMaxRows ? std::vector<Path>{Path::Gemv, Path::Mma}
                                                                     : std::vector<Path>{Path::Mma, Path::Gemm};
        for (Path path : paths) {
          be->begin_step();
          Act x = random_act(M, w->cols, 12), out = be->alloc(M, w->rows);
          const double ms = time_gpu(stream(), [&] {
            be->linear_runner().run(static_cast<const __nv_bfloat16*>(x.data), M, m,
                                    static_cast<__nv_bfloat16*>(out.data), stream(), path);
          }, warm, reps);
          rep.row("linear", std::string(w == &L0.qkv ? "qkv" : "expert w2") + " M=" + std::to_string(M),
                  ms, linear_bytes(*w, M), linear_flops(*w, M),
                  path == Path::Gemv ? "forced GEMV"
                  : path == Path::Mma ? "forced tensor-core" : "forced dequant + cuBLASLt");
        }
      }
    }
  }

  static double linear_bytes(const mmx::WeightRef& w, int64_t M) {
    return double(w.rows) * double(w.cols) + 4.0 * double(w.rows) +
           2.0 * double(M) * double(w.cols + w.rows);
  }
  static double linear_flops(const mmx::WeightRef& w, int64_t M) {
    return 2.0 * double(M) * double(w.rows) * double(w.cols);
  }

  // cuBLAS bf16 (cuBLASLt, fp32 compute) and the bf16 GEMV at M=1 on the same shapes: the
  // peer figures of ../shared/anchors/README.md, measured in this run.
  void peer_rows() {
    std::printf("M=1 peers: cuBLASLt bf16 GEMM vs the bf16 GEMV kernel\n");
    const int64_t H = cfg().hidden;
    struct Shape { const char* name; int64_t N, K; };
    const Shape shapes[] = {{"qkv 6144->24576", 3 * 64 * 128, H}, {"expert w1 6144->9216", 9216, H},
                            {"expert w2 9216->6144", H, 9216}, {"lm_head 6144->200064", cfg().vocab, H}};
    size_t max_elems = 0;
    for (const Shape& s : shapes) max_elems = std::max(max_elems, size_t(s.N * s.K));
    void *w = nullptr, *x = nullptr, *out = nullptr, *ws = nullptr;
    const size_t ws_bytes = size_t(32) << 20;
    MMX_CUDA(cudaMalloc(&w, max_elems * 2));
    MMX_CUDA(cudaMalloc(&x, size_t(64) << 10));
    MMX_CUDA(cudaMalloc(&out, size_t(cfg().vocab) * 4));
    MMX_CUDA(cudaMalloc(&ws, ws_bytes));
    auto* wb = static_cast<__nv_bfloat16*>(w);
    mmx::cuda::fill_uniform_bf16(wb, int64_t(max_elems), 5, 0.0f, 0.02f, stream());
    mmx::cuda::fill_uniform_bf16(static_cast<__nv_bfloat16*>(x), 16 << 10, 6, 0.0f, 1.0f, stream());
    {
      mmx::cuda::LtGemm lt(ws, ws_bytes);
      for (const Shape& s : shapes) {
        const bool f32 = std::string(s.name).rfind("lm_head", 0) == 0;
        const double ms = time_gpu(stream(), [&] {
          lt.matmul(x, s.K, w, s.K, out, s.N, f32, 1, s.N, s.K, stream());
        }, warm, reps);
        const double bytes = 2.0 * double(s.N) * double(s.K);
        rep.row("peer", std::string("cuBLASLt bf16 ") + s.name, ms, bytes, 2.0 * s.N * s.K,
                "GB/s " + std::to_string(int(bytes / ms * 1e-6)));
        if (f32) continue;
        mmx::cuda::DeviceMatrix m;
        m.dtype = mmx::DType::BF16;
        m.rows = s.N;
        m.cols = s.K;
        m.data = w;
        const double gm = time_gpu(stream(), [&] {
          mmx::cuda::gemv(static_cast<const __nv_bfloat16*>(x), 1, m,
                          static_cast<__nv_bfloat16*>(out), stream());
        }, warm, reps);
        rep.row("peer", std::string("bf16 GEMV ") + s.name, gm, bytes, 2.0 * s.N * s.K,
                "GB/s " + std::to_string(int(bytes / gm * 1e-6)));
      }
    }
    MMX_CUDA(cudaStreamSynchronize(stream()));
    cudaFree(w);
    cudaFree(x);
    cudaFree(out);
    cudaFree(ws);
  }

  void moe_rows() {
    std::printf("MoE sublayer (router + top-2 + experts + combine)\n");
    const double E = double(cfg().experts), k = double(cfg().top_k);
    const double H = double(cfg().hidden), F = double(cfg().intermediate);
    const double expert_bytes = 3.0 * H * F + 4.0 * 3.0 * (F + H);  // int8 + scales
    auto& tune = be->tuning();
    const auto defaults = tune;
    auto path_name = [&](int64_t T) {
      return T <= tune.moe_gemv_max_tokens ? "grouped GEMV"  // the bench's weights are int8
             : T <= tune.moe_mma_max_tokens ? "grouped tensor-core" : "per-expert dequant + cuBLASLt";
    };
    auto time_moe = [&](int64_t T, const std::string& note) {
      be->begin_step();
      Act x = random_act(T, cfg().hidden, 21), out = be->alloc(T, cfg().hidden);
      const mmx::LayerWeights& lw = model->weights().layers[0];
      const double ms = time_gpu(stream(), [&] { be->moe(lw, x, out); }, warm, reps);
      // Expected distinct experts for T tokens picking k of E (uniform routing).
      const double active = E * (1.0 - std::pow(1.0 - k / E, double(T)));
      const double bytes = active * expert_bytes + 4.0 * T * H;
      const double flops = 2.0 * double(T) * k * 3.0 * H * F;
      rep.row("moe", "T=" + std::to_string(T), ms, bytes, flops, note);
    };
    for (int64_t T : {int64_t(1), int64_t(16), int64_t(64), int64_t(256), int64_t(1024), int64_t(4096)})
      time_moe(T, path_name(T));
    // The grouped GEMV and the grouped tensor-core kernel side by side at decode batch sizes,
    // where the first switch is set.
    for (int64_t T : {int64_t(4), int64_t(8), int64_t(16), int64_t(32), int64_t(64)}) {
      tune.moe_gemv_max_tokens = 1 << 30;
      time_moe(T, "forced grouped GEMV");
      tune.moe_gemv_max_tokens = 0;
      tune.moe_mma_max_tokens = 1 << 30;
      time_moe(T, "forced grouped tensor-core");
      tune = defaults;
    }
    // The two large-batch paths side by side, where the second switch is set.
    for (int64_t T : {int64_t(256), int64_t(1024), int64_t(4096)}) {
      tune.moe_gemv_max_tokens = 0;
      tune.moe_mma_max_tokens = 1 << 30;
      time_moe(T, "forced grouped tensor-core");
      tune.moe_mma_max_tokens = 0;
      time_moe(T, "forced per-expert dequant + cuBLASLt");
      tune = defaults;
    }
  }

  void lm_head_rows() {
    std::printf("lm_head (bf16, fp32 logits to the host)\n");
    std::vector<float> logits;
    for (int64_t R : {int64_t(1), int64_t(64)}) {
      be->begin_step();
      Act x = random_act(R, cfg().hidden, 31);
      std::vector<int32_t> rows(static_cast<size_t>(R));
      for (int64_t i = 0; i < R; ++i) rows[size_t(i)] = int32_t(i);
      logits.resize(size_t(R * cfg().vocab));
      const double ms = time_gpu(stream(), [&] { be->logits(x, rows, logits.data()); }, warm, reps);
      const double bytes = 2.0 * double(cfg().vocab) * double(cfg().hidden) + 4.0 * R * cfg().vocab;
      rep.row("lm_head", "rows=" + std::to_string(R), ms, bytes,
              2.0 * R * double(cfg().vocab) * double(cfg().hidden), "incl. copy to host");
    }
  }

  // Bytes one decode step must stream at least: every attention weight, the experts the batch
  // touches, lm_head, and the lightning states read and written.
  double decode_floor_bytes(int64_t B) const {
    const auto& c = cfg();
    const double H = double(c.hidden), D = double(c.heads * c.head_dim), Dkv = double(c.kv_heads * c.head_dim);
    double bytes = 2.0 * double(c.vocab) * H;
    const double active = double(c.experts) * (1.0 - std::pow(1.0 - double(c.top_k) / double(c.experts), double(B)));
    for (const auto& kind : c.layer_kinds) {
      bytes += kind == mmx::LayerKind::Lightning ? (3 * D * H + D * H + H * D) + 2.0 * B * double(c.heads) * double(c.head_dim * c.head_dim) * 4.0
                                                 : (D * H + 2 * Dkv * H + H * D);
      bytes += active * 3.0 * H * double(c.intermediate);
    }
    return bytes;
  }

  void step_rows() {
    std::printf("whole steps (host wall clock, logits to the host)\n");
    mmx::Forward fwd(*model, *be);
    const int64_t V = cfg().vocab;
    std::vector<float> logits;
    for (int64_t B : {int64_t(1), int64_t(16), int64_t(64)}) {
      std::vector<std::unique_ptr<mmx::SeqState>> states;
      mmx::StepBatch prime;
      for (int64_t i = 0; i < B; ++i) {
        states.push_back(be->new_state());
        prime.seqs.push_back({states.back().get(), 16, 0});
      }
      std::vector<int32_t> ids(static_cast<size_t>(16 * B));
      for (size_t i = 0; i < ids.size(); ++i) ids[i] = int32_t((i * 7919) % size_t(V));
      fwd.run(prime, ids, {}, &logits);  // a short context per sequence
      std::vector<int32_t> tok(static_cast<size_t>(B)), rows(static_cast<size_t>(B));
      for (int64_t i = 0; i < B; ++i) {
        tok[size_t(i)] = int32_t((i * 31 + 5) % V);
        rows[size_t(i)] = int32_t(i);
      }
      auto step = [&] {
        mmx::StepBatch d;
        for (auto& s : states) d.seqs.push_back({s.get(), 1, s->tokens});
        fwd.run(d, tok, rows, &logits);
      };
      // Op by op (the default), then as CUDA graphs (CudaBackend::Tuning::decode_graphs).
      const double ms = time_host(step, warm, reps);
      rep.row("decode", "step B=" + std::to_string(B), ms, decode_floor_bytes(B), 0,
              std::to_string(int(double(B) / ms * 1e3)) + " tok/s");
      be->tuning().decode_graphs = true;
      const double graph_ms = time_host(step, warm, reps);
      be->tuning().decode_graphs = false;
      rep.row("decode", "step B=" + std::to_string(B) + " CUDA graph", graph_ms, decode_floor_bytes(B), 0,
              std::to_string(int(double(B) / graph_ms * 1e3)) + " tok/s (" +
                  std::to_string(int(100.0 * (ms - graph_ms) / ms)) + "% faster than op by op)");
      // How long the host takes to queue one decode step op by op (no logits, so nothing waits
      // for the device) against the step's device time. Well below it, the device never waits
      // for a launch, and what CUDA graphs save is the gaps between dependent kernels.
      std::vector<double> queue_ms, total_ms;
      for (int i = 0; i < (opt.quick ? 3 : 7); ++i) {
        MMX_CUDA(cudaStreamSynchronize(stream()));
        const auto t0 = std::chrono::steady_clock::now();
        mmx::StepBatch d;
        for (auto& s : states) d.seqs.push_back({s.get(), 1, s->tokens});
        fwd.run(d, tok, {}, nullptr);
        const auto t1 = std::chrono::steady_clock::now();
        MMX_CUDA(cudaStreamSynchronize(stream()));
        const auto t2 = std::chrono::steady_clock::now();
        queue_ms.push_back(std::chrono::duration<double, std::milli>(t1 - t0).count());
        total_ms.push_back(std::chrono::duration<double, std::milli>(t2 - t0).count());
      }
      const double q = median(queue_ms), t = median(total_ms);
      std::printf("  %-10s %-44s host queues it in %.3f ms of %.3f ms (%.0f%%)\n", "decode",
                  ("step B=" + std::to_string(B) + " launch cost").c_str(), q, t, 100.0 * q / t);
      rep.value("decode_B" + std::to_string(B) + "_host_queue_ms", q);
      rep.value("decode_B" + std::to_string(B) + "_no_logits_ms", t);
    }
    // One prefill chunk from an empty state, at the engine's default chunk (512 tokens), at
    // opt.chunk, and larger: the MoE gives each expert about T*k/E rows, and its kernels only
    // approach the matrix rate with hundreds of rows per expert, so the chunk size sets the
    // prefill rate (MMX_CTX_OPT_PREFILL_CHUNK and MMX_CTX_OPT_STEP_TOKEN_BUDGET).
    for (int64_t T : {int64_t(512), opt.chunk, 4 * opt.chunk}) {
      std::vector<int32_t> ids(static_cast<size_t>(T));
      for (int64_t i = 0; i < T; ++i) ids[size_t(i)] = int32_t((i * 104729) % V);
      const double ms = time_host([&] {
        auto st = be->new_state();
        mmx::StepBatch b;
        b.seqs.push_back({st.get(), T, 0});
        fwd.run(b, ids, {int32_t(T - 1)}, &logits);
      }, 1, opt.quick ? 2 : 3);
      rep.row("prefill", "chunk T=" + std::to_string(T), ms, 0, prefill_flops(T),
              std::to_string(int(double(T) / ms * 1e3)) + " tok/s (floor: matrix FLOPs)");
    }
  }

  // Decode steps of a small model (the bundled demo's shapes, W8A16): its kernels take a few
  // microseconds each, so a step is bound by how fast the host issues them rather than by the
  // device; where CUDA graphs should pay, if anywhere.
  void small_model_rows() {
    std::printf("small model (hidden 256, 8 layers, 4 experts): decode steps op by op / as CUDA graphs\n");
    mmx::ModelConfig c = text01_config(8);
    c.hidden = 256;
    c.intermediate = 256;
    c.heads = 8;
    c.kv_heads = 2;
    c.head_dim = 32;
    c.rotary_dim = 16;
    c.experts = 4;
    c.vocab = 4096;
    c.max_positions = 65536;
    c.lightning_alpha = c.full_alpha = c.mlp_alpha = 2.0;
    c.layer_kinds.assign(8, mmx::LayerKind::Lightning);
    c.layer_kinds[3] = c.layer_kinds[7] = mmx::LayerKind::Softmax;
    auto small = mmx::Model::synthetic(c);
    mmx::BackendOptions bo;
    bo.kind = "cuda";
    bo.weight_dtype = "int8";
    auto owner_small = mmx::create_backend(bo);
    auto* sb = dynamic_cast<mmx::cuda::CudaBackend*>(owner_small.get());
    sb->prepare(*small);
    mmx::Forward fwd(*small, *sb);
    std::vector<float> logits;
    for (int64_t B : {int64_t(1), int64_t(16)}) {
      std::vector<std::unique_ptr<mmx::SeqState>> states;
      mmx::StepBatch prime;
      for (int64_t i = 0; i < B; ++i) {
        states.push_back(sb->new_state());
        prime.seqs.push_back({states.back().get(), 16, 0});
      }
      const std::vector<int32_t> ids(static_cast<size_t>(16 * B), 7), tok(static_cast<size_t>(B), 5);
      std::vector<int32_t> rows;
      for (int64_t i = 0; i < B; ++i) rows.push_back(int32_t(i));
      fwd.run(prime, ids, {}, &logits);
      auto step = [&] {
        mmx::StepBatch d;
        for (auto& st : states) d.seqs.push_back({st.get(), 1, st->tokens});
        fwd.run(d, tok, rows, &logits);
      };
      double ms[2];
      for (int graphs = 0; graphs < 2; ++graphs) {
        sb->tuning().decode_graphs = graphs == 1;
        ms[graphs] = time_host(step, warm, 4 * reps);
      }
      sb->tuning().decode_graphs = false;
      rep.row("small", "decode step B=" + std::to_string(B) + " op by op", ms[0], 0, 0,
              std::to_string(int(double(B) / ms[0] * 1e3)) + " tok/s");
      rep.row("small", "decode step B=" + std::to_string(B) + " CUDA graph", ms[1], 0, 0,
              std::to_string(int(double(B) / ms[1] * 1e3)) + " tok/s (" +
                  std::to_string(int(100.0 * (ms[0] - ms[1]) / ms[0])) + "% faster than op by op)");
    }
  }

  // FLOPs of a T-token prefill from an empty state: the weight products (experts: top-k per
  // token) and the causal softmax attention; the lightning core is under 1% and left out.
  double prefill_flops(int64_t T) const {
    const auto& c = cfg();
    const double H = double(c.hidden), D = double(c.heads * c.head_dim), Dkv = double(c.kv_heads * c.head_dim);
    double per_token = 0, softmax = 0;
    for (auto kind : c.layer_kinds) {
      per_token += kind == mmx::LayerKind::Lightning ? 5.0 * D * H : 2.0 * D * H + 2.0 * Dkv * H;
      per_token += double(c.top_k) * 3.0 * H * double(c.intermediate);
      if (kind == mmx::LayerKind::Softmax) softmax += 4.0 * double(T) * double(T) / 2.0 * D;
    }
    return 2.0 * double(T) * per_token + softmax;
  }

  // A long prompt in chunks, then decode: the lightning states stay the same size while the
  // softmax layers' KV cache grows with the prompt.
  void long_prompt_rows() {
    const int64_t total = opt.long_prompt, chunk = opt.chunk, V = cfg().vocab;
    std::printf("long prompt: %lld tokens in chunks of %lld\n", (long long)total, (long long)chunk);
    mmx::Forward fwd(*model, *be);
    std::vector<float> logits;
    auto st = be->new_state();
    const auto& c = cfg();
    int64_t n_lightning = 0;
    for (auto k : c.layer_kinds) n_lightning += k == mmx::LayerKind::Lightning;
    const double lightning_bytes = double(n_lightning) * double(c.heads) * double(c.head_dim * c.head_dim) * 4.0;
    size_t free0 = 0, total_mem = 0;
    MMX_CUDA(cudaMemGetInfo(&free0, &total_mem));
    json curve = json::array();
    std::vector<double> chunk_ms;
    for (int64_t p0 = 0; p0 < total; p0 += chunk) {
      const int64_t n = std::min(chunk, total - p0);
      std::vector<int32_t> ids(static_cast<size_t>(n));
      for (int64_t i = 0; i < n; ++i) ids[size_t(i)] = int32_t(((p0 + i) * 2654435761ll) % V);
      mmx::StepBatch b;
      b.seqs.push_back({st.get(), n, p0});
      const auto t0 = std::chrono::steady_clock::now();
      fwd.run(b, ids, p0 + n == total ? std::vector<int32_t>{int32_t(n - 1)} : std::vector<int32_t>{}, &logits);
      MMX_CUDA(cudaStreamSynchronize(stream()));
      chunk_ms.push_back(std::chrono::duration<double, std::milli>(std::chrono::steady_clock::now() - t0).count());
      size_t free_now = 0;
      MMX_CUDA(cudaMemGetInfo(&free_now, &total_mem));
      const double state = double(be->state_bytes(st->tokens));
      curve.push_back({{"tokens", st->tokens}, {"chunk_ms", chunk_ms.back()},
                       {"lightning_state_bytes", lightning_bytes},
                       {"state_bytes", state}, {"kv_bytes", state - double(be->state_bytes(0))},
                       {"device_used_delta_bytes", double(free0) - double(free_now)}});
      if ((p0 / chunk) % 8 == 7 || p0 + n == total)
        std::printf("  %7lld tokens: chunk %8.1f ms  lightning states %7.1f MiB (fixed)  KV %8.1f MiB  device +%8.1f MiB\n",
                    (long long)st->tokens, chunk_ms.back(), lightning_bytes / 1048576.0,
                    (state - double(be->state_bytes(0))) / 1048576.0,
                    (double(free0) - double(free_now)) / 1048576.0);
    }
    double sum = 0;
    for (double m : chunk_ms) sum += m;
    rep.row("long", "prefill " + std::to_string(total) + " tokens", sum, 0, 0,
            std::to_string(int(double(total) / sum * 1e3)) + " tok/s");
    int32_t next = int32_t(std::max_element(logits.begin(), logits.end()) - logits.begin());
    const double dms = time_host([&] {
      mmx::StepBatch d;
      d.seqs.push_back({st.get(), 1, st->tokens});
      fwd.run(d, {next}, {0}, &logits);
    }, 2, 8);
    rep.row("long", "decode step at " + std::to_string(st->tokens) + " tokens", dms,
            decode_floor_bytes(1), 0, "");
    rep.value("long_prompt_curve", curve);
    rep.value("lightning_state_bytes_per_sequence", lightning_bytes);
  }
};

bool parse(int argc, char** argv, Options* o) {
  for (int i = 1; i < argc; ++i) {
    const std::string a = argv[i];
    if (a == "--json" && i + 1 < argc) o->json_path = argv[++i];
    else if (a == "--layers" && i + 1 < argc) o->layers = std::atoi(argv[++i]);
    else if (a == "--long-prompt" && i + 1 < argc) o->long_prompt = std::atoll(argv[++i]);
    else if (a == "--quick") o->quick = true;
    else if (a == "--only" && i + 1 < argc) o->only = argv[++i];
    else return false;
  }
  static const char* const kSections[] = {"", "linear", "peer", "moe", "lm_head", "steps", "small", "long"};
  bool known = false;
  for (const char* name : kSections) known = known || o->only == name;
  if (!known) std::fprintf(stderr, "bench_cuda: --only %s is not a section\n", o->only.c_str());
  return known && o->layers >= 1 && o->long_prompt >= 1;
}

}  // namespace

int main(int argc, char** argv) {
  Options opt;
  if (!parse(argc, argv, &opt)) {
    std::fprintf(stderr, "usage: bench_cuda [--layers N] [--json FILE] [--quick] [--long-prompt TOKENS] [--only SECTION]\n");
    return 2;
  }
  if (mmx::cuda_device_count() == 0) {
    std::printf("bench_cuda: no CUDA device; nothing to measure\n");
    return 0;
  }
  try {
    Bench b;
    b.opt = opt;
    if (opt.quick) {
      b.reps = 5;
      b.opt.long_prompt = std::min<int64_t>(opt.long_prompt, 32768);
    }
    const auto t0 = std::chrono::steady_clock::now();
    b.model = mmx::Model::synthetic(text01_config(opt.layers));
    mmx::BackendOptions bo;
    bo.kind = "cuda";
    bo.weight_dtype = "int8";
    b.owner = mmx::create_backend(bo);
    b.be = dynamic_cast<mmx::cuda::CudaBackend*>(b.owner.get());
    MMX_CHECK(b.be, mmx::Code::Internal, "bench_cuda: the cuda backend is not a CudaBackend");
    b.be->prepare(*b.model);
    cudaDeviceProp props{};
    MMX_CUDA(cudaGetDeviceProperties(&props, b.be->device()));
    const double prep_s = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
    std::printf("bench_cuda on %s: %d layers, W8A16 weights %.1f GiB on the device (prepared in %.1f s)\n",
                props.name, opt.layers, double(b.be->weight_bytes()) / double(1ull << 30), prep_s);
    b.rep.value("device", props.name);
    b.rep.value("layers", opt.layers);
    b.rep.value("weight_bytes", double(b.be->weight_bytes()));
    // Under a profiler started with profiling off (ncu --profile-from-start off), only the
    // sections are profiled, not the weight generation before them.
    MMX_CUDA(cudaProfilerStart());
    auto section = [&](const char* name) { return opt.only.empty() || opt.only == name; };
    if (section("linear")) b.linear_rows();
    if (section("peer")) b.peer_rows();
    if (section("moe")) b.moe_rows();
    if (section("lm_head")) b.lm_head_rows();
    if (section("steps")) b.step_rows();
    if (section("small")) b.small_model_rows();
    if (section("long")) b.long_prompt_rows();
    MMX_CUDA(cudaProfilerStop());
    b.rep.value("peak_backend_bytes", double(b.be->memory().peak()));
    b.rep.write(opt.json_path);
    std::printf("total %.1f s\n",
                std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count());
  } catch (const mmx::Error& e) {
    std::fprintf(stderr, "bench_cuda: %s: %s\n", mmx::code_name(e.code()), e.what());
    return 1;
  }
  return 0;
}
