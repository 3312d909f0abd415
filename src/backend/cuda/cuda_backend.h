// CudaBackend: the Backend ops on one NVIDIA GPU (sm_80 or newer). Activations are bf16 on
// the device, the residual stream (alloc_residual) fp32; weights follow model-spec §8 (W8A16 by default, or bf16); attention and the
// sequence states are CudaAttention's (attention.h). Everything runs on one stream, so ops
// are ordered without further synchronisation; the calls that return data to the host
// (download, logits) and large-batch MoE synchronise.
#pragma once
#include <cuda_bf16.h>
#include <cuda_runtime.h>

#include <map>
#include <memory>
#include <mutex>
#include <set>
#include <string>
#include <vector>

#include "backend/backend.h"
#include "backend/cuda/attention.h"
#include "backend/cuda/cuda_linear.h"
#include "backend/cuda/cuda_weights.h"
#include "backend/cuda/device_memory.h"
#include "backend/cuda/lt_gemm.h"

namespace mmx {

std::unique_ptr<Backend> create_cuda_backend(const BackendOptions& opts);
int cuda_device_count_impl();

namespace cuda {

class CudaBackend final : public Backend {
 public:
  explicit CudaBackend(const BackendOptions& opts);
  ~CudaBackend() override;
  std::string name() const override { return "cuda"; }
  void prepare(const Model& model) override;

  std::unique_ptr<SeqState> new_state() override;
  std::unique_ptr<SeqState> clone_state(const SeqState& s) override;
  uint64_t state_bytes(int64_t tokens) const override;
  void save_state(const SeqState& s, std::vector<uint8_t>* out) const override;
  std::unique_ptr<SeqState> load_state(const uint8_t* data, size_t size) override;

  void begin_step() override;
  void begin_layers(const StepBatch& batch) override;
  void end_layers() override;
  Act alloc(int64_t rows, int64_t cols) override;
  Act alloc_residual(int64_t rows, int64_t cols) override;
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

  // For benchmarks and tests.
  cudaStream_t stream() const { return stream_; }
  int device() const { return device_; }
  bool int8_weights() const { return int8_; }
  const MemoryBudget& memory() const { return budget_; }
  uint64_t weight_bytes() const { return weights_ ? weights_->bytes() : 0; }

  // Where the kernels switch, by tokens in the op. MoE: up to moe_gemv_max_tokens the grouped
  // GEMV, then (int8 weights) up to moe_mma_max_tokens the grouped tensor-core kernel, both
  // without host synchronisation; above, per-expert GEMMs (one synchronisation per layer).
  // With bf16 weights, which have no grouped tensor-core kernel, the grouped GEMV runs up to
  // moe_bf16_gemv_max_tokens. Measured on the H100 (int8, real shapes): the GEMV is 23% faster
  // at 32 tokens, the tensor-core kernel 8% faster at 64.
  // Linear layers: see LinearRunner. Adjustable for benchmarks and tests.
  // decode_graphs: decode steps (every sequence one token) of up to graph_max_tokens tokens
  // are captured into a CUDA graph and launched as one, after one step of that size ran
  // without a graph (it grows the buffers, which a capture must not). Each step is captured
  // anew, since positions, pages and descriptors change, and the instantiated graph of that
  // size is updated in place (cudaGraphExecUpdate); only a change of shape instantiates
  // another. Off by default: on the H100 it saved nothing on MiniMax-Text-01's shapes (the
  // host queues a step op by op in a fifth of its device time, so the device never waits;
  // capturing first delays the start: -1% to -3% at batch 1) and helped only a small model
  // at batch 1 (+14% to +46%; -15% at batch 16). bench_cuda measures both ways.
  struct Tuning {
    int64_t moe_gemv_max_tokens = 32;
    int64_t moe_bf16_gemv_max_tokens = 64;
    int64_t moe_mma_max_tokens = 2048;
    bool decode_graphs = false;
    int64_t graph_max_tokens = 256;
  };
  struct GraphStats {
    int64_t launched = 0;       // steps run as a graph
    int64_t updated = 0;        // ... of which updated an instantiated graph in place
    int64_t instantiated = 0;   // graphs instantiated
  };
  const GraphStats& graph_stats() const { return graph_stats_; }
  Tuning& tuning() { return tuning_; }
  LinearRunner& linear_runner() { return *linear_; }
  const DeviceWeights& device_weights() const {
    require_prepared("device_weights");
    return *weights_;
  }

