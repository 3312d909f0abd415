// The Backend op interface: every op one forward pass needs (src/model/forward.cpp composes
// them). Backends differ in how ops run, never in what the model computes. The CPU backend
// (src/backend/cpu) is the fp32 reference; the CUDA backend (src/backend/cuda + kernels/) is
// the fast path.
#pragma once
#include <cstdint>
#include <memory>
#include <string>
#include <vector>

#include "backend/shard.h"
#include "model/model.h"

namespace mmx {

class Communicator;

// An activation buffer owned by the backend (host memory for CPU, device memory for CUDA),
// row-major [rows, cols]. The element type is the backend's choice (CPU: fp32; CUDA: bf16,
// fp32 for the residual stream) and recorded in `dtype`; the forward pass never touches `data`.
struct Act {
  void* data = nullptr;
  int64_t rows = 0, cols = 0;
  DType dtype = DType::F32;
};

// One sequence's state, owned and laid out by the backend: an fp32 [heads, d, d] lightning
// state per lightning layer (fixed size) and a KV cache per softmax layer (grows with tokens).
class SeqState {
 public:
  virtual ~SeqState() = default;
  int64_t tokens = 0;  // tokens absorbed so far = position of the next token
};

// One sequence's share of a step: its rows are contiguous in the step's activations, in the
// order of StepBatch::seqs.
struct StepSeq {
  SeqState* state = nullptr;
  int64_t n_tokens = 0;   // prefill chunk length, or 1 for a decode token
  int64_t start_pos = 0;  // == state->tokens when the step starts
};

struct StepBatch {
  std::vector<StepSeq> seqs;
  int64_t total_tokens() const {
    int64_t n = 0;
    for (const auto& s : seqs) n += s.n_tokens;
    return n;
  }
};

struct BackendOptions {
  std::string kind = "cpu";   // "cpu" or "cuda"
  std::vector<int> devices;   // CUDA device ordinals (empty: device 0)
  int threads = 0;            // CPU threads (0: all cores)
  std::string weight_dtype;   // CUDA: "int8" (W8A16, default) or "bf16"; CPU: ignored (fp32)
  uint64_t memory_limit_bytes = 0;  // 0: backend default
};

class Backend {
 public:
  virtual ~Backend() = default;
  virtual std::string name() const = 0;

  // Called once before any op: converts/uploads the weights. `model` outlives the backend.
  virtual void prepare(const Model& model) = 0;

  // ---- sequence state
  virtual std::unique_ptr<SeqState> new_state() = 0;
  virtual std::unique_ptr<SeqState> clone_state(const SeqState& s) = 0;
  // Bytes one sequence's state occupies when it holds `tokens` tokens.
  virtual uint64_t state_bytes(int64_t tokens) const = 0;
  // Host serialisation of a state (lightning S in fp32, KV rows), portable across backends
  // of the same model: save on CUDA, load on CPU and vice versa.
  virtual void save_state(const SeqState& s, std::vector<uint8_t>* out) const = 0;
  virtual std::unique_ptr<SeqState> load_state(const uint8_t* data, size_t size) = 0;

  // ---- step activations: allocations stay valid until the next begin_step()
  virtual void begin_step() = 0;
  virtual Act alloc(int64_t rows, int64_t cols) = 0;
  // An activation of the residual stream: the hidden state x and the normalised h that the
  // post-norm adds back (model-spec §4). Their rounding error compounds over every layer, so
  // a backend with low-precision activations keeps these at full precision (CUDA: fp32 while
  // the other activations are bf16; on a trained model this halves the logits error).
  virtual Act alloc_residual(int64_t rows, int64_t cols) { return alloc(rows, cols); }
  // Host fp32 <-> activation copies (tests, debugging, twin comparisons). n = rows * cols.
  virtual void upload(const float* src, Act dst) = 0;
  virtual void download(Act src, float* dst) = 0;

