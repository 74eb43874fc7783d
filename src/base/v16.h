/* v16.h -- sixteen floats as one value, the AVX-512 width of v8.h's kernels: a kernel written
 * for v16 and built under CREMA_V16_TARGET holds one in a 512-bit register. Such copies sit
 * beside the v8 ones and are chosen at run time by crema_cpu_v16(); lane for lane they do the
 * same operations, so they give the same bits on twice the lanes. Only for static functions:
 * a v16 never crosses a non-static function's ABI (whence -Wpsabi off, in v8.h). */
#ifndef CREMA_BASE_V16_H
#define CREMA_BASE_V16_H

#include <stdbool.h>
#include <stddef.h>
#include <string.h>

#include "base/v8.h"

typedef float v16 __attribute__((vector_size(64)));
typedef int i16 __attribute__((vector_size(64))); /* a comparison's lanes: -1 or 0 */

/* CREMA_V16: gcc on x86-64 builds the 16-wide copies (the same condition as CREMA_CLONES:
 * clang and CREMA_NO_CLONES builds keep the eight-wide code alone). */
#if defined(__GNUC__) && !defined(__clang__) && defined(__x86_64__) && !defined(CREMA_NO_CLONES)
#define CREMA_V16 1
#define CREMA_V16_TARGET __attribute__((target("arch=x86-64-v4")))
static inline bool crema_cpu_v16(void) { return __builtin_cpu_supports("x86-64-v4"); }
#else
#define CREMA_V16 0
#define CREMA_V16_TARGET
static inline bool crema_cpu_v16(void) { return false; }
#endif

static inline __attribute__((always_inline)) v16 load16(const float *p) {
  v16 v;
  memcpy(&v, p, sizeof v);
  return v;
}

static inline __attribute__((always_inline)) void store16(float *p, v16 v) { memcpy(p, &v, sizeof v); }

static inline __attribute__((always_inline)) v16 v16_splat(float f) {
  return (v16){f, f, f, f, f, f, f, f, f, f, f, f, f, f, f, f};
}

/* Lanes where m is set (a comparison's -1) take a, the others b. */
static inline __attribute__((always_inline)) v16 v16_select(i16 m, v16 a, v16 b) {
  return (v16)(((i16)a & m) | ((i16)b & ~m));
}

/* The first k (1..16) floats at p, the other lanes 0 (as load8_part). */
static inline __attribute__((always_inline)) v16 load16_part(const float *p, size_t k) {
  if (k >= 16) return load16(p);
  v16 v = {0};
  memcpy(&v, p, k * sizeof(float));
  return v;
}

#if CREMA_V16
/* lo in lanes 0-7, hi in lanes 8-15 (gcc 12's builtin; the v16 kernels are gcc's alone). */
static inline __attribute__((always_inline)) v16 v16_join(v8 lo, v8 hi) {
  return __builtin_shufflevector(lo, hi, 0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15);
}
#endif

static inline __attribute__((always_inline)) void store16_part(float *p, v16 v, size_t k) {
  if (k >= 16)
    store16(p, v);
  else
    memcpy(p, &v, k * sizeof(float));
}

#endif
