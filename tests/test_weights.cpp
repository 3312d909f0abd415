// ModelWeights::map / check_names: both spellings, the real M1 index, refusals, int8, views.
#include <gtest/gtest.h>

#include <cmath>
#include <cstring>
#include <functional>
#include <nlohmann/json.hpp>
#include <set>

#include "core/error.h"
#include "model/model.h"
#include "model/random_model.h"
#include "model/weights.h"
#include "test_util.h"

namespace {

using mmx::Code;
using mmx::DType;
using mmx::ModelConfig;
using mmx::ModelWeights;
using mmx::WeightRef;
using Tensors = std::map<std::string, mmx::Model::OwnedTensor>;
using NamesAndShapes = std::vector<std::pair<std::string, std::vector<int64_t>>>;

void expect_refused(const ModelConfig& c, Tensors t, std::initializer_list<const char*> needles) {
  try {
    mmx::Model::from_memory(c, std::move(t));
    ADD_FAILURE() << "accepted";
  } catch (const mmx::Error& e) {
    EXPECT_EQ(e.code(), Code::Format) << e.what();
    for (const char* n : needles) EXPECT_NE(std::string(e.what()).find(n), std::string::npos) << e.what();
  }
}

// Every WeightRef of a mapping, with its slot, for structural checks.
std::vector<const WeightRef*> all_refs(const ModelWeights& w) {
  std::vector<const WeightRef*> out = {&w.embed, &w.lm_head, &w.final_norm};
  for (const auto& l : w.layers) {
    for (const WeightRef* r : {&l.input_norm, &l.post_norm, &l.qkv, &l.out_gate, &l.out_proj, &l.attn_norm, &l.q,
                               &l.k, &l.v, &l.o, &l.router})
      if (r->id >= 0) out.push_back(r);
    for (const auto* v : {&l.w1, &l.w3, &l.w2})
      for (const WeightRef& r : *v) out.push_back(&r);
  }
  return out;
}

NamesAndShapes m1_index_names() {
  auto index = nlohmann::json::parse(
      mmx_test::read_file(mmx_test::shared_path("reference/minimax-m1/model.safetensors.index.json")));
  NamesAndShapes names;
  for (auto it = index["weight_map"].begin(); it != index["weight_map"].end(); ++it) names.push_back({it.key(), {}});
  return names;
}

TEST(Weights, EveryNameOfTheRealM1IndexResolves) {
  ModelConfig c = ModelConfig::load(mmx_test::shared_path("reference/minimax-m1/config.json"));
  NamesAndShapes names = m1_index_names();
  ASSERT_EQ(names.size(), 8243u);
  std::vector<std::string> problems = ModelWeights::check_names(c, names);
  EXPECT_TRUE(problems.empty()) << problems.size() << " problems, first: " << problems.front();
}

TEST(Weights, CheckNamesReportsMissingExtraAndMisshapenTensors) {
  ModelConfig c = ModelConfig::load(mmx_test::shared_path("reference/minimax-m1/config.json"));
  NamesAndShapes names = m1_index_names();
  std::string removed;
  for (auto it = names.begin(); it != names.end(); ++it)
    if (it->first == "model.layers.42.block_sparse_moe.experts.17.w3.weight") {
      removed = it->first;
      names.erase(it);
      break;
    }
  ASSERT_FALSE(removed.empty());
  names.push_back({"model.layers.80.input_layernorm.weight", {}});
  names.push_back({"model.layers.7.self_attn.q_proj.weight", {}});  // already listed
  for (auto& n : names)
    if (n.first == "model.norm.weight") n.second = {6000};
  std::vector<std::string> problems = ModelWeights::check_names(c, names);
  ASSERT_EQ(problems.size(), 4u);
  std::string all;
  for (const auto& p : problems) all += p + "\n";
  EXPECT_NE(all.find("missing tensor '" + removed + "'"), std::string::npos) << all;
  EXPECT_NE(all.find("unexpected tensor 'model.layers.80.input_layernorm.weight'"), std::string::npos) << all;
  EXPECT_NE(all.find("'model.layers.7.self_attn.q_proj.weight' is listed twice"), std::string::npos) << all;
  EXPECT_NE(all.find("'model.norm.weight' has shape [6000], expected [6144]"), std::string::npos) << all;
}

TEST(Weights, MapsTheFixtures) {
  for (const char* name : {"tiny_a", "tiny_a_official", "tiny_b", "tiny_c"}) {
    const std::string dir = mmx_test::data_path(std::string("fixtures/") + name);
    ModelConfig c = ModelConfig::load(dir + "/config.json");
    auto store = mmx::TensorStore::open_dir(dir);
    ModelWeights w = ModelWeights::map(c, *store);
    ASSERT_EQ(int64_t(w.layers.size()), c.layers) << name;
    std::set<int> ids;
    for (const WeightRef* r : all_refs(w)) {
      EXPECT_TRUE(r->valid()) << name << " " << r->name;
      EXPECT_EQ(r->dtype, DType::BF16) << r->name;
      ids.insert(r->id);
    }
    EXPECT_EQ(int(ids.size()), w.count) << name;
    EXPECT_EQ(*ids.begin(), 0);
    EXPECT_EQ(*ids.rbegin(), w.count - 1);
    if (c.tie_embeddings) {
      EXPECT_EQ(w.lm_head.data, w.embed.data) << name;
      EXPECT_EQ(w.lm_head.id, w.embed.id) << name;
    } else {
      EXPECT_NE(w.lm_head.data, w.embed.data) << name;
    }
    for (int64_t i = 0; i < c.layers; ++i) {
      const auto& l = w.layers[size_t(i)];
      EXPECT_EQ(l.kind, c.layer_kinds[size_t(i)]);
      const WeightRef& attn_in = l.kind == mmx::LayerKind::Lightning ? l.qkv : l.q;
      EXPECT_TRUE(attn_in.valid()) << name << " layer " << i;
      EXPECT_EQ(int64_t(l.w1.size()), c.experts);
      EXPECT_EQ(l.w2[0].rows, c.hidden);
      EXPECT_EQ(l.w2[0].cols, c.intermediate);
    }
  }
}

TEST(Weights, FusedExpertsAreViewsEqualToThePerExpertSpelling) {
  ModelConfig c = mmx::tiny_test_config();
  auto official = mmx::Model::from_memory(c, mmx::random_tensors(c, 5, DType::F32, true));
  auto fused = mmx::Model::from_memory(c, mmx::random_tensors(c, 5, DType::F32, false));
  EXPECT_TRUE(fused->store().find("model.layers.0.mlp.experts.gate_up_proj") != nullptr);
  for (int64_t i = 0; i < c.layers; ++i) {
    const auto& a = official->weights().layers[size_t(i)];
    const auto& b = fused->weights().layers[size_t(i)];
    EXPECT_EQ(a.router.to_f32(), b.router.to_f32());
    for (int64_t e = 0; e < c.experts; ++e) {
      EXPECT_EQ(b.w1[size_t(e)].rows, c.intermediate);
      EXPECT_EQ(a.w1[size_t(e)].to_f32(), b.w1[size_t(e)].to_f32()) << "layer " << i << " expert " << e;
      EXPECT_EQ(a.w3[size_t(e)].to_f32(), b.w3[size_t(e)].to_f32()) << "layer " << i << " expert " << e;
      EXPECT_EQ(a.w2[size_t(e)].to_f32(), b.w2[size_t(e)].to_f32()) << "layer " << i << " expert " << e;
    }
  }
  EXPECT_EQ(official->weights().count, fused->weights().count);
}

TEST(Weights, RefusesMissingTensors) {
  ModelConfig c = mmx::tiny_test_config();
  Tensors t = mmx::random_tensors(c, 1);
  t.erase("model.layers.3.self_attn.k_proj.weight");
  expect_refused(c, t, {"missing tensor 'model.layers.3.self_attn.k_proj.weight'"});
  t = mmx::random_tensors(c, 1, DType::F32, false);
  t.erase("model.layers.1.mlp.experts.down_proj");
  expect_refused(c, t, {"missing tensor 'model.layers.1.mlp.experts.down_proj'"});
  t = mmx::random_tensors(c, 1);
  t.erase("lm_head.weight");
  expect_refused(c, t, {"missing tensor 'lm_head.weight'"});
}

TEST(Weights, RefusesUnexpectedTensors) {
  ModelConfig c = mmx::tiny_test_config();
  Tensors t = mmx::random_tensors(c, 1);
  t["model.layers.0.self_attn.q_proj.weight"] = t.at("model.layers.3.self_attn.q_proj.weight");  // lightning layer
  expect_refused(c, t, {"unexpected tensor 'model.layers.0.self_attn.q_proj.weight'"});
  t = mmx::random_tensors(c, 1);
  t["model.layers.9.self_attn.slope_rate"] = t.at("model.norm.weight");  // no layer 9
  expect_refused(c, t, {"unexpected tensor 'model.layers.9.self_attn.slope_rate'"});
  t = mmx::random_tensors(c, 1);
  t["model.layers.2.mlp.gate.weight"] = t.at("model.layers.2.block_sparse_moe.gate.weight");
  expect_refused(c, t, {"model.layers.2.block_sparse_moe.gate.weight", "model.layers.2.mlp.gate.weight",
                        "two spellings"});
}

TEST(Weights, IgnoresDerivedBuffersAndARedundantTiedHead) {
  ModelConfig c = mmx::tiny_test_config();
  c.tie_embeddings = true;
  Tensors t = mmx::random_tensors(c, 1);
  for (const char* b : {"slope_rate", "query_decay", "key_decay", "diagonal_decay"})
    t[std::string("model.layers.1.self_attn.") + b] = t.at("model.norm.weight");
  t["lm_head.weight"] = t.at("model.embed_tokens.weight");
  auto m = mmx::Model::from_memory(c, t);
  EXPECT_EQ(m->weights().lm_head.data, m->weights().embed.data);
}

TEST(Weights, RefusesWrongShapesNamingBoth) {
  ModelConfig c = mmx::tiny_test_config();
  Tensors t = mmx::random_tensors(c, 1);
  t["model.layers.0.self_attn.qkv_proj.weight"].shape = {64, 192};  // transposed
  expect_refused(c, t, {"'model.layers.0.self_attn.qkv_proj.weight'", "shape [64, 192]", "expected [192, 64]"});
  t = mmx::random_tensors(c, 1, DType::F32, false);
  t["model.layers.2.mlp.experts.gate_up_proj"].shape = {4, 64, 192};
  expect_refused(c, t, {"gate_up_proj", "shape [4, 64, 192]", "expected [4, 192, 64]"});
}

TEST(Weights, AcceptsHalfPrecisionAndConvertsRows) {
  ModelConfig c = mmx::tiny_test_config();
  auto f32 = mmx::make_random_model(c, 3, DType::F32);
  for (DType dt : {DType::BF16, DType::F16}) {
    auto half = mmx::make_random_model(c, 3, dt);
    const WeightRef& a = f32->weights().layers[1].out_proj;
    const WeightRef& b = half->weights().layers[1].out_proj;
    EXPECT_EQ(b.dtype, dt);
    std::vector<float> ra(size_t(a.cols)), rb(size_t(b.cols));
    a.row_to_f32(5, ra.data());
    b.row_to_f32(5, rb.data());
    for (size_t i = 0; i < ra.size(); ++i) EXPECT_NEAR(ra[i], rb[i], std::fabs(ra[i]) * 1e-2 + 1e-6);
  }
  const WeightRef& w = f32->weights().embed;
  std::vector<float> row(size_t(w.cols));
  try {
    w.row_to_f32(w.rows, row.data());
    ADD_FAILURE();
  } catch (const mmx::Error& e) {
    EXPECT_EQ(e.code(), Code::InvalidArgument);
  }
}

TEST(Weights, Int8WeightsCarryPerRowScales) {
  ModelConfig c = mmx::tiny_test_config();
  auto f32 = mmx::make_random_model(c, 4, DType::F32);
  Tensors t = mmx::random_tensors(c, 4, DType::I8);
  ASSERT_TRUE(t.count("model.layers.0.block_sparse_moe.experts.2.w1.weight_scale"));
  auto q = mmx::Model::from_memory(c, t);
  const WeightRef& a = f32->weights().layers[0].w1[2];
  const WeightRef& b = q->weights().layers[0].w1[2];
  ASSERT_EQ(b.dtype, DType::I8);
  ASSERT_NE(b.scale, nullptr);
  std::vector<float> fa = a.to_f32(), fb = b.to_f32();
  for (int64_t r = 0; r < a.rows; ++r) {
    float amax = 0;
    for (int64_t k = 0; k < a.cols; ++k) amax = std::max(amax, std::fabs(fa[size_t(r * a.cols + k)]));
    for (int64_t k = 0; k < a.cols; ++k)
      EXPECT_NEAR(fb[size_t(r * a.cols + k)], fa[size_t(r * a.cols + k)], amax / 127 * 0.5001) << r << "," << k;
  }
  EXPECT_EQ(q->weights().final_norm.dtype, DType::F32);  // 1-D weights stay floating point

  Tensors missing = t;
  missing.erase("model.layers.3.self_attn.o_proj.weight_scale");
  expect_refused(c, missing, {"'model.layers.3.self_attn.o_proj.weight'", "'model.layers.3.self_attn.o_proj.weight_scale'"});
  Tensors bad_shape = t;
  bad_shape["model.layers.3.self_attn.o_proj.weight_scale"].shape = {2, 32};
  expect_refused(c, bad_shape, {"o_proj.weight_scale", "[64]"});
  Tensors stray = mmx::random_tensors(c, 4, DType::F32);
  stray["model.norm.weight_scale"] = stray.at("model.norm.weight");
  expect_refused(c, stray, {"unexpected tensor 'model.norm.weight_scale'"});
}

TEST(Weights, ShapeOnlyModelsHaveNoData) {
  ModelConfig c = ModelConfig::load(mmx_test::shared_path("reference/minimax-m1/config.json"));
  auto m = mmx::Model::synthetic(c);
  EXPECT_TRUE(m->is_synthetic());
  EXPECT_EQ(m->weights().count, 8243);
  const WeightRef& w = m->weights().layers[79].w2[31];
  EXPECT_FALSE(w.valid());
  EXPECT_EQ(w.rows, 6144);
  EXPECT_EQ(w.cols, 9216);
  std::vector<float> row(size_t(w.cols));
  try {
    w.row_to_f32(0, row.data());
    ADD_FAILURE();
  } catch (const mmx::Error& e) {
    EXPECT_EQ(e.code(), Code::State);
  }
}

}  // namespace
