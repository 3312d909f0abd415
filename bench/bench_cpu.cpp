// bench_cpu: prefill and decode throughput of the CPU reference backend, next to transformers
// (fp32, CPU) on the very same model files when python3 with torch + transformers is present.
//
//   bench_cpu [--threads N] [--prefill N] [--decode N] [--chunk N] [--repeats N]
//             [--model DIR]... [--json FILE] [--no-transformers] [--quick]
//
// Without --model it benchmarks the golden-test fixture model tiny_b and a larger random model
// (~119M parameters) written to a temporary directory. Each figure is the median of --repeats
// timed runs after one warm-up run.
#include <nlohmann/json.hpp>

#include <algorithm>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <iostream>
#include <random>
#include <string>
#include <vector>

#include <stdlib.h>  // mkdtemp

#include "backend/backend.h"
#include "core/error.h"
#include "model/forward.h"
#include "model/model.h"
#include "model/random_model.h"

namespace fs = std::filesystem;
using nlohmann::json;

namespace {

struct Options {
  int threads = 0;
  int64_t prefill = 512, decode = 32, chunk = 0, repeats = 3;
  std::vector<std::string> models;
  std::string json_path;
  bool transformers = true;
};

[[noreturn]] void usage(const std::string& problem) {
  std::cerr << "bench_cpu: " << problem << "\n"
            << "usage: bench_cpu [--threads N] [--prefill N] [--decode N] [--chunk N] [--repeats N]\n"
            << "                 [--model DIR]... [--json FILE] [--no-transformers] [--quick]\n";
  std::exit(2);
}

Options parse_args(int argc, char** argv) {
  Options o;
  auto number = [&](int& i, int64_t lo) {
    if (i + 1 >= argc) usage(std::string(argv[i]) + " needs a value");
    char* end = nullptr;
    long long v = std::strtoll(argv[++i], &end, 10);
    if (*end || v < lo) usage(std::string("bad value for ") + argv[i - 1] + ": " + argv[i]);
    return int64_t(v);
  };
  for (int i = 1; i < argc; ++i) {
    std::string a = argv[i];
    if (a == "--threads") o.threads = int(number(i, 0));
    else if (a == "--prefill") o.prefill = number(i, 1);
    else if (a == "--decode") o.decode = number(i, 0);
    else if (a == "--chunk") o.chunk = number(i, 0);
    else if (a == "--repeats") o.repeats = number(i, 1);
    else if (a == "--model" && i + 1 < argc) o.models.push_back(argv[++i]);
    else if (a == "--json" && i + 1 < argc) o.json_path = argv[++i];
    else if (a == "--no-transformers") o.transformers = false;
    else if (a == "--quick") o.prefill = 128, o.decode = 8, o.repeats = 1;
    else usage("unknown argument " + a);
  }
  return o;
}

// ---- models ---------------------------------------------------------------------------------

mmx::ModelConfig bench_config(int64_t hidden, int64_t heads, int64_t head_dim, int64_t experts,
                              int64_t intermediate, int64_t layers, int64_t vocab) {
  mmx::ModelConfig c = mmx::tiny_test_config();
  c.hidden = hidden;
  c.heads = heads;
  c.head_dim = head_dim;
  c.kv_heads = std::max<int64_t>(1, heads / 4);
  c.rotary_dim = head_dim / 2;
  c.experts = experts;
  c.top_k = 2;
  c.intermediate = intermediate;
  c.layers = layers;
  c.vocab = vocab;
  c.block_size = 256;
  c.max_positions = 1 << 20;
  c.layer_kinds.assign(size_t(layers), mmx::LayerKind::Lightning);
  for (int64_t i = 7; i < layers; i += 8) c.layer_kinds[size_t(i)] = mmx::LayerKind::Softmax;
  if (layers < 8) c.layer_kinds.back() = mmx::LayerKind::Softmax;
  return c;
}

// Writes a random model in the transformers spelling, which both engines load.
void write_random_model(const std::string& dir, const mmx::ModelConfig& c, uint64_t seed) {
  fs::create_directories(dir);
  std::ofstream(dir + "/config.json") << mmx::config_to_json(c, /*official=*/false);
  mmx::write_safetensors(dir + "/model.safetensors", mmx::random_tensors(c, seed, mmx::DType::F32, false));
}

int64_t parameter_count(const mmx::Model& m) {
  int64_t n = 0;
  for (const std::string& name : m.store().names()) n += m.store().get(name).numel();
  return n;
}

// ---- timing ---------------------------------------------------------------------------------

double median(std::vector<double> v) {
  std::sort(v.begin(), v.end());
  return v.empty() ? 0.0 : v[v.size() / 2];
}

double seconds_since(std::chrono::steady_clock::time_point t0) {
  return std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
}

struct Run {
  double prefill_s = 0, decode_s = 0;
};

// Prefill `prefill` tokens (in chunks of `chunk`, 0 = one step), then decode `decode` tokens one
// step each, asking for the logits of each step's last token as a generator would.
Run run_once(const mmx::Model& m, mmx::Backend& be, const std::vector<int32_t>& ids, const Options& o) {
  mmx::Forward fwd(m, be);
  auto st = be.new_state();
  std::vector<float> logits;
  const int64_t chunk = o.chunk > 0 ? o.chunk : o.prefill;
  Run r;
  auto t0 = std::chrono::steady_clock::now();
  for (int64_t at = 0; at < o.prefill; at += chunk) {
    const int64_t n = std::min(chunk, o.prefill - at);
    mmx::StepBatch b;
    b.seqs = {{st.get(), n, st->tokens}};
    fwd.run(b, std::vector<int32_t>(ids.begin() + at, ids.begin() + at + n), {int32_t(n - 1)}, &logits);
  }
  r.prefill_s = seconds_since(t0);
  t0 = std::chrono::steady_clock::now();
  for (int64_t i = 0; i < o.decode; ++i) {
    mmx::StepBatch b;
    b.seqs = {{st.get(), 1, st->tokens}};
    fwd.run(b, {ids[size_t(o.prefill + i)]}, {0}, &logits);
  }
  r.decode_s = seconds_since(t0);
  return r;
}

// Runs tools/fixtures/bench_transformers.py on the same directory; null when unavailable.
json run_transformers(const std::string& dir, const Options& o) {
  const std::string script = std::string(MMX_SOURCE_DIR) + "/tools/fixtures/bench_transformers.py";
  if (std::system("python3 -c 'import torch, transformers' >/dev/null 2>&1") != 0) return nullptr;
  std::string cmd = "python3 '" + script + "' '" + dir + "' --prefill " + std::to_string(o.prefill) +
                    " --decode " + std::to_string(o.decode) + " --repeats " + std::to_string(o.repeats) +
                    " --threads " + std::to_string(o.threads) + " 2>/dev/null";
  FILE* p = popen(cmd.c_str(), "r");
  if (!p) return nullptr;
  std::string out, last;
  char buf[4096];
  while (fgets(buf, sizeof buf, p)) out += buf;
  if (pclose(p) != 0) return nullptr;
  for (size_t at = 0; at < out.size();) {
    size_t nl = out.find('\n', at);
    std::string line = out.substr(at, nl == std::string::npos ? std::string::npos : nl - at);
    if (!line.empty()) last = line;
    at = nl == std::string::npos ? out.size() : nl + 1;
  }
  json j = json::parse(last, nullptr, false);
  return j.is_discarded() ? json(nullptr) : j;
}

json bench_model(const std::string& label, const std::string& dir, const Options& o) {
  auto model = mmx::Model::load(dir);
  const mmx::ModelConfig& c = model->config();
  mmx::BackendOptions bo;
  bo.threads = o.threads;
  auto be = mmx::create_backend(bo);
  be->prepare(*model);
  std::mt19937_64 rng(1);
  std::vector<int32_t> ids(size_t(o.prefill + o.decode));
  for (auto& id : ids) id = int32_t(rng() % uint64_t(c.vocab));

  run_once(*model, *be, ids, o);  // warm-up: first touch of weights and arena
  std::vector<double> prefill_s, decode_s;
  for (int64_t r = 0; r < o.repeats; ++r) {
    Run run = run_once(*model, *be, ids, o);
    prefill_s.push_back(run.prefill_s);
    decode_s.push_back(run.decode_s);
  }
  json j = {{"model", label},
            {"params", parameter_count(*model)},
            {"hidden", c.hidden}, {"layers", c.layers}, {"heads", c.heads}, {"head_dim", c.head_dim},
            {"experts", c.experts}, {"intermediate", c.intermediate}, {"vocab", c.vocab},
            {"prefill_tokens", o.prefill}, {"decode_tokens", o.decode},
            {"prefill_s", prefill_s}, {"decode_s", decode_s},
            {"prefill_tok_s", double(o.prefill) / median(prefill_s)},
            {"decode_tok_s", o.decode ? double(o.decode) / median(decode_s) : 0.0}};
  std::printf("%-10s %6.1fM params  prefill %9.1f tok/s  decode %8.1f tok/s\n", label.c_str(),
              double(j["params"].get<int64_t>()) / 1e6, j["prefill_tok_s"].get<double>(),
              j["decode_tok_s"].get<double>());
  std::fflush(stdout);
  if (o.transformers) {
    json t = run_transformers(dir, o);
    j["transformers"] = t;
    if (t.is_null())
      std::printf("%-10s transformers: not available (python3 with torch + transformers)\n", "");
    else
      std::printf("%-10s transformers  prefill %9.1f tok/s  decode %8.1f tok/s\n", "",
                  t["prefill_tok_s"].get<double>(), t["decode_tok_s"].get<double>());
  }
  return j;
}

void print_table(const json& results) {
  std::printf("\n%-10s %10s %14s %14s %14s %14s\n", "model", "params", "prefill tok/s", "(transformers)",
              "decode tok/s", "(transformers)");
  for (const json& r : results) {
    auto peer = [&](const char* key) {
      return r.contains("transformers") && !r["transformers"].is_null()
                 ? std::to_string(int64_t(r["transformers"][key].get<double>() + 0.5))
                 : std::string("-");
    };
    std::printf("%-10s %9.1fM %14.1f %14s %14.1f %14s\n", r["model"].get<std::string>().c_str(),
                double(r["params"].get<int64_t>()) / 1e6, r["prefill_tok_s"].get<double>(),
                peer("prefill_tok_s").c_str(), r["decode_tok_s"].get<double>(), peer("decode_tok_s").c_str());
  }
}

}  // namespace

