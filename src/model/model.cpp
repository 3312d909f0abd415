// Model: loading a directory (config, tensors, tokenizer), in-memory and shape-only models, and
// the fingerprint that ties saved prefixes to the exact model they came from.
#include "model/model.h"

#include <cstdio>
#include <cstring>

#include "core/error.h"
#include "model/weight_names.h"
#include "tokenizer/tokenizer.h"

namespace mmx {
namespace {

// FNV-1a, 64 bit: tiny, well defined and stable across platforms and releases.
class Fnv1a {
 public:
  void bytes(const void* p, size_t n) {
    const uint8_t* b = static_cast<const uint8_t*>(p);
    for (size_t i = 0; i < n; ++i) h_ = (h_ ^ b[i]) * 0x100000001b3ull;
  }
  void text(const std::string& s) { bytes(s.data(), s.size() + 1); }  // with the NUL as separator
  void number(double v) {
    char buf[40];
    std::snprintf(buf, sizeof buf, "%.17g", v);
    text(buf);
  }
  std::string hex() const {
    char buf[17];
    std::snprintf(buf, sizeof buf, "%016llx", static_cast<unsigned long long>(h_));
    return buf;
  }

 private:
  uint64_t h_ = 0xcbf29ce484222325ull;
};

// Only what changes the computation: spelling, context limit, block size and special tokens do not.
void hash_config(const ModelConfig& c, Fnv1a* h) {
  h->text("libminimax-fingerprint-v1");
  for (int64_t v : {c.hidden, c.intermediate, c.layers, c.heads, c.kv_heads, c.head_dim, c.rotary_dim, c.experts,
                    c.top_k, c.vocab})
    h->number(double(v));
  for (double v : {c.rms_eps, c.lightning_norm_eps, c.rope_theta, c.lightning_alpha, c.lightning_beta, c.full_alpha,
                   c.full_beta, c.mlp_alpha, c.mlp_beta})
    h->number(v);
  h->number(c.tie_embeddings ? 1 : 0);
  for (LayerKind k : c.layer_kinds) h->number(double(k));
}

// A weight under a spelling-independent key: dtype, shape and up to three 256-byte windows.
void hash_weight(const std::string& key, const WeightRef& w, Fnv1a* h) {
  h->text(key);
  h->text(dtype_name(w.dtype));
  h->number(double(w.rows));
  h->number(double(w.cols));
  if (!w.data) return;
  const size_t n = size_t(w.numel()) * dtype_size(w.dtype), window = 256;
  if (n <= 3 * window) {
    h->bytes(w.data, n);
  } else {
    h->bytes(w.data, window);
    h->bytes(w.data + (n / 2 - window / 2), window);
    h->bytes(w.data + (n - window), window);
  }
  if (w.scale) h->bytes(w.scale, std::min<size_t>(size_t(w.rows) * dtype_size(w.scale_dtype), window));
}

// `step(i)` is called after each layer (progress / cancellation).
std::string fingerprint_of(const ModelConfig& c, const ModelWeights& w, bool synthetic,
                           const std::function<void(size_t)>& step) {
  Fnv1a h;
  hash_config(c, &h);
  h.text(synthetic ? "shape-only" : "weights");
  hash_weight("embed", w.embed, &h);
  if (!c.tie_embeddings) hash_weight("lm_head", w.lm_head, &h);
  hash_weight("final_norm", w.final_norm, &h);
  for (size_t i = 0; i < w.layers.size(); ++i) {
    const LayerWeights& l = w.layers[i];
    const std::string p = "layer." + std::to_string(i) + ".";
    const std::pair<const char*, const WeightRef*> slots[] = {
        {"input_norm", &l.input_norm}, {"post_norm", &l.post_norm}, {"qkv", &l.qkv},   {"out_gate", &l.out_gate},
        {"out_proj", &l.out_proj},     {"attn_norm", &l.attn_norm}, {"q", &l.q},       {"k", &l.k},
        {"v", &l.v},                   {"o", &l.o},                 {"router", &l.router}};
    for (const auto& s : slots)
      if (s.second->rows > 0) hash_weight(p + s.first, *s.second, &h);
    for (size_t e = 0; e < l.w1.size(); ++e) {
      hash_weight(p + "w1." + std::to_string(e), l.w1[e], &h);
      hash_weight(p + "w3." + std::to_string(e), l.w3[e], &h);
      hash_weight(p + "w2." + std::to_string(e), l.w2[e], &h);
    }
    if (step) step(i);
  }
  return h.hex();
}

}  // namespace

Model::~Model() = default;

std::shared_ptr<Model> Model::load(const std::string& dir, const LoadProgress& progress) {
  auto report = [&](double fraction, const char* stage) {
    if (progress && !progress(fraction, stage))
      fail(Code::Cancelled, "loading " + dir + " was cancelled (stage: " + stage + ")");
  };
  std::shared_ptr<Model> m(new Model());
  m->dir_ = dir;
  report(0.0, "config");
  m->config_ = ModelConfig::load(dir + "/config.json");
  report(0.05, "tensors");
  m->store_ = TensorStore::open_dir(dir);
  report(0.3, "weights");
  m->weights_ = ModelWeights::map(m->config_, *m->store_);
  report(0.35, "fingerprint");
  const double layers = double(std::max<int64_t>(m->config_.layers, 1));
  m->fingerprint_ = fingerprint_of(m->config_, m->weights_, false,
                                   [&](size_t i) { report(0.35 + 0.55 * double(i + 1) / layers, "fingerprint"); });
  report(0.9, "tokenizer");
  m->tokenizer_ = Tokenizer::load_dir(dir);
  if (m->tokenizer_ && m->tokenizer_->vocab_size() > m->config_.vocab)
    fail(Code::Format, dir + ": the tokenizer has " + std::to_string(m->tokenizer_->vocab_size()) +
                           " tokens but config.json says vocab_size " + std::to_string(m->config_.vocab));
  report(1.0, "done");
  return m;
}

std::shared_ptr<Model> Model::from_memory(const ModelConfig& config, std::map<std::string, OwnedTensor> tensors) {
  std::shared_ptr<Model> m(new Model());
  m->config_ = config;
  m->owned_.reserve(tensors.size());  // TensorInfo::data points into these; no reallocation after
  std::vector<TensorInfo> infos;
  for (auto& kv : tensors) {
    OwnedTensor& t = kv.second;
    uint64_t numel = 1;
    bool overflow = false;
    for (int64_t d : t.shape) {
      MMX_CHECK(d >= 0, Code::InvalidArgument, "tensor '" + kv.first + "' has a negative dimension");
      overflow = overflow || __builtin_mul_overflow(numel, uint64_t(d), &numel);
    }
    MMX_CHECK(!overflow && numel * dtype_size(t.dtype) == t.bytes.size(), Code::InvalidArgument,
              "tensor '" + kv.first + "' holds " + std::to_string(t.bytes.size()) + " bytes, which does not match its " +
                  dtype_name(t.dtype) + " shape");
    m->owned_.push_back(std::move(t));
    TensorInfo info;
    info.name = kv.first;
    info.file = "(memory)";
    info.dtype = m->owned_.back().dtype;
    info.shape = m->owned_.back().shape;
    info.data = m->owned_.back().bytes.data();
    info.nbytes = m->owned_.back().bytes.size();
    infos.push_back(std::move(info));
  }
  m->store_ = TensorStore::from_tensors(std::move(infos));
  m->weights_ = ModelWeights::map(m->config_, *m->store_);
  m->fingerprint_ = fingerprint_of(m->config_, m->weights_, false, {});
  return m;
}

std::shared_ptr<Model> Model::synthetic(const ModelConfig& config) {
  std::shared_ptr<Model> m(new Model());
  m->config_ = config;
  m->synthetic_ = true;
  std::vector<TensorInfo> infos;
  for (const ExpectedTensor& t : expected_tensors(config, /*fused_experts=*/false)) {
    TensorInfo info;
    info.name = t.name;
    info.file = "(shape only)";
    info.dtype = DType::BF16;
    info.shape = t.shape;
    infos.push_back(std::move(info));
  }
  m->store_ = TensorStore::from_tensors(std::move(infos));
  m->weights_ = ModelWeights::map(m->config_, *m->store_);
  m->fingerprint_ = fingerprint_of(m->config_, m->weights_, true, {});
  return m;
}

}  // namespace mmx
