// The forward pass, written once against the Backend op interface (model-spec §4-§7).
#pragma once
#include <cstdint>
#include <vector>

#include "backend/backend.h"
#include "model/model.h"

namespace mmx {

// Sharded (multi-GPU) runs need nothing more here: each rank builds a Forward over its own
// backend, which knows its Shard (Backend::set_shard), and all ranks run the same steps.
class Forward {
 public:
  Forward(const Model& model, Backend& backend) : model_(model), be_(backend) {}

  // Runs one step: `tokens` holds batch.total_tokens() ids, sequence by sequence. Each
  // sequence's state absorbs its tokens (state->tokens advances by n_tokens). For every index
  // in `logit_rows` (into the flattened tokens) writes the fp32 logits row into `logits`
  // (resized to logit_rows.size() * vocab). Token ids must be in [0, vocab).
  void run(const StepBatch& batch, const std::vector<int32_t>& tokens,
           const std::vector<int32_t>& logit_rows, std::vector<float>* logits);

 private:
  const Model& model_;
  Backend& be_;
};

}  // namespace mmx
