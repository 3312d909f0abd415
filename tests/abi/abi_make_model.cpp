// Writes the tiny random model the shared-library scenario runs on: config.json,
// model.safetensors and the byte-level BPE test tokenizer from tests/data.
#include <cstdio>
#include <filesystem>
#include <fstream>
#include <sstream>
#include <string>

#include "model/random_model.h"

namespace {
void copy_file(const std::string& from, const std::string& to) {
  std::ifstream in(from, std::ios::binary);
  if (!in) throw std::runtime_error("cannot read " + from);
  std::ofstream out(to, std::ios::binary | std::ios::trunc);
  out << in.rdbuf();
  if (!out) throw std::runtime_error("cannot write " + to);
}
}  // namespace

int main(int argc, char** argv) {
  if (argc != 3) {
    std::fprintf(stderr, "usage: abi_make_model OUT_DIR TOKENIZER_DIR\n");
    return 2;
  }
  try {
    const std::string out = argv[1], tok = argv[2];
    std::filesystem::create_directories(out);
    mmx::ModelConfig c = mmx::tiny_test_config();
    c.vocab = 1512;  // the test tokenizer's 1506 ids, padded as real models pad theirs
    c.bos_token_id = 1500;
    c.eos_token_id = 1501;
    std::ofstream(out + "/config.json") << mmx::config_to_json(c, true);
    mmx::write_safetensors(out + "/model.safetensors", mmx::random_tensors(c, 11));
    for (const char* f : {"vocab.json", "merges.txt", "tokenizer_config.json"}) copy_file(tok + "/" + f, out + "/" + f);
  } catch (const std::exception& e) {
    std::fprintf(stderr, "abi_make_model: %s\n", e.what());
    return 1;
  }
  return 0;
}
