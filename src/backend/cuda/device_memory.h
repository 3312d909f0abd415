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
  // queued on it may still use them), except while `stream` is being captured into a CUDA
  // graph: then the chunks stay as they are (a later reset merges them).
  void reset(cudaStream_t stream);
  size_t capacity() const;
  size_t in_use() const { return in_use_; }

 private:
  MemoryBudget& budget_;
  std::string name_;
  std::vector<DeviceBuffer> chunks_;
  size_t chunk_ = 0, offset_ = 0, in_use_ = 0;
};

// Page-locked host memory for a step's small uploads (token ids, row lists, attention
// descriptors, block-table entries), so the copies stay asynchronous. What a step uploads
// stays untouched until the step after next: the copies may run later than they are queued,
// and when a step is recorded as a CUDA graph they run only when the graph does. Two sides
// alternate by step; a side is reused once the device has passed the point where the step
// after it began (an event, recorded outside any capture).
class HostStaging {
 public:
  HostStaging() = default;
  ~HostStaging();
  HostStaging(const HostStaging&) = delete;
  HostStaging& operator=(const HostStaging&) = delete;
  // A new step: marks the end of the last one's uploads on `stream` and switches sides,
  // waiting until the copies out of the side being reused are done. Not while capturing.
  void begin_step(cudaStream_t stream);
  // Queues a copy of `bytes` from host `src` to device `dst` on `stream`; `src` may be
  // reused as soon as this returns. Safe inside a stream capture.
  void upload(const void* src, size_t bytes, void* dst, cudaStream_t stream);

 private:
  struct Block {
    char* host = nullptr;
    size_t bytes = 0, used = 0;
  };
  struct Side {
    std::vector<Block> blocks;  // more than one only after a step outgrew the first
    cudaEvent_t done = nullptr;  // recorded when the step after this side's began
    bool recorded = false;
  };
  Side sides_[2];
  int side_ = 0;
};

std::string format_bytes(uint64_t bytes);

// Whether `stream` is being captured into a CUDA graph (no synchronising call may touch it).
bool capturing(cudaStream_t stream);

}  // namespace mmx::cuda
