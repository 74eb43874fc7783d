/* v8.h -- eight floats as one value (gcc's and clang's vector extension), for kernels written
 * once for every vector width: with CREMA_CLONES the AVX2 copy holds a v8 in one register,
 * the baseline copy in two. Only for static functions: a v8 never crosses a non-static
 * function's ABI (whence -Wpsabi off). */
#ifndef CREMA_BASE_V8_H
#define CREMA_BASE_V8_H

#include <string.h>

typedef float v8 __attribute__((vector_size(32)));
typedef int i8 __attribute__((vector_size(32))); /* a comparison's lanes: -1 or 0 */
#pragma GCC diagnostic ignored "-Wpsabi"

static inline __attribute__((always_inline)) v8 load8(const float *p) {
  v8 v;
  memcpy(&v, p, sizeof v);
  return v;
}

static inline __attribute__((always_inline)) void store8(float *p, v8 v) { memcpy(p, &v, sizeof v); }

#endif
