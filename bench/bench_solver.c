/* bench_solver -- throughput of one whole solver update (clip check, normalize, regularize,
 * rule, apply) per update rule, on a LeNet-sized parameter set (431,080 floats) and a
 * 16 M-float one, with 1 thread and with every OpenMP thread.
 *
 *   bench_solver            ~0.3 s of timing per measurement
 *   bench_solver -quick     one repetition each (a smoke run)
 *
 * Mparam/s = parameters updated per second. GB/s counts the float arrays a step must touch
 * at least: data (read+write), diff (read+write), and each history array (read+write). */
#include <omp.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "bench_common.h"
#include "base/mem.h"
#include "common/tool.h"
#include "solver/update.h"
#include "tensor/math.h"

/* Seconds per step, timing whole steps for at least min_seconds. */
static double time_rule(const crema_update_rule *rule, size_t n, float *data, float *diff, float *h0,
                        float *h1, double min_seconds) {
  crema_update_config c = {rule, {0.9f, 0.999f, 1e-8f, 0.99f}, 5e-4f, CREMA_REG_L2, -1.0f, 1};
  crema_update_param p = {data, diff, n, 1.0f, 1.0f, {h0, h1}};
  int steps = 0;
  double t0 = bench_now(), t = t0;
  do {
    /* Refresh the gradient cheaply so the values stay finite and the loop cannot be skipped. */
    diff[steps % n] = 1e-3f;
    const double ss = crema_update_grad_sumsq(&p, 1);
    crema_update_step(&c, &p, 1, ss, 1e-3f, steps, NULL);
    steps++;
    t = bench_now();
  } while (t - t0 < min_seconds);
  return (t - t0) / steps;
}

int main(int argc, char **argv) {
  crema_tool_init(argc, argv);
  const bool quick = argc > 1 && !strcmp(argv[1], "-quick");
  const double min_seconds = quick ? 0.0 : 0.3;
  const crema_update_rule *rules[] = {&crema_update_sgd,     &crema_update_nesterov, &crema_update_adagrad,
                                      &crema_update_rmsprop, &crema_update_adadelta, &crema_update_adam};
  const size_t sizes[] = {431080, 16u << 20};
  const int max_threads = omp_get_max_threads();
  printf("bench_solver: OpenBLAS kernel %s (not used by the update), %d OpenMP threads\n\n",
         crema_blas_corename(), max_threads);
  printf("%-9s %10s %7s %10s %10s %8s\n", "rule", "params", "threads", "ms/step", "Mparam/s", "GB/s");
  for (size_t si = 0; si < CREMA_ARRAY_LEN(sizes); si++) {
    const size_t n = sizes[si];
    float *data = crema_aligned_alloc(n * sizeof(float)), *diff = crema_aligned_alloc(n * sizeof(float));
    float *h0 = crema_aligned_alloc(n * sizeof(float)), *h1 = crema_aligned_alloc(n * sizeof(float));
    if (!data || !diff || !h0 || !h1) {
      fprintf(stderr, "error: out of memory for %zu parameters\n", n);
      return 1;
    }
    for (size_t i = 0; i < n; i++) {
      data[i] = (float)(i % 97) * 1e-3f;
      diff[i] = (float)(i % 89) * 1e-4f;
    }
    for (size_t r = 0; r < CREMA_ARRAY_LEN(rules); r++) {
      const int thread_counts[] = {1, max_threads};
      for (int ti = 0; ti < (max_threads > 1 ? 2 : 1); ti++) {
        omp_set_num_threads(thread_counts[ti]);
        memset(h0, 0, n * sizeof(float));
        memset(h1, 0, n * sizeof(float));
        const double sec = time_rule(rules[r], n, data, diff, h0, h1, min_seconds);
        const double bytes = (double)n * sizeof(float) * 2.0 * (2 + rules[r]->n_history);
        printf("%-9s %10zu %7d %10.3f %10.1f %8.2f\n", rules[r]->type, n, thread_counts[ti], sec * 1e3,
               (double)n / sec / 1e6, bytes / sec / 1e9);
      }
    }
    omp_set_num_threads(max_threads);
    crema_aligned_free(data);
    crema_aligned_free(diff);
    crema_aligned_free(h0);
    crema_aligned_free(h1);
  }
  return 0;
}
