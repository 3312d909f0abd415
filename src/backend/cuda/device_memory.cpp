#include "backend/cuda/device_memory.h"

#include <algorithm>
#include <cstdio>
#include <cstring>
#include <utility>

#include "core/error.h"
#include "kernels/cuda_check.h"

namespace mmx::cuda {

std::string format_bytes(uint64_t bytes) {
  char buf[64];
  if (bytes >= (1ull << 30))
    std::snprintf(buf, sizeof buf, "%.2f GiB", double(bytes) / double(1ull << 30));
  else
    std::snprintf(buf, sizeof buf, "%.1f MiB", double(bytes) / double(1ull << 20));
  return buf;
}

void* MemoryBudget::allocate(size_t bytes, const std::string& what) {
  if (bytes == 0) bytes = 1;
  if (limit_ && used_ + bytes > limit_)
    throw Error(Code::OutOfMemory, "CUDA backend: allocating " + format_bytes(bytes) + " for " +
                                       what + " would exceed the memory limit of " +
                                       format_bytes(limit_) + " (" + format_bytes(used_) +
                                       " in use)");
  void* p = nullptr;
  const cudaError_t err = cudaMalloc(&p, bytes);
  if (err != cudaSuccess) {
    cudaGetLastError();  // an allocation failure is not sticky; clear it
    size_t free_b = 0, total_b = 0;
    cudaMemGetInfo(&free_b, &total_b);
    throw Error(err == cudaErrorMemoryAllocation ? Code::OutOfMemory : Code::Device,
                "CUDA backend: cudaMalloc of " + format_bytes(bytes) + " for " + what +
                    " failed: " + cudaGetErrorString(err) + " (device has " +
                    format_bytes(free_b) + " free of " + format_bytes(total_b) + ")");
  }
  used_ += bytes;
  if (used_ > peak_) peak_ = used_;
  return p;
}

void MemoryBudget::release(void* p, size_t bytes) {
  if (!p) return;
  cudaFree(p);  // errors here would be from an earlier fault, already reported
  used_ -= bytes == 0 ? 1 : bytes;
}

DeviceBuffer::DeviceBuffer(MemoryBudget& budget, size_t bytes, const std::string& what)
    : budget_(&budget), ptr_(budget.allocate(bytes, what)), bytes_(bytes) {}

DeviceBuffer::~DeviceBuffer() { reset(); }

DeviceBuffer::DeviceBuffer(DeviceBuffer&& o) noexcept
    : budget_(o.budget_), ptr_(o.ptr_), bytes_(o.bytes_) {
  o.ptr_ = nullptr;
  o.bytes_ = 0;
}

DeviceBuffer& DeviceBuffer::operator=(DeviceBuffer&& o) noexcept {
  if (this != &o) {
    reset();
    budget_ = o.budget_;
    ptr_ = o.ptr_;
    bytes_ = o.bytes_;
    o.ptr_ = nullptr;
    o.bytes_ = 0;
  }
  return *this;
}

void DeviceBuffer::reset() {
  if (ptr_ && budget_) budget_->release(ptr_, bytes_);
  ptr_ = nullptr;
  bytes_ = 0;
}

DeviceArena::DeviceArena(MemoryBudget& budget, std::string name, size_t initial_bytes)
    : budget_(budget), name_(std::move(name)) {
  if (initial_bytes) chunks_.emplace_back(budget_, initial_bytes, name_);
}

size_t DeviceArena::capacity() const {
  size_t c = 0;
  for (const auto& ch : chunks_) c += ch.size();
  return c;
}

void* DeviceArena::alloc(size_t bytes) {
  constexpr size_t kAlign = 256;
  bytes = (bytes + kAlign - 1) / kAlign * kAlign;
  if (bytes == 0) bytes = kAlign;
  while (chunk_ < chunks_.size()) {
    if (offset_ + bytes <= chunks_[chunk_].size()) {
      void* p = chunks_[chunk_].as<char>() + offset_;
      offset_ += bytes;
      in_use_ += bytes;
      return p;
    }
    ++chunk_;
    offset_ = 0;
  }
  // Grow: at least double what exists so a growing workload settles after a few steps.
  size_t grow = capacity();
  if (grow < bytes) grow = bytes;
  chunks_.emplace_back(budget_, grow, name_);
  chunk_ = chunks_.size() - 1;
  offset_ = bytes;
  in_use_ += bytes;
  return chunks_.back().get();
}

bool capturing(cudaStream_t stream) {
  cudaStreamCaptureStatus status = cudaStreamCaptureStatusNone;
  MMX_CUDA(cudaStreamIsCapturing(stream, &status));
  return status != cudaStreamCaptureStatusNone;
}

void DeviceArena::reset(cudaStream_t stream) {
  if (chunks_.size() > 1 && !capturing(stream)) {
    const size_t total = capacity();
    MMX_CUDA_CHECK(cudaStreamSynchronize(stream), ("synchronising before resizing " + name_).c_str());
    chunks_.clear();
    chunks_.emplace_back(budget_, total, name_);
  }
  chunk_ = 0;
  offset_ = 0;
  in_use_ = 0;
}

HostStaging::~HostStaging() {
  for (Side& side : sides_) {
    if (side.done) {
      cudaEventSynchronize(side.done);
      cudaEventDestroy(side.done);
    }
    for (Block& b : side.blocks) cudaFreeHost(b.host);
  }
}

void HostStaging::begin_step(cudaStream_t stream) {
  Side& last = sides_[side_];
  if (!last.done) MMX_CUDA(cudaEventCreateWithFlags(&last.done, cudaEventDisableTiming));
  MMX_CUDA(cudaEventRecord(last.done, stream));  // after every copy out of `last`
  last.recorded = true;
  side_ ^= 1;
  Side& next = sides_[side_];
  if (next.recorded) MMX_CUDA(cudaEventSynchronize(next.done));
  if (next.blocks.size() > 1) {  // merge what the last use of this side needed
    size_t total = 0;
    for (Block& b : next.blocks) {
      total += b.bytes;
      MMX_CUDA(cudaFreeHost(b.host));
    }
    next.blocks.clear();
    Block merged;
    MMX_CUDA(cudaMallocHost(reinterpret_cast<void**>(&merged.host), total));
    merged.bytes = total;
    next.blocks.push_back(merged);
  }
  for (Block& b : next.blocks) b.used = 0;
}

void HostStaging::upload(const void* src, size_t bytes, void* dst, cudaStream_t stream) {
  if (bytes == 0) return;
  Side& side = sides_[side_];
  const size_t need = (bytes + 255) & ~size_t(255);  // keep every slice 256-byte aligned
  if (side.blocks.empty() || side.blocks.back().used + need > side.blocks.back().bytes) {
    Block b;
    b.bytes = std::max<size_t>(need, size_t(64) << 10);
    if (!side.blocks.empty()) b.bytes = std::max(b.bytes, 2 * side.blocks.back().bytes);
    MMX_CUDA(cudaMallocHost(reinterpret_cast<void**>(&b.host), b.bytes));
    side.blocks.push_back(b);
  }
  Block& b = side.blocks.back();
  char* slot = b.host + b.used;
  b.used += need;
  std::memcpy(slot, src, bytes);
  MMX_CUDA(cudaMemcpyAsync(dst, slot, bytes, cudaMemcpyHostToDevice, stream));
}

}  // namespace mmx::cuda
