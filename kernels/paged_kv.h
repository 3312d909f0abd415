// The paged bf16 KV cache as the softmax-attention kernels see it.
//
// A page holds page_tokens consecutive positions of EVERY softmax layer of one sequence, so a
// sequence has one block table for all its softmax layers. Within a page, softmax layer slot
// l starts at element l * 2 * kv_heads * page_tokens * head_dim with its keys
// [kv_heads][page_tokens][head_dim], followed by its values in the same shape. Keys are
// stored after RoPE.
#pragma once
#include <cstdint>

#if defined(__CUDACC__)
#include <cuda_bf16.h>
#endif

namespace mmx::cuda {

struct PagedKv {
  int page_tokens = 0;
  int kv_heads = 0;
  int head_dim = 0;
  int64_t layer_offset = 0;  // elements from a page's start to this layer's keys
};

// One sequence's share of a softmax-attention call (device-resident array). Positions are
// int32: a sequence never holds 2^31 tokens (max_position_embeddings bounds it far lower).
struct KvSeqDesc {
  int64_t row = 0;        // first row of the sequence in q / k / v / out
  int32_t n_tokens = 0;   // > 0
  int32_t start_pos = 0;  // tokens cached before this call = position of the first new token
  void* const* pages = nullptr;  // device block table covering start_pos + n_tokens positions
};

#if defined(__CUDACC__)
// Address of the key (value = false) or value row of kv head g at position pos.
__device__ __forceinline__ __nv_bfloat16* kv_row(const KvSeqDesc& s, const PagedKv& kv, int pos, int g,
                                                 bool value) {
  auto* page = static_cast<__nv_bfloat16*>(s.pages[pos / kv.page_tokens]);
  const int64_t head_block = int64_t(value ? kv.kv_heads + g : g) * kv.page_tokens;
  return page + kv.layer_offset + (head_block + pos % kv.page_tokens) * kv.head_dim;
}
#endif

}  // namespace mmx::cuda
