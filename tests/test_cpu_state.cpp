// Sequence states on the CPU backend: the portable image (backend/state_format.h) round trip,
// clones, size accounting and rejection of malformed images.
#include <gtest/gtest.h>

#include <cmath>
#include <cstring>
#include <limits>
#include <memory>

#include "backend/backend.h"
#include "backend/state_format.h"
#include "core/error.h"
#include "model/forward.h"
#include "model/random_model.h"

namespace {

using mmx::Code;

class CpuState : public ::testing::Test {
 protected:
  void SetUp() override {
    config_ = mmx::tiny_test_config();
    model_ = mmx::make_random_model(config_, 11);
    mmx::BackendOptions opts;
    opts.threads = 2;
    be_ = mmx::create_backend(opts);
    be_->prepare(*model_);
  }
  // Feeds `n` tokens (ids start, start+1, ...) to the state; returns the last position's logits.
  std::vector<float> feed(mmx::SeqState* st, int64_t n, int32_t start) {
    mmx::StepBatch b;
    b.seqs = {{st, n, st->tokens}};
    std::vector<int32_t> ids;
    for (int64_t i = 0; i < n; ++i) ids.push_back(int32_t((start + i) % config_.vocab));
    std::vector<float> logits;
    mmx::Forward(*model_, *be_).run(b, ids, {int32_t(n - 1)}, &logits);
    return logits;
  }
  std::vector<uint8_t> save(const mmx::SeqState& st) {
    std::vector<uint8_t> img;
    be_->save_state(st, &img);
    return img;
  }

  mmx::ModelConfig config_;
  std::shared_ptr<mmx::Model> model_;
  std::unique_ptr<mmx::Backend> be_;
};

TEST_F(CpuState, SaveLoadRoundTripContinuesIdentically) {
  auto st = be_->new_state();
  feed(st.get(), 13, 5);
  std::vector<uint8_t> img = save(*st);
  EXPECT_EQ(img.size(), mmx::state_layout(config_, 13).header_bytes + be_->state_bytes(13));

  auto loaded = be_->load_state(img.data(), img.size());
  EXPECT_EQ(loaded->tokens, 13);
  EXPECT_EQ(save(*loaded), img);
  EXPECT_EQ(feed(st.get(), 3, 40), feed(loaded.get(), 3, 40));
  EXPECT_EQ(save(*st), save(*loaded));
}

TEST_F(CpuState, CloneIsIndependentOfItsSource) {
  auto st = be_->new_state();
  feed(st.get(), 6, 1);
  auto copy = be_->clone_state(*st);
  std::vector<uint8_t> before = save(*st);
  feed(st.get(), 4, 9);
  EXPECT_EQ(save(*copy), before);
  EXPECT_NE(save(*st), before);
}

TEST_F(CpuState, StateBytesCountsFixedLightningAndGrowingKv) {
  const uint64_t d = uint64_t(config_.head_dim);
  const uint64_t soft = uint64_t(config_.softmax_layer_count()), light = uint64_t(config_.layers) - soft;
  const uint64_t fixed = light * uint64_t(config_.heads) * d * d * 4;
  EXPECT_EQ(be_->state_bytes(0), fixed);
  EXPECT_EQ(be_->state_bytes(1000), fixed + soft * 2 * 1000 * uint64_t(config_.kv_heads) * d * 4);
  auto empty = be_->new_state();
  std::vector<uint8_t> img = save(*empty);
  EXPECT_EQ(be_->load_state(img.data(), img.size())->tokens, 0);
}

void expect_format_error(mmx::Backend& be, const std::vector<uint8_t>& img, const char* what) {
  try {
    be.load_state(img.data(), img.size());
    ADD_FAILURE() << what << ": accepted";
  } catch (const mmx::Error& e) {
    EXPECT_EQ(e.code(), Code::Format) << what << ": " << e.what();
  }
}

TEST_F(CpuState, MalformedImagesAreRefusedWithFormatErrors) {
  auto st = be_->new_state();
  feed(st.get(), 7, 2);
  const std::vector<uint8_t> good = save(*st);
  const mmx::StateLayout layout = mmx::state_layout(config_, 7);
  auto patched = [&](size_t at, const void* bytes, size_t n) {
    std::vector<uint8_t> img = good;
    std::memcpy(img.data() + at, bytes, n);
    return img;
  };
  const uint32_t two = 2, one = 1, big = 1u << 30;
  const int64_t huge = int64_t(1) << 62, negative = -1;
  const float nan = std::numeric_limits<float>::quiet_NaN(), inf = std::numeric_limits<float>::infinity();

  expect_format_error(*be_, {}, "empty");
  expect_format_error(*be_, std::vector<uint8_t>(good.begin(), good.begin() + 12), "header cut short");
  expect_format_error(*be_, patched(0, "NOTSTATE", 8), "bad magic");
  expect_format_error(*be_, patched(8, &two, 4), "version 2");
  expect_format_error(*be_, patched(12, &two, 4), "layer count");
  expect_format_error(*be_, patched(16, &big, 4), "head count");
  expect_format_error(*be_, patched(20, &two, 4), "head_dim");
  expect_format_error(*be_, patched(24, &one, 4), "kv heads");
  expect_format_error(*be_, patched(28, &one, 4), "reserved field");
  expect_format_error(*be_, patched(32, &huge, 8), "2^62 tokens (must not allocate)");
  expect_format_error(*be_, patched(32, &negative, 8), "negative tokens");
  const uint8_t flipped = uint8_t(1 - uint8_t(config_.layer_kinds[0]));
  expect_format_error(*be_, patched(40, &flipped, 1), "layer kind");
  expect_format_error(*be_, std::vector<uint8_t>(good.begin(), good.end() - 4), "truncated payload");
  std::vector<uint8_t> longer = good;
  longer.push_back(0);
  expect_format_error(*be_, longer, "trailing byte");
  expect_format_error(*be_, patched(size_t(layout.layer_offset[0]) + 8, &nan, 4), "NaN in S");
  int softmax = 0;
  while (config_.layer_kinds[size_t(softmax)] != mmx::LayerKind::Softmax) ++softmax;
  expect_format_error(*be_, patched(size_t(layout.v_offset(softmax)), &inf, 4), "Inf in V");
}

TEST_F(CpuState, ImagesOfAnotherModelShapeAreRefused) {
  auto st = be_->new_state();
  feed(st.get(), 4, 0);
  std::vector<uint8_t> img = save(*st);
  mmx::ModelConfig other = config_;
  other.kv_heads = config_.heads;  // same layers and heads, different KV width
  auto other_model = mmx::make_random_model(other, 3);
  mmx::BackendOptions opts;
  opts.threads = 1;
  auto other_be = mmx::create_backend(opts);
  other_be->prepare(*other_model);
  expect_format_error(*other_be, img, "other model");
}

TEST_F(CpuState, ForeignStateObjectsAreRefused) {
  struct Foreign : mmx::SeqState {};
  Foreign f;
  std::vector<uint8_t> img;
  EXPECT_THROW(be_->save_state(f, &img), mmx::Error);
  EXPECT_THROW(be_->clone_state(f), mmx::Error);
}

}  // namespace
