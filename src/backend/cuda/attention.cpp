// CudaAttention: device sequence states and the attention ops' host side (argument checks,
// per-call descriptors, KV page management). The kernels are in kernels/lightning.cu,
// kernels/rope.cu and kernels/flash_attention.cu.
//
// A state holds one fp32 allocation with every lightning layer's S, and for the softmax
// layers a block table of KV pages shared by all of them (kernels/paged_kv.h): a page covers
// kv_page_tokens positions of every softmax layer. The device copy of the block table has a
// fixed capacity (max_position_embeddings / kv_page_tokens entries) so it never moves.
#include "backend/cuda/attention.h"

#include <algorithm>
#include <array>
#include <cmath>
#include <cstring>
#include <mutex>
#include <set>
#include <string>

#include "backend/state_format.h"
#include "core/dtype.h"
#include "core/error.h"
#include "kernels/cuda_check.h"
#include "kernels/flash_attention.h"
#include "kernels/lightning.h"
#include "kernels/rope.h"

namespace mmx::cuda {
namespace {

// Makes `device` current for a scope and restores the caller's device afterwards.
class DeviceScope {
 public:
  explicit DeviceScope(int device) : device_(device) {
    MMX_CUDA(cudaGetDevice(&previous_));
    if (previous_ != device_) MMX_CUDA(cudaSetDevice(device_));
  }
  ~DeviceScope() {
    if (previous_ != device_) cudaSetDevice(previous_);
  }
  DeviceScope(const DeviceScope&) = delete;
  DeviceScope& operator=(const DeviceScope&) = delete;

 private:
  int device_ = 0, previous_ = 0;
};

void* device_alloc(size_t bytes, const char* what) {
  void* p = nullptr;
  const cudaError_t err = cudaMalloc(&p, bytes);
  if (err != cudaSuccess) {
    cudaGetLastError();  // clear it: running out of memory does not poison the device
    fail(err == cudaErrorMemoryAllocation ? Code::OutOfMemory : Code::Device,
         std::string("cuda attention: cannot allocate ") + std::to_string(bytes) + " bytes for " + what + ": " +
             cudaGetErrorString(err));
  }
  return p;
}

// KV pages: device slabs cut into equal pages and recycled through a free list. Shared by
// the states, which may outlive their CudaAttention; thread-safe because a state may be
// released on another thread than the one running the ops.
class PagePool {
 public:
  PagePool(int device, size_t page_bytes)
      : device_(device),
        page_bytes_(page_bytes),
        pages_per_slab_(std::clamp<size_t>((size_t(64) << 20) / page_bytes, 1, 256)) {}
  ~PagePool() {
    for (void* s : slabs_) cudaFree(s);
  }
  PagePool(const PagePool&) = delete;
  PagePool& operator=(const PagePool&) = delete;

  void* acquire() {
    std::lock_guard<std::mutex> lock(mu_);
    if (free_.empty()) {
      DeviceScope scope(device_);
      char* slab = static_cast<char*>(device_alloc(page_bytes_ * pages_per_slab_, "KV cache pages"));
      slabs_.push_back(slab);
      for (size_t i = pages_per_slab_; i-- > 0;) free_.push_back(slab + i * page_bytes_);
    }
    void* p = free_.back();
    free_.pop_back();
    return p;
  }
  void release(void* page) noexcept {
    std::lock_guard<std::mutex> lock(mu_);
    free_.push_back(page);
  }

 private:
  std::mutex mu_;
  int device_;
  size_t page_bytes_, pages_per_slab_;
  std::vector<void*> slabs_, free_;
};

// Carves one scratch allocation into 256-byte aligned parts.
class ScratchPlan {
 public:
  size_t add(size_t bytes) {
    const size_t at = total_;
    total_ += (bytes + 255) & ~size_t(255);
    return at;
  }
  size_t total() const { return total_; }

