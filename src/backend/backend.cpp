// create_backend: picks the implementation named by BackendOptions::kind.
#include "backend/backend.h"

#include "backend/cpu/cpu_backend.h"
#include "core/error.h"

namespace mmx {

#ifdef MINIMAX_HAVE_CUDA
// Defined by the CUDA backend (src/backend/cuda/).
std::unique_ptr<Backend> create_cuda_backend(const BackendOptions& opts);
int cuda_device_count_impl();
#endif

std::unique_ptr<Backend> create_backend(const BackendOptions& opts) {
  MMX_CHECK(opts.threads >= 0, Code::InvalidArgument,
            "backend threads must be >= 0 (0 = all cores), got " + std::to_string(opts.threads));
  if (opts.kind == "cpu") return create_cpu_backend(opts);
  if (opts.kind == "cuda") {
#ifdef MINIMAX_HAVE_CUDA
    return create_cuda_backend(opts);
#else
    fail(Code::Unsupported, "backend \"cuda\": this build of libminimax has no CUDA backend");
#endif
  }
  fail(Code::InvalidArgument, "unknown backend kind \"" + opts.kind + "\" (expected \"cpu\" or \"cuda\")");
}

void Backend::set_shard(const Shard& shard, Communicator* comm) {
  MMX_CHECK(shard.world == 1, Code::Unsupported,
            "the " + name() + " backend does not support sharding (world " + std::to_string(shard.world) + ")");
}

void Backend::all_reduce_sum(Act) {
  fail(Code::Unsupported, "the " + name() + " backend does not support sharding (all_reduce_sum)");
}

void Backend::rms_norm_split(Act, const WeightRef&, double, Act) {
  fail(Code::Unsupported, "the " + name() + " backend does not support sharding (rms_norm_split)");
}

int cuda_device_count() {
#ifdef MINIMAX_HAVE_CUDA
  return cuda_device_count_impl();
#else
  return 0;
#endif
}

}  // namespace mmx
