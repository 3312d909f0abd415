// In-process communicators: `world` ranks as threads of one process exchanging host buffers
// through a shared, barrier-synchronised table of pointers. For the CPU backend (tests, and
// multi-rank runs on one machine without NCCL); every rank runs on its own thread.
#pragma once
#include <condition_variable>
#include <cstdint>
#include <memory>
#include <mutex>
#include <vector>

#include "backend/comm.h"

namespace mmx::cpu {

class InprocGroup;

class InprocCommunicator final : public Communicator {
 public:
  int rank() const override { return rank_; }
  int world() const override;
  // Sums in rank order 0, 1, ... (fp32 accumulation for BF16), so every rank gets the same bits.
  void all_reduce_sum(void* data, int64_t n, DType dtype, void* stream) override;
  void all_gather(const void* send, void* recv, int64_t n, DType dtype, void* stream) override;
  void abort() override;

 private:
  friend class InprocGroup;
  InprocCommunicator(std::shared_ptr<InprocGroup> group, int rank) : group_(std::move(group)), rank_(rank) {}
  std::shared_ptr<InprocGroup> group_;
  int rank_;
};

// The shared part of one group. make() returns one communicator per rank; hand each to the
// thread that runs that rank. A collective that finds the group aborted, or ranks that
// disagree on its size or type, throws (on every rank) instead of waiting.
class InprocGroup {
 public:
  static std::vector<std::unique_ptr<InprocCommunicator>> make(int world);
  int world() const { return world_; }

 private:
  friend class InprocCommunicator;
  explicit InprocGroup(int world);
  // Blocks until all ranks have arrived; throws Code::State if the group was aborted.
  void barrier();
  void abort();
  // One rank's part of a collective, published for the others between two barriers.
  struct Slot {
    const void* send = nullptr;
    void* recv = nullptr;
    int64_t n = 0;
    DType dtype = DType::F32;
    int op = 0;
  };
  // Publishes this rank's slot, waits for all, and checks that every rank called the same op
  // with the same size and type.
  void exchange(int rank, const Slot& mine, const char* op_name);

  const int world_;
  std::vector<Slot> slots_;
  std::mutex mu_;
  std::condition_variable cv_;
  int arrived_ = 0;
  uint64_t generation_ = 0;
  bool aborted_ = false;
};

}  // namespace mmx::cpu
