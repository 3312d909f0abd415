// minimax-quantize IN_DIR OUT_DIR: writes the W8A16 (int8 weights, fp32 row scales) form of a
// bf16/fp32 MiniMax checkpoint, loadable by libminimax like any other checkpoint.
#include <cstdio>
#include <cstdlib>
#include <exception>
#include <string>

#include "core/error.h"
#include "model/model.h"
#include "quantize_checkpoint.h"

namespace {

const char* kUsage =
    "usage: minimax-quantize IN_DIR OUT_DIR [--shard-size GIB] [--threads N] [--no-verify]\n"
    "  Quantises the attention projections and expert weights of the checkpoint in IN_DIR to\n"
    "  int8 with one fp32 scale per output row (W8A16); embeddings, norms, router and lm_head\n"
    "  are copied unchanged, as are config.json and the tokenizer files. OUT_DIR gets sharded\n"
    "  safetensors (default 4 GiB each) with model.safetensors.index.json. The result is\n"
    "  loaded back once as a check unless --no-verify is given.\n";

bool parse_number(const char* s, double* out) {
  char* end = nullptr;
  *out = std::strtod(s, &end);
  return end && *end == '\0' && *out > 0;
}

}  // namespace

int main(int argc, char** argv) {
  std::string in, out;
  mmx::quantize::Options opt;
  bool verify = true;
  for (int i = 1; i < argc; ++i) {
    const std::string a = argv[i];
    double v = 0;
    if (a == "-h" || a == "--help") {
      std::fputs(kUsage, stdout);
      return 0;
    } else if (a == "--shard-size" && i + 1 < argc && parse_number(argv[i + 1], &v)) {
      opt.shard_bytes = uint64_t(v * double(1ull << 30));
      ++i;
    } else if (a == "--threads" && i + 1 < argc && parse_number(argv[i + 1], &v)) {
      opt.threads = int(v);
      ++i;
    } else if (a == "--no-verify") {
      verify = false;
    } else if (!a.empty() && a[0] != '-' && in.empty()) {
      in = a;
    } else if (!a.empty() && a[0] != '-' && out.empty()) {
      out = a;
    } else {
      std::fprintf(stderr, "minimax-quantize: unexpected argument '%s'\n%s", a.c_str(), kUsage);
      return 2;
    }
  }
  if (in.empty() || out.empty()) {
    std::fputs(kUsage, stderr);
    return 2;
  }
  opt.log = [](const std::string& s) { std::printf("%s\n", s.c_str()); };
  try {
    const auto sum = mmx::quantize::quantize_checkpoint(in, out, opt);
    std::printf("quantised %lld of %lld tensors: %.1f MiB -> %.1f MiB in %lld shard(s)\n",
                (long long)sum.quantized, (long long)sum.tensors, double(sum.bytes_in) / 1048576.0,
                double(sum.bytes_out) / 1048576.0, (long long)sum.shards);
    if (verify) {
      auto model = mmx::Model::load(out);
      std::printf("verified: %s loads (%lld layers)\n", out.c_str(),
                  (long long)model->config().layers);
    }
  } catch (const mmx::Error& e) {
    std::fprintf(stderr, "minimax-quantize: %s: %s\n", mmx::code_name(e.code()), e.what());
    return 1;
  } catch (const std::exception& e) {
    std::fprintf(stderr, "minimax-quantize: %s\n", e.what());
    return 1;
  }
  return 0;
}
