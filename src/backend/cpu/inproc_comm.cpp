// In-process collectives: every rank publishes its buffer, waits at a barrier, does its share
// of the work reading (and writing) the others' buffers directly, and waits again so that no
// buffer is reused while another rank still touches it.
#include "backend/cpu/inproc_comm.h"

#include <cstring>
#include <string>

#include "core/error.h"

namespace mmx::cpu {
namespace {

enum Op : int { kAllReduce = 1, kAllGather = 2 };

void check_dtype(DType t, const char* op) {
  MMX_CHECK(t == DType::F32 || t == DType::BF16, Code::Unsupported,
            std::string("in-process communicator: ") + op + " supports F32 and BF16, not " + dtype_name(t));
}

float load(const void* p, int64_t i, DType t) {
  return t == DType::F32 ? static_cast<const float*>(p)[i] : bf16_to_f32(static_cast<const uint16_t*>(p)[i]);
}

void store(void* p, int64_t i, DType t, float v) {
  if (t == DType::F32)
    static_cast<float*>(p)[i] = v;
  else
    static_cast<uint16_t*>(p)[i] = f32_to_bf16(v);
}

}  // namespace

std::vector<std::unique_ptr<InprocCommunicator>> InprocGroup::make(int world) {
  MMX_CHECK(world >= 1, Code::InvalidArgument,
            "in-process communicator: a group needs at least one rank, got " + std::to_string(world));
  std::shared_ptr<InprocGroup> group(new InprocGroup(world));
  std::vector<std::unique_ptr<InprocCommunicator>> comms;
  for (int r = 0; r < world; ++r) comms.emplace_back(new InprocCommunicator(group, r));
  return comms;
}

InprocGroup::InprocGroup(int world) : world_(world), slots_(size_t(world)) {}

void InprocGroup::barrier() {
  std::unique_lock<std::mutex> lock(mu_);
  MMX_CHECK(!aborted_, Code::State, "in-process communicator: the group was aborted by a failed rank");
  const uint64_t gen = generation_;
  if (++arrived_ == world_) {
    arrived_ = 0;
    ++generation_;
    cv_.notify_all();
    return;
  }
  cv_.wait(lock, [&] { return generation_ != gen || aborted_; });
  MMX_CHECK(generation_ != gen, Code::State, "in-process communicator: the group was aborted by a failed rank");
}

void InprocGroup::abort() {
  std::lock_guard<std::mutex> lock(mu_);
  aborted_ = true;
  cv_.notify_all();
}

void InprocGroup::exchange(int rank, const Slot& mine, const char* op_name) {
  slots_[size_t(rank)] = mine;
  barrier();
  // Every rank sees the same table, so a mismatch throws on all of them alike.
  for (const Slot& s : slots_) {
    if (s.op == mine.op && s.n == mine.n && s.dtype == mine.dtype) continue;
    abort();
    fail(Code::Internal, std::string("in-process communicator: ") + op_name +
                             ": ranks called different collectives or sizes (a rank ran another step?)");
  }
}

int InprocCommunicator::world() const { return group_->world(); }

void InprocCommunicator::abort() { group_->abort(); }

void InprocCommunicator::all_reduce_sum(void* data, int64_t n, DType dtype, void*) {
  check_dtype(dtype, "all_reduce_sum");
  MMX_CHECK(n >= 0 && (n == 0 || data), Code::InvalidArgument, "in-process communicator: all_reduce_sum of no buffer");
  InprocGroup& g = *group_;
  g.exchange(rank_, {data, data, n, dtype, kAllReduce}, "all_reduce_sum");
  // This rank owns elements [b, e) of every rank's buffer: nobody else reads or writes them.
  const int64_t R = g.world_, b = n * rank_ / R, e = n * (rank_ + 1) / R;
  for (int64_t i = b; i < e; ++i) {
    float sum = load(g.slots_[0].recv, i, dtype);
    for (int64_t r = 1; r < R; ++r) sum += load(g.slots_[size_t(r)].recv, i, dtype);
    for (int64_t r = 0; r < R; ++r) store(g.slots_[size_t(r)].recv, i, dtype, sum);
  }
  g.barrier();
}

void InprocCommunicator::all_gather(const void* send, void* recv, int64_t n, DType dtype, void*) {
  check_dtype(dtype, "all_gather");
  MMX_CHECK(n >= 0 && (n == 0 || (send && recv)), Code::InvalidArgument,
            "in-process communicator: all_gather of no buffer");
  InprocGroup& g = *group_;
  g.exchange(rank_, {send, recv, n, dtype, kAllGather}, "all_gather");
  const size_t bytes = size_t(n) * dtype_size(dtype);
  for (int r = 0; r < g.world_; ++r)
    std::memcpy(static_cast<uint8_t*>(recv) + size_t(r) * bytes, g.slots_[size_t(r)].send, bytes);
  g.barrier();  // the others' send buffers stay untouched until everyone has copied them
}

}  // namespace mmx::cpu
