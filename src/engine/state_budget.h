// The bytes of sequence state one context may hold (MMX_CTX_OPT_KV_MEMORY_BYTES) and what is
// charged against them: the reservations of running sequences and the states of the prefixes
// the context made or loaded. Shared (shared_ptr) by the engine and those prefixes, since a
// prefix may outlive its context and releases its charge when it goes.
#pragma once
#include <cstdint>
#include <mutex>

namespace mmx {

class StateBudget {
 public:
  explicit StateBudget(uint64_t limit) : limit_(limit) {}

  uint64_t limit() const { return limit_; }
  uint64_t in_use() const {
    std::lock_guard<std::mutex> lock(mu_);
    return sequences_ + prefixes_;
  }
  uint64_t prefix_bytes() const {
    std::lock_guard<std::mutex> lock(mu_);
    return prefixes_;
  }
  // Room left for sequences once the prefixes are paid for (what a new request can ever get
  // while the current prefixes live).
  uint64_t room_beside_prefixes() const {
    std::lock_guard<std::mutex> lock(mu_);
    return prefixes_ >= limit_ ? 0 : limit_ - prefixes_;
  }

  // A sequence's worst-case state; false (nothing charged) when it does not fit now.
  bool try_reserve_sequence(uint64_t bytes) {
    std::lock_guard<std::mutex> lock(mu_);
    if (sequences_ + prefixes_ + bytes > limit_) return false;
    sequences_ += bytes;
    return true;
  }
  void release_sequence(uint64_t bytes) {
    std::lock_guard<std::mutex> lock(mu_);
    sequences_ -= bytes;
  }
  // A finished MAKE_PREFIX sequence hands its reservation over to the prefix it became: the
  // prefix is charged its actual size and the rest of the reservation is freed.
  void convert_to_prefix(uint64_t reserved, uint64_t prefix_bytes) {
    std::lock_guard<std::mutex> lock(mu_);
    sequences_ -= reserved;
    prefixes_ += prefix_bytes;
  }
  // A loaded prefix: charged when it fits beside the other prefixes (running sequences will
  // shrink; new admissions wait until the total is back under the limit).
  bool try_charge_prefix(uint64_t bytes) {
    std::lock_guard<std::mutex> lock(mu_);
    if (prefixes_ + bytes > limit_) return false;
    prefixes_ += bytes;
    return true;
  }
  void release_prefix(uint64_t bytes) {
    std::lock_guard<std::mutex> lock(mu_);
    prefixes_ -= bytes;
  }

 private:
  const uint64_t limit_;
  mutable std::mutex mu_;
  uint64_t sequences_ = 0, prefixes_ = 0;
};

}  // namespace mmx
