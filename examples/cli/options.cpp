#include "options.h"

#include <cerrno>
#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <functional>
#include <map>

#include "minimax.h"

namespace cli {

const char* usage_text() {
  return "usage: minimax-cli <command> [options]\n"
         "\n"
         "commands:\n"
         "  generate   continue a prompt (--prompt, --prompt-file or stdin), streaming to stdout\n"
         "  chat       interactive chat in the model's chat format (/reset, /quit)\n"
         "  score      perplexity of a text: score FILE (or --prompt, --prompt-file, stdin)\n"
         "  info       describe the model\n"
         "\n"
         "model and device:\n"
         "  --model DIR               model directory (default models/demo)\n"
         "  --backend cpu|cuda|auto   (default auto: cuda when a GPU is usable)\n"
         "  --devices LIST            CUDA ordinals, e.g. 0,1\n"
         "  --threads N               CPU threads (0 = all cores)\n"
         "input:\n"
         "  --prompt TEXT | --prompt-file FILE | --prompt-tokens ID,ID,...\n"
         "  --chat                    generate: wrap the prompt as a user turn of the chat format\n"
         "  --system TEXT             system message (chat, generate --chat)\n"
         "  --bos                     prepend the model's BOS token\n"
         "sampling (library defaults: greedy, 256 tokens):\n"
         "  --max-tokens N  --temperature T  --top-k K  --top-p P  --min-p P\n"
         "  --repetition-penalty R  --seed N  --stop STR (repeatable)  --ignore-eos\n"
         "output:\n"
         "  --json                    one JSON object on stdout (text, tokens, finish reason, "
         "timings)\n"
         "  --quiet                   no progress bar or stats on stderr\n"
         "  -h, --help  --version\n"
         "\n"
         "Ctrl-C cancels the running request and prints its stats.\n";
}

namespace {

int64_t to_int(const std::string& opt, const std::string& v, int64_t lo, int64_t hi) {
  errno = 0;
  char* end = nullptr;
  long long x = std::strtoll(v.c_str(), &end, 10);
  if (v.empty() || *end != '\0' || errno == ERANGE || x < lo || x > hi) {
    throw UsageError(opt + " expects an integer in [" + std::to_string(lo) + ", " +
                     std::to_string(hi) + "], got '" + v + "'");
  }
  return x;
}

// Bounds are inclusive unless open_lo is set; the message states the accepted range.
double to_double(const std::string& opt, const std::string& v, double lo, double hi,
                 const char* range, bool open_lo = false) {
  errno = 0;
  char* end = nullptr;
  double x = std::strtod(v.c_str(), &end);
  bool ok = !v.empty() && *end == '\0' && errno != ERANGE && std::isfinite(x) && x <= hi &&
            (open_lo ? x > lo : x >= lo);
  if (!ok) throw UsageError(opt + " expects a number " + range + ", got '" + v + "'");
  return x;
}

std::vector<int32_t> to_token_list(const std::string& v) {
  std::vector<int32_t> ids;
  size_t pos = 0;
  while (pos <= v.size()) {
    size_t comma = v.find(',', pos);
    if (comma == std::string::npos) comma = v.size();
    ids.push_back(int32_t(to_int("--prompt-tokens", v.substr(pos, comma - pos), 0, INT32_MAX)));
    pos = comma + 1;
  }
  return ids;
}

}  // namespace

std::optional<Options> parse_options(int argc, char** argv) {
  Options o;
  using Setter = std::function<void(const std::string&)>;
  // Options that take a value.
  const std::map<std::string, Setter> valued = {
      {"--model", [&](const std::string& v) { o.model_dir = v; }},
      {"--backend",
       [&](const std::string& v) {
         if (v != "cpu" && v != "cuda" && v != "auto")
           throw UsageError("--backend expects cpu, cuda or auto, got '" + v + "'");
         o.backend = v;
       }},
      {"--devices", [&](const std::string& v) { o.devices = v; }},
      {"--threads", [&](const std::string& v) { o.threads = to_int("--threads", v, 0, 4096); }},
      {"--prompt", [&](const std::string& v) { o.prompt = v; }},
      {"--prompt-file", [&](const std::string& v) { o.prompt_file = v; }},
      {"--prompt-tokens", [&](const std::string& v) { o.prompt_tokens = to_token_list(v); }},
      {"--system", [&](const std::string& v) { o.system = v; }},
      {"--max-tokens",
       [&](const std::string& v) { o.max_tokens = to_int("--max-tokens", v, 0, INT32_MAX); }},
      {"--top-k", [&](const std::string& v) { o.top_k = to_int("--top-k", v, 0, INT32_MAX); }},
      {"--seed", [&](const std::string& v) { o.seed = to_int("--seed", v, 0, INT64_MAX); }},
      {"--temperature",
       [&](const std::string& v) {
         o.temperature = to_double("--temperature", v, 0, 100, ">= 0");
       }},
      {"--top-p",
       [&](const std::string& v) { o.top_p = to_double("--top-p", v, 0, 1, "in (0, 1]", true); }},
      {"--min-p",
       [&](const std::string& v) { o.min_p = to_double("--min-p", v, 0, 1, "in [0, 1]"); }},
      {"--repetition-penalty",
       [&](const std::string& v) {
         o.repetition_penalty = to_double("--repetition-penalty", v, 0, 100, "> 0", true);
       }},
      {"--stop",
       [&](const std::string& v) {
         if (v.empty()) throw UsageError("--stop expects a non-empty string");
         o.stops.push_back(v);
       }},
  };
  const std::map<std::string, bool*> flags = {
      {"--chat", &o.apply_chat}, {"--bos", &o.add_bos}, {"--ignore-eos", &o.ignore_eos},
      {"--json", &o.json},       {"--quiet", &o.quiet},
  };

  std::vector<std::string> positional;
  for (int i = 1; i < argc; ++i) {
    std::string arg = argv[i];
    if (arg == "-h" || arg == "--help") {
      std::fputs(usage_text(), stdout);
      return std::nullopt;
    }
    if (arg == "--version") {
      std::printf("minimax-cli, libminimax %s (ABI %u)\n", mmx_version_string(),
                  unsigned(mmx_abi_version()));
      return std::nullopt;
    }
    if (arg.size() < 2 || arg.compare(0, 2, "--") != 0) {
      positional.push_back(arg);
      continue;
    }
    std::string name = arg, value;
    bool inline_value = false;
    if (size_t eq = arg.find('='); eq != std::string::npos) {
      name = arg.substr(0, eq);
      value = arg.substr(eq + 1);
      inline_value = true;
    }
    if (auto f = flags.find(name); f != flags.end()) {
      if (inline_value) throw UsageError(name + " takes no value");
      *f->second = true;
    } else if (auto s = valued.find(name); s != valued.end()) {
      if (!inline_value) {
        if (i + 1 >= argc) throw UsageError(name + " needs a value");
        value = argv[++i];
      }
      s->second(value);
    } else {
      throw UsageError("unknown option '" + name + "'");
    }
  }

  if (positional.empty()) throw UsageError("missing command (generate, chat, score or info)");
  o.command = positional[0];
  if (o.command != "generate" && o.command != "chat" && o.command != "score" &&
      o.command != "info") {
    throw UsageError("unknown command '" + o.command + "'");
  }
  if (o.command == "score" && positional.size() == 2 && !o.prompt_file) {
    o.prompt_file = positional[1];
  } else if (positional.size() > 1) {
    throw UsageError("unexpected argument '" + positional[1] + "'");
  }
  int sources =
      int(o.prompt.has_value()) + int(o.prompt_file.has_value()) + int(!o.prompt_tokens.empty());
  if (sources > 1) throw UsageError("give only one of --prompt, --prompt-file, --prompt-tokens");
  if ((o.command == "chat" || o.command == "info") && sources > 0) {
    throw UsageError("'" + o.command + "' takes no prompt option");
  }
  if (o.apply_chat && o.command != "generate") throw UsageError("--chat applies to 'generate'");
  if (o.apply_chat && !o.prompt_tokens.empty()) {
    throw UsageError("--chat needs a text prompt, not --prompt-tokens");
  }
  if (!o.system.empty() && o.command != "chat" && !o.apply_chat) {
    throw UsageError("--system applies to 'chat' and 'generate --chat'");
  }
  if (o.json && o.command == "chat") throw UsageError("--json is not available for 'chat'");
  return o;
}

}  // namespace cli