 private:
  size_t total_ = 0;
};

int64_t ceil_div(int64_t a, int64_t b) { return (a + b - 1) / b; }

// Held while a step is captured into a CUDA graph; a state's destructor takes it around its
// device-wide synchronisation, which must not run into another thread's capture.
std::mutex& capture_mutex() {
  static std::mutex mu;
  return mu;
}

uint64_t next_owner_id() {
  static std::mutex mu;
  static uint64_t id = 0;
  std::lock_guard<std::mutex> lock(mu);
  return ++id;
}

// One sequence's state on the device (see the top of this file).
struct CudaSeqState final : SeqState {
  uint64_t owner = 0;  // the CudaAttention that made it
  int device = 0;
  float* lightning = nullptr;  // [lightning layers][heads][d][d] fp32
  void** table = nullptr;      // device block table (fixed capacity)
  std::vector<void*> pages;    // host copy of the block table
  size_t table_filled = 0;     // entries of `pages` already copied to `table`
  std::vector<int64_t> kv_len;  // positions written per softmax layer (by slot)
  std::shared_ptr<PagePool> pool;

  CudaSeqState() = default;
  CudaSeqState(const CudaSeqState&) = delete;
  CudaSeqState& operator=(const CudaSeqState&) = delete;
  ~CudaSeqState() override {
    int previous = 0;
    if (cudaGetDevice(&previous) != cudaSuccess) previous = device;
    if (previous != device) cudaSetDevice(device);
    // Kernels queued earlier may still read this state; its pages return to the pool only
    // once the device is done with them.
    std::lock_guard<std::mutex> no_capture(capture_mutex());
    cudaDeviceSynchronize();
    cudaFree(lightning);
    cudaFree(table);
    for (void* p : pages) pool->release(p);
    if (previous != device) cudaSetDevice(previous);
  }
};

}  // namespace

struct CudaAttention::Impl {
  ModelConfig config;
  AttentionEnv env;
  uint64_t id = next_owner_id();
  int page_tokens = 0;
  int64_t nh = 0, nkv = 0, d = 0;
  std::vector<int> slot;  // per global layer: its index among the layers of its kind
  int n_lightning = 0, n_softmax = 0;
  size_t page_bytes = 0;
  int64_t max_pages = 0;
  int num_sms = 1;
  std::shared_ptr<PagePool> pool;
  float* decay_pow = nullptr;  // [layers][heads][kDecayPowCount]
  float* inv_freq = nullptr;   // [rotary_dim / 2]

  Impl() = default;
  Impl(const Impl&) = delete;
  Impl& operator=(const Impl&) = delete;
  ~Impl() {
    int previous = 0;
    if (cudaGetDevice(&previous) != cudaSuccess) previous = env.device;
    cudaSetDevice(env.device);
    if (env.stream) cudaStreamSynchronize(env.stream);  // queued kernels read the tables
    cudaFree(decay_pow);
    cudaFree(inv_freq);
    cudaSetDevice(previous);
  }

  size_t lightning_bytes() const { return size_t(n_lightning) * size_t(nh * d * d) * sizeof(float); }
  size_t table_bytes() const { return n_softmax > 0 ? size_t(max_pages) * sizeof(void*) : 0; }

  CudaSeqState& checked(const SeqState& s, const char* op) const {
    auto* st = dynamic_cast<const CudaSeqState*>(&s);
    MMX_CHECK(st != nullptr && st->owner == id, Code::InvalidArgument,
              std::string("cuda attention: ") + op + ": a sequence state this backend did not create");
    return const_cast<CudaSeqState&>(*st);
  }

  std::vector<CudaSeqState*> batch_states(const StepBatch& batch, const char* op) const {
    std::vector<CudaSeqState*> states;
    std::set<const SeqState*> seen;
    for (const StepSeq& s : batch.seqs) {
      MMX_CHECK(s.state != nullptr, Code::InvalidArgument, std::string("cuda attention: ") + op + ": null state");
      MMX_CHECK(s.n_tokens >= 0 && s.start_pos >= 0, Code::InvalidArgument,
                std::string("cuda attention: ") + op + ": negative token count or position");
      MMX_CHECK(seen.insert(s.state).second, Code::InvalidArgument,
                std::string("cuda attention: ") + op + ": the same sequence appears twice in one step");
      states.push_back(&checked(*s.state, op));
    }
    return states;
  }

  void check_layer(int layer, LayerKind kind, const char* op) const {
    MMX_CHECK(layer >= 0 && layer < config.layers && config.layer_kinds[size_t(layer)] == kind,
              Code::InvalidArgument,
              std::string("cuda attention: ") + op + ": layer " + std::to_string(layer) + " is not a " +
                  (kind == LayerKind::Lightning ? "lightning" : "softmax") + " layer of this model");
  }

