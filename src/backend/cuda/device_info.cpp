#include "backend/cuda/device_info.h"

#include <cuda_runtime.h>

#include "core/error.h"

namespace mmx {

namespace {
void check(cudaError_t err, const char* what) {
  if (err != cudaSuccess)
    fail(Code::Device, std::string(what) + " failed: " + cudaGetErrorString(err));
}
}  // namespace

CudaDeviceInfo cuda_device_info(int index) {
  int count = 0;
  check(cudaGetDeviceCount(&count), "cudaGetDeviceCount");
  MMX_CHECK(index >= 0 && index < count, Code::InvalidArgument,
            "device index " + std::to_string(index) + " is out of range (" + std::to_string(count) +
                " CUDA devices)");
  cudaDeviceProp prop{};
  check(cudaGetDeviceProperties(&prop, index), "cudaGetDeviceProperties");
  CudaDeviceInfo info;
  info.index = index;
  info.compute_major = prop.major;
  info.compute_minor = prop.minor;
  info.multiprocessors = prop.multiProcessorCount;
  info.total_memory_bytes = prop.totalGlobalMem;
  info.name = prop.name;

  int previous = 0;
  check(cudaGetDevice(&previous), "cudaGetDevice");
  check(cudaSetDevice(index), "cudaSetDevice");
  size_t free_bytes = 0, total_bytes = 0;
  cudaError_t err = cudaMemGetInfo(&free_bytes, &total_bytes);
  cudaSetDevice(previous);
  check(err, "cudaMemGetInfo");
  info.free_memory_bytes = free_bytes;
  return info;
}

}  // namespace mmx
