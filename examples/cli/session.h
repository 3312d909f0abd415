// The parts of minimax-cli that talk to libminimax: owning handles, error checking, model
// loading, and the event loop that runs one request (streaming, progress bar, Ctrl-C, stats).
#pragma once
#include <cstdint>
#include <functional>
#include <memory>
#include <stdexcept>
#include <string>
#include <string_view>
#include <vector>

#include "minimax.h"
#include "options.h"

namespace cli {

// A failed library call: what was attempted plus the status code and message.
struct LibraryError : std::runtime_error {
  LibraryError(const std::string& what, mmx_code code);
  mmx_code code;
};

// Frees `status` and throws LibraryError when it is not success.
void check(mmx_status* status, const std::string& what);

struct Free {
  void operator()(mmx_model* p) const { mmx_model_free(p); }
  void operator()(mmx_context* p) const { mmx_context_free(p); }
  void operator()(mmx_request* p) const { mmx_request_free(p); }
  void operator()(mmx_event* p) const { mmx_event_free(p); }
  void operator()(mmx_model_options* p) const { mmx_model_options_free(p); }
};
template <class T>
using Owned = std::unique_ptr<T, Free>;

// Ctrl-C: the handler only sets a flag (async-signal-safe); the event loop polls it and calls
// mmx_context_cancel. A second Ctrl-C before the flag is handled kills the process as usual.
void install_interrupt_handler();
bool interrupted();
void clear_interrupt();  // re-arms the handler (chat: after a cancelled reply)

struct Session {
  Owned<mmx_model> model;
  Owned<mmx_context> context;
  mmx_model_info info{};
};

// Loads opts.model_dir with the backend options and creates a context.
Session open_session(const Options& opts);

// A request with the sampling and stopping options of `opts` (no prompt yet).
Owned<mmx_request> make_request(const Options& opts);

// Text through the model's chat format. `messages_json` as mmx_apply_chat_format takes it.
std::string apply_chat_format(const mmx_model* model, const std::string& messages_json);

struct RunResult {
  std::string text;
  std::vector<int32_t> tokens;
  mmx_finish_reason reason = MMX_FINISH_NONE;
  std::string error;  // reason == MMX_FINISH_ERROR
  int64_t prompt_tokens = 0, generated_tokens = 0;
  std::vector<float> prompt_logprobs;  // by prompt position (NaN where there is none)
  bool interrupted = false;            // cancelled by Ctrl-C
  // Seconds from submit; negative when the moment did not happen.
  double first_token_s = -1, prefill_end_s = -1, total_s = 0;
  double prefill_tokens_per_s() const;
  double decode_tokens_per_s() const;  // tokens after the first over the time after prefill
};

// Submits `request` and runs it to its final event. `on_text` receives each text delta as it
// arrives (may be empty). The progress bar goes to stderr when it is a terminal and !quiet.
RunResult run_request(mmx_context* context, const mmx_request* request, bool quiet,
                      const std::function<void(std::string_view)>& on_text);

const char* finish_reason_name(mmx_finish_reason reason);
// One line of stats on stderr: prompt tokens, time to first token, prefill and decode rates.
void print_stats(const RunResult& r);

}  // namespace cli
