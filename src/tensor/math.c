#include "tensor/math.h"

#include <cblas.h>
#include <math.h>
#include <omp.h>
#include <string.h>
#include <strings.h>

/* Not declared in every cblas.h; present in every OpenBLAS. */
extern char *openblas_get_corename(void);
extern int openblas_get_num_threads(void);
extern void openblas_set_num_threads(int);

void crema_gemm(bool trans_a, bool trans_b, int M, int N, int K, float alpha, const float *A, const float *B,
                float beta, float *C) {
  int lda = trans_a ? M : K, ldb = trans_b ? K : N;
  crema_gemm_ld(trans_a, trans_b, M, N, K, alpha, A, lda, B, ldb, beta, C, N);
}

void crema_gemm_ld(bool trans_a, bool trans_b, int M, int N, int K, float alpha, const float *A, int lda,
                   const float *B, int ldb, float beta, float *C, int ldc) {
  if (M <= 0 || N <= 0) return;
  if (K <= 0) { /* op(A)*op(B) is zero; BLAS may not touch C, so scale it here */
    for (int i = 0; i < M; i++)
      for (int j = 0; j < N; j++) C[(size_t)i * ldc + j] = beta == 0 ? 0 : beta * C[(size_t)i * ldc + j];
    return;
  }
  cblas_sgemm(CblasRowMajor, trans_a ? CblasTrans : CblasNoTrans, trans_b ? CblasTrans : CblasNoTrans, M, N,
              K, alpha, A, lda, B, ldb, beta, C, ldc);
}

void crema_gemv(bool trans_a, int M, int N, float alpha, const float *A, const float *x, float beta,
                float *y) {
  if (M <= 0 || N <= 0) return;
  cblas_sgemv(CblasRowMajor, trans_a ? CblasTrans : CblasNoTrans, M, N, alpha, A, N, x, 1, beta, y, 1);
}

void crema_axpy(size_t n, float alpha, const float *x, float *y) {
#pragma omp parallel for if (n > CREMA_PAR_MIN) schedule(static)
  for (size_t i = 0; i < n; i++) y[i] += alpha * x[i];
}

void crema_axpby(size_t n, float alpha, const float *x, float beta, float *y) {
#pragma omp parallel for if (n > CREMA_PAR_MIN) schedule(static)
  for (size_t i = 0; i < n; i++) y[i] = alpha * x[i] + beta * y[i];
}

void crema_scal(size_t n, float alpha, float *x) {
#pragma omp parallel for if (n > CREMA_PAR_MIN) schedule(static)
  for (size_t i = 0; i < n; i++) x[i] *= alpha;
}

void crema_act_apply(crema_act a, size_t n, float *x, bool serial) {
  if (!a.relu) return;
  if (serial || n <= CREMA_PAR_MIN) { /* no parallel region at all: inside one it would nest */
    for (size_t i = 0; i < n; i++) x[i] = crema_act_one(a, x[i]);
    return;
  }
#pragma omp parallel for schedule(static)
  for (size_t i = 0; i < n; i++) x[i] = crema_act_one(a, x[i]);
}

void crema_set(size_t n, float value, float *x) {
  if (value == 0.0f && !signbit(value)) {
    /* An empty blob has no buffer (x is NULL), and memset(NULL, 0, 0) is undefined. */
    if (n) memset(x, 0, n * sizeof(float));
    return;
  }
  for (size_t i = 0; i < n; i++) x[i] = value;
}

/* Large copies (an in-place layer saving its input, Bias's gradient) on every thread: one
 * core's memcpy reaches about half of what two do (bench_elementwise's copy column). */
#define COPY_PARALLEL_MIN ((size_t)1 << 18)

void crema_copy(size_t n, const float *x, float *y) {
  if (x == y || !n) return;
  if (n < COPY_PARALLEL_MIN) {
    memcpy(y, x, n * sizeof(float));
    return;
  }
#pragma omp parallel
  {
    const size_t nt = (size_t)omp_get_num_threads(), t = (size_t)omp_get_thread_num();
    const size_t lo = (n * t / nt) & ~(size_t)15, hi = t + 1 == nt ? n : (n * (t + 1) / nt) & ~(size_t)15;
    memcpy(y + lo, x + lo, (hi - lo) * sizeof(float));
  }
}

float crema_dot(size_t n, const float *x, const float *y) {
  double s = 0;
  for (size_t i = 0; i < n; i++) s += (double)x[i] * y[i];
  return (float)s;
}

float crema_asum(size_t n, const float *x) {
  double s = 0;
  for (size_t i = 0; i < n; i++) s += fabs((double)x[i]);
  return (float)s;
}

const char *crema_blas_corename(void) { return openblas_get_corename(); }

bool crema_blas_avx512(void) {
  static const char *const wide[] = {"skylakex", "cooperlake", "sapphirerapids"};
  const char *core = crema_blas_corename();
  for (size_t i = 0; core && i < sizeof wide / sizeof *wide; i++)
    if (!strcasecmp(core, wide[i])) return true;
  return false;
}

int crema_blas_threads(void) { return openblas_get_num_threads(); }
void crema_blas_set_threads(int n) { openblas_set_num_threads(n); }
