// Tensor-name mapping (model-spec §3) for both spellings, shared by ModelWeights::map (real
// tensors) and ModelWeights::check_names (names and optional shapes only).
#include "model/weights.h"

#include <cstring>
#include <map>
#include <set>
#include <sstream>

#include "core/error.h"
#include "model/weight_names.h"

namespace mmx {
namespace {

// What is known about one tensor: everything for files, only name (and maybe shape) for an index.
struct Entry {
  std::string file;  // for messages; empty when unknown
  bool dtype_known = false;
  DType dtype = DType::F32;
  bool shape_known = false;
  std::vector<int64_t> shape;
  const uint8_t* data = nullptr;
};

std::string shape_text(const std::vector<int64_t>& s) {
  std::ostringstream ss;
  ss << "[";
  for (size_t i = 0; i < s.size(); ++i) ss << (i ? ", " : "") << s[i];
  ss << "]";
  return ss.str();
}

bool is_derived_buffer(const std::string& name, int64_t layers) {
  static const char* kBuffers[] = {"slope_rate", "query_decay", "key_decay", "diagonal_decay"};
  for (int64_t i = 0; i < layers; ++i) {
    const std::string p = layer_prefix(i) + "self_attn.";
    if (name.compare(0, p.size(), p) != 0) continue;
    for (const char* b : kBuffers)
      if (name.compare(p.size(), std::string::npos, b) == 0) return true;
  }
  return false;
}

class Mapper {
 public:
  Mapper(const ModelConfig& c, const std::map<std::string, Entry>& tensors) : c_(c), t_(tensors) {}

  ModelWeights run() {
    const int64_t H = c_.hidden, V = c_.vocab;
    ModelWeights w;
    w.embed = take({"model.embed_tokens.weight"}, {V, H});
    w.final_norm = take({"model.norm.weight"}, {H});
    if (c_.tie_embeddings) {
      w.lm_head = w.embed;
      if (t_.count("lm_head.weight")) check_only("lm_head.weight", {V, H});  // redundant copy: unused
    } else {
      w.lm_head = take({"lm_head.weight"}, {V, H});
    }
    for (int64_t i = 0; i < c_.layers; ++i) w.layers.push_back(map_layer(i));
    report_leftovers();
    w.count = next_id_;
    return w;
  }

  std::vector<std::string> problems;

 private:
  LayerWeights map_layer(int64_t i) {
    const int64_t H = c_.hidden, q_rows = c_.heads * c_.head_dim, kv_rows = c_.kv_heads * c_.head_dim;
    const std::string p = layer_prefix(i);
    LayerWeights l;
    l.kind = c_.layer_kinds[size_t(i)];
    l.input_norm = take({p + "input_layernorm.weight"}, {H});
    l.post_norm = take({p + "post_attention_layernorm.weight"}, {H});
    if (l.kind == LayerKind::Lightning) {
      l.qkv = take({p + "self_attn.qkv_proj.weight"}, {3 * q_rows, H});
      l.out_gate = take({p + "self_attn.output_gate.weight"}, {q_rows, H});
      l.out_proj = take({p + "self_attn.out_proj.weight"}, {H, q_rows});
      l.attn_norm = take({p + "self_attn.norm.weight"}, {q_rows});
    } else {
      l.q = take({p + "self_attn.q_proj.weight"}, {q_rows, H});
      l.k = take({p + "self_attn.k_proj.weight"}, {kv_rows, H});
      l.v = take({p + "self_attn.v_proj.weight"}, {kv_rows, H});
      l.o = take({p + "self_attn.o_proj.weight"}, {H, q_rows});
    }
    l.router = take({p + "block_sparse_moe.gate.weight", p + "mlp.gate.weight"}, {c_.experts, H});
    map_experts(p, &l);
    return l;
  }

