// Status objects, version, logging and devices.
#include <cmath>
#include <functional>

#include "api/api_internal.h"
#include "backend/backend.h"
#include "core/log.h"
#ifdef MINIMAX_HAVE_CUDA
#include "backend/cuda/device_info.h"
#endif

using mmx::Code;
using namespace mmx_api;

namespace mmx_api {

namespace {
mmx_status& out_of_memory_status() {
  static mmx_status status{MMX_OUT_OF_MEMORY, "out of memory (while reporting an error)", true};
  return status;
}
}  // namespace

mmx_status* make_status(Code code, const char* function, const std::string& message) noexcept {
  try {
    auto* s = new mmx_status();
    s->code = static_cast<mmx_code>(code);
    s->message = std::string(function) + ": " + message;
    return s;
  } catch (...) {
    return &out_of_memory_status();
  }
}

void copy_text_out(const std::string& text, char* buf, size_t capacity, size_t* n_needed) {
  require(n_needed, "n_needed");
  MMX_CHECK(buf != nullptr || capacity == 0, Code::InvalidArgument, "buf is NULL but capacity is not 0");
  *n_needed = text.size() + 1;
  MMX_CHECK(capacity >= text.size() + 1, Code::BufferTooSmall,
            "the text needs " + std::to_string(text.size() + 1) + " bytes (with its NUL); the buffer holds " +
                std::to_string(capacity));
  std::memcpy(buf, text.data(), text.size());
  buf[text.size()] = '\0';
}

long long utf8_error_offset(const char* text, size_t len) {
  const auto* s = reinterpret_cast<const unsigned char*>(text);
  size_t i = 0;
  while (i < len) {
    unsigned char c = s[i];
    if (c < 0x80) {
      ++i;
      continue;
    }
    size_t n;
    uint32_t cp;
    if (c >= 0xC2 && c <= 0xDF) n = 1, cp = c & 0x1F;
    else if (c >= 0xE0 && c <= 0xEF) n = 2, cp = c & 0x0F;
    else if (c >= 0xF0 && c <= 0xF4) n = 3, cp = c & 0x07;
    else return (long long)i;
    if (len - i <= n) return (long long)i;
    for (size_t k = 1; k <= n; ++k) {
      if ((s[i + k] & 0xC0) != 0x80) return (long long)i;
      cp = (cp << 6) | (s[i + k] & 0x3F);
    }
    // Overlong encodings, UTF-16 surrogates, beyond U+10FFFF.
    if ((n == 2 && cp < 0x800) || (n == 3 && cp < 0x10000) || (cp >= 0xD800 && cp <= 0xDFFF) || cp > 0x10FFFF)
      return (long long)i;
    i += n + 1;
  }
  return -1;
}

void require_utf8(const char* text, size_t len, const char* name) {
  long long at = utf8_error_offset(text, len);
  MMX_CHECK(at < 0, Code::InvalidArgument,
            std::string(name) + " is not valid UTF-8 (first bad byte at offset " + std::to_string(at) + ")");
}

const mmx::ModelRuntime& runtime_of(const mmx_model* model) {
  require(model, "model");
  return *model->runtime;
}

}  // namespace mmx_api

extern "C" {

uint32_t mmx_abi_version(void) { return MMX_ABI_VERSION; }

const char* mmx_version_string(void) {
#ifdef MINIMAX_HAVE_CUDA
  return MMX_VERSION_STRING " (backends: cpu, cuda)";
#else
  return MMX_VERSION_STRING " (backends: cpu)";
#endif
}

mmx_code mmx_status_code(const mmx_status* status) { return status ? status->code : MMX_OK; }

const char* mmx_status_message(const mmx_status* status) { return status ? status->message.c_str() : ""; }

void mmx_status_free(mmx_status* status) {
  if (status && !status->is_static) delete status;
}

const char* mmx_code_name(mmx_code code) { return mmx::code_name(static_cast<Code>(code)); }

mmx_status* mmx_set_log_callback(mmx_log_fn fn, void* user_data, mmx_log_level min_level) {
  return guarded(__func__, [&] {
    MMX_CHECK(min_level >= MMX_LOG_DEBUG && min_level <= MMX_LOG_OFF, Code::InvalidArgument,
              "min_level " + std::to_string(int(min_level)) + " is not an mmx_log_level");
    mmx::LogSink sink;
    if (fn)
      sink = [fn, user_data](mmx::LogLevel level, const char* message) {
        fn(static_cast<mmx_log_level>(level), message, user_data);
      };
    mmx::set_log_sink(std::move(sink), static_cast<mmx::LogLevel>(min_level));
  });
}

mmx_status* mmx_device_count(int32_t* out_count) {
  return guarded(__func__, [&] {
    require(out_count, "out_count");
    *out_count = int32_t(mmx::cuda_device_count());
  });
}

mmx_status* mmx_device_info_get(int32_t index, mmx_device_info* out_info) {
  return guarded(__func__, [&] {
    require(out_info, "out_info");
    const int count = mmx::cuda_device_count();
    MMX_CHECK(index >= 0 && index < count, Code::InvalidArgument,
              "device index " + std::to_string(index) + " is out of range: this build sees " +
                  std::to_string(count) + " CUDA devices");
    mmx_device_info full{};
#ifdef MINIMAX_HAVE_CUDA
    mmx::CudaDeviceInfo d = mmx::cuda_device_info(index);
    full.index = d.index;
    full.compute_major = d.compute_major;
    full.compute_minor = d.compute_minor;
    full.multiprocessors = d.multiprocessors;
    full.total_memory_bytes = d.total_memory_bytes;
    full.free_memory_bytes = d.free_memory_bytes;
    std::strncpy(full.name, d.name.c_str(), sizeof(full.name) - 1);
#endif
    fill_struct(out_info, full, "out_info");
  });
}

}  // extern "C"
