#include "engine/runtime.h"

#include <algorithm>
#include <sstream>

#include "core/error.h"
#include "core/log.h"
#include "tokenizer/tokenizer.h"

namespace mmx {

std::vector<int> parse_device_list(const std::string& text) {
  std::vector<int> devices;
  std::stringstream ss(text);
  std::string item;
  while (std::getline(ss, item, ',')) {
    size_t b = item.find_first_not_of(" \t"), e = item.find_last_not_of(" \t");
    std::string t = b == std::string::npos ? "" : item.substr(b, e - b + 1);
    bool digits = !t.empty() && t.size() <= 6 && t.find_first_not_of("0123456789") == std::string::npos;
    MMX_CHECK(digits, Code::InvalidArgument,
              "device list \"" + text + "\": \"" + t + "\" is not a CUDA ordinal (expected e.g. \"0,1\")");
    devices.push_back(std::stoi(t));
  }
  MMX_CHECK(!devices.empty(), Code::InvalidArgument, "device list is empty (expected e.g. \"0\" or \"0,1\")");
  return devices;
}

std::shared_ptr<ModelRuntime> ModelRuntime::load(const std::string& dir, const RuntimeOptions& options,
                                                 const LoadProgress& progress) {
  // Loading the files is most of the work; backend preparation gets the last tenth.
  LoadProgress scaled;
  if (progress) scaled = [&](double f, const char* stage) { return progress(0.9 * f, stage); };
  std::shared_ptr<const Model> model = Model::load(dir, scaled);
  return create(std::move(model), options, progress);
}

std::shared_ptr<ModelRuntime> ModelRuntime::create(std::shared_ptr<const Model> model,
                                                   const RuntimeOptions& options,
                                                   const LoadProgress& progress) {
  MMX_CHECK(model != nullptr, Code::InvalidArgument, "no model");
  BackendOptions bo;
  bo.kind = options.backend;
  if (bo.kind == "auto") bo.kind = cuda_device_count() > 0 ? "cuda" : "cpu";
  MMX_CHECK(bo.kind == "cpu" || bo.kind == "cuda", Code::Unsupported,
            "backend \"" + options.backend + "\" is unknown (expected \"auto\", \"cpu\" or \"cuda\")");
  bo.devices = options.devices;
  bo.threads = options.threads;
  bo.weight_dtype = options.weight_dtype == "auto" ? "" : options.weight_dtype;
  bo.memory_limit_bytes = options.memory_limit_bytes;

  if (progress && !progress(0.9, "preparing backend"))
    fail(Code::Cancelled, "model load cancelled by the progress callback");
  return assemble(std::move(model), create_backend(bo), options.weight_dtype, progress);
}

std::shared_ptr<ModelRuntime> ModelRuntime::with_backend(std::shared_ptr<const Model> model,
                                                         std::unique_ptr<Backend> backend,
                                                         const std::string& weight_dtype) {
  MMX_CHECK(model != nullptr && backend != nullptr, Code::InvalidArgument, "no model or no backend");
  return assemble(std::move(model), std::move(backend), weight_dtype, {});
}

std::shared_ptr<ModelRuntime> ModelRuntime::assemble(std::shared_ptr<const Model> model,
                                                     std::unique_ptr<Backend> backend,
                                                     const std::string& weight_dtype,
                                                     const LoadProgress& progress) {
  std::shared_ptr<ModelRuntime> rt(new ModelRuntime());
  rt->model_ = std::move(model);
  rt->backend_ = std::move(backend);
  rt->backend_name_ = rt->backend_->name();
  rt->backend_->prepare(*rt->model_);
  rt->account_weights(weight_dtype);

  const Tokenizer* tok = rt->model_->tokenizer();
  const ModelConfig& c = rt->model_->config();
  // The tokenizer knows the special tokens of its files; the config's ids are the fallback
  // for token-level models without tokenizer files.
  rt->bos_ = tok && tok->bos_id() >= 0 ? tok->bos_id() : int32_t(c.bos_token_id);
  rt->eos_ = tok && tok->eos_id() >= 0 ? tok->eos_id() : int32_t(c.eos_token_id);
  if (rt->bos_ >= c.vocab) rt->bos_ = -1;
  if (rt->eos_ >= c.vocab) rt->eos_ = -1;

  if (progress && !progress(1.0, "ready"))
    fail(Code::Cancelled, "model load cancelled by the progress callback");
  MMX_LOG_INFO("model " + (rt->model_->dir().empty() ? std::string("(in memory)") : rt->model_->dir()) +
               " ready on the " + rt->backend_name_ + " backend");
  return rt;
}

ModelRuntime::~ModelRuntime() = default;

int64_t ModelRuntime::context_limit() const {
  // A config without max_position_embeddings sets no limit of its own; 2^40 keeps all
  // arithmetic on token counts far from overflow.
  const int64_t unbounded = int64_t(1) << 40;
  return config().max_positions > 0 ? config().max_positions : unbounded;
}

void ModelRuntime::account_weights(const std::string& weight_dtype) {
  const ModelWeights& w = model_->weights();
  const bool cuda = backend_name_ == "cuda";
  const bool int8 = cuda && weight_dtype != "bf16";
  uint64_t params = 0, bytes = 0;
  // kind: 0 = linear projection (quantised on CUDA), 1 = embedding/norm (bf16), 2 = router (fp32)
  auto add = [&](const WeightRef& r, int kind) {
    uint64_t n = uint64_t(r.rows) * uint64_t(r.cols);
    params += n;
    if (!cuda) bytes += n * 4;
    else if (kind == 0) bytes += int8 ? n + uint64_t(r.rows) * 4 : n * 2;
    else if (kind == 1) bytes += n * 2;
    else bytes += n * 4;
  };
  add(w.embed, 1);
  if (!config().tie_embeddings) add(w.lm_head, 1);
  add(w.final_norm, 1);
  for (const LayerWeights& l : w.layers) {
    for (const WeightRef* r : {&l.input_norm, &l.post_norm, &l.attn_norm}) add(*r, 1);
    for (const WeightRef* r : {&l.qkv, &l.out_gate, &l.out_proj, &l.q, &l.k, &l.v, &l.o}) add(*r, 0);
    add(l.router, 2);
    for (const auto* experts : {&l.w1, &l.w2, &l.w3})
      for (const WeightRef& r : *experts) add(r, 0);
  }
  parameter_count_ = params;
  weight_bytes_ = bytes;
}

uint64_t ModelRuntime::workspace_bytes(int64_t step_tokens, int64_t logit_rows) const {
  const ModelConfig& c = config();
  // Per token: x, h, a [H]; the larger attention kind's buffers (lightning: qkv 3·nh·d plus
  // o and gate; softmax: q, o and k, v); the routed experts' SwiGLU intermediates.
  uint64_t attn_lightning = uint64_t(5 * c.heads * c.head_dim);
  uint64_t attn_softmax = uint64_t(2 * c.heads * c.head_dim + 2 * c.kv_heads * c.head_dim);
  uint64_t per_token = uint64_t(3 * c.hidden) + std::max(attn_lightning, attn_softmax) +
                       uint64_t(2 * c.intermediate * c.top_k);
  return 4 * (per_token * uint64_t(step_tokens) + uint64_t(logit_rows) * uint64_t(c.vocab));
}

}  // namespace mmx
