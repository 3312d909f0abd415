// Engine: one running inference engine (the C ABI's mmx_context). A scheduler thread runs
// steps that mix decode tokens of running sequences with prefill chunks of new ones under a
// per-step token budget (continuous batching, chunked prefill); admission control keeps the
// running sequences within the state memory budget. submit, cancel, next_event and stats may
// be called from any thread.
//
// Files: engine.cpp (construction, submit, cancel, events, stats), scheduler.cpp (the
// scheduler thread: admission, steps, finishing), sequence.* (per-request state), sampler.*,
// stop.*, events.* (pull queues), prefix.* (prefixes and their files), runtime.* (the model
// and its backend).
#pragma once
#include <atomic>
#include <condition_variable>
#include <cstdint>
#include <deque>
#include <memory>
#include <mutex>
#include <string>
#include <thread>
#include <unordered_map>
#include <vector>

#include "engine/event.h"
#include "engine/events.h"
#include "engine/request.h"
#include "engine/runtime.h"
#include "engine/state_budget.h"
#include "model/forward.h"

namespace mmx {

class Prefix;
class Sequence;
struct Request;
struct StepPlan;
struct StepPart;
struct TokenChoice;

struct EngineOptions {
  int64_t max_sequences = 16;        // running at once
  int64_t step_token_budget = 2048;  // tokens per step, decode + prefill
  uint64_t state_memory_bytes = 0;   // 0: max_sequences states of min(8192, context limit) tokens
  int64_t prefill_chunk = 512;       // prefill tokens of one sequence per step
  int64_t max_context = 0;           // tokens per sequence; 0: the model's limit
  int64_t max_queued = 1024;         // requests waiting to start
};

struct EngineStats {
  uint32_t running_sequences = 0, queued_requests = 0;
  uint64_t submitted_requests = 0, finished_requests = 0;
  uint64_t prompt_tokens = 0, generated_tokens = 0, steps = 0;
  uint64_t state_bytes_in_use = 0, state_bytes_limit = 0;
  double busy_seconds = 0;
};

struct MemoryEstimate {
  uint64_t weight_bytes = 0;
  uint64_t state_bytes_per_sequence = 0;  // fixed part (lightning states)
  uint64_t kv_bytes_per_token = 0;        // growing part (softmax KV)
  uint64_t workspace_bytes = 0;
  uint64_t total_bytes = 0;
};

// What an engine with `options` would need (the options are validated as by the engine).
MemoryEstimate estimate_memory(const ModelRuntime& runtime, const EngineOptions& options);

class Engine {
 public:
  // Validates the options (Code::InvalidArgument naming the bad one) and starts the scheduler.
  Engine(std::shared_ptr<ModelRuntime> runtime, const EngineOptions& options);
  // Cancels every request, delivers the final events of callback requests, joins the
  // scheduler. Must not run on the scheduler thread (i.e. inside a callback).
  ~Engine();
  Engine(const Engine&) = delete;
  Engine& operator=(const Engine&) = delete;

  // Submits requests, all or nothing; returns their ids in order. Errors name the index of
  // the first bad request when there are several. Code::Device once a device error poisoned
  // the engine.
  std::vector<uint64_t> submit(const std::vector<const RequestSpec*>& specs);
  // Code::NotFound for unknown or finished ids.
  void cancel(uint64_t id);
  // See EventHub::next.
  std::unique_ptr<Event> next_event(uint64_t id, int32_t timeout_ms);
  EngineStats stats() const;

  std::shared_ptr<Prefix> load_prefix(const std::string& path);
  // True on the scheduler thread, i.e. inside an event callback of this engine.
  bool on_scheduler_thread() const { return std::this_thread::get_id() == scheduler_.get_id(); }
  const std::shared_ptr<ModelRuntime>& runtime() const { return runtime_; }
  int64_t context_limit() const { return context_limit_; }

 private:
  // engine.cpp
  std::shared_ptr<Request> prepare(const RequestSpec& spec) const;

  // scheduler.cpp (scheduler thread only, unless noted)
  void scheduler_loop();
  void finish_cancelled_queued();
  void admit();
  void retire_cancelled();
  void run_step();
  void shut_down();
  StepPlan plan_step();
  void process_part(const StepPart& part);
  void accept_token(Sequence& seq, const TokenChoice& choice);
  // A step failed: a device error poisons the engine (every request ends with it); any other
  // error ends the sequences that were in the step.
  void step_failed(const StepPlan& plan, Code code, const std::string& message);
  void poison(const std::string& message);
  // Ends a running sequence: final event, state released, reservation returned.
  void finish_sequence(Sequence& seq, FinishReason reason, Code code = Code::Ok,
                       const std::string& message = {});
  // Marks a request finished and delivers its final event, exactly once per request.
  void finish_request(const std::shared_ptr<Request>& request, std::unique_ptr<Event> final_event);
  // Under mu_: marks the request finished and forgets its id; false if it already was.
  bool mark_finished_locked(Request& request);
  void deliver(Request& request, std::unique_ptr<Event> event);
  std::unique_ptr<Event> make_event(const Request& request, EventType type) const;
  void release_state(std::unique_ptr<SeqState> state);
  void remove_finished();

  std::shared_ptr<ModelRuntime> runtime_;
  EngineOptions options_;
  int64_t context_limit_ = 0;
  std::shared_ptr<StateBudget> budget_;
  Forward forward_;
  EventHub hub_;

  // Guarded by mu_.
  mutable std::mutex mu_;
  std::condition_variable cv_;
  bool wake_ = false;
  bool stop_ = false;
  std::string poisoned_;  // non-empty after a device error: why
  uint64_t next_id_ = 1;
  std::deque<std::shared_ptr<Request>> waiting_;
  std::unordered_map<uint64_t, std::shared_ptr<Request>> live_;  // submitted, not yet finished

  // Scheduler thread only.
  std::vector<std::unique_ptr<Sequence>> running_;
  size_t decode_rotation_ = 0;  // fairness when decode tokens exceed the step budget
  std::vector<float> logits_;

  // Statistics (written by the scheduler, read by anyone).
  std::atomic<uint32_t> running_count_{0};
  std::atomic<uint64_t> submitted_{0}, finished_{0}, prompt_tokens_{0}, generated_tokens_{0}, steps_{0};
  std::atomic<uint64_t> busy_nanoseconds_{0};

  std::thread scheduler_;  // last: starts after everything above exists
};

}  // namespace mmx
