// Multi-GPU: the NCCL communicator over every GPU present (one thread per GPU), and tensor- /
// expert-parallel forward passes over 2, 4 and 8 GPUs against the single-GPU logits. The
// communicator tests need one GPU or more, the forward passes two or more; they skip
// otherwise. The forward passes also skip while the CUDA backend has no sharding support
// (Backend::set_shard answers Code::Unsupported), naming it.
#include <gtest/gtest.h>

#include <cuda_runtime.h>

#include <cmath>
#include <cstdio>
#include <exception>
#include <random>
#include <thread>

#include "backend/shard.h"
#include "core/error.h"
#include "cuda/cuda_test_helpers.h"
#include "kernels/cuda_check.h"
#include "model/forward.h"

#ifdef MINIMAX_HAVE_NCCL
#include "backend/cuda/nccl_comm.h"

namespace {

using mmx::cuda::NcclCommunicator;

std::vector<int> first_devices(int n) {
  std::vector<int> d;
  for (int i = 0; i < n; ++i) d.push_back(i);
  return d;
}

// Runs fn(rank) on one thread per communicator with that rank's device current; a rank that
// throws aborts every communicator so that no peer waits forever, then the error is rethrown.
template <class Fn>
void on_each_gpu(std::vector<std::unique_ptr<NcclCommunicator>>& comms, Fn fn) {
  std::vector<std::exception_ptr> errors(comms.size());
  std::vector<std::thread> threads;
  for (size_t i = 0; i < comms.size(); ++i)
    threads.emplace_back([&, i] {
      try {
        MMX_CUDA(cudaSetDevice(comms[i]->device()));
        fn(int(i));
      } catch (...) {
        errors[i] = std::current_exception();
        for (auto& c : comms) c->abort();  // a watchdog's abort: peers may be blocked on device work
      }
    });
  for (auto& t : threads) t.join();
  for (auto& e : errors)
    if (e) std::rethrow_exception(e);
}

// Checks the collectives of one group: every rank must see the same sums and gathered rows.
void check_collectives(std::vector<std::unique_ptr<NcclCommunicator>>& comms) {
  const int world = int(comms.size());
  constexpr int64_t kN = 1000;
  std::vector<std::vector<float>> sums(comms.size()), gathered(comms.size());
  std::vector<std::vector<uint16_t>> bf(comms.size());
  on_each_gpu(comms, [&](int r) {
    cudaStream_t stream;
    MMX_CUDA(cudaStreamCreate(&stream));
    std::vector<float> host(kN);
    for (int64_t i = 0; i < kN; ++i) host[size_t(i)] = float(r + 1) * float(i % 17);
    std::vector<uint16_t> hb(kN, mmx::f32_to_bf16(float(r + 1)));
    float *d = nullptr, *g = nullptr;
    uint16_t* b = nullptr;
    MMX_CUDA(cudaMalloc(&d, kN * sizeof(float)));
    MMX_CUDA(cudaMalloc(&g, size_t(world) * kN * sizeof(float)));
    MMX_CUDA(cudaMalloc(&b, kN * sizeof(uint16_t)));
    MMX_CUDA(cudaMemcpy(d, host.data(), kN * sizeof(float), cudaMemcpyHostToDevice));
    MMX_CUDA(cudaMemcpy(b, hb.data(), kN * sizeof(uint16_t), cudaMemcpyHostToDevice));
    comms[size_t(r)]->all_gather(d, g, kN, mmx::DType::F32, stream);  // before the sum changes d
    comms[size_t(r)]->all_reduce_sum(d, kN, mmx::DType::F32, stream);
    comms[size_t(r)]->all_reduce_sum(b, kN, mmx::DType::BF16, stream);
    MMX_CUDA(cudaStreamSynchronize(stream));
    sums[size_t(r)].resize(kN);
    gathered[size_t(r)].resize(size_t(world) * kN);
    bf[size_t(r)].resize(kN);
    MMX_CUDA(cudaMemcpy(sums[size_t(r)].data(), d, kN * sizeof(float), cudaMemcpyDeviceToHost));
    MMX_CUDA(cudaMemcpy(gathered[size_t(r)].data(), g, size_t(world) * kN * sizeof(float),
                                   cudaMemcpyDeviceToHost));
    MMX_CUDA(cudaMemcpy(bf[size_t(r)].data(), b, kN * sizeof(uint16_t), cudaMemcpyDeviceToHost));
    cudaFree(d);
    cudaFree(g);
    cudaFree(b);
    cudaStreamDestroy(stream);
  });
  const float factor = float(world * (world + 1) / 2);  // sum of (r + 1)
  for (int r = 0; r < world; ++r) {
    for (int64_t i = 0; i < kN; ++i) {
      ASSERT_EQ(sums[size_t(r)][size_t(i)], factor * float(i % 17)) << "rank " << r << " element " << i;
      ASSERT_EQ(mmx::bf16_to_f32(bf[size_t(r)][size_t(i)]), factor) << "rank " << r;
      for (int s = 0; s < world; ++s)
        ASSERT_EQ(gathered[size_t(r)][size_t(s * kN + i)], float(s + 1) * float(i % 17)) << "rank " << r;
    }
  }
}

TEST(NcclComm, LocalGroupOverEveryGpu) {
  MMX_SKIP_WITHOUT_GPU();
  auto comms = NcclCommunicator::create_local(first_devices(mmx::cuda_device_count()));
  check_collectives(comms);
}

TEST(NcclComm, GroupJoinedThroughAUniqueId) {
  MMX_SKIP_WITHOUT_GPU();
  // What each node's process does in a multi-node launch, here with one process holding every rank.
  const int n = mmx::cuda_device_count();
  auto comms = NcclCommunicator::create_ranks(NcclCommunicator::unique_id(), n, 0, first_devices(n));
  check_collectives(comms);
  EXPECT_THROW(NcclCommunicator::create_local({0, 0}), mmx::Error);  // one rank per GPU
}

// ---- sharded forward passes ------------------------------------------------------------------

// 8 heads x 32 (2 KV heads, replicated beyond TP 2), 8 experts: splits over up to 8 GPUs.
mmx::ModelConfig shard_config() {
  mmx::ModelConfig c = cuda_test::medium_config();
  c.heads = 8;
  c.head_dim = 32;
  c.rotary_dim = 16;
  c.kv_heads = 2;
  c.experts = 8;
  c.intermediate = 512;
  c.layers = 3;
  c.layer_kinds = {mmx::LayerKind::Lightning, mmx::LayerKind::Softmax, mmx::LayerKind::Lightning};
  return c;
}

// Prefill in two chunks, then decode steps; logits of every row, [rows, V].
std::vector<float> run_steps(const mmx::Model& model, mmx::Backend& be) {
  std::mt19937_64 rng(11);
  std::uniform_int_distribution<int32_t> id(0, int32_t(model.config().vocab - 1));
  auto st = be.new_state();
  mmx::Forward fwd(model, be);
  std::vector<float> all, logits;
  for (int64_t n : {40, 25, 1, 1, 1, 1}) {
    std::vector<int32_t> tokens, rows;
    for (int64_t i = 0; i < n; ++i) {
      tokens.push_back(id(rng));
      rows.push_back(int32_t(i));
    }
    mmx::StepBatch b;
    b.seqs = {{st.get(), n, st->tokens}};
    fwd.run(b, tokens, rows, &logits);
    all.insert(all.end(), logits.begin(), logits.end());
  }
  return all;
}

// max |a - b| / max |b| over all rows (the CUDA model tests' measure).
double rel_error(const std::vector<float>& a, const std::vector<float>& b) {
  if (a.size() != b.size() || a.empty()) return INFINITY;
  double diff = 0, ref = 1e-30;
  for (size_t i = 0; i < a.size(); ++i) {
    if (!std::isfinite(a[i])) return INFINITY;
    diff = std::max(diff, double(std::fabs(a[i] - b[i])));
    ref = std::max(ref, double(std::fabs(b[i])));
  }
  return diff / ref;
}

TEST(CudaSharding, TensorAndExpertParallelMatchOneGpu) {
  MMX_SKIP_WITHOUT_GPU();
  const int gpus = mmx::cuda_device_count();
  if (gpus < 2) GTEST_SKIP() << "needs 2 or more GPUs, found " << gpus;
  const mmx::ModelConfig c = shard_config();
  auto model = mmx::make_random_model(c, 41);
  auto one = cuda_test::make_backend("cuda", "bf16");
  one->prepare(*model);
  const std::vector<float> want = run_steps(*model, *one);
  one.reset();

  for (int world : {2, 4, 8}) {
    if (world > gpus) break;
    const std::vector<std::pair<bool, bool>> modes = {{true, false}, {false, true}, {true, true}};
    for (auto [split_attention, split_experts] : modes) {
      auto comms = NcclCommunicator::create_local(first_devices(world));
      std::vector<std::unique_ptr<mmx::Backend>> backends;
      for (int r = 0; r < world; ++r) {
        mmx::BackendOptions o;
        o.kind = "cuda";
        o.devices = {r};
        o.weight_dtype = "bf16";
        backends.push_back(mmx::create_backend(o));
        try {
          backends.back()->set_shard(mmx::Shard{r, world, split_attention, split_experts}, comms[size_t(r)].get());
        } catch (const mmx::Error& e) {
          if (e.code() == mmx::Code::Unsupported) GTEST_SKIP() << "the CUDA backend has no sharding yet: " << e.what();
          throw;
        }
      }
      std::vector<std::vector<float>> got(static_cast<size_t>(world));
      on_each_gpu(comms, [&](int r) {
        backends[size_t(r)]->prepare(*model);
        got[size_t(r)] = run_steps(*model, *backends[size_t(r)]);
      });
      const double err = rel_error(got[0], want);
      std::printf("  [measured] %d GPUs, attention %s, experts %s: rel error %.2e vs one GPU\n", world,
                  split_attention ? "split" : "replicated", split_experts ? "split" : "replicated", err);
      EXPECT_LE(err, 1e-2);  // bf16 activations: partial sums round before the all-reduce
      // The replicated router must decide identically on every rank, or a token would get
      // different experts from different ranks: the replicated path must be deterministic.
      for (int r = 1; r < world; ++r) EXPECT_EQ(got[size_t(r)], got[0]) << "rank " << r;
      backends.clear();  // before their communicators
    }
  }
}

}  // namespace

#else  // !MINIMAX_HAVE_NCCL

TEST(NcclComm, NotBuilt) { GTEST_SKIP() << "this build found no NCCL"; }

#endif
