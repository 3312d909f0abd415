// Process-wide logging. Messages go to a sink installed through the C ABI
// (mmx_set_log_callback) or, by default, to stderr at level WARN; the MMX_LOG_LEVEL
// environment variable ("debug", "info", "warn", "error", "off" or 0-4) changes the default.
#pragma once
#include <functional>
#include <string>

namespace mmx {

// Same numeric values as mmx_log_level in include/minimax.h.
enum class LogLevel : int { Debug = 0, Info = 1, Warn = 2, Error = 3, Off = 4 };

// `message` is valid only during the call; may be called from any thread, concurrently.
using LogSink = std::function<void(LogLevel level, const char* message)>;

// Installs `sink` (empty: back to stderr with the environment's level). Messages below
// min_level are dropped. Thread-safe; a message being logged concurrently finishes with the
// sink it started with.
void set_log_sink(LogSink sink, LogLevel min_level);

// True when a message at `level` would be delivered (lets callers skip building it).
bool log_enabled(LogLevel level);

// Delivers one message. Never throws; a sink is called without any library lock held.
void log_message(LogLevel level, const std::string& message);

// Parses "debug"/"info"/"warn"/"warning"/"error"/"off" or a digit 0-4 (case-insensitive).
// Returns false for anything else.
bool parse_log_level(const std::string& text, LogLevel* out);

}  // namespace mmx

#define MMX_LOG(level, expr)                                  \
  do {                                                        \
    if (::mmx::log_enabled(level)) ::mmx::log_message(level, (expr)); \
  } while (0)
#define MMX_LOG_DEBUG(expr) MMX_LOG(::mmx::LogLevel::Debug, expr)
#define MMX_LOG_INFO(expr) MMX_LOG(::mmx::LogLevel::Info, expr)
#define MMX_LOG_WARN(expr) MMX_LOG(::mmx::LogLevel::Warn, expr)
#define MMX_LOG_ERROR(expr) MMX_LOG(::mmx::LogLevel::Error, expr)
