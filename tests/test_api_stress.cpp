// 8 threads submit, read and cancel 200 requests in all (pull and callback delivery, reads by
// id and of any request, cancels of their own and of others' requests): every request gets
// exactly one final event, nothing arrives after it, and the context stays usable. Clean
// under ThreadSanitizer (build with -DMINIMAX_SANITIZE=thread; set OPENBLAS_NUM_THREADS=1).
#include <gtest/gtest.h>

#include <atomic>
#include <chrono>
#include <mutex>
#include <random>
#include <thread>
#include <unordered_map>

#include "api_test_support.h"

using namespace mmx_test;

namespace {

struct Record {
  int finals = 0;
  int after_final = 0;
  int events = 0;
  mmx_finish_reason reason = MMX_FINISH_NONE;
};

class Ledger {
 public:
  // `pushed`: delivered to a callback. Those arrive one at a time in order, so anything
  // after the final event is an engine bug; pulled events taken by two threads may be
  // recorded in either order, so for them only the count of final events is checked.
  void add(mmx_request_id id, const mmx_event* e, bool pushed) {
    std::lock_guard<std::mutex> lock(mu_);
    Record& r = records_[id];
    ++r.events;
    if (pushed && r.finals > 0) ++r.after_final;
    if (mmx_event_get_type(e) == MMX_EVENT_FINISHED) {
      ++r.finals;
      r.reason = mmx_event_finish_reason(e);
    }
  }
  bool finished(mmx_request_id id) {
    std::lock_guard<std::mutex> lock(mu_);
    auto it = records_.find(id);
    return it != records_.end() && it->second.finals > 0;
  }
  std::unordered_map<mmx_request_id, Record> snapshot() {
    std::lock_guard<std::mutex> lock(mu_);
    return records_;
  }

