// Unit tests of the engine's pieces that need no model: sampling, stop strings, the pull
// event queues and logging.
#include <gtest/gtest.h>

#include <atomic>
#include <cmath>
#include <limits>
#include <map>
#include <thread>

#include "core/error.h"
#include "core/log.h"
#include "engine/events.h"
#include "engine/sampler.h"
#include "engine/stop.h"

namespace mmx {
namespace {

std::vector<float> ramp(int n) {
  std::vector<float> v(static_cast<size_t>(n));
  for (int i = 0; i < n; ++i) v[size_t(i)] = 0.1f * float(i % 17) - 0.03f * float(i % 5);
  return v;
}

int32_t argmax(const std::vector<float>& v) {
  return int32_t(std::max_element(v.begin(), v.end()) - v.begin());
}

TEST(Sampler, GreedyPicksTheLargestLogitAndReportsRawLogprobs) {
  std::vector<float> logits = ramp(100);
  logits[42] = 5.0f;
  SamplingParams p;
  Sampler s(p, 100, 4);
  TokenChoice c = s.sample(logits.data());
  EXPECT_EQ(c.token, 42);
  const double lse = log_sum_exp(logits.data(), logits.size());
  EXPECT_NEAR(c.logprob, logits[42] - lse, 1e-6);
  ASSERT_EQ(c.top.size(), 4u);
  EXPECT_EQ(c.top[0].first, 42);
  for (size_t i = 1; i < c.top.size(); ++i) EXPECT_GE(c.top[i - 1].second, c.top[i].second);
}

TEST(Sampler, TopLogprobsBreakTiesByLowerId) {
  std::vector<float> logits(10, 1.0f);
  auto top = top_logprobs(logits.data(), 10, log_sum_exp(logits.data(), 10), 3);
  ASSERT_EQ(top.size(), 3u);
  EXPECT_EQ(top[0].first, 0);
  EXPECT_EQ(top[1].first, 1);
  EXPECT_EQ(top[2].first, 2);
  EXPECT_NEAR(top[0].second, -std::log(10.0), 1e-6);
}

TEST(Sampler, SeededDrawsAreReproducibleAndFollowTheDistribution) {
  // Two tokens with probabilities 0.25 / 0.75 (logits log(1), log(3)); everything else banned.
  std::vector<float> logits(8, -std::numeric_limits<float>::infinity());
  logits[2] = 0.0f;
  logits[5] = std::log(3.0f);
  SamplingParams p;
  p.temperature = 1.0;
  p.seed = 77;
  Sampler a(p, 8, 0), b(p, 8, 0);
  int fives = 0;
  for (int i = 0; i < 4000; ++i) {
    TokenChoice ca = a.sample(logits.data()), cb = b.sample(logits.data());
    ASSERT_EQ(ca.token, cb.token);
    ASSERT_TRUE(ca.token == 2 || ca.token == 5);
    fives += ca.token == 5;
  }
  EXPECT_NEAR(fives / 4000.0, 0.75, 0.03);
  p.seed = 78;
  Sampler c(p, 8, 0);
  Sampler d(SamplingParams{p.temperature, 0, 1.0, 0.0, 1.0, 0.0, 0.0, 77, {}}, 8, 0);
  std::vector<int32_t> from_c, from_d;
  for (int i = 0; i < 64; ++i) {
    from_c.push_back(c.sample(logits.data()).token);
    from_d.push_back(d.sample(logits.data()).token);
  }
  EXPECT_NE(from_c, from_d);
}

TEST(Sampler, TopKTopPAndMinPRestrictTheCandidates) {
  // Probabilities proportional to 8, 4, 2, 1, 1 (ids 0..4).
  std::vector<float> logits = {std::log(8.0f), std::log(4.0f), std::log(2.0f), 0.0f, 0.0f};
  auto draws = [&](SamplingParams p) {
    p.temperature = 1.0;
    Sampler s(p, 5, 0);
    std::map<int32_t, int> seen;
    for (int i = 0; i < 3000; ++i) ++seen[s.sample(logits.data()).token];
    return seen;
  };
  SamplingParams k2;
  k2.top_k = 2;
  auto a = draws(k2);
  EXPECT_EQ(a.size(), 2u);
  EXPECT_TRUE(a.count(0) && a.count(1));
  EXPECT_NEAR(a[0] / 3000.0, 2.0 / 3.0, 0.04);

  SamplingParams p7;  // mass 8/16 + 4/16 = 0.75 reaches 0.7 with two tokens
  p7.top_p = 0.7;
  auto b = draws(p7);
  EXPECT_EQ(b.size(), 2u);

  SamplingParams m;  // keeps p >= 0.3 * p_max: ids 0 (1.0) and 1 (0.5)
  m.min_p = 0.3;
  auto c = draws(m);
  EXPECT_EQ(c.size(), 2u);
  EXPECT_TRUE(c.count(0) && c.count(1));

  SamplingParams all;
  EXPECT_EQ(draws(all).size(), 5u);
}

TEST(Sampler, PenaltiesAndBias) {
  std::vector<float> logits = {2.0f, 1.9f, -1.0f, -1.1f};
  SamplingParams rep;
  rep.repetition_penalty = 2.0;  // 2.0 -> 1.0 for a seen token: 1.9 wins
  Sampler r(rep, 4, 0);
  r.observe_context({0});
  EXPECT_EQ(r.sample(logits.data()).token, 1);

  SamplingParams neg;  // a negative logit is multiplied: -1.0 -> -2.0, so -1.1 wins among them
  neg.repetition_penalty = 2.0;
  neg.logit_bias = {{0, -INFINITY}, {1, -INFINITY}};
  Sampler n(neg, 4, 0);
  n.observe_context({2});
  EXPECT_EQ(n.sample(logits.data()).token, 3);

  SamplingParams freq;
  freq.frequency_penalty = 0.06;  // token 0 generated twice: 2.0 - 0.12 < 1.9
  Sampler f(freq, 4, 0);
  f.observe_output(0);
  EXPECT_EQ(f.sample(logits.data()).token, 0);
  f.observe_output(0);
  EXPECT_EQ(f.sample(logits.data()).token, 1);

  SamplingParams pres;
  pres.presence_penalty = 0.2;
  Sampler pr(pres, 4, 0);
  pr.observe_output(0);
  EXPECT_EQ(pr.sample(logits.data()).token, 1);

  SamplingParams boost;
  boost.logit_bias = {{3, 10.0f}};
  Sampler bo(boost, 4, 2);
  TokenChoice c = bo.sample(logits.data());
  EXPECT_EQ(c.token, 3);
  // The reported logprob is of the unmodified distribution.
  EXPECT_NEAR(c.logprob, -1.1 - log_sum_exp(logits.data(), 4), 1e-6);
  EXPECT_EQ(c.top[0].first, 0);

  SamplingParams ban_all;
  for (int t = 0; t < 4; ++t) ban_all.logit_bias[t] = -INFINITY;
  Sampler none(ban_all, 4, 0);
  try {
    none.sample(logits.data());
    FAIL() << "expected an error";
  } catch (const Error& e) {
    EXPECT_EQ(e.code(), Code::InvalidArgument);
  }
  std::vector<float> nan_row = {0.0f, std::numeric_limits<float>::quiet_NaN()};
  Sampler s2(SamplingParams{}, 2, 0);
  EXPECT_THROW(s2.sample(nan_row.data()), Error);
}

TEST(Sampler, GreedyIsTheArgmaxOfALargeRow) {
  std::vector<float> logits = ramp(5000);
  logits[4321] = 9.0f;
  Sampler s(SamplingParams{}, 5000, 20);
  TokenChoice c = s.sample(logits.data());
  EXPECT_EQ(c.token, argmax(logits));
  EXPECT_EQ(c.top.size(), 20u);
}

TEST(StopStrings, HoldsBackPossibleStartsAndNeverEmitsTheStop) {
  StopStringFilter f({"STOP", "end."});
  bool stopped = false;
  std::string out;
  out += f.push("hello S", &stopped);
  EXPECT_EQ(out, "hello ") << "\"S\" could start \"STOP\"";
  out += f.push("T", &stopped);
  EXPECT_EQ(out, "hello ");
  out += f.push("AR e", &stopped);  // "STAR" is not a stop; "e" might start "end."
  EXPECT_EQ(out, "hello STAR ");
  EXPECT_FALSE(stopped);
  out += f.push("nd", &stopped);
  out += f.push(".tail", &stopped);
  EXPECT_TRUE(stopped);
  EXPECT_EQ(out, "hello STAR ");
  EXPECT_EQ(f.push("more", &stopped), "");
  EXPECT_EQ(f.flush(), "");
}

TEST(StopStrings, MatchInsideOneDeltaAndFlush) {
  StopStringFilter f({"xyz"});
  bool stopped = false;
  EXPECT_EQ(f.push("abxyzcd", &stopped), "ab");
  EXPECT_TRUE(stopped);

  StopStringFilter g({"\xC3\xA9t\xC3\xA9"});  // "été"
  EXPECT_EQ(g.push("caf\xC3\xA9", &stopped), "caf");
  EXPECT_FALSE(stopped);
  EXPECT_EQ(g.flush(), "\xC3\xA9") << "held text comes out at the end";

  StopStringFilter none;
  EXPECT_EQ(none.push("anything", &stopped), "anything");
}

std::unique_ptr<Event> event(uint64_t id, EventType type) {
  auto e = std::make_unique<Event>();
  e->request_id = id;
  e->type = type;
  return e;
}

TEST(EventHub, PerRequestAndAnyRequestQueues) {
  EventHub hub;
  hub.open(1, true);
  hub.open(2, true);
  hub.open(3, false);
  hub.push(event(1, EventType::Progress));
  hub.push(event(2, EventType::Token));
  hub.push(event(1, EventType::Finished));
  // By id, FIFO.
  EXPECT_EQ(hub.next(1, 0)->type, EventType::Progress);
  // Any: request 1's final event, then request 2's token (requests take turns).
  auto a = hub.next(0, 0);
  auto b = hub.next(0, 0);
  EXPECT_EQ(a->request_id + b->request_id, 3u);
  try {
    hub.next(1, 0);
    FAIL();
  } catch (const Error& e) {
    EXPECT_EQ(e.code(), Code::NotFound);
  }
  try {
    hub.next(3, 0);
    FAIL();
  } catch (const Error& e) {
    EXPECT_EQ(e.code(), Code::State);
  }
  try {
    hub.next(2, 10);
    FAIL();
  } catch (const Error& e) {
    EXPECT_EQ(e.code(), Code::Timeout);
  }
  hub.forget(3);
  try {
    hub.next(3, 0);
    FAIL();
  } catch (const Error& e) {
    EXPECT_EQ(e.code(), Code::NotFound);
  }
}

TEST(EventHub, WaitersWakeAndEachEventGoesToOneCaller) {
  EventHub hub;
  constexpr int kEvents = 2000;
  hub.open(7, true);
  std::atomic<int> taken{0};
  std::vector<std::thread> readers;
  for (int t = 0; t < 4; ++t)
    readers.emplace_back([&, t] {
      for (;;) {
        try {
          auto e = hub.next(t % 2 ? 7 : 0, 300);
          ++taken;
          if (e->type == EventType::Finished) return;
        } catch (const Error& e) {
          if (e.code() == Code::NotFound || e.code() == Code::Timeout) return;
          throw;
        }
      }
    });
  for (int i = 0; i < kEvents; ++i) hub.push(event(7, i + 1 == kEvents ? EventType::Finished : EventType::Token));
  for (auto& r : readers) r.join();
  EXPECT_EQ(taken.load(), kEvents);
}

TEST(Log, LevelsAndSinks) {
  LogLevel l;
  EXPECT_TRUE(parse_log_level("DEBUG", &l));
  EXPECT_EQ(l, LogLevel::Debug);
  EXPECT_TRUE(parse_log_level("warning", &l));
  EXPECT_EQ(l, LogLevel::Warn);
  EXPECT_TRUE(parse_log_level("4", &l));
  EXPECT_EQ(l, LogLevel::Off);
  EXPECT_FALSE(parse_log_level("loud", &l));

  std::vector<std::string> lines;
  set_log_sink([&](LogLevel, const char* m) { lines.push_back(m); }, LogLevel::Info);
  MMX_LOG_DEBUG("dropped");
  MMX_LOG_INFO("kept");
  MMX_LOG_ERROR("also kept");
  set_log_sink(nullptr, LogLevel::Debug);
  MMX_LOG_ERROR("to stderr");
  EXPECT_EQ(lines, (std::vector<std::string>{"kept", "also kept"}));
}

}  // namespace
}  // namespace mmx
