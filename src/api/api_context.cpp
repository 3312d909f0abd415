// Context options, contexts, submission, cancellation, events and statistics.
#include <vector>

#include "api/api_internal.h"
#include "core/log.h"

using mmx::Code;
using namespace mmx_api;

namespace {

mmx::Engine& engine_of(mmx_context* context) {
  require(context, "context");
  return *context->engine;
}

}  // namespace

extern "C" {

mmx_status* mmx_context_options_create(mmx_context_options** out_options) {
  return guarded(__func__, [&] {
    require(out_options, "out_options");
    *out_options = nullptr;
    *out_options = new mmx_context_options();
  });
}

void mmx_context_options_free(mmx_context_options* options) { delete options; }

mmx_status* mmx_context_options_set_int(mmx_context_options* options, mmx_context_option key, int64_t value) {
  return guarded(__func__, [&] {
    require(options, "options");
    mmx::EngineOptions& o = options->options;
    // Ranges are checked where the options are used (context creation and estimates), with
    // the model's limits at hand; only the sign is checked here.
    auto non_negative = [&](const char* name) {
      MMX_CHECK(value >= 0, Code::InvalidArgument,
                std::string(name) + " is " + std::to_string(value) + "; it must not be negative");
    };
    switch (key) {
      case MMX_CTX_OPT_MAX_SEQUENCES: non_negative("MMX_CTX_OPT_MAX_SEQUENCES"); o.max_sequences = value; return;
      case MMX_CTX_OPT_STEP_TOKEN_BUDGET: non_negative("MMX_CTX_OPT_STEP_TOKEN_BUDGET"); o.step_token_budget = value; return;
      case MMX_CTX_OPT_KV_MEMORY_BYTES: non_negative("MMX_CTX_OPT_KV_MEMORY_BYTES"); o.state_memory_bytes = uint64_t(value); return;
      case MMX_CTX_OPT_PREFILL_CHUNK: non_negative("MMX_CTX_OPT_PREFILL_CHUNK"); o.prefill_chunk = value; return;
      case MMX_CTX_OPT_MAX_CONTEXT: non_negative("MMX_CTX_OPT_MAX_CONTEXT"); o.max_context = value; return;
      case MMX_CTX_OPT_MAX_QUEUED: non_negative("MMX_CTX_OPT_MAX_QUEUED"); o.max_queued = value; return;
      case MMX_CTX_OPT_MAX_ENUM:  // not a key
        break;
    }
    mmx::fail(Code::Unsupported, "unknown context option key " + std::to_string(int(key)));
  });
}

mmx_status* mmx_context_create(mmx_model* model, const mmx_context_options* options, mmx_context** out_context) {
  return guarded(__func__, [&] {
    require(out_context, "out_context");
    *out_context = nullptr;
    require(model, "model");
    auto context = std::make_unique<mmx_context>();
    context->engine = std::make_unique<mmx::Engine>(model->runtime, options ? options->options : mmx::EngineOptions());
    *out_context = context.release();
  });
}

void mmx_context_free(mmx_context* context) {
  if (!context) return;
  if (context->engine->on_scheduler_thread()) {
    // Joining the scheduler from itself would deadlock; leaking is the lesser harm.
    MMX_LOG_ERROR("mmx_context_free called from an event callback of the same context; ignored");
    return;
  }
  delete context;
}

mmx_status* mmx_context_stats_get(mmx_context* context, mmx_context_stats* out_stats) {
  return guarded(__func__, [&] {
    mmx::Engine& engine = engine_of(context);
    require(out_stats, "out_stats");
    mmx::EngineStats s = engine.stats();
    mmx_context_stats full{};
    full.running_sequences = s.running_sequences;
    full.queued_requests = s.queued_requests;
    full.submitted_requests = s.submitted_requests;
    full.finished_requests = s.finished_requests;
    full.prompt_tokens = s.prompt_tokens;
    full.generated_tokens = s.generated_tokens;
    full.steps = s.steps;
    full.state_bytes_in_use = s.state_bytes_in_use;
    full.state_bytes_limit = s.state_bytes_limit;
    full.busy_seconds = s.busy_seconds;
    fill_struct(out_stats, full, "out_stats");
  });
}

mmx_status* mmx_context_submit(mmx_context* context, const mmx_request* request, mmx_request_id* out_id) {
  return guarded(__func__, [&] {
    mmx::Engine& engine = engine_of(context);
    require(request, "request");
    require(out_id, "out_id");
    *out_id = engine.submit({&request->spec}).front();
  });
}

mmx_status* mmx_context_submit_batch(mmx_context* context, const mmx_request* const* requests, size_t n_requests,
                                     mmx_request_id* out_ids) {
  return guarded(__func__, [&] {
    mmx::Engine& engine = engine_of(context);
    if (n_requests == 0) return;
    require(requests, "requests");
    require(out_ids, "out_ids");
    std::vector<const mmx::RequestSpec*> specs(n_requests);
    for (size_t i = 0; i < n_requests; ++i) {
      MMX_CHECK(requests[i] != nullptr, Code::InvalidArgument, "requests[" + std::to_string(i) + "] is NULL");
      specs[i] = &requests[i]->spec;
    }
    std::vector<uint64_t> ids = engine.submit(specs);
    std::copy(ids.begin(), ids.end(), out_ids);
  });
}

mmx_status* mmx_context_cancel(mmx_context* context, mmx_request_id id) {
  return guarded(__func__, [&] { engine_of(context).cancel(id); });
}

mmx_status* mmx_context_next_event(mmx_context* context, mmx_request_id id, int32_t timeout_ms,
                                   mmx_event** out_event) {
  return guarded(__func__, [&] {
    mmx::Engine& engine = engine_of(context);
    require(out_event, "out_event");
    *out_event = nullptr;
    MMX_CHECK(timeout_ms >= -1, Code::InvalidArgument,
              "timeout_ms is " + std::to_string(timeout_ms) + "; use -1 (forever), 0 (poll) or a positive wait");
    std::unique_ptr<mmx::Event> event = engine.next_event(id, timeout_ms);
    *out_event = new mmx_event(std::move(event));
  });
}

}  // extern "C"
