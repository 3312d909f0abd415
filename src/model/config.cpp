// config.json parsing for both spellings of model-spec §2, with validation that names the field.
#include "model/config.h"

#include <cmath>
#include <fstream>
#include <limits>
#include <memory>
#include <nlohmann/json.hpp>
#include <sstream>

#include "core/error.h"

namespace mmx {
namespace {

using json = nlohmann::json;

// Upper bound for any single size in a config: keeps every product of two sizes inside int64
// and every size inside the int32 range the kernels index with.
constexpr int64_t kMaxSize = std::numeric_limits<int32_t>::max();

const char* json_type_name(const json& v) { return v.type_name(); }

// Field readers bound to one JSON object; every error names the source file and the field.
class Fields {
 public:
  Fields(const json& obj, std::string source, std::string prefix = "")
      : obj_(obj), source_(std::move(source)), prefix_(std::move(prefix)) {}

  bool has(const char* key) const { return obj_.contains(key) && !obj_.at(key).is_null(); }
  const json& at(const char* key) const { return obj_.at(key); }

  [[noreturn]] void error(const std::string& key, const std::string& what) const {
    fail(Code::Format, source_ + ": field '" + prefix_ + key + "' " + what);
  }

  void require(const char* key) const {
    if (!has(key)) error(key, "is missing (required)");
  }

  int64_t integer(const char* key) const {
    const json& v = at(key);
    if (v.is_number_unsigned()) {
      uint64_t u = v.get<uint64_t>();
      if (u > uint64_t(std::numeric_limits<int64_t>::max())) error(key, "is too large");
      return int64_t(u);
    }
    if (v.is_number_integer()) return v.get<int64_t>();
    if (v.is_number_float()) {
      double d = v.get<double>();
      if (std::isfinite(d) && d == std::floor(d) && std::fabs(d) < 9.0e15) return int64_t(d);
      error(key, "must be an integer (got " + v.dump() + ")");
    }
    error(key, std::string("must be an integer (got ") + json_type_name(v) + ")");
  }

  int64_t size(const char* key) const {
    require(key);
    int64_t n = integer(key);
    if (n <= 0) error(key, "must be positive (got " + std::to_string(n) + ")");
    if (n > kMaxSize) error(key, "is too large (" + std::to_string(n) + ")");
    return n;
  }

  int64_t size_or(const char* key, int64_t fallback) const { return has(key) ? size(key) : fallback; }

  double number(const char* key) const {
    const json& v = at(key);
    if (!v.is_number()) error(key, std::string("must be a number (got ") + json_type_name(v) + ")");
    double d = v.get<double>();
    if (!std::isfinite(d)) error(key, "must be finite");
    return d;
  }

  bool boolean(const char* key) const {
    const json& v = at(key);
    if (!v.is_boolean()) error(key, std::string("must be true or false (got ") + json_type_name(v) + ")");
    return v.get<bool>();
  }

  std::string string(const char* key) const {
    const json& v = at(key);
    if (!v.is_string()) error(key, std::string("must be a string (got ") + json_type_name(v) + ")");
    return v.get<std::string>();
  }

  const json& array(const char* key) const {
    const json& v = at(key);
    if (!v.is_array()) error(key, std::string("must be an array (got ") + json_type_name(v) + ")");
    return v;
  }

  // A token id: an integer, null (absent) or a list whose first entry is used.
  int64_t token_id(const char* key) const {
    if (!has(key)) return -1;
    const json& v = at(key);
    if (v.is_array()) {
      if (v.empty()) return -1;
      const json holder = json{{key, v.front()}};
      return Fields(holder, source_, prefix_).token_id(key);
    }
    int64_t id = integer(key);
    if (id < 0) error(key, "must be a non-negative token id");
    return id;
  }

