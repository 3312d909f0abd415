// Event accessors and prefixes.
#include <cmath>

#include "api/api_internal.h"

using mmx::Code;
using mmx::EventType;
using namespace mmx_api;

mmx_event::mmx_event(std::unique_ptr<mmx::Event> e) : event(std::move(e)) {
  if (event->reason == mmx::FinishReason::Error) {
    error.code = static_cast<mmx_code>(event->error_code);
    error.message = event->error_message;
  }
}

namespace {

const char* type_name(EventType t) {
  switch (t) {
    case EventType::Progress: return "PROGRESS";
    case EventType::Token: return "TOKEN";
    case EventType::PromptLogprobs: return "PROMPT_LOGPROBS";
    case EventType::Logits: return "LOGITS";
    case EventType::Finished: return "FINISHED";
  }
  return "unknown";
}

// The event, checked to be of type `want`.
const mmx::Event& event_of(const mmx_event* event, EventType want) {
  require(event, "event");
  const mmx::Event& e = *event->event;
  MMX_CHECK(e.type == want, Code::InvalidArgument,
            std::string("the event is a ") + type_name(e.type) + " event, not a " + type_name(want) + " event");
  return e;
}

}  // namespace

extern "C" {

void mmx_event_free(mmx_event* event) { delete event; }

mmx_event_type mmx_event_get_type(const mmx_event* event) {
  return event ? static_cast<mmx_event_type>(event->event->type) : static_cast<mmx_event_type>(0);
}

mmx_request_id mmx_event_request_id(const mmx_event* event) { return event ? event->event->request_id : 0; }

void* mmx_event_user_data(const mmx_event* event) { return event ? event->event->user_data : nullptr; }

int32_t mmx_event_token(const mmx_event* event) {
  return event && event->event->type == EventType::Token ? event->event->token : -1;
}

const char* mmx_event_text(const mmx_event* event, size_t* out_len) {
  if (!event) {
    if (out_len) *out_len = 0;
    return nullptr;
  }
  // Other event types carry no text: "" with length 0.
  const std::string& text = event->event->text;
  if (out_len) *out_len = text.size();
  return text.c_str();
}

float mmx_event_logprob(const mmx_event* event) {
  return event && event->event->type == EventType::Token ? event->event->logprob : 0.0f;
}

size_t mmx_event_top_count(const mmx_event* event) {
  return event && event->event->type == EventType::Token ? event->event->top.size() : 0;
}

mmx_status* mmx_event_top(const mmx_event* event, size_t i, int32_t* out_token, float* out_logprob) {
  return guarded(__func__, [&] {
    const mmx::Event& e = event_of(event, EventType::Token);
    require(out_token, "out_token");
    require(out_logprob, "out_logprob");
    MMX_CHECK(i < e.top.size(), Code::InvalidArgument,
              "index " + std::to_string(i) + " is out of range: the event has " + std::to_string(e.top.size()) +
                  " top logprobs");
    *out_token = e.top[i].first;
    *out_logprob = e.top[i].second;
  });
}

mmx_status* mmx_event_progress(const mmx_event* event, int64_t* out_done, int64_t* out_total) {
  return guarded(__func__, [&] {
    const mmx::Event& e = event_of(event, EventType::Progress);
    require(out_done, "out_done");
    require(out_total, "out_total");
    *out_done = e.done;
    *out_total = e.total;
  });
}

mmx_status* mmx_event_prompt_logprobs(const mmx_event* event, int64_t* out_first, size_t* out_count,
                                      const float** out_logprobs, const int32_t** out_tokens) {
  return guarded(__func__, [&] {
    const mmx::Event& e = event_of(event, EventType::PromptLogprobs);
    require(out_first, "out_first");
    require(out_count, "out_count");
    require(out_logprobs, "out_logprobs");
    require(out_tokens, "out_tokens");
    *out_first = e.first;
    *out_count = e.logprobs.size();
    *out_logprobs = e.logprobs.data();
    *out_tokens = e.tokens.data();
  });
}

mmx_status* mmx_event_logits(const mmx_event* event, int64_t* out_position, const float** out_logits,
                             size_t* out_count) {
  return guarded(__func__, [&] {
    const mmx::Event& e = event_of(event, EventType::Logits);
    require(out_position, "out_position");
    require(out_logits, "out_logits");
    require(out_count, "out_count");
    *out_position = e.position;
    *out_logits = e.logits.data();
    *out_count = e.logits.size();
  });
}

mmx_finish_reason mmx_event_finish_reason(const mmx_event* event) {
  return event ? static_cast<mmx_finish_reason>(event->event->reason) : MMX_FINISH_NONE;
}

mmx_status* mmx_event_counts(const mmx_event* event, int64_t* out_prompt_tokens, int64_t* out_generated_tokens) {
  return guarded(__func__, [&] {
    const mmx::Event& e = event_of(event, EventType::Finished);
    require(out_prompt_tokens, "out_prompt_tokens");
    require(out_generated_tokens, "out_generated_tokens");
    *out_prompt_tokens = e.prompt_tokens;
    *out_generated_tokens = e.generated_tokens;
  });
}

const mmx_status* mmx_event_error(const mmx_event* event) {
  return event && event->event->reason == mmx::FinishReason::Error ? &event->error : nullptr;
}

mmx_status* mmx_event_prefix(const mmx_event* event, mmx_prefix** out_prefix) {
  return guarded(__func__, [&] {
    require(out_prefix, "out_prefix");
    *out_prefix = nullptr;
    const mmx::Event& e = event_of(event, EventType::Finished);
    MMX_CHECK(e.reason == mmx::FinishReason::PrefixReady && e.prefix, Code::InvalidArgument,
              "the event did not finish with MMX_FINISH_PREFIX_READY; only MMX_REQ_MAKE_PREFIX requests yield a prefix");
    *out_prefix = new mmx_prefix{e.prefix};
  });
}

void mmx_prefix_free(mmx_prefix* prefix) { delete prefix; }

mmx_status* mmx_prefix_token_count(const mmx_prefix* prefix, int64_t* out_tokens) {
  return guarded(__func__, [&] {
    require(prefix, "prefix");
    require(out_tokens, "out_tokens");
    *out_tokens = prefix->prefix->token_count();
  });
}

mmx_status* mmx_prefix_state_bytes(const mmx_prefix* prefix, uint64_t* out_bytes) {
  return guarded(__func__, [&] {
    require(prefix, "prefix");
    require(out_bytes, "out_bytes");
    *out_bytes = prefix->prefix->state_bytes();
  });
}

mmx_status* mmx_prefix_save(const mmx_prefix* prefix, const char* path) {
  return guarded(__func__, [&] {
    require(prefix, "prefix");
    require(path, "path");
    prefix->prefix->save(path);
  });
}

mmx_status* mmx_prefix_load(mmx_context* context, const char* path, mmx_prefix** out_prefix) {
  return guarded(__func__, [&] {
    require(out_prefix, "out_prefix");
    *out_prefix = nullptr;
    require(context, "context");
    require(path, "path");
    auto loaded = context->engine->load_prefix(path);
    *out_prefix = new mmx_prefix{std::move(loaded)};
  });
}

}  // extern "C"
