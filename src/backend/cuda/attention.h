// Device-side sequence state (fp32 lightning states + paged bf16 KV cache) and the two
// attention ops of the CUDA backend. CudaBackend forwards its state and attention calls here;
// the kernels live in kernels/lightning.cu and kernels/flash_attention.cu.
#pragma once
#include <cuda_runtime.h>

#include <cstdint>
#include <functional>
#include <memory>
#include <mutex>
#include <vector>

#include "backend/backend.h"

namespace mmx::cuda {

// Everything the attention ops need from the backend for one device.
struct AttentionEnv {
  int device = 0;
  cudaStream_t stream = nullptr;
  // Device scratch memory for one op call (valid for the duration of the call, reused after):
  // the backend hands out an arena; the attention code asks for what it needs.
  std::function<void*(size_t bytes)> scratch;
  // Queues a host -> device copy on `stream`; `src` may be reused when it returns (the
  // backend's HostStaging, which is also safe while the stream is captured).
  std::function<void(const void* src, size_t bytes, void* dst)> upload;
};

// All calls enqueue on env.stream (save/load synchronise it) and must come from one thread at
// a time; a state may be destroyed on any thread (it synchronises the device first, then gives
// its KV pages back to a pool the states share). Each op asks env.scratch once per call.
// Head dims 16, 32, 64 and 128 are supported (Code::Unsupported otherwise); a sequence longer
// than max_position_embeddings is refused with Code::Capacity.
class CudaAttention {
 public:
  // Allocates nothing per sequence yet; kv_page_tokens is the page size of the KV cache.
  CudaAttention(const ModelConfig& config, AttentionEnv env, int kv_page_tokens = 256);
  ~CudaAttention();

  std::unique_ptr<SeqState> new_state();
  std::unique_ptr<SeqState> clone_state(const SeqState& s);
  uint64_t state_bytes(int64_t tokens) const;
  void save_state(const SeqState& s, std::vector<uint8_t>* out) const;  // state_format.h layout
  std::unique_ptr<SeqState> load_state(const uint8_t* data, size_t size);

  // Allocates the KV pages the step's tokens will be written to (what the softmax op would do
  // on its own), so a step recorded as a CUDA graph allocates nothing.
  void reserve(const StepBatch& batch);
  // While the returned lock is held, no sequence state is destroyed (their destructors
  // synchronise the whole device, which must not happen during a stream capture).
  static std::unique_lock<std::mutex> hold_state_releases();

  // qkv: bf16 [T, 3*nh*d] (SiLU applied), out: bf16 [T, nh*d]. Updates the fp32 states.
  void lightning(int layer, const void* qkv, const StepBatch& batch, void* out);
  // q: bf16 [T, nh*d], k, v: bf16 [T, nkv*d] (pre-RoPE); out: bf16 [T, nh*d].
  void softmax(int layer, const void* q, const void* k, const void* v, const StepBatch& batch,
               void* out);

 private:
  struct Impl;
  std::unique_ptr<Impl> impl_;
};

}  // namespace mmx::cuda
