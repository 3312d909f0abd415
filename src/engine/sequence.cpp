#include "engine/sequence.h"

#include <algorithm>

#include "engine/prefix.h"
#include "engine/runtime.h"

namespace mmx {

int64_t Request::prefix_tokens() const { return spec.prefix ? spec.prefix->token_count() : 0; }

Sequence::Sequence(std::shared_ptr<Request> request, std::unique_ptr<SeqState> state,
                   const ModelRuntime& rt)
    : request_(std::move(request)),
      state_(std::move(state)),
      sampler_(request_->spec.sampling, rt.vocab_size(), request_->spec.top_logprobs),
      stops_(request_->spec.stop_strings) {
  if (rt.tokenizer()) {
    decoder_.emplace(*rt.tokenizer());
    tokenizer_vocab_ = rt.tokenizer()->vocab_size();
  }
  if (request_->spec.prefix) sampler_.observe_context(request_->spec.prefix->tokens());
  sampler_.observe_context(request_->prompt);
}

Sequence::TokenOutcome Sequence::accept_token(int32_t token, int32_t eos_token, int64_t context_limit) {
  const RequestSpec& spec = request_->spec;
  TokenOutcome out;
  ++generated_;
  pending_input_ = token;
  sampler_.observe_output(token);
  // EOS and stop tokens end the sequence without adding their text to the output.
  if (token == eos_token && !spec.ignore_eos) {
    out.finish = FinishReason::Eos;
  } else if (std::find(spec.stop_tokens.begin(), spec.stop_tokens.end(), token) != spec.stop_tokens.end()) {
    out.finish = FinishReason::StopToken;
  } else {
    // Models pad their vocabulary beyond the tokenizer's; such ids have no text.
    const bool has_text = decoder_ && token < tokenizer_vocab_;
    bool stopped = false;
    out.text = stops_.push(has_text ? decoder_->push(token) : std::string(), &stopped);
    if (stopped) out.finish = FinishReason::StopString;
  }
  if (out.finish == FinishReason::None) {
    const int64_t total = request_->prefix_tokens() + prompt_size() + generated_;
    if (generated_ >= request_->generation_limit || total >= context_limit) out.finish = FinishReason::Length;
  }
  return out;
}

std::string Sequence::flush_text() {
  bool stopped = false;
  std::string text = stops_.push(decoder_ ? decoder_->flush() : std::string(), &stopped);
  return text + stops_.flush();
}

std::vector<int64_t> Sequence::take_logits_positions(int64_t begin, int64_t end) {
  std::vector<int64_t> out;
  const auto& positions = request_->logits_positions;
  while (next_logits_position_ < positions.size() && positions[next_logits_position_] < end) {
    if (positions[next_logits_position_] >= begin) out.push_back(positions[next_logits_position_]);
    ++next_logits_position_;
  }
  return out;
}

}  // namespace mmx
