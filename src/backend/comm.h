// Communicator: the collectives a sharded forward pass needs (docs/multi-gpu.md). A group of
// `world` ranks, each driving one Backend; every rank calls the same collectives in the same
// order with the same sizes. Implementations: InprocCommunicator (CPU backend, one thread per
// rank, src/backend/cpu/inproc_comm.h) and NcclCommunicator (CUDA, src/backend/cuda/nccl_comm.h).
#pragma once
#include <cstdint>

#include "core/dtype.h"

namespace mmx {

class Communicator {
 public:
  virtual ~Communicator() = default;
  virtual int rank() const = 0;
  virtual int world() const = 0;

  // In place: data[i] := sum over ranks of data[i], for n elements of `dtype` (F32 or BF16).
  // Every rank ends with the same values, so replicated computations that follow (norms,
  // routing) stay identical across ranks. `stream` is the cudaStream_t a device
  // implementation enqueues on (it returns once queued; data is device memory); host
  // implementations ignore it and return when the sum is in place.
  virtual void all_reduce_sum(void* data, int64_t n, DType dtype, void* stream) = 0;
  // recv[r*n, (r+1)*n) := rank r's send[0, n) on every rank. send and recv do not overlap.
  virtual void all_gather(const void* send, void* recv, int64_t n, DType dtype, void* stream) = 0;
  // Breaks the group after a failure on this rank, so that the other ranks do not wait
  // forever for it: their pending and later collectives throw. Safe from any thread.
  virtual void abort() = 0;
};

}  // namespace mmx