  void map_experts(const std::string& p, LayerWeights* l) {
    const int64_t H = c_.hidden, F = c_.intermediate, E = c_.experts;
    const std::vector<std::string> gate_up = {p + "mlp.experts.gate_up_proj", p + "block_sparse_moe.experts.gate_up_proj"};
    const std::vector<std::string> down = {p + "mlp.experts.down_proj", p + "block_sparse_moe.experts.down_proj"};
    bool fused = false;
    for (const auto* names : {&gate_up, &down})
      for (const std::string& n : *names) fused = fused || t_.count(n);
    if (fused) {
      const Entry* gu = take_entry(gate_up, {E, 2 * F, H});
      const Entry* dn = take_entry(down, {E, H, F});
      for (int64_t e = 0; e < E; ++e) {
        l->w1.push_back(view(gu, gate_up, e, 2 * F, 0, F, H));
        l->w3.push_back(view(gu, gate_up, e, 2 * F, F, F, H));
        l->w2.push_back(view(dn, down, e, H, 0, H, F));
      }
      return;
    }
    for (int64_t e = 0; e < E; ++e) {
      auto names = [&](const char* w) {
        const std::string tail = "experts." + std::to_string(e) + "." + w + ".weight";
        return std::vector<std::string>{p + "block_sparse_moe." + tail, p + "mlp." + tail};
      };
      l->w1.push_back(take(names("w1"), {F, H}));
      l->w3.push_back(take(names("w3"), {F, H}));
      l->w2.push_back(take(names("w2"), {H, F}));
    }
  }

  // Expert e's [rows, cols] slice starting at row `row0` of a fused [E, expert_rows, cols] tensor.
  WeightRef view(const Entry* fused, const std::vector<std::string>& names, int64_t e, int64_t expert_rows,
                 int64_t row0, int64_t rows, int64_t cols) {
    WeightRef w;
    w.id = next_id_++;
    w.name = present_name(names) + "[expert " + std::to_string(e) + ", rows " + std::to_string(row0) + ".." +
             std::to_string(row0 + rows) + ")";
    w.rows = rows;
    w.cols = cols;
    if (!fused) return w;
    w.dtype = fused->dtype;
    if (fused->data)
      w.data = fused->data + size_t((e * expert_rows + row0) * cols) * dtype_size(fused->dtype);
    return w;
  }

  std::string present_name(const std::vector<std::string>& names) const {
    for (const std::string& n : names)
      if (t_.count(n)) return n;
    return names.front();
  }

  // Finds exactly one of the alternative spellings, checks it and marks it used.
  const Entry* take_entry(const std::vector<std::string>& names, const std::vector<int64_t>& shape) {
    const Entry* found = nullptr;
    std::string found_name;
    for (const std::string& n : names) {
      auto it = t_.find(n);
      if (it == t_.end()) continue;
      used_.insert(n);
      if (found) {
        problems.push_back("tensors '" + found_name + "' and '" + n + "' are two spellings of the same weight");
        return nullptr;
      }
      found = &it->second;
      found_name = n;
    }
    if (!found) {
      std::string msg = "missing tensor '" + names.front() + "'";
      if (names.size() > 1) msg += " (or '" + names[1] + "')";
      problems.push_back(msg);
      return nullptr;
    }
    if (!check_only(found_name, shape)) return nullptr;
    if (found->dtype_known && found->dtype == DType::I8 && shape.size() == 3) {
      problems.push_back("tensor '" + found_name + "': int8 is supported only for per-expert 2-D weights");
      return nullptr;
    }
    return found;
  }

  // Shape and dtype checks for a present tensor; true when usable.
  bool check_only(const std::string& name, const std::vector<int64_t>& shape) {
    const Entry& e = t_.at(name);
    used_.insert(name);
    const std::string where = e.file.empty() ? "" : " (in " + e.file + ")";
    if (e.shape_known && e.shape != shape) {
      problems.push_back("tensor '" + name + "'" + where + " has shape " + shape_text(e.shape) + ", expected " +
                         shape_text(shape));
      return false;
    }
    if (e.dtype_known && e.dtype != DType::F32 && e.dtype != DType::BF16 && e.dtype != DType::F16 &&
        e.dtype != DType::I8) {
      problems.push_back("tensor '" + name + "'" + where + " has unsupported dtype " + dtype_name(e.dtype));
      return false;
    }
    return true;
  }

  WeightRef take(const std::vector<std::string>& names, const std::vector<int64_t>& shape) {
    WeightRef w;
    w.id = next_id_++;
    w.name = present_name(names);
    w.rows = shape.size() == 2 ? shape[0] : 1;
    w.cols = shape.back();
    const Entry* e = take_entry(names, shape);
    if (!e) return w;
    w.dtype = e->dtype_known ? e->dtype : DType::BF16;
    w.data = e->data;
    if (e->dtype_known && e->dtype == DType::I8) attach_scale(&w);
    return w;
  }

