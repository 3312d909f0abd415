// Misuse of the C ABI returns a status with a clear message and never crashes.
#include <gtest/gtest.h>

#include <cmath>
#include <cstddef>
#include <functional>
#include <mutex>
#include <thread>
#include <atomic>
#include <chrono>

#include "api_test_support.h"

using namespace mmx_test;

namespace {

class Misuse : public SharedModelTest<Misuse> {
 protected:

};

// Runs `call`, expects `code` and a message containing `needle`.
void expect_status(mmx_status* raw, mmx_code code, const std::string& needle, const std::string& what = "") {
  Status st(raw);
  EXPECT_EQ(mmx_status_code(st.get()), code) << what << ": " << describe(st.get());
  EXPECT_NE(std::string(mmx_status_message(st.get())).find(needle), std::string::npos)
      << what << ": message \"" << mmx_status_message(st.get()) << "\" should mention \"" << needle << "\"";
}

TEST_F(Misuse, StatusBasics) {
  EXPECT_EQ(mmx_status_code(nullptr), MMX_OK);
  EXPECT_STREQ(mmx_status_message(nullptr), "");
  mmx_status_free(nullptr);
  EXPECT_STREQ(mmx_code_name(MMX_INVALID_ARGUMENT), "invalid argument");
  EXPECT_STREQ(mmx_code_name(MMX_BUFFER_TOO_SMALL), "buffer too small");
  EXPECT_STREQ(mmx_code_name(static_cast<mmx_code>(999)), "unknown");
  EXPECT_EQ(mmx_abi_version(), uint32_t(MMX_ABI_VERSION));
  EXPECT_NE(std::string(mmx_version_string()).find("cpu"), std::string::npos) << mmx_version_string();
}

TEST_F(Misuse, NullHandlesAndOutPointers) {
  ContextPtr ctx = make_context(model_);
  RequestPtr req = make_request({1, 2, 3}, 2);
  int32_t i32 = 0;
  int64_t i64 = 0;
  size_t sz = 0;
  uint64_t u64 = 0;
  float f = 0;
  const float* fp = nullptr;
  const int32_t* ip = nullptr;
  mmx_request_id rid = 0;
  mmx_layer_kind kind;
  char buf[64];
  struct Case {
    const char* what;
    std::function<mmx_status*()> call;
    const char* names;
  };
  const std::vector<Case> cases = {
      {"device_count", [&] { return mmx_device_count(nullptr); }, "out_count"},
      {"device_info_get", [&] { return mmx_device_info_get(0, nullptr); }, "out_info"},
      {"model_options_create", [&] { return mmx_model_options_create(nullptr); }, "out_options"},
      {"model_options_set_int", [&] { return mmx_model_options_set_int(nullptr, MMX_MODEL_OPT_THREADS, 1); }, "options"},
      {"model_options_set_string", [&] { return mmx_model_options_set_string(nullptr, MMX_MODEL_OPT_BACKEND, "cpu"); }, "options"},
      {"model_load path", [&] { mmx_model* m; return mmx_model_load(nullptr, nullptr, nullptr, nullptr, &m); }, "path"},
      {"model_load out", [&] { return mmx_model_load(dir_->path().c_str(), nullptr, nullptr, nullptr, nullptr); }, "out_model"},
      {"model_get_info", [&] { return mmx_model_get_info(nullptr, nullptr); }, "model"},
      {"model_get_info out", [&] { return mmx_model_get_info(model_, nullptr); }, "out_info"},
      {"model_layer_kind", [&] { return mmx_model_layer_kind(nullptr, 0, &kind); }, "model"},
      {"model_layer_kind out", [&] { return mmx_model_layer_kind(model_, 0, nullptr); }, "out_kind"},
      {"model_token_id", [&] { return mmx_model_token_id(model_, nullptr, &i32); }, "token_text"},
      {"model_token_id out", [&] { return mmx_model_token_id(model_, "a", nullptr); }, "out_id"},
      {"tokenize model", [&] { return mmx_tokenize(nullptr, "a", 1, 0, nullptr, 0, &sz); }, "model"},
      {"tokenize needed", [&] { return mmx_tokenize(model_, "a", 1, 0, nullptr, 0, nullptr); }, "n_needed"},
      {"tokenize text", [&] { return mmx_tokenize(model_, nullptr, 3, 0, nullptr, 0, &sz); }, "text"},
      {"tokenize tokens", [&] { return mmx_tokenize(model_, "a", 1, 0, nullptr, 5, &sz); }, "tokens"},
      {"detokenize tokens", [&] { return mmx_detokenize(model_, nullptr, 2, buf, sizeof buf, &sz); }, "tokens"},
      {"detokenize buf", [&] { int32_t t = 5; return mmx_detokenize(model_, &t, 1, nullptr, 10, &sz); }, "buf"},
      {"chat json", [&] { return mmx_apply_chat_format(model_, nullptr, 1, buf, sizeof buf, &sz); }, "messages_json"},
      {"estimate", [&] { return mmx_model_estimate_memory(model_, nullptr, nullptr); }, "out_estimate"},
      {"context_options_create", [&] { return mmx_context_options_create(nullptr); }, "out_options"},
      {"context_options_set_int", [&] { return mmx_context_options_set_int(nullptr, MMX_CTX_OPT_MAX_SEQUENCES, 1); }, "options"},
      {"context_create model", [&] { mmx_context* c; return mmx_context_create(nullptr, nullptr, &c); }, "model"},
      {"context_create out", [&] { return mmx_context_create(model_, nullptr, nullptr); }, "out_context"},
      {"stats", [&] { return mmx_context_stats_get(nullptr, nullptr); }, "context"},
      {"stats out", [&] { return mmx_context_stats_get(ctx.get(), nullptr); }, "out_stats"},
      {"request_create", [&] { return mmx_request_create(nullptr); }, "out_request"},
      {"request_set_int", [&] { return mmx_request_set_int(nullptr, MMX_REQ_SEED, 1); }, "request"},
      {"request_set_double", [&] { return mmx_request_set_double(nullptr, MMX_REQ_TOP_P, 0.5); }, "request"},
      {"append_text", [&] { return mmx_request_append_text(nullptr, "a", 1); }, "request"},
      {"append_text text", [&] { return mmx_request_append_text(req.get(), nullptr, 1); }, "text"},
      {"append_tokens", [&] { return mmx_request_append_tokens(req.get(), nullptr, 1); }, "tokens"},
      {"set_prefix", [&] { return mmx_request_set_prefix(nullptr, nullptr); }, "request"},
      {"stop_string", [&] { return mmx_request_add_stop_string(req.get(), nullptr); }, "stop"},
      {"stop_token", [&] { return mmx_request_add_stop_token(nullptr, 1); }, "request"},
      {"logit_bias", [&] { return mmx_request_set_logit_bias(nullptr, 1, 1.0f); }, "request"},
      {"logits_position", [&] { return mmx_request_add_logits_position(nullptr, 1); }, "request"},
      {"user_data", [&] { return mmx_request_set_user_data(nullptr, nullptr); }, "request"},
      {"callback", [&] { return mmx_request_set_callback(nullptr, nullptr, nullptr); }, "request"},
      {"submit context", [&] { return mmx_context_submit(nullptr, req.get(), &rid); }, "context"},
      {"submit request", [&] { return mmx_context_submit(ctx.get(), nullptr, &rid); }, "request"},
      {"submit out", [&] { return mmx_context_submit(ctx.get(), req.get(), nullptr); }, "out_id"},
      {"submit_batch requests", [&] { return mmx_context_submit_batch(ctx.get(), nullptr, 2, &rid); }, "requests"},
      {"submit_batch element", [&] {
         const mmx_request* two[2] = {req.get(), nullptr};
         mmx_request_id ids[2];
         return mmx_context_submit_batch(ctx.get(), two, 2, ids);
       }, "requests[1]"},
      {"cancel", [&] { return mmx_context_cancel(nullptr, 1); }, "context"},
      {"next_event context", [&] { mmx_event* e; return mmx_context_next_event(nullptr, 0, 0, &e); }, "context"},
      {"next_event out", [&] { return mmx_context_next_event(ctx.get(), 0, 0, nullptr); }, "out_event"},
      {"event_top", [&] { return mmx_event_top(nullptr, 0, &i32, &f); }, "event"},
      {"event_progress", [&] { return mmx_event_progress(nullptr, &i64, &i64); }, "event"},
      {"event_prompt_logprobs", [&] { return mmx_event_prompt_logprobs(nullptr, &i64, &sz, &fp, &ip); }, "event"},
      {"event_logits", [&] { return mmx_event_logits(nullptr, &i64, &fp, &sz); }, "event"},
      {"event_counts", [&] { return mmx_event_counts(nullptr, &i64, &i64); }, "event"},
      {"event_prefix", [&] { mmx_prefix* p; return mmx_event_prefix(nullptr, &p); }, "event"},
      {"event_prefix out", [&] { return mmx_event_prefix(nullptr, nullptr); }, "out_prefix"},
      {"prefix_token_count", [&] { return mmx_prefix_token_count(nullptr, &i64); }, "prefix"},
      {"prefix_state_bytes", [&] { return mmx_prefix_state_bytes(nullptr, &u64); }, "prefix"},
      {"prefix_save", [&] { return mmx_prefix_save(nullptr, "x"); }, "prefix"},
      {"prefix_load context", [&] { mmx_prefix* p; return mmx_prefix_load(nullptr, "x", &p); }, "context"},
      {"prefix_load path", [&] { mmx_prefix* p; return mmx_prefix_load(ctx.get(), nullptr, &p); }, "path"},
      {"prefix_load out", [&] { return mmx_prefix_load(ctx.get(), "x", nullptr); }, "out_prefix"},
  };
  for (const Case& c : cases) expect_status(c.call(), MMX_INVALID_ARGUMENT, c.names, c.what);

  // Frees of NULL are no-ops; accessors of a NULL event are total.
  mmx_model_free(nullptr);
  mmx_model_options_free(nullptr);
  mmx_context_free(nullptr);
  mmx_context_options_free(nullptr);
  mmx_request_free(nullptr);
  mmx_event_free(nullptr);
  mmx_prefix_free(nullptr);
  EXPECT_EQ(mmx_event_get_type(nullptr), 0);
  EXPECT_EQ(mmx_event_request_id(nullptr), 0u);
  EXPECT_EQ(mmx_event_user_data(nullptr), nullptr);
  EXPECT_EQ(mmx_event_token(nullptr), -1);
  EXPECT_EQ(mmx_event_text(nullptr, &sz), nullptr);
  EXPECT_EQ(sz, 0u);
  EXPECT_EQ(mmx_event_logprob(nullptr), 0.0f);
  EXPECT_EQ(mmx_event_top_count(nullptr), 0u);
  EXPECT_EQ(mmx_event_finish_reason(nullptr), MMX_FINISH_NONE);
  EXPECT_EQ(mmx_event_error(nullptr), nullptr);
}

TEST_F(Misuse, UnknownKeysAreUnsupportedAndWrongTypesInvalid) {
  mmx_model_options* mo = nullptr;
  MMX_ASSERT_OK(mmx_model_options_create(&mo));
  expect_status(mmx_model_options_set_int(mo, static_cast<mmx_model_option>(99), 1), MMX_UNSUPPORTED, "99");
  expect_status(mmx_model_options_set_string(mo, static_cast<mmx_model_option>(99), "x"), MMX_UNSUPPORTED, "99");
  expect_status(mmx_model_options_set_int(mo, MMX_MODEL_OPT_BACKEND, 1), MMX_INVALID_ARGUMENT, "string");
  expect_status(mmx_model_options_set_string(mo, MMX_MODEL_OPT_THREADS, "4"), MMX_INVALID_ARGUMENT, "integer");
  expect_status(mmx_model_options_set_string(mo, MMX_MODEL_OPT_BACKEND, "tpu"), MMX_INVALID_ARGUMENT, "tpu");
  expect_status(mmx_model_options_set_string(mo, MMX_MODEL_OPT_DEVICES, "0,x"), MMX_INVALID_ARGUMENT, "\"x\"");
  expect_status(mmx_model_options_set_string(mo, MMX_MODEL_OPT_WEIGHT_DTYPE, "fp4"), MMX_INVALID_ARGUMENT, "fp4");
  expect_status(mmx_model_options_set_int(mo, MMX_MODEL_OPT_THREADS, -2), MMX_INVALID_ARGUMENT, "THREADS");
  MMX_EXPECT_OK(mmx_model_options_set_string(mo, MMX_MODEL_OPT_DEVICES, "0, 1"));
  mmx_model_options_free(mo);

  mmx_context_options* co = nullptr;
  MMX_ASSERT_OK(mmx_context_options_create(&co));
  expect_status(mmx_context_options_set_int(co, static_cast<mmx_context_option>(77), 1), MMX_UNSUPPORTED, "77");
  expect_status(mmx_context_options_set_int(co, MMX_CTX_OPT_PREFILL_CHUNK, -1), MMX_INVALID_ARGUMENT, "PREFILL_CHUNK");
  MMX_EXPECT_OK(mmx_context_options_set_int(co, MMX_CTX_OPT_MAX_SEQUENCES, 0));
  mmx_context* c = nullptr;
  expect_status(mmx_context_create(model_, co, &c), MMX_INVALID_ARGUMENT, "MMX_CTX_OPT_MAX_SEQUENCES");
  EXPECT_EQ(c, nullptr);
  MMX_EXPECT_OK(mmx_context_options_set_int(co, MMX_CTX_OPT_MAX_SEQUENCES, 4));
  MMX_EXPECT_OK(mmx_context_options_set_int(co, MMX_CTX_OPT_MAX_CONTEXT, 1 << 20));
  expect_status(mmx_context_create(model_, co, &c), MMX_INVALID_ARGUMENT, "context limit of 4096");
  mmx_memory_estimate est{};
  est.struct_size = sizeof est;
  expect_status(mmx_model_estimate_memory(model_, co, &est), MMX_INVALID_ARGUMENT, "MAX_CONTEXT");
  mmx_context_options_free(co);

  RequestPtr r = make_request({1}, 1);
  expect_status(mmx_request_set_int(r.get(), static_cast<mmx_request_option>(55), 1), MMX_UNSUPPORTED, "55");
  expect_status(mmx_request_set_double(r.get(), static_cast<mmx_request_option>(55), 1), MMX_UNSUPPORTED, "55");
  expect_status(mmx_request_set_int(r.get(), MMX_REQ_TEMPERATURE, 1), MMX_INVALID_ARGUMENT, "double");
  expect_status(mmx_request_set_double(r.get(), MMX_REQ_MAX_TOKENS, 1), MMX_INVALID_ARGUMENT, "integer");
  expect_status(mmx_request_set_int(r.get(), MMX_REQ_MAX_TOKENS, -1), MMX_INVALID_ARGUMENT, "MAX_TOKENS");
  expect_status(mmx_request_set_int(r.get(), MMX_REQ_TOP_LOGPROBS, 21), MMX_INVALID_ARGUMENT, "[0, 20]");
  expect_status(mmx_request_set_int(r.get(), MMX_REQ_IGNORE_EOS, 2), MMX_INVALID_ARGUMENT, "0 or 1");
  expect_status(mmx_request_set_double(r.get(), MMX_REQ_TEMPERATURE, -0.5), MMX_INVALID_ARGUMENT, "TEMPERATURE");
  expect_status(mmx_request_set_double(r.get(), MMX_REQ_TOP_P, 0.0), MMX_INVALID_ARGUMENT, "(0, 1]");
  expect_status(mmx_request_set_double(r.get(), MMX_REQ_MIN_P, NAN), MMX_INVALID_ARGUMENT, "MIN_P");
  expect_status(mmx_request_set_double(r.get(), MMX_REQ_REPETITION_PENALTY, 0), MMX_INVALID_ARGUMENT, "> 0");
  expect_status(mmx_request_set_logit_bias(r.get(), 3, INFINITY), MMX_INVALID_ARGUMENT, "-INFINITY");
  expect_status(mmx_request_set_logit_bias(r.get(), -3, 1.0f), MMX_INVALID_ARGUMENT, "negative");
  expect_status(mmx_request_add_logits_position(r.get(), -2), MMX_INVALID_ARGUMENT, "-1");
  expect_status(mmx_request_add_stop_token(r.get(), -1), MMX_INVALID_ARGUMENT, "negative");
  expect_status(mmx_request_add_stop_string(r.get(), ""), MMX_INVALID_ARGUMENT, "empty");
  int32_t neg[] = {4, -7};
  expect_status(mmx_request_append_tokens(r.get(), neg, 2), MMX_INVALID_ARGUMENT, "index 1");
}

TEST_F(Misuse, InvalidUtf8) {
  const char bad[] = "ok \xC3\x28 then";
  RequestPtr r = make_request({}, 1);
  expect_status(mmx_request_append_text(r.get(), bad, sizeof bad - 1), MMX_INVALID_ARGUMENT, "offset 3");
  expect_status(mmx_request_add_stop_string(r.get(), "\xED\xA0\x80"), MMX_INVALID_ARGUMENT, "UTF-8");  // surrogate
  size_t needed = 0;
  expect_status(mmx_tokenize(model_, "\xC0\xAF", 2, 0, nullptr, 0, &needed), MMX_INVALID_ARGUMENT, "UTF-8");  // overlong
  expect_status(mmx_tokenize(model_, "x\xF0\x9F", 3, 0, nullptr, 0, &needed), MMX_INVALID_ARGUMENT, "UTF-8");  // cut short
  char out[16];
  expect_status(mmx_apply_chat_format(model_, "[\"\xFF\"]", 1, out, sizeof out, &needed), MMX_INVALID_ARGUMENT, "UTF-8");
}

TEST_F(Misuse, TokensOutOfRangeAndBadPrompts) {
  ContextPtr ctx = make_context(model_);
  mmx_request_id id = 0;
  RequestPtr r = make_request({5, 6, 99999, 7}, 2);
  expect_status(mmx_context_submit(ctx.get(), r.get(), &id), MMX_INVALID_ARGUMENT, "99999 at position 2");
  EXPECT_EQ(id, 0u);
  RequestPtr empty = make_request({}, 2);
  expect_status(mmx_context_submit(ctx.get(), empty.get(), &id), MMX_INVALID_ARGUMENT, "empty");
  RequestPtr stop = make_request({5}, 2);
  MMX_ASSERT_OK(mmx_request_add_stop_token(stop.get(), kTestVocab));
  expect_status(mmx_context_submit(ctx.get(), stop.get(), &id), MMX_INVALID_ARGUMENT, "stop token");
  RequestPtr bias = make_request({5}, 2);
  MMX_ASSERT_OK(mmx_request_set_logit_bias(bias.get(), 1 << 20, -1.0f));
  expect_status(mmx_context_submit(ctx.get(), bias.get(), &id), MMX_INVALID_ARGUMENT, "logit bias token");
  RequestPtr pos = make_request({5, 6}, 2);
  MMX_ASSERT_OK(mmx_request_add_logits_position(pos.get(), 2));
  expect_status(mmx_context_submit(ctx.get(), pos.get(), &id), MMX_INVALID_ARGUMENT, "logits position 2");

  int32_t bad = kTestVocab + 3;
  char buf[8];
  size_t needed = 0;
  expect_status(mmx_detokenize(model_, &bad, 1, buf, sizeof buf, &needed), MMX_INVALID_ARGUMENT, "vocabulary");
  mmx_layer_kind kind;
  expect_status(mmx_model_layer_kind(model_, 4, &kind), MMX_INVALID_ARGUMENT, "layer 4");
  int32_t tid = 0;
  expect_status(mmx_model_token_id(model_, "<no such token>", &tid), MMX_NOT_FOUND, "<no such token>");
}

TEST_F(Misuse, CapacityRefusals) {
  ContextPtr ctx = make_context(model_, {{MMX_CTX_OPT_MAX_CONTEXT, 64}});
  mmx_request_id id = 0;
  RequestPtr over = make_request(std::vector<int32_t>(60, 9), 10);
  expect_status(mmx_context_submit(ctx.get(), over.get(), &id), MMX_CAPACITY, "context limit is 64");
  RequestPtr way_over = make_request(std::vector<int32_t>(65, 9), 0);
  expect_status(mmx_context_submit(ctx.get(), way_over.get(), &id), MMX_CAPACITY, "65 prompt");
  RequestPtr fits = make_request(std::vector<int32_t>(54, 9), 10);
  MMX_EXPECT_OK(mmx_context_submit(ctx.get(), fits.get(), &id));

  // A state budget too small for one sequence: refused at submit, naming the option.
  ContextPtr tiny = make_context(model_, {{MMX_CTX_OPT_KV_MEMORY_BYTES, 1000}});
  RequestPtr one = make_request({1, 2, 3}, 4);
  expect_status(mmx_context_submit(tiny.get(), one.get(), &id), MMX_CAPACITY, "MMX_CTX_OPT_KV_MEMORY_BYTES");

  // The queue limit, and a batch is all or nothing (the bad request's index is named).
  ContextPtr small = make_context(model_, {{MMX_CTX_OPT_MAX_QUEUED, 2}});
  RequestPtr ok = make_request({1, 2, 3}, 2);
  const mmx_request* three[3] = {ok.get(), ok.get(), ok.get()};
  mmx_request_id ids[3] = {0, 0, 0};
  expect_status(mmx_context_submit_batch(small.get(), three, 3, ids), MMX_CAPACITY, "MMX_CTX_OPT_MAX_QUEUED");
  RequestPtr bad = make_request({1, 99999}, 2);
  const mmx_request* mixed[2] = {ok.get(), bad.get()};
  expect_status(mmx_context_submit_batch(small.get(), mixed, 2, ids), MMX_INVALID_ARGUMENT, "request 1 of the batch");
  mmx_context_stats stats{};
  stats.struct_size = sizeof stats;
  MMX_ASSERT_OK(mmx_context_stats_get(small.get(), &stats));
  EXPECT_EQ(stats.submitted_requests, 0u) << "a failed batch submits nothing";
}

TEST_F(Misuse, BuffersTooSmallReportTheNeededSize) {
  const std::string text = "hello world, hello tokens";
  size_t needed = 0;
  // NULL/0 asks for the size (reported as BUFFER_TOO_SMALL with *n_needed set).
  expect_status(mmx_tokenize(model_, text.data(), text.size(), MMX_TOKENIZE_ADD_BOS, nullptr, 0, &needed),
                MMX_BUFFER_TOO_SMALL, "holds 0");
  ASSERT_GT(needed, 2u);
  std::vector<int32_t> tokens(needed, -5);
  size_t again = 0;
  expect_status(mmx_tokenize(model_, text.data(), text.size(), MMX_TOKENIZE_ADD_BOS, tokens.data(), 1, &again),
                MMX_BUFFER_TOO_SMALL, "holds 1");
  EXPECT_EQ(again, needed);
  EXPECT_EQ(tokens[0], -5) << "nothing is written into a buffer that is too small";
  MMX_ASSERT_OK(mmx_tokenize(model_, text.data(), text.size(), MMX_TOKENIZE_ADD_BOS, tokens.data(), tokens.size(), &again));
  EXPECT_EQ(tokens[0], kTestBos);
  expect_status(mmx_tokenize(model_, text.data(), text.size(), 8, tokens.data(), tokens.size(), &again),
                MMX_INVALID_ARGUMENT, "flags");

  expect_status(mmx_detokenize(model_, tokens.data() + 1, tokens.size() - 1, nullptr, 0, &needed),
                MMX_BUFFER_TOO_SMALL, "bytes");
  EXPECT_EQ(needed, text.size() + 1) << "the needed size counts the NUL";
  std::string out(needed, 'x');
  expect_status(mmx_detokenize(model_, tokens.data() + 1, tokens.size() - 1, &out[0], needed - 1, &again),
                MMX_BUFFER_TOO_SMALL, "bytes");
  EXPECT_EQ(out[0], 'x');
  MMX_ASSERT_OK(mmx_detokenize(model_, tokens.data() + 1, tokens.size() - 1, &out[0], needed, &again));
  EXPECT_STREQ(out.c_str(), text.c_str());

  const char* chat = "[{\"role\": \"user\", \"content\": \"hi\"}]";
  expect_status(mmx_apply_chat_format(model_, chat, 1, nullptr, 0, &needed), MMX_BUFFER_TOO_SMALL, "bytes");
  std::string rendered(needed, '\0');
  MMX_ASSERT_OK(mmx_apply_chat_format(model_, chat, 1, &rendered[0], needed, &again));
  EXPECT_NE(rendered.find("hi"), std::string::npos) << rendered;
  expect_status(mmx_apply_chat_format(model_, "[{\"role\": \"robot\"", 1, &rendered[0], needed, &again),
                MMX_INVALID_ARGUMENT, "");
}

TEST_F(Misuse, EventsAndIds) {
  ContextPtr ctx = make_context(model_);
  mmx_event* e = nullptr;
  expect_status(mmx_context_next_event(ctx.get(), 12345, 0, &e), MMX_NOT_FOUND, "12345");
  EXPECT_EQ(e, nullptr);
  expect_status(mmx_context_next_event(ctx.get(), 0, 10, &e), MMX_TIMEOUT, "10 ms");
  expect_status(mmx_context_next_event(ctx.get(), 0, -7, &e), MMX_INVALID_ARGUMENT, "timeout_ms");
  expect_status(mmx_context_cancel(ctx.get(), 777), MMX_NOT_FOUND, "777");
  expect_status(mmx_context_cancel(ctx.get(), 0), MMX_NOT_FOUND, "0");

  // Submitting the same request object twice: it is copied, both run.
  RequestPtr r = make_request({3, 1, 4, 1, 5}, 2);
  mmx_request_id a = submit(ctx.get(), r.get());
  mmx_request_id b = submit(ctx.get(), r.get());
  EXPECT_NE(a, b);
  mmx_request_free(r.release());  // freeing the description does not affect the submitted copies
  Outcome oa = collect(ctx.get(), a), ob = collect(ctx.get(), b);
  EXPECT_EQ(oa.tokens, ob.tokens);
  expect_status(mmx_context_cancel(ctx.get(), a), MMX_NOT_FOUND, "already finished");
  expect_status(mmx_context_next_event(ctx.get(), a, 0, &e), MMX_NOT_FOUND, "final event");

  // Accessors of the wrong event type.
  RequestPtr s = make_request({3, 1, 4}, 1);
  mmx_request_id id = submit(ctx.get(), s.get());
  MMX_ASSERT_OK(mmx_context_next_event(ctx.get(), id, 60000, &e));
  EventPtr progress(e);
  ASSERT_EQ(mmx_event_get_type(progress.get()), MMX_EVENT_PROGRESS);
  int64_t x, y;
  int32_t t;
  float lp;
  expect_status(mmx_event_counts(progress.get(), &x, &y), MMX_INVALID_ARGUMENT, "not a FINISHED event");
  expect_status(mmx_event_top(progress.get(), 0, &t, &lp), MMX_INVALID_ARGUMENT, "not a TOKEN event");
  expect_status(mmx_event_progress(progress.get(), nullptr, &y), MMX_INVALID_ARGUMENT, "out_done");
  EXPECT_EQ(mmx_event_token(progress.get()), -1);
  size_t len = 99;
  EXPECT_STREQ(mmx_event_text(progress.get(), &len), "");
  EXPECT_EQ(len, 0u);
  MMX_ASSERT_OK(mmx_context_next_event(ctx.get(), id, 60000, &e));
  EventPtr token(e);
  ASSERT_EQ(mmx_event_get_type(token.get()), MMX_EVENT_TOKEN);
  expect_status(mmx_event_top(token.get(), 0, &t, &lp), MMX_INVALID_ARGUMENT, "0 top logprobs");
  MMX_ASSERT_OK(mmx_context_next_event(ctx.get(), id, 60000, &e));
  EventPtr fin(e);
  mmx_prefix* p = nullptr;
  expect_status(mmx_event_prefix(fin.get(), &p), MMX_INVALID_ARGUMENT, "PREFIX_READY");
  EXPECT_EQ(p, nullptr);
}

TEST_F(Misuse, StructSizes) {
  mmx_model_info info;
  std::memset(&info, 0x5A, sizeof info);
  info.struct_size = 0;
  expect_status(mmx_model_get_info(model_, &info), MMX_INVALID_ARGUMENT, "struct_size");
  // An older, shorter struct: only the fields that fit are written.
  info.struct_size = uint32_t(offsetof(mmx_model_info, num_layers));
  MMX_ASSERT_OK(mmx_model_get_info(model_, &info));
  EXPECT_EQ(info.vocab_size, kTestVocab);
  EXPECT_EQ(info.num_layers, 0x5A5A5A5A) << "beyond struct_size nothing is written";
  info.struct_size = sizeof info;
  MMX_ASSERT_OK(mmx_model_get_info(model_, &info));
  EXPECT_EQ(info.num_layers, 4);
  EXPECT_EQ(info.num_softmax_layers, 1);
  EXPECT_EQ(info.eos_token, kTestEos);
  EXPECT_EQ(info.bos_token, kTestBos);
  EXPECT_EQ(info.context_limit, 4096);
  EXPECT_EQ(std::string(info.backend), test_backend()) << "the backend asked for (MMX_TEST_BACKEND)";
  EXPECT_GT(std::strlen(info.fingerprint), 8u);
  EXPECT_GT(info.parameter_count, 0u);
  if (!is_cuda_backend()) {
    EXPECT_EQ(info.weight_bytes, info.parameter_count * 4) << "the CPU backend holds fp32";
  } else {
    // Default weights on CUDA (W8A16): linear projections and experts as int8 (one byte each
    // plus an fp32 scale per row), embeddings, lm_head and norms bf16, routers fp32. Every
    // weight takes at least a byte, and with most of them int8 the average stays under two
    // (about 1.4 on this model) -- well under the CPU's four.
    EXPECT_GE(info.weight_bytes, info.parameter_count) << "no weight is held in under a byte";
    EXPECT_LT(info.weight_bytes, info.parameter_count * 2) << "most weights are int8 on CUDA";
  }
}

TEST_F(Misuse, ModelWithoutTokenizer) {
  TempDir dir;
  write_test_model(dir.path(), 3, /*with_tokenizer=*/false);
  ModelPtr m = load_model(dir.path());
  ASSERT_NE(m, nullptr);
  ContextPtr ctx = make_context(m.get());
  RequestPtr r = make_request({}, 2);
  MMX_ASSERT_OK(mmx_request_append_text(r.get(), "hi", 2));
  mmx_request_id id;
  expect_status(mmx_context_submit(ctx.get(), r.get(), &id), MMX_UNSUPPORTED, "tokenizer");
  size_t needed;
  expect_status(mmx_tokenize(m.get(), "hi", 2, 0, nullptr, 0, &needed), MMX_UNSUPPORTED, "tokenizer");
  // Token prompts work; the output has no text.
  RequestPtr t = make_request({1, 2, 3}, 3);
  Outcome o = run(ctx.get(), t.get());
  EXPECT_EQ(o.generated_tokens, int64_t(o.tokens.size()));
  EXPECT_EQ(o.text, "");
}

TEST_F(Misuse, LoadFailuresAndDevices) {
  mmx_model* m = nullptr;
  Status st(mmx_model_load("/nonexistent/model/dir", nullptr, nullptr, nullptr, &m));
  EXPECT_NE(mmx_status_code(st.get()), MMX_OK);
  EXPECT_NE(std::string(mmx_status_message(st.get())).find("/nonexistent/model/dir"), std::string::npos)
      << describe(st.get());
  EXPECT_EQ(m, nullptr);

  // A progress callback that says stop: MMX_CANCELLED.
  Status cancelled(mmx_model_load(dir_->path().c_str(), nullptr,
                                  [](double, const char*, void*) -> int32_t { return 1; }, nullptr, &m));
  EXPECT_EQ(mmx_status_code(cancelled.get()), MMX_CANCELLED) << describe(cancelled.get());
  EXPECT_EQ(m, nullptr);

  int32_t count = -1;
  MMX_ASSERT_OK(mmx_device_count(&count));
  EXPECT_GE(count, 0);
  mmx_device_info info{};
  info.struct_size = sizeof info;
  expect_status(mmx_device_info_get(count, &info), MMX_INVALID_ARGUMENT, "out of range");
  expect_status(mmx_device_info_get(-1, &info), MMX_INVALID_ARGUMENT, "out of range");
  if (count > 0) {
    MMX_ASSERT_OK(mmx_device_info_get(0, &info));
    EXPECT_EQ(info.index, 0);
    EXPECT_GE(info.compute_major, 7);
    EXPECT_GT(info.multiprocessors, 0);
    EXPECT_GT(info.total_memory_bytes, info.free_memory_bytes);
    EXPECT_GT(std::strlen(info.name), 0u);
    std::printf("device 0: %s, sm_%d%d, %d SMs, %.1f GiB\n", info.name, info.compute_major, info.compute_minor,
                info.multiprocessors, double(info.total_memory_bytes) / (1 << 30));
  }
}

TEST_F(Misuse, LogCallback) {
  struct Log {
    std::mutex mu;
    std::vector<std::pair<mmx_log_level, std::string>> lines;
  } log;
  MMX_ASSERT_OK(mmx_set_log_callback(
      [](mmx_log_level level, const char* msg, void* user) {
        auto* l = static_cast<Log*>(user);
        std::lock_guard<std::mutex> lock(l->mu);
        l->lines.emplace_back(level, msg);
      },
      &log, MMX_LOG_DEBUG));
  ModelPtr m = load_model(dir_->path());  // logs at INFO when ready
  MMX_ASSERT_OK(mmx_set_log_callback(nullptr, nullptr, MMX_LOG_WARN));
  {
    std::lock_guard<std::mutex> lock(log.mu);
    bool found = false;
    for (const auto& [level, line] : log.lines) found |= line.find("ready") != std::string::npos;
    EXPECT_TRUE(found) << "expected the load to log at INFO";
  }
  expect_status(mmx_set_log_callback(nullptr, nullptr, static_cast<mmx_log_level>(9)), MMX_INVALID_ARGUMENT,
                "min_level");
}

TEST_F(Misuse, WrongCallOrder) {
  // One sequence at a time: the second request, which uses a callback, stays queued.
  ContextPtr ctx = make_context(model_, {{MMX_CTX_OPT_MAX_SEQUENCES, 1}, {MMX_CTX_OPT_PREFILL_CHUNK, 4}});
  RequestPtr longer = make_request(std::vector<int32_t>(300, 7), 3000);
  Status(mmx_request_set_int(longer.get(), MMX_REQ_IGNORE_EOS, 1));
  mmx_request_id first = submit(ctx.get(), longer.get());
  struct Freer {
    mmx_context* ctx;
    std::atomic<int> finals{0};
  } freer{ctx.get()};
  RequestPtr pushed = make_request({1, 2, 3}, 2);
  MMX_ASSERT_OK(mmx_request_set_callback(pushed.get(), [](const mmx_event* e, void* user) {
    auto* f = static_cast<Freer*>(user);
    mmx_context_free(f->ctx);  // from its own callback: logged and ignored, never a deadlock
    if (mmx_event_get_type(e) == MMX_EVENT_FINISHED) ++f->finals;
  }, &freer));
  mmx_request_id second = submit(ctx.get(), pushed.get());
  mmx_event* e = nullptr;
  expect_status(mmx_context_next_event(ctx.get(), second, 0, &e), MMX_STATE, "callback");
  MMX_ASSERT_OK(mmx_context_cancel(ctx.get(), first));
  EXPECT_EQ(collect(ctx.get(), first).reason, MMX_FINISH_CANCELLED);
  for (int i = 0; i < 6000 && freer.finals == 0; ++i) std::this_thread::sleep_for(std::chrono::milliseconds(10));
  EXPECT_EQ(freer.finals.load(), 1);
  // The context survived its callback's attempt to free it.
  RequestPtr again = make_request({4, 5}, 1);
  EXPECT_EQ(run(ctx.get(), again.get()).finished_events, 1);
}

}  // namespace
