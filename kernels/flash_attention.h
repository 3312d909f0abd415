// Causal GQA softmax attention over the paged KV cache (model-spec §6): a FlashAttention-2
// style prefill on tensor cores and a split-K (flash-decoding) decode with a reduction
// kernel. q is post-RoPE bf16; the softmax runs in fp32; scale 1/sqrt(d).
#pragma once
#include <cuda_runtime.h>

#include <cstddef>
#include <cstdint>

#include "kernels/paged_kv.h"

namespace mmx::cuda {

constexpr int kFlashTileRows = 64;  // query rows per prefill CTA, keys per KV tile

struct FlashArgs {
  const void* q = nullptr;  // bf16 [T, heads*d], post-RoPE
  void* out = nullptr;      // bf16 [T, heads*d]
  int heads = 0;            // query heads; a multiple of kv.kv_heads
  float scale = 0.0f;       // 1/sqrt(d)
  PagedKv kv;
  const KvSeqDesc* seqs = nullptr;  // device array
};

// Head dims the kernels are built for (16, 32, 64, 128).
bool flash_head_dim_supported(int64_t head_dim);

// A prefill work item: query rows [q_tile*64, q_tile*64 + 64) of sequence `seq`.
struct FlashTile {
  int32_t seq = 0;
  int32_t q_tile = 0;
};

// Every query row of the listed tiles attends to positions 0..its own position of its
// sequence's cache (which must already hold the chunk's keys and values).
void flash_prefill(const FlashArgs& args, const FlashTile* tiles, int n_tiles, cudaStream_t stream);

// How the decode splits each sequence's cache: splits of split_tokens positions (a multiple
// of kFlashTileRows), at most max_splits per sequence.
struct DecodeSplits {
  int split_tokens = 0;
  int max_splits = 0;
};

// Chooses splits so that about `target_ctas` CTAs run for n_seqs sequences whose longest
// cache (including the new token) holds max_kv_len positions.
DecodeSplits plan_decode_splits(int64_t max_kv_len, int n_seqs, int heads, int kv_heads, int target_ctas);

// Bytes of fp32 scratch the decode needs for its per-split partial results.
size_t flash_decode_scratch_bytes(int n_seqs, const DecodeSplits& splits, int heads, int head_dim);

// One query per listed sequence (seqs[dec_seqs[i]].n_tokens == 1) over its whole cache.
// dec_seqs is a device array; scratch is flash_decode_scratch_bytes of device memory.
void flash_decode(const FlashArgs& args, const int32_t* dec_seqs, int n_seqs, const DecodeSplits& splits,
                  void* scratch, cudaStream_t stream);

}  // namespace mmx::cuda
