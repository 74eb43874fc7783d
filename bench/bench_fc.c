/* bench_fc -- a fully connected layer on a small batch: the streaming kernels
 * (src/engine/fc_stream.c) against the reference path's OpenBLAS GEMMs on the same shapes,
 * and both against the speed at which this machine reads memory, all in one run.
 *
 *   bench_fc            CaffeNet's fc6, fc7 and fc8 at batch 10, fc6 at 1 and 16; ~0.3 s a figure
 *   bench_fc -quick     two repetitions each (a smoke run)
 *
 * Threads: OMP_NUM_THREADS (and OpenBLAS's own count, which the table names). Each figure is
 * the best wall time of its repetitions, the two paths alternating. "/read" divides the bytes
 * a pass must move at least (forward and data gradient: W once; weight gradient: dW read and
 * written, or only written when the solver has marked it zero, as in training) by the time,
 * and that by the GB/s of a plain read of W timed just before, on the same threads: 1.0 means
 * the pass runs as fast as memory can deliver W. */
#include <omp.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "base/mem.h"
#include "bench_common.h"
#include "common/tool.h"
#include "engine/engine.h"
#include "tensor/math.h"

typedef struct fc_case {
  const char *name;
  int m, n, k;
} fc_case;

static const fc_case CASES[] = {
    {"CaffeNet fc6", 10, 4096, 9216},           {"CaffeNet fc7", 10, 4096, 4096},
    {"CaffeNet fc8", 10, 1000, 4096},           {"CaffeNet fc6, batch 1", 1, 4096, 9216},
    {"CaffeNet fc6, batch 16", 16, 4096, 9216},
};

typedef struct bufs {
  int m, n, k;
  float *x, *w, *y, *dy, *dx, *dw, *scratch;
} bufs;

enum { FWD, DX, DW, DW_SET, READ, N_OPS };

typedef float v8 __attribute__((vector_size(32)));
#pragma GCC diagnostic ignored "-Wpsabi" /* v8 stays inside this file's static functions */

static inline v8 load8(const float *p) {
  v8 v;
  memcpy(&v, p, sizeof v);
  return v;
}

/* The sum of n floats, four vectors at a time: a plain read at the widest loads the CPU has. */
#if defined(__GNUC__) && !defined(__clang__) && defined(__x86_64__)
__attribute__((target_clones("avx2", "default")))
#endif
static float
sum_range(const float *p, size_t n) {
  v8 s0 = {0}, s1 = {0}, s2 = {0}, s3 = {0};
  size_t i = 0;
  for (; i + 32 <= n; i += 32) {
    s0 += load8(p + i);
    s1 += load8(p + i + 8);
    s2 += load8(p + i + 16);
    s3 += load8(p + i + 24);
  }
  const v8 s = (s0 + s1) + (s2 + s3);
  float total = 0.0f;
  for (int j = 0; j < 8; j++) total += s[j];
  for (; i < n; i++) total += p[i];
  return total;
}

/* Sums of W, one contiguous range per thread: the read speed the passes compare with. */
static float read_sink;
static void read_all(const bufs *b) {
  const size_t count = (size_t)b->n * b->k;
  float total = 0.0f;
#pragma omp parallel reduction(+ : total)
  {
    const size_t nt = (size_t)omp_get_num_threads(), t = (size_t)omp_get_thread_num();
    const size_t lo = count * t / nt, hi = count * (t + 1) / nt;
    total += sum_range(b->w + lo, hi - lo);
  }
  read_sink += total;
}

static void run_op(int op, bool stream, const bufs *b) {
  switch (op) {
  case FWD:
    if (stream)
      crema_fc_stream_forward(b->m, b->n, b->k, b->x, b->w, NULL, b->y, b->scratch);
    else
      crema_gemm(false, true, b->m, b->n, b->k, 1.0f, b->x, b->w, 0.0f, b->y);
    break;
  case DX:
    if (stream)
      crema_fc_stream_backward_data(b->m, b->n, b->k, b->dy, b->w, b->dx);
    else
      crema_gemm(false, false, b->m, b->k, b->n, 1.0f, b->dy, b->w, 0.0f, b->dx);
    break;
  case DW:
    if (stream)
      crema_fc_stream_backward_weights(b->m, b->n, b->k, b->dy, b->x, b->dw, false, b->scratch);
    else
      crema_gemm(true, false, b->n, b->k, b->m, 1.0f, b->dy, b->x, 1.0f, b->dw);
    break;
  case DW_SET: /* the solver marked dW zero: the pass writes it without reading it */
    if (stream)
      crema_fc_stream_backward_weights(b->m, b->n, b->k, b->dy, b->x, b->dw, true, b->scratch);
    else
      crema_gemm(true, false, b->n, b->k, b->m, 1.0f, b->dy, b->x, 0.0f, b->dw);
    break;
  default: read_all(b);
  }
}

