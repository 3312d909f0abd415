// A loaded model: its config, its mapped weights, its tokenizer and chat format. Immutable
// after load and shared (std::shared_ptr) by every context that serves it.
#pragma once
#include <functional>
#include <map>
#include <vector>
#include <memory>
#include <string>

#include "model/config.h"
#include "model/tensor_store.h"
#include "model/weights.h"

namespace mmx {

class Tokenizer;

// Load progress: fraction in [0,1] and a short stage name. Return false to abort the load
// (load then throws Code::Cancelled).
using LoadProgress = std::function<bool(double fraction, const char* stage)>;

class Model {
 public:
  // `dir` holds config.json, safetensors (single or sharded with an index) and optionally a
  // tokenizer (tokenizer.model, tokenizer.json, or vocab.json + merges.txt) and
  // tokenizer_config.json. A model without tokenizer files still loads (token-level use only).
  static std::shared_ptr<Model> load(const std::string& dir, const LoadProgress& progress = {});
  ~Model();

  // A tensor held in memory (tests, tools): row-major bytes in `dtype`.
  struct OwnedTensor {
    DType dtype = DType::F32;
    std::vector<int64_t> shape;
    std::vector<uint8_t> bytes;
  };
  // A model whose tensors live in memory, named as in a checkpoint (either spelling) and
  // mapped and validated exactly as files are. No tokenizer.
  static std::shared_ptr<Model> from_memory(const ModelConfig& config,
                                            std::map<std::string, OwnedTensor> tensors);
  // A model with the right names and shapes but no weight bytes (every WeightRef has
  // data == nullptr): for real-shape benchmarks where the backend generates random weights
  // in place (a 456B model does not fit in a test machine's memory). The CPU backend refuses it.
  static std::shared_ptr<Model> synthetic(const ModelConfig& config);
  bool is_synthetic() const { return synthetic_; }

  const ModelConfig& config() const { return config_; }
  const ModelWeights& weights() const { return weights_; }
  const TensorStore& store() const { return *store_; }
  const Tokenizer* tokenizer() const { return tokenizer_.get(); }  // may be null
  const std::string& dir() const { return dir_; }
  // Stable hex digest of config + tensor names, dtypes, shapes and a sample of weight bytes.
  // Saved prefixes carry it so a prefix is never used with another model.
  const std::string& fingerprint() const { return fingerprint_; }

 private:
  Model() = default;
  std::string dir_;
  ModelConfig config_;
  std::unique_ptr<TensorStore> store_;
  ModelWeights weights_;
  std::unique_ptr<Tokenizer> tokenizer_;
  std::string fingerprint_;
  bool synthetic_ = false;
  std::vector<Model::OwnedTensor> owned_;  // backing store for from_memory
};

}  // namespace mmx
