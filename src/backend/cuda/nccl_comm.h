// NcclCommunicator: the Communicator over NCCL, one per GPU rank (docs/multi-gpu.md). Built
// only when CMake finds NCCL (MINIMAX_HAVE_NCCL). Collectives are enqueued on the caller's
// stream (the rank's backend stream) and return at once; the calling thread must have the
// rank's device current. Two ways to build a group:
//  - one process, one thread per GPU: create_local(devices) (ncclCommInitAll);
//  - one process per node: every process calls create_ranks(id, world, first_rank, devices)
//    with the same NcclId, made once by unique_id() on one process and passed to the others
//    by the host (MPI broadcast, a shared file, the launcher's environment).
#pragma once
#ifdef MINIMAX_HAVE_NCCL
#include <nccl.h>

#include <atomic>
#include <memory>
#include <vector>

#include "backend/comm.h"

namespace mmx::cuda {

// The bytes that join processes into one NCCL group. Plain data: send it as NCCL_UNIQUE_ID_BYTES bytes.
struct NcclId {
  char bytes[NCCL_UNIQUE_ID_BYTES];
};

class NcclCommunicator final : public Communicator {
 public:
  ~NcclCommunicator() override;  // ncclCommDestroy, or nothing after abort()
  NcclCommunicator(const NcclCommunicator&) = delete;
  NcclCommunicator& operator=(const NcclCommunicator&) = delete;

  // Rank i on devices[i], all in this process. Devices must be distinct.
  static std::vector<std::unique_ptr<NcclCommunicator>> create_local(const std::vector<int>& devices);
  // A fresh group id (ncclGetUniqueId); call on one process only.
  static NcclId unique_id();
  // This process's ranks first_rank + i on devices[i], of a group of `world` ranks across
  // processes. Blocks until every rank of the group has joined.
  static std::vector<std::unique_ptr<NcclCommunicator>> create_ranks(const NcclId& id, int world, int first_rank,
                                                                     const std::vector<int>& devices);

  int rank() const override { return rank_; }
  int world() const override { return world_; }
  int device() const { return device_; }
  // stream: the cudaStream_t to enqueue on (nullptr: the legacy default stream).
  void all_reduce_sum(void* data, int64_t n, DType dtype, void* stream) override;
  void all_gather(const void* send, void* recv, int64_t n, DType dtype, void* stream) override;
  // ncclCommAbort: cancels this rank's pending NCCL work so peers blocked on it fail instead of
  // hanging. Call from the rank's own thread, or from a watchdog thread once the rank's
  // thread no longer enqueues (NCCL communicators are not thread-safe otherwise).
  void abort() override;

 private:
  NcclCommunicator(ncclComm_t comm, int rank, int world, int device)
      : comm_(comm), rank_(rank), world_(world), device_(device) {}
  void check_usable(const char* op) const;

  ncclComm_t comm_;
  int rank_, world_, device_;
  std::atomic<bool> aborted_{false};
};

}  // namespace mmx::cuda

#endif  // MINIMAX_HAVE_NCCL
