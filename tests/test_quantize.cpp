// minimax-quantize round trip (CPU): a random bf16 checkpoint is quantised by the real program,
// the result loads as an int8 (W8A16) model, and the CPU reference's logits stay close to the
// original model's.
#include <gtest/gtest.h>

#include <cmath>
#include <cstdlib>
#include <cstdio>
#include <cstring>
#include <filesystem>
#include <string>

#include "backend/backend.h"
#include "core/dtype.h"
#include "kernels/quant_rule.h"
#include "model/forward.h"
#include "model/random_model.h"
#include "model/tensor_store.h"
#include "test_util.h"

namespace fs = std::filesystem;
using mmx_test::TempDir;

namespace {

std::string tool_path() { return std::string(MMX_BINARY_DIR) + "/tools/quantize/minimax-quantize"; }

int run_tool(const std::string& args) {
  const std::string cmd = tool_path() + " " + args + " > /dev/null 2>&1";
  const int rc = std::system(cmd.c_str());
  return WIFEXITED(rc) ? WEXITSTATUS(rc) : -1;
}

void write_model(const std::string& dir, const mmx::ModelConfig& c, uint64_t seed, bool official) {
  fs::create_directories(dir);
  mmx::write_safetensors(dir + "/model.safetensors", mmx::random_tensors(c, seed, mmx::DType::BF16, official));
  mmx_test::write_file(dir + "/config.json", mmx::config_to_json(c, official));
  mmx_test::write_file(dir + "/tokenizer_config.json", "{\"model_max_length\": 4096}\n");
}

// Full-recompute logits of every position of `tokens` on the CPU reference backend.
std::vector<float> cpu_logits(const mmx::Model& model, const std::vector<int32_t>& tokens) {
  mmx::BackendOptions o;
  o.kind = "cpu";
  o.threads = 2;
  auto be = mmx::create_backend(o);
  be->prepare(model);
  auto st = be->new_state();
  mmx::StepBatch b;
  b.seqs.push_back({st.get(), int64_t(tokens.size()), 0});
  std::vector<int32_t> rows(tokens.size());
  for (size_t i = 0; i < rows.size(); ++i) rows[i] = int32_t(i);
  std::vector<float> logits;
  mmx::Forward(model, *be).run(b, tokens, rows, &logits);
  return logits;
}

class QuantizeTool : public ::testing::Test {
 protected:
  void SetUp() override {
    ASSERT_TRUE(mmx_test::file_exists(tool_path()))
        << "minimax-quantize was not built at " << tool_path();
  }
  TempDir tmp;
};

void check_round_trip(const std::string& in, const std::string& out, const mmx::ModelConfig& c) {
  // Several shards (tiny shard size) and an index.
  ASSERT_EQ(run_tool(in + " " + out + " --shard-size 0.00005"), 0);
  ASSERT_TRUE(mmx_test::file_exists(out + "/model.safetensors.index.json"));
  int shards = 0;
  for (const auto& e : fs::directory_iterator(out))
    if (e.path().extension() == ".safetensors") ++shards;
  EXPECT_GE(shards, 2) << "expected the tiny shard size to split the checkpoint";
  EXPECT_EQ(mmx_test::read_file(in + "/config.json"), mmx_test::read_file(out + "/config.json"));
  EXPECT_TRUE(mmx_test::file_exists(out + "/tokenizer_config.json"));

  auto src = mmx::TensorStore::open_dir(in);
  auto dst = mmx::TensorStore::open_dir(out);
  int64_t quantized = 0;
  for (const std::string& name : src->names()) {
    const mmx::TensorInfo& a = src->get(name);
    if (name.find("experts.gate_up_proj") != std::string::npos ||
        name.find("experts.down_proj") != std::string::npos) {
      // Fused experts come out per expert, 2-D int8 with row scales.
      EXPECT_EQ(dst->find(name), nullptr) << name << " should have been split per expert";
      const std::string prefix = name.substr(0, name.rfind('.') + 1);
      for (int64_t e = 0; e < a.shape[0]; ++e)
        for (const char* w : {"w1", "w3", "w2"}) {
          if ((std::string(w) == "w2") != (name.find("down_proj") != std::string::npos)) continue;
          const std::string n = prefix + std::to_string(e) + "." + w + ".weight";
          const mmx::TensorInfo* t = dst->find(n);
          ASSERT_NE(t, nullptr) << "missing " << n;
          EXPECT_EQ(t->dtype, mmx::DType::I8) << n;
          EXPECT_NE(dst->find(n + "_scale"), nullptr) << n;
        }
      ++quantized;
      continue;
    }
    const mmx::TensorInfo& b = dst->get(name);
    EXPECT_EQ(a.shape, b.shape) << name;
    const bool linear = name.find("self_attn.") != std::string::npos ||
                        name.find("experts") != std::string::npos;
    const bool norm = name.find("norm") != std::string::npos;
    if (linear && !norm) {
      ASSERT_EQ(b.dtype, mmx::DType::I8) << name << " should be int8";
      const mmx::TensorInfo* s = dst->find(name + "_scale");
      ASSERT_NE(s, nullptr) << "no scale tensor for " << name;
      ASSERT_EQ(s->dtype, mmx::DType::F32);
      ASSERT_EQ(s->numel(), a.numel() / a.shape.back()) << name;
      // The shared rounding rule, row by row.
      const int64_t cols = a.shape.back(), rows = a.numel() / cols;
      const auto* q = reinterpret_cast<const int8_t*>(b.data);
      const auto* sc = reinterpret_cast<const float*>(s->data);
      std::vector<float> row(static_cast<size_t>(cols));
      for (int64_t r = 0; r < rows; ++r) {
        mmx::convert_to_f32(a.dtype, a.data + size_t(r * cols) * 2, size_t(cols), row.data());
        float amax = 0;
        for (float v : row) amax = std::max(amax, std::fabs(v));
        ASSERT_EQ(sc[r], mmx::int8_row_scale(amax)) << name << " row " << r;
        for (int64_t j = 0; j < cols; ++j)
          ASSERT_EQ(q[r * cols + j], mmx::int8_quantize(row[size_t(j)], sc[r])) << name << " row " << r;
      }
      ++quantized;
    } else {
      // Embeddings, norms, router, lm_head: copied bit for bit.
      ASSERT_EQ(b.dtype, a.dtype) << name;
      ASSERT_EQ(a.nbytes, b.nbytes);
      EXPECT_EQ(std::memcmp(a.data, b.data, a.nbytes), 0) << name << " changed";
    }
  }
  EXPECT_GT(quantized, 0);

  auto m0 = mmx::Model::load(in);
  auto m1 = mmx::Model::load(out);
  EXPECT_EQ(m1->weights().layers[0].w1[0].dtype, mmx::DType::I8);
  std::vector<int32_t> tokens;
  for (int i = 0; i < 40; ++i) tokens.push_back(int32_t((i * 37 + 11) % c.vocab));
  const auto l0 = cpu_logits(*m0, tokens), l1 = cpu_logits(*m1, tokens);
  ASSERT_EQ(l0.size(), l1.size());
  // ||l1 - l0|| / ||l0|| over all positions: int8 rounding is noise spread over every logit,
  // so the norm ratio measures it steadily where the single worst logit would not.
  double num = 0, den = 0;
  for (size_t i = 0; i < l0.size(); ++i) {
    num += double(l1[i] - l0[i]) * double(l1[i] - l0[i]);
    den += double(l0[i]) * double(l0[i]);
  }
  const double err = std::sqrt(num / den);
  const double max_err = mmx_test::max_rel_error(l1.data(), l0.data(), l0.size());
  std::printf("W8A16 vs bf16 logits: norm-relative error %.3g, max-relative %.3g\n", err, max_err);
  EXPECT_LE(err, 2e-2) << "W8A16 logits drifted from the bf16 model's";
  EXPECT_LE(max_err, 5e-2);
  EXPECT_GT(err, 0.0) << "the int8 model computes exactly the bf16 one: were weights quantised?";
}

TEST_F(QuantizeTool, OfficialSpellingRoundTrip) {
  const mmx::ModelConfig c = mmx::tiny_test_config();
  write_model(tmp.file("in"), c, 7, true);
  check_round_trip(tmp.file("in"), tmp.file("out"), c);
}

TEST_F(QuantizeTool, FusedExpertSpellingRoundTrip) {
  mmx::ModelConfig c = mmx::tiny_test_config();
  c.official_spelling = false;
  c.model_type = "minimax";
  write_model(tmp.file("in"), c, 8, false);
  check_round_trip(tmp.file("in"), tmp.file("out"), c);
}

TEST_F(QuantizeTool, RefusesBadDirectories) {
  const mmx::ModelConfig c = mmx::tiny_test_config();
  write_model(tmp.file("in"), c, 9, true);
  EXPECT_NE(run_tool(tmp.file("missing") + " " + tmp.file("out")), 0);
  EXPECT_NE(run_tool(tmp.file("in") + " " + tmp.file("in")), 0);
  ASSERT_EQ(run_tool(tmp.file("in") + " " + tmp.file("out") + " --no-verify"), 0);
  // A second run into a directory that already holds a checkpoint is refused.
  EXPECT_NE(run_tool(tmp.file("in") + " " + tmp.file("out")), 0);
  EXPECT_NE(run_tool(tmp.file("in")), 0);  // usage error
}

}  // namespace
