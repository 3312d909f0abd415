// Read-only access to tensors in safetensors files (memory-mapped), a single file or a set of
// shards located through model.safetensors.index.json. Every header is validated.
#pragma once
#include <cstdint>
#include <map>
#include <memory>
#include <string>
#include <vector>

#include "core/dtype.h"

namespace mmx {

// A tensor inside a mapped file. `data` stays valid while the owning TensorStore lives.
struct TensorInfo {
  std::string name;
  std::string file;  // file name (relative to the model directory) holding it
  DType dtype = DType::F32;
  std::vector<int64_t> shape;
  const uint8_t* data = nullptr;
  uint64_t nbytes = 0;
  int64_t numel() const;
};

// One safetensors file, mmapped. Validates: 8-byte header length within the file, header is
// well-formed JSON object, each entry has dtype/shape/data_offsets of the right types, dtype
// known, shape non-negative, numel*size computed without overflow and equal to the offset span,
// offsets inside the data section, no two tensors overlapping. "__metadata__" is kept aside.
// Errors (Code::Format / Code::Io) name the file and the tensor.
class SafetensorsFile {
 public:
  static std::unique_ptr<SafetensorsFile> open(const std::string& path, const std::string& display_name);
  ~SafetensorsFile();
  const std::map<std::string, TensorInfo>& tensors() const { return tensors_; }
  const std::map<std::string, std::string>& metadata() const { return metadata_; }

 private:
  SafetensorsFile() = default;
  void* map_ = nullptr;
  size_t map_size_ = 0;
  std::map<std::string, TensorInfo> tensors_;
  std::map<std::string, std::string> metadata_;
};

// All tensors of a model directory: either `model.safetensors.index.json` (weight_map name ->
// shard file; shard names must stay inside the directory; every listed tensor must exist in
// the shard it names) or, without an index, `model.safetensors` when it exists (the usual single
// file; other *.safetensors beside it, e.g. reference outputs, are not model tensors), else every
// `*.safetensors` file in the directory (a tensor name in two files is an error).
class TensorStore {
 public:
  static std::unique_ptr<TensorStore> open_dir(const std::string& dir);
  // A store over tensors that live elsewhere (memory owned by the caller, or data == nullptr
  // for shape-only models). Names must be unique; nothing is validated beyond that.
  static std::unique_ptr<TensorStore> from_tensors(std::vector<TensorInfo> tensors);
  const TensorInfo* find(const std::string& name) const;  // nullptr if absent
  const TensorInfo& get(const std::string& name) const;   // throws Code::NotFound naming it
  std::vector<std::string> names() const;                 // sorted
  const std::string& dir() const { return dir_; }

 private:
  std::string dir_;
  std::vector<std::unique_ptr<SafetensorsFile>> files_;
  std::vector<std::unique_ptr<TensorInfo>> loose_;  // from_tensors
  std::map<std::string, const TensorInfo*> index_;
};

}  // namespace mmx
