// Fuzz target: ModelConfig::parse must either refuse an input with mmx::Error or accept a config
// that survives a write/parse round trip unchanged.
#include <cstddef>
#include <cstdint>
#include <cstdlib>
#include <string>

#include "core/error.h"
#include "model/config.h"
#include "model/random_model.h"

namespace {

bool same(const mmx::ModelConfig& a, const mmx::ModelConfig& b) {
  return a.hidden == b.hidden && a.intermediate == b.intermediate && a.layers == b.layers && a.heads == b.heads &&
         a.kv_heads == b.kv_heads && a.head_dim == b.head_dim && a.rotary_dim == b.rotary_dim &&
         a.experts == b.experts && a.top_k == b.top_k && a.vocab == b.vocab && a.max_positions == b.max_positions &&
         a.block_size == b.block_size && a.rms_eps == b.rms_eps && a.rope_theta == b.rope_theta &&
         a.tie_embeddings == b.tie_embeddings && a.layer_kinds == b.layer_kinds &&
         a.lightning_alpha == b.lightning_alpha && a.lightning_beta == b.lightning_beta &&
         a.full_alpha == b.full_alpha && a.full_beta == b.full_beta && a.mlp_alpha == b.mlp_alpha &&
         a.mlp_beta == b.mlp_beta && a.bos_token_id == b.bos_token_id && a.eos_token_id == b.eos_token_id;
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  mmx::ModelConfig c;
  try {
    c = mmx::ModelConfig::parse(std::string(reinterpret_cast<const char*>(data), size), "fuzz");
  } catch (const mmx::Error&) {
    return 0;
  }
  for (bool official : {true, false})
    if (!same(c, mmx::ModelConfig::parse(mmx::config_to_json(c, official)))) std::abort();
  volatile double sink = c.lightning_decay(c.layers - 1, c.heads - 1);
  (void)sink;
  return 0;
}
