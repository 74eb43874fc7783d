/* gemm_batch.c -- many independent GEMMs of one shape, run in parallel over the products.
 *
 * Why not one OpenBLAS call after another: OpenBLAS (Debian's pthreads build) splits each
 * product over its own thread pool, while the engines' transforms and oneDNN's kernels run on
 * OpenMP's. With as many runnable threads as cores in each pool, every switch between them
 * hands the cores over (OpenBLAS's workers spin for a while after each call), and a narrow
 * product split in two runs little faster than on one core. Measured on 2 cores (AMD EPYC,
 * AVX2), 36 products of Winograd's shapes: OpenBLAS one after another 29-58 GFLOP/s, the
 * products spread over OpenMP's threads with oneDNN's sgemm on one thread each 86-115.
 *
 * oneDNN's dnnl_sgemm runs on one thread when called inside an OpenMP parallel region, and
 * its results do not depend on the thread count then, so a product's bits are the same on
 * any number of threads (resume stays exact). Without oneDNN the products go to OpenBLAS one
 * after another, as before. */
#include <omp.h>

#include "engine/engine.h"
#include "tensor/math.h"

#ifdef CREMA_HAVE_ONEDNN
#include <oneapi/dnnl/dnnl.h>
#endif

void crema_gemm_omp(bool trans_a, bool trans_b, int m, int n, int k, float alpha, const float *a, int lda,
                    const float *b, int ldb, float beta, float *c, int ldc) {
#ifdef CREMA_HAVE_ONEDNN
  /* k == 0 (C only scaled) is crema_gemm_ld's case; so is anything oneDNN refuses */
  if (k > 0 && m > 0 && n > 0 &&
      dnnl_sgemm(trans_a ? 'T' : 'N', trans_b ? 'T' : 'N', m, n, k, alpha, a, lda, b, ldb, beta, c, ldc) ==
          dnnl_success)
    return;
#endif
  crema_gemm_ld(trans_a, trans_b, m, n, k, alpha, a, lda, b, ldb, beta, c, ldc);
}

void crema_gemm_batch_run(const crema_gemm_batch *b) {
  if (b->count <= 0 || b->m <= 0 || b->n <= 0) return;
  /* Without oneDNN each product goes to OpenBLAS, which threads it itself: one at a time. */
  const int threads = crema_engine_have_onednn() && !omp_in_parallel() ? omp_get_max_threads() : 1;
  /* dynamic: the products are equal, but a thread that lost its core for a moment should not
   * hold the rest up */
#pragma omp parallel for schedule(dynamic, 1) num_threads(threads) if (threads > 1)
  for (int j = 0; j < b->count; j++)
    crema_gemm_omp(b->trans_a, b->trans_b, b->m, b->n, b->k, b->alpha, b->a + (size_t)j * b->stride_a, b->lda,
                   b->b + (size_t)j * b->stride_b, b->ldb, b->beta, b->c + (size_t)j * b->stride_c, b->ldc);
}

void crema_bias_act_rows(int rows, size_t cols, const float *bias, crema_act act, float *y) {
  if (!bias) {
    crema_act_apply(act, (size_t)rows * cols, y, true);
    return;
  }
  for (int o = 0; o < rows; o++) { /* one pass: the bias and the activation together */
    float *row = y + (size_t)o * cols;
    const float b = bias[o];
    if (act.relu)
      for (size_t p = 0; p < cols; p++) row[p] = crema_act_one(act, row[p] + b);
    else
      for (size_t p = 0; p < cols; p++) row[p] += b;
  }
}

void crema_sum_partials(const float *part, int parts, size_t n, float *dw) {
#pragma omp parallel for schedule(static)
  for (size_t k = 0; k < n; k++) {
    float s = 0.0f;
    for (int t = 0; t < parts; t++) s += part[(size_t)t * n + k];
    dw[k] += s; /* parameter diffs accumulate */
  }
}
