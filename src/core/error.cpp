#include "core/error.h"

namespace mmx {

const char* code_name(Code c) {
  switch (c) {
    case Code::Ok: return "ok";
    case Code::InvalidArgument: return "invalid argument";
    case Code::Unsupported: return "unsupported";
    case Code::NotFound: return "not found";
    case Code::Io: return "i/o error";
    case Code::Format: return "format error";
    case Code::Capacity: return "capacity";
    case Code::OutOfMemory: return "out of memory";
    case Code::Cancelled: return "cancelled";
    case Code::Timeout: return "timeout";
    case Code::Device: return "device error";
    case Code::State: return "wrong state";
    case Code::Internal: return "internal error";
    case Code::BufferTooSmall: return "buffer too small";
  }
  return "unknown";
}

}  // namespace mmx