 private:
  void require_prepared(const char* op) const;
  void make_current() const;  // the calling thread's current device := ours
  int64_t layer_index(const LayerWeights& lw) const;
  // The bf16 form of an activation for the matrix products: bf16 ones as they are; for an fp32
  // one the copy rms_norm wrote beside it, or a fresh conversion (kept until overwritten).
  const __nv_bfloat16* bf16_input(Act x);
  __nv_bfloat16* bf16_copy_buffer(int64_t rows, int64_t cols);
  // An op is about to write `a`: a bf16 copy made of it is stale from now on.
  void overwritten(Act a);
  // Ends a capture an exception interrupted, dropping what it recorded.
  void abort_capture();
  bool graph_eligible(const StepBatch& batch) const;
  // The largest MoE step the grouped GEMV takes with this backend's weights (Tuning).
  int64_t moe_gemv_max() const {
    return int8_ ? tuning_.moe_gemv_max_tokens : tuning_.moe_bf16_gemv_max_tokens;
  }
  void moe_grouped_gemv(const MoeDeviceLayer& L, const __nv_bfloat16* x, int64_t T,
                        const int32_t* offsets, const int32_t* sorted_token,
                        const int32_t* active, const int32_t* active_count,
                        __nv_bfloat16* ys);
  void moe_grouped_mma(const MoeDeviceLayer& L, const __nv_bfloat16* x, int64_t T,
                       const int32_t* offsets, const int32_t* sorted_token, __nv_bfloat16* ys);
  void moe_expert_gemms(const MoeDeviceLayer& L, const __nv_bfloat16* x, int64_t T,
                        const int32_t* offsets, const int32_t* sorted_token, __nv_bfloat16* ys);

  int device_ = 0;
  int sm_count_ = 1;
  bool int8_ = true;
  Tuning tuning_;
  cudaStream_t stream_ = nullptr;
  MemoryBudget budget_;
  DeviceBuffer lt_workspace_;
  std::unique_ptr<LtGemm> lt_;
  std::unique_ptr<DeviceArena> acts_;     // step activations, reset by begin_step()
  std::unique_ptr<DeviceArena> scratch_;  // one op's temporaries, reset at each op
  std::unique_ptr<LinearRunner> linear_;
  HostStaging staging_;
  const Model* model_ = nullptr;
  ModelConfig config_;
  std::unique_ptr<DeviceWeights> weights_;
  std::unique_ptr<CudaAttention> attention_;
  // The one bf16 copy of an fp32 activation kept: of `source`'s [rows, cols], in `buffer`.
  struct Bf16Copy {
    const void* source = nullptr;
    int64_t rows = 0, cols = 0;
    DeviceBuffer buffer;
  } low_;
  std::vector<DeviceBuffer> retired_;  // replaced while capturing; freed at the next step

  // CUDA graphs of decode steps, by step size (Tuning says when).
  std::map<int64_t, cudaGraphExec_t> graphs_;
  std::set<int64_t> warm_sizes_;  // decode step sizes that ran once without a graph
  int64_t warming_ = 0;           // the size of the step running to warm up, 0 if none
  bool capturing_ = false;
  int64_t capture_size_ = 0;
  std::unique_lock<std::mutex> capture_lock_;  // CudaAttention::hold_state_releases()
  GraphStats graph_stats_;
  // Page-locked landing place for small logits copies (logits()).
  static constexpr size_t kLogitsBounceBytes = size_t(8) << 20;
  void* logits_host_ = nullptr;
};

}  // namespace cuda
}  // namespace mmx
