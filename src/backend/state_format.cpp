#include "backend/state_format.h"

#include <cmath>
#include <cstring>
#include <limits>
#include <string>

#include "core/error.h"

namespace mmx {

static_assert(__BYTE_ORDER__ == __ORDER_LITTLE_ENDIAN__,
              "the state image stores fp32 payloads by memcpy; a big-endian port must swap bytes");

namespace {

constexpr char kMagic[8] = {'M', 'M', 'X', 'S', 'T', 'A', 'T', 'E'};
constexpr uint64_t kFixedHeader = 40;

uint64_t round_up8(uint64_t x) { return (x + 7) & ~uint64_t(7); }

// a * b, or Code::Capacity when it does not fit.
uint64_t checked_mul(uint64_t a, uint64_t b, const char* what) {
  if (a != 0 && b > std::numeric_limits<uint64_t>::max() / a)
    fail(Code::Capacity, std::string("state image: ") + what + " does not fit in 64 bits");
  return a * b;
}

uint64_t checked_add(uint64_t a, uint64_t b) {
  if (b > std::numeric_limits<uint64_t>::max() - a)
    fail(Code::Capacity, "state image: total size does not fit in 64 bits");
  return a + b;
}

void put_u32(uint8_t* p, uint32_t v) {
  for (int i = 0; i < 4; ++i) p[i] = uint8_t(v >> (8 * i));
}
void put_i64(uint8_t* p, int64_t v) {
  uint64_t u = uint64_t(v);
  for (int i = 0; i < 8; ++i) p[i] = uint8_t(u >> (8 * i));
}
uint32_t get_u32(const uint8_t* p) {
  uint32_t v = 0;
  for (int i = 0; i < 4; ++i) v |= uint32_t(p[i]) << (8 * i);
  return v;
}
int64_t get_i64(const uint8_t* p) {
  uint64_t v = 0;
  for (int i = 0; i < 8; ++i) v |= uint64_t(p[i]) << (8 * i);
  return int64_t(v);
}

void expect_field(const char* name, uint64_t got, int64_t want) {
  if (int64_t(got) != want)
    fail(Code::Format, std::string("state image: ") + name + " is " + std::to_string(got) +
                           " but the model has " + std::to_string(want));
}

}  // namespace

StateLayout state_layout(const ModelConfig& c, int64_t tokens) {
  MMX_CHECK(tokens >= 0, Code::InvalidArgument,
            "state image: negative token count " + std::to_string(tokens));
  MMX_CHECK(int64_t(c.layer_kinds.size()) == c.layers, Code::Internal,
            "state image: config has inconsistent layer kinds");
  StateLayout l;
  l.tokens = tokens;
  l.header_bytes = kFixedHeader + round_up8(uint64_t(c.layers));
  l.lightning_bytes = checked_mul(uint64_t(c.heads * c.head_dim), uint64_t(c.head_dim) * 4, "S");
  l.kv_bytes = checked_mul(uint64_t(tokens), uint64_t(c.kv_heads * c.head_dim) * 4, "KV cache");
  uint64_t at = l.header_bytes;
  l.layer_offset.resize(size_t(c.layers));
  for (int64_t i = 0; i < c.layers; ++i) {
    l.layer_offset[size_t(i)] = at;
    bool lightning = c.layer_kinds[size_t(i)] == LayerKind::Lightning;
    at = checked_add(at, lightning ? l.lightning_bytes : checked_add(l.kv_bytes, l.kv_bytes));
  }
  l.total_bytes = at;
  return l;
}

StateLayout begin_state_image(const ModelConfig& c, int64_t tokens, std::vector<uint8_t>* out) {
  StateLayout l = state_layout(c, tokens);
  MMX_CHECK(l.total_bytes <= out->max_size(), Code::Capacity, "state image too large");
  out->assign(size_t(l.total_bytes), 0);
  uint8_t* p = out->data();
  std::memcpy(p, kMagic, 8);
  put_u32(p + 8, kStateFormatVersion);
  put_u32(p + 12, uint32_t(c.layers));
  put_u32(p + 16, uint32_t(c.heads));
  put_u32(p + 20, uint32_t(c.head_dim));
  put_u32(p + 24, uint32_t(c.kv_heads));
  put_u32(p + 28, 0);
  put_i64(p + 32, tokens);
  for (int64_t i = 0; i < c.layers; ++i) p[kFixedHeader + uint64_t(i)] = uint8_t(c.layer_kinds[size_t(i)]);
  return l;
}

StateLayout parse_state_image(const ModelConfig& c, const uint8_t* data, size_t size) {
  MMX_CHECK(data != nullptr || size == 0, Code::InvalidArgument, "state image: null data");
  MMX_CHECK(size >= kFixedHeader && std::memcmp(data, kMagic, 8) == 0, Code::Format,
            "state image: not a libminimax sequence state (bad magic or too short: " +
                std::to_string(size) + " bytes)");
  uint32_t version = get_u32(data + 8);
  MMX_CHECK(version == kStateFormatVersion, Code::Format,
            "state image: unsupported format version " + std::to_string(version) + " (expected " +
                std::to_string(kStateFormatVersion) + ")");
  expect_field("layer count", get_u32(data + 12), c.layers);
  expect_field("head count", get_u32(data + 16), c.heads);
  expect_field("head_dim", get_u32(data + 20), c.head_dim);
  expect_field("kv head count", get_u32(data + 24), c.kv_heads);
  MMX_CHECK(get_u32(data + 28) == 0, Code::Format, "state image: reserved header field is not 0");
  int64_t tokens = get_i64(data + 32);
  MMX_CHECK(tokens >= 0, Code::Format, "state image: negative token count " + std::to_string(tokens));
  uint64_t header = kFixedHeader + round_up8(uint64_t(c.layers));
  MMX_CHECK(size >= header, Code::Format, "state image: truncated header");
  for (int64_t i = 0; i < c.layers; ++i) {
    uint8_t kind = data[kFixedHeader + uint64_t(i)];
    MMX_CHECK(kind == uint8_t(c.layer_kinds[size_t(i)]), Code::Format,
              "state image: layer " + std::to_string(i) + " has kind " + std::to_string(kind) +
                  " but the model's layer is " +
                  (c.layer_kinds[size_t(i)] == LayerKind::Lightning ? "lightning (0)" : "softmax (1)"));
  }
  for (uint64_t i = kFixedHeader + uint64_t(c.layers); i < header; ++i)
    MMX_CHECK(data[i] == 0, Code::Format, "state image: nonzero header padding");
  StateLayout l;
  try {
    l = state_layout(c, tokens);
  } catch (const Error&) {
    fail(Code::Format, "state image: token count " + std::to_string(tokens) + " is implausible");
  }
  MMX_CHECK(l.total_bytes == size, Code::Format,
            "state image: size is " + std::to_string(size) + " bytes but " + std::to_string(tokens) +
                " tokens need " + std::to_string(l.total_bytes));
  return l;
}

void check_state_payload_finite(const StateLayout& l, const uint8_t* data) {
  for (uint64_t at = l.header_bytes; at < l.total_bytes; at += 4) {
    float f;
    std::memcpy(&f, data + at, 4);
    if (!std::isfinite(f))
      fail(Code::Format, "state image: non-finite value at byte offset " + std::to_string(at));
  }
}

}  // namespace mmx
