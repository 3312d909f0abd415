// minimax-cli: generate, chat, score and describe models with libminimax through its public C
// ABI only. Exit status: 0 success, 1 library or I/O error, 2 bad command line, 130 Ctrl-C.
#include <unistd.h>

#include <cmath>
#include <cstdio>
#include <fstream>
#include <iostream>
#include <iterator>
#include <sstream>
#include <string>

#include "json.h"
#include "minimax.h"
#include "options.h"
#include "session.h"

namespace cli {
namespace {

constexpr int kExitError = 1, kExitUsage = 2, kExitInterrupted = 130;

struct IoError : std::runtime_error {
  using std::runtime_error::runtime_error;
};

std::string read_file(const std::string& path) {
  std::ifstream f(path, std::ios::binary);
  if (!f) throw IoError("cannot open '" + path + "'");
  std::ostringstream ss;
  ss << f.rdbuf();
  if (f.bad()) throw IoError("cannot read '" + path + "'");
  return ss.str();
}

// The prompt text of generate/score, from the one source the options name (stdin if none).
std::string prompt_text(const Options& o) {
  if (o.prompt) return *o.prompt;
  if (o.prompt_file) return read_file(*o.prompt_file);
  if (isatty(STDIN_FILENO) && !o.quiet)
    std::fputs("(reading the prompt from stdin; end it with Ctrl-D)\n", stderr);
  std::string text((std::istreambuf_iterator<char>(std::cin)), std::istreambuf_iterator<char>());
  return text;
}

void add_prompt(mmx_request* req, const Options& o, const mmx_model* model) {
  if (!o.prompt_tokens.empty()) {
    check(mmx_request_append_tokens(req, o.prompt_tokens.data(), o.prompt_tokens.size()),
          "--prompt-tokens");
    return;
  }
  std::string text = prompt_text(o);
  if (text.empty()) throw IoError("the prompt is empty");
  if (o.apply_chat) {
    std::string messages = "[";
    if (!o.system.empty())
      messages += "{\"role\":\"system\",\"content\":" + json_string(o.system) + "},";
    messages += "{\"role\":\"user\",\"content\":" + json_string(text) + "}]";
    text = apply_chat_format(model, messages);
  }
  check(mmx_request_append_text(req, text.data(), text.size()), "prompt text");
}

std::string timings_json(const RunResult& r) {
  return "{\"time_to_first_token_ms\":" + json_ms(r.first_token_s) +
         ",\"prefill_ms\":" + json_ms(r.prefill_end_s >= 0 ? r.prefill_end_s : r.first_token_s) +
         ",\"total_ms\":" + json_ms(r.total_s) +
         ",\"prefill_tokens_per_s\":" + json_number(r.prefill_tokens_per_s(), 1) +
         ",\"decode_tokens_per_s\":" + json_number(r.decode_tokens_per_s(), 1) + "}";
}

int exit_status(const RunResult& r) {
  if (r.interrupted) return kExitInterrupted;
  if (r.reason == MMX_FINISH_ERROR) {
    std::fprintf(stderr, "minimax-cli: the request failed: %s\n", r.error.c_str());
    return kExitError;
  }
  return 0;
}

int cmd_generate(const Options& o) {
  Session s = open_session(o);
  Owned<mmx_request> req = make_request(o);
  add_prompt(req.get(), o, s.model.get());
  RunResult r = run_request(s.context.get(), req.get(), o.quiet, [&](std::string_view t) {
    if (o.json) return;
    std::fwrite(t.data(), 1, t.size(), stdout);
    std::fflush(stdout);
  });
  if (o.json) {
    std::string tokens;
    for (int32_t t : r.tokens) tokens += (tokens.empty() ? "" : ",") + std::to_string(t);
    std::printf(
        "{\"text\":%s,\"tokens\":[%s],\"finish_reason\":\"%s\",\"prompt_tokens\":%lld,"
        "\"generated_tokens\":%lld,\"timings\":%s%s}\n",
        json_string(r.text).c_str(), tokens.c_str(), finish_reason_name(r.reason),
        (long long)r.prompt_tokens, (long long)r.generated_tokens, timings_json(r).c_str(),
        r.error.empty() ? "" : (",\"error\":" + json_string(r.error)).c_str());
  } else if (!r.text.empty() && r.text.back() != '\n') {
    std::putchar('\n');
  }
  if (!o.quiet) print_stats(r);
  return exit_status(r);
}

int cmd_score(const Options& o) {
  Session s = open_session(o);
  Owned<mmx_request> req = make_request(o);
  check(mmx_request_set_int(req.get(), MMX_REQ_MAX_TOKENS, 0), "score request");
  check(mmx_request_set_int(req.get(), MMX_REQ_PROMPT_LOGPROBS, 1), "score request");
  add_prompt(req.get(), o, s.model.get());
  RunResult r = run_request(s.context.get(), req.get(), o.quiet, nullptr);
  if (int st = exit_status(r)) {
    if (!o.quiet) print_stats(r);
    return st;
  }
  // The first token has no logprob (nothing precedes it), so it is not counted.
  double nll = 0;
  int64_t scored = 0;
  for (float lp : r.prompt_logprobs)
    if (std::isfinite(lp)) nll -= lp, ++scored;
  double mean = scored ? nll / double(scored) : NAN;
  double ppl = std::exp(mean);
  if (o.json) {
    std::printf(
        "{\"tokens\":%lld,\"scored_tokens\":%lld,\"mean_nll\":%s,\"perplexity\":%s,"
        "\"timings\":%s}\n",
        (long long)r.prompt_tokens, (long long)scored, json_number(mean, 6).c_str(),
        json_number(ppl, 4).c_str(), timings_json(r).c_str());
  } else {
    std::printf("tokens %lld (scored %lld)  mean NLL %.4f nats/token  perplexity %.3f\n",
                (long long)r.prompt_tokens, (long long)scored, mean, ppl);
  }
  if (!o.quiet) print_stats(r);
  return 0;
}

int cmd_info(const Options& o) {
  Session s = open_session(o);
  const mmx_model_info& i = s.info;
  std::string kinds;
  for (int32_t l = 0; l < i.num_layers; ++l) {
    mmx_layer_kind k{};
    check(mmx_model_layer_kind(s.model.get(), l, &k), "layer kind");
    kinds += k == MMX_LAYER_SOFTMAX ? 'S' : 'L';
  }
  mmx_memory_estimate m{};
  m.struct_size = sizeof m;
  check(mmx_model_estimate_memory(s.model.get(), nullptr, &m), "memory estimate");
  if (o.json) {
    std::printf(
        "{\"library\":%s,\"model\":%s,\"backend\":%s,\"fingerprint\":%s,"
        "\"vocab_size\":%d,\"layers\":%d,\"softmax_layers\":%d,\"layer_kinds\":%s,"
        "\"hidden_size\":%d,\"heads\":%d,\"kv_heads\":%d,\"head_dim\":%d,\"experts\":%d,"
        "\"experts_per_token\":%d,\"bos_token\":%d,\"eos_token\":%d,\"context_limit\":%lld,"
        "\"parameters\":%llu,\"weight_bytes\":%llu,\"state_bytes_per_sequence\":%llu,"
        "\"kv_bytes_per_token\":%llu}\n",
        json_string(mmx_version_string()).c_str(), json_string(o.model_dir).c_str(),
        json_string(i.backend).c_str(), json_string(i.fingerprint).c_str(), i.vocab_size,
        i.num_layers, i.num_softmax_layers, json_string(kinds).c_str(), i.hidden_size, i.num_heads,
        i.num_kv_heads, i.head_dim, i.num_experts, i.experts_per_token, i.bos_token, i.eos_token,
        (long long)i.context_limit, (unsigned long long)i.parameter_count,
        (unsigned long long)i.weight_bytes, (unsigned long long)m.state_bytes_per_sequence,
        (unsigned long long)m.kv_bytes_per_token);
    return 0;
  }
  std::printf("library        libminimax %s (ABI %u)\n", mmx_version_string(),
              unsigned(mmx_abi_version()));
  std::printf("model          %s (backend %s)\n", o.model_dir.c_str(), i.backend);
  std::printf("fingerprint    %s\n", i.fingerprint);
  std::printf("parameters     %.3f M, %.1f MiB as loaded\n", double(i.parameter_count) / 1e6,
              double(i.weight_bytes) / (1 << 20));
  std::printf("layers         %d (%d softmax): %s\n", i.num_layers, i.num_softmax_layers,
              kinds.c_str());
  std::printf("hidden         %d, %d heads x %d, %d KV heads\n", i.hidden_size, i.num_heads,
              i.head_dim, i.num_kv_heads);
  std::printf("experts        %d, %d per token\n", i.num_experts, i.experts_per_token);
  std::printf("vocabulary     %d (bos %d, eos %d)\n", i.vocab_size, i.bos_token, i.eos_token);
  std::printf("context limit  %lld tokens\n", (long long)i.context_limit);
  std::printf("state          %.1f KiB per sequence + %.1f KiB per token of context\n",
              double(m.state_bytes_per_sequence) / 1024, double(m.kv_bytes_per_token) / 1024);
  return 0;
}

// The REPL keeps the conversation as JSON message objects and re-renders it each turn.
int cmd_chat(const Options& o) {
  Session s = open_session(o);
  std::string system =
      o.system.empty() ? "" : "{\"role\":\"system\",\"content\":" + json_string(o.system) + "}";
  std::vector<std::string> history;
  std::fputs("chat: type a message; /reset clears the history, /quit (or Ctrl-D) leaves.\n",
             stderr);
  for (;;) {
    std::fputs("\n> ", stdout);
    std::fflush(stdout);
    std::string line;
    if (!std::getline(std::cin, line) || interrupted()) break;
    if (line == "/quit" || line == "/exit") break;
    if (line == "/reset") {
      history.clear();
      std::fputs("(history cleared)\n", stderr);
      continue;
    }
    if (line.empty()) continue;
    history.push_back("{\"role\":\"user\",\"content\":" + json_string(line) + "}");
    std::string messages = "[" + system;
    for (const std::string& m : history) messages += (messages.size() > 1 ? "," : "") + m;
    messages += "]";
    std::string prompt = apply_chat_format(s.model.get(), messages);
    Owned<mmx_request> req = make_request(o);
    check(mmx_request_append_text(req.get(), prompt.data(), prompt.size()), "chat prompt");
    RunResult r = run_request(s.context.get(), req.get(), o.quiet, [](std::string_view t) {
      std::fwrite(t.data(), 1, t.size(), stdout);
      std::fflush(stdout);
    });
    if (r.text.empty() || r.text.back() != '\n') std::putchar('\n');
    if (!o.quiet) print_stats(r);
    if (r.interrupted || r.reason == MMX_FINISH_ERROR) {
      // A cut-off or failed reply is not part of the conversation: drop the whole turn.
      if (r.reason == MMX_FINISH_ERROR) std::fprintf(stderr, "minimax-cli: %s\n", r.error.c_str());
      history.pop_back();
      clear_interrupt();
      continue;
    }
    history.push_back("{\"role\":\"assistant\",\"content\":" + json_string(r.text) + "}");
  }
  std::putchar('\n');
  return 0;
}

}  // namespace
}  // namespace cli

int main(int argc, char** argv) {
  using namespace cli;
  if (mmx_abi_version() != MMX_ABI_VERSION) {
    std::fprintf(stderr, "minimax-cli: built for ABI %d but libminimax implements ABI %u\n",
                 MMX_ABI_VERSION, unsigned(mmx_abi_version()));
    return kExitError;
  }
  try {
    std::optional<Options> opts = parse_options(argc, argv);
    if (!opts) return 0;
    install_interrupt_handler();
    const std::string& c = opts->command;
    if (c == "generate") return cmd_generate(*opts);
    if (c == "chat") return cmd_chat(*opts);
    if (c == "score") return cmd_score(*opts);
    return cmd_info(*opts);
  } catch (const UsageError& e) {
    std::fprintf(stderr, "minimax-cli: %s\n(see minimax-cli --help)\n", e.what());
    return kExitUsage;
  } catch (const LibraryError& e) {
    std::fprintf(stderr, "minimax-cli: %s\n", e.what());
    return e.code == MMX_CANCELLED && interrupted() ? kExitInterrupted : kExitError;
  } catch (const std::exception& e) {
    std::fprintf(stderr, "minimax-cli: %s\n", e.what());
    return kExitError;
  }
}
