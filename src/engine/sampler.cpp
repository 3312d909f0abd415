#include "engine/sampler.h"

#include <algorithm>
#include <cmath>
#include <limits>
#include <string>

#include "core/error.h"

namespace mmx {

namespace {

uint64_t splitmix64(uint64_t& x) {
  uint64_t z = (x += 0x9e3779b97f4a7c15ull);
  z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ull;
  z = (z ^ (z >> 27)) * 0x94d049bb133111ebull;
  return z ^ (z >> 31);
}

uint64_t rotl(uint64_t x, int k) { return (x << k) | (x >> (64 - k)); }

}  // namespace

Rng::Rng(uint64_t seed) {
  for (uint64_t& s : s_) s = splitmix64(seed);
}

uint64_t Rng::next() {
  const uint64_t result = rotl(s_[1] * 5, 7) * 9;
  const uint64_t t = s_[1] << 17;
  s_[2] ^= s_[0];
  s_[3] ^= s_[1];
  s_[1] ^= s_[2];
  s_[0] ^= s_[3];
  s_[2] ^= t;
  s_[3] = rotl(s_[3], 45);
  return result;
}

double Rng::uniform() { return double(next() >> 11) * 0x1.0p-53; }

double log_sum_exp(const float* x, size_t n) {
  float m = -std::numeric_limits<float>::infinity();
  for (size_t i = 0; i < n; ++i) {
    if (std::isnan(x[i])) return std::numeric_limits<double>::quiet_NaN();
    m = std::max(m, x[i]);
  }
  if (!std::isfinite(m)) return m;
  double s = 0;
  for (size_t i = 0; i < n; ++i) s += std::exp(double(x[i]) - double(m));
  return double(m) + std::log(s);
}

std::vector<std::pair<int32_t, float>> top_logprobs(const float* logits, int32_t vocab, double lse,
                                                    int32_t n) {
  n = std::min(n, vocab);
  std::vector<std::pair<int32_t, float>> out;
  if (n <= 0) return out;
  // One pass keeping the n best seen so far in a heap whose top is the worst of them.
  auto better = [&](int32_t a, int32_t b) {
    return logits[a] > logits[b] || (logits[a] == logits[b] && a < b);
  };
  std::vector<int32_t> heap;
  heap.reserve(size_t(n) + 1);
  for (int32_t t = 0; t < vocab; ++t) {
    if (int32_t(heap.size()) < n) {
      heap.push_back(t);
      std::push_heap(heap.begin(), heap.end(), better);
    } else if (better(t, heap.front())) {
      std::pop_heap(heap.begin(), heap.end(), better);
      heap.back() = t;
      std::push_heap(heap.begin(), heap.end(), better);
    }
  }
  std::sort(heap.begin(), heap.end(), better);
  out.reserve(heap.size());
  for (int32_t t : heap) out.emplace_back(t, float(double(logits[t]) - lse));
  return out;
}

Sampler::Sampler(const SamplingParams& params, int32_t vocab, int32_t n_top_logprobs)
    : params_(params), vocab_(vocab), n_top_(n_top_logprobs), rng_(params.seed) {
  if (params_.repetition_penalty != 1.0) in_context_.assign(size_t(vocab), 0);
}

void Sampler::observe_context(const std::vector<int32_t>& tokens) {
  if (in_context_.empty()) return;
  for (int32_t t : tokens)
    if (t >= 0 && t < vocab_) in_context_[size_t(t)] = 1;
}

void Sampler::observe_output(int32_t token) {
  if (token < 0 || token >= vocab_) return;
  if (!in_context_.empty()) in_context_[size_t(token)] = 1;
  if (params_.frequency_penalty != 0.0 || params_.presence_penalty != 0.0) ++out_counts_[token];
}

void Sampler::apply_bias_and_penalties(const float* logits) {
  work_.assign(logits, logits + vocab_);
  for (const auto& [token, bias] : params_.logit_bias)
    if (token >= 0 && token < vocab_) work_[size_t(token)] += bias;
  if (!in_context_.empty()) {
    // CTRL (Keskar et al. 2019): seen tokens become less likely whatever the logit's sign.
    const float p = float(params_.repetition_penalty);
    for (int32_t t = 0; t < vocab_; ++t) {
      if (!in_context_[size_t(t)]) continue;
      float& l = work_[size_t(t)];
      l = l > 0 ? l / p : l * p;
    }
  }
  for (const auto& [token, count] : out_counts_)
    work_[size_t(token)] -= float(params_.frequency_penalty * count + params_.presence_penalty);
}

int32_t Sampler::choose_greedy() const {
  int32_t best = -1;
  float best_value = -std::numeric_limits<float>::infinity();
  for (int32_t t = 0; t < vocab_; ++t)
    if (work_[size_t(t)] > best_value) best_value = work_[size_t(t)], best = t;
  return best;  // -1 when every logit is -inf
}

int32_t Sampler::choose_random() {
  const double inv_t = 1.0 / params_.temperature;
  order_.clear();
  for (int32_t t = 0; t < vocab_; ++t)
    if (work_[size_t(t)] > -std::numeric_limits<float>::infinity()) order_.push_back(t);
  if (order_.empty()) return -1;
  auto better = [&](int32_t a, int32_t b) {
    return work_[size_t(a)] > work_[size_t(b)] || (work_[size_t(a)] == work_[size_t(b)] && a < b);
  };
  // Candidates best first, restricted to the top k (a full sort is only needed for top-p;
  // min-p only needs the maximum, which the first candidate is).
  size_t k = order_.size();
  if (params_.top_k > 0 && size_t(params_.top_k) < k) {
    k = size_t(params_.top_k);
    std::partial_sort(order_.begin(), order_.begin() + ptrdiff_t(k), order_.end(), better);
    order_.resize(k);
  } else if (params_.top_p < 1.0) {
    std::sort(order_.begin(), order_.end(), better);
  } else {
    auto best = std::min_element(order_.begin(), order_.end(), better);
    std::iter_swap(order_.begin(), best);
  }
  const double max_scaled = double(work_[size_t(order_[0])]) * inv_t;
  probs_.resize(k);
  double z = 0;
  for (size_t i = 0; i < k; ++i) z += probs_[i] = std::exp(double(work_[size_t(order_[i])]) * inv_t - max_scaled);
  size_t keep = k;
  if (params_.top_p < 1.0) {
    // The smallest best-first prefix whose mass reaches top_p (at least one token).
    double mass = 0;
    for (size_t i = 0; i < k; ++i) {
      mass += probs_[i] / z;
      if (mass >= params_.top_p) {
        keep = i + 1;
        break;
      }
    }
  }
  double kept_z = 0;
  for (size_t i = 0; i < keep; ++i) {
    // min-p: drop tokens below min_p times the best token's probability (probs_[0] == 1).
    if (params_.min_p > 0.0 && probs_[i] < params_.min_p) probs_[i] = 0;
    kept_z += probs_[i];
  }
  double u = rng_.uniform() * kept_z;
  for (size_t i = 0; i < keep; ++i) {
    if (probs_[i] == 0) continue;
    if (u < probs_[i]) return order_[i];
    u -= probs_[i];
  }
  // Rounding left u just past the last kept candidate: that candidate is the draw.
  for (size_t i = keep; i-- > 0;)
    if (probs_[i] > 0) return order_[i];
  return order_[0];
}

TokenChoice Sampler::sample(const float* logits) {
  const double lse = log_sum_exp(logits, size_t(vocab_));
  MMX_CHECK(std::isfinite(lse), Code::Internal, "the model produced a logits row holding NaN or infinity");
  apply_bias_and_penalties(logits);
  TokenChoice c;
  c.token = params_.temperature > 0.0 ? choose_random() : choose_greedy();
  MMX_CHECK(c.token >= 0, Code::InvalidArgument,
            "no token can be sampled: logit bias bans every token of the vocabulary");
  c.logprob = float(double(logits[c.token]) - lse);
  c.top = top_logprobs(logits, vocab_, lse, n_top_);
  return c;
}

}  // namespace mmx
