// The bundled demo model (models/demo) on the CPU backend, against what transformers measured on
// the same files when the model was trained (tests/data/demo, written by tools/train_demo):
// tokenizer agreement, greedy token ids, held-out perplexity and pass-key retrieval.
#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <cstdio>
#include <filesystem>
#include <memory>
#include <nlohmann/json.hpp>
#include <sstream>
#include <stdexcept>
#include <string>
#include <vector>

#include "backend/backend.h"
#include "model/forward.h"
#include "model/model.h"
#include "test_util.h"
#include "tokenizer/tokenizer.h"

namespace {

using nlohmann::json;

constexpr int64_t kChunk = 512;              // prefill chunk (tokens per step)
constexpr double kPerplexitySlack = 1.02;    // CPU fp32 may be at most 2% worse than transformers
constexpr double kTieMargin = 1e-3;          // greedy may only diverge where top-2 logits tie
constexpr int kPasskeyNeeded = 18;           // of 20
constexpr int kPasskeyMaxNew = 16;

json read_json(const std::string& rel) { return json::parse(mmx_test::read_file(mmx_test::data_path(rel))); }

std::vector<json> read_jsonl(const std::string& rel) {
  std::vector<json> out;
  std::istringstream in(mmx_test::read_file(mmx_test::data_path(rel)));
  for (std::string line; std::getline(in, line);)
    if (!line.empty()) out.push_back(json::parse(line));
  return out;
}

std::string first_number(const std::string& s) {
  const size_t a = s.find_first_of("0123456789");
  if (a == std::string::npos) return "";
  const size_t b = s.find_first_not_of("0123456789", a);
  return s.substr(a, b == std::string::npos ? std::string::npos : b - a);
}

class DemoModel : public ::testing::Test {
 protected:
  static void SetUpTestSuite() {
    model_ = mmx::Model::load(mmx_test::source_path("models/demo"));
    mmx::BackendOptions opts;
    opts.kind = "cpu";
    backend_ = mmx::create_backend(opts);
    backend_->prepare(*model_);
  }
  static void TearDownTestSuite() {
    backend_.reset();
    model_.reset();
  }

  const mmx::Tokenizer& tok() const {
    const mmx::Tokenizer* t = model_->tokenizer();
    if (!t) throw std::runtime_error("models/demo has no tokenizer");
    return *t;
  }

  // Feeds `ids` to `st` in chunks of kChunk. With `all_rows` returns the logits of every
  // position ([ids.size(), vocab]); otherwise only those of the last position.
  std::vector<float> feed(mmx::SeqState* st, const std::vector<int32_t>& ids, bool all_rows) {
    mmx::Forward fwd(*model_, *backend_);
    std::vector<float> out, logits;
    for (size_t at = 0; at < ids.size(); at += size_t(kChunk)) {
      const size_t n = std::min(size_t(kChunk), ids.size() - at);
      mmx::StepBatch batch;
      batch.seqs = {{st, int64_t(n), st->tokens}};
      std::vector<int32_t> rows;
      for (size_t i = all_rows ? 0 : n - 1; i < n; ++i) rows.push_back(int32_t(i));
      fwd.run(batch, std::vector<int32_t>(ids.begin() + long(at), ids.begin() + long(at + n)), rows, &logits);
      if (all_rows) out.insert(out.end(), logits.begin(), logits.end());
      else if (at + n == ids.size()) out = logits;
    }
    return out;
  }

  // Greedy decoding after `prompt`: up to max_new tokens, stopping after `stop` (if >= 0).
  std::vector<int32_t> greedy(const std::vector<int32_t>& prompt, int max_new, int32_t stop) {
    auto st = backend_->new_state();
    std::vector<float> logits = feed(st.get(), prompt, false);
    std::vector<int32_t> out;
    while (int(out.size()) < max_new) {
      const int32_t next = int32_t(std::max_element(logits.begin(), logits.end()) - logits.begin());
      out.push_back(next);
      if (next == stop || int(out.size()) == max_new) break;
      logits = feed(st.get(), {next}, false);
    }
    return out;
  }