  // Grows the state's pages to cover `positions` and copies new block-table entries.
  void ensure_pages(CudaSeqState& st, int64_t positions) {
    MMX_CHECK(positions <= config.max_positions, Code::Capacity,
              "cuda attention: a sequence of " + std::to_string(positions) +
                  " tokens exceeds the model's context limit of " + std::to_string(config.max_positions));
    grow_pages(st, ceil_div(positions, page_tokens));
  }
  void grow_pages(CudaSeqState& st, int64_t need) {
    MMX_CHECK(need <= max_pages, Code::Internal, "cuda attention: block table overflow");
    while (int64_t(st.pages.size()) < need) st.pages.push_back(pool->acquire());
    if (st.table_filled < st.pages.size()) {
      env.upload(st.pages.data() + st.table_filled, (st.pages.size() - st.table_filled) * sizeof(void*),
                 st.table + st.table_filled);
      st.table_filled = st.pages.size();
    }
  }

  std::unique_ptr<CudaSeqState> make_state() {
    auto st = std::make_unique<CudaSeqState>();
    st->owner = id;
    st->device = env.device;
    st->pool = pool;
    st->kv_len.assign(size_t(n_softmax), 0);
    if (n_lightning > 0) {
      st->lightning = static_cast<float*>(device_alloc(lightning_bytes(), "lightning states"));
      MMX_CUDA(cudaMemsetAsync(st->lightning, 0, lightning_bytes(), env.stream));
    }
    if (n_softmax > 0) st->table = static_cast<void**>(device_alloc(table_bytes(), "KV block table"));
    return st;
  }

