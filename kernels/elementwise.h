// Row-wise and element-wise kernels of the CUDA backend: RMSNorm, SiLU, sigmoid gating,
// scaled residual add, embedding lookup, row gather and fp32 <-> bf16 conversion.
// Activations are bf16 and the residual stream fp32 (the overloads taking float*); every
// statistic and every intermediate is computed in fp32.
// All pointers are device pointers; every launch is checked (throws mmx::Error).
#pragma once
#include <cuda_bf16.h>
#include <cuda_runtime.h>

#include <cstdint>

namespace mmx::cuda {

using bf16 = __nv_bfloat16;

// out[r] = w * x[r] / sqrt(mean(x[r]^2) + eps) over rows x cols; out may alias x.
void rms_norm(const bf16* x, const float* w, float eps, bf16* out, int64_t rows, int64_t cols,
              cudaStream_t stream);
// The residual stream's: fp32 in and out, plus (when out_bf16 is not null) a bf16 copy of
// the output for the matrix products, written in the same pass.
void rms_norm(const float* x, const float* w, float eps, float* out, bf16* out_bf16,
              int64_t rows, int64_t cols, cudaStream_t stream);

// x = SiLU(x) over n elements, in place.
void silu_inplace(bf16* x, int64_t n, cudaStream_t stream);

// x = sigmoid(gate) * x over n elements, in place.
void sigmoid_mul(const bf16* gate, bf16* x, int64_t n, cudaStream_t stream);

// out = alpha * h + beta * a over n elements; out may alias h or a.
void scale_add(const bf16* h, float alpha, const bf16* a, float beta, bf16* out, int64_t n,
               cudaStream_t stream);
void scale_add(const float* h, float alpha, const bf16* a, float beta, float* out, int64_t n,
               cudaStream_t stream);

// out[t] = table[ids[t]] for t < T; table is [V, H]. Ids must be in [0, V) (checked by the
// caller on the host); an id outside gives a zero row rather than a wild read.
void embed_rows(const int32_t* ids, int64_t T, const bf16* table, int64_t V, int64_t H,
                bf16* out, cudaStream_t stream);
void embed_rows(const int32_t* ids, int64_t T, const bf16* table, int64_t V, int64_t H,
                float* out, cudaStream_t stream);

// out[i] = x[rows[i]] for i < n (rows index x's rows, each in [0, x_rows)).
void gather_rows(const bf16* x, int64_t x_rows, const int32_t* rows, int64_t n, int64_t cols,
                 bf16* out, cudaStream_t stream);

void f32_to_bf16(const float* src, bf16* dst, int64_t n, cudaStream_t stream);
void bf16_to_f32(const bf16* src, float* dst, int64_t n, cudaStream_t stream);

}  // namespace mmx::cuda

namespace mmx::cuda {
// Throws Code::Device when this build carries no kernel code the current device can run
// (e.g. built for sm_90a only and run on an A100), before any op fails with a vaguer error.
void check_kernel_image(int device);
}  // namespace mmx::cuda