  static std::shared_ptr<mmx::Model> model_;
  static std::unique_ptr<mmx::Backend> backend_;
};

std::shared_ptr<mmx::Model> DemoModel::model_;
std::unique_ptr<mmx::Backend> DemoModel::backend_;

TEST_F(DemoModel, ShapeAndFiles) {
  const mmx::ModelConfig& c = model_->config();
  // The demo exists to exercise every part of the architecture.
  EXPECT_GT(c.softmax_layer_count(), 0);
  EXPECT_LT(c.softmax_layer_count(), c.layers);
  EXPECT_LT(c.rotary_dim, c.head_dim);
  EXPECT_GE(c.experts, 4);
  EXPECT_EQ(c.top_k, 2);
  EXPECT_EQ(tok().kind(), "sentencepiece");
  EXPECT_EQ(tok().vocab_size(), c.vocab);
  EXPECT_EQ(tok().token_id("<beginning_of_sentence>"), 1);
  EXPECT_EQ(tok().token_id("<end_of_sentence>"), 2);
  EXPECT_EQ(tok().eos_id(), 2);
  uint64_t bytes = 0;  // the quick start downloads nothing: the model ships in the repository
  for (const auto& e : std::filesystem::directory_iterator(mmx_test::source_path("models/demo")))
    bytes += e.file_size();
  EXPECT_LE(bytes, 25u * 1000 * 1000);
}

TEST_F(DemoModel, TokenizerMatchesTraining) {
  for (const json& c : read_json("demo/greedy.json")) {
    const std::string prompt = c["prompt"];
    EXPECT_EQ(tok().encode(prompt, true), c["prompt_ids"].get<std::vector<int32_t>>()) << prompt;
    EXPECT_EQ(tok().decode(c["prompt_ids"].get<std::vector<int32_t>>()), prompt);
  }
  for (const json& d : read_jsonl("demo/passkey_eval.jsonl"))
    EXPECT_EQ(int64_t(tok().encode(d["prompt"].get<std::string>(), true).size()), d["n_tokens"].get<int64_t>());
  const json held = read_json("demo/heldout.json");
  EXPECT_EQ(int64_t(tok().encode(mmx_test::read_file(mmx_test::data_path("demo/heldout.txt")), true).size()),
            held["tokens"].get<int64_t>());
}

// Token ids must equal transformers' greedy ids; a divergence is allowed only at a step where
// transformers' top-2 logits were within kTieMargin (fp32 rounding may then pick either), and
// the rest of that case is not compared.
TEST_F(DemoModel, GreedyMatchesTransformers) {
  for (const json& c : read_json("demo/greedy.json")) {
    const auto want = c["ids"].get<std::vector<int32_t>>();
    const auto margins = c["margins"].get<std::vector<double>>();
    const auto got = greedy(c["prompt_ids"].get<std::vector<int32_t>>(), int(want.size()), -1);
    ASSERT_EQ(got.size(), want.size());
    for (size_t i = 0; i < want.size(); ++i) {
      if (got[i] == want[i]) continue;
      EXPECT_LT(margins[i], kTieMargin) << "step " << i << " of " << c["prompt"] << ": got " << got[i]
                                        << ", transformers " << want[i] << " (margin " << margins[i] << ")";
      break;
    }
  }
}

TEST_F(DemoModel, HeldoutPerplexity) {
  const json held = read_json("demo/heldout.json");
  const auto ids = tok().encode(mmx_test::read_file(mmx_test::data_path("demo/heldout.txt")), true);
  auto st = backend_->new_state();
  const std::vector<float> logits = feed(st.get(), ids, true);
  const size_t V = size_t(model_->config().vocab);
  double nll = 0;
  for (size_t p = 0; p + 1 < ids.size(); ++p) {  // position p predicts token p+1
    const float* row = logits.data() + p * V;
    const double mx = *std::max_element(row, row + V);
    double sum = 0;
    for (size_t v = 0; v < V; ++v) sum += std::exp(double(row[v]) - mx);
    nll += mx + std::log(sum) - row[ids[p + 1]];
  }
  const double ppl = std::exp(nll / double(ids.size() - 1));
  const double want = held["perplexity"].get<double>();
  std::printf("held-out perplexity %.4f (transformers %.4f) over %zu tokens\n", ppl, want, ids.size());
  EXPECT_LE(ppl, want * kPerplexitySlack);
}

TEST_F(DemoModel, PasskeyRetrieval) {
  const std::vector<json> docs = read_jsonl("demo/passkey_eval.jsonl");
  ASSERT_EQ(docs.size(), 20u);
  int hits = 0;
  for (const json& d : docs) {
    auto ids = tok().encode(d["prompt"].get<std::string>(), true);
    auto out = greedy(ids, kPasskeyMaxNew, tok().eos_id());
    if (!out.empty() && out.back() == tok().eos_id()) out.pop_back();
    const std::string answer = tok().decode(out);
    const bool ok = first_number(answer) == d["passkey"].get<std::string>();
    hits += ok;
    if (!ok)
      std::printf("miss: %zu tokens, depth %.2f, key %s, answer %s (transformers: %s)\n", ids.size(),
                  d["depth"].get<double>(), d["passkey"].get<std::string>().c_str(), json(answer).dump().c_str(),
                  d["answer"].dump().c_str());
  }
  std::printf("pass-key retrieval %d/%zu\n", hits, docs.size());
  EXPECT_GE(hits, kPasskeyNeeded);
}

}  // namespace
