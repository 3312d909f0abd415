// CpuBackend's sharding ops: the rank's place in the group and the two collectives the
// sharded forward pass needs (docs/multi-gpu.md). prepare() takes the rank's weight blocks.
#include <cmath>
#include <string>
#include <vector>

#include "backend/comm.h"
#include "backend/cpu/cpu_backend.h"
#include "core/error.h"

namespace mmx::cpu {

void CpuBackend::set_shard(const Shard& shard, Communicator* comm) {
  MMX_CHECK(model_ == nullptr, Code::State, "cpu backend: set_shard after prepare()");
  MMX_CHECK(shard.world >= 1 && shard.rank >= 0 && shard.rank < shard.world, Code::InvalidArgument,
            "cpu backend: set_shard: rank " + std::to_string(shard.rank) + " of world " +
                std::to_string(shard.world) + " is not a valid rank");
  if (shard.world > 1)
    MMX_CHECK(comm && comm->world() == shard.world && comm->rank() == shard.rank, Code::InvalidArgument,
              "cpu backend: set_shard: rank " + std::to_string(shard.rank) + " of " + std::to_string(shard.world) +
                  " needs a communicator for that rank of a group of that size");
  shard_ = shard;
  comm_ = comm;
}

void CpuBackend::all_reduce_sum(Act x) {
  require_prepared("all_reduce_sum");
  MMX_CHECK(comm_ != nullptr, Code::State, "cpu backend: all_reduce_sum without a communicator (set_shard)");
  comm_->all_reduce_sum(x.data, x.rows * x.cols, DType::F32, nullptr);
}

void CpuBackend::rms_norm_split(Act x, const WeightRef& w, double eps, Act out) {
  require_prepared("rms_norm_split");
  MMX_CHECK(comm_ != nullptr, Code::State, "cpu backend: rms_norm_split without a communicator (set_shard)");
  const auto [wr, wc] = local_shape(w);
  MMX_CHECK(x.cols == wr * wc && out.rows == x.rows && out.cols == x.cols, Code::InvalidArgument,
            "cpu backend: rms_norm_split: input [" + std::to_string(x.rows) + ", " + std::to_string(x.cols) +
                "] does not fit this rank's " + std::to_string(wr * wc) + " values of '" + w.name + "'");
  const float* g = weight(w);
  const int64_t n = x.cols;
  const float* in = static_cast<const float*>(x.data);
  float* y = static_cast<float*>(out.data);
  // Each rank's sum of squares (fp64 locally, like rms_norm) is summed over ranks in fp32.
  std::vector<float> ss(static_cast<size_t>(x.rows));
  for_rows(x.rows, n, [&](int64_t b, int64_t e) {
    for (int64_t r = b; r < e; ++r) {
      double acc = 0.0;
      for (int64_t i = 0; i < n; ++i) acc += double(in[r * n + i]) * double(in[r * n + i]);
      ss[size_t(r)] = float(acc);
    }
  });
  comm_->all_reduce_sum(ss.data(), x.rows, DType::F32, nullptr);
  const double total = double(w.numel());  // columns over all ranks
  for_rows(x.rows, n, [&](int64_t b, int64_t e) {
    for (int64_t r = b; r < e; ++r) {
      const float inv = float(1.0 / std::sqrt(double(ss[size_t(r)]) / total + eps));
      for (int64_t i = 0; i < n; ++i) y[r * n + i] = g[i] * (in[r * n + i] * inv);
    }
  });
}

}  // namespace mmx::cpu
