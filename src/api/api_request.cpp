// Request descriptions: option setters (each checks its value's range here; what needs the
// model is checked at submit), prompt pieces, stop conditions, callbacks.
#include <cmath>

#include "api/api_internal.h"
#include "core/log.h"

using mmx::Code;
using namespace mmx_api;

namespace {

std::string key_name(mmx_request_option key) { return "request option " + std::to_string(int(key)); }

bool is_int_key(mmx_request_option key) {
  switch (key) {
    case MMX_REQ_MAX_TOKENS: case MMX_REQ_SEED: case MMX_REQ_TOP_K: case MMX_REQ_TOP_LOGPROBS:
    case MMX_REQ_PROMPT_LOGPROBS: case MMX_REQ_MAKE_PREFIX: case MMX_REQ_IGNORE_EOS:
    case MMX_REQ_ADD_BOS: case MMX_REQ_PARSE_SPECIAL:
      return true;
    default:
      return false;
  }
}

bool is_double_key(mmx_request_option key) {
  switch (key) {
    case MMX_REQ_TEMPERATURE: case MMX_REQ_TOP_P: case MMX_REQ_MIN_P: case MMX_REQ_REPETITION_PENALTY:
    case MMX_REQ_FREQUENCY_PENALTY: case MMX_REQ_PRESENCE_PENALTY:
      return true;
    default:
      return false;
  }
}

bool flag(const char* name, int64_t value) {
  MMX_CHECK(value == 0 || value == 1, Code::InvalidArgument,
            std::string(name) + " is " + std::to_string(value) + "; it must be 0 or 1");
  return value == 1;
}

}  // namespace

