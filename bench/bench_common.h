/* bench_common.h -- the small pieces every benchmark program uses. Header-only, since
 * every benchmark program is one .c file in bench/. */
#ifndef CREMA_BENCH_COMMON_H
#define CREMA_BENCH_COMMON_H

#include <stdio.h>
#include <stdlib.h>
#include <time.h>

#include "base/error.h"

/* Monotonic seconds. */
static inline double bench_now(void) {
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return (double)ts.tv_sec + 1e-9 * (double)ts.tv_nsec;
}

/* Benchmarks stop at the first failure: there is nothing sensible to measure after it. */
static inline void bench_die(const char *what, const crema_error *err) {
  fprintf(stderr, "error: %s: %s\n", what, err->msg);
  exit(1);
}

#endif
