// docqa: document analysis with libminimax. The document is ingested once into a reusable
// prefix (its lightning states and softmax KV), then every question continues that prefix,
// so a question costs only its own tokens, not the whole document again.
//
//   docqa [--model DIR] [--document FILE] [--question TEXT]... [--max-tokens N]
//         [--backend cpu|cuda|auto] [--threads N]
//
// Without --document it reads the bundled sample (examples/docqa/sample-document.txt) and asks
// the sample questions; with a document but no --question it reads questions from stdin, one
// per line. Answers stream to stdout; progress, timings and memory go to stderr.
#include <unistd.h>

#include <chrono>
#include <csignal>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <fstream>
#include <iostream>
#include <sstream>
#include <stdexcept>
#include <string>
#include <vector>

#include "minimax.h"

namespace {

using Clock = std::chrono::steady_clock;
double seconds_since(Clock::time_point t0) {
  return std::chrono::duration<double>(Clock::now() - t0).count();
}

// Throws with the library's message when a call fails (and frees the status).
void check(mmx_status* st, const std::string& what) {
  if (!st) return;
  std::string msg =
      what + ": " + mmx_code_name(mmx_status_code(st)) + ": " + mmx_status_message(st);
  mmx_status_free(st);
  throw std::runtime_error(msg);
}

// Ctrl-C only sets a flag (async-signal-safe); the event loop polls it and cancels the request.
// No SA_RESTART, so a blocking read of the next question returns too; SA_RESETHAND lets a
// second Ctrl-C terminate as usual.
volatile std::sig_atomic_t g_interrupt = 0;
extern "C" void on_sigint(int) { g_interrupt = 1; }
void install_interrupt_handler() {
  struct sigaction sa;
  std::memset(&sa, 0, sizeof sa);
  sa.sa_handler = on_sigint;
  sigemptyset(&sa.sa_mask);
  sa.sa_flags = SA_RESETHAND;
  sigaction(SIGINT, &sa, nullptr);
}

std::string json_string(const std::string& s) {
  std::string out = "\"";
  for (unsigned char c : s) {
    if (c == '"' || c == '\\')
      out += '\\', out += char(c);
    else if (c == '\n')
      out += "\\n";
    else if (c < 0x20) {
      char b[8];
      std::snprintf(b, sizeof b, "\\u%04x", c);
      out += b;
    } else
      out += char(c);
  }
  return out + "\"";
}

std::string chat_format(const mmx_model* model, const std::string& messages, int gen_prompt) {
  size_t needed = 0;
  mmx_status* st = mmx_apply_chat_format(model, messages.c_str(), gen_prompt, nullptr, 0, &needed);
  if (st && mmx_status_code(st) != MMX_BUFFER_TOO_SMALL) check(st, "chat format");
  mmx_status_free(st);
  std::string out(needed, '\0');
  check(mmx_apply_chat_format(model, messages.c_str(), gen_prompt, out.data(), needed, &needed),
        "chat format");
  out.resize(needed - 1);
  return out;
}

// How the document and each question are written as prompt text. With a chat format, the
// document is the first user turn and a question is the text a second user turn adds, found
// by rendering a conversation with and without it (the formats only ever append).
struct PromptStyle {
  const mmx_model* model = nullptr;
  bool chat = false;
  std::string system =
      "{\"role\":\"system\",\"content\":\"Answer questions about the document "
      "the user provides, briefly and accurately.\"}";

