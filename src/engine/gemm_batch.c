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

/* With more than one thread, oneDNN always: OpenBLAS's own thread pool and OpenMP's hand the
 * cores over at every switch (see the top of this file), and OpenBLAS split GoogLeNet's
 * gathered 7x7 1x1 layers (N = 490 columns) so poorly that two threads ran them no faster
 * than one. On one thread, products whose B is not transposed (forward, data gradient) and
 * that are 64 columns wide or more go to oneDNN's sgemm too when it runs AVX-512 kernels: on
 * an AMD EPYC (Zen 4) it ran them 1.06-1.57x as fast as OpenBLAS's SkylakeX kernel
 * (GoogLeNet conv1's data gradient, 147 x 125440 x 64: 25 against 40 ms; ResNet-50's res5 1x1
 * layers at batch 10, 490 columns: 1.06-1.14x), but 0.86-0.93x at 49 columns (those layers at
 * batch 1), and weight gradients (B transposed, long K) at 0.8-0.9x. With AVX2 kernels on
 * both sides neither won. With OpenBLAS on AVX2 kernels (OPENBLAS_CORETYPE=Haswell preset, or
 * a core it does not know) beside oneDNN on AVX-512, oneDNN takes them all: on a Zen 5 core
 * it ran conv-like shapes at 200-210 GFLOP/s against OpenBLAS's 104-107, and LSTM's at 92-201
 * against 65-104; ResNet-50's weight gradients on the reference path (res4 and res5 1x1
 * layers, conv1), one thread, backward 437-460 -> 410-411 ms. */
bool crema_gemm_prefers_onednn(bool trans_b, int n) {
  if (!crema_engine_have_onednn()) return false;
  if (omp_get_max_threads() > 1) return true;
  if (!crema_engine_onednn_avx512()) return false;
  return !crema_blas_avx512() || (!trans_b && n >= 64);
}

void crema_gemm_best(bool trans_a, bool trans_b, int m, int n, int k, float alpha, const float *a, int lda,
                     const float *b, int ldb, float beta, float *c, int ldc) {
  if (crema_gemm_prefers_onednn(trans_b, n))
    crema_gemm_omp(trans_a, trans_b, m, n, k, alpha, a, lda, b, ldb, beta, c, ldc);
  else
    crema_gemm_ld(trans_a, trans_b, m, n, k, alpha, a, lda, b, ldb, beta, c, ldc);
}

/* Measured on two Zen 5 cores, products with B transposed and few rows: oneDNN's sgemm on
 * both threads against the columns split between the threads, 63-68 -> 171-202 GFLOP/s for
 * LSTM's and RNN's step products (16 rows; 92 on one thread), 72 -> 190-198 for CaffeNet's
 * fc6 forward at batch 50, 52-59 -> 154-159 for fc7 at batch 32, 205-209 -> 322 for fc6 at
 * batch 256, 245 -> 305-309 for LeNet's ip1 at batch 64; products with B not transposed, or
 * with hundreds of rows (convolutions' weight gradients), within 1-7% either way. */
void crema_gemm_cols_omp(bool trans_a, bool trans_b, int m, int n, int k, float alpha, const float *a,
                         int lda, const float *b, int ldb, float beta, float *c, int ldc) {
  const int threads = omp_get_max_threads();
  if (!crema_engine_have_onednn() || threads < 2 || omp_in_parallel() || n < 128) {
    crema_gemm_omp(trans_a, trans_b, m, n, k, alpha, a, lda, b, ldb, beta, c, ldc);
    return;
  }
#pragma omp parallel num_threads(threads)
  {
    const int nt = omp_get_num_threads(), t = omp_get_thread_num();
    /* ranges of whole 16-column groups, the last one taking the rest */
    const int groups = (n + 15) / 16, g0 = groups * t / nt, g1 = groups * (t + 1) / nt;
    const int j0 = 16 * g0, j1 = t == nt - 1 ? n : 16 * g1;
    if (j1 > j0) {
      const float *bj = trans_b ? b + (size_t)j0 * ldb : b + j0;
      crema_gemm_omp(trans_a, trans_b, m, j1 - j0, k, alpha, a, lda, bj, ldb, beta, c + j0, ldc);
    }
  }
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
