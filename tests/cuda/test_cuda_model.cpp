// Whole forward passes (mmx::Forward) on the CUDA backend against the CPU reference, compared
// by the per-row 2-norm relative error ||got_r - ref_r|| / ||ref_r|| (the max-abs measure
// max |a - b| / max |b| is printed beside it for diagnostics):
//   random models (identical weights on both sides)     rows within 1e-2 (bf16) / 2e-2 (W8A16)
//   the trained demo model on held-out text             the issue's bounds, 1e-2 / 2e-2, on each
//                                                       prompt's logits; rows within twice that
//   the golden fixtures (transformers fp32)             8e-2: see kFixtureTolerance
// and the same greedy continuations. W8A16 logits are compared with the CPU reference on the
// same int8 weights (host-quantised by the shared rule), so the bound measures the device
// path, not the quantisation.
//
// Routing flips: with top-k < experts, a token whose k-th and (k+1)-th router probabilities
// nearly tie may legitimately pick another expert under bf16 activations than on the fp32 CPU,
// which moves its logits row far. The CPU backend's route_observer reports each token's router
// margin (the smallest over layers); a row over tolerance whose own token's margin is below
// kNearTie is exempt, counted and printed, and a test case fails if more than 20% of its rows
// need the exemption, so a broken router cannot hide behind it. Skips without a GPU.
#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <cstdio>
#include <stdexcept>
#include <string>
#include <vector>

#include "backend/cpu/cpu_backend.h"
#include "backend/cuda/cuda_backend.h"
#include "cuda/cuda_test_helpers.h"
#include "model/forward.h"
#include "model/tensor_store.h"
#include "test_util.h"
#include "tokenizer/tokenizer.h"

using cuda_test::make_backend;

namespace {

const char* const kWeightModes[] = {"bf16", "int8"};

// Per-row norm-relative logits error allowed against the fp32 CPU reference (the issue's
// bounds: bf16 weights 1e-2, W8A16 2e-2). The device keeps the residual stream in fp32 and
// every other activation in bf16 (model-spec §8).
double tolerance(const std::string& weights) { return weights == "bf16" ? 1e-2 : 2e-2; }

// The golden fixtures are tiny random models (hidden 64, head dim 16-32, DeepNorm alpha > 1)
// whose layers amplify any rounding: in a CPU simulation, rounding nothing but the matrix
// products' inputs to bf16 already moves tiny_c prompt.1 by 7.3e-2, and the device measured
// 5.5e-2 on that row. Their bound is what bf16 activations give these models, with headroom;
// the trained demo model (DemoModel below) carries the issue's bounds.
constexpr double kFixtureTolerance = 8e-2;

// Greedy agreement is judged on a tighter, a-priori bound: a step whose reference top-2 gap is
// wider than twice 1e-2 of the largest logit (the typical per-element deviation bf16 gives,
// see the max-rel column the test prints) must pick the same token. Using the logits bound
// above would call most steps "too close" and make the check say little.
constexpr double kGreedyTolerance = 1e-2;

// A router margin (probability of a token's k-th expert minus that of the best one left out,
// the smallest over layers) below this may flip on the device. Fixed rather than derived from
// the bf16 step 2^-8: what moves the router's probabilities is the device's accumulated
// deviation of the router input (1-4% by the last layers, the size of the logits error), times
// router logits of O(1), times probabilities of O(0.5); on the H100 every row that flipped (an
// error of 0.05 to 0.8) had a margin of at most 0.0093 (tiny_a bf16 prompt.4 position 160),
// so 0.02 leaves a factor two.
constexpr float kNearTie = 0.02f;

// Rows a case compared and how many of them were exempt as routing flips.
struct Exemptions {
  int rows = 0, exempt = 0;
};

// Records CpuBackend::route_observer while alive: per activation row of the current step, the
// smallest router margin over the step's layers.
class RouterMargins {
 public:
  explicit RouterMargins(mmx::Backend& be) : cpu_(dynamic_cast<mmx::cpu::CpuBackend*>(&be)) {
    if (!cpu_) throw std::logic_error("router margins come from the CPU backend");
    cpu_->route_observer = [this](int64_t row, float margin) {
      if (int64_t(step_.size()) <= row) step_.resize(size_t(row + 1), INFINITY);
      step_[size_t(row)] = std::min(step_[size_t(row)], margin);
    };
  }
  ~RouterMargins() { cpu_->route_observer = nullptr; }
  RouterMargins(const RouterMargins&) = delete;
  RouterMargins& operator=(const RouterMargins&) = delete;
  // The margin of row `row` of the step just run (infinite if the MoE never saw it).
  float at(int64_t row) const { return row < int64_t(step_.size()) ? step_[size_t(row)] : INFINITY; }
  void next_step() { step_.clear(); }

