// CpuBackend: construction, weight preparation, the step arena and the elementwise / dense ops.
// Attention lives in cpu_attention.cpp, the MoE in cpu_moe.cpp, states in cpu_state.cpp.
#include "backend/cpu/cpu_backend.h"

#include <cblas.h>

#include <algorithm>
#include <cmath>
#include <cstring>
#include <map>
#include <new>
#include <string>

#include "core/error.h"

namespace mmx {

std::unique_ptr<Backend> create_cpu_backend(const BackendOptions& opts) {
  return std::make_unique<cpu::CpuBackend>(opts);
}

namespace cpu {

namespace {

std::string shape_str(Act a) { return "[" + std::to_string(a.rows) + ", " + std::to_string(a.cols) + "]"; }

void check_act(bool ok, const char* op, const std::string& what) {
  MMX_CHECK(ok, Code::InvalidArgument, std::string("cpu backend: ") + op + ": " + what);
}

float* f32(Act a) { return static_cast<float*>(a.data); }

// Shapes the kernels rely on; the config parser enforces most of these already.
void check_config(const ModelConfig& c) {
  auto need = [](bool ok, const std::string& what) {
    MMX_CHECK(ok, Code::Unsupported, "cpu backend: unsupported model shape: " + what);
  };
  need(c.hidden > 0 && c.heads > 0 && c.head_dim > 0 && c.layers > 0 && c.vocab > 0,
       "hidden, heads, head_dim, layers and vocab must be positive");
  need(c.kv_heads > 0 && c.heads % c.kv_heads == 0, "heads must be a multiple of kv_heads");
  need(c.rotary_dim >= 0 && c.rotary_dim % 2 == 0 && c.rotary_dim <= c.head_dim,
       "rotary_dim must be even and at most head_dim");
  need(c.experts > 0 && c.top_k > 0 && c.top_k <= c.experts, "top_k must be in [1, experts]");
  need(c.intermediate > 0 && c.block_size > 0, "intermediate size and block size must be positive");
  need(int64_t(c.layer_kinds.size()) == c.layers, "one layer kind per layer");
}

}  // namespace

CpuBackend::CpuBackend(const BackendOptions& opts) : pool_(opts.threads) {
  MMX_CHECK(opts.threads >= 0, Code::InvalidArgument,
            "cpu backend: threads must be >= 0 (0 = all cores), got " + std::to_string(opts.threads));
  // All parallelism comes from pool_; OpenBLAS's own threads would compete with it for the
  // cores (and spin), so every BLAS call here runs on the thread that makes it.
  openblas_set_num_threads(1);
}

void CpuBackend::prepare(const Model& model) {
  model_ = nullptr;  // a failed prepare leaves the backend unprepared, not half-converted
  MMX_CHECK(!model.is_synthetic(), Code::Unsupported,
            "cpu backend: the model is synthetic (shapes only, no weights); the CPU reference "
            "needs real weights");
  check_config(model.config());
  const ModelWeights& mw = model.weights();
  MMX_CHECK(int64_t(mw.layers.size()) == model.config().layers, Code::Internal,
            "cpu backend: weights and config disagree on the layer count");
  config_ = model.config();
  plan_ = ShardPlan::make(config_, shard_);
  weights_.assign(size_t(mw.count), nullptr);
  shapes_.assign(size_t(mw.count), {0, 0});
  local_.assign(size_t(mw.count), {0, 0});
  converted_.clear();
  std::map<const uint8_t*, int> first_id_of_data;  // a tied lm_head shares the embedding's bytes
  // Unsharded, every block is a whole weight; a rank converts only its blocks (shard.h).
  for (const auto& [r, blk] : rank_weights(mw, plan_)) {
    MMX_CHECK(r->valid(), Code::Format, "cpu backend: weight " + r->name + " has no data");
    MMX_CHECK(r->id >= 0 && r->id < mw.count, Code::Internal,
              "cpu backend: weight " + r->name + " has id " + std::to_string(r->id) + " outside [0, " +
                  std::to_string(mw.count) + ")");
    const size_t id = size_t(r->id);
    if (weights_[id]) continue;
    shapes_[id] = {r->rows, r->cols};
    local_[id] = {blk.rows, blk.cols};
    const bool whole = blk.rows == r->rows && blk.cols == r->cols;
    if (whole) {
      auto same = first_id_of_data.find(r->data);
      if (same != first_id_of_data.end() && shapes_[size_t(same->second)] == shapes_[id] &&
          r->dtype != DType::I8) {
        weights_[id] = weights_[size_t(same->second)];
        continue;
      }
      first_id_of_data[r->data] = r->id;
    }
    if (blk.cols == r->cols && r->dtype == DType::F32 &&
        reinterpret_cast<uintptr_t>(r->data) % alignof(float) == 0) {
      // Already fp32 and whole rows: use the mapping.
      weights_[id] = reinterpret_cast<const float*>(r->data) + blk.row0 * r->cols;
      continue;
    }
    std::vector<float> f;
    try {
      f.resize(size_t(blk.rows * blk.cols));
    } catch (const std::bad_alloc&) {
      fail(Code::OutOfMemory, "cpu backend: no memory for the fp32 copy of " + r->name);
    }
    pool_.parallel_for(blk.rows, [&, r = r, blk = blk](int64_t b, int64_t e) {
      std::vector<float> row(blk.cols == r->cols ? 0 : size_t(r->cols));  // for column blocks
      for (int64_t i = b; i < e; ++i) {
        float* dst = f.data() + i * blk.cols;
        if (row.empty()) {
          r->row_to_f32(blk.row0 + i, dst);
        } else {
          r->row_to_f32(blk.row0 + i, row.data());
          std::memcpy(dst, row.data() + blk.col0, size_t(blk.cols) * sizeof(float));
        }
      }
    });
    converted_.push_back(std::move(f));
    weights_[id] = converted_.back().data();
  }
  // Decay by GLOBAL layer and GLOBAL head: local head j is global head head0 + j (model-spec §5).
  decay_.assign(size_t(config_.layers), {});
  for (int64_t i = 0; i < config_.layers; ++i)
    for (int64_t h = 0; h < plan_.heads; ++h)
      decay_[size_t(i)].push_back(config_.lightning_decay(i, plan_.head0 + h));
  inv_freq_ = rope_inv_freq(config_.rope_theta, config_.rotary_dim);
  model_ = &model;
}

void CpuBackend::require_prepared(const char* op) const {
  MMX_CHECK(model_ != nullptr, Code::State, std::string("cpu backend: ") + op + " before prepare()");
}

const float* CpuBackend::weight(const WeightRef& w) const {
  MMX_CHECK(w.id >= 0 && size_t(w.id) < weights_.size() && weights_[size_t(w.id)], Code::InvalidArgument,
            "cpu backend: weight '" + w.name + "' is not part of the prepared model");
  MMX_CHECK(shapes_[size_t(w.id)] == std::make_pair(w.rows, w.cols), Code::InvalidArgument,
            "cpu backend: weight '" + w.name + "' does not match the prepared copy's shape");
  return weights_[size_t(w.id)];
}

std::pair<int64_t, int64_t> CpuBackend::local_shape(const WeightRef& w) const {
  // An unknown weight reports its own shape; weight() then names the problem.
  if (w.id >= 0 && size_t(w.id) < local_.size() && weights_[size_t(w.id)]) return local_[size_t(w.id)];
  return {w.rows, w.cols};
}

void CpuBackend::deal_tasks(int64_t tasks, double flops, const std::function<void(int64_t, int64_t)>& fn) {
  constexpr double kMinParallelFlops = 1 << 18;  // below this, waking the pool costs more
  const int64_t n = flops < kMinParallelFlops ? 1 : std::min<int64_t>(pool_.size(), tasks);
  if (n <= 1) {
    fn(0, 1);
    return;
  }
  pool_.parallel_for(n, [&](int64_t b, int64_t e) {
    for (int64_t w = b; w < e; ++w) fn(w, n);
  });
}

void CpuBackend::for_rows(int64_t rows, int64_t cols, const std::function<void(int64_t, int64_t)>& fn) {
  constexpr int64_t kMinParallelElements = 1 << 15;
  if (rows * cols < kMinParallelElements) {
    fn(0, rows);
    return;
  }
  pool_.parallel_for(rows, fn);
}

// ---- step arena -----------------------------------------------------------------------------

void CpuBackend::begin_step() { arena_next_ = 0; }

Act CpuBackend::alloc(int64_t rows, int64_t cols) {
  MMX_CHECK(rows >= 0 && cols >= 0, Code::InvalidArgument,
            "cpu backend: alloc of negative shape [" + std::to_string(rows) + ", " + std::to_string(cols) + "]");
  MMX_CHECK(cols == 0 || rows <= (int64_t(1) << 40) / cols, Code::OutOfMemory,
            "cpu backend: activation [" + std::to_string(rows) + ", " + std::to_string(cols) + "] is too large");
  const size_t n = size_t(rows * cols);
  if (arena_next_ == arena_.size()) {
    arena_.emplace_back();
    arena_size_.push_back(0);
  }
  // Buffers are kept across steps; a slot only grows, so steady-state steps allocate nothing.
  if (arena_size_[arena_next_] < n || !arena_[arena_next_]) {
    arena_[arena_next_].reset();
    try {
      arena_[arena_next_].reset(new float[n > 0 ? n : 1]);
    } catch (const std::bad_alloc&) {
      fail(Code::OutOfMemory, "cpu backend: out of memory allocating an activation of " +
                                  std::to_string(n) + " floats");
    }
    arena_size_[arena_next_] = n;
  }
  return Act{arena_[arena_next_++].get(), rows, cols};
}

void CpuBackend::upload(const float* src, Act dst) {
  std::memcpy(dst.data, src, size_t(dst.rows * dst.cols) * sizeof(float));
}

void CpuBackend::download(Act src, float* dst) {
  std::memcpy(dst, src.data, size_t(src.rows * src.cols) * sizeof(float));
}

// ---- dense and elementwise ops --------------------------------------------------------------

void CpuBackend::embed(const std::vector<int32_t>& tokens, Act out) {
  require_prepared("embed");
  const int64_t H = config_.hidden;
  check_act(out.rows == int64_t(tokens.size()) && out.cols == H, "embed",
            "output " + shape_str(out) + " does not fit " + std::to_string(tokens.size()) + " tokens");
  const float* table = weight(model_->weights().embed);
  for (size_t t = 0; t < tokens.size(); ++t) {
    MMX_CHECK(tokens[t] >= 0 && tokens[t] < config_.vocab, Code::InvalidArgument,
              "cpu backend: embed: token id " + std::to_string(tokens[t]) + " out of range [0, " +
                  std::to_string(config_.vocab) + ")");
    std::memcpy(f32(out) + int64_t(t) * H, table + int64_t(tokens[t]) * H, size_t(H) * sizeof(float));
  }
}

void CpuBackend::rms_norm(Act x, const WeightRef& w, double eps, Act out) {
  require_prepared("rms_norm");
  const auto [wr, wc] = local_shape(w);
  check_act(x.cols == wr * wc && out.rows == x.rows && out.cols == x.cols, "rms_norm",
            "input " + shape_str(x) + ", output " + shape_str(out) + ", weight '" + w.name + "' of " +
                std::to_string(wr * wc) + " values");
  const float* g = weight(w);
  const int64_t n = x.cols;
  for_rows(x.rows, x.cols, [&](int64_t b, int64_t e) {
    for (int64_t r = b; r < e; ++r) {
      const float* xr = f32(x) + r * n;
      float* yr = f32(out) + r * n;
      double ss = 0.0;
      for (int64_t i = 0; i < n; ++i) ss += double(xr[i]) * double(xr[i]);
      const float inv = float(1.0 / std::sqrt(ss / double(n) + eps));
      for (int64_t i = 0; i < n; ++i) yr[i] = g[i] * (xr[i] * inv);
    }
  });
}

void CpuBackend::linear(Act x, const WeightRef& w, Act out) {
  require_prepared("linear");
  const auto [rows, cols] = local_shape(w);  // the rank's block: column- or row-parallel
  check_act(x.cols == cols && out.rows == x.rows && out.cols == rows && x.data != out.data, "linear",
            "input " + shape_str(x) + " and output " + shape_str(out) + " do not fit weight '" + w.name +
                "' [" + std::to_string(rows) + ", " + std::to_string(cols) + "]");
  gemm_nt(pool_, x.rows, rows, cols, f32(x), x.cols, weight(w), cols, f32(out), out.cols);
}

void CpuBackend::silu(Act x) {
  float* p = f32(x);
  for_rows(x.rows, x.cols, [&](int64_t b, int64_t e) {
    for (int64_t i = b * x.cols; i < e * x.cols; ++i) p[i] = cpu::silu(p[i]);
  });
}

void CpuBackend::sigmoid_mul(Act gate, Act x) {
  check_act(gate.rows == x.rows && gate.cols == x.cols, "sigmoid_mul",
            "gate " + shape_str(gate) + " and input " + shape_str(x) + " differ");
  const float* g = f32(gate);
  float* p = f32(x);
  for_rows(x.rows, x.cols, [&](int64_t b, int64_t e) {
    for (int64_t i = b * x.cols; i < e * x.cols; ++i) p[i] = cpu::sigmoid(g[i]) * p[i];
  });
}

void CpuBackend::scale_add(Act h, double alpha, Act a, double beta, Act out) {
  check_act(h.rows == a.rows && h.cols == a.cols && out.rows == h.rows && out.cols == h.cols,
            "scale_add", "shapes " + shape_str(h) + ", " + shape_str(a) + ", " + shape_str(out) + " differ");
  const float fa = float(alpha), fb = float(beta);
  const float *ph = f32(h), *pa = f32(a);
  float* po = f32(out);
  for_rows(h.rows, h.cols, [&](int64_t b, int64_t e) {
    for (int64_t i = b * h.cols; i < e * h.cols; ++i) po[i] = ph[i] * fa + pa[i] * fb;
  });
}

void CpuBackend::logits(Act x, const std::vector<int32_t>& rows, float* out) {
  require_prepared("logits");
  const int64_t H = config_.hidden, V = config_.vocab;
  check_act(x.cols == H, "logits", "input " + shape_str(x) + " is not [T, hidden]");
  std::vector<float> picked(rows.size() * size_t(H));
  for (size_t i = 0; i < rows.size(); ++i) {
    check_act(rows[i] >= 0 && rows[i] < x.rows, "logits",
              "row " + std::to_string(rows[i]) + " outside the " + std::to_string(x.rows) + " rows");
    std::memcpy(picked.data() + i * size_t(H), f32(x) + rows[i] * H, size_t(H) * sizeof(float));
  }
  const WeightRef& head = model_->weights().lm_head;
  gemm_nt(pool_, int64_t(rows.size()), V, H, picked.data(), H, weight(head), H, out, V);
}

}  // namespace cpu
}  // namespace mmx
