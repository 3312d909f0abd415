// RequestSpec: everything a host asked for in one request, as copied at submit. The C ABI's
// mmx_request is one of these; the setters there check each value's range, and
// Engine::submit checks what needs the model (token ids, positions, the context limit).
#pragma once
#include <cstdint>
#include <map>
#include <memory>
#include <string>
#include <vector>

#include "engine/event.h"

namespace mmx {

class Prefix;

// One piece of the prompt: text (tokenized at submit) or token ids, in the order appended.
struct PromptPiece {
  bool is_text = false;
  std::string text;
  std::vector<int32_t> tokens;
};

struct SamplingParams {
  double temperature = 0.0;  // 0 = greedy
  int64_t top_k = 0;         // 0 = off
  double top_p = 1.0;        // 1 = off
  double min_p = 0.0;        // 0 = off
  double repetition_penalty = 1.0;  // CTRL-style over prompt + output; 1 = off
  double frequency_penalty = 0.0;   // over generated tokens
  double presence_penalty = 0.0;    // over generated tokens
  uint64_t seed = 0;
  std::map<int32_t, float> logit_bias;  // token -> added to its logit (-inf bans it)
};

struct RequestSpec {
  std::vector<PromptPiece> prompt;
  int64_t max_tokens = 256;   // 0 = prefill / score only
  int32_t top_logprobs = 0;   // 0..20
  bool prompt_logprobs = false;
  bool make_prefix = false;
  bool ignore_eos = false;
  bool add_bos = false;
  bool parse_special = true;
  SamplingParams sampling;
  std::shared_ptr<const Prefix> prefix;  // start from this prefix instead of an empty sequence
  std::vector<std::string> stop_strings;
  std::vector<int32_t> stop_tokens;
  std::vector<int64_t> logits_positions;  // prompt positions; -1 = the last prompt token
  void* user_data = nullptr;              // copied into every event
  EventCallback callback;                 // set: push delivery instead of the pull queue
};

constexpr int32_t kMaxTopLogprobs = 20;

}  // namespace mmx