 private:
  mmx::cpu::CpuBackend* cpu_;
  std::vector<float> step_;
};

int32_t argmax(const float* row, int64_t V) { return int32_t(std::max_element(row, row + V) - row); }

// Top-1 minus top-2 logit of a row.
float top2_gap(const float* row, int64_t V) {
  float a = -INFINITY, b = -INFINITY;
  for (int64_t i = 0; i < V; ++i) {
    if (row[i] > a) {
      b = a;
      a = row[i];
    } else if (row[i] > b) {
      b = row[i];
    }
  }
  return a - b;
}

float max_abs(const std::vector<float>& v) {
  float m = 0;
  for (float x : v) m = std::max(m, std::fabs(x));
  return m;
}

// Prefills `prompt` as one sequence, `chunk` tokens per step; returns the logits of the prompt
// positions listed in `rows` (ascending), [rows, V]. With `margins` (CPU backend only), also
// the router margin of each listed position's token.
std::vector<float> prefill_logits(const mmx::Model& m, mmx::Backend& be,
                                  const std::vector<int32_t>& prompt,
                                  const std::vector<int32_t>& rows, int64_t chunk = 1 << 30,
                                  std::vector<float>* margins = nullptr) {
  mmx::Forward fwd(m, be);
  auto st = be.new_state();
  std::unique_ptr<RouterMargins> probe;
  if (margins) {
    probe = std::make_unique<RouterMargins>(be);
    margins->clear();
  }
  std::vector<float> all, out;
  for (int64_t p0 = 0; p0 < int64_t(prompt.size()); p0 += chunk) {
    const int64_t n = std::min<int64_t>(chunk, int64_t(prompt.size()) - p0);
    std::vector<int32_t> ids(prompt.begin() + p0, prompt.begin() + p0 + n), want;
    for (int32_t r : rows)
      if (r >= p0 && r < p0 + n) want.push_back(int32_t(r - p0));
    mmx::StepBatch b;
    b.seqs.push_back({st.get(), n, p0});
    if (probe) probe->next_step();
    fwd.run(b, ids, want, &out);
    all.insert(all.end(), out.begin(), out.end());
    if (probe)
      for (int32_t r : want) margins->push_back(probe->at(r));
  }
  return all;
}

struct Generation {
  std::vector<int32_t> tokens;
  std::vector<float> logits;  // [steps, V]: row j chose tokens[j]
};

// Greedy decoding of `steps` tokens after `prompt`. With `forced`, token j is forced[j]
// instead of the pick (teacher forcing keeps both sides on the same path). With `margins` (CPU
// backend only), also the router margin of the token whose forward produced each logits row
// (row 0: the prompt's last token; row j: the token fed at decode step j).
Generation generate(const mmx::Model& m, mmx::Backend& be, const std::vector<int32_t>& prompt,
                    int64_t steps, const std::vector<int32_t>& forced = {},
                    std::vector<float>* margins = nullptr) {
  const int64_t V = m.config().vocab;
  mmx::Forward fwd(m, be);
  auto st = be.new_state();
  std::unique_ptr<RouterMargins> probe;
  if (margins) {
    probe = std::make_unique<RouterMargins>(be);
    margins->clear();
  }
  Generation g;
  std::vector<float> out;
  mmx::StepBatch b;
  b.seqs.push_back({st.get(), int64_t(prompt.size()), 0});
  fwd.run(b, prompt, {int32_t(prompt.size() - 1)}, &out);
  if (probe) margins->push_back(probe->at(int64_t(prompt.size()) - 1));
  for (int64_t s = 0; s < steps; ++s) {
    g.logits.insert(g.logits.end(), out.begin(), out.end());
    const int32_t next = forced.empty() ? argmax(out.data(), V) : forced[size_t(s)];
    g.tokens.push_back(next);
    if (s + 1 == steps) break;
    mmx::StepBatch d;
    d.seqs.push_back({st.get(), 1, st->tokens});
    if (probe) probe->next_step();
    fwd.run(d, {next}, {0}, &out);
    if (probe) margins->push_back(probe->at(0));
  }
  return g;
}

// Greedy agreement: where the reference's top-2 gap is wider than what the tolerance allows
// to move (each of the two logits by tol of the largest reference logit: the logits check's
// per-row 2-norm bound spreads a real deviation over the whole row, so this is not a bound on
// it but several times what it leaves a single logit), the device must pick the same token.
// Rows marked in `exempt` (routing flips) are skipped. Returns how many steps were too close
// to call.
int expect_same_picks(const std::vector<float>& got, const std::vector<float>& want, int64_t V,
                      double tol, const std::string& what, const std::vector<bool>& exempt = {}) {
  const float slack = float(2.0 * tol * max_abs(want));
  int close = 0;
  for (size_t r = 0; r * size_t(V) < want.size(); ++r) {
    if (r < exempt.size() && exempt[r]) continue;
    const float* w = want.data() + r * size_t(V);
    if (top2_gap(w, V) <= slack) {
      ++close;
      continue;
    }
    EXPECT_EQ(argmax(got.data() + r * size_t(V), V), argmax(w, V))
        << what << ": different greedy pick at row " << r << " (reference gap " << top2_gap(w, V)
        << ", slack " << slack << ")";
  }
  return close;
}

// Every row within tol in the 2-norm: ||got_r - want_r|| / ||want_r|| <= tol. With `margins`
// (the router margin of each row's token), a row over tol whose margin is below kNearTie is a
// routing flip: exempt, printed and counted in *ex. Returns which rows were exempt. On failure,
// which rows are off and by how much (a routing flip shows as one or two rows far off, a
// kernel bug as many).
std::vector<bool> expect_logits_close(const std::vector<float>& got, const std::vector<float>& want,
                                      double tol, const std::string& what, int64_t V,
                                      const std::vector<float>& margins = {},
                                      Exemptions* ex = nullptr) {
  const size_t n_rows = want.size() / size_t(V);
  std::vector<bool> exempt(n_rows, false);
  EXPECT_EQ(got.size(), want.size()) << what;
  if (got.size() != want.size()) return exempt;
  EXPECT_TRUE(margins.empty() || margins.size() == n_rows) << what << ": one margin per row";
  const std::vector<double> row_err = cuda_test::row_norm_rel_errors(got, want, V);
  std::string over, flips;
  int bad = 0, n_exempt = 0;
  double worst = 0;  // of the rows checked
  for (size_t r = 0; r < n_rows; ++r) {
    const float margin = r < margins.size() ? margins[r] : INFINITY;
    const std::string tail = margins.empty() ? "" : " (router margin " + std::to_string(margin) + ")";
    if (row_err[r] > tol && margin < kNearTie) {
      exempt[r] = true;
      ++n_exempt;
      flips += " row " + std::to_string(r) + ": " + std::to_string(row_err[r]) + tail + ";";
      continue;
    }
    worst = std::max(worst, row_err[r]);
    if (row_err[r] > tol && ++bad <= 6) over += " row " + std::to_string(r) + ": " + std::to_string(row_err[r]) + tail + ";";
  }
  std::printf("  %-48s norm-rel %.3g (worst row)  max-rel %.3g%s\n", what.c_str(), worst,
              mmx_test::max_rel_error(got.data(), want.data(), want.size()),
              n_exempt ? ("  exempt as routing flips:" + flips).c_str() : "");
  if (ex) {
    ex->rows += int(n_rows);
    ex->exempt += n_exempt;
  }
  if (bad)
    ADD_FAILURE() << what << ": norm-relative error " << worst << " > " << tol << "; " << bad << " of "
                  << n_rows << " rows over:" << over;
  return exempt;
}

std::vector<int32_t> random_tokens(size_t n, int64_t vocab, uint64_t seed) {
  std::vector<int32_t> t(n);
  for (size_t i = 0; i < n; ++i) {
    seed = seed * 6364136223846793005ull + 1442695040888963407ull;
    t[i] = int32_t((seed >> 33) % uint64_t(vocab));
  }
  return t;
}

// ---- random models: CUDA vs the CPU reference with identical weights ----------------------
// These models route every token to all experts (top_k = experts). With top-k < E, a token
// whose k-th and (k+1)-th router scores lie within the bf16 activations' rounding of each
// other may pick another expert on the device than on the fp32 CPU, a legitimate difference
// that would show as a large error on that row; a few hundred tokens x layers make one likely.
// Routing itself (top-k, ties, renormalisation) is compared op by op in test_cuda_ops, where
// near-tied rows are identified and left out; the fixtures below use top-k < E and exempt
// flipped rows by their router margins (kNearTie).

class RandomModel : public ::testing::TestWithParam<const char*> {};

TEST_P(RandomModel, PrefillAndDecodeMatchCpu) {
  MMX_SKIP_WITHOUT_GPU();
  const std::string weights = GetParam();
  for (mmx::ModelConfig c : {mmx::tiny_test_config(), cuda_test::medium_config()}) {
    c.top_k = c.experts;  // see all_experts()
    auto base = mmx::make_random_model(c, 99, mmx::DType::BF16);
    // W8A16 runs are compared with the CPU on the same int8 weights.
    auto model = weights == "int8" ? cuda_test::host_quantised(*base) : base;
    auto cpu = make_backend("cpu"), gpu = make_backend("cuda", weights);
    cpu->prepare(*model);
    gpu->prepare(*model);
    const std::string tag = weights + " H=" + std::to_string(c.hidden);
    const double tol = tolerance(weights);

    // 300 tokens cross the lightning block boundary (256); rows around it and the last.
    const auto prompt = random_tokens(300, c.vocab, 5);
    const std::vector<int32_t> rows = {0, 1, 100, 254, 255, 256, 257, 299};
    expect_logits_close(prefill_logits(*model, *gpu, prompt, rows),
                        prefill_logits(*model, *cpu, prompt, rows), tol, tag + " prefill", c.vocab);

    // The same prompt in uneven chunks on the device: the state carries across steps.
    expect_logits_close(prefill_logits(*model, *gpu, prompt, rows, 77),
                        prefill_logits(*model, *cpu, prompt, rows), tol, tag + " chunked prefill", c.vocab);

    const Generation want = generate(*model, *cpu, {prompt.begin(), prompt.begin() + 20}, 24);
    const Generation got = generate(*model, *gpu, {prompt.begin(), prompt.begin() + 20}, 24, want.tokens);
    expect_logits_close(got.logits, want.logits, tol, tag + " decode (teacher-forced)", c.vocab);
    const int close = expect_same_picks(got.logits, want.logits, c.vocab, kGreedyTolerance, tag + " decode");
    EXPECT_LE(close, 12) << "most decode steps were too close to call: the check says little";
  }
}

// A step that mixes a prefill chunk and decode tokens of other sequences.
TEST_P(RandomModel, MixedBatchMatchesCpu) {
  MMX_SKIP_WITHOUT_GPU();
  const std::string weights = GetParam();
  mmx::ModelConfig c = cuda_test::medium_config();
  c.top_k = c.experts;  // see all_experts()
  auto base = mmx::make_random_model(c, 17, mmx::DType::BF16);
  auto model = weights == "int8" ? cuda_test::host_quantised(*base) : base;
  std::vector<float> results[2];
  int i = 0;
  for (const char* kind : {"cpu", "cuda"}) {
    auto be = make_backend(kind, kind == std::string("cuda") ? weights : "");
    be->prepare(*model);
    mmx::Forward fwd(*model, *be);
    auto a = be->new_state(), b = be->new_state(), d = be->new_state();
    std::vector<float> out;
    // Warm b and d up with a few tokens each.
    for (auto* s : {b.get(), d.get()}) {
      mmx::StepBatch w;
      w.seqs.push_back({s, 9, 0});
      fwd.run(w, random_tokens(9, c.vocab, uint64_t(s == b.get()) + 40), {}, &out);
    }
    mmx::StepBatch mixed;
    mixed.seqs.push_back({b.get(), 1, 9});
    mixed.seqs.push_back({a.get(), 50, 0});
    mixed.seqs.push_back({d.get(), 1, 9});
    auto ids = random_tokens(52, c.vocab, 77);
    fwd.run(mixed, ids, {0, 1, 25, 50, 51}, &results[i++]);
  }
  expect_logits_close(results[1], results[0], tolerance(weights), weights + " mixed batch", c.vocab);
}

INSTANTIATE_TEST_SUITE_P(Weights, RandomModel, ::testing::ValuesIn(kWeightModes),
                         [](const auto& info) { return std::string(info.param); });

// ---- CUDA graphs: decode steps captured and launched as one unit ---------------------------
// The same kernels in the same order, so the logits must be bit-identical to running the ops
// one by one. The steps cross a KV page boundary (256 positions; pages are allocated before
// the capture) and change batch size (each new size runs once without a graph first).
class DecodeGraphs : public ::testing::TestWithParam<const char*> {};

TEST_P(DecodeGraphs, BitIdenticalToOpByOp) {
  MMX_SKIP_WITHOUT_GPU();
  const std::string weights = GetParam();
  const mmx::ModelConfig c = cuda_test::medium_config();  // top-2 of 8 experts, one softmax layer
  auto base = mmx::make_random_model(c, 23, mmx::DType::BF16);
  auto model = weights == "int8" ? cuda_test::host_quantised(*base) : base;
  std::vector<std::vector<float>> steps[2];
  const mmx::cuda::CudaBackend::GraphStats* stats = nullptr;
  std::unique_ptr<mmx::Backend> keep;
  for (int graphs = 0; graphs < 2; ++graphs) {
    auto be = make_backend("cuda", weights);
    auto* cuda = dynamic_cast<mmx::cuda::CudaBackend*>(be.get());
    ASSERT_NE(cuda, nullptr);
    cuda->tuning().decode_graphs = graphs == 1;
    be->prepare(*model);
    mmx::Forward fwd(*model, *be);
    std::vector<std::unique_ptr<mmx::SeqState>> st;
    std::vector<int32_t> next;
    std::vector<float> out;
    for (int64_t len : {250, 30, 1, 7}) {  // prompts, one per sequence
      st.push_back(be->new_state());
      mmx::StepBatch b;
      b.seqs.push_back({st.back().get(), len, 0});
      fwd.run(b, random_tokens(size_t(len), c.vocab, uint64_t(len)), {int32_t(len - 1)}, &out);
      next.push_back(argmax(out.data(), c.vocab));
    }
    // 12 steps of four sequences (the first crosses position 256), then 5 of two.
    for (int s = 0; s < 17; ++s) {
      const size_t live = s < 12 ? 4 : 2;
      mmx::StepBatch d;
      std::vector<int32_t> ids, rows;
      for (size_t i = 0; i < live; ++i) {
        d.seqs.push_back({st[i].get(), 1, st[i]->tokens});
        ids.push_back(next[i]);
        rows.push_back(int32_t(i));
      }
      fwd.run(d, ids, rows, &out);
      for (size_t i = 0; i < live; ++i) next[i] = argmax(out.data() + i * size_t(c.vocab), c.vocab);
      steps[graphs].push_back(out);
    }
    if (graphs == 1) {
      stats = &cuda->graph_stats();
      keep = std::move(be);  // stats stay readable
    }
  }
  ASSERT_EQ(steps[0].size(), steps[1].size());
  for (size_t s = 0; s < steps[0].size(); ++s)
    EXPECT_EQ(steps[1][s], steps[0][s]) << weights << ": decode step " << s << " differs with graphs: "
                                        << cuda_test::worst_diff(steps[1][s], steps[0][s], c.vocab);
  // Sizes 4 and 2 each warm up once; the other 15 steps run as graphs, and after the first
  // capture of a size the instantiated graph is updated in place.
  std::printf("  %s: %lld steps as graphs, %lld updated in place, %lld instantiated\n", weights.c_str(),
              (long long)stats->launched, (long long)stats->updated, (long long)stats->instantiated);
  EXPECT_EQ(stats->launched, 15);
  EXPECT_EQ(stats->updated + stats->instantiated, 15);
  EXPECT_GE(stats->updated, 10) << "most steps should reuse the instantiated graph";
}

INSTANTIATE_TEST_SUITE_P(Weights, DecodeGraphs, ::testing::ValuesIn(kWeightModes),
                         [](const auto& info) { return std::string(info.param); });

// ---- golden fixtures ------------------------------------------------------------------------

struct Golden {
  std::unique_ptr<mmx::SafetensorsFile> file;
  std::vector<float> get(const std::string& name) const {
    const auto& t = file->tensors().at(name);
    std::vector<float> v(size_t(t.numel()));
    mmx::convert_to_f32(t.dtype, t.data, v.size(), v.data());
    return v;
  }
  std::vector<int32_t> ids(const std::string& name) const {
    std::vector<int32_t> out;
    for (float f : get(name)) out.push_back(int32_t(f));
    return out;
  }
  bool has(const std::string& name) const { return file->tensors().count(name) > 0; }
};

class Fixture : public ::testing::TestWithParam<std::tuple<const char*, const char*>> {};

TEST_P(Fixture, MatchesGoldenLogitsAndGreedyContinuations) {
  MMX_SKIP_WITHOUT_GPU();
  const std::string dir = std::get<0>(GetParam()), weights = std::get<1>(GetParam());
  const std::string golden_dir = dir == "tiny_a_official" ? "tiny_a" : dir;
  const std::string path = mmx_test::data_path("fixtures/" + dir);
  ASSERT_TRUE(mmx_test::file_exists(path + "/config.json")) << "missing fixture " << path;
  Golden g{mmx::SafetensorsFile::open(mmx_test::data_path("fixtures/" + golden_dir + "/golden.safetensors"),
                                      "golden.safetensors")};
  auto model = mmx::Model::load(path);
  const int64_t V = model->config().vocab;
  auto gpu = make_backend("cuda", weights);
  gpu->prepare(*model);
  // bf16 weights are the fixture's own: the golden outputs are the reference. W8A16 adds the
  // quantisation's rounding, which on these tiny chaotic models moves logits by up to tens of
  // percent (the quantiser's business, see test_quantize): its reference is the CPU on the same
  // int8 weights, over the fixture's prompts. Either way the CPU runs the reference model for
  // the router margins (on the golden path in bf16: the CPU is the spec's fp32 computation).
  std::shared_ptr<mmx::Model> qmodel;
  if (weights == "int8") qmodel = cuda_test::host_quantised(*model);
  const mmx::Model& ref_model = qmodel ? *qmodel : *model;
  auto cpu = make_backend("cpu");
  cpu->prepare(ref_model);
  const double tol = kFixtureTolerance;
  const std::string tag = dir + " " + weights;
  Exemptions ex;

  for (int k = 0; g.has("prompt." + std::to_string(k) + ".ids"); ++k) {
    const std::string p = "prompt." + std::to_string(k);
    const auto ids = g.ids(p + ".ids");
    const auto rows = g.ids(p + ".positions");
    std::vector<float> margins;
    const auto cpu_logits = prefill_logits(ref_model, *cpu, ids, rows, 1 << 30, &margins);
    const auto want = qmodel ? cpu_logits : g.get(p + ".logits");
    const auto got = prefill_logits(*model, *gpu, ids, rows);
    const auto exempt = expect_logits_close(
        got, want, tol, tag + " " + p + " (" + std::to_string(ids.size()) + " tokens)", V, margins, &ex);
    expect_same_picks(got, want, V, kGreedyTolerance, tag + " " + p, exempt);
  }

  for (int j = 0; g.has("gen." + std::to_string(j) + ".prompt"); ++j) {
    const std::string p = "gen." + std::to_string(j);
    const auto prompt = g.ids(p + ".prompt");
    const int64_t steps = int64_t(g.ids(p + ".tokens").size());
    Generation ref;
    std::vector<float> margins;
    if (qmodel) {
      ref = generate(ref_model, *cpu, prompt, steps, {}, &margins);
    } else {
      ref.tokens = g.ids(p + ".tokens");
      ref.logits = g.get(p + ".logits");
      generate(ref_model, *cpu, prompt, steps, ref.tokens, &margins);  // margins on the golden path
    }
    // Teacher-forced: logits along the reference path.
    const Generation forced = generate(*model, *gpu, prompt, steps, ref.tokens);
    const auto exempt = expect_logits_close(forced.logits, ref.logits, tol, tag + " " + p + " decode", V,
                                            margins, &ex);
    // Free-running greedy: the same tokens, unless a step's reference gap is too narrow for
    // this precision to call or its token's routing flipped (the teacher-forced row above is
    // the same computation). Then the paths part, the continuations legitimately diverge, and
    // the comparison stops there.
    const Generation free = generate(*model, *gpu, prompt, steps);
    const float slack = float(2.0 * tol * max_abs(ref.logits));
    for (size_t s = 0; s < size_t(steps); ++s) {
      if (free.tokens[s] == ref.tokens[s]) continue;
      const float gap = top2_gap(ref.logits.data() + s * size_t(V), V);
      if (!exempt[s])
        EXPECT_LE(gap, slack) << tag << " " << p << ": greedy token " << s << " is " << free.tokens[s]
                              << ", the reference chose " << ref.tokens[s] << " by a gap of " << gap;
      std::printf("  %s %s: paths part at step %zu (reference gap %.3g%s)\n", tag.c_str(), p.c_str(), s,
                  gap, exempt[s] ? ", routing flip" : "");
      break;
    }
  }

  // A few near-tied tokens per case flip; a broken router would flip many.
  std::printf("  %s: %d of %d rows exempt as routing flips\n", tag.c_str(), ex.exempt, ex.rows);
  EXPECT_LE(ex.exempt * 5, ex.rows) << tag << ": more than 20% of the rows needed the routing-flip "
                                     << "exemption (" << ex.exempt << " of " << ex.rows << ")";
}

INSTANTIATE_TEST_SUITE_P(
    Golden, Fixture,
    ::testing::Combine(::testing::Values("tiny_a", "tiny_a_official", "tiny_b", "tiny_c"),
                       ::testing::ValuesIn(kWeightModes)),
    [](const auto& info) {
      return std::string(std::get<0>(info.param)) + "_" + std::get<1>(info.param);
    });

// ---- a trained model on real text: the issue's bounds --------------------------------------
// The golden fixtures above are tiny random models: chaotic, they amplify any rounding (even
// bf16 matrix-product inputs alone move tiny_c by 7e-2 in a CPU simulation), so their bound
// is loose. The bundled demo model is trained, like the models this library serves: there the
// device must give logits within 1e-2 (bf16 weights) / 2e-2 (W8A16, against the CPU on the
// same int8 weights) of the fp32 CPU, as the relative error of each prompt's logits (2-norm
// over all its checked rows), with no row beyond twice that; and the same greedy tokens.
// Rows over the bound whose token's routing nearly ties are exempt as above (the demo has 4
// experts, top-2; near ties are common). A CPU simulation of this recipe (bf16 everywhere but
// the fp32 residual stream) puts the worst prompt at 6e-3 and the worst row at 1.2e-2.
class DemoModel : public ::testing::TestWithParam<const char*> {};

TEST_P(DemoModel, HeldOutTextWithinIssueBounds) {
  MMX_SKIP_WITHOUT_GPU();
  const std::string weights = GetParam();
  const double tol = weights == "bf16" ? 1e-2 : 2e-2;
  auto model = mmx::Model::load(mmx_test::source_path("models/demo"));
  auto tok = mmx::Tokenizer::load_dir(mmx_test::source_path("models/demo"));
  auto ids = tok->encode(mmx_test::read_file(mmx_test::data_path("demo/heldout.txt")), true);
  ASSERT_GE(ids.size(), size_t(1500));
  ids.resize(1500);
  std::shared_ptr<mmx::Model> ref_model = model;
  if (weights == "int8") ref_model = cuda_test::host_quantised(*model);
  const int64_t V = model->config().vocab;
  auto cpu = make_backend("cpu"), gpu = make_backend("cuda", weights);
  cpu->prepare(*ref_model);
  gpu->prepare(*model);
  const std::string tag = "demo " + weights;

  std::vector<int32_t> rows;
  for (int32_t r = 0; r < 1500; r += 37) rows.push_back(r);
  rows.push_back(1499);
  std::vector<float> margins;
  const auto want = prefill_logits(*ref_model, *cpu, ids, rows, 1 << 30, &margins);
  const auto got = prefill_logits(*model, *gpu, ids, rows, 512);  // three chunks and a part
  const auto err = cuda_test::row_norm_rel_errors(got, want, V);
  ASSERT_EQ(err.size(), rows.size());
  double num = 0, den = 0, worst_row = 0;
  int exempt = 0;
  for (size_t r = 0; r < rows.size(); ++r) {
    if (err[r] > tol && margins[r] < kNearTie) {
      ++exempt;
      std::printf("  %s: row %d exempt as a routing flip (error %.3g, margin %.3g)\n", tag.c_str(),
                  rows[r], err[r], margins[r]);
      continue;
    }
    worst_row = std::max(worst_row, err[r]);
    for (int64_t v = 0; v < V; ++v) {
      const double d = double(got[r * size_t(V) + size_t(v)]) - want[r * size_t(V) + size_t(v)];
      num += d * d;
      den += double(want[r * size_t(V) + size_t(v)]) * want[r * size_t(V) + size_t(v)];
    }
  }
  const double prompt_err = std::sqrt(num / den);
  std::printf("  %s: %zu rows of a 1500-token prompt: relative error %.3g (bound %.3g), worst row %.3g "
              "(bound %.3g), %d exempt\n", tag.c_str(), rows.size(), prompt_err, tol, worst_row, 2 * tol, exempt);
  EXPECT_LE(prompt_err, tol) << tag;
  EXPECT_LE(worst_row, 2 * tol) << tag;
  EXPECT_LE(exempt * 5, int(rows.size())) << tag << ": too many rows exempt as routing flips";

  // Greedy continuation of the prompt's first 600 tokens: the same 32 tokens, except after a
  // step too close to call (then the paths part and the comparison stops).
  const std::vector<int32_t> prompt(ids.begin(), ids.begin() + 600);
  const Generation ref = generate(*ref_model, *cpu, prompt, 32);
  const Generation free = generate(*model, *gpu, prompt, 32);
  const float slack = float(2.0 * kGreedyTolerance * max_abs(ref.logits));
  int same = 0;
  for (size_t s = 0; s < ref.tokens.size(); ++s) {
    if (free.tokens[s] != ref.tokens[s]) {
      const float gap = top2_gap(ref.logits.data() + s * size_t(V), V);
      EXPECT_LE(gap, slack) << tag << ": greedy token " << s << " differs by a reference gap of " << gap;
      std::printf("  %s: greedy paths part at step %zu (reference gap %.3g)\n", tag.c_str(), s, gap);
      break;
    }
    ++same;
  }
  std::printf("  %s: greedy continuation: %d of %zu tokens equal\n", tag.c_str(), same, ref.tokens.size());
}

INSTANTIATE_TEST_SUITE_P(Weights, DemoModel, ::testing::ValuesIn(kWeightModes),
                         [](const auto& info) { return std::string(info.param); });

}  // namespace
