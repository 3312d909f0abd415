#include "core/log.h"

#include <algorithm>
#include <atomic>
#include <cctype>
#include <cstdio>
#include <cstdlib>
#include <memory>
#include <mutex>

namespace mmx {
namespace {

LogLevel level_from_environment() {
  const char* env = std::getenv("MMX_LOG_LEVEL");
  LogLevel level = LogLevel::Warn;
  if (env && *env && !parse_log_level(env, &level)) {
    std::fprintf(stderr, "libminimax: ignoring MMX_LOG_LEVEL=\"%s\" (expected debug, info, warn, "
                         "error, off or 0-4)\n", env);
    level = LogLevel::Warn;
  }
  return level;
}

// The level is read on every log call, so it is an atomic. The sink is shared: a message takes
// a reference under the mutex and calls it without, so replacing the sink never pulls it
// from under a call in flight.
std::atomic<int>& min_level() {
  static std::atomic<int> level{int(level_from_environment())};
  return level;
}
std::mutex& sink_mutex() {
  static std::mutex mu;
  return mu;
}
std::shared_ptr<const LogSink>& current_sink() {
  static std::shared_ptr<const LogSink> sink;  // null: stderr
  return sink;
}

const char* level_tag(LogLevel level) {
  switch (level) {
    case LogLevel::Debug: return "debug";
    case LogLevel::Info: return "info";
    case LogLevel::Warn: return "warn";
    case LogLevel::Error: return "error";
    case LogLevel::Off: break;
  }
  return "log";
}

}  // namespace

bool parse_log_level(const std::string& text, LogLevel* out) {
  std::string s(text);
  std::transform(s.begin(), s.end(), s.begin(), [](unsigned char c) { return char(std::tolower(c)); });
  if (s == "debug" || s == "0") *out = LogLevel::Debug;
  else if (s == "info" || s == "1") *out = LogLevel::Info;
  else if (s == "warn" || s == "warning" || s == "2") *out = LogLevel::Warn;
  else if (s == "error" || s == "3") *out = LogLevel::Error;
  else if (s == "off" || s == "none" || s == "4") *out = LogLevel::Off;
  else return false;
  return true;
}

void set_log_sink(LogSink sink, LogLevel level) {
  const bool custom = bool(sink);
  auto shared = custom ? std::make_shared<const LogSink>(std::move(sink)) : nullptr;
  std::lock_guard<std::mutex> lock(sink_mutex());
  current_sink() = std::move(shared);
  min_level().store(int(custom ? level : level_from_environment()));
}

bool log_enabled(LogLevel level) {
  return level != LogLevel::Off && int(level) >= min_level().load(std::memory_order_relaxed);
}

void log_message(LogLevel level, const std::string& message) {
  if (!log_enabled(level)) return;
  std::shared_ptr<const LogSink> sink;
  {
    std::lock_guard<std::mutex> lock(sink_mutex());
    sink = current_sink();
  }
  if (sink) {
    try {
      (*sink)(level, message.c_str());
    } catch (...) {
      // A throwing sink must not turn a log line into an error of the operation that logged.
    }
  } else {
    std::fprintf(stderr, "libminimax %s: %s\n", level_tag(level), message.c_str());
  }
}

}  // namespace mmx
