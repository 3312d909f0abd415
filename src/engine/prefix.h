// Prefix: a processed prompt that later requests continue without recomputing it ("ingest a
// document once, ask many questions"): its tokens and the backend state at its end. Immutable
// and reference-counted; its state memory is charged to the context that made or loaded it
// until the last reference goes.
#pragma once
#include <cstdint>
#include <memory>
#include <string>
#include <vector>

#include "backend/backend.h"
#include "engine/runtime.h"
#include "engine/state_budget.h"

namespace mmx {

class Prefix {
 public:
  // Takes over `state` (whose bytes are already charged to `budget` as prefix bytes).
  Prefix(std::shared_ptr<ModelRuntime> runtime, std::shared_ptr<StateBudget> budget,
         std::vector<int32_t> tokens, std::unique_ptr<SeqState> state, uint64_t state_bytes);
  ~Prefix();
  Prefix(const Prefix&) = delete;
  Prefix& operator=(const Prefix&) = delete;

  const std::vector<int32_t>& tokens() const { return tokens_; }
  int64_t token_count() const { return int64_t(tokens_.size()); }
  uint64_t state_bytes() const { return state_bytes_; }
  const ModelRuntime* runtime() const { return runtime_.get(); }

  // A new state that continues this prefix. The caller holds the runtime's step mutex.
  std::unique_ptr<SeqState> clone_state_locked() const;

  // Writes the prefix file (format in prefix.cpp). Throws Code::Io naming the path.
  void save(const std::string& path) const;
  // Reads and validates a prefix file for `runtime`, charging it to `budget`. Code::Format for
  // a damaged or truncated file, Code::InvalidArgument for one made with another model,
  // Code::NotFound / Code::Io when it cannot be read, Code::Capacity when it does not fit.
  static std::shared_ptr<Prefix> load(std::shared_ptr<ModelRuntime> runtime,
                                      std::shared_ptr<StateBudget> budget, const std::string& path);

 private:
  std::shared_ptr<ModelRuntime> runtime_;
  std::shared_ptr<StateBudget> budget_;
  std::vector<int32_t> tokens_;
  std::unique_ptr<SeqState> state_;
  uint64_t state_bytes_ = 0;
};

}  // namespace mmx
