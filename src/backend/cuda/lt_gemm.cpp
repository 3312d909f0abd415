#include "backend/cuda/lt_gemm.h"

#include <string>

#include "core/error.h"

namespace mmx::cuda {
namespace {

void check(cublasStatus_t st, const char* what) {
  if (st != CUBLAS_STATUS_SUCCESS)
    throw Error(Code::Device, std::string(what) + " failed: " + cublasLtGetStatusName(st) + " (" +
                                  cublasLtGetStatusString(st) + ")");
}

// Largest power of two (<= 256) dividing the address: cuBLASLt's heuristics assume 256-byte
// aligned operands unless told otherwise, and row/column slices are less aligned than that.
int alignment_of(const void* p) {
  const uintptr_t a = reinterpret_cast<uintptr_t>(p);
  int al = 256;
  while (al > 1 && (a % uintptr_t(al)) != 0) al /= 2;
  return al;
}

}  // namespace

// In cuBLASLt's column-major terms the product is C[N, M] = op(A)[N, K] · B[K, M] with
// A = W stored [K, N] (ld ldw, transposed), B = x stored [K, M] (ld ldx), C = out [N, M]
// (ld ldo): exactly the row-major buffers, no copies.
struct LtGemm::Plan {
  cublasLtMatmulDesc_t op = nullptr;
  cublasLtMatrixLayout_t a = nullptr, b = nullptr, c = nullptr;
  cublasLtMatmulAlgo_t algo{};
  ~Plan() {
    if (c) cublasLtMatrixLayoutDestroy(c);
    if (b) cublasLtMatrixLayoutDestroy(b);
    if (a) cublasLtMatrixLayoutDestroy(a);
    if (op) cublasLtMatmulDescDestroy(op);
  }
};

LtGemm::LtGemm(void* workspace, size_t workspace_bytes)
    : workspace_(workspace), workspace_bytes_(workspace_bytes) {
  check(cublasLtCreate(&handle_), "cublasLtCreate");
}

LtGemm::~LtGemm() {
  plans_.clear();
  if (handle_) cublasLtDestroy(handle_);
}

LtGemm::Plan& LtGemm::plan(const Key& key) {
  auto it = plans_.find(key);
  if (it != plans_.end()) return *it->second;
  const auto [M, N, K, ldx, ldw, ldo, out_f32, al_x, al_w, al_o] = key;
  auto p = std::make_unique<Plan>();
  check(cublasLtMatmulDescCreate(&p->op, CUBLAS_COMPUTE_32F, CUDA_R_32F), "cublasLtMatmulDescCreate");
  const cublasOperation_t transa = CUBLAS_OP_T, transb = CUBLAS_OP_N;
  check(cublasLtMatmulDescSetAttribute(p->op, CUBLASLT_MATMUL_DESC_TRANSA, &transa, sizeof(transa)),
        "cublasLtMatmulDescSetAttribute(TRANSA)");
  check(cublasLtMatmulDescSetAttribute(p->op, CUBLASLT_MATMUL_DESC_TRANSB, &transb, sizeof(transb)),
        "cublasLtMatmulDescSetAttribute(TRANSB)");
  check(cublasLtMatrixLayoutCreate(&p->a, CUDA_R_16BF, uint64_t(K), uint64_t(N), ldw),
        "cublasLtMatrixLayoutCreate(A)");
  check(cublasLtMatrixLayoutCreate(&p->b, CUDA_R_16BF, uint64_t(K), uint64_t(M), ldx),
        "cublasLtMatrixLayoutCreate(B)");
  check(cublasLtMatrixLayoutCreate(&p->c, out_f32 ? CUDA_R_32F : CUDA_R_16BF, uint64_t(N),
                                   uint64_t(M), ldo),
        "cublasLtMatrixLayoutCreate(C)");

  cublasLtMatmulPreference_t pref = nullptr;
  check(cublasLtMatmulPreferenceCreate(&pref), "cublasLtMatmulPreferenceCreate");
  const uint64_t ws = workspace_bytes_;
  const uint32_t aa = uint32_t(al_w), ab = uint32_t(al_x), ac = uint32_t(al_o);
  cublasStatus_t st = cublasLtMatmulPreferenceSetAttribute(
      pref, CUBLASLT_MATMUL_PREF_MAX_WORKSPACE_BYTES, &ws, sizeof(ws));
  if (st == CUBLAS_STATUS_SUCCESS)
    st = cublasLtMatmulPreferenceSetAttribute(pref, CUBLASLT_MATMUL_PREF_MIN_ALIGNMENT_A_BYTES, &aa,
                                              sizeof(aa));
  if (st == CUBLAS_STATUS_SUCCESS)
    st = cublasLtMatmulPreferenceSetAttribute(pref, CUBLASLT_MATMUL_PREF_MIN_ALIGNMENT_B_BYTES, &ab,
                                              sizeof(ab));
  if (st == CUBLAS_STATUS_SUCCESS)
    st = cublasLtMatmulPreferenceSetAttribute(pref, CUBLASLT_MATMUL_PREF_MIN_ALIGNMENT_C_BYTES, &ac,
                                              sizeof(ac));
  if (st == CUBLAS_STATUS_SUCCESS)
    st = cublasLtMatmulPreferenceSetAttribute(pref, CUBLASLT_MATMUL_PREF_MIN_ALIGNMENT_D_BYTES, &ac,
                                              sizeof(ac));
  cublasLtMatmulHeuristicResult_t result{};
  int found = 0;
  if (st == CUBLAS_STATUS_SUCCESS)
    st = cublasLtMatmulAlgoGetHeuristic(handle_, p->op, p->a, p->b, p->c, p->c, pref, 1, &result,
                                        &found);
  cublasLtMatmulPreferenceDestroy(pref);
  check(st, "cublasLtMatmulAlgoGetHeuristic");
  if (found == 0)
    throw Error(Code::Device, "cuBLASLt found no algorithm for a bf16 GEMM of M=" +
                                  std::to_string(M) + " N=" + std::to_string(N) +
                                  " K=" + std::to_string(K));
  p->algo = result.algo;
  Plan& ref = *p;
  plans_.emplace(key, std::move(p));
  return ref;
}

void LtGemm::matmul(const void* x, int64_t ldx, const void* w, int64_t ldw, void* out, int64_t ldo,
                    bool out_f32, int64_t M, int64_t N, int64_t K, cudaStream_t stream) {
  if (M <= 0 || N <= 0) return;
  MMX_CHECK(K > 0 && ldx >= K && ldw >= K && ldo >= N, Code::Internal,
            "LtGemm: bad leading dimensions");
  const Key key{M, N, K, ldx, ldw, ldo, out_f32, alignment_of(x), alignment_of(w), alignment_of(out)};
  Plan& p = plan(key);
  const float alpha = 1.0f, beta = 0.0f;
  check(cublasLtMatmul(handle_, p.op, &alpha, w, p.a, x, p.b, &beta, out, p.c, out, p.c, &p.algo,
                       workspace_, workspace_bytes_, stream),
        "cublasLtMatmul");
}

}  // namespace mmx::cuda
