// Weight preparation on the device: W8A16 quantisation (kernels/quant_rule.h), dequantisation
// to bf16 (the large-M GEMM path), dtype conversion of uploaded checkpoint bytes, and
// deterministic random weights for synthetic (real-shape benchmark) models.
#pragma once
#include <cuda_bf16.h>
#include <cuda_runtime.h>

#include <cstdint>

#include "core/dtype.h"

namespace mmx::cuda {

// src: [rows, cols] in src_type (F32, BF16 or F16). Writes q [rows, cols] int8 and scale[rows].
void quantize_rows_int8(const void* src, DType src_type, int64_t rows, int64_t cols, int8_t* q,
                        float* scale, cudaStream_t stream);

// out[r, c] = bf16(q[r, c] * scale[r]) for rows [0, rows) of a row-major [*, cols] matrix.
void dequantize_int8_to_bf16(const int8_t* q, const float* scale, int64_t rows, int64_t cols,
                             __nv_bfloat16* out, cudaStream_t stream);

// n elements of src_type (F32, BF16, F16) to bf16 / fp32.
void convert_to_bf16(const void* src, DType src_type, int64_t n, __nv_bfloat16* dst,
                     cudaStream_t stream);
void convert_to_f32(const void* src, DType src_type, int64_t n, float* dst, cudaStream_t stream);

// Deterministic pseudo-random fills (a counter hash of seed and index): values uniform in
// [mean - half_width, mean + half_width). The int8 fill draws q uniform in [-127, 127] and
// sets every row's scale to row_scale.
void fill_uniform_bf16(__nv_bfloat16* dst, int64_t n, uint64_t seed, float mean, float half_width,
                       cudaStream_t stream);
void fill_uniform_f32(float* dst, int64_t n, uint64_t seed, float mean, float half_width,
                      cudaStream_t stream);
void fill_uniform_int8(int8_t* q, float* scale, int64_t rows, int64_t cols, uint64_t seed,
                       float row_scale, cudaStream_t stream);

}  // namespace mmx::cuda
