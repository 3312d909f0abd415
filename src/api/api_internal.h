// The C ABI's handle types and the boundary helpers every entry point uses: argument checks
// that throw mmx::Error, and guarded(), which runs a body and turns whatever it throws into
// an mmx_status. Nothing thrown ever leaves an mmx_* function.
#pragma once
#include <cstring>
#include <memory>
#include <new>
#include <string>

#include "core/error.h"
#include "engine/engine.h"
#include "engine/prefix.h"
#include "engine/request.h"
#include "engine/runtime.h"
#include "minimax.h"

struct mmx_status {
  mmx_code code = MMX_OK;
  std::string message;
  bool is_static = false;  // the preallocated out-of-memory status; never deleted
};

struct mmx_model {
  std::shared_ptr<mmx::ModelRuntime> runtime;
};

struct mmx_model_options {
  mmx::RuntimeOptions options;
};

struct mmx_context_options {
  mmx::EngineOptions options;
};

struct mmx_context {
  std::unique_ptr<mmx::Engine> engine;
};

struct mmx_request {
  mmx::RequestSpec spec;
};

struct mmx_event {
  explicit mmx_event(std::unique_ptr<mmx::Event> e);
  std::unique_ptr<mmx::Event> event;
  mmx_status error;  // reason Error: the error as a status (mmx_event_error lends it)
};

struct mmx_prefix {
  std::shared_ptr<const mmx::Prefix> prefix;
};

namespace mmx_api {

// A new status, or the static out-of-memory one when even that allocation fails.
mmx_status* make_status(mmx::Code code, const char* function, const std::string& message) noexcept;

template <class Body>
mmx_status* guarded(const char* function, Body&& body) noexcept {
  try {
    body();
    return nullptr;
  } catch (const mmx::Error& e) {
    return make_status(e.code(), function, e.what());
  } catch (const std::bad_alloc&) {
    return make_status(mmx::Code::OutOfMemory, function, "out of memory");
  } catch (const std::exception& e) {
    return make_status(mmx::Code::Internal, function, std::string("internal error: ") + e.what());
  } catch (...) {
    return make_status(mmx::Code::Internal, function, "internal error: unknown exception");
  }
}

// Throws Code::InvalidArgument "<name> is NULL".
inline void require(const void* pointer, const char* name) {
  if (!pointer) mmx::fail(mmx::Code::InvalidArgument, std::string(name) + " is NULL");
}

// Copies `full` into the caller's struct, as much of it as the caller's struct_size says it
// holds (older hosts have shorter structs), leaving struct_size as the caller set it.
template <class T>
void fill_struct(T* out, const T& full, const char* name) {
  require(out, name);
  const uint32_t size = out->struct_size;
  MMX_CHECK(size >= sizeof(uint32_t), mmx::Code::InvalidArgument,
            std::string(name) + "->struct_size is " + std::to_string(size) +
                "; set it to sizeof the struct before the call");
  const size_t n = size < sizeof(T) ? size : sizeof(T);
  std::memcpy(reinterpret_cast<char*>(out) + sizeof(uint32_t),
              reinterpret_cast<const char*>(&full) + sizeof(uint32_t), n - sizeof(uint32_t));
}

// Stores text + NUL into a caller buffer per the header's buffer convention.
void copy_text_out(const std::string& text, char* buf, size_t capacity, size_t* n_needed);

// Offset of the first invalid UTF-8 byte (overlong forms, surrogates and code points above
// U+10FFFF are invalid), or -1 when the text is valid.
long long utf8_error_offset(const char* text, size_t len);
void require_utf8(const char* text, size_t len, const char* name);

const mmx::ModelRuntime& runtime_of(const mmx_model* model);

}  // namespace mmx_api
