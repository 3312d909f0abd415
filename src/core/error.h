// Error type used everywhere inside the engine. The C ABI (src/api) converts it
// into an mmx_status; nothing else may cross the boundary.
#pragma once
#include <stdexcept>
#include <string>

namespace mmx {

// Mirrors mmx_code in include/minimax.h (same numeric values).
enum class Code : int {
  Ok = 0,
  InvalidArgument = 1,  // caller passed something wrong (NULL, out of range, bad UTF-8)
  Unsupported = 2,      // valid request the library does not support (unknown option key, dtype)
  NotFound = 3,         // file, tensor, token or request id does not exist
  Io = 4,               // the OS failed to read/write/map a file
  Format = 5,           // a file's content is malformed (JSON, safetensors header, tokenizer)
  Capacity = 6,         // admission control: would not fit in the configured budget
  OutOfMemory = 7,      // an allocation failed (host or device)
  Cancelled = 8,        // the operation was cancelled (load progress callback, request cancel)
  Timeout = 9,          // a wait ran out of time (next_event)
  Device = 10,          // accelerator error; poisons only the engine that hit it
  State = 11,           // wrong call order / object in the wrong state
  Internal = 12,        // a bug in libminimax
  BufferTooSmall = 13,  // caller buffer too small; the needed size was returned
};

const char* code_name(Code c);

class Error : public std::runtime_error {
 public:
  Error(Code code, const std::string& message) : std::runtime_error(message), code_(code) {}
  Code code() const { return code_; }

 private:
  Code code_;
};

// Throw helpers keep call sites short: MMX_CHECK(cond, Code::Format, "msg " + x)
[[noreturn]] inline void fail(Code code, const std::string& message) { throw Error(code, message); }

}  // namespace mmx

#define MMX_CHECK(cond, code, msg)              \
  do {                                          \
    if (!(cond)) ::mmx::fail((code), (msg));    \
  } while (0)
