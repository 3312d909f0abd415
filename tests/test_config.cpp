// ModelConfig: both spellings of model-spec §2, the real M1 config, every refusal, decay helpers.
#include <gtest/gtest.h>

#include <cmath>
#include <nlohmann/json.hpp>

#include "core/error.h"
#include "model/config.h"
#include "model/random_model.h"
#include "test_util.h"

namespace {

using json = nlohmann::json;
using mmx::Code;
using mmx::LayerKind;
using mmx::ModelConfig;

json official_json() { return json::parse(mmx::config_to_json(mmx::tiny_test_config(), true)); }
json native_json() { return json::parse(mmx::config_to_json(mmx::tiny_test_config(), false)); }

// Parsing must fail with Code::Format and a message containing every `needle`.
void expect_refused(const json& j, std::initializer_list<const char*> needles) {
  try {
    ModelConfig::parse(j.dump(), "test-config.json");
    ADD_FAILURE() << "accepted: " << j.dump();
  } catch (const mmx::Error& e) {
    EXPECT_EQ(e.code(), Code::Format) << e.what();
    for (const char* n : needles) EXPECT_NE(std::string(e.what()).find(n), std::string::npos) << e.what();
  }
}

// Every field that affects the model, compared one by one so a failure names it.
void expect_same_model(const ModelConfig& a, const ModelConfig& b) {
  EXPECT_EQ(a.hidden, b.hidden);
  EXPECT_EQ(a.intermediate, b.intermediate);
  EXPECT_EQ(a.layers, b.layers);
  EXPECT_EQ(a.heads, b.heads);
  EXPECT_EQ(a.kv_heads, b.kv_heads);
  EXPECT_EQ(a.head_dim, b.head_dim);
  EXPECT_EQ(a.rotary_dim, b.rotary_dim);
  EXPECT_EQ(a.experts, b.experts);
  EXPECT_EQ(a.top_k, b.top_k);
  EXPECT_EQ(a.vocab, b.vocab);
  EXPECT_EQ(a.max_positions, b.max_positions);
  EXPECT_EQ(a.block_size, b.block_size);
  EXPECT_EQ(a.rms_eps, b.rms_eps);
  EXPECT_EQ(a.lightning_norm_eps, b.lightning_norm_eps);
  EXPECT_EQ(a.rope_theta, b.rope_theta);
  EXPECT_EQ(a.tie_embeddings, b.tie_embeddings);
  EXPECT_EQ(a.layer_kinds, b.layer_kinds);
  EXPECT_EQ(a.lightning_alpha, b.lightning_alpha);
  EXPECT_EQ(a.lightning_beta, b.lightning_beta);
  EXPECT_EQ(a.full_alpha, b.full_alpha);
  EXPECT_EQ(a.full_beta, b.full_beta);
  EXPECT_EQ(a.mlp_alpha, b.mlp_alpha);
  EXPECT_EQ(a.mlp_beta, b.mlp_beta);
  EXPECT_EQ(a.bos_token_id, b.bos_token_id);
  EXPECT_EQ(a.eos_token_id, b.eos_token_id);
}

TEST(Config, RealMiniMaxM1) {
  ModelConfig c = ModelConfig::load(mmx_test::shared_path("reference/minimax-m1/config.json"));
  EXPECT_EQ(c.model_type, "minimax_m1");
  EXPECT_TRUE(c.official_spelling);
  EXPECT_EQ(c.hidden, 6144);
  EXPECT_EQ(c.intermediate, 9216);
  EXPECT_EQ(c.layers, 80);
  EXPECT_EQ(c.heads, 64);
  EXPECT_EQ(c.kv_heads, 8);
  EXPECT_EQ(c.head_dim, 128);
  EXPECT_EQ(c.rotary_dim, 64);
  EXPECT_EQ(c.experts, 32);
  EXPECT_EQ(c.top_k, 2);
  EXPECT_EQ(c.vocab, 200064);
  EXPECT_EQ(c.max_positions, 10240000);
  EXPECT_EQ(c.rope_theta, 1e7);
  EXPECT_EQ(c.rms_eps, 1e-5);
  EXPECT_EQ(c.lightning_norm_eps, 1e-6);
  EXPECT_FALSE(c.tie_embeddings);
  EXPECT_EQ(c.bos_token_id, -1);
  EXPECT_EQ(c.eos_token_id, -1);
  for (double a : {c.lightning_alpha, c.full_alpha, c.mlp_alpha}) EXPECT_DOUBLE_EQ(a, std::pow(2.0 * 80, 0.25));
  for (double b : {c.lightning_beta, c.full_beta, c.mlp_beta}) EXPECT_EQ(b, 1.0);
  ASSERT_EQ(c.layer_kinds.size(), 80u);
  for (int i = 0; i < 80; ++i)
    EXPECT_EQ(c.layer_kinds[size_t(i)], i % 8 == 7 ? LayerKind::Softmax : LayerKind::Lightning) << "layer " << i;
  EXPECT_EQ(c.softmax_layer_count(), 10);
}

TEST(Config, TransformersFixtureAndItsOfficialCopyDescribeTheSameModel) {
  ModelConfig native = ModelConfig::load(mmx_test::data_path("fixtures/tiny_a/config.json"));
  ModelConfig official = ModelConfig::load(mmx_test::data_path("fixtures/tiny_a_official/config.json"));
  EXPECT_FALSE(native.official_spelling);
  EXPECT_EQ(native.model_type, "minimax");
  EXPECT_TRUE(official.official_spelling);
  EXPECT_EQ(native.rotary_dim, 8);  // rope_parameters.partial_rotary_factor 0.5 of head_dim 16
  EXPECT_EQ(native.block_size, 64);
  EXPECT_EQ(official.block_size, 256);  // absent in the official spelling
  EXPECT_TRUE(native.tie_embeddings);
  EXPECT_EQ(native.lightning_alpha, 1.5);
  EXPECT_EQ(native.mlp_beta, 0.9);
  official.block_size = native.block_size;
  expect_same_model(native, official);
}

TEST(Config, WrittenJsonParsesBackIdentically) {
  ModelConfig c = mmx::tiny_test_config();
  c.bos_token_id = 1;
  c.eos_token_id = 2;
  c.tie_embeddings = true;
  c.block_size = 32;
  for (bool official : {true, false}) {
    c.official_spelling = official;
    c.model_type = official ? "minimax_text_01" : "minimax";
    ModelConfig back = ModelConfig::parse(mmx::config_to_json(c, official));
    EXPECT_EQ(back.official_spelling, official);
    EXPECT_EQ(back.model_type, c.model_type);
    expect_same_model(back, c);
  }
  ModelConfig m1 = ModelConfig::load(mmx_test::shared_path("reference/minimax-m1/config.json"));
  expect_same_model(ModelConfig::parse(mmx::config_to_json(m1, true)), m1);
  ModelConfig as_native = ModelConfig::parse(mmx::config_to_json(m1, false));
  EXPECT_FALSE(as_native.official_spelling);
  expect_same_model(as_native, m1);
}

TEST(Config, DefaultsForOptionalFields) {
  json j = official_json();
  for (const char* k : {"head_dim", "num_key_value_heads", "block_size", "rms_norm_eps", "tie_word_embeddings",
                        "hidden_act", "postnorm", "shared_intermediate_size", "rotary_dim", "bos_token_id"})
    j.erase(k);
  j["eos_token_id"] = {7, 9};
  ModelConfig c = ModelConfig::parse(j.dump());
  EXPECT_EQ(c.head_dim, 16);  // hidden / heads
  EXPECT_EQ(c.kv_heads, 4);   // = heads
  EXPECT_EQ(c.rotary_dim, 16);  // whole head
  EXPECT_EQ(c.block_size, 256);
  EXPECT_EQ(c.rms_eps, 1e-5);
  EXPECT_EQ(c.bos_token_id, -1);
  EXPECT_EQ(c.eos_token_id, 7);  // first of a list

  json n = native_json();
  n["rope_theta"] = n["rope_parameters"]["rope_theta"];  // older files: top level
  n["partial_rotary_factor"] = 0.25;
  n.erase("rope_parameters");
  c = ModelConfig::parse(n.dump());
  EXPECT_EQ(c.rope_theta, 10000.0);
  EXPECT_EQ(c.rotary_dim, 4);
}

TEST(Config, BothSpellingsMayAgree) {
  json j = official_json();
  json n = native_json();
  for (auto it = n.begin(); it != n.end(); ++it)
    if (!j.contains(it.key())) j[it.key()] = it.value();
  ModelConfig c = ModelConfig::parse(j.dump());
  expect_same_model(c, mmx::tiny_test_config());
}

TEST(Config, ContradictingSpellingsAreRefused) {
  json both = official_json();
  json n = native_json();
  for (auto it = n.begin(); it != n.end(); ++it)
    if (!both.contains(it.key())) both[it.key()] = it.value();

  json j = both;
  j["layer_types"][0] = "full_attention";
  expect_refused(j, {"attn_type_list", "layer_types", "contradict"});
  j = both;
  j["mlp_alpha_factor"] = 2.0;
  expect_refused(j, {"layernorm_mlp_alpha", "mlp_alpha_factor"});
  j = both;
  j["rope_parameters"]["partial_rotary_factor"] = 1.0;
  expect_refused(j, {"rotary_dim", "partial_rotary_factor"});
  j = both;
  j["rope_parameters"]["rope_theta"] = 5.0e5;
  expect_refused(j, {"rope_theta", "rope_parameters.rope_theta"});
}

TEST(Config, RefusesMalformedJson) {
  try {
    ModelConfig::parse("{\"hidden_size\": 64,", "broken.json");
    ADD_FAILURE();
  } catch (const mmx::Error& e) {
    EXPECT_EQ(e.code(), Code::Format);
    EXPECT_NE(std::string(e.what()).find("broken.json"), std::string::npos);
  }
  // Numbers beyond double range are a JSON error of their own kind (found by fuzzing).
  try {
    ModelConfig::parse("{\"hidden_size\": 1e999}", "huge.json");
    ADD_FAILURE();
  } catch (const mmx::Error& e) {
    EXPECT_EQ(e.code(), Code::Format) << e.what();
  }
  expect_refused(json::array({1, 2}), {"object"});
  expect_refused(json::object(), {"attn_type_list", "layer_types"});
}

TEST(Config, RefusesMissingRequiredFields) {
  for (const char* field : {"hidden_size", "intermediate_size", "num_hidden_layers", "num_attention_heads",
                            "num_local_experts", "num_experts_per_tok", "vocab_size", "rope_theta"}) {
    json j = official_json();
    j.erase(field);
    expect_refused(j, {field, "missing"});
  }
  json j = native_json();
  j.erase("rope_parameters");
  expect_refused(j, {"rope_theta", "missing"});
}

TEST(Config, RefusesWrongTypes) {
  json j = official_json();
  j["hidden_size"] = "64";
  expect_refused(j, {"hidden_size", "integer"});
  j = official_json();
  j["num_attention_heads"] = 4.5;
  expect_refused(j, {"num_attention_heads", "integer"});
  j = official_json();
  j["tie_word_embeddings"] = "yes";
  expect_refused(j, {"tie_word_embeddings"});
  j = official_json();
  j["rope_theta"] = "big";
  expect_refused(j, {"rope_theta", "number"});
  j = native_json();
  j["layer_types"] = "linear_attention";
  expect_refused(j, {"layer_types", "array"});
  j = native_json();
  j["rope_parameters"] = 3;
  expect_refused(j, {"rope_parameters"});
  j = official_json();
  j["hidden_act"] = 1;
  expect_refused(j, {"hidden_act", "string"});
}

TEST(Config, RefusesNonPositiveOrAbsurdSizes) {
  for (const char* field : {"hidden_size", "intermediate_size", "num_key_value_heads", "head_dim", "vocab_size",
                            "num_local_experts", "num_experts_per_tok", "block_size", "max_position_embeddings"}) {
    for (long long v : {0LL, -4LL, 1LL << 40}) {
      json j = official_json();
      j[field] = v;
      expect_refused(j, {field});
    }
  }
}

TEST(Config, RefusesBadLayerLists) {
  json j = official_json();
  j["attn_type_list"] = {0, 0, 1};
  expect_refused(j, {"attn_type_list", "3 entries", "num_hidden_layers is 4"});
  j = official_json();
  j["attn_type_list"][1] = 2;
  expect_refused(j, {"attn_type_list", "entry 1"});
  j = native_json();
  j["layer_types"][2] = "sliding_attention";
  expect_refused(j, {"layer_types", "entry 2", "sliding_attention"});
  j = native_json();
  j["num_hidden_layers"] = 5;
  expect_refused(j, {"layer_types", "num_hidden_layers is 5"});
}

TEST(Config, RefusesUnsupportedShapes) {
  json j = official_json();
  j["rotary_dim"] = 7;
  expect_refused(j, {"rotary_dim", "even"});
  j["rotary_dim"] = 32;
  expect_refused(j, {"rotary_dim", "head_dim"});
  j = native_json();
  j["rope_parameters"]["partial_rotary_factor"] = 0.3;  // 4.8 dims
  expect_refused(j, {"partial_rotary_factor", "whole number"});
  j = native_json();
  j["rope_parameters"]["rope_type"] = "yarn";
  expect_refused(j, {"rope_type", "yarn"});
  j = official_json();
  j["num_key_value_heads"] = 3;
  expect_refused(j, {"num_attention_heads", "multiple", "num_key_value_heads"});
  j = official_json();
  j["num_experts_per_tok"] = 5;
  expect_refused(j, {"num_experts_per_tok", "num_local_experts"});
  j = official_json();
  j["num_attention_heads"] = 6;
  j["num_key_value_heads"] = 6;
  expect_refused(j, {"num_attention_heads", "power of two", "ALiBi"});
  j = official_json();
  j["head_dim"] = nullptr;
  j["hidden_size"] = 66;  // not a multiple of 4 heads
  expect_refused(j, {"head_dim"});
  j = official_json();
  j["eos_token_id"] = 256;
  expect_refused(j, {"eos_token_id", "vocab_size"});
}

TEST(Config, RefusesOtherArchitectures) {
  json j = native_json();
  j["model_type"] = "qwen3_next";
  expect_refused(j, {"model_type", "qwen3_next"});
  j = official_json();
  j["postnorm"] = false;
  expect_refused(j, {"postnorm"});
  j = official_json();
  j["hidden_act"] = "gelu";
  expect_refused(j, {"hidden_act", "silu", "gelu"});
  j = official_json();
  j["shared_intermediate_size"] = 1024;
  expect_refused(j, {"shared_intermediate_size"});
  j = official_json();
  j["rms_norm_eps"] = -1e-5;
  expect_refused(j, {"rms_norm_eps"});
}

TEST(Config, LoadReportsMissingFile) {
  try {
    ModelConfig::load(mmx_test::data_path("no-such-dir/config.json"));
    ADD_FAILURE();
  } catch (const mmx::Error& e) {
    EXPECT_EQ(e.code(), Code::NotFound);
    EXPECT_NE(std::string(e.what()).find("no-such-dir"), std::string::npos);
  }
}

TEST(Config, LightningDecayFollowsTheSpec) {
  ModelConfig c = ModelConfig::load(mmx_test::shared_path("reference/minimax-m1/config.json"));
  EXPECT_DOUBLE_EQ(c.lightning_slope(0), std::pow(2.0, -8.0 / 64));
  EXPECT_DOUBLE_EQ(c.lightning_slope(63), 1.0 / 256);
  EXPECT_DOUBLE_EQ(c.lightning_layer_factor(0), 1.0 + 1e-5);
  EXPECT_DOUBLE_EQ(c.lightning_layer_factor(79), 1e-5);
  EXPECT_DOUBLE_EQ(c.lightning_layer_factor(40), 1.0 - 40.0 / 79 + 1e-5);
  EXPECT_DOUBLE_EQ(c.lightning_decay(7, 3), std::exp(-std::pow(2.0, -32.0 / 64) * (1.0 - 7.0 / 79 + 1e-5)));
  c.layers = 1;
  EXPECT_EQ(c.lightning_layer_factor(0), 1.0);
}

}  // namespace
