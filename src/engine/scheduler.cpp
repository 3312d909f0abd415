// The scheduler thread of an Engine: admission, step planning (decode tokens first, then
// prefill chunks, under the step token budget), the forward pass, sampling, events, retiring.
#include <algorithm>
#include <chrono>
#include <cmath>
#include <limits>

#include "core/error.h"
#include "core/log.h"
#include "engine/engine.h"
#include "engine/prefix.h"
#include "engine/sequence.h"

namespace mmx {

// One sequence's share of a step.
struct StepPart {
  Sequence* seq = nullptr;
  bool decode = false;
  int64_t prompt_begin = 0;  // prefill: first prompt position of the chunk
  int64_t n_tokens = 0;
  size_t logit_base = 0;               // index of its first row in the step's logits
  std::vector<int32_t> local_rows;     // chunk-relative rows with logits, ascending
  std::vector<int64_t> logits_positions;  // prompt positions reported as LOGITS events
};

struct StepPlan {
  StepBatch batch;
  std::vector<int32_t> tokens;
  std::vector<int32_t> logit_rows;
  std::vector<StepPart> parts;
};

namespace {

// Prompt logprobs need a logits row per prompt token; this caps a chunk's rows so that the
// step's logits stay within this many bytes (a 200k vocabulary gets 167 rows per chunk).
constexpr uint64_t kPromptLogprobBytes = uint64_t(128) << 20;

uint64_t nanoseconds_since(std::chrono::steady_clock::time_point t0) {
  return uint64_t(std::chrono::duration_cast<std::chrono::nanoseconds>(
                      std::chrono::steady_clock::now() - t0).count());
}

}  // namespace

void Engine::scheduler_loop() {
  for (;;) {
    {
      std::unique_lock<std::mutex> lock(mu_);
      if (running_.empty() && !wake_ && !stop_) {
        if (waiting_.empty()) {
          cv_.wait(lock, [&] { return wake_ || stop_; });
        } else {
          // Requests wait for state budget held by prefixes, whose release does not signal
          // this engine (a prefix may outlive it): look again shortly.
          cv_.wait_for(lock, std::chrono::milliseconds(20), [&] { return wake_ || stop_; });
        }
      }
      wake_ = false;
      if (stop_) break;
    }
    try {
      finish_cancelled_queued();
      admit();
      retire_cancelled();
      if (!running_.empty()) run_step();
      remove_finished();
    } catch (const std::exception& e) {
      // Only a bug gets here (errors of a step are handled in run_step). End what runs with
      // the error and keep serving; an exception must not leave this thread.
      MMX_LOG_ERROR(std::string("scheduler: unexpected error: ") + e.what());
      try {
        for (auto& s : running_) finish_sequence(*s, FinishReason::Error, Code::Internal, e.what());
        remove_finished();
      } catch (...) {
        MMX_LOG_ERROR("scheduler: could not end the running requests after an unexpected error");
      }
    }
  }
  shut_down();
}

void Engine::finish_cancelled_queued() {
  std::vector<std::shared_ptr<Request>> cancelled;
  {
    std::lock_guard<std::mutex> lock(mu_);
    for (auto it = waiting_.begin(); it != waiting_.end();) {
      if ((*it)->cancel_requested) {
        cancelled.push_back(*it);
        it = waiting_.erase(it);
      } else {
        ++it;
      }
    }
  }
  for (auto& r : cancelled) {
    auto event = make_event(*r, EventType::Finished);
    event->reason = FinishReason::Cancelled;
    event->prompt_tokens = int64_t(r->prompt.size());
    finish_request(r, std::move(event));
  }
}

void Engine::admit() {
  std::vector<std::shared_ptr<Request>> admitted;
  {
    std::lock_guard<std::mutex> lock(mu_);
    // First come, first served: a request that does not fit yet blocks those behind it, so
    // a long document is not starved by a stream of short requests.
    while (!waiting_.empty() && int64_t(running_.size() + admitted.size()) < options_.max_sequences) {
      const std::shared_ptr<Request>& r = waiting_.front();
      if (!budget_->try_reserve_sequence(r->reserved_bytes)) break;
      r->phase = Request::Phase::Running;
      admitted.push_back(r);
      waiting_.pop_front();
    }
  }
  for (auto& r : admitted) {
    std::unique_ptr<SeqState> state;
    try {
      std::lock_guard<std::mutex> lock(runtime_->step_mutex());
      state = r->spec.prefix ? r->spec.prefix->clone_state_locked() : runtime_->backend().new_state();
      running_.push_back(std::make_unique<Sequence>(r, std::move(state), *runtime_));
      ++running_count_;
    } catch (const std::exception& e) {
      Code code = Code::Internal;
      if (auto* err = dynamic_cast<const Error*>(&e)) code = err->code();
      else if (dynamic_cast<const std::bad_alloc*>(&e)) code = Code::OutOfMemory;
      release_state(std::move(state));
      budget_->release_sequence(r->reserved_bytes);
      auto event = make_event(*r, EventType::Finished);
      event->reason = FinishReason::Error;
      event->prompt_tokens = int64_t(r->prompt.size());
      event->error_code = code;
      event->error_message = std::string("cannot create the sequence state: ") + e.what();
      finish_request(r, std::move(event));
      if (code == Code::Device) poison(e.what());
    }
  }
}

void Engine::retire_cancelled() {
  for (auto& s : running_)
    if (!s->done() && s->request().cancel_requested) finish_sequence(*s, FinishReason::Cancelled);
}

StepPlan Engine::plan_step() {
  StepPlan plan;
  int64_t left = options_.step_token_budget;
  auto add_part = [&](StepPart part, const std::vector<int32_t>& tokens) {
    const int32_t base = int32_t(plan.tokens.size());
    part.logit_base = plan.logit_rows.size();
    for (int32_t r : part.local_rows) plan.logit_rows.push_back(base + r);
    plan.tokens.insert(plan.tokens.end(), tokens.begin(), tokens.end());
    plan.batch.seqs.push_back(StepSeq{&part.seq->state(), part.n_tokens, part.seq->state().tokens});
    plan.parts.push_back(std::move(part));
    left -= plan.parts.back().n_tokens;
  };

  // Decode tokens first: one per generating sequence, taking turns when they outnumber
  // the budget.
  std::vector<Sequence*> decoding;
  for (auto& s : running_)
    if (!s->done() && !s->prefilling()) decoding.push_back(s.get());
  const size_t n_decode = std::min(decoding.size(), size_t(left));
  for (size_t i = 0; i < n_decode; ++i) {
    Sequence* s = decoding[(decode_rotation_ + i) % decoding.size()];
    StepPart part;
    part.seq = s;
    part.decode = true;
    part.n_tokens = 1;
    part.local_rows = {0};
    add_part(std::move(part), {s->pending_input()});
  }
  decode_rotation_ += n_decode;

  // Then prefill chunks, in admission order.
  const uint64_t vocab = uint64_t(runtime_->vocab_size());
  for (auto& sp : running_) {
    Sequence& s = *sp;
    if (left <= 0) break;
    if (s.done() || !s.prefilling()) continue;
    const Request& r = s.request();
    int64_t n = std::min({s.prompt_size() - s.prefilled(), options_.prefill_chunk, left});
    if (r.spec.prompt_logprobs) n = std::min<int64_t>(n, std::max<int64_t>(1, int64_t(kPromptLogprobBytes / (4 * vocab))));
    StepPart part;
    part.seq = &s;
    part.prompt_begin = s.prefilled();
    part.n_tokens = n;
    const int64_t a = part.prompt_begin, b = a + n;
    part.logits_positions = s.take_logits_positions(a, b);
    if (r.spec.prompt_logprobs) {
      for (int64_t i = 0; i < n; ++i) part.local_rows.push_back(int32_t(i));
    } else {
      for (int64_t p : part.logits_positions) part.local_rows.push_back(int32_t(p - a));
      // The last prompt token's row gives the first generated token.
      if (b == s.prompt_size() && r.generates()) part.local_rows.push_back(int32_t(n - 1));
      part.local_rows.erase(std::unique(part.local_rows.begin(), part.local_rows.end()), part.local_rows.end());
    }
    std::vector<int32_t> chunk(r.prompt.begin() + a, r.prompt.begin() + b);
    add_part(std::move(part), chunk);
  }
  return plan;
}

void Engine::run_step() {
  StepPlan plan = plan_step();
  if (plan.parts.empty()) return;
  const auto t0 = std::chrono::steady_clock::now();
  try {
    std::lock_guard<std::mutex> lock(runtime_->step_mutex());
    forward_.run(plan.batch, plan.tokens, plan.logit_rows, &logits_);
  } catch (const Error& e) {
    step_failed(plan, e.code(), e.what());
    return;
  } catch (const std::bad_alloc&) {
    step_failed(plan, Code::OutOfMemory, "out of memory while running a step");
    return;
  } catch (const std::exception& e) {
    step_failed(plan, Code::Internal, e.what());
    return;
  }
  ++steps_;
  for (const StepPart& part : plan.parts) {
    try {
      process_part(part);
    } catch (const Error& e) {
      if (!part.seq->done()) finish_sequence(*part.seq, FinishReason::Error, e.code(), e.what());
    } catch (const std::bad_alloc&) {
      if (!part.seq->done())
        finish_sequence(*part.seq, FinishReason::Error, Code::OutOfMemory, "out of memory after a step");
    }
  }
  busy_nanoseconds_ += nanoseconds_since(t0);
}

void Engine::process_part(const StepPart& part) {
  Sequence& seq = *part.seq;
  Request& r = seq.request();
  const size_t vocab = size_t(runtime_->vocab_size());
  auto row = [&](int64_t local) -> const float* {
    auto it = std::lower_bound(part.local_rows.begin(), part.local_rows.end(), int32_t(local));
    MMX_CHECK(it != part.local_rows.end() && *it == local, Code::Internal, "step: a logits row is missing");
    return logits_.data() + (part.logit_base + size_t(it - part.local_rows.begin())) * vocab;
  };

  if (part.decode) {
    accept_token(seq, seq.sampler().sample(row(0)));
    return;
  }

  const int64_t a = part.prompt_begin, b = a + part.n_tokens, n_prompt = seq.prompt_size();
  if (r.spec.prompt_logprobs) {
    // Row i predicts prompt token i + 1, so this chunk scores positions a+1 .. b (and the
    // first chunk also reports position 0, which nothing predicts).
    auto event = make_event(r, EventType::PromptLogprobs);
    event->first = a == 0 ? 0 : a + 1;
    for (int64_t pos = event->first; pos <= std::min(b, n_prompt - 1); ++pos) {
      const int32_t token = r.prompt[size_t(pos)];
      float lp = std::numeric_limits<float>::quiet_NaN();
      if (pos > 0) {
        const float* lr = row(pos - 1 - a);
        lp = float(double(lr[token]) - log_sum_exp(lr, vocab));
      }
      event->logprobs.push_back(lp);
      event->tokens.push_back(token);
    }
    if (!event->logprobs.empty()) deliver(r, std::move(event));
  }
  for (int64_t p : part.logits_positions) {
    auto event = make_event(r, EventType::Logits);
    event->position = p;
    const float* lr = row(p - a);
    event->logits.assign(lr, lr + vocab);
    deliver(r, std::move(event));
  }
  seq.advance_prefill(part.n_tokens);
  prompt_tokens_ += uint64_t(part.n_tokens);
  auto progress = make_event(r, EventType::Progress);
  progress->done = b;
  progress->total = n_prompt;
  deliver(r, std::move(progress));

  if (b < n_prompt) return;
  if (r.spec.make_prefix) {
    finish_sequence(seq, FinishReason::PrefixReady);
  } else if (!r.generates()) {
    finish_sequence(seq, FinishReason::Length);  // score only: max_tokens 0
  } else {
    accept_token(seq, seq.sampler().sample(row(part.n_tokens - 1)));
  }
}

void Engine::accept_token(Sequence& seq, const TokenChoice& choice) {
  ++generated_tokens_;
  Sequence::TokenOutcome outcome = seq.accept_token(choice.token, runtime_->eos_token(), context_limit_);
  auto event = make_event(seq.request(), EventType::Token);
  event->token = choice.token;
  event->logprob = choice.logprob;
  event->top = choice.top;
  event->text = std::move(outcome.text);
  deliver(seq.request(), std::move(event));
  if (outcome.finish != FinishReason::None) finish_sequence(seq, outcome.finish);
}

void Engine::finish_sequence(Sequence& seq, FinishReason reason, Code code, const std::string& message) {
  if (seq.done()) return;
  seq.mark_done();
  --running_count_;  // before the final event, so a host that saw it sees consistent stats
  Request& r = seq.request();
  auto event = make_event(r, EventType::Finished);
  event->reason = reason;
  event->prompt_tokens = seq.prompt_size();
  event->generated_tokens = seq.generated();
  event->error_code = code;
  event->error_message = message;
  if (reason != FinishReason::Error) event->text = seq.flush_text();

  if (reason == FinishReason::PrefixReady) {
    std::vector<int32_t> tokens;
    if (r.spec.prefix) tokens = r.spec.prefix->tokens();
    tokens.insert(tokens.end(), r.prompt.begin(), r.prompt.end());
    const uint64_t bytes = runtime_->backend().state_bytes(int64_t(tokens.size()));
    budget_->convert_to_prefix(r.reserved_bytes, bytes);
    event->prefix = std::make_shared<Prefix>(runtime_, budget_, std::move(tokens), seq.take_state(), bytes);
  } else {
    release_state(seq.take_state());
    budget_->release_sequence(r.reserved_bytes);
  }
  finish_request(seq.request_ptr(), std::move(event));
}

void Engine::release_state(std::unique_ptr<SeqState> state) {
  if (!state) return;
  std::lock_guard<std::mutex> lock(runtime_->step_mutex());
  state.reset();
}

void Engine::remove_finished() {
  running_.erase(std::remove_if(running_.begin(), running_.end(), [](const auto& s) { return s->done(); }),
                 running_.end());
}

void Engine::step_failed(const StepPlan& plan, Code code, const std::string& message) {
  if (code == Code::Device) {
    poison(message);
    return;
  }
  MMX_LOG_ERROR("a step failed (" + std::string(code_name(code)) + "): " + message);
  for (const StepPart& part : plan.parts)
    finish_sequence(*part.seq, FinishReason::Error, code, message);
}

void Engine::poison(const std::string& message) {
  MMX_LOG_ERROR("device error; the context stops serving: " + message);
  std::vector<std::shared_ptr<Request>> queued;
  {
    std::lock_guard<std::mutex> lock(mu_);
    if (poisoned_.empty()) poisoned_ = message.empty() ? "device error" : message;
    queued.assign(waiting_.begin(), waiting_.end());
    waiting_.clear();
  }
  for (auto& s : running_) finish_sequence(*s, FinishReason::Error, Code::Device, message);
  for (auto& r : queued) {
    auto event = make_event(*r, EventType::Finished);
    event->reason = FinishReason::Error;
    event->prompt_tokens = int64_t(r->prompt.size());
    event->error_code = Code::Device;
    event->error_message = "not started: the context hit a device error: " + message;
    finish_request(r, std::move(event));
  }
}

void Engine::shut_down() {
  for (auto& s : running_) finish_sequence(*s, FinishReason::Cancelled);
  running_.clear();
  std::deque<std::shared_ptr<Request>> queued;
  {
    std::lock_guard<std::mutex> lock(mu_);
    queued.swap(waiting_);
  }
  for (auto& r : queued) {
    auto event = make_event(*r, EventType::Finished);
    event->reason = FinishReason::Cancelled;
    event->prompt_tokens = int64_t(r->prompt.size());
    finish_request(r, std::move(event));
  }
}

}  // namespace mmx
