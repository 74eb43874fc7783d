/* pooling_simd.h -- what the pooling files share for their AVX2 planes: POOL_AVX2 (gcc on
 * x86-64, the 8-wide code chosen when the layer runs on a CPU that has AVX2) and tap8, one
 * kernel tap of eight outputs side by side. */
#ifndef CREMA_LAYERS_POOLING_SIMD_H
#define CREMA_LAYERS_POOLING_SIMD_H

#if defined(__GNUC__) && !defined(__clang__) && defined(__x86_64__) && !defined(CREMA_NO_CLONES)
#include <immintrin.h>
#define POOL_AVX2 1
#define POOL_AVX2_FN __attribute__((target("avx2")))

/* Tap kw of eight outputs whose windows start at p, p + stride, ..., stride 1 or 2: with
 * stride 2 the even floats of the sixteen from p + kw (reads p[kw .. kw + 15]). */
POOL_AVX2_FN static inline __attribute__((always_inline)) __m256 tap8(const float *p, int stride, int kw) {
  if (stride == 1) return _mm256_loadu_ps(p + kw);
  const __m256 a = _mm256_loadu_ps(p + kw), b = _mm256_loadu_ps(p + kw + 8);
  /* {a0 a2 b0 b2 | a4 a6 b4 b6}, then its 64-bit quarters in the order 0 2 1 3 */
  const __m256 e = _mm256_shuffle_ps(a, b, _MM_SHUFFLE(2, 0, 2, 0));
  return _mm256_castpd_ps(_mm256_permute4x64_pd(_mm256_castps_pd(e), _MM_SHUFFLE(3, 1, 2, 0)));
}
#endif

#endif