static void fill(float *v, size_t n, unsigned seed) {
#pragma omp parallel for schedule(static)
  for (size_t i = 0; i < n; i++) v[i] = (float)(((i * 2654435761u) ^ seed) & 0xffff) / 65536.0f - 0.5f;
}

int main(int argc, char **argv) {
  crema_tool_init(argc, argv);
  const bool quick = argc > 1 && strstr(argv[1], "quick");
  const double budget = quick ? 0.0 : 0.3;
  printf("OpenBLAS kernel: %s, %d BLAS threads, %d OpenMP threads\n", crema_blas_corename(),
         crema_blas_threads(), omp_get_max_threads());
  printf("ms = best of the repetitions; /read = (bytes the pass must move / ms) / (GB/s of a plain read of "
         "W)\n\n");
  printf("| layer | m x n x k | W MB | read W ms | forward ms: stream / OpenBLAS | /read "
         "| data gradient ms: stream / OpenBLAS | /read | weight gradient ms: stream / OpenBLAS | /read "
         "| weight gradient, dW marked zero, ms: stream / OpenBLAS | /read |\n");
  printf("| --- | --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: |\n");
  for (size_t c = 0; c < sizeof CASES / sizeof CASES[0]; c++) {
    const fc_case *fc = &CASES[c];
    bufs b = {.m = fc->m, .n = fc->n, .k = fc->k};
    const size_t wn = (size_t)fc->n * fc->k;
    b.x = crema_aligned_alloc((size_t)fc->m * fc->k * sizeof(float));
    b.dx = crema_aligned_alloc((size_t)fc->m * fc->k * sizeof(float));
    b.y = crema_aligned_alloc((size_t)fc->m * fc->n * sizeof(float));
    b.dy = crema_aligned_alloc((size_t)fc->m * fc->n * sizeof(float));
    b.w = crema_aligned_alloc(wn * sizeof(float));
    b.dw = crema_aligned_alloc(wn * sizeof(float));
    b.scratch = crema_aligned_alloc(crema_fc_stream_scratch_floats(fc->m, fc->k) * sizeof(float));
    if (!b.x || !b.dx || !b.y || !b.dy || !b.w || !b.dw || !b.scratch) {
      fprintf(stderr, "error: out of memory for %s\n", fc->name);
      return 1;
    }
    fill(b.x, (size_t)fc->m * fc->k, 1);
    fill(b.dy, (size_t)fc->m * fc->n, 2);
    fill(b.w, wn, 3);
    fill(b.dw, wn, 4);
    double best[N_OPS][2];
    for (int op = 0; op < N_OPS; op++) best[op][0] = best[op][1] = 1e30;
    const double start = bench_now();
    for (int rep = 0; rep < 2 || bench_now() - start < budget * N_OPS; rep++)
      for (int op = 0; op < N_OPS; op++)
        for (int path = 0; path < (op == READ ? 1 : 2); path++) {
          const double t0 = bench_now();
          run_op(op, path == 0, &b);
          const double dt = bench_now() - t0;
          if (dt < best[op][path]) best[op][path] = dt;
        }
    const double mb = (double)wn * sizeof(float) / 1e6, read_gbs = mb / 1e3 / best[READ][0];
    const double moved[N_OPS] = {mb, mb, 2 * mb, mb, mb};
    printf("| %s | %d x %d x %d | %.0f | %.1f |", fc->name, fc->m, fc->n, fc->k, mb, best[READ][0] * 1e3);
    for (int op = FWD; op <= DW_SET; op++)
      printf(" %.1f / %.1f | %.2f |", best[op][0] * 1e3, best[op][1] * 1e3,
             moved[op] / 1e3 / best[op][0] / read_gbs);
    printf("\n");
    fflush(stdout);
    crema_aligned_free(b.x);
    crema_aligned_free(b.dx);
    crema_aligned_free(b.y);
    crema_aligned_free(b.dy);
    crema_aligned_free(b.w);
    crema_aligned_free(b.dw);
    crema_aligned_free(b.scratch);
  }
  return read_sink == 12345.0f; /* keeps the reads */
}
