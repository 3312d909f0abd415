// CpuBackend's sequence states: creation, copies, size accounting and the portable
// save/load through backend/state_format.h.
#include <cstring>
#include <new>
#include <string>

#include "backend/cpu/cpu_backend.h"
#include "backend/state_format.h"
#include "core/error.h"

namespace mmx::cpu {

namespace {

const CpuSeqState& as_cpu(const SeqState& s, const ModelConfig& c, const char* op) {
  auto* st = dynamic_cast<const CpuSeqState*>(&s);
  MMX_CHECK(st != nullptr, Code::InvalidArgument,
            std::string("cpu backend: ") + op + ": a sequence state that the CPU backend did not create");
  MMX_CHECK(st->s.size() == size_t(c.layers), Code::InvalidArgument,
            std::string("cpu backend: ") + op + ": a sequence state made for another model");
  return *st;
}

}  // namespace

void CpuBackend::require_whole_heads(const char* op) const {
  // The portable image holds every head; a rank holds only its own. Saving one would need a
  // gather of every layer across ranks (and loading, a scatter), which is not built yet.
  MMX_CHECK(!plan_.attention_split(), Code::Unsupported,
            std::string("cpu backend: ") + op + " of a tensor-parallel rank (it holds " +
                std::to_string(plan_.heads) + " of " + std::to_string(config_.heads) + " heads)");
}

std::unique_ptr<SeqState> CpuBackend::new_state() {
  require_prepared("new_state");
  auto st = std::make_unique<CpuSeqState>();
  const size_t L = size_t(config_.layers);
  st->s.resize(L);
  st->k.resize(L);
  st->v.resize(L);
  // Lightning states are fixed-size and allocated up front so state_bytes() is what is held.
  for (size_t i = 0; i < L; ++i)
    if (config_.layer_kinds[i] == LayerKind::Lightning)
      st->s[i].assign(size_t(plan_.heads * config_.head_dim * config_.head_dim), 0.0f);
  return st;
}

std::unique_ptr<SeqState> CpuBackend::clone_state(const SeqState& s) {
  require_prepared("clone_state");
  const CpuSeqState& src = as_cpu(s, config_, "clone_state");
  try {
    return std::make_unique<CpuSeqState>(src);
  } catch (const std::bad_alloc&) {
    fail(Code::OutOfMemory, "cpu backend: out of memory copying a sequence state");
  }
}

uint64_t CpuBackend::state_bytes(int64_t tokens) const {
  require_prepared("state_bytes");
  MMX_CHECK(tokens >= 0, Code::InvalidArgument, "cpu backend: state_bytes of a negative token count");
  const uint64_t d = uint64_t(config_.head_dim);
  const uint64_t softmax = uint64_t(config_.softmax_layer_count());
  const uint64_t lightning = uint64_t(config_.layers) - softmax;
  return lightning * uint64_t(plan_.heads) * d * d * 4 +  // this rank's heads
         softmax * 2 * uint64_t(tokens) * uint64_t(plan_.kv_heads) * d * 4;
}

void CpuBackend::save_state(const SeqState& s, std::vector<uint8_t>* out) const {
  require_prepared("save_state");
  require_whole_heads("save_state");
  const CpuSeqState& st = as_cpu(s, config_, "save_state");
  StateLayout l = begin_state_image(config_, st.tokens, out);
  for (int64_t i = 0; i < config_.layers; ++i) {
    const size_t li = size_t(i);
    if (config_.layer_kinds[li] == LayerKind::Lightning) {
      // A state that never ran this layer is all zeros, which the image already holds.
      if (!st.s[li].empty()) std::memcpy(out->data() + l.layer_offset[li], st.s[li].data(), l.lightning_bytes);
      continue;
    }
    MMX_CHECK(st.k[li].size() * 4 == l.kv_bytes && st.v[li].size() * 4 == l.kv_bytes, Code::State,
              "cpu backend: save_state: layer " + std::to_string(i) +
                  " cache length does not match the state's token count (saved mid-step?)");
    if (l.kv_bytes == 0) continue;
    std::memcpy(out->data() + l.k_offset(i), st.k[li].data(), l.kv_bytes);
    std::memcpy(out->data() + l.v_offset(i), st.v[li].data(), l.kv_bytes);
  }
}

std::unique_ptr<SeqState> CpuBackend::load_state(const uint8_t* data, size_t size) {
  require_prepared("load_state");
  require_whole_heads("load_state");
  StateLayout l = parse_state_image(config_, data, size);
  check_state_payload_finite(l, data);
  auto st = std::make_unique<CpuSeqState>();
  const size_t L = size_t(config_.layers);
  st->tokens = l.tokens;
  st->s.resize(L);
  st->k.resize(L);
  st->v.resize(L);
  try {
    for (size_t i = 0; i < L; ++i) {
      if (config_.layer_kinds[i] == LayerKind::Lightning) {
        st->s[i].resize(l.lightning_bytes / 4);
        std::memcpy(st->s[i].data(), data + l.layer_offset[i], l.lightning_bytes);
      } else {
        st->k[i].resize(l.kv_bytes / 4);
        st->v[i].resize(l.kv_bytes / 4);
        if (l.kv_bytes == 0) continue;
        std::memcpy(st->k[i].data(), data + l.k_offset(int64_t(i)), l.kv_bytes);
        std::memcpy(st->v[i].data(), data + l.v_offset(int64_t(i)), l.kv_bytes);
      }
    }
  } catch (const std::bad_alloc&) {
    fail(Code::OutOfMemory, "cpu backend: out of memory loading a sequence state");
  }
  return st;
}

}  // namespace mmx::cpu