  std::string document(const std::string& doc) const {
    if (!chat) return "Document:\n" + doc + "\n\n";
    return chat_format(model, "[" + system + "," + user("Here is a document:\n\n" + doc) + "]", 0);
  }
  std::string question(const std::string& q) const {
    if (!chat) return "Question: " + q + "\nAnswer:";
    std::string base = "[" + system + "," + user("x");
    std::string before = chat_format(model, base + "]", 0);
    std::string after = chat_format(model, base + "," + user(q) + "]", 1);
    if (after.compare(0, before.size(), before) != 0)
      throw std::runtime_error("the chat format does not extend a conversation by appending");
    return after.substr(before.size());
  }
  static std::string user(const std::string& text) {
    return "{\"role\":\"user\",\"content\":" + json_string(text) + "}";
  }
};

void draw_progress(int64_t done, int64_t total, double secs) {
  const int width = 30;
  int fill = total > 0 ? int(double(done) / double(total) * width) : 0;
  std::fprintf(stderr, "\r\033[Kingest [%.*s%*s] %lld/%lld tokens  %.0f tok/s", fill,
               "##############################", width - fill, "", (long long)done,
               (long long)total, secs > 0 ? double(done) / secs : 0.0);
  std::fflush(stderr);
}

// Runs request `id` to its final event, streaming text to stdout and, when `bar` is set, a
// prefill progress bar to stderr. Returns the final event (the caller frees it);
// *first_token_s gets the time to first token.
mmx_event* run(mmx_context* ctx, mmx_request_id id, bool bar, double* first_token_s) {
  auto t0 = Clock::now();
  double last_draw = -1;
  bool cancelled = false;
  *first_token_s = -1;
  for (;;) {
    if (g_interrupt && !cancelled) {
      mmx_status_free(mmx_context_cancel(ctx, id));  // NOT_FOUND: it already finished
      cancelled = true;
    }
    mmx_event* ev = nullptr;
    mmx_status* st = mmx_context_next_event(ctx, id, 100, &ev);
    if (st && mmx_status_code(st) == MMX_TIMEOUT) {
      mmx_status_free(st);
      continue;
    }
    check(st, "waiting for events");
    mmx_event_type type = mmx_event_get_type(ev);
    int64_t done = 0, total = 0;
    if (type == MMX_EVENT_PROGRESS && bar && !mmx_event_progress(ev, &done, &total)) {
      double t = seconds_since(t0);
      if (t - last_draw > 0.1 || done == total) draw_progress(done, total, t), last_draw = t;
    } else if (type == MMX_EVENT_TOKEN || type == MMX_EVENT_FINISHED) {
      if (type == MMX_EVENT_TOKEN && *first_token_s < 0) *first_token_s = seconds_since(t0);
      size_t len = 0;
      const char* text = mmx_event_text(ev, &len);
      std::fwrite(text, 1, len, stdout);
      std::fflush(stdout);
    }
    if (type == MMX_EVENT_FINISHED) {
      if (last_draw >= 0) std::fputs("\r\033[K", stderr);
      return ev;
    }
    mmx_event_free(ev);
  }
}

std::string read_file(const std::string& path) {
  std::ifstream f(path, std::ios::binary);
  if (!f) throw std::runtime_error("cannot open '" + path + "'");
  std::ostringstream ss;
  ss << f.rdbuf();
  return ss.str();
}

double mib(uint64_t bytes) { return double(bytes) / (1 << 20); }

const char* kUsage =
    "usage: docqa [--model DIR] [--document FILE] [--question TEXT]... [--max-tokens N]\n"
    "             [--backend cpu|cuda|auto] [--threads N]\n";

const char* kSampleDocument = "examples/docqa/sample-document.txt";
const char* kSampleQuestions[] = {
    "Please repeat the first poem you wrote about penguins.",
    "Which topics did the user ask for poems about?",
    "How many poems about penguins are in the conversation?",
};

struct Args {
  std::string model_dir = "models/demo", doc_path, backend;
  std::vector<std::string> questions;
  int64_t max_tokens = 200, threads = -1;
};

// Returns 0 to go on, else the exit status (--help: 0 after printing, bad input: 2).
int parse_args(int argc, char** argv, Args* a, bool* done) {
  auto number = [](const std::string& v, int64_t lo, int64_t* out) {
    char* end = nullptr;
    long long x = std::strtoll(v.c_str(), &end, 10);
    if (v.empty() || *end != '\0' || x < lo) return false;
    *out = x;
    return true;
  };
  for (int i = 1; i < argc; ++i) {
    std::string opt = argv[i];
    if (opt == "-h" || opt == "--help") {
      std::fputs(kUsage, stdout);
      *done = true;
      return 0;
    }
    if (i + 1 >= argc) {
      std::fprintf(stderr, "docqa: %s needs a value\n%s", opt.c_str(), kUsage);
      return 2;
    }
    std::string v = argv[++i];
    bool ok = true;
    if (opt == "--model")
      a->model_dir = v;
    else if (opt == "--document")
      a->doc_path = v;
    else if (opt == "--question")
      a->questions.push_back(v);
    else if (opt == "--backend")
      a->backend = v;
    else if (opt == "--max-tokens")
      ok = number(v, 1, &a->max_tokens);
    else if (opt == "--threads")
      ok = number(v, 0, &a->threads);
    else
      ok = false;
    if (!ok) {
      std::fprintf(stderr, "docqa: bad argument '%s %s'\n%s", opt.c_str(), v.c_str(), kUsage);
      return 2;
    }
  }
  if (a->doc_path.empty()) {  // the bundled sample and its questions
    a->doc_path = kSampleDocument;
    if (a->questions.empty())
      a->questions.assign(std::begin(kSampleQuestions), std::end(kSampleQuestions));
  }
  return 0;
}

mmx_model* load_model(const Args& a) {
  mmx_model_options* mo = nullptr;
  check(mmx_model_options_create(&mo), "model options");
  mmx_status* st = nullptr;
  if (!a.backend.empty())
    st = mmx_model_options_set_string(mo, MMX_MODEL_OPT_BACKEND, a.backend.c_str());
  if (!st && a.threads >= 0) st = mmx_model_options_set_int(mo, MMX_MODEL_OPT_THREADS, a.threads);
  mmx_model* model = nullptr;
  if (!st) st = mmx_model_load(a.model_dir.c_str(), mo, nullptr, nullptr, &model);
  mmx_model_options_free(mo);
  check(st, "loading '" + a.model_dir + "'");
  return model;
}

bool has_chat_format(const mmx_model* model) {
  size_t needed = 0;
  mmx_status* st = mmx_apply_chat_format(model, "[{\"role\":\"user\",\"content\":\"x\"}]", 1,
                                         nullptr, 0, &needed);
  bool ok = !st || mmx_status_code(st) == MMX_BUFFER_TOO_SMALL;
  mmx_status_free(st);
  return ok;
}

// Submits a request built by `fill` (then frees the description; the context copied it).
template <class Fill>
mmx_request_id submit(mmx_context* ctx, Fill fill, const char* what) {
  mmx_request* req = nullptr;
  check(mmx_request_create(&req), "request");
  mmx_status* st = fill(req);
  mmx_request_id id = 0;
  if (!st) st = mmx_context_submit(ctx, req, &id);
  mmx_request_free(req);
  check(st, what);
  return id;
}

// Prefills the document into a prefix and reports its size in tokens, time and memory.
mmx_prefix* ingest(mmx_context* ctx, const std::string& text, bool tty) {
  mmx_request_id id = submit(
      ctx,
      [&](mmx_request* req) {
        mmx_status* st = mmx_request_set_int(req, MMX_REQ_MAKE_PREFIX, 1);
        return st ? st : mmx_request_append_text(req, text.data(), text.size());
      },
      "submitting the document");
  auto t0 = Clock::now();
  double unused = 0;
  mmx_event* fin = run(ctx, id, tty, &unused);
  double secs = seconds_since(t0);
  int64_t tokens = 0, generated = 0;
  mmx_event_counts(fin, &tokens, &generated);
  mmx_prefix* prefix = nullptr;
  mmx_status* st = nullptr;
  std::string error = "ingest ended without a prefix";
  if (mmx_event_finish_reason(fin) == MMX_FINISH_PREFIX_READY)
    st = mmx_event_prefix(fin, &prefix);
  else if (mmx_event_finish_reason(fin) == MMX_FINISH_CANCELLED)
    error = "interrupted";
  else if (const mmx_status* e = mmx_event_error(fin))
    error = std::string("ingest failed: ") + mmx_status_message(e);
  mmx_event_free(fin);
  check(st, "taking the prefix");
  if (!prefix) throw std::runtime_error(error);
  uint64_t bytes = 0;
  check(mmx_prefix_state_bytes(prefix, &bytes), "prefix size");
  std::fprintf(stderr,
               "docqa: %lld tokens in %.2f s (%.0f tok/s); the document occupies %.2f MiB of "
               "state (%.0f bytes/token)\n",
               (long long)tokens, secs, double(tokens) / secs, mib(bytes),
               tokens ? double(bytes) / double(tokens) : 0.0);
  return prefix;
}

// Asks one question against the prefix, streaming the answer. Returns false on failure.
bool ask(mmx_context* ctx, mmx_prefix* prefix, const std::string& text, int64_t max_tokens) {
  mmx_request_id id = submit(
      ctx,
      [&](mmx_request* req) {
        mmx_status* st = mmx_request_set_prefix(req, prefix);
        if (!st) st = mmx_request_set_int(req, MMX_REQ_MAX_TOKENS, max_tokens);
        return st ? st : mmx_request_append_text(req, text.data(), text.size());
      },
      "submitting a question");
  auto t0 = Clock::now();
  double ttft = -1;
  mmx_event* fin = run(ctx, id, false, &ttft);
  double total = seconds_since(t0);
  int64_t q_tokens = 0, a_tokens = 0;
  mmx_event_counts(fin, &q_tokens, &a_tokens);
  bool ok = mmx_event_finish_reason(fin) != MMX_FINISH_ERROR;
  if (!ok) std::fprintf(stderr, "\ndocqa: %s\n", mmx_status_message(mmx_event_error(fin)));
  mmx_event_free(fin);
  std::printf("\n");
  std::fflush(stdout);  // the answer before its stats when both go to one terminal
  std::fprintf(stderr,
               "[question %lld tokens | first token %.1f ms | answer %lld tokens, %.1f tok/s]\n",
               (long long)q_tokens, ttft >= 0 ? ttft * 1e3 : 0.0, (long long)a_tokens,
               a_tokens > 1 && total > ttft ? double(a_tokens - 1) / (total - ttft) : 0.0);
  return ok;
}

}  // namespace