int main(int argc, char** argv) {
  Options o = parse_args(argc, argv);
  try {
    json results = json::array();
    std::printf("libminimax CPU backend (fp32), threads %s, prefill %lld, decode %lld, median of %lld\n",
                o.threads ? std::to_string(o.threads).c_str() : "all", (long long)o.prefill,
                (long long)o.decode, (long long)o.repeats);
    if (!o.models.empty()) {
      for (const std::string& dir : o.models) {
        fs::path p = fs::path(dir).lexically_normal();
        results.push_back(bench_model((p.has_filename() ? p : p.parent_path()).filename().string(), dir, o));
      }
    } else {
      std::string tmpl = (fs::temp_directory_path() / "mmx_bench_cpu_XXXXXX").string();
      if (!::mkdtemp(tmpl.data())) throw std::runtime_error("cannot create a temporary directory");
      const fs::path tmp = tmpl;
      struct Cleanup {
        fs::path p;
        ~Cleanup() {
          std::error_code ec;
          fs::remove_all(p, ec);
        }
      } cleanup{tmp};
      // The golden-test fixture tiny_b as is (its model files only: the golden outputs beside
      // them are not a shard), then a larger random model of the same architecture.
      const fs::path fixture = fs::path(MMX_SOURCE_DIR) / "tests/data/fixtures/tiny_b";
      if (fs::exists(fixture / "model.safetensors")) {
        fs::create_directories(tmp / "fixture");
        for (const char* f : {"config.json", "model.safetensors"}) fs::copy_file(fixture / f, tmp / "fixture" / f);
        results.push_back(bench_model("fixture", (tmp / "fixture").string(), o));
      } else {
        std::printf("fixture    skipped: %s not found\n", fixture.string().c_str());
      }
      write_random_model((tmp / "larger").string(), bench_config(512, 8, 64, 8, 1024, 8, 8192), 1);
      results.push_back(bench_model("larger", (tmp / "larger").string(), o));
    }
    print_table(results);
    if (!o.json_path.empty()) {
      json doc = {{"benchmark", "bench_cpu"}, {"backend", "cpu"}, {"threads", o.threads},
                  {"chunk", o.chunk}, {"repeats", o.repeats}, {"results", results}};
      std::ofstream(o.json_path) << doc.dump(2) << "\n";
      std::printf("wrote %s\n", o.json_path.c_str());
    }
  } catch (const mmx::Error& e) {
    std::fprintf(stderr, "bench_cpu: %s: %s\n", mmx::code_name(e.code()), e.what());
    return 1;
  } catch (const std::exception& e) {
    std::fprintf(stderr, "bench_cpu: %s\n", e.what());
    return 1;
  }
  return 0;
}
