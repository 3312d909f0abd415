#include "engine/prefix.h"

#include <cerrno>
#include <cstdio>
#include <cstring>
#include <fstream>
#include <iterator>

#include "core/error.h"
#include "core/log.h"

namespace mmx {

// Prefix file, all integers little-endian:
//   offset 0  char[8]  magic "MMXPREFX"
//          8  u32      format version (kPrefixFormatVersion)
//         12  u32      F: byte length of the model fingerprint (at most kMaxFingerprint)
//         16  F bytes  the model fingerprint (Model::fingerprint, hex text)
//             u64      N: prompt tokens the prefix holds
//             i32[N]   the tokens
//             u64      S: byte length of the state image
//             S bytes  Backend::save_state image (backend/state_format.h)
//             u64      checksum64 of every byte before it
// Loading checks structure, then the checksum (so damage anywhere reads as damage), then the
// fingerprint (another model), then the tokens and the state image against the model.
namespace {

constexpr char kMagic[8] = {'M', 'M', 'X', 'P', 'R', 'E', 'F', 'X'};
constexpr uint32_t kPrefixFormatVersion = 1;
constexpr uint32_t kMaxFingerprint = 256;

// A fast 64-bit checksum (multiply-rotate rounds over 8-byte words, xxhash64 style): it
// detects truncation and damage; it is not a cryptographic signature.
uint64_t checksum64(const uint8_t* p, size_t n) {
  const uint64_t k1 = 0x9e3779b185ebca87ull, k2 = 0xc2b2ae3d27d4eb4full;
  uint64_t h = 0x27d4eb2f165667c5ull ^ (uint64_t(n) * k1);
  size_t i = 0;
  for (; i + 8 <= n; i += 8) {
    uint64_t w;
    std::memcpy(&w, p + i, 8);
    w *= k2;
    w = (w << 31) | (w >> 33);
    w *= k1;
    h ^= w;
    h = ((h << 27) | (h >> 37)) * k1 + 0x85ebca77c2b2ae63ull;
  }
  for (; i < n; ++i) {
    h ^= uint64_t(p[i]) * 0x165667b19e3779f9ull;
    h = ((h << 11) | (h >> 53)) * k1;
  }
  h ^= h >> 33;
  h *= k2;
  h ^= h >> 29;
  h *= 0x165667b19e3779f9ull;
  h ^= h >> 32;
  return h;
}

void put_u32(std::vector<uint8_t>& b, uint32_t v) {
  for (int i = 0; i < 4; ++i) b.push_back(uint8_t(v >> (8 * i)));
}
void put_u64(std::vector<uint8_t>& b, uint64_t v) {
  for (int i = 0; i < 8; ++i) b.push_back(uint8_t(v >> (8 * i)));
}

// Bounds-checked little-endian reader over a file image; running out is Code::Format.
class Reader {
 public:
  Reader(const std::vector<uint8_t>& b, const std::string& path) : b_(b), path_(path) {}
  const uint8_t* take(uint64_t n, const char* what) {
    if (n > b_.size() - at_)
      fail(Code::Format, "prefix file " + path_ + " is truncated (in " + what + ")");
    const uint8_t* p = b_.data() + at_;
    at_ += size_t(n);
    return p;
  }
  uint32_t u32(const char* what) {
    const uint8_t* p = take(4, what);
    uint32_t v = 0;
    for (int i = 0; i < 4; ++i) v |= uint32_t(p[i]) << (8 * i);
    return v;
  }
  uint64_t u64(const char* what) {
    const uint8_t* p = take(8, what);
    uint64_t v = 0;
    for (int i = 0; i < 8; ++i) v |= uint64_t(p[i]) << (8 * i);
    return v;
  }
  size_t offset() const { return at_; }
  size_t left() const { return b_.size() - at_; }