 private:
  const json& obj_;
  std::string source_, prefix_;
};

bool nearly_equal(double a, double b) { return std::fabs(a - b) <= 1e-12 * std::max(std::fabs(a), std::fabs(b)); }

std::string num_text(double v) {
  std::ostringstream ss;
  ss.precision(17);
  ss << v;
  return ss.str();
}

// One value that either spelling may give; when both give it they must agree.
struct Spelled {
  bool present = false;
  double value = 0;
  std::string from;
};

void merge_spelling(Spelled* acc, double value, const std::string& from, const std::string& source) {
  if (acc->present && !nearly_equal(acc->value, value))
    fail(Code::Format, source + ": '" + acc->from + "' (" + num_text(acc->value) + ") and '" + from + "' (" +
                           num_text(value) + ") contradict each other");
  if (!acc->present) *acc = Spelled{true, value, from};
}

std::vector<LayerKind> parse_attn_type_list(const Fields& f, int64_t layers) {
  const json& list = f.array("attn_type_list");
  if (int64_t(list.size()) != layers)
    f.error("attn_type_list", "has " + std::to_string(list.size()) + " entries but num_hidden_layers is " +
                                  std::to_string(layers));
  std::vector<LayerKind> kinds;
  for (size_t i = 0; i < list.size(); ++i) {
    const json& v = list[i];
    if (!v.is_number_integer() || (v.get<int64_t>() != 0 && v.get<int64_t>() != 1))
      f.error("attn_type_list", "entry " + std::to_string(i) + " must be 0 (lightning) or 1 (softmax), got " +
                                    v.dump());
    kinds.push_back(v.get<int64_t>() == 1 ? LayerKind::Softmax : LayerKind::Lightning);
  }
  return kinds;
}

std::vector<LayerKind> parse_layer_types(const Fields& f, int64_t layers) {
  const json& list = f.array("layer_types");
  if (int64_t(list.size()) != layers)
    f.error("layer_types", "has " + std::to_string(list.size()) + " entries but num_hidden_layers is " +
                               std::to_string(layers));
  std::vector<LayerKind> kinds;
  for (size_t i = 0; i < list.size(); ++i) {
    const json& v = list[i];
    if (v == "linear_attention") kinds.push_back(LayerKind::Lightning);
    else if (v == "full_attention") kinds.push_back(LayerKind::Softmax);
    else
      f.error("layer_types", "entry " + std::to_string(i) +
                                 " must be \"linear_attention\" or \"full_attention\", got " + v.dump());
  }
  return kinds;
}

bool is_power_of_two(int64_t n) { return n > 0 && (n & (n - 1)) == 0; }

// rotary_dim from `rotary_dim` and/or `partial_rotary_factor` (top level or in rope_parameters).
int64_t parse_rotary_dim(const Fields& top, const Fields* rope, int64_t head_dim, const std::string& source) {
  Spelled rd;
  if (top.has("rotary_dim")) merge_spelling(&rd, double(top.integer("rotary_dim")), "rotary_dim", source);
  auto from_factor = [&](const Fields& f, const char* name) {
    double factor = f.number("partial_rotary_factor");
    if (factor <= 0 || factor > 1) f.error("partial_rotary_factor", "must be in (0, 1], got " + num_text(factor));
    double dims = factor * double(head_dim);
    if (std::fabs(dims - std::round(dims)) > 1e-6)
      f.error("partial_rotary_factor", "times head_dim (" + std::to_string(head_dim) + ") is not a whole number");
    merge_spelling(&rd, std::round(dims), name, source);
  };
  if (top.has("partial_rotary_factor")) from_factor(top, "partial_rotary_factor");
  if (rope && rope->has("partial_rotary_factor")) from_factor(*rope, "rope_parameters.partial_rotary_factor");
  int64_t rotary = rd.present ? int64_t(rd.value) : head_dim;
  if (rotary <= 0 || rotary > head_dim || rotary % 2 != 0)
    fail(Code::Format, source + ": rotary_dim " + std::to_string(rotary) + " must be even and in (0, head_dim = " +
                           std::to_string(head_dim) + "]");
  return rotary;
}

void parse_residual_scales(const Fields& f, ModelConfig* c, const std::string& source) {
  struct Pair {
    const char* official;
    const char* native;
    double* out;
  };
  const Pair pairs[] = {
      {"layernorm_linear_attention_alpha", "linear_attn_alpha_factor", &c->lightning_alpha},
      {"layernorm_linear_attention_beta", "linear_attn_beta_factor", &c->lightning_beta},
      {"layernorm_full_attention_alpha", "full_attn_alpha_factor", &c->full_alpha},
      {"layernorm_full_attention_beta", "full_attn_beta_factor", &c->full_beta},
      {"layernorm_mlp_alpha", "mlp_alpha_factor", &c->mlp_alpha},
      {"layernorm_mlp_beta", "mlp_beta_factor", &c->mlp_beta},
  };
  for (const Pair& p : pairs) {
    Spelled s;
    if (f.has(p.official)) merge_spelling(&s, f.number(p.official), p.official, source);
    if (f.has(p.native)) merge_spelling(&s, f.number(p.native), p.native, source);
    *p.out = s.present ? s.value : 1.0;
  }
}

double parse_rope_theta(const Fields& top, const Fields* rope, const std::string& source) {
  Spelled theta;
  if (top.has("rope_theta")) merge_spelling(&theta, top.number("rope_theta"), "rope_theta", source);
  if (rope && rope->has("rope_theta"))
    merge_spelling(&theta, rope->number("rope_theta"), "rope_parameters.rope_theta", source);
  if (!theta.present) top.error("rope_theta", "is missing (required; or rope_parameters.rope_theta)");
  if (theta.value <= 1) top.error("rope_theta", "must be greater than 1, got " + num_text(theta.value));
  return theta.value;
}

void validate(const ModelConfig& c, const std::string& source) {
  auto bad = [&](const std::string& msg) { fail(Code::Format, source + ": " + msg); };
  if (!is_power_of_two(c.heads))
    bad("num_attention_heads = " + std::to_string(c.heads) +
        " is not a power of two; the ALiBi slope interleaving rule for other head counts is not supported");
  if (c.heads % c.kv_heads != 0)
    bad("num_attention_heads (" + std::to_string(c.heads) + ") must be a multiple of num_key_value_heads (" +
        std::to_string(c.kv_heads) + ")");
  if (c.top_k > c.experts)
    bad("num_experts_per_tok (" + std::to_string(c.top_k) + ") exceeds num_local_experts (" +
        std::to_string(c.experts) + ")");
  if (c.heads * c.head_dim > kMaxSize) bad("num_attention_heads * head_dim is too large");
  if (c.bos_token_id >= c.vocab) bad("bos_token_id " + std::to_string(c.bos_token_id) + " is not below vocab_size");
  if (c.eos_token_id >= c.vocab) bad("eos_token_id " + std::to_string(c.eos_token_id) + " is not below vocab_size");
}

// Everything after JSON parsing; every field access is type-checked first.
ModelConfig config_from_json(const json& root, const std::string& source) {
  Fields f(root, source);
  ModelConfig c;
  const bool has_official = f.has("attn_type_list");
  const bool has_native = f.has("layer_types");
  if (f.has("model_type")) c.model_type = f.string("model_type");
  if (!has_official && !has_native)
    fail(Code::Format, source + ": neither 'attn_type_list' (official spelling) nor 'layer_types' "
                                "(transformers spelling) is present; cannot tell which layers are softmax");
  // Other architectures use layer_types too (e.g. hybrid linear-attention models); without the
  // official attn_type_list, the model_type must say MiniMax.
  if (!has_official && !c.model_type.empty() && c.model_type != "minimax" && c.model_type != "minimax_text_01" &&
      c.model_type != "minimax_m1")
    f.error("model_type", "is \"" + c.model_type + "\", not a MiniMax-01 model (expected \"minimax\")");
  c.official_spelling = has_official;
  if (c.model_type.empty()) c.model_type = has_official ? "minimax_text_01" : "minimax";

  c.hidden = f.size("hidden_size");
  c.intermediate = f.size("intermediate_size");
  c.layers = f.size("num_hidden_layers");
  c.heads = f.size("num_attention_heads");
  c.kv_heads = f.size_or("num_key_value_heads", c.heads);
  if (f.has("head_dim")) {
    c.head_dim = f.size("head_dim");
  } else {
    if (c.hidden % c.heads != 0)
      f.error("head_dim", "is absent and hidden_size is not a multiple of num_attention_heads");
    c.head_dim = c.hidden / c.heads;
  }
  c.experts = f.size("num_local_experts");
  c.top_k = f.size("num_experts_per_tok");
  c.vocab = f.size("vocab_size");
  c.max_positions = f.size_or("max_position_embeddings", 131072);
  c.block_size = f.size_or("block_size", 256);
  if (f.has("rms_norm_eps")) {
    c.rms_eps = f.number("rms_norm_eps");
    if (c.rms_eps <= 0 || c.rms_eps >= 1) f.error("rms_norm_eps", "must be in (0, 1)");
  }
  if (f.has("tie_word_embeddings")) c.tie_embeddings = f.boolean("tie_word_embeddings");
  if (f.has("hidden_act") && f.string("hidden_act") != "silu")
    f.error("hidden_act", "must be \"silu\" (got \"" + f.string("hidden_act") + "\")");
  if (f.has("postnorm") && !f.boolean("postnorm"))
    f.error("postnorm", "is false; only the post-norm layout of MiniMax-01 is supported");
  if (f.has("shared_intermediate_size") && f.integer("shared_intermediate_size") != 0)
    f.error("shared_intermediate_size", "must be 0 (shared experts are not part of this architecture)");

  if (has_official) c.layer_kinds = parse_attn_type_list(f, c.layers);
  if (has_native) {
    std::vector<LayerKind> kinds = parse_layer_types(f, c.layers);
    if (has_official && kinds != c.layer_kinds)
      fail(Code::Format, source + ": 'attn_type_list' and 'layer_types' contradict each other");
    c.layer_kinds = kinds;
  }

  std::unique_ptr<Fields> rope;
  if (f.has("rope_parameters")) {
    if (!f.at("rope_parameters").is_object()) f.error("rope_parameters", "must be an object");
    rope = std::make_unique<Fields>(f.at("rope_parameters"), source, "rope_parameters.");
    if (rope->has("rope_type") && rope->string("rope_type") != "default")
      rope->error("rope_type", "must be \"default\" (got \"" + rope->string("rope_type") + "\")");
  }
  c.rope_theta = parse_rope_theta(f, rope.get(), source);
  c.rotary_dim = parse_rotary_dim(f, rope.get(), c.head_dim, source);
  parse_residual_scales(f, &c, source);
  c.bos_token_id = f.token_id("bos_token_id");
  c.eos_token_id = f.token_id("eos_token_id");
  validate(c, source);
  return c;
}

}  // namespace

ModelConfig ModelConfig::parse(const std::string& json_text, const std::string& source) {
  json root;
  try {
    root = json::parse(json_text);
  } catch (const json::exception& e) {
    fail(Code::Format, source + ": invalid JSON: " + e.what());
  }
  if (!root.is_object()) fail(Code::Format, source + ": top level must be a JSON object");
  try {
    return config_from_json(root, source);
  } catch (const json::exception& e) {  // defensive: a JSON access the checks above missed
    fail(Code::Format, source + ": " + e.what());
  }
}

ModelConfig ModelConfig::load(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  if (!in) fail(Code::NotFound, "cannot open model config " + path);
  in.seekg(0, std::ios::end);
  std::streamoff size = in.tellg();
  // A config is a few KB; refuse anything that could not be one rather than reading it all.
  if (size < 0 || size > (16 << 20)) fail(Code::Format, path + ": not a model config (size " + std::to_string(size) + ")");
  in.seekg(0);
  std::string text(size_t(size), '\0');
  in.read(&text[0], size);
  if (!in) fail(Code::Io, "cannot read " + path);
  return parse(text, path);
}

int64_t ModelConfig::softmax_layer_count() const {
  int64_t n = 0;
  for (LayerKind k : layer_kinds) n += k == LayerKind::Softmax;
  return n;
}

double ModelConfig::lightning_slope(int64_t head) const {
  return std::exp2(-8.0 * double(head + 1) / double(heads));
}

double ModelConfig::lightning_layer_factor(int64_t layer) const {
  if (layers <= 1) return 1.0;
  return 1.0 - double(layer) / double(layers - 1) + 1e-5;
}

double ModelConfig::lightning_decay(int64_t layer, int64_t head) const {
  return std::exp(-lightning_slope(head) * lightning_layer_factor(layer));
}

}  // namespace mmx
