/* pooling_simd.h -- what the pooling files share for their vector planes: POOL_AVX2 (gcc on
 * x86-64, the 8-wide code chosen when the layer runs on a CPU that has AVX2), one kernel tap
 * of eight outputs side by side, row copies, and the next plane's prefetch. */
#ifndef CREMA_LAYERS_POOLING_SIMD_H
#define CREMA_LAYERS_POOLING_SIMD_H

#if defined(__GNUC__) && !defined(__clang__) && defined(__x86_64__) && !defined(CREMA_NO_CLONES)
#include <immintrin.h>
#include <stddef.h>

#include "base/v16.h" /* CREMA_V16_TARGET */
#define POOL_AVX2 1
#define POOL_AVX2_FN __attribute__((target("avx2")))

#define POOL_INLINE static inline __attribute__((always_inline))

/* Tap kw of eight outputs whose windows start at p, p + stride, ..., stride 1 or 2, "turned":
 * with stride 2 the even floats of the sixteen from p + kw (reads p[kw .. kw + 15]) in the
 * lane order 0 1 4 5 2 3 6 7, as one shuffle leaves them. Lane-wise work (a max and its
 * argmax, a sum) runs as well in that order and turns the result back once per group with
 * turn8: one shuffle a tap instead of two. */
POOL_AVX2_FN POOL_INLINE __m256 tap8_turned(const float *p, int stride, int kw) {
  if (stride == 1) return _mm256_loadu_ps(p + kw);
  const __m256 a = _mm256_loadu_ps(p + kw), b = _mm256_loadu_ps(p + kw + 8);
  return _mm256_shuffle_ps(a, b, _MM_SHUFFLE(2, 0, 2, 0)); /* {a0 a2 b0 b2 | a4 a6 b4 b6} */
}

/* Turned order to plain, or back (with stride 2 the swap of the middle 64-bit quarters). */
POOL_AVX2_FN POOL_INLINE __m256 turn8(__m256 v, int stride) {
  if (stride == 1) return v;
  return _mm256_castpd_ps(_mm256_permute4x64_pd(_mm256_castps_pd(v), _MM_SHUFFLE(3, 1, 2, 0)));
}

/* The next plane, fetched a share per output row while this plane's taps run: the copy at
 * the top of the next plane's pass then reads from cache instead of waiting on memory
 * (pooling.c hands over the next plane only for planes of 8 KB or more). */
typedef struct pool_prefetch {
  const float *next;   /* NULL: nothing to fetch */
  size_t lines, share; /* its 64-byte lines, and how many per output row */
} pool_prefetch;

POOL_INLINE pool_prefetch pool_prefetch_plan(const float *next, size_t floats, int rows) {
  pool_prefetch p = {next, 0, 0};
  if (next) {
    p.lines = (floats + 15) / 16;
    p.share = (p.lines + (size_t)rows - 1) / (size_t)rows;
  }
  return p;
}

POOL_INLINE void pool_prefetch_row(const pool_prefetch *p, int row) {
  if (!p->next) return;
  for (size_t i = (size_t)row * p->share; i < p->lines && i < (size_t)(row + 1) * p->share; i++)
    _mm_prefetch((const char *)(p->next + 16 * i), _MM_HINT_T0);
}

/* n floats from src to dst eight at a time: a memcpy call per short row (a 56-wide plane's)
 * cost as much as the row's taps. */
POOL_AVX2_FN POOL_INLINE void copy_floats8(float *dst, const float *src, int n) {
  int i = 0;
  for (; i + 8 <= n; i += 8) _mm256_storeu_ps(dst + i, _mm256_loadu_ps(src + i));
  for (; i < n; i++) dst[i] = src[i];
}

/* Sixteen outputs of a MAX plane (ph rows of pw, pw > 8) and their argmaxes, at row oh and
 * column ow: whole stores but in the plane's last row, so that a row's last group spills into
 * the next row, which is written after it (at most 7 floats, inside that row). Masked stores
 * that cross a line are slow on Zen 5, and most rows' tails do: in every row they made
 * GoogLeNet's 14-wide inception pools 1.36x slower than eight lanes. */
CREMA_V16_TARGET POOL_INLINE void store_max16(float *y, int *mask, int ph, int pw, int oh, int ow,
                                              __m512 best, __m512i arg) {
  float *d = y + (size_t)oh * pw + ow;
  int *m = mask + (size_t)oh * pw + ow;
  if (ow + 16 <= pw || oh + 1 < ph) {
    _mm512_storeu_ps(d, best);
    _mm512_storeu_si512(m, arg);
  } else {
    const __mmask16 keep = (__mmask16)((1u << (pw - ow)) - 1);
    _mm512_mask_storeu_ps(d, keep, best);
    _mm512_mask_storeu_epi32(m, keep, arg);
  }
}

/* The same sixteen at a time (AVX-512, for the sixteen-wide passes). A tail of a row of 16 or
 * more is one more whole copy ending at n (overlapping the last one); only shorter rows take
 * a mask (masked loads and stores that cross a line are slow on Zen 5). */
CREMA_V16_TARGET POOL_INLINE void copy_floats16(float *dst, const float *src, int n) {
  int i = 0;
  for (; i + 16 <= n; i += 16) _mm512_storeu_ps(dst + i, _mm512_loadu_ps(src + i));
  if (i < n && n >= 16) {
    _mm512_storeu_ps(dst + n - 16, _mm512_loadu_ps(src + n - 16));
  } else if (i < n) {
    const __mmask16 m = (__mmask16)((1u << (n - i)) - 1);
    _mm512_mask_storeu_ps(dst + i, m, _mm512_maskz_loadu_ps(m, src + i));
  }
}
#endif

#endif
