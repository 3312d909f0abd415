// Events a request produces, in order: PROGRESS / PROMPT_LOGPROBS / LOGITS while its prompt is
// processed, TOKEN per generated token, and exactly one FINISHED, always last.
#pragma once
#include <cstdint>
#include <functional>
#include <memory>
#include <string>
#include <utility>
#include <vector>

#include "core/error.h"

namespace mmx {

class Prefix;

// Same numeric values as mmx_event_type / mmx_finish_reason in include/minimax.h.
enum class EventType : int { Progress = 1, Token = 2, PromptLogprobs = 3, Logits = 4, Finished = 5 };
enum class FinishReason : int {
  None = 0,
  Eos = 1,
  StopString = 2,
  StopToken = 3,
  Length = 4,
  Cancelled = 5,
  Error = 6,
  PrefixReady = 7,
};

struct Event {
  EventType type = EventType::Progress;
  uint64_t request_id = 0;
  void* user_data = nullptr;

  // Token: the generated id, its logprob under the unmodified distribution and the most
  // likely alternatives (token, logprob), best first.
  int32_t token = -1;
  float logprob = 0.0f;
  std::vector<std::pair<int32_t, float>> top;
  // Token / Finished: text delta, whole UTF-8 characters only.
  std::string text;

  // Progress: prompt tokens processed so far / in all.
  int64_t done = 0, total = 0;

  // PromptLogprobs: positions [first, first + logprobs.size()) of the prompt.
  // Logits: `position` and a vocab-sized row.
  int64_t first = 0;
  std::vector<float> logprobs;
  std::vector<int32_t> tokens;
  int64_t position = 0;
  std::vector<float> logits;

  // Finished.
  FinishReason reason = FinishReason::None;
  int64_t prompt_tokens = 0, generated_tokens = 0;
  Code error_code = Code::Ok;  // reason Error
  std::string error_message;
  std::shared_ptr<const Prefix> prefix;  // reason PrefixReady
};

// Push delivery: takes ownership of each event. Called on the engine's scheduler thread.
using EventCallback = std::function<void(std::unique_ptr<Event>)>;

}  // namespace mmx
