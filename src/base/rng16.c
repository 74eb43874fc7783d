/* rng16.c -- seeding sixteen lane generators, and the runs of a pass (rng16.h). */
#include "base/rng16.h"

#include "base/rng.h"
#include "base/v16.h"

void crema_rng16_seed(crema_rng16 *g, uint64_t key, uint64_t first) {
  for (int j = 0; j < 16; j++) {
    crema_rng r;
    crema_rng_seed(&r, key, first + (uint64_t)j);
    for (int w = 0; w < 4; w++) g->s[w][j] = r.s[w];
  }
}

void crema_rng16_runs(uint64_t key, size_t n, bool parallel, crema_rng16_run_fn fn, crema_rng16_run_fn fn16,
                      bool wide, void *ctx) {
  const size_t runs = (n + CREMA_RNG16_RUN - 1) / CREMA_RNG16_RUN;
  if (fn16 && wide && crema_cpu_v16()) fn = fn16;
#pragma omp parallel for if (parallel) schedule(static)
  for (size_t c = 0; c < runs; c++) {
    crema_rng16 g;
    crema_rng16_seed(&g, key, 16 * (uint64_t)c);
    const size_t begin = c * CREMA_RNG16_RUN;
    fn(ctx, &g, begin, n - begin < CREMA_RNG16_RUN ? n - begin : CREMA_RNG16_RUN);
  }
}