  // The forward pass brackets a step's ops, from the embedding to the final norm, with these
  // (logits() comes after end_layers()). A backend may record the ops in between and run them
  // as one unit: the CUDA backend captures decode steps into CUDA graphs, so the whole step
  // is one launch. Every op still runs (or is recorded) in order, and the results are the
  // same either way; the defaults do nothing.
  virtual void begin_layers(const StepBatch& batch) { (void)batch; }
  virtual void end_layers() {}

  // ---- ops over the T = rows flattened tokens of a step
  // out[t] = embed[tokens[t]]
  virtual void embed(const std::vector<int32_t>& tokens, Act out) = 0;
  // out[t] = w * x[t] / sqrt(mean(x[t]^2) + eps), statistics in fp32. out may alias x.
  virtual void rms_norm(Act x, const WeightRef& w, double eps, Act out) = 0;
  // out = x W^T (W is [out, in]); fp32 accumulation.
  virtual void linear(Act x, const WeightRef& w, Act out) = 0;
  // x = SiLU(x), in place.
  virtual void silu(Act x) = 0;
  // x = sigmoid(gate) * x, in place.
  virtual void sigmoid_mul(Act gate, Act x) = 0;
  // out = alpha * h + beta * a. out may alias h or a.
  virtual void scale_add(Act h, double alpha, Act a, double beta, Act out) = 0;
  // Lightning attention core for global layer `layer` (model-spec §5). qkv is [T, 3*nh*d],
  // already SiLU'd, per head q|k|v interleaved; out is [T, nh*d] (before the output norm).
  // Reads and updates each sequence's fp32 state for this layer.
  virtual void lightning_attention(int layer, Act qkv, const StepBatch& batch, Act out) = 0;
  // Softmax attention core for global layer `layer` (model-spec §6). q [T, nh*d],
  // k and v [T, nkv*d] straight from the projections: applies partial NeoX RoPE at each
  // token's position, stores k/v in the sequence's cache at positions
  // start_pos..start_pos+n_tokens-1, then causal GQA attention with scale 1/sqrt(d) over
  // the cache -> out [T, nh*d].
  virtual void softmax_attention(int layer, Act q, Act k, Act v, const StepBatch& batch,
                                 Act out) = 0;
  // MoE sublayer (model-spec §7): fp32 router softmax, top-k, renormalise, SwiGLU experts,
  // weighted sum. x, out: [T, H].
  virtual void moe(const LayerWeights& lw, Act x, Act out) = 0;
  // fp32 logits of the listed rows of x (already final-normed) into host memory,
  // out[i * V + v] for i over rows.
  virtual void logits(Act x, const std::vector<int32_t>& rows, float* out) = 0;

  // ---- sharding (docs/multi-gpu.md): one backend per rank, each holding its slice of the
  // weights (shard.h). A backend without sharding support keeps these defaults, which accept
  // only world == 1 and otherwise throw Code::Unsupported.
  // Before prepare(): this backend is rank shard.rank of shard.world and runs its collectives
  // through `comm` (same rank and world; outlives the backend). prepare() then takes only the
  // rank's weight blocks, and the ops work on the rank's heads and experts: the forward pass
  // sizes the attention activations by ShardPlan::heads / kv_heads.
  virtual void set_shard(const Shard& shard, Communicator* comm);
  virtual Shard shard() const { return Shard{}; }
  // x := sum of x over the ranks (row-parallel projections, the MoE's partial sums).
  virtual void all_reduce_sum(Act x);
  // rms_norm over rows whose columns are split among the ranks: x holds this rank's columns
  // and the weight's slice is the rank's block; the mean of squares runs over all w.numel()
  // columns of every rank (the lightning output norm under tensor parallelism).
  virtual void rms_norm_split(Act x, const WeightRef& w, double eps, Act out);
};

// Creates the backend named by opts.kind. Throws Code::Unsupported for "cuda" in a build
// without CUDA, Code::Device when no usable GPU is present.
std::unique_ptr<Backend> create_backend(const BackendOptions& opts);

// Number of CUDA devices usable by this build (0 in a CPU-only build or without a GPU).
int cuda_device_count();

}  // namespace mmx
