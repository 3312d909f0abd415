// Failures inside the engine: a failing step ends the requests in it with MMX_FINISH_ERROR
// carrying the error; a device error poisons the engine (everything ends, later submits say
// Device); a failing state allocation ends only that request. Faults are injected by a
// backend that wraps the CPU backend.
#include <gtest/gtest.h>

#include <atomic>
#include <chrono>
#include <thread>

#include "core/error.h"
#include "engine/engine.h"
#include "model/random_model.h"

namespace mmx {
namespace {

class FaultyBackend : public Backend {
 public:
  explicit FaultyBackend(std::unique_ptr<Backend> inner) : inner_(std::move(inner)) {}

  std::atomic<int> fail_step{-1};       // begin_step number that throws
  std::atomic<int> fail_new_state{-1};  // new_state call number that throws
  // The failing step waits for this, so a test can submit more work before the fault hits.
  std::atomic<bool> fault_gate_open{true};
  Code code = Code::Internal;

  std::string name() const override { return inner_->name(); }
  void prepare(const Model& model) override { inner_->prepare(model); }
  std::unique_ptr<SeqState> new_state() override {
    if (new_states_++ == fail_new_state) fail(code, "injected state allocation failure");
    return inner_->new_state();
  }
  std::unique_ptr<SeqState> clone_state(const SeqState& s) override { return inner_->clone_state(s); }
  uint64_t state_bytes(int64_t tokens) const override { return inner_->state_bytes(tokens); }
  void save_state(const SeqState& s, std::vector<uint8_t>* out) const override { inner_->save_state(s, out); }
  std::unique_ptr<SeqState> load_state(const uint8_t* data, size_t size) override {
    return inner_->load_state(data, size);
  }
  void begin_step() override {
    if (steps_++ == fail_step) {
      while (!fault_gate_open) std::this_thread::sleep_for(std::chrono::milliseconds(1));
      fail(code, "injected step failure");
    }
    inner_->begin_step();
  }
  Act alloc(int64_t rows, int64_t cols) override { return inner_->alloc(rows, cols); }
  Act alloc_residual(int64_t rows, int64_t cols) override { return inner_->alloc_residual(rows, cols); }
  void upload(const float* src, Act dst) override { inner_->upload(src, dst); }
  void download(Act src, float* dst) override { inner_->download(src, dst); }
  void embed(const std::vector<int32_t>& tokens, Act out) override { inner_->embed(tokens, out); }
  void rms_norm(Act x, const WeightRef& w, double eps, Act out) override { inner_->rms_norm(x, w, eps, out); }
  void linear(Act x, const WeightRef& w, Act out) override { inner_->linear(x, w, out); }
  void silu(Act x) override { inner_->silu(x); }
  void sigmoid_mul(Act gate, Act x) override { inner_->sigmoid_mul(gate, x); }
  void scale_add(Act h, double alpha, Act a, double beta, Act out) override {
    inner_->scale_add(h, alpha, a, beta, out);
  }
  void lightning_attention(int layer, Act qkv, const StepBatch& batch, Act out) override {
    inner_->lightning_attention(layer, qkv, batch, out);
  }
  void softmax_attention(int layer, Act q, Act k, Act v, const StepBatch& batch, Act out) override {
    inner_->softmax_attention(layer, q, k, v, batch, out);
  }
  void moe(const LayerWeights& lw, Act x, Act out) override { inner_->moe(lw, x, out); }
  void logits(Act x, const std::vector<int32_t>& rows, float* out) override { inner_->logits(x, rows, out); }

 private:
  std::unique_ptr<Backend> inner_;
  std::atomic<int> steps_{0}, new_states_{0};
};

struct Harness {
  FaultyBackend* backend = nullptr;
  std::shared_ptr<ModelRuntime> runtime;
  std::unique_ptr<Engine> engine;

