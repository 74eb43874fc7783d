/* pooling_max_v16.c -- MAX pooling forward, sixteen outputs at a time (AVX-512).
 *
 * Per kernel tap: one load (stride 1) or two and one two-source permute that takes their even
 * floats (stride 2), a compare into a mask register, a max, and a masked add that writes the
 * tap's flat index only in the lanes it wins. The eight-wide AVX2 pass spends a shuffle, a
 * compare, a max, an add and a blend on half as many outputs. MAXPS returns its second
 * operand unless the first is strictly greater (NaN included), exactly the window loop's
 * `if (v > best) best = v`, and the compare sets the mask under the same condition, so values
 * and argmaxes, ties included, are those of the loop. Padding cells hold -FLT_MAX and never
 * win, so windows clipped by the edges need no special case. */
#include "layers/pooling_max_v16.h"

#include <float.h>

#include "base/v16.h"
#include "layers/pooling_simd.h"

#if CREMA_V16
#include <immintrin.h>

bool crema_pool_max_v16_available(void) { return crema_cpu_v16(); }

#define V16_INLINE static inline __attribute__((always_inline))

/* Tap kw of sixteen outputs whose windows start at p, p + stride, ...: with stride 2 the even
 * floats of p[kw .. kw + 31]. */
CREMA_V16_TARGET V16_INLINE __m512 tap16(const float *p, int stride, int kw, __m512i evens) {
  if (stride == 1) return _mm512_loadu_ps(p + kw);
  return _mm512_permutex2var_ps(_mm512_loadu_ps(p + kw), evens, _mm512_loadu_ps(p + kw + 16));
}

/* G (1 or 2) groups of sixteen outputs of row oh side by side, from column ow. One group's
 * taps are a chain: each compare and max waits for the max before it. Two groups' chains
 * interleave: 56x56 planes in cache (3x3 stride 2, one thread of a Zen 5 EPYC), 0.77 -> 0.67
 * us a plane. */
CREMA_V16_TARGET V16_INLINE void groups16(const crema_pool_pad *g, const float *pad, float *y, int *mask,
                                          int KH, int KW, int sw, int oh, int y0, int ow, int G,
                                          __m512i lanes, __m512i evens) {
  __m512 best[2];
  __m512i arg[2], base[2];
  for (int i = 0; i < G; i++) {
    /* padded cell (y0 + kh, x0 + lane * sw + kw) is input cell
     * (y0 + kh - pad_h) * W + x0 - pad_w + lane * sw + kw */
    base[i] = _mm512_add_epi32(_mm512_set1_epi32((ow + 16 * i) * sw - g->pad_w), lanes);
    best[i] = _mm512_set1_ps(-FLT_MAX);
    arg[i] = _mm512_set1_epi32(-1);
  }
  for (int kh = 0; kh < KH; kh++) {
    const float *p = pad + (size_t)(y0 + kh) * g->wp + (size_t)ow * sw;
    const int row_index = (y0 + kh - g->pad_h) * g->w;
    for (int kw = 0; kw < KW; kw++) {
      const __m512i idx = _mm512_set1_epi32(row_index + kw);
      for (int i = 0; i < G; i++) {
        const __m512 v = tap16(p + 16 * i * sw, sw, kw, evens);
        const __mmask16 gt = _mm512_cmp_ps_mask(v, best[i], _CMP_GT_OQ);
        best[i] = _mm512_max_ps(v, best[i]);
        arg[i] = _mm512_mask_add_epi32(arg[i], gt, base[i], idx);
      }
    }
  }
  for (int i = 0; i < G; i++) store_max16(y, mask, g->ph, g->pw, oh, ow + 16 * i, best[i], arg[i]);
}

CREMA_V16_TARGET V16_INLINE void forward_k(const crema_pool_pad *g, const float *x, const float *next,
                                           float *y, int *mask, float *pad, int KH, int KW, int sh, int sw) {
  const int W = g->w, PH = g->ph, PW = g->pw, WP = g->wp;
  /* the input rows, at columns pad_w on (clipped to the copy's width) */
  const int n_cols = W < WP - g->pad_w ? W : WP - g->pad_w;
  for (int r = 0; r < g->h && g->pad_h + r < g->hp && n_cols > 0; r++)
    copy_floats16(pad + (size_t)(g->pad_h + r) * WP + g->pad_w, x + (size_t)r * W, n_cols);
  const __m512i evens = _mm512_setr_epi32(0, 2, 4, 6, 8, 10, 12, 14, 16, 18, 20, 22, 24, 26, 28, 30);
  const __m512i lanes = _mm512_mullo_epi32(
      _mm512_setr_epi32(0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15), _mm512_set1_epi32(sw));
  const pool_prefetch ahead = pool_prefetch_plan(next, (size_t)g->h * W, PH);
  for (int oh = 0; oh < PH; oh++) {
    pool_prefetch_row(&ahead, oh);
    const int y0 = oh * sh;
    int ow = 0;
    for (; ow + 16 < PW; ow += 32) groups16(g, pad, y, mask, KH, KW, sw, oh, y0, ow, 2, lanes, evens);
    if (ow < PW) groups16(g, pad, y, mask, KH, KW, sw, oh, y0, ow, 1, lanes, evens);
  }
}

/* The kernel and strides as constants for GoogLeNet's, CaffeNet's and ResNet's 3x3 stride-2
 * pools, so the tap loops unroll. */
CREMA_V16_TARGET void crema_pool_max_v16_forward(const crema_pool_pad *g, const float *x, const float *next,
                                                 float *y, int *mask, float *pad) {
  if (g->kh == 3 && g->kw == 3 && g->sh == 2 && g->sw == 2)
    forward_k(g, x, next, y, mask, pad, 3, 3, 2, 2);
  else if (g->sw == 2)
    forward_k(g, x, next, y, mask, pad, g->kh, g->kw, g->sh, 2);
  else
    forward_k(g, x, next, y, mask, pad, g->kh, g->kw, g->sh, 1);
}
#else
bool crema_pool_max_v16_available(void) { return false; }

void crema_pool_max_v16_forward(const crema_pool_pad *g, const float *x, const float *next, float *y,
                                int *mask, float *pad) {
  (void)g;
  (void)x;
  (void)next;
  (void)y;
  (void)mask;
  (void)pad;
}
#endif
