// safetensors reader (mmap) and the model-directory tensor store. Every header field is checked
// before it is used, so a malformed or hostile file yields a Format error, never a crash or a
// huge allocation.
#include "model/tensor_store.h"

#include <fcntl.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <nlohmann/json.hpp>

#include "core/error.h"

namespace mmx {
namespace fs = std::filesystem;
using json = nlohmann::json;

namespace {

// The reference safetensors implementation caps the header at 100 MB; so do we.
constexpr uint64_t kMaxHeaderBytes = 100ull << 20;
constexpr uint64_t kMaxIndexBytes = 256ull << 20;
constexpr size_t kMaxRank = 16;
constexpr const char* kIndexName = "model.safetensors.index.json";

// Closes a file descriptor on every exit path.
struct Fd {
  int fd = -1;
  ~Fd() {
    if (fd >= 0) ::close(fd);
  }
};

uint64_t read_u64_le(const uint8_t* p) {
  uint64_t v = 0;
  for (int i = 7; i >= 0; --i) v = (v << 8) | p[i];
  return v;
}

// Reads one non-negative integer from a header field.
bool to_u64(const json& v, uint64_t* out) {
  if (v.is_number_unsigned()) {
    *out = v.get<uint64_t>();
    return true;
  }
  if (v.is_number_integer() && v.get<int64_t>() >= 0) {
    *out = uint64_t(v.get<int64_t>());
    return true;
  }
  return false;
}

// Parses one header entry into `t` (without data pointer); `where` prefixes error messages.
void parse_entry(const json& e, const std::string& where, uint64_t data_size, TensorInfo* t, uint64_t* begin) {
  auto bad = [&](const std::string& msg) { fail(Code::Format, where + ": " + msg); };
  if (!e.is_object()) bad("entry is not a JSON object");
  if (!e.contains("dtype") || !e["dtype"].is_string()) bad("missing or non-string 'dtype'");
  if (!dtype_from_name(e["dtype"].get<std::string>(), &t->dtype))
    bad("unsupported dtype '" + e["dtype"].get<std::string>() + "' (supported: F32, BF16, F16, I8)");
  if (!e.contains("shape") || !e["shape"].is_array()) bad("missing or non-array 'shape'");
  if (e["shape"].size() > kMaxRank) bad("shape has " + std::to_string(e["shape"].size()) + " dimensions (at most 16)");
  uint64_t numel = 1;
  bool overflow = false;
  for (const json& d : e["shape"]) {
    uint64_t dim = 0;
    if (!to_u64(d, &dim) || dim > uint64_t(INT64_MAX)) bad("shape entry " + d.dump() + " is not a non-negative integer");
    t->shape.push_back(int64_t(dim));
    overflow = overflow || __builtin_mul_overflow(numel, dim, &numel);
  }
  uint64_t nbytes = 0;
  overflow = overflow || __builtin_mul_overflow(numel, uint64_t(dtype_size(t->dtype)), &nbytes);
  if (!e.contains("data_offsets") || !e["data_offsets"].is_array() || e["data_offsets"].size() != 2)
    bad("'data_offsets' must be an array [begin, end]");
  uint64_t b = 0, en = 0;
  if (!to_u64(e["data_offsets"][0], &b) || !to_u64(e["data_offsets"][1], &en))
    bad("'data_offsets' entries must be non-negative integers");
  if (b > en || en > data_size)
    bad("data_offsets [" + std::to_string(b) + ", " + std::to_string(en) + "] lie outside the data section (" +
        std::to_string(data_size) + " bytes); the file may be truncated");
  if (overflow) bad("shape " + e["shape"].dump() + " is too large (its byte size overflows 64 bits)");
  if (en - b != nbytes)
    bad("data_offsets span " + std::to_string(en - b) + " bytes but dtype and shape need " + std::to_string(nbytes));
  t->nbytes = nbytes;
  *begin = b;
}

}  // namespace

int64_t TensorInfo::numel() const {
  int64_t n = 1;
  for (int64_t d : shape) n *= d;
  return n;
}

std::unique_ptr<SafetensorsFile> SafetensorsFile::open(const std::string& path, const std::string& display_name) {
  Fd f;
  f.fd = ::open(path.c_str(), O_RDONLY | O_CLOEXEC);
  if (f.fd < 0)
    fail(errno == ENOENT ? Code::NotFound : Code::Io, display_name + ": cannot open: " + std::strerror(errno));
  struct stat st;
  if (::fstat(f.fd, &st) != 0) fail(Code::Io, display_name + ": cannot stat: " + std::strerror(errno));
  if (!S_ISREG(st.st_mode)) fail(Code::Format, display_name + ": not a regular file");
  const uint64_t size = uint64_t(st.st_size);
  if (size < 8) fail(Code::Format, display_name + ": too short for a safetensors file (" + std::to_string(size) + " bytes)");

  std::unique_ptr<SafetensorsFile> file(new SafetensorsFile());
  void* map = ::mmap(nullptr, size, PROT_READ, MAP_PRIVATE, f.fd, 0);
  if (map == MAP_FAILED) fail(Code::Io, display_name + ": cannot map: " + std::strerror(errno));
  file->map_ = map;
  file->map_size_ = size;
  const uint8_t* base = static_cast<const uint8_t*>(map);

  const uint64_t header_len = read_u64_le(base);
  if (header_len > size - 8)
    fail(Code::Format, display_name + ": header length " + std::to_string(header_len) + " runs past the end of the file (" +
                           std::to_string(size) + " bytes); the file is truncated or not safetensors");
  if (header_len > kMaxHeaderBytes)
    fail(Code::Format, display_name + ": header length " + std::to_string(header_len) + " exceeds the 100 MB limit");
  const char* header = reinterpret_cast<const char*>(base + 8);
  json root;
  try {
    root = json::parse(header, header + header_len);
  } catch (const json::exception& e) {
    fail(Code::Format, display_name + ": header is not valid JSON: " + e.what());
  }
  if (!root.is_object()) fail(Code::Format, display_name + ": header is not a JSON object");

  const uint8_t* data = base + 8 + header_len;
  const uint64_t data_size = size - 8 - header_len;
  std::vector<std::pair<uint64_t, const TensorInfo*>> spans;
  for (auto it = root.begin(); it != root.end(); ++it) {
    if (it.key() == "__metadata__") {
      if (!it.value().is_object()) fail(Code::Format, display_name + ": __metadata__ is not a JSON object");
      for (auto m = it.value().begin(); m != it.value().end(); ++m) {
        if (!m.value().is_string())
          fail(Code::Format, display_name + ": __metadata__ value for '" + m.key() + "' is not a string");
        file->metadata_[m.key()] = m.value().get<std::string>();
      }
      continue;
    }
    TensorInfo t;
    t.name = it.key();
    t.file = display_name;
    uint64_t begin = 0;
    const std::string where = display_name + ": tensor '" + t.name + "'";
    try {
      parse_entry(it.value(), where, data_size, &t, &begin);
    } catch (const json::exception& e) {  // defensive: a JSON access the checks missed
      fail(Code::Format, where + ": " + e.what());
    }
    t.data = data + begin;
    const TensorInfo& stored = file->tensors_[t.name] = std::move(t);
    if (stored.nbytes > 0) spans.emplace_back(begin, &stored);
  }

  std::sort(spans.begin(), spans.end(),
            [](const auto& a, const auto& b) { return a.first < b.first; });
  for (size_t i = 1; i < spans.size(); ++i) {
    const auto& prev = spans[i - 1];
    if (spans[i].first < prev.first + prev.second->nbytes)
      fail(Code::Format, display_name + ": tensors '" + prev.second->name + "' and '" + spans[i].second->name +
                             "' overlap");
  }
  return file;
}

SafetensorsFile::~SafetensorsFile() {
  if (map_) ::munmap(map_, map_size_);
}

namespace {

// A shard name from the index must name a file inside the model directory: relative, with
// no "." / ".." / empty components (symlinks are allowed: hub caches use them).
bool is_contained_relative_path(const std::string& name) {
  if (name.empty() || name.front() == '/' || name.find('\\') != std::string::npos ||
      name.find('\0') != std::string::npos)
    return false;
  size_t start = 0;
  while (start <= name.size()) {
    size_t slash = name.find('/', start);
    if (slash == std::string::npos) slash = name.size();
    std::string part = name.substr(start, slash - start);
    if (part.empty() || part == "." || part == "..") return false;
    start = slash + 1;
  }
  return true;
}

json read_index(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  if (!in) fail(Code::Io, std::string(kIndexName) + ": cannot open");
  in.seekg(0, std::ios::end);
  std::streamoff size = in.tellg();
  if (size < 0 || uint64_t(size) > kMaxIndexBytes)
    fail(Code::Format, std::string(kIndexName) + ": implausible size " + std::to_string(size));
  in.seekg(0);
  std::string text(size_t(size), '\0');
  in.read(&text[0], size);
  try {
    return json::parse(text);
  } catch (const json::exception& e) {
    fail(Code::Format, std::string(kIndexName) + ": invalid JSON: " + e.what());
  }
}

}  // namespace

std::unique_ptr<TensorStore> TensorStore::open_dir(const std::string& dir) {
  std::unique_ptr<TensorStore> store(new TensorStore());
  store->dir_ = dir;
  std::error_code ec;
  if (!fs::is_directory(dir, ec)) fail(Code::NotFound, "model directory " + dir + " does not exist");

  const std::string index_path = dir + "/" + kIndexName;
  if (fs::exists(index_path, ec)) {
    json root = read_index(index_path);
    if (!root.is_object() || !root.contains("weight_map") || !root["weight_map"].is_object())
      fail(Code::Format, std::string(kIndexName) + ": must be an object with a 'weight_map' object");
    std::map<std::string, SafetensorsFile*> shards;
    for (auto it = root["weight_map"].begin(); it != root["weight_map"].end(); ++it) {
      const std::string& name = it.key();
      if (!it.value().is_string())
        fail(Code::Format, std::string(kIndexName) + ": weight_map entry for '" + name + "' is not a string");
      const std::string shard = it.value().get<std::string>();
      if (!is_contained_relative_path(shard))
        fail(Code::Format, std::string(kIndexName) + ": shard '" + shard + "' for tensor '" + name +
                               "' is not a file name inside the model directory");
      SafetensorsFile*& file = shards[shard];
      if (!file) {
        const std::string path = dir + "/" + shard;
        if (!fs::is_regular_file(path, ec))
          fail(Code::NotFound, std::string(kIndexName) + ": shard '" + shard + "' (for tensor '" + name +
                                   "') does not exist in the model directory");
        store->files_.push_back(SafetensorsFile::open(path, shard));
        file = store->files_.back().get();
      }
      auto found = file->tensors().find(name);
      if (found == file->tensors().end())
        fail(Code::Format, std::string(kIndexName) + " says tensor '" + name + "' is in '" + shard +
                               "', but that shard does not contain it");
      store->index_[name] = &found->second;
    }
    return store;
  }

  std::vector<std::string> files;
  if (fs::is_regular_file(dir + "/model.safetensors", ec)) {
    files.push_back("model.safetensors");
  } else {
    for (const auto& entry : fs::directory_iterator(dir, ec))
      if (entry.path().extension() == ".safetensors" && entry.is_regular_file(ec))
        files.push_back(entry.path().filename().string());
    if (ec) fail(Code::Io, "cannot list model directory " + dir + ": " + ec.message());
  }
  if (files.empty())
    fail(Code::NotFound, "model directory " + dir + " has neither " + kIndexName + " nor any *.safetensors file");
  std::sort(files.begin(), files.end());
  for (const std::string& name : files) {
    store->files_.push_back(SafetensorsFile::open(dir + "/" + name, name));
    for (const auto& kv : store->files_.back()->tensors()) {
      auto inserted = store->index_.emplace(kv.first, &kv.second);
      if (!inserted.second)
        fail(Code::Format, "tensor '" + kv.first + "' appears in both '" + inserted.first->second->file + "' and '" +
                               name + "'");
    }
  }
  return store;
}

std::unique_ptr<TensorStore> TensorStore::from_tensors(std::vector<TensorInfo> tensors) {
  std::unique_ptr<TensorStore> store(new TensorStore());
  for (TensorInfo& t : tensors) {
    store->loose_.push_back(std::make_unique<TensorInfo>(std::move(t)));
    const TensorInfo* info = store->loose_.back().get();
    if (!store->index_.emplace(info->name, info).second)
      fail(Code::InvalidArgument, "tensor '" + info->name + "' given twice");
  }
  return store;
}

const TensorInfo* TensorStore::find(const std::string& name) const {
  auto it = index_.find(name);
  return it == index_.end() ? nullptr : it->second;
}

const TensorInfo& TensorStore::get(const std::string& name) const {
  const TensorInfo* t = find(name);
  if (!t) fail(Code::NotFound, "tensor '" + name + "' not found in " + (dir_.empty() ? "the model" : dir_));
  return *t;
}

std::vector<std::string> TensorStore::names() const {
  std::vector<std::string> out;
  out.reserve(index_.size());
  for (const auto& kv : index_) out.push_back(kv.first);
  return out;
}

}  // namespace mmx
