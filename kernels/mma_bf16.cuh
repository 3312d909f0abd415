// Warp-level tensor-core building blocks shared by the attention kernels (sm_80 and newer):
// bf16 mma.sync m16n8k16 with fp32 accumulators, ldmatrix fragment loads and cp.async copies.
//
// Fragment layouts of mma.m16n8k16 (g = lane / 4, q = lane % 4), as the PTX ISA defines them:
//   A (16x16, row-major)  a[0]: (g,   2q..2q+1)  a[1]: (g+8, 2q..)  a[2]: (g, 2q+8..)  a[3]: (g+8, 2q+8..)
//   B (16x8, "col")       b[0]: (k = 2q..2q+1, n = g)               b[1]: (k = 2q+8.., n = g)
//   C (16x8, fp32)        c[0..1]: (g, 2q..2q+1)                    c[2..3]: (g+8, 2q..2q+1)
// Two adjacent C tiles of a 16x16 product are exactly one A fragment of the next product
// (FlashAttention-2's register reuse): a = {c0[0..1], c0[2..3], c1[0..1], c1[2..3]}.
#pragma once
#include <cuda_bf16.h>

#include <cstdint>

namespace mmx::cuda::mma {

__device__ __forceinline__ uint32_t smem_addr(const void* p) {
  return static_cast<uint32_t>(__cvta_generic_to_shared(p));
}

// Four 8x8 bf16 matrices; lanes 8i..8i+7 give the row addresses of matrix i, register i
// receives matrix i in the A/B fragment order above.
__device__ __forceinline__ void ldmatrix_x4(uint32_t r[4], const void* row_addr) {
  asm volatile("ldmatrix.sync.aligned.m8n8.x4.shared.b16 {%0,%1,%2,%3}, [%4];\n"
               : "=r"(r[0]), "=r"(r[1]), "=r"(r[2]), "=r"(r[3])
               : "r"(smem_addr(row_addr)));
}

// As ldmatrix_x4, each matrix transposed on the way (for operands stored k-major).
__device__ __forceinline__ void ldmatrix_x4_trans(uint32_t r[4], const void* row_addr) {
  asm volatile("ldmatrix.sync.aligned.m8n8.x4.trans.shared.b16 {%0,%1,%2,%3}, [%4];\n"
               : "=r"(r[0]), "=r"(r[1]), "=r"(r[2]), "=r"(r[3])
               : "r"(smem_addr(row_addr)));
}

// Two transposed 8x8 matrices (lanes 0..15 give the row addresses; all lanes must pass a
// valid shared address).
__device__ __forceinline__ void ldmatrix_x2_trans(uint32_t r[2], const void* row_addr) {
  asm volatile("ldmatrix.sync.aligned.m8n8.x2.trans.shared.b16 {%0,%1}, [%2];\n"
               : "=r"(r[0]), "=r"(r[1])
               : "r"(smem_addr(row_addr)));
}

// c += a * b (16x8x16, bf16 inputs, fp32 accumulate).
__device__ __forceinline__ void mma_16816(float c[4], const uint32_t a[4], uint32_t b0, uint32_t b1) {
  asm volatile(
      "mma.sync.aligned.m16n8k16.row.col.f32.bf16.bf16.f32 {%0,%1,%2,%3}, {%4,%5,%6,%7}, "
      "{%8,%9}, {%0,%1,%2,%3};\n"
      : "+f"(c[0]), "+f"(c[1]), "+f"(c[2]), "+f"(c[3])
      : "r"(a[0]), "r"(a[1]), "r"(a[2]), "r"(a[3]), "r"(b0), "r"(b1));
}

// Two floats as a bf16 pair, the first in the low half (the lower column of a fragment).
__device__ __forceinline__ uint32_t pack_bf16(float lo, float hi) {
  __nv_bfloat162 v = __floats2bfloat162_rn(lo, hi);
  return *reinterpret_cast<uint32_t*>(&v);
}

// 16-byte global -> shared copy that bypasses L1. When `valid` is false nothing is read and
// the 16 shared bytes are zero-filled (src must still be a mapped address).
__device__ __forceinline__ void cp_async16(void* smem, const void* gmem, bool valid) {
  const int src_bytes = valid ? 16 : 0;
  asm volatile("cp.async.cg.shared.global [%0], [%1], 16, %2;\n" ::"r"(smem_addr(smem)), "l"(gmem),
               "r"(src_bytes)
               : "memory");
}

__device__ __forceinline__ void cp_async_commit() { asm volatile("cp.async.commit_group;\n" ::: "memory"); }

// Waits until at most `pending` committed groups of this thread are still in flight.
template <int pending>
__device__ __forceinline__ void cp_async_wait() {
  asm volatile("cp.async.wait_group %0;\n" ::"n"(pending) : "memory");
}

}  // namespace mmx::cuda::mma
