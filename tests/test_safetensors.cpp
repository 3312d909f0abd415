// SafetensorsFile / TensorStore: round trip, the fixtures, and malformed files and indexes.
#include <gtest/gtest.h>

#include <cstring>
#include <filesystem>
#include <functional>
#include <nlohmann/json.hpp>

#include "core/error.h"
#include "model/random_model.h"
#include "model/tensor_store.h"
#include "test_util.h"

namespace {

using json = nlohmann::json;
using mmx::Code;
using mmx::SafetensorsFile;
using mmx::TensorStore;

// A safetensors file from raw header text and data bytes.
std::string st_bytes(const std::string& header, const std::string& data) {
  std::string out(8, '\0');
  uint64_t n = header.size();
  for (int i = 0; i < 8; ++i) out[size_t(i)] = char(n >> (8 * i));
  return out + header + data;
}

void expect_error(Code code, const std::function<void()>& f, std::initializer_list<const char*> needles) {
  try {
    f();
    ADD_FAILURE() << "no error";
  } catch (const mmx::Error& e) {
    EXPECT_EQ(e.code(), code) << e.what();
    for (const char* n : needles) EXPECT_NE(std::string(e.what()).find(n), std::string::npos) << e.what();
  }
}

class Safetensors : public ::testing::Test {
 protected:
  // Writes `bytes` as shard.safetensors and expects open() to refuse it naming the file.
  void expect_refused(const std::string& bytes, std::initializer_list<const char*> needles) {
    mmx_test::write_file(dir_.file("shard.safetensors"), bytes);
    expect_error(Code::Format, [&] { SafetensorsFile::open(dir_.file("shard.safetensors"), "shard.safetensors"); },
                 needles);
  }
  void expect_header_refused(const json& header, size_t data_bytes, std::initializer_list<const char*> needles) {
    expect_refused(st_bytes(header.dump(), std::string(data_bytes, '\0')), needles);
  }
  json f32_entry(std::vector<int64_t> shape, uint64_t begin, uint64_t end) {
    return {{"dtype", "F32"}, {"shape", shape}, {"data_offsets", {begin, end}}};
  }
  mmx_test::TempDir dir_;
};

mmx::Model::OwnedTensor owned(mmx::DType dtype, std::vector<int64_t> shape, size_t fill_from) {
  mmx::Model::OwnedTensor t;
  t.dtype = dtype;
  t.shape = shape;
  size_t n = mmx::dtype_size(dtype);
  for (int64_t d : shape) n *= size_t(d);
  for (size_t i = 0; i < n; ++i) t.bytes.push_back(uint8_t(fill_from + i * 7));
  return t;
}

TEST_F(Safetensors, ReadsWhatTheWriterWrote) {
  std::map<std::string, mmx::Model::OwnedTensor> tensors = {
      {"a.f32", owned(mmx::DType::F32, {3, 5}, 1)},
      {"b.bf16", owned(mmx::DType::BF16, {7}, 2)},
      {"c.f16", owned(mmx::DType::F16, {2, 3}, 3)},
      {"d.i8", owned(mmx::DType::I8, {5, 1}, 4)},
      {"e.empty", owned(mmx::DType::F32, {0, 4}, 5)},
  };
  mmx::write_safetensors(dir_.file("x.safetensors"), tensors, {{"format", "pt"}});
  auto f = SafetensorsFile::open(dir_.file("x.safetensors"), "x.safetensors");
  EXPECT_EQ(f->metadata().at("format"), "pt");
  ASSERT_EQ(f->tensors().size(), tensors.size());
  for (const auto& kv : tensors) {
    const mmx::TensorInfo& t = f->tensors().at(kv.first);
    EXPECT_EQ(t.dtype, kv.second.dtype) << kv.first;
    EXPECT_EQ(t.shape, kv.second.shape) << kv.first;
    EXPECT_EQ(t.file, "x.safetensors");
    ASSERT_EQ(t.nbytes, kv.second.bytes.size()) << kv.first;
    if (t.nbytes > 0)  // memcmp's pointers must be valid even for 0 bytes
      EXPECT_EQ(0, std::memcmp(t.data, kv.second.bytes.data(), t.nbytes)) << kv.first;
    EXPECT_EQ(reinterpret_cast<uintptr_t>(t.data) % mmx::dtype_size(t.dtype), 0u) << kv.first << " misaligned";
  }
  EXPECT_EQ(f->tensors().at("a.f32").numel(), 15);
}

TEST_F(Safetensors, ReadsTheGoldenFixtures) {
  for (const char* model : {"tiny_a", "tiny_b", "tiny_c"}) {
    auto g = SafetensorsFile::open(mmx_test::data_path(std::string("fixtures/") + model + "/golden.safetensors"),
                                   "golden.safetensors");
    const auto& t = g->tensors();
    EXPECT_EQ(g->metadata().at("model"), model);
    const int64_t vocab = t.at("gen.0.logits").shape[1];
    const int64_t lengths[] = {1, 255, 256, 257, 700};
    for (int k = 0; k < 5; ++k) {
      const std::string p = "prompt." + std::to_string(k) + ".";
      const mmx::TensorInfo& ids = t.at(p + "ids");
      const mmx::TensorInfo& pos = t.at(p + "positions");
      const mmx::TensorInfo& logits = t.at(p + "logits");
      ASSERT_EQ(ids.shape, std::vector<int64_t>{lengths[k]}) << model << " " << p;
      ASSERT_EQ(logits.shape, (std::vector<int64_t>{pos.numel(), vocab})) << model << " " << p;
      std::vector<float> ids_f(size_t(ids.numel())), pos_f(size_t(pos.numel()));
      std::memcpy(ids_f.data(), ids.data, ids.nbytes);
      std::memcpy(pos_f.data(), pos.data, pos.nbytes);
      for (float id : ids_f) EXPECT_TRUE(id >= 0 && id < vocab && id == std::floor(id)) << model << " id " << id;
      EXPECT_EQ(pos_f.front(), 0.0f);
      EXPECT_EQ(pos_f.back(), float(lengths[k] - 1));
      for (size_t i = 1; i < pos_f.size(); ++i) EXPECT_LT(pos_f[i - 1], pos_f[i]);
    }
    for (int gi = 0; gi < 2; ++gi) {
      const std::string p = "gen." + std::to_string(gi) + ".";
      EXPECT_EQ(t.at(p + "tokens").shape, std::vector<int64_t>{16});
      EXPECT_EQ(t.at(p + "logits").shape, (std::vector<int64_t>{16, vocab}));
      EXPECT_EQ(t.at(p + "prompt").dtype, mmx::DType::F32);
    }
  }
}

TEST_F(Safetensors, ShardedFixtureHoldsTheSameTensorsAsTheSingleFile) {
  auto single = TensorStore::open_dir(mmx_test::data_path("fixtures/tiny_a"));
  auto sharded = TensorStore::open_dir(mmx_test::data_path("fixtures/tiny_a_official"));
  std::set<std::string> files;
  for (const std::string& name : sharded->names()) {
    const mmx::TensorInfo& a = sharded->get(name);
    const mmx::TensorInfo& b = single->get(name);
    files.insert(a.file);
    EXPECT_EQ(a.shape, b.shape) << name;
    EXPECT_EQ(a.dtype, b.dtype) << name;
    ASSERT_EQ(a.nbytes, b.nbytes) << name;
    EXPECT_EQ(0, std::memcmp(a.data, b.data, a.nbytes)) << name;
  }
  EXPECT_EQ(files.size(), 3u);
  size_t derived = 0;
  for (const std::string& name : single->names()) derived += sharded->find(name) == nullptr;
  EXPECT_EQ(derived, 3u * 4u);  // 3 lightning layers x {slope_rate, query_decay, key_decay, diagonal_decay}
}

TEST_F(Safetensors, RefusesTruncatedFiles) {
  expect_refused("abc", {"shard.safetensors", "too short"});
  std::map<std::string, mmx::Model::OwnedTensor> one = {{"w", owned(mmx::DType::F32, {4, 4}, 0)}};
  mmx::write_safetensors(dir_.file("full.safetensors"), one);
  std::string bytes = mmx_test::read_file(dir_.file("full.safetensors"));
  expect_refused(bytes.substr(0, bytes.size() - 1), {"shard.safetensors", "'w'", "outside the data section"});
  expect_refused(bytes.substr(0, 20), {"header length", "past the end"});
}

TEST_F(Safetensors, RefusesBadHeaderLengths) {
  std::string huge(8, '\xff');
  expect_refused(huge + "{}", {"header length", "past the end"});
  std::string header = "{}";
  expect_refused(st_bytes(header, "") .substr(0, 9), {"past the end"});
}

TEST_F(Safetensors, RefusesHeadersThatAreNotJsonObjects) {
  expect_refused(st_bytes("{\"w\": {\"dtype\": ", ""), {"not valid JSON"});
  expect_refused(st_bytes("[1, 2, 3]", ""), {"not a JSON object"});
  expect_refused(st_bytes("{\"w\": {\"dtype\": \"F32\", \"shape\": [1e999]}}", ""), {"not valid JSON"});
  expect_header_refused({{"w", "F32"}}, 0, {"'w'", "not a JSON object"});
  expect_header_refused({{"__metadata__", {{"format", 3}}}}, 0, {"__metadata__", "format"});
}

TEST_F(Safetensors, RefusesEntriesWithBadFields) {
  expect_header_refused({{"w", {{"shape", {2}}, {"data_offsets", {0, 8}}}}}, 8, {"'w'", "dtype"});
  expect_header_refused({{"w", {{"dtype", "F64"}, {"shape", {2}}, {"data_offsets", {0, 16}}}}}, 16,
                        {"'w'", "unsupported dtype 'F64'"});
  expect_header_refused({{"w", {{"dtype", "F32"}, {"data_offsets", {0, 8}}}}}, 8, {"'w'", "shape"});
  expect_header_refused({{"w", f32_entry({2, -1}, 0, 8)}}, 8, {"'w'", "shape entry -1"});
  expect_header_refused({{"w", {{"dtype", "F32"}, {"shape", {1.5}}, {"data_offsets", {0, 4}}}}}, 4,
                        {"'w'", "shape entry 1.5"});
  expect_header_refused({{"w", {{"dtype", "F32"}, {"shape", {2}}, {"data_offsets", {0}}}}}, 8,
                        {"'w'", "data_offsets"});
  expect_header_refused({{"w", {{"dtype", "F32"}, {"shape", {2}}, {"data_offsets", {-8, 0}}}}}, 8,
                        {"'w'", "non-negative"});
  expect_header_refused({{"w", f32_entry({2}, 8, 0)}}, 8, {"'w'", "outside the data section"});
}

TEST_F(Safetensors, RefusesSizesThatDoNotAddUp) {
  // The header claims 4 floats but the offsets span 8 bytes.
  expect_header_refused({{"w", f32_entry({4}, 0, 8)}}, 16, {"'w'", "need 16"});
  // Offsets past the end of the data section.
  expect_header_refused({{"w", f32_entry({4}, 16, 32)}}, 16, {"'w'", "outside the data section"});
  // Absurd shapes are refused from the header alone: nothing is allocated for them.
  const int64_t big = int64_t(1) << 62;
  expect_header_refused({{"w", f32_entry({big, big}, 0, 16)}}, 16, {"'w'", "too large"});
  expect_header_refused({{"w", f32_entry({big}, 0, 16)}}, 16, {"'w'", "too large"});
  expect_header_refused({{"w", {{"dtype", "F32"}, {"shape", {2}}, {"data_offsets", {0, 18446744073709551615ull}}}}},
                        16, {"'w'"});
}

TEST_F(Safetensors, RefusesOverlappingTensors) {
  expect_header_refused({{"a", f32_entry({4}, 0, 16)}, {"b", f32_entry({4}, 8, 24)}}, 24,
                        {"shard.safetensors", "'a'", "'b'", "overlap"});
  // Zero-size tensors take no bytes and overlap nothing.
  mmx_test::write_file(dir_.file("ok.safetensors"),
                       st_bytes(json({{"a", f32_entry({4}, 0, 16)}, {"z", f32_entry({0}, 4, 4)}}).dump(),
                                std::string(16, '\0')));
  EXPECT_EQ(SafetensorsFile::open(dir_.file("ok.safetensors"), "ok")->tensors().size(), 2u);
}

TEST_F(Safetensors, RefusesMissingFiles) {
  expect_error(Code::NotFound, [&] { SafetensorsFile::open(dir_.file("nope.safetensors"), "nope.safetensors"); },
               {"nope.safetensors"});
}

// A model directory with two shards and an index; `weight_map` can be edited before writing.
class ShardedDir : public ::testing::Test {
 protected:
  void SetUp() override {
    mmx::write_safetensors(dir_.file("one.safetensors"), {{"a", owned(mmx::DType::F32, {2}, 1)}});
    mmx::write_safetensors(dir_.file("two.safetensors"), {{"b", owned(mmx::DType::BF16, {3}, 2)}});
    weight_map_ = {{"a", "one.safetensors"}, {"b", "two.safetensors"}};
  }
  void write_index() {
    mmx_test::write_file(dir_.file("model.safetensors.index.json"),
                         json({{"metadata", {{"total_size", 14}}}, {"weight_map", weight_map_}}).dump());
  }
  mmx_test::TempDir dir_;
  json weight_map_;
};

TEST_F(ShardedDir, OpensThroughTheIndex) {
  write_index();
  auto store = TensorStore::open_dir(dir_.path());
  EXPECT_EQ(store->names(), (std::vector<std::string>{"a", "b"}));
  EXPECT_EQ(store->get("b").file, "two.safetensors");
  EXPECT_EQ(store->get("b").dtype, mmx::DType::BF16);
  EXPECT_EQ(store->find("c"), nullptr);
  expect_error(Code::NotFound, [&] { store->get("c"); }, {"'c'"});
}

TEST_F(ShardedDir, OpensEveryShardWithoutAnIndex) {
  auto store = TensorStore::open_dir(dir_.path());
  EXPECT_EQ(store->names(), (std::vector<std::string>{"a", "b"}));
  mmx::write_safetensors(dir_.file("three.safetensors"), {{"a", owned(mmx::DType::F32, {2}, 1)}});
  expect_error(Code::Format, [&] { TensorStore::open_dir(dir_.path()); }, {"'a'", "one.safetensors", "three.safetensors"});
  // The conventional single file wins: other safetensors beside it are not model tensors.
  mmx::write_safetensors(dir_.file("model.safetensors"), {{"m", owned(mmx::DType::F32, {1}, 1)}});
  EXPECT_EQ(TensorStore::open_dir(dir_.path())->names(), std::vector<std::string>{"m"});
}

TEST_F(ShardedDir, RefusesAnIndexNamingAMissingFile) {
  weight_map_["b"] = "missing.safetensors";
  write_index();
  expect_error(Code::NotFound, [&] { TensorStore::open_dir(dir_.path()); }, {"missing.safetensors", "'b'"});
}

TEST_F(ShardedDir, RefusesShardPathsEscapingTheDirectory) {
  std::filesystem::create_directories(dir_.file("sub"));
  for (const char* bad : {"../two.safetensors", "/etc/passwd", "sub/../../two.safetensors", "./two.safetensors",
                          "sub//two.safetensors", "", "sub\\..\\two.safetensors"}) {
    weight_map_["b"] = bad;
    write_index();
    expect_error(Code::Format, [&] { TensorStore::open_dir(dir_.path()); }, {"'b'", "inside the model directory"});
  }
}

TEST_F(ShardedDir, AcceptsShardsInSubdirectories) {
  std::filesystem::create_directories(dir_.file("sub"));
  std::filesystem::rename(dir_.file("two.safetensors"), dir_.file("sub/two.safetensors"));
  weight_map_["b"] = "sub/two.safetensors";
  write_index();
  EXPECT_EQ(TensorStore::open_dir(dir_.path())->get("b").file, "sub/two.safetensors");
}

TEST_F(ShardedDir, RefusesATensorMissingFromItsShard) {
  weight_map_["b"] = "one.safetensors";
  write_index();
  expect_error(Code::Format, [&] { TensorStore::open_dir(dir_.path()); }, {"'b'", "one.safetensors", "does not contain"});
}

TEST_F(ShardedDir, RefusesMalformedIndexes) {
  mmx_test::write_file(dir_.file("model.safetensors.index.json"), "{\"weight_map\": ");
  expect_error(Code::Format, [&] { TensorStore::open_dir(dir_.path()); }, {"index.json", "invalid JSON"});
  mmx_test::write_file(dir_.file("model.safetensors.index.json"), "{\"weight_map\": [1]}");
  expect_error(Code::Format, [&] { TensorStore::open_dir(dir_.path()); }, {"weight_map"});
  mmx_test::write_file(dir_.file("model.safetensors.index.json"), "{\"weight_map\": {\"a\": 5}}");
  expect_error(Code::Format, [&] { TensorStore::open_dir(dir_.path()); }, {"'a'", "not a string"});
}

TEST(TensorStoreDir, RefusesMissingOrEmptyDirectories) {
  mmx_test::TempDir dir;
  expect_error(Code::NotFound, [&] { TensorStore::open_dir(dir.file("absent")); }, {"absent"});
  expect_error(Code::NotFound, [&] { TensorStore::open_dir(dir.path()); }, {"safetensors"});
}

}  // namespace
