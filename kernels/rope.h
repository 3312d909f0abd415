// Partial NeoX RoPE for the softmax layers (model-spec §6), fused with the KV-cache append:
// rotates q into a scratch copy, rotates k and writes it with v into the paged cache.
#pragma once
#include <cuda_runtime.h>

#include <cstdint>

#include "kernels/paged_kv.h"

namespace mmx::cuda {

struct RopeAppendArgs {
  const void* q = nullptr;  // bf16 [T, heads*d], as projected
  const void* k = nullptr;  // bf16 [T, kv_heads*d]
  const void* v = nullptr;  // bf16 [T, kv_heads*d]
  void* q_out = nullptr;    // bf16 [T, heads*d]: q after RoPE
  int64_t total_tokens = 0;  // T
  int heads = 0;
  int rotary_dim = 0;        // even, <= head_dim
  // fp32 [rotary_dim/2] inverse frequencies, computed exactly as the CPU reference does;
  // angle = float(pos) * inv_freq[j] in fp32.
  const float* inv_freq = nullptr;
  PagedKv kv;
  // Sequences with n_tokens > 0 in row order; their rows tile [0, T) without gaps.
  const KvSeqDesc* seqs = nullptr;
  int n_seqs = 0;
};

void rope_append_kv(const RopeAppendArgs& args, cudaStream_t stream);

}  // namespace mmx::cuda