 private:
  std::mutex mu_;
  std::unordered_map<mmx_request_id, Record> records_;
};

TEST(Stress, EightThreadsTwoHundredRequests) {
  TempDir dir;
  write_test_model(dir.path());
  ModelPtr model = load_model(dir.path());
  ASSERT_NE(model, nullptr);
  ContextPtr ctx = make_context(model.get(), {{MMX_CTX_OPT_MAX_SEQUENCES, 4},
                                              {MMX_CTX_OPT_PREFILL_CHUNK, 16},
                                              {MMX_CTX_OPT_STEP_TOKEN_BUDGET, 48}});
  constexpr int kThreads = 8, kPerThread = 25;
  Ledger ledger;
  std::mutex ids_mu;
  std::vector<mmx_request_id> all_ids;
  std::atomic<int> submit_failures{0}, unexpected_statuses{0};

  auto callback = [](const mmx_event* e, void* user) {
    static_cast<Ledger*>(user)->add(mmx_event_request_id(e), e, true);
  };

  auto worker = [&](int t) {
    std::mt19937 rng(uint32_t(1000 + t));
    std::vector<mmx_request_id> mine;
    for (int i = 0; i < kPerThread;) {
      // One to three requests at a time, sometimes as a batch.
      const int n = std::min(kPerThread - i, 1 + int(rng() % 3));
      std::vector<RequestPtr> reqs;
      std::vector<const mmx_request*> raw;
      for (int k = 0; k < n; ++k) {
        std::vector<int32_t> prompt(5 + rng() % 56);
        for (auto& tok : prompt) tok = int32_t(rng() % 1400);
        RequestPtr r = make_request(prompt, 1 + rng() % 20);
        Status(mmx_request_set_int(r.get(), MMX_REQ_IGNORE_EOS, 1));
        if (rng() % 3 == 0) {
          Status(mmx_request_set_double(r.get(), MMX_REQ_TEMPERATURE, 0.8));
          Status(mmx_request_set_int(r.get(), MMX_REQ_SEED, int64_t(rng())));
          Status(mmx_request_set_int(r.get(), MMX_REQ_TOP_LOGPROBS, 3));
        }
        if (rng() % 4 == 0) Status(mmx_request_set_callback(r.get(), callback, &ledger));
        raw.push_back(r.get());
        reqs.push_back(std::move(r));
      }
      std::vector<mmx_request_id> ids(size_t(n), 0);
      Status st(n > 1 ? mmx_context_submit_batch(ctx.get(), raw.data(), raw.size(), ids.data())
                      : mmx_context_submit(ctx.get(), raw[0], ids.data()));
      if (mmx_status_code(st.get()) != MMX_OK) {
        ++submit_failures;
        continue;
      }
      i += n;
      mine.insert(mine.end(), ids.begin(), ids.end());
      {
        std::lock_guard<std::mutex> lock(ids_mu);
        all_ids.insert(all_ids.end(), ids.begin(), ids.end());
      }
      // Cancel now and then: one of ours, or anyone's.
      if (rng() % 5 == 0) {
        mmx_request_id victim = mine[rng() % mine.size()];
        if (rng() % 2) {
          std::lock_guard<std::mutex> lock(ids_mu);
          victim = all_ids[rng() % all_ids.size()];
        }
        Status c(mmx_context_cancel(ctx.get(), victim));
        if (mmx_status_code(c.get()) != MMX_OK && mmx_status_code(c.get()) != MMX_NOT_FOUND) ++unexpected_statuses;
      }
      // Read a little: by id, or any request's event.
      for (int k = 0; k < 3; ++k) {
        const mmx_request_id want = rng() % 2 ? mine[rng() % mine.size()] : 0;
        mmx_event* e = nullptr;
        Status r(mmx_context_next_event(ctx.get(), want, 1, &e));
        if (e) {
          ledger.add(mmx_event_request_id(e), e, false);
          mmx_event_free(e);
        } else if (mmx_status_code(r.get()) != MMX_TIMEOUT && mmx_status_code(r.get()) != MMX_NOT_FOUND &&
                   mmx_status_code(r.get()) != MMX_STATE) {
          ++unexpected_statuses;
        }
      }
    }
    // Drain until every request of this thread has its final event (others may take some).
    const auto deadline = std::chrono::steady_clock::now() + std::chrono::seconds(120);
    for (;;) {
      bool all = true;
      for (mmx_request_id id : mine) all = all && ledger.finished(id);
      if (all || std::chrono::steady_clock::now() > deadline) break;
      mmx_event* e = nullptr;
      Status r(mmx_context_next_event(ctx.get(), 0, 5, &e));
      if (e) {
        ledger.add(mmx_event_request_id(e), e, false);
        mmx_event_free(e);
      }
    }
  };

  std::vector<std::thread> threads;
  for (int t = 0; t < kThreads; ++t) threads.emplace_back(worker, t);
  for (auto& th : threads) th.join();

  EXPECT_EQ(unexpected_statuses.load(), 0);
  ASSERT_EQ(all_ids.size(), size_t(kThreads * kPerThread));
  auto records = ledger.snapshot();
  int cancelled = 0;
  for (mmx_request_id id : all_ids) {
    const Record& r = records[id];
    EXPECT_EQ(r.finals, 1) << "request " << id;
    EXPECT_EQ(r.after_final, 0) << "request " << id;
    EXPECT_TRUE(r.reason == MMX_FINISH_LENGTH || r.reason == MMX_FINISH_CANCELLED) << "request " << id << " " << r.reason;
    cancelled += r.reason == MMX_FINISH_CANCELLED;
  }
  std::printf("submit retries %d, cancelled %d of %zu\n", submit_failures.load(), cancelled, all_ids.size());

  // Every id is forgotten, and the context still serves.
  for (mmx_request_id id : all_ids) {
    mmx_event* e = nullptr;
    Status st(mmx_context_next_event(ctx.get(), id, 0, &e));
    EXPECT_EQ(mmx_status_code(st.get()), MMX_NOT_FOUND) << "request " << id;
  }
  mmx_context_stats stats{};
  stats.struct_size = sizeof stats;
  MMX_ASSERT_OK(mmx_context_stats_get(ctx.get(), &stats));
  EXPECT_EQ(stats.submitted_requests, all_ids.size());
  EXPECT_EQ(stats.finished_requests, all_ids.size());
  EXPECT_EQ(stats.running_sequences, 0u);
  EXPECT_EQ(stats.queued_requests, 0u);
  EXPECT_EQ(stats.state_bytes_in_use, 0u);
  RequestPtr last = make_request({1, 2, 3}, 4);
  Outcome o = run(ctx.get(), last.get());
  EXPECT_EQ(o.finished_events, 1);
  EXPECT_EQ(o.reason == MMX_FINISH_LENGTH || o.reason == MMX_FINISH_EOS, true);
}

}  // namespace
