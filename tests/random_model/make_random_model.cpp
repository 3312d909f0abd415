// mmx-make-random-model: writes a tiny random MiniMax-architecture model directory
// (config.json + model.safetensors, optionally a sentencepiece tokenizer trained on a text
// file) so that the host programs and their tests can run end to end without the demo model.
// The weights are random, so the text it generates is gibberish; what matters is that every
// path (tokenizer, chat format, prefill, decode, scoring) runs.
#include <sentencepiece_processor.h>
#include <sentencepiece_trainer.h>

#include <cstdio>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <string>
#include <vector>

#include "model/random_model.h"

namespace {

const char* kUsage =
    "usage: mmx-make-random-model OUT_DIR [--spelling official|transformers] [--seed N]\n"
    "                             [--tokenizer-text FILE]\n"
    "  --tokenizer-text FILE  also train a sentencepiece tokenizer (vocab 1024) on FILE and\n"
    "                         write tokenizer.model + tokenizer_config.json\n";

// Special tokens of the MiniMax chat format (model-spec §9). They are user-defined symbols,
// so sentencepiece itself keeps each one a single token wherever it appears in text.
const char* kSpecials[] = {"<beginning_of_sentence>", "<end_of_sentence>", "<begin_of_document>",
                           "<end_of_document>"};

void write_text(const std::string& path, const std::string& text) {
  std::ofstream f(path, std::ios::binary | std::ios::trunc);
  f << text;
  if (!f) throw std::runtime_error("cannot write " + path);
}

// Trains the tokenizer into out_dir and returns the ids of BOS and EOS.
std::pair<int, int> train_tokenizer(const std::string& text_file, const std::string& out_dir,
                                    int vocab) {
  std::string specials;
  for (const char* s : kSpecials) specials += std::string(specials.empty() ? "" : ",") + s;
  // Single-threaded and sentence-capped so that it stays quick on a shared 2-core machine.
  std::string args =
      "--input=" + text_file + " --model_prefix=" + out_dir + "/tokenizer" +
      " --vocab_size=" + std::to_string(vocab) +
      " --model_type=bpe --character_coverage=0.9995 --byte_fallback=true" +
      " --bos_id=-1 --eos_id=-1 --pad_id=-1 --unk_id=0 --num_threads=1" +
      " --input_sentence_size=20000 --minloglevel=2 --user_defined_symbols=" + specials;
  auto st = sentencepiece::SentencePieceTrainer::Train(args);
  if (!st.ok()) throw std::runtime_error("sentencepiece training failed: " + st.ToString());
  std::filesystem::remove(out_dir + "/tokenizer.vocab");

  sentencepiece::SentencePieceProcessor sp;
  st = sp.Load(out_dir + "/tokenizer.model");
  if (!st.ok()) throw std::runtime_error("cannot reload the tokenizer: " + st.ToString());
  std::string added;
  for (const char* s : kSpecials) {
    added += std::string(added.empty() ? "" : ",\n") + "    \"" + std::to_string(sp.PieceToId(s)) +
             "\": {\"content\": \"" + s + "\", \"special\": true}";
  }
  write_text(out_dir + "/tokenizer_config.json",
             "{\n  \"bos_token\": \"<beginning_of_sentence>\",\n"
             "  \"eos_token\": \"<end_of_sentence>\",\n"
             "  \"unk_token\": \"<unk>\",\n"
             "  \"added_tokens_decoder\": {\n" +
                 added + "\n  }\n}\n");
  return {sp.PieceToId("<beginning_of_sentence>"), sp.PieceToId("<end_of_sentence>")};
}

}  // namespace

int main(int argc, char** argv) {
  std::string out_dir, text_file, spelling = "official";
  uint64_t seed = 1;
  for (int i = 1; i < argc; ++i) {
    std::string a = argv[i];
    auto value = [&]() -> std::string {
      if (i + 1 >= argc) {
        std::fprintf(stderr, "mmx-make-random-model: %s needs a value\n%s", a.c_str(), kUsage);
        std::exit(2);
      }
      return argv[++i];
    };
    if (a == "--spelling")
      spelling = value();
    else if (a == "--seed")
      seed = std::strtoull(value().c_str(), nullptr, 10);
    else if (a == "--tokenizer-text")
      text_file = value();
    else if (a == "-h" || a == "--help") {
      std::fputs(kUsage, stdout);
      return 0;
    } else if (!a.empty() && a[0] != '-' && out_dir.empty())
      out_dir = a;
    else {
      std::fprintf(stderr, "mmx-make-random-model: unexpected argument '%s'\n%s", a.c_str(),
                   kUsage);
      return 2;
    }
  }
  if (out_dir.empty() || (spelling != "official" && spelling != "transformers")) {
    std::fputs(kUsage, stderr);
    return 2;
  }
  try {
    std::filesystem::create_directories(out_dir);
    mmx::ModelConfig config = mmx::tiny_test_config();
    config.max_positions = 1 << 17;  // room for the sample document of examples/docqa
    if (!text_file.empty()) {
      config.vocab = 1024;
      auto [bos, eos] = train_tokenizer(text_file, out_dir, int(config.vocab));
      config.bos_token_id = bos;
      config.eos_token_id = eos;
    }
    const bool official = spelling == "official";
    write_text(out_dir + "/config.json", mmx::config_to_json(config, official));
    mmx::write_safetensors(out_dir + "/model.safetensors",
                           mmx::random_tensors(config, seed, mmx::DType::F32, official));
  } catch (const std::exception& e) {
    std::fprintf(stderr, "mmx-make-random-model: %s\n", e.what());
    return 1;
  }
  std::printf("%s\n", out_dir.c_str());
  return 0;
}