extern "C" {

mmx_status* mmx_request_create(mmx_request** out_request) {
  return guarded(__func__, [&] {
    require(out_request, "out_request");
    *out_request = nullptr;
    *out_request = new mmx_request();
  });
}

void mmx_request_free(mmx_request* request) { delete request; }

mmx_status* mmx_request_set_int(mmx_request* request, mmx_request_option key, int64_t value) {
  return guarded(__func__, [&] {
    require(request, "request");
    mmx::RequestSpec& s = request->spec;
    switch (key) {
      case MMX_REQ_MAX_TOKENS:
        MMX_CHECK(value >= 0, Code::InvalidArgument,
                  "MMX_REQ_MAX_TOKENS is " + std::to_string(value) + "; it must be >= 0 (0 = score only)");
        s.max_tokens = value;
        return;
      case MMX_REQ_SEED: s.sampling.seed = uint64_t(value); return;
      case MMX_REQ_TOP_K:
        MMX_CHECK(value >= 0, Code::InvalidArgument,
                  "MMX_REQ_TOP_K is " + std::to_string(value) + "; it must be >= 0 (0 = off)");
        s.sampling.top_k = value;
        return;
      case MMX_REQ_TOP_LOGPROBS:
        MMX_CHECK(value >= 0 && value <= mmx::kMaxTopLogprobs, Code::InvalidArgument,
                  "MMX_REQ_TOP_LOGPROBS is " + std::to_string(value) + "; it must be in [0, " +
                      std::to_string(mmx::kMaxTopLogprobs) + "]");
        s.top_logprobs = int32_t(value);
        return;
      case MMX_REQ_PROMPT_LOGPROBS: s.prompt_logprobs = flag("MMX_REQ_PROMPT_LOGPROBS", value); return;
      case MMX_REQ_MAKE_PREFIX: s.make_prefix = flag("MMX_REQ_MAKE_PREFIX", value); return;
      case MMX_REQ_IGNORE_EOS: s.ignore_eos = flag("MMX_REQ_IGNORE_EOS", value); return;
      case MMX_REQ_ADD_BOS: s.add_bos = flag("MMX_REQ_ADD_BOS", value); return;
      case MMX_REQ_PARSE_SPECIAL: s.parse_special = flag("MMX_REQ_PARSE_SPECIAL", value); return;
      default: break;
    }
    MMX_CHECK(!is_double_key(key), Code::InvalidArgument,
              key_name(key) + " takes a double; use mmx_request_set_double");
    mmx::fail(Code::Unsupported, "unknown " + key_name(key));
  });
}

mmx_status* mmx_request_set_double(mmx_request* request, mmx_request_option key, double value) {
  return guarded(__func__, [&] {
    require(request, "request");
    mmx::SamplingParams& p = request->spec.sampling;
    auto check = [&](const char* name, bool ok, const char* rule) {
      MMX_CHECK(std::isfinite(value) && ok, Code::InvalidArgument,
                std::string(name) + " is " + std::to_string(value) + "; it must be " + rule);
    };
    switch (key) {
      case MMX_REQ_TEMPERATURE: check("MMX_REQ_TEMPERATURE", value >= 0, ">= 0 (0 = greedy)"); p.temperature = value; return;
      case MMX_REQ_TOP_P: check("MMX_REQ_TOP_P", value > 0 && value <= 1, "in (0, 1]"); p.top_p = value; return;
      case MMX_REQ_MIN_P: check("MMX_REQ_MIN_P", value >= 0 && value <= 1, "in [0, 1]"); p.min_p = value; return;
      case MMX_REQ_REPETITION_PENALTY:
        check("MMX_REQ_REPETITION_PENALTY", value > 0, "> 0 (1 = off)");
        p.repetition_penalty = value;
        return;
      case MMX_REQ_FREQUENCY_PENALTY: check("MMX_REQ_FREQUENCY_PENALTY", true, "finite"); p.frequency_penalty = value; return;
      case MMX_REQ_PRESENCE_PENALTY: check("MMX_REQ_PRESENCE_PENALTY", true, "finite"); p.presence_penalty = value; return;
      default: break;
    }
    MMX_CHECK(!is_int_key(key), Code::InvalidArgument, key_name(key) + " takes an integer; use mmx_request_set_int");
    mmx::fail(Code::Unsupported, "unknown " + key_name(key));
  });
}

mmx_status* mmx_request_append_text(mmx_request* request, const char* text, size_t len) {
  return guarded(__func__, [&] {
    require(request, "request");
    MMX_CHECK(text != nullptr || len == 0, Code::InvalidArgument, "text is NULL but len is not 0");
    require_utf8(text, len, "text");
    if (len == 0) return;
    mmx::PromptPiece piece;
    piece.is_text = true;
    piece.text.assign(text, len);
    request->spec.prompt.push_back(std::move(piece));
  });
}

mmx_status* mmx_request_append_tokens(mmx_request* request, const int32_t* tokens, size_t n_tokens) {
  return guarded(__func__, [&] {
    require(request, "request");
    MMX_CHECK(tokens != nullptr || n_tokens == 0, Code::InvalidArgument, "tokens is NULL but n_tokens is not 0");
    for (size_t i = 0; i < n_tokens; ++i)
      MMX_CHECK(tokens[i] >= 0, Code::InvalidArgument,
                "token id " + std::to_string(tokens[i]) + " at index " + std::to_string(i) + " is negative");
    if (n_tokens == 0) return;
    mmx::PromptPiece piece;
    piece.tokens.assign(tokens, tokens + n_tokens);
    request->spec.prompt.push_back(std::move(piece));
  });
}

mmx_status* mmx_request_set_prefix(mmx_request* request, mmx_prefix* prefix) {
  return guarded(__func__, [&] {
    require(request, "request");
    request->spec.prefix = prefix ? prefix->prefix : nullptr;
  });
}

mmx_status* mmx_request_add_stop_string(mmx_request* request, const char* stop) {
  return guarded(__func__, [&] {
    require(request, "request");
    require(stop, "stop");
    const size_t len = std::strlen(stop);
    MMX_CHECK(len > 0, Code::InvalidArgument, "stop is an empty string");
    require_utf8(stop, len, "stop");
    request->spec.stop_strings.emplace_back(stop, len);
  });
}

mmx_status* mmx_request_add_stop_token(mmx_request* request, int32_t token) {
  return guarded(__func__, [&] {
    require(request, "request");
    MMX_CHECK(token >= 0, Code::InvalidArgument, "stop token " + std::to_string(token) + " is negative");
    request->spec.stop_tokens.push_back(token);
  });
}

mmx_status* mmx_request_set_logit_bias(mmx_request* request, int32_t token, float bias) {
  return guarded(__func__, [&] {
    require(request, "request");
    MMX_CHECK(token >= 0, Code::InvalidArgument, "logit bias token " + std::to_string(token) + " is negative");
    MMX_CHECK(!std::isnan(bias) && bias != INFINITY, Code::InvalidArgument,
              "logit bias " + std::to_string(bias) + " for token " + std::to_string(token) +
                  " must be finite or -INFINITY");
    request->spec.sampling.logit_bias[token] = bias;
  });
}

mmx_status* mmx_request_add_logits_position(mmx_request* request, int64_t position) {
  return guarded(__func__, [&] {
    require(request, "request");
    MMX_CHECK(position >= -1, Code::InvalidArgument,
              "logits position " + std::to_string(position) + " must be >= 0, or -1 for the last prompt token");
    request->spec.logits_positions.push_back(position);
  });
}

mmx_status* mmx_request_set_user_data(mmx_request* request, void* user_data) {
  return guarded(__func__, [&] {
    require(request, "request");
    request->spec.user_data = user_data;
  });
}

mmx_status* mmx_request_set_callback(mmx_request* request, mmx_event_fn fn, void* user_data) {
  return guarded(__func__, [&] {
    require(request, "request");
    if (!fn) {
      request->spec.callback = nullptr;
      return;
    }
    request->spec.callback = [fn, user_data](std::unique_ptr<mmx::Event> e) {
      mmx_event event(std::move(e));
      fn(&event, user_data);
    };
  });
}

}  // extern "C"
