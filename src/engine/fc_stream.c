/* fc_stream.c -- a fully connected layer's forward pass on a small batch, streaming its
 * weights once.
 *
 * With a batch of m <= 16 rows, y = x W^T is a matrix-vector product in disguise: each weight
 * is used m times, so the time is that of reading W (CaffeNet's fc6: 151 MB) from memory. A
 * general GEMM packs W into its own blocked copy first, which reads it and writes it again:
 * on 2 cores (AMD EPYC, AVX2, under load) OpenBLAS took 60-80 ms for fc6's forward at batch
 * 10, oneDNN's sgemm 37-43 and this 41-46 (the same machine streamed 453 MB through memory in
 * 30 ms). Here each W row meets the m rows of x (which stay in cache) in groups of four dot
 * products, rows spread over OpenMP's threads, then the bias is added.
 *
 * The backward passes stay GEMMs: a streaming weight gradient (dW += dy^T x, one read and one
 * write of dW) and data gradient (dx = dy W) written the same way measured slower than
 * OpenBLAS (51-70 and 108 ms against 33-38 and 30-66); they need register blocking across
 * rows to win, which is left to do.
 *
 * The dot products sum in another order than a GEMM's, so results differ from the reference
 * path in the last bits; on a given machine they are always the same bits (every sum has a
 * fixed order, whatever the thread count). */
#include <stddef.h>
#include <string.h>

#include "engine/engine.h"

typedef float v8 __attribute__((vector_size(32)));
#pragma GCC diagnostic ignored "-Wpsabi" /* v8 never crosses a non-static function's ABI */

#if defined(__GNUC__) && !defined(__clang__) && defined(__x86_64__) && !defined(CREMA_NO_CLONES)
#define HOT __attribute__((target_clones("avx2", "default")))
#else
#define HOT
#endif

static inline v8 load8(const float *p) {
  v8 v;
  memcpy(&v, p, sizeof v);
  return v;
}

static inline float hsum(v8 v) { return ((v[0] + v[4]) + (v[1] + v[5])) + ((v[2] + v[6]) + (v[3] + v[7])); }

/* Fewer weights than this and the layer is small enough for the reference GEMM. */
#define MIN_WEIGHTS (1 << 16)

bool crema_fc_stream_suits(int m, int n, int k) {
  return m >= 1 && m <= CREMA_FC_STREAM_MAX_BATCH && n >= 1 && k >= 8 && (long)n * k >= MIN_WEIGHTS;
}

/* y[b][o] = x[b] . w[o] (+ bias[o]) for rows o of w in [0, n). */
HOT static void forward_rows(int m, int n, int k, const float *x, const float *w, const float *bias,
                             float *y) {
  const int kv = k & ~7;
#pragma omp parallel for schedule(static)
  for (int o = 0; o < n; o++) {
    const float *wr = w + (size_t)o * k;
    const float add = bias ? bias[o] : 0.0f;
    for (int b0 = 0; b0 < m; b0 += 4) {
      /* four rows of x at a time; a short last group repeats its first row and drops it */
      const float *x0 = x + (size_t)b0 * k, *x1 = b0 + 1 < m ? x0 + k : x0,
                  *x2 = b0 + 2 < m ? x0 + 2 * (size_t)k : x0, *x3 = b0 + 3 < m ? x0 + 3 * (size_t)k : x0;
      v8 a0 = {0}, a1 = {0}, a2 = {0}, a3 = {0};
      for (int j = 0; j < kv; j += 8) {
        const v8 wv = load8(wr + j);
        a0 += wv * load8(x0 + j);
        a1 += wv * load8(x1 + j);
        a2 += wv * load8(x2 + j);
        a3 += wv * load8(x3 + j);
      }
      float s[4] = {hsum(a0), hsum(a1), hsum(a2), hsum(a3)};
      for (int j = kv; j < k; j++) {
        s[0] += wr[j] * x0[j];
        s[1] += wr[j] * x1[j];
        s[2] += wr[j] * x2[j];
        s[3] += wr[j] * x3[j];
      }
      for (int i = 0; i < 4 && b0 + i < m; i++) y[(size_t)(b0 + i) * n + o] = s[i] + add;
    }
  }
}

void crema_fc_stream_forward(int m, int n, int k, const float *x, const float *w, const float *bias,
                             float *y) {
  forward_rows(m, n, k, x, w, bias, y);
}
