#include "session.h"

#include <unistd.h>

#include <chrono>
#include <cmath>
#include <csignal>
#include <cstdio>
#include <cstring>

namespace cli {

LibraryError::LibraryError(const std::string& what, mmx_code c)
    : std::runtime_error(what), code(c) {}

void check(mmx_status* status, const std::string& what) {
  if (!status) return;
  mmx_code code = mmx_status_code(status);
  std::string msg = what + ": " + mmx_code_name(code) + ": " + mmx_status_message(status);
  mmx_status_free(status);
  throw LibraryError(msg, code);
}

// ---- Ctrl-C ---------------------------------------------------------------------------------

namespace {
volatile std::sig_atomic_t g_interrupt = 0;
extern "C" void on_sigint(int) { g_interrupt = 1; }
}  // namespace

void install_interrupt_handler() {
  struct sigaction sa;
  std::memset(&sa, 0, sizeof sa);
  sa.sa_handler = on_sigint;
  sigemptyset(&sa.sa_mask);
  // No SA_RESTART: a blocking read of the chat prompt returns so the REPL can quit.
  // SA_RESETHAND: a second Ctrl-C before we re-arm terminates the process.
  sa.sa_flags = SA_RESETHAND;
  sigaction(SIGINT, &sa, nullptr);
}
bool interrupted() { return g_interrupt != 0; }
void clear_interrupt() {
  g_interrupt = 0;
  install_interrupt_handler();
}

// ---- loading ----------------------------------------------------------------------------------

namespace {

bool stderr_is_tty() { return isatty(STDERR_FILENO) == 1; }

void draw_bar(const char* label, double fraction, const std::string& tail) {
  const int width = 30;
  int fill = int(std::fmin(std::fmax(fraction, 0.0), 1.0) * width);  // full only at the end
  std::fprintf(stderr, "\r\033[K%s [%.*s%*s] %3d%% %s", label, fill,
               "##############################", width - fill, "", int(fraction * 100 + 0.5),
               tail.c_str());
  std::fflush(stderr);
}

void clear_bar() {
  std::fputs("\r\033[K", stderr);
  std::fflush(stderr);
}

int32_t on_load_progress(double fraction, const char* stage, void* user_data) {
  if (*static_cast<bool*>(user_data)) draw_bar("loading", fraction, stage ? stage : "");
  return interrupted() ? 1 : 0;  // Ctrl-C during a long load aborts it cleanly
}

}  // namespace

Session open_session(const Options& opts) {
  mmx_model_options* raw_opts = nullptr;
  check(mmx_model_options_create(&raw_opts), "model options");
  Owned<mmx_model_options> mopts(raw_opts);
  if (!opts.backend.empty())
    check(mmx_model_options_set_string(raw_opts, MMX_MODEL_OPT_BACKEND, opts.backend.c_str()),
          "--backend " + opts.backend);
  if (!opts.devices.empty())
    check(mmx_model_options_set_string(raw_opts, MMX_MODEL_OPT_DEVICES, opts.devices.c_str()),
          "--devices " + opts.devices);
  if (opts.threads)
    check(mmx_model_options_set_int(raw_opts, MMX_MODEL_OPT_THREADS, *opts.threads), "--threads");

  Session s;
  bool show = stderr_is_tty() && !opts.quiet;
  mmx_model* model = nullptr;
  mmx_status* st =
      mmx_model_load(opts.model_dir.c_str(), raw_opts, on_load_progress, &show, &model);
  if (show) clear_bar();
  check(st, "loading model '" + opts.model_dir + "'");
  s.model.reset(model);
  s.info.struct_size = sizeof s.info;
  check(mmx_model_get_info(model, &s.info), "model info");
  mmx_context* ctx = nullptr;
  check(mmx_context_create(model, nullptr, &ctx), "creating a context");
  s.context.reset(ctx);
  return s;
}

Owned<mmx_request> make_request(const Options& o) {
  mmx_request* raw = nullptr;
  check(mmx_request_create(&raw), "request");
  Owned<mmx_request> req(raw);
  auto set_int = [&](mmx_request_option k, int64_t v, const char* name) {
    check(mmx_request_set_int(raw, k, v), name);
  };
  auto set_double = [&](mmx_request_option k, double v, const char* name) {
    check(mmx_request_set_double(raw, k, v), name);
  };
  if (o.max_tokens) set_int(MMX_REQ_MAX_TOKENS, *o.max_tokens, "--max-tokens");
  if (o.seed) set_int(MMX_REQ_SEED, *o.seed, "--seed");
  if (o.top_k) set_int(MMX_REQ_TOP_K, *o.top_k, "--top-k");
  if (o.add_bos) set_int(MMX_REQ_ADD_BOS, 1, "--bos");
  if (o.ignore_eos) set_int(MMX_REQ_IGNORE_EOS, 1, "--ignore-eos");
  if (o.temperature) set_double(MMX_REQ_TEMPERATURE, *o.temperature, "--temperature");
  if (o.top_p) set_double(MMX_REQ_TOP_P, *o.top_p, "--top-p");
  if (o.min_p) set_double(MMX_REQ_MIN_P, *o.min_p, "--min-p");
  if (o.repetition_penalty)
    set_double(MMX_REQ_REPETITION_PENALTY, *o.repetition_penalty, "--repetition-penalty");
  for (const std::string& s : o.stops) check(mmx_request_add_stop_string(raw, s.c_str()), "--stop");
  return req;
}

std::string apply_chat_format(const mmx_model* model, const std::string& messages_json) {
  size_t needed = 0;
  mmx_status* st = mmx_apply_chat_format(model, messages_json.c_str(), 1, nullptr, 0, &needed);
  if (st && mmx_status_code(st) != MMX_BUFFER_TOO_SMALL) check(st, "chat format");
  mmx_status_free(st);
  std::string out(needed, '\0');
  check(mmx_apply_chat_format(model, messages_json.c_str(), 1, out.data(), out.size(), &needed),
        "chat format");
  out.resize(needed ? needed - 1 : 0);  // drop the terminating NUL
  return out;
}

// ---- running a request ------------------------------------------------------------------------

double RunResult::prefill_tokens_per_s() const {
  double t = prefill_end_s > 0 ? prefill_end_s : first_token_s > 0 ? first_token_s : total_s;
  return t > 0 && prompt_tokens > 0 ? double(prompt_tokens) / t : NAN;
}

// The first token comes from the last prefill step; the other tokens are the decode steps,
// timed from the end of prefill (its progress event), else from the first token's arrival.
// (Events can reach a busy host in bunches, so the first token's arrival may be late.)
double RunResult::decode_tokens_per_s() const {
  double start = prefill_end_s >= 0 ? prefill_end_s : first_token_s;
  double t = total_s - start;
  return start >= 0 && generated_tokens > 1 && t > 0 ? double(generated_tokens - 1) / t : NAN;
}

RunResult run_request(mmx_context* ctx, const mmx_request* request, bool quiet,
                      const std::function<void(std::string_view)>& on_text) {
  using clock = std::chrono::steady_clock;
  RunResult r;
  const bool show_bar = stderr_is_tty() && !quiet;
  bool bar_drawn = false, cancel_sent = false;
  auto since = [t0 = clock::now()] {
    return std::chrono::duration<double>(clock::now() - t0).count();
  };
  double last_draw = -1;

  mmx_request_id id = 0;
  check(mmx_context_submit(ctx, request, &id), "submitting the request");
  for (;;) {
    if (interrupted() && !cancel_sent) {
      // NOT_FOUND means it finished on its own meanwhile; its final event still comes.
      mmx_status_free(mmx_context_cancel(ctx, id));
      cancel_sent = r.interrupted = true;
    }
    mmx_event* raw = nullptr;
    mmx_status* st = mmx_context_next_event(ctx, id, 100, &raw);
    if (st && mmx_status_code(st) == MMX_TIMEOUT) {
      mmx_status_free(st);
      continue;
    }
    check(st, "waiting for events");
    Owned<mmx_event> ev(raw);
    switch (mmx_event_get_type(raw)) {
      case MMX_EVENT_PROGRESS: {
        int64_t done = 0, total = 0;
        check(mmx_event_progress(raw, &done, &total), "progress event");
        double now = since();
        if (done >= total) r.prefill_end_s = now;
        if (show_bar && total > 0 && (now - last_draw > 0.1 || done >= total)) {
          char tail[96];
          std::snprintf(tail, sizeof tail, "%lld/%lld tokens  %.0f tok/s", (long long)done,
                        (long long)total, now > 0 ? double(done) / now : 0.0);
          draw_bar("prefill", double(done) / double(total), tail);
          bar_drawn = true;
          last_draw = now;
        }
        break;
      }
      case MMX_EVENT_TOKEN: {
        if (r.first_token_s < 0) {
          r.first_token_s = since();
          if (bar_drawn) clear_bar(), bar_drawn = false;
        }
        r.tokens.push_back(mmx_event_token(raw));
        size_t len = 0;
        const char* text = mmx_event_text(raw, &len);
        r.text.append(text, len);
        if (on_text) on_text(std::string_view(text, len));
        break;
      }
      case MMX_EVENT_PROMPT_LOGPROBS: {
        int64_t first = 0;
        size_t count = 0;
        const float* lp = nullptr;
        const int32_t* toks = nullptr;
        check(mmx_event_prompt_logprobs(raw, &first, &count, &lp, &toks), "prompt logprobs");
        if (r.prompt_logprobs.size() < size_t(first) + count)
          r.prompt_logprobs.resize(size_t(first) + count, NAN);
        for (size_t i = 0; i < count; ++i) r.prompt_logprobs[size_t(first) + i] = lp[i];
        break;
      }
      case MMX_EVENT_FINISHED: {
        if (bar_drawn) clear_bar();
        size_t len = 0;
        const char* text = mmx_event_text(raw, &len);
        r.text.append(text, len);
        if (on_text && len) on_text(std::string_view(text, len));
        r.reason = mmx_event_finish_reason(raw);
        check(mmx_event_counts(raw, &r.prompt_tokens, &r.generated_tokens), "finish counts");
        if (const mmx_status* err = mmx_event_error(raw))
          r.error =
              std::string(mmx_code_name(mmx_status_code(err))) + ": " + mmx_status_message(err);
        r.total_s = since();
        return r;
      }
      default:
        break;  // logits rows are not requested by the cli
    }
  }
}

const char* finish_reason_name(mmx_finish_reason reason) {
  switch (reason) {
    case MMX_FINISH_EOS:
      return "eos";
    case MMX_FINISH_STOP_STRING:
      return "stop_string";
    case MMX_FINISH_STOP_TOKEN:
      return "stop_token";
    case MMX_FINISH_LENGTH:
      return "length";
    case MMX_FINISH_CANCELLED:
      return "cancelled";
    case MMX_FINISH_ERROR:
      return "error";
    case MMX_FINISH_PREFIX_READY:
      return "prefix_ready";
    case MMX_FINISH_NONE:
      break;
  }
  return "none";
}

void print_stats(const RunResult& r) {
  std::string line = "[prompt " + std::to_string(r.prompt_tokens) + " tokens";
  char buf[96];
  if (r.first_token_s >= 0) {
    std::snprintf(buf, sizeof buf, " | first token %.1f ms", r.first_token_s * 1e3);
    line += buf;
  }
  if (double p = r.prefill_tokens_per_s(); std::isfinite(p)) {
    std::snprintf(buf, sizeof buf, " | prefill %.1f tok/s", p);
    line += buf;
  }
  line += " | generated " + std::to_string(r.generated_tokens) + " tokens";
  if (double d = r.decode_tokens_per_s(); std::isfinite(d)) {
    std::snprintf(buf, sizeof buf, " | decode %.1f tok/s", d);
    line += buf;
  }
  if (r.total_s < 1)
    std::snprintf(buf, sizeof buf, " | %.1f ms", r.total_s * 1e3);
  else
    std::snprintf(buf, sizeof buf, " | %.2f s", r.total_s);
  line += buf;
  std::snprintf(buf, sizeof buf, " | %s]", finish_reason_name(r.reason));
  line += buf;
  std::fflush(stdout);  // the streamed text first, when both go to one terminal or file
  std::fprintf(stderr, "%s\n", line.c_str());
}

}  // namespace cli
