// Prefixes: answering from a prefix (in memory, or saved and reloaded) gives what processing
// the whole document in one request gives; damaged files and files of other models are refused.
#include <gtest/gtest.h>

#include "api_test_support.h"

using namespace mmx_test;

namespace {

class Prefixes : public SharedModelTest<Prefixes> {
 protected:

  static std::vector<int32_t> tokens(size_t n, uint32_t salt) {
    std::vector<int32_t> t(n);
    for (size_t i = 0; i < n; ++i) t[i] = int32_t((i * 31 + salt * 977 + 5) % 1499);
    return t;
  }
  // Makes a prefix of `doc` (optionally continuing `base`).
  static PrefixPtr make_prefix(mmx_context* ctx, const std::vector<int32_t>& doc, mmx_prefix* base = nullptr) {
    RequestPtr r = make_request(doc, 100);  // max_tokens is ignored by prefix requests
    Status(mmx_request_set_int(r.get(), MMX_REQ_MAKE_PREFIX, 1));
    if (base) Status(mmx_request_set_prefix(r.get(), base));
    Outcome o = run(ctx, r.get());
    EXPECT_EQ(o.reason, MMX_FINISH_PREFIX_READY) << o.error_message;
    EXPECT_EQ(o.generated_tokens, 0);
    return std::move(o.prefix);
  }
  // The question's logits rows (every position) and a few greedy tokens, with their top-2
  // logprobs (what expect_same_greedy needs of the reference).
  static Outcome ask(mmx_context* ctx, const std::vector<int32_t>& prompt, int64_t first_row, mmx_prefix* prefix) {
    RequestPtr r = make_request(prompt, 6);
    Status(mmx_request_set_int(r.get(), MMX_REQ_IGNORE_EOS, 1));
    Status(mmx_request_set_int(r.get(), MMX_REQ_TOP_LOGPROBS, 2));
    for (int64_t p = first_row; p < int64_t(prompt.size()); ++p) Status(mmx_request_add_logits_position(r.get(), p));
    if (prefix) Status(mmx_request_set_prefix(r.get(), prefix));
    return run(ctx, r.get());
  }
  // The answer from a prefix is the answer to the whole document: its rows within
  // logits_tolerance() (the chunk boundaries differ: 1e-4 on the CPU, bf16-level on CUDA) and
  // the same greedy tokens (on CUDA up to the first step too close to call).
  static void expect_same_rows(const Outcome& whole, const Outcome& from_prefix) {
    ASSERT_EQ(whole.logits.size(), from_prefix.logits.size());
    ASSERT_FALSE(whole.logits.empty());
    for (size_t i = 0; i < whole.logits.size(); ++i) {
      const auto& a = whole.logits[i].second;
      const auto& b = from_prefix.logits[i].second;
      ASSERT_EQ(a.size(), b.size());
      EXPECT_LT(logits_error(b, a), logits_tolerance()) << "question position " << i;
    }
    // The last row is the question's last position: the scale of the decode rows.
    expect_same_greedy(whole, from_prefix, max_abs_logit(whole.logits.back().second), "answer from the prefix");
  }

};

TEST_F(Prefixes, SavedAndReloadedPrefixMatchesTheWholeDocument) {
  const std::vector<int32_t> doc = tokens(150, 1), question = tokens(12, 2);
  std::vector<int32_t> whole_prompt = doc;
  whole_prompt.insert(whole_prompt.end(), question.begin(), question.end());

  ContextPtr ctx = make_context(model_, {{MMX_CTX_OPT_PREFILL_CHUNK, 64}});
  Outcome whole = ask(ctx.get(), whole_prompt, int64_t(doc.size()), nullptr);
  ASSERT_EQ(whole.logits.size(), question.size());

  PrefixPtr prefix = make_prefix(ctx.get(), doc);
  ASSERT_NE(prefix, nullptr);
  int64_t n = 0;
  uint64_t bytes = 0;
  MMX_ASSERT_OK(mmx_prefix_token_count(prefix.get(), &n));
  MMX_ASSERT_OK(mmx_prefix_state_bytes(prefix.get(), &bytes));
  EXPECT_EQ(n, int64_t(doc.size()));
  EXPECT_GT(bytes, 0u);
  mmx_context_stats stats{};
  stats.struct_size = sizeof stats;
  MMX_ASSERT_OK(mmx_context_stats_get(ctx.get(), &stats));
  EXPECT_EQ(stats.state_bytes_in_use, bytes) << "a live prefix counts against the state budget";

  // In memory, asked twice (the prefix is not consumed).
  expect_same_rows(whole, ask(ctx.get(), question, 0, prefix.get()));
  expect_same_rows(whole, ask(ctx.get(), question, 0, prefix.get()));

  // Saved, reloaded into a fresh context.
  const std::string file = dir_->file("doc.mmxprefix");
  MMX_ASSERT_OK(mmx_prefix_save(prefix.get(), file.c_str()));
  ContextPtr fresh = make_context(model_);
  mmx_prefix* loaded_raw = nullptr;
  MMX_ASSERT_OK(mmx_prefix_load(fresh.get(), file.c_str(), &loaded_raw));
  PrefixPtr loaded(loaded_raw);
  MMX_ASSERT_OK(mmx_prefix_token_count(loaded.get(), &n));
  EXPECT_EQ(n, int64_t(doc.size()));
  expect_same_rows(whole, ask(fresh.get(), question, 0, loaded.get()));

  prefix.reset();
  MMX_ASSERT_OK(mmx_context_stats_get(ctx.get(), &stats));
  EXPECT_EQ(stats.state_bytes_in_use, 0u) << "freeing the last reference returns the memory";
}

TEST_F(Prefixes, PrefixOfAPrefixAndOutlivingItsContext) {
  const std::vector<int32_t> part1 = tokens(40, 3), part2 = tokens(30, 4), question = tokens(5, 5);
  std::vector<int32_t> whole_prompt = part1;
  whole_prompt.insert(whole_prompt.end(), part2.begin(), part2.end());
  whole_prompt.insert(whole_prompt.end(), question.begin(), question.end());

  PrefixPtr chained;
  {
    ContextPtr ctx = make_context(model_);
    PrefixPtr first = make_prefix(ctx.get(), part1);
    ASSERT_NE(first, nullptr);
    chained = make_prefix(ctx.get(), part2, first.get());
    ASSERT_NE(chained, nullptr);
  }  // the prefix outlives the context that made it
  int64_t n = 0;
  MMX_ASSERT_OK(mmx_prefix_token_count(chained.get(), &n));
  EXPECT_EQ(n, 70);

  ContextPtr ctx = make_context(model_);
  Outcome whole = ask(ctx.get(), whole_prompt, 70, nullptr);
  expect_same_rows(whole, ask(ctx.get(), question, 0, chained.get()));
}

TEST_F(Prefixes, DamagedFilesAndOtherModels) {
  ContextPtr ctx = make_context(model_);
  PrefixPtr prefix = make_prefix(ctx.get(), tokens(20, 6));
  ASSERT_NE(prefix, nullptr);
  const std::string good = dir_->file("good.mmxprefix");
  MMX_ASSERT_OK(mmx_prefix_save(prefix.get(), good.c_str()));
  const std::string bytes = read_file(good);

  auto load_status = [&](const std::string& content) {
    const std::string path = dir_->file("bad.mmxprefix");
    write_file(path, content);
    mmx_prefix* p = nullptr;
    Status st(mmx_prefix_load(ctx.get(), path.c_str(), &p));
    EXPECT_EQ(p, nullptr);
    mmx_prefix_free(p);
    return std::make_pair(mmx_status_code(st.get()), std::string(mmx_status_message(st.get())));
  };

  EXPECT_EQ(load_status("").first, MMX_FORMAT);
  EXPECT_EQ(load_status("this is not a prefix file at all, just some text").first, MMX_FORMAT);
  for (size_t cut : {size_t(8), size_t(13), size_t(40), bytes.size() / 2, bytes.size() - 1}) {
    auto [code, message] = load_status(bytes.substr(0, cut));
    EXPECT_EQ(code, MMX_FORMAT) << "truncated at " << cut << ": " << message;
  }
  for (size_t at : {size_t(9), size_t(20), bytes.size() / 2, bytes.size() - 3}) {
    std::string damaged = bytes;
    damaged[at] = char(damaged[at] ^ 0x40);
    auto [code, message] = load_status(damaged);
    EXPECT_EQ(code, MMX_FORMAT) << "byte " << at << " flipped: " << message;
  }
  EXPECT_EQ(load_status(bytes + "x").first, MMX_FORMAT);

  mmx_prefix* p = nullptr;
  Status missing(mmx_prefix_load(ctx.get(), dir_->file("missing.mmxprefix").c_str(), &p));
  EXPECT_EQ(mmx_status_code(missing.get()), MMX_NOT_FOUND) << describe(missing.get());
  Status unwritable(mmx_prefix_save(prefix.get(), dir_->file("no/such/dir/x").c_str()));
  EXPECT_EQ(mmx_status_code(unwritable.get()), MMX_IO) << describe(unwritable.get());

  // Another model (same shapes, other weights): its fingerprint differs.
  TempDir other_dir;
  write_test_model(other_dir.path(), /*seed=*/2);
  ModelPtr other = load_model(other_dir.path());
  ContextPtr other_ctx = make_context(other.get());
  Status foreign(mmx_prefix_load(other_ctx.get(), good.c_str(), &p));
  EXPECT_EQ(mmx_status_code(foreign.get()), MMX_INVALID_ARGUMENT) << describe(foreign.get());
  EXPECT_NE(std::string(mmx_status_message(foreign.get())).find("another model"), std::string::npos);
  RequestPtr r = make_request({1, 2}, 2);
  MMX_ASSERT_OK(mmx_request_set_prefix(r.get(), prefix.get()));
  mmx_request_id id = 0;
  Status wrong_model(mmx_context_submit(other_ctx.get(), r.get(), &id));
  EXPECT_EQ(mmx_status_code(wrong_model.get()), MMX_INVALID_ARGUMENT) << describe(wrong_model.get());

  // The good file still loads.
  MMX_ASSERT_OK(mmx_prefix_load(ctx.get(), good.c_str(), &p));
  mmx_prefix_free(p);
}

TEST_F(Prefixes, DemoModelPrefixWhenBundled) {
  const std::string demo = source_path("models/demo");
  if (!file_exists(demo + "/config.json")) GTEST_SKIP() << "the demo model is not bundled yet";
  ModelPtr m = load_model(demo);
  ASSERT_NE(m, nullptr);
  auto tokenize = [&](const std::string& text) {
    size_t n = 0;
    Status(mmx_tokenize(m.get(), text.data(), text.size(), 0, nullptr, 0, &n));
    std::vector<int32_t> t(n);
    Status st(mmx_tokenize(m.get(), text.data(), text.size(), 0, t.data(), t.size(), &n));
    EXPECT_EQ(mmx_status_code(st.get()), MMX_OK) << describe(st.get());
    return t;
  };
  const std::vector<int32_t> doc = tokenize("The library processes a long document once and answers many questions. ");
  const std::vector<int32_t> question = tokenize("What does the library do?");
  std::vector<int32_t> whole_prompt = doc;
  whole_prompt.insert(whole_prompt.end(), question.begin(), question.end());

  ContextPtr ctx = make_context(m.get());
  Outcome whole = ask(ctx.get(), whole_prompt, int64_t(doc.size()), nullptr);
  PrefixPtr prefix = make_prefix(ctx.get(), doc);
  ASSERT_NE(prefix, nullptr);
  const std::string file = dir_->file("demo.mmxprefix");
  MMX_ASSERT_OK(mmx_prefix_save(prefix.get(), file.c_str()));
  mmx_prefix* loaded = nullptr;
  MMX_ASSERT_OK(mmx_prefix_load(ctx.get(), file.c_str(), &loaded));
  PrefixPtr reloaded(loaded);
  expect_same_rows(whole, ask(ctx.get(), question, 0, reloaded.get()));
}

}  // namespace
