#include "backend/cpu/cpu_kernels.h"

#include <cblas.h>

#include <algorithm>
#include <cmath>
#include <numeric>

namespace mmx::cpu {

namespace {

// Below this many multiply-adds a pool dispatch costs more than it saves.
constexpr double kParallelMinFlops = 1 << 18;
// Column pieces stay multiples of this so BLAS works on whole register tiles.
constexpr int64_t kColumnGrain = 16;

}  // namespace

void gemm_nt_serial(int64_t M, int64_t N, int64_t K, const float* A, int64_t lda, const float* B,
                    int64_t ldb, float* C, int64_t ldc, float beta) {
  if (M <= 0 || N <= 0) return;
  if (M == 1) {
    // One row: a matrix-vector product streams the weight once (sgemm would pack it first).
    cblas_sgemv(CblasRowMajor, CblasNoTrans, int(N), int(K), 1.0f, B, int(ldb), A, 1, beta, C, 1);
    return;
  }
  cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, int(M), int(N), int(K), 1.0f, A, int(lda), B,
              int(ldb), beta, C, int(ldc));
}

void gemm_nt(ThreadPool& pool, int64_t M, int64_t N, int64_t K, const float* A, int64_t lda,
             const float* B, int64_t ldb, float* C, int64_t ldc, float beta) {
  const int64_t P = pool.size();
  if (P == 1 || double(M) * double(N) * double(K) < kParallelMinFlops) {
    gemm_nt_serial(M, N, K, A, lda, B, ldb, C, ldc, beta);
    return;
  }
  const int64_t col_pieces = (N + kColumnGrain - 1) / kColumnGrain;
  if (col_pieces >= P || M < P) {
    // Split the output columns (weight rows): each thread streams its own slice of the weight.
    pool.parallel_for(col_pieces, [&](int64_t b, int64_t e) {
      int64_t n0 = b * kColumnGrain, n1 = std::min(N, e * kColumnGrain);
      gemm_nt_serial(M, n1 - n0, K, A, lda, B + n0 * ldb, ldb, C + n0, ldc, beta);
    });
  } else {
    // Few outputs but many rows (e.g. the router): split the rows.
    pool.parallel_for(M, [&](int64_t b, int64_t e) {
      gemm_nt_serial(e - b, N, K, A + b * lda, lda, B, ldb, C + b * ldc, ldc, beta);
    });
  }
}

// ---- lightning attention ------------------------------------------------------------------

static void lightning_recurrence(const float* q, const float* k, const float* v, int64_t d,
                                 float decay, float* S, float* out) {
  for (int64_t j = 0; j < d; ++j) out[j] = 0.0f;
  for (int64_t i = 0; i < d; ++i) {
    float* row = S + i * d;
    const float ki = k[i], qi = q[i];
    for (int64_t j = 0; j < d; ++j) {
      row[j] = decay * row[j] + ki * v[j];
      out[j] += qi * row[j];
    }
  }
}

// One block of m tokens (see the header for the formulas).
static void lightning_block(const float* q, const float* k, const float* v, int64_t ld, int64_t m,
                            int64_t d, const float* pw, float* S, float* out, int64_t ld_out,
                            float* scores, float* keys) {
  // Inter-block term: decay^(i+1) q_i S. The state is as of the token before the block, so
  // token i is i+1 steps past it.
  cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, int(m), int(d), int(d), 1.0f, q, int(ld), S,
              int(d), 0.0f, out, int(ld_out));
  for (int64_t i = 0; i < m; ++i) {
    float* o = out + i * ld_out;
    const float f = pw[i + 1];
    for (int64_t j = 0; j < d; ++j) o[j] *= f;
  }
  // Intra-block term: (q_i . k_j) decay^(i-j) for j <= i, then times V.
  cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, int(m), int(m), int(d), 1.0f, q, int(ld), k,
              int(ld), 0.0f, scores, int(m));
  for (int64_t i = 0; i < m; ++i) {
    float* s = scores + i * m;
    for (int64_t j = 0; j <= i; ++j) s[j] *= pw[i - j];
    for (int64_t j = i + 1; j < m; ++j) s[j] = 0.0f;
  }
  cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, int(m), int(d), int(m), 1.0f, scores, int(m),
              v, int(ld), 1.0f, out, int(ld_out));
  // State: S <- decay^m S + sum_j decay^(m-1-j) k_j^T v_j.
  for (int64_t j = 0; j < m; ++j) {
    const float f = pw[m - 1 - j];
    const float* kj = k + j * ld;
    float* dst = keys + j * d;
    for (int64_t i = 0; i < d; ++i) dst[i] = kj[i] * f;
  }
  cblas_sgemm(CblasRowMajor, CblasTrans, CblasNoTrans, int(d), int(d), int(m), 1.0f, keys, int(d), v,
              int(ld), pw[m], S, int(d));
}