  void attach_scale(WeightRef* w) {
    const std::string scale = scale_name_for(w->name);
    auto it = scale.empty() ? t_.end() : t_.find(scale);
    if (w->rows <= 1 || it == t_.end()) {
      problems.push_back("int8 tensor '" + w->name + "' needs a per-row scale tensor '" +
                         (scale.empty() ? w->name + "_scale" : scale) + "' [" + std::to_string(w->rows) + "]" +
                         (w->rows <= 1 ? " and must be 2-D" : ""));
      return;
    }
    const Entry& s = it->second;
    used_.insert(scale);
    if (s.shape != std::vector<int64_t>{w->rows} || (s.dtype != DType::F32 && s.dtype != DType::BF16)) {
      problems.push_back("scale tensor '" + scale + "' must be F32 or BF16 with shape [" + std::to_string(w->rows) +
                         "], got " + dtype_name(s.dtype) + " " + shape_text(s.shape));
      return;
    }
    w->scale_dtype = s.dtype;
    w->scale = s.data;
  }

  void report_leftovers() {
    for (const auto& kv : t_) {
      const std::string& name = kv.first;
      if (used_.count(name) || is_derived_buffer(name, c_.layers)) continue;
      // Names-only checks cannot know which weights are int8; accept a scale whose weight is used.
      const std::string suffix = "_scale";
      if (!kv.second.dtype_known && name.size() > suffix.size() &&
          name.compare(name.size() - suffix.size(), suffix.size(), suffix) == 0 &&
          used_.count(name.substr(0, name.size() - suffix.size())))
        continue;
      problems.push_back("unexpected tensor '" + name + "'" + (kv.second.file.empty() ? "" : " (in " + kv.second.file + ")") +
                         ": no mapping rule for it in this config");
    }
  }

  const ModelConfig& c_;
  const std::map<std::string, Entry>& t_;
  std::set<std::string> used_;
  int next_id_ = 0;
};

}  // namespace

void WeightRef::row_to_f32(int64_t r, float* dst) const {
  MMX_CHECK(data, Code::State, "weight '" + name + "' has no data (shape-only model)");
  MMX_CHECK(r >= 0 && r < rows, Code::InvalidArgument,
            "row " + std::to_string(r) + " out of range for weight '" + name + "' with " + std::to_string(rows) + " rows");
  convert_to_f32(dtype, data + size_t(r * cols) * dtype_size(dtype), size_t(cols), dst);
  if (dtype != DType::I8) return;
  float s;
  if (scale_dtype == DType::F32) {
    std::memcpy(&s, scale + size_t(r) * 4, 4);
  } else {
    uint16_t h;
    std::memcpy(&h, scale + size_t(r) * 2, 2);
    s = bf16_to_f32(h);
  }
  for (int64_t c = 0; c < cols; ++c) dst[c] *= s;
}

std::vector<float> WeightRef::to_f32() const {
  std::vector<float> out(size_t(rows * cols));
  for (int64_t r = 0; r < rows; ++r) row_to_f32(r, out.data() + size_t(r * cols));
  return out;
}

ModelWeights ModelWeights::map(const ModelConfig& config, const TensorStore& store) {
  std::map<std::string, Entry> tensors;
  for (const std::string& name : store.names()) {
    const TensorInfo& t = store.get(name);
    tensors[name] = Entry{t.file, true, t.dtype, true, t.shape, t.data};
  }
  Mapper mapper(config, tensors);
  ModelWeights w = mapper.run();
  if (!mapper.problems.empty()) {
    std::string msg = "the tensors in " + (store.dir().empty() ? std::string("the model") : store.dir()) +
                      " do not match config.json: ";
    const size_t shown = std::min<size_t>(mapper.problems.size(), 8);
    for (size_t i = 0; i < shown; ++i) msg += (i ? "; " : "") + mapper.problems[i];
    if (mapper.problems.size() > shown) msg += "; and " + std::to_string(mapper.problems.size() - shown) + " more";
    fail(Code::Format, msg);
  }
  return w;
}

std::vector<std::string> ModelWeights::check_names(
    const ModelConfig& config, const std::vector<std::pair<std::string, std::vector<int64_t>>>& names_and_shapes) {
  std::map<std::string, Entry> tensors;
  std::vector<std::string> problems;
  for (const auto& ns : names_and_shapes) {
    Entry e;
    e.shape_known = !ns.second.empty();
    e.shape = ns.second;
    if (!tensors.emplace(ns.first, e).second) problems.push_back("tensor '" + ns.first + "' is listed twice");
  }
  Mapper mapper(config, tensors);
  mapper.run();
  problems.insert(problems.end(), mapper.problems.begin(), mapper.problems.end());
  return problems;
}

}  // namespace mmx
