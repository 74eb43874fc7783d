/* v8.h -- eight floats as one value (gcc's and clang's vector extension), for kernels written
 * once for every vector width: with CREMA_CLONES the AVX2 copy holds a v8 in one register,
 * the baseline copy in two. Only for static functions: a v8 never crosses a non-static
 * function's ABI (whence -Wpsabi off). */
#ifndef CREMA_BASE_V8_H
#define CREMA_BASE_V8_H

#include <stddef.h>
#include <string.h>

typedef float v8 __attribute__((vector_size(32)));
typedef int i8 __attribute__((vector_size(32))); /* a comparison's lanes: -1 or 0 */
#pragma GCC diagnostic ignored "-Wpsabi"

/* Lanes of a and b (0-7 a's, 8-15 b's) in the order given: gcc's and clang's builtins (the
 * fuzz build uses clang, which lacks __builtin_shuffle). */
#if defined(__clang__)
#define V8_SHUF(a, b, ...) __builtin_shufflevector(a, b, __VA_ARGS__)
#else
#define V8_SHUF(a, b, ...) __builtin_shuffle(a, b, (i8){__VA_ARGS__})
#endif

static inline __attribute__((always_inline)) v8 load8(const float *p) {
  v8 v;
  memcpy(&v, p, sizeof v);
  return v;
}

static inline __attribute__((always_inline)) void store8(float *p, v8 v) { memcpy(p, &v, sizeof v); }

static inline __attribute__((always_inline)) v8 v8_splat(float f) { return (v8){f, f, f, f, f, f, f, f}; }

/* Lanes where m is set (a comparison's -1) take a, the others b. */
static inline __attribute__((always_inline)) v8 v8_select(i8 m, v8 a, v8 b) {
  return (v8)(((i8)a & m) | ((i8)b & ~m));
}

/* The first k (1..8) floats at p, the other lanes 0: a blob's last, partial group of eight,
 * so that it goes through the same vector code as the rest (and gives the same bits). */
static inline __attribute__((always_inline)) v8 load8_part(const float *p, size_t k) {
  if (k >= 8) return load8(p);
  v8 v = {0};
  memcpy(&v, p, k * sizeof(float));
  return v;
}

static inline __attribute__((always_inline)) void store8_part(float *p, v8 v, size_t k) {
  if (k >= 8)
    store8(p, v);
  else
    memcpy(p, &v, k * sizeof(float));
}

/* sum a[i] and sum a[i] * b[i] over n elements the project's one way (crema_sum_floats,
 * crema_dot_floats, BatchNorm's statistics): eight float partial sums, lane j holding the
 * elements j mod 8, so the loop is not bound by one chain of dependent adds; then the tail
 * in double, then the eight partials in lane order. Every copy, whatever its vector width,
 * gives the same bits. */
static inline __attribute__((always_inline)) double sum8(const float *a, size_t n) {
  v8 p = {0};
  size_t i = 0;
  for (; i + 8 <= n; i += 8) p += load8(a + i);
  double s = 0.0;
  for (; i < n; i++) s += a[i];
  for (int j = 0; j < 8; j++) s += p[j];
  return s;
}

static inline __attribute__((always_inline)) double dot8(const float *a, const float *b, size_t n) {
  v8 p = {0};
  size_t i = 0;
  for (; i + 8 <= n; i += 8) p += load8(a + i) * load8(b + i);
  double s = 0.0;
  for (; i < n; i++) s += (double)a[i] * b[i];
  for (int j = 0; j < 8; j++) s += p[j];
  return s;
}

#endif
