// Every CUDA runtime call goes through MMX_CUDA_CHECK: a failure becomes
// mmx::Error(Code::Device, "<call> failed: <reason>"), which poisons only the engine that hit
// it. Plain C++ (host code of the backend includes it too).
#pragma once
#include <cuda_runtime.h>

#include <string>

#include "core/error.h"

namespace mmx::cuda {

[[noreturn]] inline void throw_cuda_error(cudaError_t err, const char* what) {
  // Out-of-memory is reported as such so callers can tell it from a faulting device.
  const Code code = err == cudaErrorMemoryAllocation ? Code::OutOfMemory : Code::Device;
  throw Error(code, std::string(what) + " failed: " + cudaGetErrorString(err) + " (" +
                        cudaGetErrorName(err) + ")");
}

}  // namespace mmx::cuda

#define MMX_CUDA_CHECK(call, what)                                   \
  do {                                                               \
    cudaError_t mmx_cuda_err_ = (call);                              \
    if (mmx_cuda_err_ != cudaSuccess)                                \
      ::mmx::cuda::throw_cuda_error(mmx_cuda_err_, (what));          \
  } while (0)

// The call's own text names it in the message.
#define MMX_CUDA(call) MMX_CUDA_CHECK(call, #call)
