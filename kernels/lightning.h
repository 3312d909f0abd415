// Lightning attention kernels (model-spec §5): chunked prefill on tensor cores and the
// single-token decode step, both over a batch of sequences of different lengths in one launch.
// q, k, v and the outputs are bf16; the state S stays fp32 in device memory.
#pragma once
#include <cuda_runtime.h>

#include <cstdint>

namespace mmx::cuda {

// Tokens per prefill block. Any block size gives the same result up to rounding; 64 keeps a
// whole block's tiles in shared memory.
constexpr int kLightningChunk = 64;
// decay_pow holds lambda^n for n = 0..kLightningChunk per head.
constexpr int kDecayPowCount = kLightningChunk + 1;

// One sequence's share of a lightning call (device-resident array).
struct LightningSeqDesc {
  int64_t row = 0;          // first row of the sequence in qkv / out
  int64_t n_tokens = 0;     // > 0; exactly 1 for the decode kernel
  float* state = nullptr;   // this layer's S, fp32 [heads][d][d], updated in place
};

struct LightningArgs {
  const void* qkv = nullptr;  // bf16 [T, 3*heads*d]; per head q|k|v interleaved
  void* out = nullptr;        // bf16 [T, heads*d]
  int heads = 0;
  int head_dim = 0;
  // fp32 [heads][kDecayPowCount]: lambda_h^n rounded from double, so that no power is ever
  // formed by division (lambda^-n overflows for fast heads).
  const float* decay_pow = nullptr;
  const LightningSeqDesc* seqs = nullptr;  // device array of n_seqs descriptors
  int n_seqs = 0;
};

// Head dims the kernels are built for (16, 32, 64, 128).
bool lightning_head_dim_supported(int64_t head_dim);

// Chunked prefill: for every sequence and head, blocks of kLightningChunk tokens,
//   o_i = lambda^(i+1) q_i S + sum_{j<=i} lambda^(i-j) (q_i . k_j) v_j
//   S  <- lambda^m S + sum_j lambda^(m-1-j) k_j^T v_j
void lightning_prefill(const LightningArgs& args, cudaStream_t stream);

// Decode: S <- lambda S + k^T v; o = q S, every descriptor holding exactly one token.
void lightning_decode(const LightningArgs& args, cudaStream_t stream);

}  // namespace mmx::cuda