 private:
  const std::vector<uint8_t>& b_;
  const std::string& path_;
  size_t at_ = 0;
};

std::vector<uint8_t> read_whole_file(const std::string& path) {
  std::ifstream f(path, std::ios::binary);
  if (!f) {
    int err = errno;
    fail(err == ENOENT ? Code::NotFound : Code::Io,
         "cannot open prefix file " + path + ": " + std::strerror(err));
  }
  std::vector<uint8_t> bytes((std::istreambuf_iterator<char>(f)), std::istreambuf_iterator<char>());
  MMX_CHECK(!f.bad(), Code::Io, "cannot read prefix file " + path);
  return bytes;
}

}  // namespace

Prefix::Prefix(std::shared_ptr<ModelRuntime> runtime, std::shared_ptr<StateBudget> budget,
               std::vector<int32_t> tokens, std::unique_ptr<SeqState> state, uint64_t state_bytes)
    : runtime_(std::move(runtime)),
      budget_(std::move(budget)),
      tokens_(std::move(tokens)),
      state_(std::move(state)),
      state_bytes_(state_bytes) {}

Prefix::~Prefix() {
  {
    // States live in backend memory; the backend is only touched under its step mutex.
    std::lock_guard<std::mutex> lock(runtime_->step_mutex());
    state_.reset();
  }
  budget_->release_prefix(state_bytes_);
}

std::unique_ptr<SeqState> Prefix::clone_state_locked() const {
  return runtime_->backend().clone_state(*state_);
}

void Prefix::save(const std::string& path) const {
  std::vector<uint8_t> image;
  {
    std::lock_guard<std::mutex> lock(runtime_->step_mutex());
    runtime_->backend().save_state(*state_, &image);
  }
  const std::string& fp = runtime_->model().fingerprint();
  MMX_CHECK(fp.size() <= kMaxFingerprint, Code::Internal, "model fingerprint is too long");
  std::vector<uint8_t> head;
  head.insert(head.end(), kMagic, kMagic + 8);
  put_u32(head, kPrefixFormatVersion);
  put_u32(head, uint32_t(fp.size()));
  head.insert(head.end(), fp.begin(), fp.end());
  put_u64(head, tokens_.size());
  for (int32_t t : tokens_) put_u32(head, uint32_t(t));
  put_u64(head, image.size());
  // The checksum covers head then image; hash them as one buffer.
  head.insert(head.end(), image.begin(), image.end());
  image.clear();
  image.shrink_to_fit();
  put_u64(head, checksum64(head.data(), head.size()));

  // Write beside the target and rename, so a failed save never leaves a half-written file
  // under the name a later load would read.
  const std::string tmp = path + ".partial";
  {
    std::ofstream f(tmp, std::ios::binary | std::ios::trunc);
    if (!f) fail(Code::Io, "cannot create prefix file " + tmp + ": " + std::strerror(errno));
    f.write(reinterpret_cast<const char*>(head.data()), std::streamsize(head.size()));
    f.close();
    if (!f) {
      std::remove(tmp.c_str());
      fail(Code::Io, "cannot write prefix file " + tmp);
    }
  }
  if (std::rename(tmp.c_str(), path.c_str()) != 0) {
    int err = errno;
    std::remove(tmp.c_str());
    fail(Code::Io, "cannot move prefix file into place at " + path + ": " + std::strerror(err));
  }
}

std::shared_ptr<Prefix> Prefix::load(std::shared_ptr<ModelRuntime> runtime,
                                     std::shared_ptr<StateBudget> budget, const std::string& path) {
  const std::vector<uint8_t> bytes = read_whole_file(path);
  Reader r(bytes, path);
  MMX_CHECK(bytes.size() >= 8 && std::memcmp(bytes.data(), kMagic, 8) == 0, Code::Format,
            "file " + path + " is not a libminimax prefix file (bad magic)");
  r.take(8, "magic");
  uint32_t version = r.u32("version");
  MMX_CHECK(version == kPrefixFormatVersion, Code::Format,
            "prefix file " + path + " has format version " + std::to_string(version) +
                "; this library reads version " + std::to_string(kPrefixFormatVersion));
  uint32_t fp_len = r.u32("fingerprint length");
  MMX_CHECK(fp_len <= kMaxFingerprint, Code::Format,
            "prefix file " + path + " is damaged: fingerprint length " + std::to_string(fp_len));
  const uint8_t* fp = r.take(fp_len, "fingerprint");
  uint64_t n_tokens = r.u64("token count");
  MMX_CHECK(n_tokens <= r.left() / 4, Code::Format,
            "prefix file " + path + " is truncated or damaged: it claims " + std::to_string(n_tokens) +
                " tokens");
  const uint8_t* token_bytes = r.take(n_tokens * 4, "tokens");
  uint64_t image_size = r.u64("state size");
  const uint8_t* image = r.take(image_size, "state");
  const size_t checked = r.offset();
  uint64_t stored_sum = r.u64("checksum");
  MMX_CHECK(r.left() == 0, Code::Format,
            "prefix file " + path + " has " + std::to_string(r.left()) + " unexpected bytes at its end");
  MMX_CHECK(checksum64(bytes.data(), checked) == stored_sum, Code::Format,
            "prefix file " + path + " is damaged (checksum mismatch)");

  const std::string file_fp(reinterpret_cast<const char*>(fp), fp_len);
  const std::string& model_fp = runtime->model().fingerprint();
  MMX_CHECK(file_fp == model_fp, Code::InvalidArgument,
            "prefix file " + path + " was made with another model (fingerprint " + file_fp +
                ", this model " + model_fp + ")");

  std::vector<int32_t> tokens(static_cast<size_t>(n_tokens));
  const int64_t vocab = runtime->config().vocab;
  for (size_t i = 0; i < tokens.size(); ++i) {
    uint32_t u = 0;
    for (int k = 0; k < 4; ++k) u |= uint32_t(token_bytes[4 * i + k]) << (8 * k);
    tokens[i] = int32_t(u);
    MMX_CHECK(tokens[i] >= 0 && tokens[i] < vocab, Code::Format,
              "prefix file " + path + " holds token id " + std::to_string(tokens[i]) +
                  " outside the vocabulary");
  }

  const uint64_t state_bytes = runtime->backend().state_bytes(int64_t(n_tokens));
  MMX_CHECK(budget->try_charge_prefix(state_bytes), Code::Capacity,
            "prefix file " + path + " needs " + std::to_string(state_bytes) +
                " bytes of state; the context's state budget (MMX_CTX_OPT_KV_MEMORY_BYTES = " +
                std::to_string(budget->limit()) + ") has " +
                std::to_string(budget->room_beside_prefixes()) + " left beside its other prefixes");
  std::unique_ptr<SeqState> state;
  try {
    {
      std::lock_guard<std::mutex> lock(runtime->step_mutex());
      state = runtime->backend().load_state(image, size_t(image_size));
    }
    MMX_CHECK(state->tokens == int64_t(n_tokens), Code::Format,
              "prefix file " + path + ": the state holds " + std::to_string(state->tokens) +
                  " tokens but the file lists " + std::to_string(n_tokens));
    MMX_LOG_DEBUG("loaded prefix of " + std::to_string(n_tokens) + " tokens from " + path);
    return std::make_shared<Prefix>(runtime, budget, std::move(tokens), std::move(state), state_bytes);
  } catch (...) {
    {
      std::lock_guard<std::mutex> lock(runtime->step_mutex());
      state.reset();
    }
    budget->release_prefix(state_bytes);
    throw;
  }
}

}  // namespace mmx
