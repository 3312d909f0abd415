// Helpers for the engine and C ABI tests: random model directories (with the byte-level BPE
// test tokenizer so that text, stop strings and UTF-8 streaming are exercised), RAII owners
// for C handles, a pull loop that collects one request's events, and what "the same numbers"
// means on the backend MMX_TEST_BACKEND selects (logits_tolerance(), expect_same_greedy()).
#pragma once
#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <cstdlib>
#include <functional>
#include <memory>
#include <string>
#include <vector>

#include "minimax.h"
#include "model/random_model.h"
#include "test_util.h"

namespace mmx_test {

// The BPE test tokenizer: 1500 byte-level pieces, added tokens 1500-1505
// (<beginning_of_sentence> = BOS 1500, <end_of_sentence> = EOS 1501).
constexpr int32_t kTestVocab = 1512;
constexpr int32_t kTestBos = 1500;
constexpr int32_t kTestEos = 1501;

// The backend the tests load with: MMX_TEST_BACKEND, "cpu" (the default, also when empty) or
// "cuda". The numeric expectations below depend on it, so "auto" is not meant for these tests.
inline std::string test_backend() {
  const char* backend = std::getenv("MMX_TEST_BACKEND");
  return backend && *backend ? backend : "cpu";
}
inline bool is_cuda_backend() { return test_backend() == "cuda"; }

// Writes config.json + model.safetensors of a random tiny model into `dir` (and the test
// tokenizer unless with_tokenizer is false). `tweak` may change the config first.
inline std::string write_test_model(const std::string& dir, uint64_t seed = 1, bool with_tokenizer = true,
                                    const std::function<void(mmx::ModelConfig&)>& tweak = {}) {
  mmx::ModelConfig c = mmx::tiny_test_config();
  c.vocab = kTestVocab;
  c.eos_token_id = kTestEos;
  c.bos_token_id = kTestBos;
  // These tests compare the same text run in different chunks and batches. Under bf16
  // activations (CUDA) a token whose k-th and (k+1)-th experts nearly tie may route the other
  // way in one of them, and its row then differs by tens of percent, legitimately. Routing
  // every token to all experts keeps these engine tests about the engine; routing on the
  // device is tested op by op and end to end in tests/cuda.
  if (is_cuda_backend()) c.top_k = c.experts;
  if (tweak) tweak(c);
  write_file(dir + "/config.json", mmx::config_to_json(c, true));
  mmx::write_safetensors(dir + "/model.safetensors", mmx::random_tensors(c, seed));
  if (with_tokenizer)
    for (const char* f : {"vocab.json", "merges.txt", "tokenizer_config.json"})
      write_file(dir + "/" + f, read_file(data_path(std::string("tokenizer/bpe_files/") + f)));
  return dir;
}

struct StatusDeleter {
  void operator()(mmx_status* s) const { mmx_status_free(s); }
};
using Status = std::unique_ptr<mmx_status, StatusDeleter>;

// "code: message" of a status, for assertion messages.
inline std::string describe(const mmx_status* s) {
  return std::string(mmx_code_name(mmx_status_code(s))) + ": " + mmx_status_message(s);
}

// Expects success; on failure reports the message (and frees the status).
#define MMX_ASSERT_OK(call)                                                       \
  do {                                                                            \
    ::mmx_test::Status _st(call);                                                 \
    ASSERT_EQ(mmx_status_code(_st.get()), MMX_OK) << ::mmx_test::describe(_st.get()); \
  } while (0)
#define MMX_EXPECT_OK(call)                                                       \
  do {                                                                            \
    ::mmx_test::Status _st(call);                                                 \
    EXPECT_EQ(mmx_status_code(_st.get()), MMX_OK) << ::mmx_test::describe(_st.get()); \
  } while (0)

struct ModelDeleter { void operator()(mmx_model* m) const { mmx_model_free(m); } };
struct ContextDeleter { void operator()(mmx_context* c) const { mmx_context_free(c); } };
struct RequestDeleter { void operator()(mmx_request* r) const { mmx_request_free(r); } };
struct EventDeleter { void operator()(mmx_event* e) const { mmx_event_free(e); } };
struct PrefixDeleter { void operator()(mmx_prefix* p) const { mmx_prefix_free(p); } };
struct CtxOptionsDeleter { void operator()(mmx_context_options* o) const { mmx_context_options_free(o); } };
using ModelPtr = std::unique_ptr<mmx_model, ModelDeleter>;
using ContextPtr = std::unique_ptr<mmx_context, ContextDeleter>;
using RequestPtr = std::unique_ptr<mmx_request, RequestDeleter>;
using EventPtr = std::unique_ptr<mmx_event, EventDeleter>;
using PrefixPtr = std::unique_ptr<mmx_prefix, PrefixDeleter>;
using CtxOptionsPtr = std::unique_ptr<mmx_context_options, CtxOptionsDeleter>;

// Loads with the backend named by MMX_TEST_BACKEND (default "cpu", the fp32 reference; the
// tests that compare numbers take their bounds from the helpers below).
inline ModelPtr load_model(const std::string& dir) {
  mmx_model* m = nullptr;
  mmx_model_options* o = nullptr;
  const std::string backend = test_backend();
  Status(mmx_model_options_create(&o));
  Status(mmx_model_options_set_string(o, MMX_MODEL_OPT_BACKEND, backend.c_str()));
  Status(mmx_model_options_set_int(o, MMX_MODEL_OPT_THREADS, 1));
  Status st(mmx_model_load(dir.c_str(), o, nullptr, nullptr, &m));
  mmx_model_options_free(o);
  EXPECT_EQ(mmx_status_code(st.get()), MMX_OK) << describe(st.get());
  return ModelPtr(m);
}

// A context with integer options given as {key, value} pairs.
inline ContextPtr make_context(mmx_model* model,
                               std::initializer_list<std::pair<mmx_context_option, int64_t>> opts = {}) {
  mmx_context_options* o = nullptr;
  Status(mmx_context_options_create(&o));
  for (const auto& [k, v] : opts) Status(mmx_context_options_set_int(o, k, v));
  mmx_context* c = nullptr;
  Status st(mmx_context_create(model, o, &c));
  mmx_context_options_free(o);
  EXPECT_EQ(mmx_status_code(st.get()), MMX_OK) << describe(st.get());
  return ContextPtr(c);
}

// A test suite sharing one small random model, written and loaded once per suite (each
// derived suite gets its own, through the template parameter).
template <class Suite>
class SharedModelTest : public ::testing::Test {
 protected:
  static void SetUpTestSuite() {
    dir_ = new TempDir();
    write_test_model(dir_->path());
    model_ = load_model(dir_->path()).release();
  }
  static void TearDownTestSuite() {
    mmx_model_free(model_);
    delete dir_;
  }
  void SetUp() override { ASSERT_NE(model_, nullptr); }

