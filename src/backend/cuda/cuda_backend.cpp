#include "backend/cuda/cuda_backend.h"

#include <algorithm>
#include <cstring>
#include <string>

#include "core/dtype.h"
#include "core/error.h"
#include "kernels/cuda_check.h"
#include "kernels/elementwise.h"

namespace mmx {

std::unique_ptr<Backend> create_cuda_backend(const BackendOptions& opts) {
  return std::make_unique<cuda::CudaBackend>(opts);
}

int cuda_device_count_impl() {
  int n = 0;
  if (cudaGetDeviceCount(&n) != cudaSuccess) {
    cudaGetLastError();  // no driver or no device: not an error for a count
    return 0;
  }
  int usable = 0;
  for (int d = 0; d < n; ++d) {
    cudaDeviceProp p{};
    if (cudaGetDeviceProperties(&p, d) == cudaSuccess && p.major >= 8) ++usable;
  }
  return usable;
}

namespace cuda {
namespace {

using bf16 = __nv_bfloat16;

// Seed of the random weights given to synthetic models.
constexpr uint64_t kSyntheticSeed = 0x6d696e696d6178ull;

bf16* act_ptr(Act a) { return static_cast<bf16*>(a.data); }
float* f32_ptr(Act a) { return static_cast<float*>(a.data); }
bool is_bf16(Act a) { return a.dtype == DType::BF16; }
bool is_f32(Act a) { return a.dtype == DType::F32; }

std::string shape_str(Act a) {
  return "[" + std::to_string(a.rows) + ", " + std::to_string(a.cols) + "]";
}

// A macro so the message is only built when the check fails (these run on every op).
#define CHECK_ACT(ok, op, what) \
  MMX_CHECK(ok, Code::InvalidArgument, std::string("cuda backend: ") + (op) + ": " + (what))

uint64_t initial_arena_bytes(uint64_t limit) {
  constexpr uint64_t kMiB = 1ull << 20;
  if (!limit) return 64 * kMiB;
  return std::clamp<uint64_t>(limit / 16, 16 * kMiB, 256 * kMiB);
}

}  // namespace

CudaBackend::CudaBackend(const BackendOptions& opts) : budget_(opts.memory_limit_bytes) {
  int count = 0;
  const cudaError_t err = cudaGetDeviceCount(&count);
  if (err != cudaSuccess) {
    cudaGetLastError();
    fail(Code::Device, std::string("cuda backend: no usable CUDA device (cudaGetDeviceCount: ") +
                           cudaGetErrorString(err) + ")");
  }
  MMX_CHECK(count > 0, Code::Device, "cuda backend: no CUDA device present");
  MMX_CHECK(opts.devices.size() <= 1, Code::Unsupported,
            "cuda backend: one device per backend; " + std::to_string(opts.devices.size()) +
                " devices were given");
  device_ = opts.devices.empty() ? 0 : opts.devices[0];
  MMX_CHECK(device_ >= 0 && device_ < count, Code::Device,
            "cuda backend: CUDA device " + std::to_string(device_) + " does not exist (" +
                std::to_string(count) + " visible)");
  cudaDeviceProp props{};
  MMX_CUDA(cudaGetDeviceProperties(&props, device_));
  MMX_CHECK(props.major >= 8, Code::Device,
            "cuda backend: CUDA device " + std::to_string(device_) + " (" + props.name +
                ") has compute capability " + std::to_string(props.major) + "." +
                std::to_string(props.minor) + "; 8.0 (Ampere) or newer is required");
  sm_count_ = props.multiProcessorCount;
  if (opts.weight_dtype.empty() || opts.weight_dtype == "int8")
    int8_ = true;
  else if (opts.weight_dtype == "bf16")
    int8_ = false;
  else
    fail(Code::InvalidArgument, "cuda backend: weight_dtype \"" + opts.weight_dtype +
                                    "\" is not \"int8\" or \"bf16\"");

  make_current();
  check_kernel_image(device_);
  MMX_CUDA(cudaStreamCreateWithFlags(&stream_, cudaStreamNonBlocking));
  constexpr size_t kLtWorkspace = size_t(32) << 20;  // what cuBLAS suggests for Hopper
  lt_workspace_ = DeviceBuffer(budget_, kLtWorkspace, "cuBLASLt workspace");
  lt_ = std::make_unique<LtGemm>(lt_workspace_.get(), kLtWorkspace);
  const uint64_t arena = initial_arena_bytes(opts.memory_limit_bytes);
  acts_ = std::make_unique<DeviceArena>(budget_, "step activations", arena);
  scratch_ = std::make_unique<DeviceArena>(budget_, "op scratch", arena);
  linear_ = std::make_unique<LinearRunner>(*lt_, budget_, sm_count_);
}

CudaBackend::~CudaBackend() {
  cudaSetDevice(device_);
  abort_capture();
  if (stream_) cudaStreamSynchronize(stream_);
  for (auto& [size, exec] : graphs_) cudaGraphExecDestroy(exec);
  // Everything that may hold device memory or use the stream goes before the stream.
  attention_.reset();
  weights_.reset();
  linear_.reset();
  scratch_.reset();
  acts_.reset();
  lt_.reset();
  lt_workspace_ = DeviceBuffer();
  if (logits_host_) cudaFreeHost(logits_host_);
  if (stream_) cudaStreamDestroy(stream_);
}

void CudaBackend::make_current() const {
  MMX_CUDA_CHECK(cudaSetDevice(device_), "cudaSetDevice");
}

void CudaBackend::require_prepared(const char* op) const {
  MMX_CHECK(model_ != nullptr, Code::State, std::string("cuda backend: ") + op + " before prepare()");
}

void CudaBackend::prepare(const Model& model) {
  make_current();
  const ModelConfig& c = model.config();
  MMX_CHECK(c.hidden > 0 && c.heads > 0 && c.head_dim > 0 && c.layers > 0 && c.vocab > 0 &&
                c.experts > 0 && c.top_k > 0 && c.top_k <= c.experts && c.intermediate > 0,
            Code::Unsupported, "cuda backend: unsupported model shape");
  MMX_CHECK(int64_t(model.weights().layers.size()) == c.layers, Code::Internal,
            "cuda backend: weights and config disagree on the layer count");
  attention_.reset();
  weights_ = std::make_unique<DeviceWeights>(budget_, stream_, int8_, kSyntheticSeed);
  weights_->load(model);
  AttentionEnv env;
  env.device = device_;
  env.stream = stream_;
  env.scratch = [this](size_t bytes) { return scratch_->alloc(bytes); };
  env.upload = [this](const void* src, size_t bytes, void* dst) { staging_.upload(src, bytes, dst, stream_); };
  attention_ = std::make_unique<CudaAttention>(c, env);
  config_ = c;
  model_ = &model;
}

// ---- sequence state: CudaAttention's ------------------------------------------------------------

std::unique_ptr<SeqState> CudaBackend::new_state() {
  require_prepared("new_state");
  make_current();
  return attention_->new_state();
}

std::unique_ptr<SeqState> CudaBackend::clone_state(const SeqState& s) {
  require_prepared("clone_state");
  make_current();
  return attention_->clone_state(s);
}

uint64_t CudaBackend::state_bytes(int64_t tokens) const {
  require_prepared("state_bytes");
  return attention_->state_bytes(tokens);
}

void CudaBackend::save_state(const SeqState& s, std::vector<uint8_t>* out) const {
  require_prepared("save_state");
  make_current();
  attention_->save_state(s, out);
}

std::unique_ptr<SeqState> CudaBackend::load_state(const uint8_t* data, size_t size) {
  require_prepared("load_state");
  make_current();
  return attention_->load_state(data, size);
}

// ---- step activations ---------------------------------------------------------------------------

void CudaBackend::begin_step() {
  make_current();
  abort_capture();
  if (!retired_.empty()) {
    MMX_CUDA(cudaStreamSynchronize(stream_));  // kernels queued earlier may use them
    retired_.clear();
  }
  acts_->reset(stream_);
  staging_.begin_step(stream_);
  low_.source = nullptr;
  warming_ = 0;
}

// ---- CUDA graphs of decode steps ----------------------------------------------------------------

bool CudaBackend::graph_eligible(const StepBatch& batch) const {
  if (!tuning_.decode_graphs || batch.seqs.empty()) return false;
  for (const StepSeq& s : batch.seqs)
    if (s.n_tokens != 1) return false;
  const int64_t T = int64_t(batch.seqs.size());
  // The MoE's per-expert GEMM path synchronises with the host; the others do not.
  const bool moe_async = T <= moe_gemv_max() || (int8_ && T <= tuning_.moe_mma_max_tokens);
  return T <= tuning_.graph_max_tokens && moe_async;
}

void CudaBackend::begin_layers(const StepBatch& batch) {
  require_prepared("begin_layers");
  make_current();
  abort_capture();
  if (!graph_eligible(batch)) return;
  const int64_t T = int64_t(batch.seqs.size());
  if (!warm_sizes_.count(T)) {
    warming_ = T;  // this one runs as usual and grows what the captured ones will use
    return;
  }
  attention_->reserve(batch);  // KV pages are allocated now, not inside the capture
  capture_lock_ = CudaAttention::hold_state_releases();
  const cudaError_t err = cudaStreamBeginCapture(stream_, cudaStreamCaptureModeRelaxed);
  if (err != cudaSuccess) {
    capture_lock_.unlock();
    MMX_CUDA_CHECK(err, "cudaStreamBeginCapture");
  }
  capturing_ = true;
  capture_size_ = T;
}

void CudaBackend::end_layers() {
  if (warming_) warm_sizes_.insert(warming_);
  warming_ = 0;
  if (!capturing_) return;
  make_current();
  capturing_ = false;
  cudaGraph_t graph = nullptr;
  const cudaError_t err = cudaStreamEndCapture(stream_, &graph);
  if (err != cudaSuccess || !graph) {
    capture_lock_.unlock();
    cudaGetLastError();
    fail(Code::Internal, std::string("cuda backend: capturing a decode step failed: ") + cudaGetErrorString(err));
  }
  if (!graphs_.count(capture_size_) && graphs_.size() >= 16) {  // bound what is kept
    for (auto& [size, old] : graphs_) cudaGraphExecDestroy(old);
    graphs_.clear();
  }
  cudaGraphExec_t& exec = graphs_[capture_size_];
  if (exec) {
    cudaGraphExecUpdateResultInfo info{};
    if (cudaGraphExecUpdate(exec, graph, &info) == cudaSuccess) {
      ++graph_stats_.updated;
    } else {  // another shape (e.g. a different kernel choice): instantiate anew
      cudaGetLastError();
      cudaGraphExecDestroy(exec);
      exec = nullptr;
    }
  }
  cudaError_t launch = cudaSuccess;
  if (!exec) {
    launch = cudaGraphInstantiate(&exec, graph, 0);
    if (launch == cudaSuccess) ++graph_stats_.instantiated;
    else exec = nullptr;
  }
  cudaGraphDestroy(graph);
  if (launch == cudaSuccess) launch = cudaGraphLaunch(exec, stream_);
  capture_lock_.unlock();
  if (!exec) graphs_.erase(capture_size_);
  MMX_CUDA_CHECK(launch, "launching a decode step's CUDA graph");
  ++graph_stats_.launched;
}

void CudaBackend::abort_capture() {
  if (!capturing_) return;
  capturing_ = false;
  cudaGraph_t graph = nullptr;
  cudaStreamEndCapture(stream_, &graph);
  if (graph) cudaGraphDestroy(graph);
  cudaGetLastError();
  if (capture_lock_.owns_lock()) capture_lock_.unlock();
}

Act CudaBackend::alloc(int64_t rows, int64_t cols) {
  MMX_CHECK(rows >= 0 && cols >= 0, Code::InvalidArgument,
            "cuda backend: alloc of negative shape [" + std::to_string(rows) + ", " +
                std::to_string(cols) + "]");
  MMX_CHECK(cols == 0 || rows <= (int64_t(1) << 40) / cols, Code::OutOfMemory,
            "cuda backend: activation [" + std::to_string(rows) + ", " + std::to_string(cols) +
                "] is too large");
  make_current();
  return Act{acts_->alloc(size_t(rows * cols) * sizeof(bf16)), rows, cols, DType::BF16};
}

Act CudaBackend::alloc_residual(int64_t rows, int64_t cols) {
  Act a = alloc(rows, 2 * cols);  // the same checks, and fp32 takes twice the bytes
  a.cols = cols;
  a.dtype = DType::F32;
  return a;
}

void CudaBackend::upload(const float* src, Act dst) {
  make_current();
  overwritten(dst);
  const size_t n = size_t(dst.rows * dst.cols);
  if (is_f32(dst)) {
    MMX_CUDA(cudaMemcpyAsync(dst.data, src, n * 4, cudaMemcpyHostToDevice, stream_));
    MMX_CUDA(cudaStreamSynchronize(stream_));
    return;
  }
  std::vector<uint16_t> h(n);
  for (size_t i = 0; i < n; ++i) h[i] = mmx::f32_to_bf16(src[i]);
  MMX_CUDA(cudaMemcpyAsync(dst.data, h.data(), n * 2, cudaMemcpyHostToDevice, stream_));
  MMX_CUDA(cudaStreamSynchronize(stream_));  // `h` dies here
}

void CudaBackend::download(Act src, float* dst) {
  make_current();
  const size_t n = size_t(src.rows * src.cols);
  if (is_f32(src)) {
    MMX_CUDA(cudaMemcpyAsync(dst, src.data, n * 4, cudaMemcpyDeviceToHost, stream_));
    MMX_CUDA(cudaStreamSynchronize(stream_));
    return;
  }
  std::vector<uint16_t> h(n);
  MMX_CUDA(cudaMemcpyAsync(h.data(), src.data, n * 2, cudaMemcpyDeviceToHost, stream_));
  MMX_CUDA(cudaStreamSynchronize(stream_));
  for (size_t i = 0; i < n; ++i) dst[i] = mmx::bf16_to_f32(h[i]);
}

// ---- the bf16 copy of an fp32 activation -------------------------------------------------------

bf16* CudaBackend::bf16_copy_buffer(int64_t rows, int64_t cols) {
  const size_t bytes = size_t(rows * cols) * sizeof(bf16);
  if (low_.buffer.size() < bytes) {
    if (capturing_)
      retired_.push_back(std::move(low_.buffer));  // recorded kernels read it; freed next step
    else
      MMX_CUDA(cudaStreamSynchronize(stream_));  // kernels queued earlier may read the old one
    low_.buffer = DeviceBuffer();
    low_.buffer = DeviceBuffer(budget_, bytes, "bf16 copy of the residual stream");
  }
  return static_cast<bf16*>(low_.buffer.get());
}

const bf16* CudaBackend::bf16_input(Act x) {
  if (is_bf16(x)) return act_ptr(x);
  if (low_.source != x.data || low_.rows != x.rows || low_.cols != x.cols) {
    bf16* dst = bf16_copy_buffer(x.rows, x.cols);
    f32_to_bf16(f32_ptr(x), dst, x.rows * x.cols, stream_);
    low_.source = x.data;
    low_.rows = x.rows;
    low_.cols = x.cols;
  }
  return static_cast<const bf16*>(low_.buffer.get());
}

void CudaBackend::overwritten(Act a) {
  if (low_.source == a.data) low_.source = nullptr;
}

// ---- dense and element-wise ops -----------------------------------------------------------------

void CudaBackend::embed(const std::vector<int32_t>& tokens, Act out) {
  require_prepared("embed");
  make_current();
  const int64_t H = config_.hidden, V = config_.vocab, T = int64_t(tokens.size());
  CHECK_ACT(out.rows == T && out.cols == H, "embed",
            "output " + shape_str(out) + " does not fit " + std::to_string(T) + " tokens");
  for (int32_t id : tokens)
    MMX_CHECK(id >= 0 && id < V, Code::InvalidArgument,
              "cuda backend: embed: token id " + std::to_string(id) + " out of range [0, " +
                  std::to_string(V) + ")");
  overwritten(out);
  if (T == 0) return;
  scratch_->reset(stream_);
  auto* ids = static_cast<int32_t*>(scratch_->alloc(size_t(T) * 4));
  staging_.upload(tokens.data(), size_t(T) * 4, ids, stream_);
  if (is_f32(out))
    embed_rows(ids, T, weights_->embed(), V, H, f32_ptr(out), stream_);
  else
    embed_rows(ids, T, weights_->embed(), V, H, act_ptr(out), stream_);
}

void CudaBackend::rms_norm(Act x, const WeightRef& w, double eps, Act out) {
  require_prepared("rms_norm");
  make_current();
  CHECK_ACT(x.cols == w.numel() && out.rows == x.rows && out.cols == x.cols, "rms_norm",
            "input " + shape_str(x) + ", output " + shape_str(out) + ", weight '" + w.name +
                "' of " + std::to_string(w.numel()) + " values");
  CHECK_ACT(x.dtype == out.dtype, "rms_norm", "input and output differ in element type");
  if (is_bf16(x)) {
    overwritten(out);
    cuda::rms_norm(act_ptr(x), weights_->vector_f32(w), float(eps), act_ptr(out), x.rows, x.cols,
                   stream_);
    return;
  }
  // The residual stream: the bf16 copy the next matrix products read is written alongside.
  bf16* low = bf16_copy_buffer(x.rows, x.cols);
  cuda::rms_norm(f32_ptr(x), weights_->vector_f32(w), float(eps), f32_ptr(out), low, x.rows,
                 x.cols, stream_);
  low_.source = out.data;
  low_.rows = out.rows;
  low_.cols = out.cols;
}

void CudaBackend::linear(Act x, const WeightRef& w, Act out) {
  require_prepared("linear");
  make_current();
  CHECK_ACT(x.cols == w.cols && out.rows == x.rows && out.cols == w.rows && x.data != out.data,
            "linear",
            "input " + shape_str(x) + " and output " + shape_str(out) + " do not fit weight '" +
                w.name + "' [" + std::to_string(w.rows) + ", " + std::to_string(w.cols) +
                "] (input and output must be distinct)");
  CHECK_ACT(is_bf16(out), "linear", "the output must be a bf16 activation (alloc())");
  const DeviceMatrix& m = weights_->linear(w);
  const bf16* in = bf16_input(x);
  overwritten(out);
  linear_->run(in, x.rows, m, act_ptr(out), stream_);
}

void CudaBackend::silu(Act x) {
  make_current();
  CHECK_ACT(is_bf16(x), "silu", "the input must be a bf16 activation (alloc())");
  silu_inplace(act_ptr(x), x.rows * x.cols, stream_);
}

void CudaBackend::sigmoid_mul(Act gate, Act x) {
  make_current();
  CHECK_ACT(gate.rows == x.rows && gate.cols == x.cols, "sigmoid_mul",
            "gate " + shape_str(gate) + " and input " + shape_str(x) + " differ");
  CHECK_ACT(is_bf16(gate) && is_bf16(x), "sigmoid_mul", "the operands must be bf16 activations (alloc())");
  cuda::sigmoid_mul(act_ptr(gate), act_ptr(x), x.rows * x.cols, stream_);
}

void CudaBackend::scale_add(Act h, double alpha, Act a, double beta, Act out) {
  make_current();
  CHECK_ACT(h.rows == a.rows && h.cols == a.cols && out.rows == h.rows && out.cols == h.cols,
            "scale_add",
            "shapes " + shape_str(h) + ", " + shape_str(a) + ", " + shape_str(out) + " differ");
  CHECK_ACT(is_bf16(a) && h.dtype == out.dtype, "scale_add",
            "a must be a bf16 activation and h and the output of one element type");
  overwritten(out);
  if (is_f32(h))
    cuda::scale_add(f32_ptr(h), float(alpha), act_ptr(a), float(beta), f32_ptr(out),
                    h.rows * h.cols, stream_);
  else
    cuda::scale_add(act_ptr(h), float(alpha), act_ptr(a), float(beta), act_ptr(out),
                    h.rows * h.cols, stream_);
}

// ---- attention: CudaAttention's -----------------------------------------------------------------

void CudaBackend::lightning_attention(int layer, Act qkv, const StepBatch& batch, Act out) {
  require_prepared("lightning_attention");
  make_current();
  const int64_t T = batch.total_tokens(), D = config_.heads * config_.head_dim;
  CHECK_ACT(qkv.rows == T && qkv.cols == 3 * D && out.rows == T && out.cols == D,
            "lightning_attention",
            "qkv " + shape_str(qkv) + " and output " + shape_str(out) + " do not fit " +
                std::to_string(T) + " tokens");
  CHECK_ACT(is_bf16(qkv) && is_bf16(out), "lightning_attention", "activations must be bf16 (alloc())");
  scratch_->reset(stream_);
  attention_->lightning(layer, qkv.data, batch, out.data);
}

void CudaBackend::softmax_attention(int layer, Act q, Act k, Act v, const StepBatch& batch,
                                    Act out) {
  require_prepared("softmax_attention");
  make_current();
  const int64_t T = batch.total_tokens(), D = config_.heads * config_.head_dim;
  const int64_t Dkv = config_.kv_heads * config_.head_dim;
  CHECK_ACT(q.rows == T && q.cols == D && k.rows == T && k.cols == Dkv && v.rows == T &&
                v.cols == Dkv && out.rows == T && out.cols == D,
            "softmax_attention",
            "q " + shape_str(q) + ", k " + shape_str(k) + ", v " + shape_str(v) + ", output " +
                shape_str(out) + " do not fit " + std::to_string(T) + " tokens");
  CHECK_ACT(is_bf16(q) && is_bf16(k) && is_bf16(v) && is_bf16(out), "softmax_attention",
            "activations must be bf16 (alloc())");
  scratch_->reset(stream_);
  attention_->softmax(layer, q.data, k.data, v.data, batch, out.data);
}

// ---- logits -------------------------------------------------------------------------------------

void CudaBackend::logits(Act x, const std::vector<int32_t>& rows, float* out) {
  require_prepared("logits");
  make_current();
  const int64_t H = config_.hidden, V = config_.vocab, R = int64_t(rows.size());
  CHECK_ACT(x.cols == H, "logits", "input " + shape_str(x) + " is not [T, hidden]");
  for (int32_t r : rows)
    CHECK_ACT(r >= 0 && r < x.rows, "logits",
              "row " + std::to_string(r) + " outside the " + std::to_string(x.rows) + " rows");
  if (R == 0) return;
  const bf16* xb = bf16_input(x);
  scratch_->reset(stream_);
  auto* rows_dev = static_cast<int32_t*>(scratch_->alloc(size_t(R) * 4));
  staging_.upload(rows.data(), size_t(R) * 4, rows_dev, stream_);
  // fp32 logits are V floats a row: bound the device buffer to ~256 MiB per pass.
  const int64_t chunk = std::clamp<int64_t>((int64_t(256) << 20) / (V * 4), 1, R);
  auto* xr = static_cast<bf16*>(scratch_->alloc(size_t(chunk * H) * 2));
  auto* lg = static_cast<float*>(scratch_->alloc(size_t(chunk * V) * 4));
  for (int64_t r0 = 0; r0 < R; r0 += chunk) {
    const int64_t nr = std::min(chunk, R - r0);
    gather_rows(xb, x.rows, rows_dev + r0, nr, H, xr, stream_);
    lt_->matmul(xr, H, weights_->lm_head(), H, lg, V, true, nr, V, H, stream_);
    const size_t bytes = size_t(nr * V) * 4;
    if (bytes <= kLogitsBounceBytes) {
      // A copy into pageable memory pays a fixed cost of about 0.25 ms (a batch-1 decode
      // step's logits: 0.8 MB); through page-locked memory and a host memcpy it is ~0.1 ms.
      // For large copies the driver's own pipelined staging is as fast.
      if (!logits_host_) MMX_CUDA(cudaMallocHost(&logits_host_, kLogitsBounceBytes));
      MMX_CUDA(cudaMemcpyAsync(logits_host_, lg, bytes, cudaMemcpyDeviceToHost, stream_));
      MMX_CUDA(cudaStreamSynchronize(stream_));
      std::memcpy(out + r0 * V, logits_host_, bytes);
    } else {
      MMX_CUDA(cudaMemcpyAsync(out + r0 * V, lg, bytes, cudaMemcpyDeviceToHost, stream_));
      MMX_CUDA(cudaStreamSynchronize(stream_));
    }
  }
}

int64_t CudaBackend::layer_index(const LayerWeights& lw) const {
  const auto& layers = model_->weights().layers;
  for (size_t i = 0; i < layers.size(); ++i)
    if (&layers[i] == &lw) return int64_t(i);
  fail(Code::InvalidArgument, "cuda backend: moe: layer weights are not the prepared model's");
}

}  // namespace cuda
}  // namespace mmx
