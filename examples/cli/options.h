// Command line of minimax-cli: one subcommand plus options. parse_options() validates every
// value up front so that a typo fails before a multi-gigabyte model is loaded.
#pragma once
#include <cstdint>
#include <optional>
#include <stdexcept>
#include <string>
#include <vector>

namespace cli {

// A bad command line; main() prints it with a pointer to --help and exits with status 2.
struct UsageError : std::runtime_error {
  using std::runtime_error::runtime_error;
};

struct Options {
  std::string command;  // generate | chat | score | info
  std::string model_dir = "models/demo";
  std::string backend;  // "" = library default (auto)
  std::string devices;  // "" = library default
  std::optional<int64_t> threads;

  // Prompt sources (generate, score); at most one of them. None set: read stdin.
  std::optional<std::string> prompt;
  std::optional<std::string> prompt_file;  // also the positional FILE of `score`
  std::vector<int32_t> prompt_tokens;      // --prompt-tokens 1,2,3 (models without a tokenizer)
  bool apply_chat = false;                 // generate --chat
  std::string system;                      // system message for chat formats
  bool add_bos = false;

  // Sampling and stopping; unset values keep the library defaults.
  std::optional<int64_t> max_tokens, top_k, seed;
  std::optional<double> temperature, top_p, min_p, repetition_penalty;
  std::vector<std::string> stops;
  bool ignore_eos = false;

  bool json = false;
  bool quiet = false;
};

// Throws UsageError. Returns std::nullopt when --help or --version was answered (exit 0).
std::optional<Options> parse_options(int argc, char** argv);

const char* usage_text();

}  // namespace cli
