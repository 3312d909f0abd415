// Properties of one CUDA device for mmx_device_info_get. Declared without CUDA headers so the
// C ABI layer can include it in any build; defined in device_info.cpp, which is compiled only
// with the CUDA backend.
#pragma once
#include <cstdint>
#include <string>

namespace mmx {

struct CudaDeviceInfo {
  int index = 0;
  int compute_major = 0, compute_minor = 0;
  int multiprocessors = 0;
  uint64_t total_memory_bytes = 0, free_memory_bytes = 0;
  std::string name;
};

// Throws Code::InvalidArgument for an index out of range, Code::Device when the CUDA runtime
// fails. Reading free memory makes the device current on this thread for a moment (and
// creates its primary context if none exists); the caller's current device is restored.
CudaDeviceInfo cuda_device_info(int index);

}  // namespace mmx
