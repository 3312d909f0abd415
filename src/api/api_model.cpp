// Model options, loading, information, text (tokenize, detokenize, chat format) and memory
// estimates.
#include <algorithm>
#include <vector>

#include "api/api_internal.h"
#include "tokenizer/tokenizer.h"

using mmx::Code;
using namespace mmx_api;

namespace {

const mmx::Tokenizer& tokenizer_of(const mmx::ModelRuntime& rt) {
  MMX_CHECK(rt.tokenizer() != nullptr, Code::Unsupported,
            "this model has no tokenizer files (tokenizer.json, vocab.json + merges.txt or "
            "tokenizer.model); use token ids");
  return *rt.tokenizer();
}

}  // namespace

extern "C" {

mmx_status* mmx_model_options_create(mmx_model_options** out_options) {
  return guarded(__func__, [&] {
    require(out_options, "out_options");
    *out_options = nullptr;
    *out_options = new mmx_model_options();
  });
}

void mmx_model_options_free(mmx_model_options* options) { delete options; }

mmx_status* mmx_model_options_set_int(mmx_model_options* options, mmx_model_option key, int64_t value) {
  return guarded(__func__, [&] {
    require(options, "options");
    switch (key) {
      case MMX_MODEL_OPT_THREADS:
        MMX_CHECK(value >= 0 && value <= 4096, Code::InvalidArgument,
                  "MMX_MODEL_OPT_THREADS is " + std::to_string(value) + "; it must be in [0, 4096] (0 = all cores)");
        options->options.threads = int(value);
        return;
      case MMX_MODEL_OPT_MEMORY_LIMIT:
        MMX_CHECK(value >= 0, Code::InvalidArgument,
                  "MMX_MODEL_OPT_MEMORY_LIMIT is " + std::to_string(value) + "; it must be >= 0 (0 = all)");
        options->options.memory_limit_bytes = uint64_t(value);
        return;
      case MMX_MODEL_OPT_BACKEND:
      case MMX_MODEL_OPT_DEVICES:
      case MMX_MODEL_OPT_WEIGHT_DTYPE:
        mmx::fail(Code::InvalidArgument, "model option " + std::to_string(int(key)) +
                                             " takes a string; use mmx_model_options_set_string");
      case MMX_MODEL_OPT_MAX_ENUM:  // not a key
        break;
    }
    mmx::fail(Code::Unsupported, "unknown model option key " + std::to_string(int(key)));
  });
}

mmx_status* mmx_model_options_set_string(mmx_model_options* options, mmx_model_option key, const char* value) {
  return guarded(__func__, [&] {
    require(options, "options");
    switch (key) {
      case MMX_MODEL_OPT_BACKEND: {
        require(value, "value");
        std::string v(value);
        MMX_CHECK(v == "auto" || v == "cpu" || v == "cuda", Code::InvalidArgument,
                  "MMX_MODEL_OPT_BACKEND \"" + v + "\" is not one of \"auto\", \"cpu\", \"cuda\"");
        options->options.backend = v;
        return;
      }
      case MMX_MODEL_OPT_DEVICES:
        require(value, "value");
        options->options.devices = mmx::parse_device_list(value);
        return;
      case MMX_MODEL_OPT_WEIGHT_DTYPE: {
        require(value, "value");
        std::string v(value);
        MMX_CHECK(v == "auto" || v == "int8" || v == "bf16", Code::InvalidArgument,
                  "MMX_MODEL_OPT_WEIGHT_DTYPE \"" + v + "\" is not one of \"auto\", \"int8\", \"bf16\"");
        options->options.weight_dtype = v;
        return;
      }
      case MMX_MODEL_OPT_THREADS:
      case MMX_MODEL_OPT_MEMORY_LIMIT:
        mmx::fail(Code::InvalidArgument, "model option " + std::to_string(int(key)) +
                                             " takes an integer; use mmx_model_options_set_int");
      case MMX_MODEL_OPT_MAX_ENUM:  // not a key
        break;
    }
    mmx::fail(Code::Unsupported, "unknown model option key " + std::to_string(int(key)));
  });
}

mmx_status* mmx_model_load(const char* path, const mmx_model_options* options, mmx_progress_fn progress,
                           void* user_data, mmx_model** out_model) {
  return guarded(__func__, [&] {
    require(out_model, "out_model");
    *out_model = nullptr;
    require(path, "path");
    mmx::RuntimeOptions opts = options ? options->options : mmx::RuntimeOptions();
    mmx::LoadProgress on_progress;
    if (progress)
      on_progress = [&](double fraction, const char* stage) { return progress(fraction, stage, user_data) == 0; };
    auto model = std::make_unique<mmx_model>();
    model->runtime = mmx::ModelRuntime::load(path, opts, on_progress);
    *out_model = model.release();
  });
}

void mmx_model_free(mmx_model* model) { delete model; }

mmx_status* mmx_model_get_info(const mmx_model* model, mmx_model_info* out_info) {
  return guarded(__func__, [&] {
    const mmx::ModelRuntime& rt = runtime_of(model);
    require(out_info, "out_info");
    const mmx::ModelConfig& c = rt.config();
    mmx_model_info full{};
    full.vocab_size = int32_t(c.vocab);
    full.num_layers = int32_t(c.layers);
    full.num_softmax_layers = int32_t(c.softmax_layer_count());
    full.hidden_size = int32_t(c.hidden);
    full.num_heads = int32_t(c.heads);
    full.num_kv_heads = int32_t(c.kv_heads);
    full.head_dim = int32_t(c.head_dim);
    full.num_experts = int32_t(c.experts);
    full.experts_per_token = int32_t(c.top_k);
    full.bos_token = rt.bos_token();
    full.eos_token = rt.eos_token();
    full.context_limit = rt.context_limit();
    full.parameter_count = rt.parameter_count();
    full.weight_bytes = rt.weight_bytes();
    std::strncpy(full.backend, rt.backend_name().c_str(), sizeof(full.backend) - 1);
    std::strncpy(full.fingerprint, rt.model().fingerprint().c_str(), sizeof(full.fingerprint) - 1);
    fill_struct(out_info, full, "out_info");
  });
}

mmx_status* mmx_model_layer_kind(const mmx_model* model, int32_t layer, mmx_layer_kind* out_kind) {
  return guarded(__func__, [&] {
    const mmx::ModelRuntime& rt = runtime_of(model);
    require(out_kind, "out_kind");
    const int64_t layers = rt.config().layers;
    MMX_CHECK(layer >= 0 && layer < layers, Code::InvalidArgument,
              "layer " + std::to_string(layer) + " is out of range [0, " + std::to_string(layers) + ")");
    *out_kind = rt.config().layer_kinds[size_t(layer)] == mmx::LayerKind::Softmax ? MMX_LAYER_SOFTMAX
                                                                                 : MMX_LAYER_LIGHTNING;
  });
}

mmx_status* mmx_model_token_id(const mmx_model* model, const char* token_text, int32_t* out_id) {
  return guarded(__func__, [&] {
    const mmx::ModelRuntime& rt = runtime_of(model);
    require(token_text, "token_text");
    require(out_id, "out_id");
    MMX_CHECK(rt.tokenizer() != nullptr, Code::NotFound,
              std::string("no token \"") + token_text + "\": this model has no tokenizer files");
    const int32_t id = rt.tokenizer()->token_id(token_text);
    MMX_CHECK(id >= 0, Code::NotFound, std::string("the vocabulary has no token \"") + token_text + "\"");
    *out_id = id;
  });
}

mmx_status* mmx_tokenize(const mmx_model* model, const char* text, size_t len, uint32_t flags, int32_t* tokens,
                         size_t capacity, size_t* n_needed) {
  return guarded(__func__, [&] {
    const mmx::ModelRuntime& rt = runtime_of(model);
    require(n_needed, "n_needed");
    MMX_CHECK(text != nullptr || len == 0, Code::InvalidArgument, "text is NULL but len is not 0");
    MMX_CHECK(tokens != nullptr || capacity == 0, Code::InvalidArgument, "tokens is NULL but capacity is not 0");
    const uint32_t known = MMX_TOKENIZE_ADD_BOS | MMX_TOKENIZE_PARSE_SPECIAL;
    MMX_CHECK((flags & ~known) == 0, Code::InvalidArgument,
              "flags " + std::to_string(flags) + " hold bits that are not mmx_tokenize_flags");
    require_utf8(text, len, "text");
    const mmx::Tokenizer& tok = tokenizer_of(rt);
    std::vector<int32_t> ids;
    if ((flags & MMX_TOKENIZE_ADD_BOS) && rt.bos_token() >= 0) ids.push_back(rt.bos_token());
    std::vector<int32_t> body = tok.encode(std::string_view(text ? text : "", len), flags & MMX_TOKENIZE_PARSE_SPECIAL);
    ids.insert(ids.end(), body.begin(), body.end());
    *n_needed = ids.size();
    MMX_CHECK(capacity >= ids.size(), Code::BufferTooSmall,
              "the text needs " + std::to_string(ids.size()) + " tokens; the buffer holds " + std::to_string(capacity));
    std::copy(ids.begin(), ids.end(), tokens);
  });
}

mmx_status* mmx_detokenize(const mmx_model* model, const int32_t* tokens, size_t n_tokens, char* buf,
                           size_t capacity, size_t* n_needed) {
  return guarded(__func__, [&] {
    const mmx::ModelRuntime& rt = runtime_of(model);
    require(n_needed, "n_needed");
    MMX_CHECK(tokens != nullptr || n_tokens == 0, Code::InvalidArgument, "tokens is NULL but n_tokens is not 0");
    const mmx::Tokenizer& tok = tokenizer_of(rt);
    const int32_t vocab = rt.vocab_size();
    for (size_t i = 0; i < n_tokens; ++i)
      MMX_CHECK(tokens[i] >= 0 && tokens[i] < vocab, Code::InvalidArgument,
                "token " + std::to_string(tokens[i]) + " at index " + std::to_string(i) +
                    " is outside the vocabulary [0, " + std::to_string(vocab) + ")");
    std::string text = tok.decode(std::vector<int32_t>(tokens, tokens + n_tokens));
    copy_text_out(text, buf, capacity, n_needed);
  });
}

mmx_status* mmx_apply_chat_format(const mmx_model* model, const char* messages_json, int32_t add_generation_prompt,
                                  char* buf, size_t capacity, size_t* n_needed) {
  return guarded(__func__, [&] {
    const mmx::ModelRuntime& rt = runtime_of(model);
    require(messages_json, "messages_json");
    require(n_needed, "n_needed");
    require_utf8(messages_json, std::strlen(messages_json), "messages_json");
    mmx::ChatFormat format = mmx::ChatFormat::for_model(rt.model().dir(), rt.config().model_type);
    copy_text_out(format.apply(messages_json, add_generation_prompt != 0), buf, capacity, n_needed);
  });
}

mmx_status* mmx_model_estimate_memory(const mmx_model* model, const mmx_context_options* options,
                                      mmx_memory_estimate* out_estimate) {
  return guarded(__func__, [&] {
    const mmx::ModelRuntime& rt = runtime_of(model);
    require(out_estimate, "out_estimate");
    mmx::MemoryEstimate e = mmx::estimate_memory(rt, options ? options->options : mmx::EngineOptions());
    mmx_memory_estimate full{};
    full.weight_bytes = e.weight_bytes;
    full.state_bytes_per_sequence = e.state_bytes_per_sequence;
    full.kv_bytes_per_token = e.kv_bytes_per_token;
    full.workspace_bytes = e.workspace_bytes;
    full.total_bytes = e.total_bytes;
    fill_struct(out_estimate, full, "out_estimate");
  });
}

}  // extern "C"
