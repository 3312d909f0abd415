// Request: a submitted request as the engine keeps it (shared by the submitting threads, which
// may cancel it, and the scheduler). Sequence: a running request on the scheduler thread: its
// backend state, how far its prompt is processed, and its generation state (sampler, text
// decoder, stop-string filter).
#pragma once
#include <atomic>
#include <cstdint>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "backend/backend.h"
#include "engine/request.h"
#include "engine/sampler.h"
#include "engine/stop.h"
#include "tokenizer/tokenizer.h"

namespace mmx {

class ModelRuntime;

struct Request {
  enum class Phase { Queued, Running, Finished };

  uint64_t id = 0;
  RequestSpec spec;               // as submitted, without the prompt pieces
  std::vector<int32_t> prompt;    // tokenized prompt (a prefix's tokens not included)
  std::vector<int64_t> logits_positions;  // resolved prompt positions, ascending, unique
  int64_t generation_limit = 0;   // tokens it may generate (0 for score-only and prefixes)
  uint64_t reserved_bytes = 0;    // worst-case state bytes, charged while it runs
  std::atomic<bool> cancel_requested{false};
  Phase phase = Phase::Queued;    // guarded by the engine's mutex

  bool uses_callback() const { return bool(spec.callback); }
  bool generates() const { return generation_limit > 0; }
  int64_t prefix_tokens() const;
};

class Sequence {
 public:
  Sequence(std::shared_ptr<Request> request, std::unique_ptr<SeqState> state, const ModelRuntime& rt);

  Request& request() { return *request_; }
  const std::shared_ptr<Request>& request_ptr() const { return request_; }
  SeqState& state() { return *state_; }
  // Hands the state over (to a prefix, or for destruction under the step mutex).
  std::unique_ptr<SeqState> take_state() { return std::move(state_); }

  int64_t prompt_size() const { return int64_t(request_->prompt.size()); }
  int64_t prefilled() const { return prefilled_; }
  bool prefilling() const { return prefilled_ < prompt_size(); }
  void advance_prefill(int64_t n) { prefilled_ += n; }

  // The next decode input: the last generated token.
  int32_t pending_input() const { return pending_input_; }
  int64_t generated() const { return generated_; }

  // Outcome of one generated token: the TOKEN event's text and, when the sequence ends with
  // it, why (None otherwise).
  struct TokenOutcome {
    std::string text;
    FinishReason finish = FinishReason::None;
  };
  TokenOutcome accept_token(int32_t token, int32_t eos_token, int64_t context_limit);
  // Text still held back (incomplete UTF-8, possible stop-string start) for the final event.
  std::string flush_text();

  // Set once the final event is out; the scheduler drops the sequence at the end of the step.
  bool done() const { return done_; }
  void mark_done() { done_ = true; }

  Sampler& sampler() { return sampler_; }
  // Logits positions in [begin, end) of the prompt, consumed in order.
  std::vector<int64_t> take_logits_positions(int64_t begin, int64_t end);

 private:
  std::shared_ptr<Request> request_;
  std::unique_ptr<SeqState> state_;
  int64_t prefilled_ = 0;
  int64_t generated_ = 0;
  int32_t pending_input_ = -1;
  size_t next_logits_position_ = 0;
  bool done_ = false;
  Sampler sampler_;
  std::optional<StreamDecoder> decoder_;  // absent for models without a tokenizer
  int32_t tokenizer_vocab_ = 0;
  StopStringFilter stops_;
};

}  // namespace mmx
