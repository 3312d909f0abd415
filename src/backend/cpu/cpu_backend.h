// CpuBackend: the fp32 reference implementation of the Backend ops (model-spec §4-§7).
// Weights are upcast to fp32 once in prepare(); matrix products go through single-threaded
// OpenBLAS calls spread over the backend's ThreadPool (cpu_kernels.h says why).
#pragma once
#include <functional>
#include <memory>
#include <vector>

#include "backend/backend.h"
#include "backend/cpu/cpu_kernels.h"
#include "core/thread_pool.h"

namespace mmx {

std::unique_ptr<Backend> create_cpu_backend(const BackendOptions& opts);

namespace cpu {

// A sequence's state on the CPU, indexed by GLOBAL layer: lightning layers hold S [nh, d, d]
// in `s` (k/v empty), softmax layers hold post-RoPE keys and values [tokens, nkv*d] in k/v.
// Under tensor parallelism nh and nkv are the rank's heads (ShardPlan).
struct CpuSeqState final : SeqState {
  std::vector<std::vector<float>> s, k, v;
};

class CpuBackend final : public Backend {
 public:
  explicit CpuBackend(const BackendOptions& opts);
  std::string name() const override { return "cpu"; }
  void prepare(const Model& model) override;

  std::unique_ptr<SeqState> new_state() override;
  std::unique_ptr<SeqState> clone_state(const SeqState& s) override;
  uint64_t state_bytes(int64_t tokens) const override;
  void save_state(const SeqState& s, std::vector<uint8_t>* out) const override;
  std::unique_ptr<SeqState> load_state(const uint8_t* data, size_t size) override;

  void begin_step() override;
  Act alloc(int64_t rows, int64_t cols) override;
  void upload(const float* src, Act dst) override;
  void download(Act src, float* dst) override;

  void embed(const std::vector<int32_t>& tokens, Act out) override;
  void rms_norm(Act x, const WeightRef& w, double eps, Act out) override;
  void linear(Act x, const WeightRef& w, Act out) override;
  void silu(Act x) override;
  void sigmoid_mul(Act gate, Act x) override;
  void scale_add(Act h, double alpha, Act a, double beta, Act out) override;
  void lightning_attention(int layer, Act qkv, const StepBatch& batch, Act out) override;
  void softmax_attention(int layer, Act q, Act k, Act v, const StepBatch& batch, Act out) override;
  void moe(const LayerWeights& lw, Act x, Act out) override;
  void logits(Act x, const std::vector<int32_t>& rows, float* out) override;

  void set_shard(const Shard& shard, Communicator* comm) override;
  Shard shard() const override { return shard_; }
  void all_reduce_sum(Act x) override;
  void rms_norm_split(Act x, const WeightRef& w, double eps, Act out) override;

  // Test-only observation hook (tests/cuda/test_cuda_model.cpp tells routing flips from kernel
  // bugs with it); empty by default, and then costs nothing. When set, every moe() call reports
  // each of its activation rows, in row order, on the calling thread, with the row's router
  // margin: the softmax probability of its top_k-th expert minus that of the best expert left
  // out (+infinity when top_k == experts, where nothing can flip). A forward step calls moe()
  // once per layer, so the caller takes the minimum over a step's calls per row.
  std::function<void(int64_t row, float margin)> route_observer;

 private:
  // The fp32 copy of the rank's block of a weight (all of it unless sharded), checked against
  // the shape the caller expects; local_shape() is the block's [rows, cols].
  const float* weight(const WeightRef& w) const;
  std::pair<int64_t, int64_t> local_shape(const WeightRef& w) const;
  void require_prepared(const char* op) const;
  void require_whole_heads(const char* op) const;  // save/load: not a tensor-parallel rank
  // The CPU state of every sequence in the batch (each at most once), checked for this model.
  std::vector<CpuSeqState*> batch_states(const StepBatch& batch, const char* op) const;
  void check_layer(int layer, LayerKind kind, const char* op) const;
  // Deals `tasks` items to the pool round-robin: fn(first, stride) handles items first,
  // first+stride, ... so long and short items interleave. Runs fn(0, 1) on the calling thread
  // when there is one item or `flops` (the whole job's estimate) is too small to be worth waking
  // the pool.
  void deal_tasks(int64_t tasks, double flops, const std::function<void(int64_t, int64_t)>& fn);
  // fn(begin, end) over row ranges of a [rows, cols] elementwise job, on the pool when it is
  // big enough to pay for the wake-up.
  void for_rows(int64_t rows, int64_t cols, const std::function<void(int64_t, int64_t)>& fn);

  ThreadPool pool_;
  const Model* model_ = nullptr;
  ModelConfig config_;
  std::vector<const float*> weights_;           // by WeightRef::id
  std::vector<std::pair<int64_t, int64_t>> shapes_;  // by id: rows, cols
  std::vector<std::pair<int64_t, int64_t>> local_;   // by id: the rank's block (== shapes_ unsharded)
  std::vector<std::vector<float>> converted_;   // owned fp32 copies
  std::vector<std::vector<double>> decay_;      // [layer][local head] lightning decay
  Shard shard_;
  ShardPlan plan_;                              // whole model unless sharded
  Communicator* comm_ = nullptr;
  std::vector<float> inv_freq_;                 // RoPE
  std::vector<std::unique_ptr<float[]>> arena_;  // step activations
  std::vector<size_t> arena_size_;
  size_t arena_next_ = 0;
};

}  // namespace cpu
}  // namespace mmx