  static inline TempDir* dir_ = nullptr;
  static inline mmx_model* model_ = nullptr;
};

inline RequestPtr make_request(const std::vector<int32_t>& prompt, int64_t max_tokens) {
  mmx_request* r = nullptr;
  Status(mmx_request_create(&r));
  if (!prompt.empty()) Status(mmx_request_append_tokens(r, prompt.data(), prompt.size()));
  Status(mmx_request_set_int(r, MMX_REQ_MAX_TOKENS, max_tokens));
  return RequestPtr(r);
}

// Everything one request produced, collected by the pull loop or a callback.
struct Outcome {
  std::vector<int32_t> tokens;
  std::vector<float> logprobs;
  std::vector<std::vector<std::pair<int32_t, float>>> tops;
  std::string text;
  std::vector<int64_t> progress_done;
  std::vector<float> prompt_logprobs;  // by prompt position, from PROMPT_LOGPROBS events
  int64_t prompt_logprobs_first = -1;
  std::vector<std::pair<int64_t, std::vector<float>>> logits;  // (position, row)
  mmx_finish_reason reason = MMX_FINISH_NONE;
  mmx_code error_code = MMX_OK;
  std::string error_message;
  int64_t prompt_tokens = -1, generated_tokens = -1;
  PrefixPtr prefix;
  int finished_events = 0;
  int events_after_finish = 0;
};

// Adds one event to `out` (used by both delivery paths).
inline void record_event(const mmx_event* e, Outcome* out) {
  if (out->finished_events > 0) ++out->events_after_finish;
  size_t len = 0;
  const char* text = mmx_event_text(e, &len);
  switch (mmx_event_get_type(e)) {
    case MMX_EVENT_TOKEN: {
      out->tokens.push_back(mmx_event_token(e));
      out->logprobs.push_back(mmx_event_logprob(e));
      std::vector<std::pair<int32_t, float>> top;
      for (size_t i = 0; i < mmx_event_top_count(e); ++i) {
        int32_t t;
        float lp;
        Status(mmx_event_top(e, i, &t, &lp));
        top.emplace_back(t, lp);
      }
      out->tops.push_back(top);
      out->text.append(text, len);
      break;
    }
    case MMX_EVENT_PROGRESS: {
      int64_t done = 0, total = 0;
      Status(mmx_event_progress(e, &done, &total));
      out->progress_done.push_back(done);
      break;
    }
    case MMX_EVENT_PROMPT_LOGPROBS: {
      int64_t first;
      size_t count;
      const float* lps;
      const int32_t* toks;
      Status(mmx_event_prompt_logprobs(e, &first, &count, &lps, &toks));
      if (out->prompt_logprobs_first < 0) out->prompt_logprobs_first = first;
      EXPECT_EQ(size_t(first), out->prompt_logprobs.size()) << "prompt logprobs must arrive in order";
      out->prompt_logprobs.insert(out->prompt_logprobs.end(), lps, lps + count);
      break;
    }
    case MMX_EVENT_LOGITS: {
      int64_t pos;
      const float* row;
      size_t count;
      Status(mmx_event_logits(e, &pos, &row, &count));
      out->logits.emplace_back(pos, std::vector<float>(row, row + count));
      break;
    }
    case MMX_EVENT_FINISHED: {
      ++out->finished_events;
      out->reason = mmx_event_finish_reason(e);
      out->text.append(text, len);
      Status(mmx_event_counts(e, &out->prompt_tokens, &out->generated_tokens));
      if (const mmx_status* err = mmx_event_error(e)) {
        out->error_code = mmx_status_code(err);
        out->error_message = mmx_status_message(err);
      }
      if (out->reason == MMX_FINISH_PREFIX_READY) {
        mmx_prefix* p = nullptr;
        Status(mmx_event_prefix(e, &p));
        out->prefix.reset(p);
      }
      break;
    }
  }
}

// Pulls the events of request `id` until its final event (fails the test after 60 s).
inline Outcome collect(mmx_context* ctx, mmx_request_id id) {
  Outcome out;
  while (out.finished_events == 0) {
    mmx_event* e = nullptr;
    Status st(mmx_context_next_event(ctx, id, 60000, &e));
    if (mmx_status_code(st.get()) != MMX_OK) {
      ADD_FAILURE() << "next_event(" << id << "): " << describe(st.get());
      break;
    }
    EXPECT_EQ(mmx_event_request_id(e), id);
    record_event(e, &out);
    mmx_event_free(e);
  }
  return out;
}

inline mmx_request_id submit(mmx_context* ctx, const mmx_request* r) {
  mmx_request_id id = 0;
  Status st(mmx_context_submit(ctx, r, &id));
  EXPECT_EQ(mmx_status_code(st.get()), MMX_OK) << describe(st.get());
  return id;
}

// Submits one request and collects its outcome.
inline Outcome run(mmx_context* ctx, const mmx_request* r) { return collect(ctx, submit(ctx, r)); }

// ---- What "the same numbers" means on each backend --------------------------------------
//
// The tests compare two runs of one model that compute the same thing in different ways: a
// request batched with others against the same request alone, a prompt scored in chunks
// against each position recomputed, an answer from a prefix against the whole document in one
// request. On the fp32 CPU backend only the summation order differs. The CUDA backend keeps
// activations in bf16 and takes different GEMM paths for different batch sizes, and a prefix +
// continuation has other chunk boundaries than the whole request, so there the two runs differ
// at the bf16 level by design; its sequence state is a paged KV cache (state sizes come in
// whole pages).

// The error of logits row `got` against `want`, in the measure logits_tolerance() bounds:
//   cpu:  max_i |got_i - want_i| / max_i |want_i| (max_rel_error, as the golden tests);
//   cuda: ||got - want||_2 / ||want||_2, per row, the measure of the CUDA model tests
//         (tests/cuda/test_cuda_model.cpp), infinite for a row holding a NaN or an infinity.
inline double logits_error(const std::vector<float>& got, const std::vector<float>& want) {
  if (got.size() != want.size()) return INFINITY;
  if (!is_cuda_backend()) return max_rel_error(got.data(), want.data(), want.size());
  double num = 0, den = 1e-30;
  for (size_t i = 0; i < want.size(); ++i) {
    if (!std::isfinite(got[i]) || !std::isfinite(want[i])) return INFINITY;
    num += (double(got[i]) - double(want[i])) * (double(got[i]) - double(want[i]));
    den += double(want[i]) * double(want[i]);
  }
  return std::sqrt(num / den);
}

// Bound on logits_error() between two runs that compute the same rows:
//   cpu:  1e-4 (fp32, summation order only);
//   cuda: 5e-2, the per-row norm-relative bound the CUDA model tests allow bf16 activations
//         against the fp32 CPU (up to ~4e-2 seen on tiny models); two bf16 runs that differ in
//         GEMM path or chunk boundaries stay within it as well.
inline double logits_tolerance() { return is_cuda_backend() ? 5e-2 : 1e-4; }

// Largest |logit| of a row: the scale greedy_margin() is relative to.
inline double max_abs_logit(const std::vector<float>& row) {
  double m = 0;
  for (float v : row) m = std::max(m, double(std::fabs(v)));
  return m;
}

// Greedy continuations of two such runs may part only at a step whose top-2 logit gap is within
// what the two runs' logits differ by. cpu: no margin, every step must agree. cuda: twice 1e-2
// of the row's largest |logit| (1e-2 is the typical per-element max-abs-relative deviation bf16
// activations give; twice, since the top two logits may move in opposite directions), the
// a-priori greedy bound of the CUDA model tests.
inline double greedy_margin(double logit_scale) { return is_cuda_backend() ? 2 * 1e-2 * logit_scale : 0.0; }

// Expects `got` to have generated the greedy tokens of `want` (the reference). On the CPU every
// token must be equal. On CUDA they must be equal up to the first step whose reference top-2
// gap (from its top logprobs: `want` must be run with MMX_REQ_TOP_LOGPROBS >= 2) is at most
// greedy_margin(logit_scale); from that step on the continuations may legitimately part and are
// not compared. `logit_scale` is the largest |logit| of the reference's last prompt row (decode
// rows of the same request come out of the same final norm and lm_head, so they have the same
// scale). Returns how many steps were compared.
inline size_t expect_same_greedy(const Outcome& want, const Outcome& got, double logit_scale,
                                 const std::string& what) {
  if (!is_cuda_backend()) {
    EXPECT_EQ(got.tokens, want.tokens) << what;
    return want.tokens.size();
  }
  EXPECT_EQ(got.tokens.size(), want.tokens.size()) << what;
  const double margin = greedy_margin(logit_scale);
  size_t i = 0;
  for (; i < want.tokens.size() && i < got.tokens.size(); ++i) {
    if (i >= want.tops.size() || want.tops[i].size() < 2) {
      ADD_FAILURE() << what << ": the reference has no top-2 logprobs at step " << i;
      break;
    }
    const double gap = double(want.tops[i][0].second) - double(want.tops[i][1].second);
    if (gap <= margin) break;  // too close to call: may part here
    if (got.tokens[i] != want.tokens[i]) {
      ADD_FAILURE() << what << ": greedy token " << i << " is " << got.tokens[i] << ", the reference's "
                    << want.tokens[i]
                    << " (reference top-2 gap " << gap << ", margin " << margin << ")";
      break;
    }
  }
  return i;
}

// log-softmax of a row, in double.
inline std::vector<double> log_softmax(const std::vector<float>& row) {
  double m = -INFINITY;
  for (float v : row) m = std::max(m, double(v));
  double s = 0;
  for (float v : row) s += std::exp(double(v) - m);
  std::vector<double> out(row.size());
  for (size_t i = 0; i < row.size(); ++i) out[i] = double(row[i]) - m - std::log(s);
  return out;
}

}  // namespace mmx_test
