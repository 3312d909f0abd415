// Token selection from one fp32 logits row: logit bias, repetition / frequency / presence
// penalties, then greedy or temperature sampling with top-k, top-p and min-p. Each request has
// its own seeded random source, so its tokens do not depend on what else shares the batch.
#pragma once
#include <cstdint>
#include <unordered_map>
#include <utility>
#include <vector>

#include "engine/request.h"

namespace mmx {

// xoshiro256** seeded through splitmix64: small, fast and the same sequence on every
// platform and standard library (std::uniform_real_distribution is not).
class Rng {
 public:
  explicit Rng(uint64_t seed);
  uint64_t next();
  double uniform();  // [0, 1) with 53 random bits

 private:
  uint64_t s_[4];
};

// log(sum(exp(x))) over n values, accumulated in double. Non-finite when x holds NaN.
double log_sum_exp(const float* x, size_t n);

// The n largest entries of `logits` (ties: lower id first) as (token, logits[token] - lse).
std::vector<std::pair<int32_t, float>> top_logprobs(const float* logits, int32_t vocab, double lse,
                                                    int32_t n);

struct TokenChoice {
  int32_t token = -1;
  float logprob = 0.0f;                        // under the unmodified distribution
  std::vector<std::pair<int32_t, float>> top;  // the n most likely tokens, unmodified
};

class Sampler {
 public:
  Sampler(const SamplingParams& params, int32_t vocab, int32_t n_top_logprobs);

  // Context the repetition penalty looks at (prompt, including a prefix's tokens).
  void observe_context(const std::vector<int32_t>& tokens);
  // A generated token: counts for every penalty.
  void observe_output(int32_t token);

  // Picks the next token from a raw logits row of `vocab` values. Throws Code::InvalidArgument
  // when logit bias bans every token, Code::Internal for a row holding NaN.
  TokenChoice sample(const float* logits);

 private:
  void apply_bias_and_penalties(const float* logits);
  int32_t choose_greedy() const;
  int32_t choose_random();

  SamplingParams params_;
  int32_t vocab_;
  int32_t n_top_;
  Rng rng_;
  std::vector<uint8_t> in_context_;                  // prompt + output, for the repetition penalty
  std::unordered_map<int32_t, int32_t> out_counts_;  // generated tokens, for frequency/presence
  std::vector<float> work_;                          // the modified logits
  std::vector<int32_t> order_;                       // candidate ids, scratch
  std::vector<double> probs_;                        // candidate probabilities, scratch
};

}  // namespace mmx