int main(int argc, char** argv) {
  Args args;
  bool done = false;
  if (int rc = parse_args(argc, argv, &args, &done); rc || done) return rc;
  const bool tty = isatty(STDERR_FILENO) == 1;
  install_interrupt_handler();  // Ctrl-C: cancel the running request, then stop

  mmx_model* model = nullptr;
  mmx_context* ctx = nullptr;
  mmx_prefix* prefix = nullptr;
  int rc = 0;
  try {
    std::string doc = read_file(args.doc_path);
    model = load_model(args);
    check(mmx_context_create(model, nullptr, &ctx), "context");
    PromptStyle style;
    style.model = model;
    style.chat = has_chat_format(model);
    if (!style.chat)
      std::fputs("docqa: the model has no chat format; using plain prompts\n", stderr);

    std::fprintf(stderr, "docqa: ingesting %s (%.1f KiB)\n", args.doc_path.c_str(),
                 doc.size() / 1024.0);
    prefix = ingest(ctx, style.document(doc), tty);

    if (args.questions.empty() && isatty(STDIN_FILENO))
      std::fputs("questions, one per line (Ctrl-D ends):\n", stderr);
    for (size_t i = 0; !g_interrupt; ++i) {
      std::string q;
      if (i < args.questions.size())
        q = args.questions[i];
      else if (!args.questions.empty() || !std::getline(std::cin, q))
        break;
      if (q.empty()) continue;
      std::printf("\nQ: %s\nA:", q.c_str());
      std::fflush(stdout);
      if (!ask(ctx, prefix, style.question(q), args.max_tokens)) rc = 1;
    }
    if (g_interrupt) rc = 130;
  } catch (const std::exception& e) {
    std::fprintf(stderr, "\ndocqa: %s\n", e.what());
    rc = g_interrupt ? 130 : 1;
  }
  mmx_prefix_free(prefix);
  mmx_context_free(ctx);
  mmx_model_free(model);
  return rc;
}
