// NcclCommunicator: group creation and the two collectives over NCCL.
#include "backend/cuda/nccl_comm.h"

#ifdef MINIMAX_HAVE_NCCL
#include <cuda_runtime.h>

#include <cstring>
#include <set>
#include <string>

#include "core/error.h"
#include "kernels/cuda_check.h"

namespace mmx::cuda {
namespace {

void nccl_check(ncclResult_t r, const char* what, ncclComm_t comm = nullptr) {
  if (r == ncclSuccess) return;
  std::string msg = std::string("nccl: ") + what + " failed: " + ncclGetErrorString(r);
  const char* last = ncclGetLastError(comm);
  if (last && *last) msg += std::string(" (") + last + ")";
  // A wrong call from us is a bug; anything else (network, peer, device) is a device failure.
  fail(r == ncclInvalidArgument || r == ncclInvalidUsage ? Code::Internal : Code::Device, msg);
}

ncclDataType_t nccl_type(DType t) {
  switch (t) {
    case DType::F32: return ncclFloat32;
    case DType::BF16: return ncclBfloat16;
    case DType::F16: return ncclFloat16;
    default: fail(Code::Unsupported, std::string("nccl: no collectives over ") + dtype_name(t));
  }
}

void check_devices(const std::vector<int>& devices) {
  MMX_CHECK(!devices.empty(), Code::InvalidArgument, "nccl: no devices given");
  MMX_CHECK(std::set<int>(devices.begin(), devices.end()).size() == devices.size(), Code::InvalidArgument,
            "nccl: a device appears twice (one rank per GPU)");
}

}  // namespace

NcclCommunicator::~NcclCommunicator() {
  if (aborted_.load()) return;
  cudaSetDevice(device_);
  ncclCommDestroy(comm_);  // waits for this rank's pending collectives
}

std::vector<std::unique_ptr<NcclCommunicator>> NcclCommunicator::create_local(const std::vector<int>& devices) {
  check_devices(devices);
  std::vector<ncclComm_t> comms(devices.size());
  nccl_check(ncclCommInitAll(comms.data(), int(devices.size()), devices.data()), "ncclCommInitAll");
  std::vector<std::unique_ptr<NcclCommunicator>> out;
  for (size_t i = 0; i < devices.size(); ++i)
    out.emplace_back(new NcclCommunicator(comms[i], int(i), int(devices.size()), devices[i]));
  return out;
}

NcclId NcclCommunicator::unique_id() {
  ncclUniqueId id;
  nccl_check(ncclGetUniqueId(&id), "ncclGetUniqueId");
  NcclId out;
  static_assert(sizeof(out.bytes) == sizeof(id.internal), "ncclUniqueId size");
  std::memcpy(out.bytes, id.internal, sizeof(out.bytes));
  return out;
}

std::vector<std::unique_ptr<NcclCommunicator>> NcclCommunicator::create_ranks(const NcclId& id, int world,
                                                                              int first_rank,
                                                                              const std::vector<int>& devices) {
  check_devices(devices);
  MMX_CHECK(world >= 1 && first_rank >= 0 && first_rank + int(devices.size()) <= world, Code::InvalidArgument,
            "nccl: ranks " + std::to_string(first_rank) + ".." + std::to_string(first_rank + int(devices.size()) - 1) +
                " do not fit a group of " + std::to_string(world));
  ncclUniqueId nid;
  std::memcpy(nid.internal, id.bytes, sizeof(nid.internal));
  std::vector<ncclComm_t> comms(devices.size());
  // Several ranks from one thread must be created inside one group, or the first blocks for the rest.
  nccl_check(ncclGroupStart(), "ncclGroupStart");
  for (size_t i = 0; i < devices.size(); ++i) {
    MMX_CUDA(cudaSetDevice(devices[i]));
    nccl_check(ncclCommInitRank(&comms[i], world, nid, first_rank + int(i)), "ncclCommInitRank");
  }
  nccl_check(ncclGroupEnd(), "ncclGroupEnd (communicator creation)");
  std::vector<std::unique_ptr<NcclCommunicator>> out;
  for (size_t i = 0; i < devices.size(); ++i)
    out.emplace_back(new NcclCommunicator(comms[i], first_rank + int(i), world, devices[i]));
  return out;
}

void NcclCommunicator::check_usable(const char* op) const {
  MMX_CHECK(!aborted_.load(), Code::State, std::string("nccl: ") + op + " on an aborted communicator");
}

void NcclCommunicator::all_reduce_sum(void* data, int64_t n, DType dtype, void* stream) {
  check_usable("all_reduce_sum");
  MMX_CHECK(n >= 0, Code::InvalidArgument, "nccl: all_reduce_sum of a negative count");
  nccl_check(ncclAllReduce(data, data, size_t(n), nccl_type(dtype), ncclSum, comm_, cudaStream_t(stream)),
             "ncclAllReduce", comm_);
}

void NcclCommunicator::all_gather(const void* send, void* recv, int64_t n, DType dtype, void* stream) {
  check_usable("all_gather");
  MMX_CHECK(n >= 0, Code::InvalidArgument, "nccl: all_gather of a negative count");
  nccl_check(ncclAllGather(send, recv, size_t(n), nccl_type(dtype), comm_, cudaStream_t(stream)),
             "ncclAllGather", comm_);
}

void NcclCommunicator::abort() {
  if (aborted_.exchange(true)) return;
  ncclCommAbort(comm_);
}

}  // namespace mmx::cuda

#endif  // MINIMAX_HAVE_NCCL
