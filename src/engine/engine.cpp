// Engine construction, submission, cancellation, events and statistics. The scheduler thread
// itself is in scheduler.cpp.
#include "engine/engine.h"

#include <algorithm>
#include <limits>

#include "core/error.h"
#include "core/log.h"
#include "engine/prefix.h"
#include "engine/sequence.h"
#include "tokenizer/tokenizer.h"

namespace mmx {

namespace {

// Sequences of this many tokens (or the context limit, when smaller) is what the default
// state budget makes room for, max_sequences of them. Longer documents need an explicit
// MMX_CTX_OPT_KV_MEMORY_BYTES; the refusal says how many bytes.
constexpr int64_t kDefaultBudgetTokens = 8192;
constexpr int64_t kMaxSequencesLimit = 4096;
constexpr int64_t kMaxTokenCountOption = int64_t(1) << 24;

uint64_t saturating_mul(uint64_t a, uint64_t b) {
  if (a != 0 && b > std::numeric_limits<uint64_t>::max() / a) return std::numeric_limits<uint64_t>::max();
  return a * b;
}

void check_range(const char* name, int64_t value, int64_t lo, int64_t hi) {
  MMX_CHECK(value >= lo && value <= hi, Code::InvalidArgument,
            std::string(name) + " is " + std::to_string(value) + "; it must be in [" +
                std::to_string(lo) + ", " + std::to_string(hi) + "]");
}

struct ResolvedOptions {
  int64_t context_limit = 0;
  uint64_t state_budget = 0;
};

ResolvedOptions resolve_options(const ModelRuntime& rt, const EngineOptions& o) {
  check_range("MMX_CTX_OPT_MAX_SEQUENCES", o.max_sequences, 1, kMaxSequencesLimit);
  check_range("MMX_CTX_OPT_STEP_TOKEN_BUDGET", o.step_token_budget, 1, kMaxTokenCountOption);
  check_range("MMX_CTX_OPT_PREFILL_CHUNK", o.prefill_chunk, 1, kMaxTokenCountOption);
  check_range("MMX_CTX_OPT_MAX_QUEUED", o.max_queued, 1, kMaxTokenCountOption);
  const int64_t model_limit = rt.context_limit();
  MMX_CHECK(o.max_context >= 0 && o.max_context <= model_limit, Code::InvalidArgument,
            "MMX_CTX_OPT_MAX_CONTEXT is " + std::to_string(o.max_context) +
                "; it must be 0 (the model's limit) or at most the model's context limit of " +
                std::to_string(model_limit) + " tokens");
  ResolvedOptions r;
  r.context_limit = o.max_context > 0 ? o.max_context : model_limit;
  r.state_budget = o.state_memory_bytes;
  if (r.state_budget == 0) {
    uint64_t per_seq = rt.backend().state_bytes(std::min(r.context_limit, kDefaultBudgetTokens));
    r.state_budget = saturating_mul(per_seq, uint64_t(o.max_sequences));
  }
  return r;
}

}  // namespace

MemoryEstimate estimate_memory(const ModelRuntime& rt, const EngineOptions& options) {
  ResolvedOptions r = resolve_options(rt, options);
  MemoryEstimate m;
  m.weight_bytes = rt.weight_bytes();
  m.state_bytes_per_sequence = rt.backend().state_bytes(0);
  // Averaged over many tokens: a backend may allocate KV a page of tokens at a time (CUDA: 256),
  // and the first token's cost would then be a whole page.
  constexpr int64_t kProbeTokens = int64_t(1) << 16;
  const uint64_t grown = rt.backend().state_bytes(kProbeTokens) - m.state_bytes_per_sequence;
  m.kv_bytes_per_token = (grown + uint64_t(kProbeTokens) - 1) / uint64_t(kProbeTokens);
  // A step's logits rows: one per decoding sequence plus a prefill chunk's last row.
  m.workspace_bytes = rt.workspace_bytes(options.step_token_budget, options.max_sequences + 1);
  m.total_bytes = m.weight_bytes + m.workspace_bytes + r.state_budget;
  return m;
}

Engine::Engine(std::shared_ptr<ModelRuntime> runtime, const EngineOptions& options)
    : runtime_(std::move(runtime)),
      options_(options),
      forward_(runtime_->model(), runtime_->backend()) {
  ResolvedOptions r = resolve_options(*runtime_, options_);
  context_limit_ = r.context_limit;
  budget_ = std::make_shared<StateBudget>(r.state_budget);
  MMX_LOG_DEBUG("context on the " + runtime_->backend_name() + " backend: " +
                std::to_string(options_.max_sequences) + " sequences, " +
                std::to_string(options_.step_token_budget) + " tokens per step, prefill chunks of " +
                std::to_string(options_.prefill_chunk) + ", context limit " + std::to_string(context_limit_) +
                " tokens, state budget " + std::to_string(r.state_budget) + " bytes");
  scheduler_ = std::thread([this] { scheduler_loop(); });
}

Engine::~Engine() {
  {
    std::lock_guard<std::mutex> lock(mu_);
    stop_ = true;
  }
  cv_.notify_all();
  if (scheduler_.joinable()) scheduler_.join();
}

std::shared_ptr<Request> Engine::prepare(const RequestSpec& spec) const {
  const ModelRuntime& rt = *runtime_;
  const int32_t vocab = rt.vocab_size();
  auto req = std::make_shared<Request>();

  // The prompt, piece by piece.
  std::vector<int32_t>& prompt = req->prompt;
  if (spec.add_bos && rt.bos_token() >= 0) prompt.push_back(rt.bos_token());
  for (const PromptPiece& piece : spec.prompt) {
    if (!piece.is_text) {
      prompt.insert(prompt.end(), piece.tokens.begin(), piece.tokens.end());
      continue;
    }
    MMX_CHECK(rt.tokenizer() != nullptr, Code::Unsupported,
              "the prompt holds text but this model has no tokenizer files; append token ids instead");
    std::vector<int32_t> ids = rt.tokenizer()->encode(piece.text, spec.parse_special);
    prompt.insert(prompt.end(), ids.begin(), ids.end());
  }
  MMX_CHECK(!prompt.empty(), Code::InvalidArgument, "the prompt is empty");
  for (size_t i = 0; i < prompt.size(); ++i)
    MMX_CHECK(prompt[i] >= 0 && prompt[i] < vocab, Code::InvalidArgument,
              "prompt token " + std::to_string(prompt[i]) + " at position " + std::to_string(i) +
                  " is outside the vocabulary [0, " + std::to_string(vocab) + ")");
  for (int32_t t : spec.stop_tokens)
    MMX_CHECK(t >= 0 && t < vocab, Code::InvalidArgument,
              "stop token " + std::to_string(t) + " is outside the vocabulary [0, " + std::to_string(vocab) + ")");
  for (const auto& [t, bias] : spec.sampling.logit_bias)
    MMX_CHECK(t >= 0 && t < vocab, Code::InvalidArgument,
              "logit bias token " + std::to_string(t) + " is outside the vocabulary [0, " +
                  std::to_string(vocab) + ")");
  MMX_CHECK(spec.stop_strings.empty() || rt.tokenizer() != nullptr, Code::Unsupported,
            "stop strings need the model's tokenizer, and this model has no tokenizer files");
  if (spec.prefix)
    MMX_CHECK(spec.prefix->runtime() == runtime_.get(), Code::InvalidArgument,
              "the request's prefix was made with another loaded model");

  const int64_t n = int64_t(prompt.size());
  for (int64_t p : spec.logits_positions) {
    int64_t at = p == -1 ? n - 1 : p;
    MMX_CHECK(at >= 0 && at < n, Code::InvalidArgument,
              "logits position " + std::to_string(p) + " is outside the prompt of " + std::to_string(n) + " tokens");
    req->logits_positions.push_back(at);
  }
  std::sort(req->logits_positions.begin(), req->logits_positions.end());
  req->logits_positions.erase(std::unique(req->logits_positions.begin(), req->logits_positions.end()),
                              req->logits_positions.end());

  // Admission: the whole sequence must fit the context limit and, at its largest, the state
  // budget left beside the prefixes.
  req->generation_limit = spec.make_prefix ? 0 : spec.max_tokens;
  const int64_t prefix_tokens = spec.prefix ? spec.prefix->token_count() : 0;
  // max_tokens may be anything up to INT64_MAX; capped here (far above any context limit)
  // so that the sum cannot overflow.
  const int64_t total = prefix_tokens + n + std::min(req->generation_limit, int64_t(1) << 50);
  MMX_CHECK(total <= context_limit_, Code::Capacity,
            "the request needs " + std::to_string(total) + " tokens (" +
                (prefix_tokens ? std::to_string(prefix_tokens) + " prefix + " : std::string()) +
                std::to_string(n) + " prompt + " + std::to_string(req->generation_limit) +
                " max_tokens) but the context limit is " + std::to_string(context_limit_));
  req->reserved_bytes = rt.backend().state_bytes(total);
  const uint64_t room = budget_->room_beside_prefixes();
  MMX_CHECK(req->reserved_bytes <= room, Code::Capacity,
            "the request needs " + std::to_string(req->reserved_bytes) + " bytes of state for " +
                std::to_string(total) + " tokens but the context's state budget " +
                "(MMX_CTX_OPT_KV_MEMORY_BYTES) is " + std::to_string(budget_->limit()) + " bytes, " +
                std::to_string(budget_->limit() - room) + " of them held by prefixes");

  req->spec = spec;
  req->spec.prompt.clear();
  req->spec.prompt.shrink_to_fit();
  return req;
}

std::vector<uint64_t> Engine::submit(const std::vector<const RequestSpec*>& specs) {
  std::vector<std::shared_ptr<Request>> reqs;
  reqs.reserve(specs.size());
  for (size_t i = 0; i < specs.size(); ++i) {
    try {
      reqs.push_back(prepare(*specs[i]));
    } catch (const Error& e) {
      if (specs.size() == 1) throw;
      throw Error(e.code(), "request " + std::to_string(i) + " of the batch: " + e.what());
    }
  }
  std::vector<uint64_t> ids;
  ids.reserve(reqs.size());
  {
    std::lock_guard<std::mutex> lock(mu_);
    MMX_CHECK(poisoned_.empty(), Code::Device,
              "this context hit a device error and cannot run requests any more: " + poisoned_);
    MMX_CHECK(!stop_, Code::State, "the context is shutting down");
    MMX_CHECK(waiting_.size() + reqs.size() <= size_t(options_.max_queued), Code::Capacity,
              std::to_string(waiting_.size()) + " requests are already waiting to start and " +
                  std::to_string(reqs.size()) + " more would exceed MMX_CTX_OPT_MAX_QUEUED (" +
                  std::to_string(options_.max_queued) + ")");
    for (auto& r : reqs) {
      r->id = next_id_++;
      hub_.open(r->id, !r->uses_callback());
      live_.emplace(r->id, r);
      waiting_.push_back(r);
      ids.push_back(r->id);
    }
    submitted_ += reqs.size();
    wake_ = true;
  }
  cv_.notify_all();
  return ids;
}

void Engine::cancel(uint64_t id) {
  std::shared_ptr<Request> finish_now;
  {
    std::lock_guard<std::mutex> lock(mu_);
    auto it = live_.find(id);
    MMX_CHECK(it != live_.end(), Code::NotFound,
              "request " + std::to_string(id) + " is unknown or already finished");
    std::shared_ptr<Request> req = it->second;
    req->cancel_requested = true;
    // A waiting pull request ends right here; callback requests end on the scheduler
    // thread, where their callbacks must run.
    if (req->phase == Request::Phase::Queued && !req->uses_callback()) {
      waiting_.erase(std::find(waiting_.begin(), waiting_.end(), req));
      mark_finished_locked(*req);
      finish_now = req;
    } else {
      wake_ = true;
    }
  }
  if (finish_now) {
    auto event = make_event(*finish_now, EventType::Finished);
    event->reason = FinishReason::Cancelled;
    event->prompt_tokens = int64_t(finish_now->prompt.size());
    ++finished_;
    deliver(*finish_now, std::move(event));
  } else {
    cv_.notify_all();
  }
}

std::unique_ptr<Event> Engine::next_event(uint64_t id, int32_t timeout_ms) {
  return hub_.next(id, timeout_ms);
}

EngineStats Engine::stats() const {
  EngineStats s;
  {
    std::lock_guard<std::mutex> lock(mu_);
    s.queued_requests = uint32_t(waiting_.size());
  }
  s.running_sequences = running_count_.load();
  s.submitted_requests = submitted_.load();
  s.finished_requests = finished_.load();
  s.prompt_tokens = prompt_tokens_.load();
  s.generated_tokens = generated_tokens_.load();
  s.steps = steps_.load();
  s.state_bytes_in_use = budget_->in_use();
  s.state_bytes_limit = budget_->limit();
  s.busy_seconds = double(busy_nanoseconds_.load()) * 1e-9;
  return s;
}

std::shared_ptr<Prefix> Engine::load_prefix(const std::string& path) {
  return Prefix::load(runtime_, budget_, path);
}

std::unique_ptr<Event> Engine::make_event(const Request& request, EventType type) const {
  auto event = std::make_unique<Event>();
  event->type = type;
  event->request_id = request.id;
  event->user_data = request.spec.user_data;
  return event;
}

bool Engine::mark_finished_locked(Request& request) {
  if (request.phase == Request::Phase::Finished) return false;
  request.phase = Request::Phase::Finished;
  live_.erase(request.id);
  return true;
}

void Engine::finish_request(const std::shared_ptr<Request>& request, std::unique_ptr<Event> final_event) {
  {
    std::lock_guard<std::mutex> lock(mu_);
    if (!mark_finished_locked(*request)) return;  // exactly one final event
  }
  ++finished_;
  // Drop the request's reference to its prefix before the host can see the final event: a
  // host that frees its own reference next must find the prefix's memory returned at once.
  request->spec.prefix.reset();
  deliver(*request, std::move(final_event));
}

void Engine::deliver(Request& request, std::unique_ptr<Event> event) {
  if (!request.uses_callback()) {
    hub_.push(std::move(event));
    return;
  }
  const bool final_event = event->type == EventType::Finished;
  try {
    request.spec.callback(std::move(event));
  } catch (const std::exception& e) {
    MMX_LOG_ERROR("event callback of request " + std::to_string(request.id) + " threw: " + e.what());
  } catch (...) {
    MMX_LOG_ERROR("event callback of request " + std::to_string(request.id) + " threw");
  }
  if (final_event) hub_.forget(request.id);
}

}  // namespace mmx
