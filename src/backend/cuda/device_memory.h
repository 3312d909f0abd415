// Device memory of the CUDA backend: a byte budget every allocation is charged to, owning
// buffers, and bump arenas for per-step activations and per-op scratch.
#pragma once
#include <cuda_runtime.h>

#include <cstdint>
#include <string>
#include <vector>

namespace mmx::cuda {

// Bytes the backend has allocated on its device, against an optional limit
// (BackendOptions::memory_limit_bytes; 0 = no limit beyond the device itself).
class MemoryBudget {
 public:
  explicit MemoryBudget(uint64_t limit) : limit_(limit) {}
  // cudaMalloc that charges the budget; throws Code::OutOfMemory naming `what`, the size,
  // and what the device / budget has left.
  void* allocate(size_t bytes, const std::string& what);
  void release(void* p, size_t bytes);
  uint64_t used() const { return used_; }
  uint64_t peak() const { return peak_; }
  uint64_t limit() const { return limit_; }

 private:
  uint64_t limit_ = 0, used_ = 0, peak_ = 0;
};

// One owned device allocation (freed on destruction).
class DeviceBuffer {
 public:
  DeviceBuffer() = default;
  DeviceBuffer(MemoryBudget& budget, size_t bytes, const std::string& what);
  ~DeviceBuffer();
  DeviceBuffer(DeviceBuffer&& o) noexcept;
  DeviceBuffer& operator=(DeviceBuffer&& o) noexcept;
  DeviceBuffer(const DeviceBuffer&) = delete;
  DeviceBuffer& operator=(const DeviceBuffer&) = delete;
  void* get() const { return ptr_; }
  template <typename T>
  T* as() const { return static_cast<T*>(ptr_); }
  size_t size() const { return bytes_; }

 private:
  void reset();
  MemoryBudget* budget_ = nullptr;
  void* ptr_ = nullptr;
  size_t bytes_ = 0;
};

// Bump allocator over device chunks. alloc() never moves or frees what it handed out until
// reset(); when the current chunks are full it adds a chunk, and the next reset() replaces
// all chunks by one of their total size, so a steady workload settles on one allocation.
class DeviceArena {
 public:
  DeviceArena(MemoryBudget& budget, std::string name, size_t initial_bytes);
  void* alloc(size_t bytes);  // 256-byte aligned
  // Starts over. `stream` is synchronised first when chunks are about to be freed (kernels
  // queued on it may still use them).
  void reset(cudaStream_t stream);
  size_t capacity() const;
  size_t in_use() const { return in_use_; }

 private:
  MemoryBudget& budget_;
  std::string name_;
  std::vector<DeviceBuffer> chunks_;
  size_t chunk_ = 0, offset_ = 0, in_use_ = 0;
};

// Page-locked host memory for small uploads (token ids, row lists), so copies stay
// asynchronous. An event marks the last copy that read it; writers wait on it first.
class PinnedStaging {
 public:
  PinnedStaging() = default;
  ~PinnedStaging();
  PinnedStaging(const PinnedStaging&) = delete;
  PinnedStaging& operator=(const PinnedStaging&) = delete;
  // Copies `bytes` from host `src` to device `dst` on `stream` through the pinned buffer.
  void upload(const void* src, size_t bytes, void* dst, cudaStream_t stream);

 private:
  void* host_ = nullptr;
  size_t bytes_ = 0;
  cudaEvent_t done_ = nullptr;
};

std::string format_bytes(uint64_t bytes);

}  // namespace mmx::cuda