  void* scratch(size_t bytes) {
    void* p = env.scratch(bytes);
    MMX_CHECK(p != nullptr, Code::Internal, "cuda attention: the backend returned no scratch memory");
    return p;
  }
};

CudaAttention::CudaAttention(const ModelConfig& config, AttentionEnv env, int kv_page_tokens)
    : impl_(std::make_unique<Impl>()) {
  Impl& m = *impl_;
  m.config = config;
  m.env = std::move(env);
  m.page_tokens = kv_page_tokens;
  m.nh = config.heads;
  m.nkv = config.kv_heads;
  m.d = config.head_dim;
  MMX_CHECK(m.env.scratch != nullptr && m.env.upload != nullptr, Code::InvalidArgument,
            "cuda attention: no scratch allocator or upload function");
  MMX_CHECK(kv_page_tokens > 0, Code::InvalidArgument, "cuda attention: kv_page_tokens must be positive");
  MMX_CHECK(int64_t(config.layer_kinds.size()) == config.layers && m.nh > 0, Code::InvalidArgument,
            "cuda attention: inconsistent model config");
  for (LayerKind k : config.layer_kinds) m.slot.push_back(k == LayerKind::Lightning ? m.n_lightning++ : m.n_softmax++);
  if (m.n_lightning > 0)
    MMX_CHECK(lightning_head_dim_supported(m.d), Code::Unsupported,
              "cuda attention: lightning layers with head_dim " + std::to_string(m.d) +
                  " are not supported (16, 32, 64 or 128)");
  if (m.n_softmax > 0) {
    MMX_CHECK(flash_head_dim_supported(m.d), Code::Unsupported,
              "cuda attention: softmax layers with head_dim " + std::to_string(m.d) +
                  " are not supported (16, 32, 64 or 128)");
    MMX_CHECK(m.nkv > 0 && m.nh % m.nkv == 0, Code::InvalidArgument,
              "cuda attention: heads must be a multiple of kv_heads");
    MMX_CHECK(config.rotary_dim >= 0 && config.rotary_dim % 2 == 0 && config.rotary_dim <= m.d,
              Code::InvalidArgument, "cuda attention: rotary_dim must be even and at most head_dim");
    MMX_CHECK(config.max_positions > 0 && config.max_positions < (int64_t(1) << 31), Code::InvalidArgument,
              "cuda attention: max_position_embeddings must be in [1, 2^31)");
    m.page_bytes = size_t(m.n_softmax) * 2 * size_t(m.nkv * kv_page_tokens * m.d) * sizeof(uint16_t);
    m.max_pages = ceil_div(config.max_positions, kv_page_tokens);
  }

  DeviceScope scope(m.env.device);
  MMX_CUDA(cudaDeviceGetAttribute(&m.num_sms, cudaDevAttrMultiProcessorCount, m.env.device));
  if (m.n_softmax > 0) m.pool = std::make_shared<PagePool>(m.env.device, m.page_bytes);

  // lambda^n per (layer, head), rounded once from double; the kernels never divide by a power.
  std::vector<float> pw(size_t(config.layers * m.nh * kDecayPowCount));
  for (int64_t i = 0; i < config.layers; ++i)
    for (int64_t h = 0; h < m.nh; ++h) {
      const double lambda = config.lightning_decay(i, h);
      for (int n = 0; n < kDecayPowCount; ++n) pw[size_t((i * m.nh + h) * kDecayPowCount + n)] = float(std::pow(lambda, n));
    }
  // RoPE inverse frequencies exactly as the CPU reference (and transformers) form them, in fp32.
  std::vector<float> inv(size_t(std::max<int64_t>(config.rotary_dim / 2, 1)), 0.0f);
  for (int64_t j = 0; j < config.rotary_dim / 2; ++j) {
    const float exponent = float(2 * j) / float(config.rotary_dim);
    inv[size_t(j)] = 1.0f / std::pow(float(config.rope_theta), exponent);
  }
  m.decay_pow = static_cast<float*>(device_alloc(pw.size() * sizeof(float), "lightning decay table"));
  m.inv_freq = static_cast<float*>(device_alloc(inv.size() * sizeof(float), "RoPE frequencies"));
  MMX_CUDA(cudaMemcpyAsync(m.decay_pow, pw.data(), pw.size() * sizeof(float), cudaMemcpyHostToDevice, m.env.stream));
  MMX_CUDA(cudaMemcpyAsync(m.inv_freq, inv.data(), inv.size() * sizeof(float), cudaMemcpyHostToDevice, m.env.stream));
  MMX_CUDA(cudaStreamSynchronize(m.env.stream));  // the host vectors die here
}

CudaAttention::~CudaAttention() = default;

std::unique_ptr<SeqState> CudaAttention::new_state() {
  DeviceScope scope(impl_->env.device);
  return impl_->make_state();
}

std::unique_ptr<SeqState> CudaAttention::clone_state(const SeqState& s) {
  Impl& m = *impl_;
  DeviceScope scope(m.env.device);
  const CudaSeqState& src = m.checked(s, "clone_state");
  auto st = m.make_state();
  st->tokens = src.tokens;
  st->kv_len = src.kv_len;
  if (m.n_lightning > 0)
    MMX_CUDA(cudaMemcpyAsync(st->lightning, src.lightning, m.lightning_bytes(), cudaMemcpyDeviceToDevice, m.env.stream));
  if (!src.pages.empty()) {
    m.grow_pages(*st, int64_t(src.pages.size()));
    for (size_t i = 0; i < src.pages.size(); ++i)
      MMX_CUDA(cudaMemcpyAsync(st->pages[i], src.pages[i], m.page_bytes, cudaMemcpyDeviceToDevice, m.env.stream));
  }
  return st;
}

uint64_t CudaAttention::state_bytes(int64_t tokens) const {
  const Impl& m = *impl_;
  uint64_t bytes = m.lightning_bytes() + m.table_bytes();
  if (m.n_softmax > 0) bytes += uint64_t(ceil_div(std::max<int64_t>(tokens, 0), m.page_tokens)) * m.page_bytes;
  return bytes;
}

void CudaAttention::save_state(const SeqState& s, std::vector<uint8_t>* out) const {
  Impl& m = *impl_;
  DeviceScope scope(m.env.device);
  const CudaSeqState& st = m.checked(s, "save_state");
  for (int64_t len : st.kv_len)
    MMX_CHECK(len == st.tokens, Code::State,
              "cuda attention: save_state: a KV cache holds " + std::to_string(len) + " tokens but the state " +
                  std::to_string(st.tokens) + " (saved mid-step?)");
  const StateLayout layout = begin_state_image(m.config, st.tokens, out);
  uint8_t* image = out->data();
  // Device -> pageable host copies return once the data has arrived.
  for (int64_t i = 0; i < m.config.layers; ++i)
    if (m.config.layer_kinds[size_t(i)] == LayerKind::Lightning)
      MMX_CUDA(cudaMemcpyAsync(image + layout.layer_offset[size_t(i)],
                               st.lightning + size_t(m.slot[size_t(i)]) * size_t(m.nh * m.d * m.d),
                               layout.lightning_bytes, cudaMemcpyDeviceToHost, m.env.stream));
  std::vector<uint16_t> page(m.page_bytes / sizeof(uint16_t));
  const int64_t P = m.page_tokens, row = m.nkv * m.d, per_layer = 2 * m.nkv * P * m.d;
  for (int64_t p = 0; m.n_softmax > 0 && p * P < st.tokens; ++p) {
    MMX_CUDA(cudaMemcpyAsync(page.data(), st.pages[size_t(p)], m.page_bytes, cudaMemcpyDeviceToHost, m.env.stream));
    MMX_CUDA(cudaStreamSynchronize(m.env.stream));
    for (int64_t i = 0; i < m.config.layers; ++i) {
      if (m.config.layer_kinds[size_t(i)] != LayerKind::Softmax) continue;
      const uint16_t* keys = page.data() + m.slot[size_t(i)] * per_layer;
      const uint16_t* values = keys + m.nkv * P * m.d;
      auto* k_out = reinterpret_cast<float*>(image + layout.k_offset(i));
      auto* v_out = reinterpret_cast<float*>(image + layout.v_offset(i));
      for (int64_t t = p * P; t < std::min(st.tokens, (p + 1) * P); ++t)
        for (int64_t g = 0; g < m.nkv; ++g)
          for (int64_t c = 0; c < m.d; ++c) {
            const int64_t at = (g * P + t - p * P) * m.d + c;
            k_out[t * row + g * m.d + c] = bf16_to_f32(keys[at]);
            v_out[t * row + g * m.d + c] = bf16_to_f32(values[at]);
          }
    }
  }
  MMX_CUDA(cudaStreamSynchronize(m.env.stream));
}

std::unique_ptr<SeqState> CudaAttention::load_state(const uint8_t* data, size_t size) {
  Impl& m = *impl_;
  DeviceScope scope(m.env.device);
  const StateLayout layout = parse_state_image(m.config, data, size);
  check_state_payload_finite(layout, data);
  auto st = m.make_state();
  st->tokens = layout.tokens;
  st->kv_len.assign(size_t(m.n_softmax), layout.tokens);
  // Pageable host -> device copies return once the source has been staged.
  for (int64_t i = 0; i < m.config.layers; ++i)
    if (m.config.layer_kinds[size_t(i)] == LayerKind::Lightning)
      MMX_CUDA(cudaMemcpyAsync(st->lightning + size_t(m.slot[size_t(i)]) * size_t(m.nh * m.d * m.d),
                               data + layout.layer_offset[size_t(i)], layout.lightning_bytes,
                               cudaMemcpyHostToDevice, m.env.stream));
  if (m.n_softmax > 0 && layout.tokens > 0) {
    m.ensure_pages(*st, layout.tokens);
    std::vector<uint16_t> page(m.page_bytes / sizeof(uint16_t));
    const int64_t P = m.page_tokens, row = m.nkv * m.d, per_layer = 2 * m.nkv * P * m.d;
    for (size_t p = 0; p < st->pages.size(); ++p) {
      std::fill(page.begin(), page.end(), uint16_t(0));
      for (int64_t i = 0; i < m.config.layers; ++i) {
        if (m.config.layer_kinds[size_t(i)] != LayerKind::Softmax) continue;
        uint16_t* keys = page.data() + m.slot[size_t(i)] * per_layer;
        uint16_t* values = keys + m.nkv * P * m.d;
        float kf, vf;
        for (int64_t t = int64_t(p) * P; t < std::min(layout.tokens, int64_t(p + 1) * P); ++t)
          for (int64_t g = 0; g < m.nkv; ++g)
            for (int64_t c = 0; c < m.d; ++c) {
              const int64_t at = (g * P + t - int64_t(p) * P) * m.d + c;
              std::memcpy(&kf, data + layout.k_offset(i) + size_t(t * row + g * m.d + c) * 4, 4);
              std::memcpy(&vf, data + layout.v_offset(i) + size_t(t * row + g * m.d + c) * 4, 4);
              keys[at] = f32_to_bf16(kf);
              values[at] = f32_to_bf16(vf);
            }
      }
      MMX_CUDA(cudaMemcpyAsync(st->pages[p], page.data(), m.page_bytes, cudaMemcpyHostToDevice, m.env.stream));
    }
  }
  MMX_CUDA(cudaStreamSynchronize(m.env.stream));
  return st;
}

void CudaAttention::reserve(const StepBatch& batch) {
  Impl& m = *impl_;
  if (m.n_softmax == 0) return;
  DeviceScope scope(m.env.device);
  const std::vector<CudaSeqState*> states = m.batch_states(batch, "reserve");
  for (size_t i = 0; i < states.size(); ++i)
    if (batch.seqs[i].n_tokens > 0) m.ensure_pages(*states[i], batch.seqs[i].start_pos + batch.seqs[i].n_tokens);
}

std::unique_lock<std::mutex> CudaAttention::hold_state_releases() {
  return std::unique_lock<std::mutex>(capture_mutex());
}

void CudaAttention::lightning(int layer, const void* qkv, const StepBatch& batch, void* out) {
  Impl& m = *impl_;
  m.check_layer(layer, LayerKind::Lightning, "lightning");
  DeviceScope scope(m.env.device);
  const std::vector<CudaSeqState*> states = m.batch_states(batch, "lightning");
  const size_t layer_floats = size_t(m.nh * m.d * m.d);
  // Prefill descriptors first, then the decode ones, in one upload.
  std::vector<LightningSeqDesc> prefill, decode;
  int64_t row = 0;
  for (size_t i = 0; i < states.size(); ++i) {
    const int64_t n = batch.seqs[i].n_tokens;
    if (n > 0) {
      LightningSeqDesc desc;
      desc.row = row;
      desc.n_tokens = n;
      desc.state = states[i]->lightning + size_t(m.slot[size_t(layer)]) * layer_floats;
      (n == 1 ? decode : prefill).push_back(desc);
    }
    row += n;
  }
  if (row == 0) return;
  std::vector<LightningSeqDesc> descs(prefill);
  descs.insert(descs.end(), decode.begin(), decode.end());
  auto* dev = static_cast<LightningSeqDesc*>(m.scratch(descs.size() * sizeof(LightningSeqDesc)));
  m.env.upload(descs.data(), descs.size() * sizeof(LightningSeqDesc), dev);

  LightningArgs args;
  args.qkv = qkv;
  args.out = out;
  args.heads = int(m.nh);
  args.head_dim = int(m.d);
  args.decay_pow = m.decay_pow + size_t(layer) * size_t(m.nh) * kDecayPowCount;
  args.seqs = dev;
  args.n_seqs = int(prefill.size());
  lightning_prefill(args, m.env.stream);
  args.seqs = dev + prefill.size();
  args.n_seqs = int(decode.size());
  lightning_decode(args, m.env.stream);
}

void CudaAttention::softmax(int layer, const void* q, const void* k, const void* v, const StepBatch& batch,
                            void* out) {
  Impl& m = *impl_;
  m.check_layer(layer, LayerKind::Softmax, "softmax");
  DeviceScope scope(m.env.device);
  const std::vector<CudaSeqState*> states = m.batch_states(batch, "softmax");
  const int slot = m.slot[size_t(layer)];

  std::vector<KvSeqDesc> descs;
  std::vector<FlashTile> tiles;
  std::vector<int32_t> decode;
  int64_t row = 0, max_decode_len = 0;
  for (size_t i = 0; i < states.size(); ++i) {
    const StepSeq& s = batch.seqs[i];
    CudaSeqState& st = *states[i];
    MMX_CHECK(st.kv_len[size_t(slot)] == s.start_pos, Code::InvalidArgument,
              "cuda attention: softmax: layer " + std::to_string(layer) + " cache holds " +
                  std::to_string(st.kv_len[size_t(slot)]) + " tokens but the sequence starts at " +
                  std::to_string(s.start_pos));
    if (s.n_tokens > 0) {
      m.ensure_pages(st, s.start_pos + s.n_tokens);
      KvSeqDesc desc;
      desc.row = row;
      desc.n_tokens = int32_t(s.n_tokens);
      desc.start_pos = int32_t(s.start_pos);
      desc.pages = st.table;
      const int32_t index = int32_t(descs.size());
      descs.push_back(desc);
      if (s.n_tokens == 1) {
        decode.push_back(index);
        max_decode_len = std::max(max_decode_len, s.start_pos + 1);
      } else {
        for (int32_t t = 0; t < int32_t(ceil_div(s.n_tokens, kFlashTileRows)); ++t) tiles.push_back({index, t});
      }
    }
    row += s.n_tokens;
  }
  if (row == 0) return;
  // Longest tiles (most keys to visit) first, so short ones fill in behind them.
  auto keys_seen = [&](const FlashTile& t) {
    const KvSeqDesc& s = descs[size_t(t.seq)];
    return s.start_pos + std::min<int64_t>(s.n_tokens, int64_t(t.q_tile + 1) * kFlashTileRows);
  };
  std::stable_sort(tiles.begin(), tiles.end(),
                   [&](const FlashTile& a, const FlashTile& b) { return keys_seen(a) > keys_seen(b); });

  DecodeSplits splits;
  if (!decode.empty())
    splits = plan_decode_splits(max_decode_len, int(decode.size()), int(m.nh), int(m.nkv), 2 * m.num_sms);
  const size_t desc_bytes = descs.size() * sizeof(KvSeqDesc), tile_bytes = tiles.size() * sizeof(FlashTile),
               decode_bytes = decode.size() * sizeof(int32_t);
  ScratchPlan plan;
  const size_t at_desc = plan.add(desc_bytes), at_tiles = plan.add(tile_bytes), at_decode = plan.add(decode_bytes);
  const size_t at_q = plan.add(size_t(row * m.nh * m.d) * sizeof(uint16_t));
  const size_t at_part =
      plan.add(decode.empty() ? 0 : flash_decode_scratch_bytes(int(decode.size()), splits, int(m.nh), int(m.d)));
  char* scratch = static_cast<char*>(m.scratch(plan.total()));
  std::vector<char> blob(at_q);
  std::memcpy(blob.data() + at_desc, descs.data(), desc_bytes);
  if (tile_bytes) std::memcpy(blob.data() + at_tiles, tiles.data(), tile_bytes);
  if (decode_bytes) std::memcpy(blob.data() + at_decode, decode.data(), decode_bytes);
  m.env.upload(blob.data(), blob.size(), scratch);

  PagedKv kv;
  kv.page_tokens = m.page_tokens;
  kv.kv_heads = int(m.nkv);
  kv.head_dim = int(m.d);
  kv.layer_offset = int64_t(slot) * 2 * m.nkv * m.page_tokens * m.d;
  const auto* dev_descs = reinterpret_cast<const KvSeqDesc*>(scratch + at_desc);

  RopeAppendArgs rope;
  rope.q = q;
  rope.k = k;
  rope.v = v;
  rope.q_out = scratch + at_q;
  rope.total_tokens = row;
  rope.heads = int(m.nh);
  rope.rotary_dim = int(m.config.rotary_dim);
  rope.inv_freq = m.inv_freq;
  rope.kv = kv;
  rope.seqs = dev_descs;
  rope.n_seqs = int(descs.size());
  rope_append_kv(rope, m.env.stream);

  FlashArgs fa;
  fa.q = scratch + at_q;
  fa.out = out;
  fa.heads = int(m.nh);
  fa.scale = float(1.0 / std::sqrt(double(m.d)));
  fa.kv = kv;
  fa.seqs = dev_descs;
  flash_prefill(fa, reinterpret_cast<const FlashTile*>(scratch + at_tiles), int(tiles.size()), m.env.stream);
  flash_decode(fa, reinterpret_cast<const int32_t*>(scratch + at_decode), int(decode.size()), splits,
               scratch + at_part, m.env.stream);

  for (size_t i = 0; i < states.size(); ++i)
    states[i]->kv_len[size_t(slot)] = batch.seqs[i].start_pos + batch.seqs[i].n_tokens;
}

}  // namespace mmx::cuda
