// The portable host serialisation of one sequence's state (Backend::save_state/load_state),
// shared by every backend so a state saved on CUDA loads on CPU and vice versa.
//
// Layout (all integers little-endian; payload fp32 little-endian):
//   offset 0   char[8]  magic "MMXSTATE"
//          8   u32      format version (kStateFormatVersion)
//         12   u32      layer count L
//         16   u32      heads nh
//         20   u32      head_dim d
//         24   u32      kv heads nkv
//         28   u32      reserved, 0
//         32   i64      tokens (positions absorbed)
//         40   u8[L]    layer kinds (0 lightning, 1 softmax), zero-padded to a multiple of 8
//   payload, layer by layer in global order:
//     lightning layer: S as fp32 [nh, d, d] (S[h][i][j] = sum_t decay * k_t[i] * v_t[j])
//     softmax layer:   K as fp32 [tokens, nkv*d] (post-RoPE), then V as fp32 [tokens, nkv*d]
//
// A backend saves by calling begin_state_image() and copying each part to its offset; it loads
// by calling parse_state_image() (which validates everything against the model and throws
// Code::Format for anything else) and copying each part from its offset.
#pragma once
#include <cstddef>
#include <cstdint>
#include <vector>

#include "model/config.h"

namespace mmx {

constexpr uint32_t kStateFormatVersion = 1;

// Where each part of a state image lies. Offsets are in bytes from the image start and are
// multiples of 4 (payload parts start 8-byte aligned relative to the image).
struct StateLayout {
  int64_t tokens = 0;
  uint64_t header_bytes = 0;
  uint64_t total_bytes = 0;
  uint64_t lightning_bytes = 0;       // one lightning layer's S: nh*d*d*4
  uint64_t kv_bytes = 0;              // one softmax layer's K (or V): tokens*nkv*d*4
  std::vector<uint64_t> layer_offset;  // per global layer: S, or K (V follows at +kv_bytes)

  uint64_t k_offset(int64_t layer) const { return layer_offset[size_t(layer)]; }
  uint64_t v_offset(int64_t layer) const { return layer_offset[size_t(layer)] + kv_bytes; }
};

// The layout of a state of `tokens` tokens for `config`. Throws Code::InvalidArgument for a
// negative token count and Code::Capacity when the size does not fit in 64 bits.
StateLayout state_layout(const ModelConfig& config, int64_t tokens);

// Resizes *out to the image size, writes the header and zeroes the payload; returns the layout
// the caller fills in.
StateLayout begin_state_image(const ModelConfig& config, int64_t tokens, std::vector<uint8_t>* out);

// Validates an image against `config`: magic, version, every shape field, the layer kinds and
// the exact size (checked before anything is allocated). Throws Code::Format naming what was
// wrong. Does not look at the payload values (see check_state_payload_finite).
StateLayout parse_state_image(const ModelConfig& config, const uint8_t* data, size_t size);

// Throws Code::Format if any payload value of a parsed image is NaN or infinite: a state
// holding one can only come from a corrupted file.
void check_state_payload_finite(const StateLayout& layout, const uint8_t* data);

}  // namespace mmx