  explicit Harness(EngineOptions options = {}) {
    BackendOptions bo;
    bo.kind = "cpu";
    bo.threads = 1;
    auto faulty = std::make_unique<FaultyBackend>(create_backend(bo));
    backend = faulty.get();
    runtime = ModelRuntime::with_backend(make_random_model(tiny_test_config(), 5), std::move(faulty));
    engine = std::make_unique<Engine>(runtime, options);
  }

  uint64_t submit(size_t prompt_tokens, int64_t max_tokens) {
    RequestSpec spec;
    PromptPiece piece;
    for (size_t i = 0; i < prompt_tokens; ++i) piece.tokens.push_back(int32_t((i * 13 + 7) % 250));
    spec.prompt.push_back(piece);
    spec.max_tokens = max_tokens;
    spec.ignore_eos = true;
    return engine->submit({&spec}).front();
  }

  std::unique_ptr<Event> final_event(uint64_t id) {
    for (;;) {
      std::unique_ptr<Event> e = engine->next_event(id, 60000);
      if (e->type == EventType::Finished) return e;
    }
  }
};

TEST(EngineFaults, AFailingStepEndsItsRequestsAndTheEngineGoesOn) {
  Harness h;
  h.backend->code = Code::OutOfMemory;
  h.backend->fail_step = 0;
  uint64_t a = h.submit(10, 5), b = h.submit(12, 5);
  std::unique_ptr<Event> fa = h.final_event(a), fb = h.final_event(b);
  // Both were in the first step (or b in a later, healthy one).
  EXPECT_EQ(fa->reason, FinishReason::Error);
  EXPECT_EQ(fa->error_code, Code::OutOfMemory);
  EXPECT_NE(fa->error_message.find("injected step failure"), std::string::npos);
  EXPECT_TRUE(fb->reason == FinishReason::Error || fb->reason == FinishReason::Length);

  std::unique_ptr<Event> later = h.final_event(h.submit(8, 3));
  EXPECT_EQ(later->reason, FinishReason::Length);
  EXPECT_EQ(later->generated_tokens, 3);
  EXPECT_EQ(h.engine->stats().state_bytes_in_use, 0u) << "failed sequences return their state";
}

TEST(EngineFaults, ADeviceErrorPoisonsTheEngine) {
  EngineOptions o;
  o.max_sequences = 1;  // the second request waits in the queue
  Harness h(o);
  h.backend->code = Code::Device;
  h.backend->fail_step = 2;
  h.backend->fault_gate_open = false;  // the fault waits until both are submitted
  uint64_t running = h.submit(10, 50), queued = h.submit(10, 5);
  h.backend->fault_gate_open = true;
  std::unique_ptr<Event> fr = h.final_event(running), fq = h.final_event(queued);
  EXPECT_EQ(fr->reason, FinishReason::Error);
  EXPECT_EQ(fr->error_code, Code::Device);
  EXPECT_EQ(fq->reason, FinishReason::Error);
  EXPECT_EQ(fq->error_code, Code::Device);
  EXPECT_NE(fq->error_message.find("not started"), std::string::npos) << fq->error_message;
  try {
    h.submit(5, 1);
    FAIL() << "a poisoned engine must refuse work";
  } catch (const Error& e) {
    EXPECT_EQ(e.code(), Code::Device);
    EXPECT_NE(std::string(e.what()).find("injected step failure"), std::string::npos) << e.what();
  }
}

TEST(EngineFaults, AFailingStateAllocationEndsOnlyThatRequest) {
  Harness h;
  h.backend->code = Code::OutOfMemory;
  h.backend->fail_new_state = 0;
  uint64_t first = h.submit(6, 3);
  std::unique_ptr<Event> f = h.final_event(first);
  EXPECT_EQ(f->reason, FinishReason::Error);
  EXPECT_EQ(f->error_code, Code::OutOfMemory);
  EXPECT_EQ(h.final_event(h.submit(6, 3))->reason, FinishReason::Length);
}

}  // namespace
}  // namespace mmx
