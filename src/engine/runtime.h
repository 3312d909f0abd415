// ModelRuntime: a loaded model together with the ONE backend that serves it. Every context of
// the model shares the backend; because a Backend is not thread-safe, everything that touches
// it (steps, state creation/cloning/destruction, save/load of states) holds step_mutex().
// Held through shared_ptr by the C handle, by every engine and by every prefix, so the model
// and its backend stay alive while anything still uses them.
#pragma once
#include <cstdint>
#include <memory>
#include <mutex>
#include <string>
#include <vector>

#include "backend/backend.h"
#include "model/model.h"

namespace mmx {

struct RuntimeOptions {
  std::string backend = "auto";      // "auto" (cuda when a GPU is usable, else cpu), "cpu", "cuda"
  std::vector<int> devices;          // CUDA ordinals; empty: device 0
  std::string weight_dtype = "auto";  // "auto", "int8", "bf16" (CPU always computes in fp32)
  int threads = 0;                    // CPU threads, 0 = all cores
  uint64_t memory_limit_bytes = 0;    // 0 = backend default
};

// Parses "0,1,3" into ordinals; throws Code::InvalidArgument naming the bad item.
std::vector<int> parse_device_list(const std::string& text);

class ModelRuntime {
 public:
  // Loads the model directory, creates the backend and prepares it. Progress covers both
  // (loading maps to [0, 0.9], backend preparation to [0.9, 1]); returning false from it
  // aborts with Code::Cancelled.
  static std::shared_ptr<ModelRuntime> load(const std::string& dir, const RuntimeOptions& options,
                                            const LoadProgress& progress = {});
  // Serves an already constructed model (tests: Model::from_memory).
  static std::shared_ptr<ModelRuntime> create(std::shared_ptr<const Model> model,
                                              const RuntimeOptions& options,
                                              const LoadProgress& progress = {});
  // Serves `model` with a backend the caller made (tests wrap a real backend to inject
  // faults); prepares it. weight_dtype as in RuntimeOptions, for the weight accounting.
  static std::shared_ptr<ModelRuntime> with_backend(std::shared_ptr<const Model> model,
                                                    std::unique_ptr<Backend> backend,
                                                    const std::string& weight_dtype = "auto");
  ~ModelRuntime();

  const Model& model() const { return *model_; }
  const ModelConfig& config() const { return model_->config(); }
  const Tokenizer* tokenizer() const { return model_->tokenizer(); }
  Backend& backend() { return *backend_; }
  const Backend& backend() const { return *backend_; }
  const std::string& backend_name() const { return backend_name_; }
  std::mutex& step_mutex() { return step_mutex_; }

  int32_t vocab_size() const { return int32_t(config().vocab); }
  int32_t bos_token() const { return bos_; }  // -1 when none
  int32_t eos_token() const { return eos_; }  // -1 when none
  int64_t context_limit() const;              // max tokens per sequence

  // Distinct weight elements (a tied lm_head counts once) and the bytes the backend holds for
  // them. The Backend interface has no query for its footprint, so the bytes follow the
  // documented storage recipe (model-spec §8): the CPU reference holds fp32; CUDA holds the
  // linear weights as int8 + one fp32 scale per row (or bf16), embeddings and norms as bf16,
  // the router as fp32.
  uint64_t parameter_count() const { return parameter_count_; }
  uint64_t weight_bytes() const { return weight_bytes_; }
  // Activation and scratch bytes of one step of `step_tokens` tokens with `logit_rows` rows of
  // logits, from the shapes the forward pass allocates (an estimate, not a measurement).
  uint64_t workspace_bytes(int64_t step_tokens, int64_t logit_rows) const;

 private:
  ModelRuntime() = default;
  // Prepares the backend and fills in everything derived from model and backend.
  static std::shared_ptr<ModelRuntime> assemble(std::shared_ptr<const Model> model,
                                                std::unique_ptr<Backend> backend,
                                                const std::string& weight_dtype,
                                                const LoadProgress& progress);
  void account_weights(const std::string& weight_dtype);

  std::shared_ptr<const Model> model_;
  std::unique_ptr<Backend> backend_;
  std::string backend_name_;
  std::mutex step_mutex_;
  int32_t bos_ = -1, eos_ = -1;
  uint64_t parameter_count_ = 0, weight_bytes_ = 0;
};

}  // namespace mmx
