#include "quantize_checkpoint.h"

#include <algorithm>
#include <cmath>
#include <cstdio>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <nlohmann/json.hpp>
#include <vector>

#include "core/dtype.h"
#include "core/error.h"
#include "core/thread_pool.h"
#include "kernels/quant_rule.h"
#include "model/config.h"
#include "model/tensor_store.h"

namespace mmx::quantize {
namespace fs = std::filesystem;
using json = nlohmann::json;

namespace {

constexpr const char* kIndexName = "model.safetensors.index.json";
constexpr const char* kScheme =
    "int8 per output row, symmetric: scale = max|w| / 127 (fp32), q = round_half_even(w / scale) "
    "clamped to [-127, 127]; w = q * scale. Scale of tensor '<x>.weight' is '<x>.weight_scale' "
    "(F32, one value per row)";

bool ends_with(const std::string& s, const std::string& suffix) {
  return s.size() >= suffix.size() && s.compare(s.size() - suffix.size(), suffix.size(), suffix) == 0;
}

// One tensor of the output: a copy of an input tensor, the int8 form of rows
// [row0, row0 + rows) of one (viewed as [*, last dim]), or the scales of those rows.
struct OutTensor {
  enum Kind { Copy, Int8, Scale } kind = Copy;
  std::string name;
  const TensorInfo* src = nullptr;
  DType dtype = DType::F32;
  std::vector<int64_t> shape;
  uint64_t bytes = 0;
  int64_t row0 = 0, rows = 0;
};

struct Shard {
  std::string file;
  std::vector<OutTensor> tensors;
  uint64_t bytes = 0;
};

// Quantises rows [row0, row0 + rows) of src (viewed as [*, cols], its float dtype) into q and
// scale, rows in parallel.
void quantize_rows(const TensorInfo& src, int64_t row0, int64_t rows, int64_t cols,
                   ThreadPool& pool, std::vector<int8_t>* q, std::vector<float>* scale) {
  q->resize(size_t(rows * cols));
  scale->resize(size_t(rows));
  const size_t es = dtype_size(src.dtype);
  pool.parallel_for(rows, [&](int64_t b, int64_t e) {
    std::vector<float> row(static_cast<size_t>(cols));
    for (int64_t r = b; r < e; ++r) {
      convert_to_f32(src.dtype, src.data + size_t((row0 + r) * cols) * es, size_t(cols), row.data());
      float amax = 0.0f;
      for (float v : row) {
        MMX_CHECK(std::isfinite(v), Code::Format,
                  "tensor " + src.name + " row " + std::to_string(row0 + r) + " holds a non-finite value");
        amax = std::max(amax, std::fabs(v));
      }
      const float s = int8_row_scale(amax);
      (*scale)[size_t(r)] = s;
      int8_t* out = q->data() + r * cols;
      for (int64_t c = 0; c < cols; ++c) out[c] = int8_quantize(row[size_t(c)], s);
    }
  });
}

void write_all(std::ofstream& f, const void* data, uint64_t n, const std::string& path) {
  f.write(static_cast<const char*>(data), std::streamsize(n));
  MMX_CHECK(bool(f), Code::Io, "writing " + path + " failed");
}

// Streams one shard: header first (offsets are known from the shapes), then each tensor as it
// is produced, so memory holds one tensor at a time.
void write_shard(const Shard& shard, const fs::path& dir, const json& metadata, ThreadPool& pool) {
  json header = json::object();
  header["__metadata__"] = metadata;
  uint64_t off = 0;
  for (const OutTensor& t : shard.tensors) {
    header[t.name] = {{"dtype", dtype_name(t.dtype)}, {"shape", t.shape}, {"data_offsets", {off, off + t.bytes}}};
    off += t.bytes;
  }
  std::string text = header.dump();
  while (text.size() % 8) text.push_back(' ');  // data starts 8-byte aligned
  const std::string path = (dir / shard.file).string();
  std::ofstream f(path, std::ios::binary | std::ios::trunc);
  MMX_CHECK(bool(f), Code::Io, "cannot create " + path);
  uint8_t len[8];
  for (int i = 0; i < 8; ++i) len[i] = uint8_t(uint64_t(text.size()) >> (8 * i));
  write_all(f, len, 8, path);
  write_all(f, text.data(), text.size(), path);

  // An Int8 entry is always followed by its Scale entry (same shard): quantise once for both.
  std::vector<int8_t> q;
  std::vector<float> scale;
  for (const OutTensor& t : shard.tensors) {
    switch (t.kind) {
      case OutTensor::Copy:
        write_all(f, t.src->data, t.bytes, path);
        break;
      case OutTensor::Int8: {
        quantize_rows(*t.src, t.row0, t.rows, t.shape.back(), pool, &q, &scale);
        write_all(f, q.data(), t.bytes, path);
        break;
      }
      case OutTensor::Scale:
        MMX_CHECK(scale.size() * 4 == t.bytes, Code::Internal, "scale tensor out of order: " + t.name);
        write_all(f, scale.data(), t.bytes, path);
        break;
    }
  }
  f.close();
  MMX_CHECK(bool(f), Code::Io, "closing " + path + " failed");
}

std::string shard_file(int64_t i, int64_t n) {
  char buf[64];
  std::snprintf(buf, sizeof buf, "model-%05lld-of-%05lld.safetensors", (long long)(i + 1), (long long)n);
  return buf;
}

// Adds the int8 tensor `name` = rows [row0, row0 + rows) of src, and its scales.
void plan_int8(const std::string& name, const TensorInfo& src, int64_t row0, int64_t rows,
               std::vector<OutTensor>* plan) {
  const int64_t cols = src.shape.back();
  OutTensor q{OutTensor::Int8, name, &src, DType::I8, {rows, cols}, uint64_t(rows * cols), row0, rows};
  OutTensor s{OutTensor::Scale, scale_name(name), &src, DType::F32, {rows}, uint64_t(rows) * 4, row0, rows};
  plan->push_back(q);
  plan->push_back(s);
}

}  // namespace

bool is_quantized_name(const std::string& n) {
  static const char* kAttention[] = {".self_attn.qkv_proj.weight", ".self_attn.output_gate.weight",
                                     ".self_attn.out_proj.weight", ".self_attn.q_proj.weight",
                                     ".self_attn.k_proj.weight",   ".self_attn.v_proj.weight",
                                     ".self_attn.o_proj.weight"};
  for (const char* s : kAttention)
    if (ends_with(n, s)) return true;
  if ((n.find(".block_sparse_moe.experts.") != std::string::npos ||
       n.find(".mlp.experts.") != std::string::npos) &&
      (ends_with(n, ".w1.weight") || ends_with(n, ".w2.weight") || ends_with(n, ".w3.weight")))
    return true;
  return ends_with(n, ".mlp.experts.gate_up_proj") || ends_with(n, ".mlp.experts.down_proj");
}

std::string scale_name(const std::string& name) { return name + "_scale"; }

Summary quantize_checkpoint(const std::string& in_dir, const std::string& out_dir,
                            const Options& opt) {
  auto log = [&](const std::string& s) {
    if (opt.log) opt.log(s);
  };
  MMX_CHECK(opt.shard_bytes > 0, Code::InvalidArgument, "shard size must be positive");
  const fs::path in(in_dir), out(out_dir);
  MMX_CHECK(fs::is_directory(in), Code::NotFound, "input directory " + in_dir + " does not exist");
  std::error_code ec;
  MMX_CHECK(!fs::exists(out) || !fs::equivalent(in, out, ec), Code::InvalidArgument,
            "the output directory must differ from the input directory");
  // Validates the config (either spelling) before any work.
  const ModelConfig config = ModelConfig::load((in / "config.json").string());
  (void)config;
  auto store = TensorStore::open_dir(in_dir);

  fs::create_directories(out, ec);
  MMX_CHECK(fs::is_directory(out), Code::Io, "cannot create output directory " + out_dir);
  for (const auto& e : fs::directory_iterator(out)) {
    const std::string f = e.path().filename().string();
    MMX_CHECK(!ends_with(f, ".safetensors") && f != kIndexName, Code::InvalidArgument,
              "output directory " + out_dir + " already holds a checkpoint (" + f + ")");
  }

  // Plan the output tensors, in name order.
  std::vector<OutTensor> plan;
  Summary sum;
  for (const std::string& name : store->names()) {
    const TensorInfo& t = store->get(name);
    sum.bytes_in += t.nbytes;
    ++sum.tensors;
    const bool is_float = t.dtype == DType::F32 || t.dtype == DType::BF16 || t.dtype == DType::F16;
    if (!is_quantized_name(name) || !is_float) {
      plan.push_back(OutTensor{OutTensor::Copy, name, &t, t.dtype, t.shape, t.nbytes});
      continue;
    }
    MMX_CHECK(!store->find(scale_name(name)), Code::Format,
              "tensor " + name + " is not int8 but a scale tensor for it exists");
    const bool gate_up = ends_with(name, ".experts.gate_up_proj");
    if (gate_up || ends_with(name, ".experts.down_proj")) {
      // Fused [E, rows, cols] experts: int8 is stored per expert as 2-D w1/w3/w2 tensors
      // ("<prefix>.experts.<e>.w1.weight"), the spelling the loader maps for int8.
      MMX_CHECK(t.shape.size() == 3, Code::Format, "fused expert tensor " + name + " is not 3-D");
      const std::string prefix = name.substr(0, name.rfind('.') + 1);  // "...mlp.experts."
      const int64_t E = t.shape[0], R = t.shape[1];
      MMX_CHECK(!gate_up || R % 2 == 0, Code::Format, name + ": odd gate_up row count");
      for (int64_t e = 0; e < E; ++e) {
        const std::string x = prefix + std::to_string(e) + ".";
        if (gate_up) {  // W1 rows first, then W3
          plan_int8(x + "w1.weight", t, e * R, R / 2, &plan);
          plan_int8(x + "w3.weight", t, e * R + R / 2, R / 2, &plan);
        } else {
          plan_int8(x + "w2.weight", t, e * R, R, &plan);
        }
      }
    } else {
      MMX_CHECK(t.shape.size() == 2, Code::Format, "linear weight " + name + " is not 2-D");
      plan_int8(name, t, 0, t.shape[0], &plan);
    }
    ++sum.quantized;
  }

  // Pack into shards; an int8 tensor and its scales stay together.
  std::vector<Shard> shards;
  for (size_t i = 0; i < plan.size(); ++i) {
    uint64_t need = plan[i].bytes;
    if (plan[i].kind == OutTensor::Int8) need += plan[i + 1].bytes;
    if (shards.empty() || (shards.back().bytes > 0 && shards.back().bytes + need > opt.shard_bytes))
      shards.emplace_back();
    shards.back().tensors.push_back(plan[i]);
    shards.back().bytes += plan[i].bytes;
    if (plan[i].kind == OutTensor::Int8) {
      shards.back().tensors.push_back(plan[i + 1]);
      shards.back().bytes += plan[i + 1].bytes;
      ++i;
    }
  }
  if (shards.empty()) shards.emplace_back();
  const int64_t n = int64_t(shards.size());

  const json metadata = {{"format", "pt"},
                         {"quantization", "w8a16"},
                         {"quantization_scheme", kScheme}};
  ThreadPool pool(opt.threads);
  json weight_map = json::object();
  for (int64_t i = 0; i < n; ++i) {
    Shard& s = shards[size_t(i)];
    s.file = shard_file(i, n);
    log("writing " + s.file + " (" + std::to_string(s.tensors.size()) + " tensors, " +
        std::to_string(s.bytes >> 20) + " MiB)");
    write_shard(s, out, metadata, pool);
    for (const OutTensor& t : s.tensors) weight_map[t.name] = s.file;
    sum.bytes_out += s.bytes;
  }
  sum.shards = n;
  const json index = {{"metadata", {{"total_size", sum.bytes_out}, {"quantization", "w8a16"},
                                    {"quantization_scheme", kScheme}}},
                      {"weight_map", weight_map}};
  {
    const std::string path = (out / kIndexName).string();
    std::ofstream f(path, std::ios::trunc);
    f << index.dump(2) << "\n";
    MMX_CHECK(bool(f), Code::Io, "writing " + path + " failed");
  }

  // Everything else travels unchanged: config.json, tokenizer and generation files.
  for (const auto& e : fs::directory_iterator(in)) {
    if (!e.is_regular_file()) continue;
    const std::string f = e.path().filename().string();
    if (ends_with(f, ".safetensors") || f == kIndexName) continue;
    fs::copy_file(e.path(), out / f, fs::copy_options::overwrite_existing, ec);
    MMX_CHECK(!ec, Code::Io, "copying " + f + " failed: " + ec.message());
  }
  return sum;
}

}  // namespace mmx::quantize