void lightning_head(const float* q, const float* k, const float* v, int64_t ld, int64_t n,
                    int64_t d, double decay, int64_t block, float* S, float* out, int64_t ld_out,
                    LightningScratch* scratch) {
  if (n <= 0) return;
  if (n == 1) {
    lightning_recurrence(q, k, v, d, float(decay), S, out);
    return;
  }
  const int64_t B = std::min(block, n);
  scratch->scores.resize(size_t(B * B));
  scratch->keys.resize(size_t(B * d));
  scratch->powers.resize(size_t(B + 1));
  // decay^e straight from the double decay; underflow to 0 for fast heads is harmless.
  for (int64_t e = 0; e <= B; ++e) scratch->powers[size_t(e)] = float(std::pow(decay, double(e)));
  for (int64_t t0 = 0; t0 < n; t0 += B) {
    const int64_t m = std::min(B, n - t0);
    lightning_block(q + t0 * ld, k + t0 * ld, v + t0 * ld, ld, m, d, scratch->powers.data(), S,
                    out + t0 * ld_out, ld_out, scratch->scores.data(), scratch->keys.data());
  }
}

// ---- RoPE -----------------------------------------------------------------------------------

std::vector<float> rope_inv_freq(double theta, int64_t rotary_dim) {
  // Mirrors transformers: 1.0 / (base ** (arange(0, dim, 2, float32) / dim)), all in fp32.
  std::vector<float> inv(size_t(rotary_dim / 2));
  for (int64_t j = 0; j < rotary_dim / 2; ++j) {
    float exponent = float(2 * j) / float(rotary_dim);
    inv[size_t(j)] = 1.0f / std::pow(float(theta), exponent);
  }
  return inv;
}

void apply_rope(float* x, int64_t heads, int64_t head_dim, int64_t rotary_dim, int64_t pos,
                const std::vector<float>& inv_freq) {
  const int64_t half = rotary_dim / 2;
  std::vector<float> cs(static_cast<size_t>(half)), sn(static_cast<size_t>(half));
  for (int64_t j = 0; j < half; ++j) {
    float angle = float(pos) * inv_freq[size_t(j)];
    cs[size_t(j)] = std::cos(angle);
    sn[size_t(j)] = std::sin(angle);
  }
  for (int64_t h = 0; h < heads; ++h) {
    float* xh = x + h * head_dim;
    for (int64_t j = 0; j < half; ++j) {
      const float a = xh[j], b = xh[j + half];
      const float c = cs[size_t(j)], sv = sn[size_t(j)];
      xh[j] = a * c + (-b) * sv;
      xh[j + half] = b * c + a * sv;
    }
  }
}

// ---- softmax attention ----------------------------------------------------------------------

void attend_group(const float* q, const float* keys, const float* values, int64_t ld_kv,
                  int64_t ctx, int64_t group, int64_t d, float scale, float* scores, float* out) {
  cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, int(group), int(ctx), int(d), scale, q, int(d),
              keys, int(ld_kv), 0.0f, scores, int(ctx));
  for (int64_t g = 0; g < group; ++g) {
    float* s = scores + g * ctx;
    float mx = *std::max_element(s, s + ctx);
    double sum = 0.0;
    for (int64_t p = 0; p < ctx; ++p) {
      s[p] = std::exp(s[p] - mx);
      sum += s[p];
    }
    const float inv = float(1.0 / sum);
    for (int64_t p = 0; p < ctx; ++p) s[p] *= inv;
  }
  cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, int(group), int(d), int(ctx), 1.0f, scores,
              int(ctx), values, int(ld_kv), 0.0f, out, int(d));
}

// ---- MoE routing ----------------------------------------------------------------------------

void route_top_k(const float* logits, int64_t E, int64_t k, int32_t* experts, float* weights) {
  std::vector<float> probs(static_cast<size_t>(E));
  float mx = *std::max_element(logits, logits + E);
  double sum = 0.0;
  for (int64_t e = 0; e < E; ++e) {
    probs[size_t(e)] = std::exp(logits[e] - mx);
    sum += probs[size_t(e)];
  }
  for (auto& p : probs) p = float(p / sum);
  std::vector<int32_t> order(static_cast<size_t>(E));
  std::iota(order.begin(), order.end(), 0);
  // Highest probability first; equal probabilities keep the lower expert index first.
  std::partial_sort(order.begin(), order.begin() + k, order.end(), [&](int32_t a, int32_t b) {
    const float pa = probs[size_t(a)], pb = probs[size_t(b)];
    return pa > pb || (pa == pb && a < b);
  });
  float total = 0.0f;
  for (int64_t i = 0; i < k; ++i) total += probs[size_t(order[size_t(i)])];
  for (int64_t i = 0; i < k; ++i) {
    experts[i] = order[size_t(i)];
    weights[i] = probs[size_t(order[size_t(i)])] / total;
  }
}

}  // namespace mmx::cpu
