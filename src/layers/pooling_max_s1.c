/* pooling_max_s1.c -- MAX pooling with stride 1 both ways, one plane at a time.
 *
 * Forward: a window's first maximum in row-major order is the first maximum among its rows'
 * first maxima, taken top to bottom (a later row wins only when strictly greater, as a later
 * cell does in the window loop). So each output costs kh + kw comparisons instead of kh * kw:
 * a row pass keeps, for every input row and output column, the row's maximum over the window's
 * columns and its column; a column pass takes the maximum of those down the window's rows.
 * The row pass reads a copy of the row padded with -FLT_MAX, which never wins (the window loop
 * starts from -FLT_MAX and needs strictly greater), so there are no border cases. With AVX2
 * both passes hold eight outputs' maxima and argmaxes in registers across the taps: MAXPS
 * returns its second operand unless the first is strictly greater (NaN included), exactly the
 * window loop's `if (v > best) best = v`.
 * Backward stays Caffe's scatter by the argmax (pooling.c). Gathering instead, each input
 * summing in output order the gradients of the kh x kw outputs that might name it, gave the
 * same bits without the zeroing pass but ran slower: 6.0-6.2 ms against 3.9 on a
 * (32, 64, 56, 56) blob, one thread, with four groups of eight inputs summed side by side. */
#include "layers/pooling_max_s1.h"

#include <float.h>
#include <stdbool.h>
#include <string.h>

#include "base/v16.h"
#include "layers/pooling_simd.h"

#if defined(__GNUC__) && !defined(__clang__) && defined(__x86_64__) && !defined(CREMA_NO_CLONES)
#include <immintrin.h>
#define S1_AVX2 1
#define AVX2 __attribute__((target("avx2")))
#endif

/* Output columns rounded up to whole groups of eight (sixteen when g->wide): the row pass's
 * row width. */
static int group_cols(const crema_pool_s1 *g) { return g->wide ? (g->pw + 15) & ~15 : (g->pw + 7) & ~7; }

/* The padded row: every column a group reads (group_cols + kw - 1), and a group to spare. */
static int row_floats(const crema_pool_s1 *g) { return group_cols(g) + g->kw + (g->wide ? 15 : 7); }

/* The row pass's rows: the input's, and pad_h rows of -FLT_MAX above and below for the AVX2
 * column pass, which then reads kh rows for every output without clipping. */
static int rows_padded(const crema_pool_s1 *g) { return g->h + 2 * g->pad_h; }

/* A padded row's floats in the vector copies of the whole plane, in whole groups. */
static size_t row_stride(const crema_pool_s1 *g) {
  const size_t group = g->wide ? 16 : 8;
  return ((size_t)row_floats(g) + group - 1) & ~(group - 1);
}

size_t crema_pool_s1_scratch_floats(const crema_pool_s1 *g) {
  return 2 * (size_t)rows_padded(g) * group_cols(g) + (size_t)g->h * row_stride(g);
}

/* The padded row's columns outside the input, once per plane (the copies overwrite only the
 * input's columns). */
static void row_border(const crema_pool_s1 *g, float *row) {
  for (int i = 0; i < row_floats(g); i++)
    if (i < g->pad_w || i >= g->pad_w + g->w) row[i] = -FLT_MAX;
}

/* Input rows [hs, he) of the window of output row oh. */
static void window_rows(const crema_pool_s1 *g, int oh, int *hs, int *he) {
  const int start = oh - g->pad_h, end = start + g->kh;
  *hs = start < 0 ? 0 : start;
  *he = end < g->h ? end : g->h;
}

#if defined(S1_AVX2)
#define AVX2_INLINE AVX2 static inline __attribute__((always_inline))

/* Both passes with kh and kw constants where inlined (3 x 3), so the tap loops unroll.
 * Row pass: from a copy of the whole plane whose rows are padded with -FLT_MAX, made before
 * any of it is read. Copying one row and then reading it, its loads waited for the copy's
 * stores (store-to-load forwarding fails on a load that spans several stores): a third of
 * the time on GoogLeNet's 7x7 planes.
 * Column pass: rmax has pad_h rows of -FLT_MAX above and below the input's, so every output
 * reads kh rows without clipping; those rows never win (strictly greater is needed). */
AVX2_INLINE void forward_k(const crema_pool_s1 *g, const float *x, const float *next, float *y, int *mask,
                           float *scratch, int KH, int KW) {
  const int H = g->h, W = g->w, PH = g->ph, PW = g->pw, C8 = group_cols(g), pad_w = g->pad_w;
  const size_t plane8 = (size_t)rows_padded(g) * C8, RS = row_stride(g);
  float *rmax = scratch, *pad = scratch + 2 * plane8;
  int *rarg = (int *)(void *)(scratch + plane8);
  const __m256i lanes = _mm256_setr_epi32(0, 1, 2, 3, 4, 5, 6, 7);
  const __m256 lowest = _mm256_set1_ps(-FLT_MAX);
  for (size_t i = 0; i < (size_t)g->pad_h * C8; i++) {
    rmax[i] = -FLT_MAX;
    rmax[plane8 - 1 - i] = -FLT_MAX;
  }
  for (int ih = 0; ih < H; ih++) {
    float *prow = pad + (size_t)ih * RS;
    const float *xrow = x + (size_t)ih * W;
    for (size_t i = 0; i < RS; i += 8) _mm256_store_ps(prow + i, lowest);
    int i = 0;
    for (; i + 8 <= W; i += 8) _mm256_storeu_ps(prow + pad_w + i, _mm256_loadu_ps(xrow + i));
    for (; i < W; i++) prow[pad_w + i] = xrow[i];
  }
  for (int ih = 0; ih < H; ih++) {
    const float *prow = pad + (size_t)ih * RS;
    float *rm = rmax + (size_t)(ih + g->pad_h) * C8;
    int *ra = rarg + (size_t)(ih + g->pad_h) * C8;
    for (int ow = 0; ow < C8; ow += 8) {
      /* padded column ow + lane + kw is input column ow + lane + kw - pad_w */
      const __m256i col0 = _mm256_add_epi32(_mm256_set1_epi32(ow - pad_w), lanes);
      __m256 best = lowest;
      __m256 arg = _mm256_castsi256_ps(_mm256_set1_epi32(-1));
      for (int kw = 0; kw < KW; kw++) {
        const __m256 v = _mm256_loadu_ps(prow + ow + kw), gt = _mm256_cmp_ps(v, best, _CMP_GT_OQ);
        best = _mm256_max_ps(v, best);
        arg = _mm256_blendv_ps(arg, _mm256_castsi256_ps(_mm256_add_epi32(col0, _mm256_set1_epi32(kw))), gt);
      }
      _mm256_store_ps(rm + ow, best);
      _mm256_store_ps((float *)(ra + ow), arg);
    }
  }
  const __m256i tail = _mm256_cmpgt_epi32(_mm256_set1_epi32(PW % 8 ? PW % 8 : 8), lanes);
  const pool_prefetch ahead = pool_prefetch_plan(next, (size_t)H * W, PH);
  for (int oh = 0; oh < PH; oh++) {
    pool_prefetch_row(&ahead, oh);
    /* padded rows oh .. oh + KH - 1 are input rows oh - pad_h .. */
    for (int ow = 0; ow < C8; ow += 8) {
      __m256 best = lowest;
      __m256 arg = _mm256_castsi256_ps(_mm256_set1_epi32(-1));
      for (int kh = 0; kh < KH; kh++) {
        const size_t at = (size_t)(oh + kh) * C8 + ow;
        const __m256 v = _mm256_load_ps(rmax + at), gt = _mm256_cmp_ps(v, best, _CMP_GT_OQ);
        const __m256i a = _mm256_load_si256((const __m256i *)(const void *)(rarg + at));
        best = _mm256_max_ps(v, best);
        arg = _mm256_blendv_ps(
            arg, _mm256_castsi256_ps(_mm256_add_epi32(a, _mm256_set1_epi32((oh + kh - g->pad_h) * W))), gt);
      }
      float *d = y + (size_t)oh * PW + ow;
      int *m = mask + (size_t)oh * PW + ow;
      /* whole stores wherever the eight floats lie inside the plane: a row's tail spills into
       * the rows after it, written later (VMASKMOVPS stores are slow on AMD's cores; GoogLeNet's
       * 7x7 pools took one per row) */
      if ((size_t)oh * PW + ow + 8 <= (size_t)PH * PW) {
        _mm256_storeu_ps(d, best);
        _mm256_storeu_ps((float *)m, arg);
      } else {
        _mm256_maskstore_ps(d, tail, best);
        _mm256_maskstore_ps((float *)m, tail, arg);
      }
    }
  }
}

AVX2 static void forward_avx2(const crema_pool_s1 *g, const float *x, const float *next, float *y, int *mask,
                              float *scratch) {
  if (g->kh == 3 && g->kw == 3) /* GoogLeNet's inception pools */
    forward_k(g, x, next, y, mask, scratch, 3, 3);
  else
    forward_k(g, x, next, y, mask, scratch, g->kh, g->kw);
}

#endif

#if CREMA_V16
#define V16_INLINE CREMA_V16_TARGET static inline __attribute__((always_inline))

/* The same passes, sixteen outputs at a time (g->wide): a compare into a mask register, a max
 * and a masked add of the index per tap, where the AVX2 copy spends a compare, a max, an add
 * and a blend on eight. */
V16_INLINE void forward_k16(const crema_pool_s1 *g, const float *x, const float *next, float *y, int *mask,
                            float *scratch, int KH, int KW) {
  const int H = g->h, W = g->w, PH = g->ph, PW = g->pw, C16 = group_cols(g), pad_w = g->pad_w;
  const size_t plane16 = (size_t)rows_padded(g) * C16, RS = row_stride(g);
  float *rmax = scratch, *pad = scratch + 2 * plane16;
  int *rarg = (int *)(void *)(scratch + plane16);
  const __m512i lanes = _mm512_setr_epi32(0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15);
  const __m512 lowest = _mm512_set1_ps(-FLT_MAX);
  for (size_t i = 0; i < (size_t)g->pad_h * C16; i++) {
    rmax[i] = -FLT_MAX;
    rmax[plane16 - 1 - i] = -FLT_MAX;
  }
  for (int ih = 0; ih < H; ih++) {
    float *prow = pad + (size_t)ih * RS;
    const float *xrow = x + (size_t)ih * W;
    for (size_t i = 0; i < RS; i += 16) _mm512_storeu_ps(prow + i, lowest);
    int i = 0;
    for (; i + 16 <= W; i += 16) _mm512_storeu_ps(prow + pad_w + i, _mm512_loadu_ps(xrow + i));
    if (i < W) { /* the row's tail, -FLT_MAX after it; a whole store, not a masked one */
      const __mmask16 m = (__mmask16)((1u << (W - i)) - 1);
      /* where the sixteen floats lie inside the plane, a whole load (its lanes past the row
       * are the next row's, blended away): masked loads across a line are slow on Zen 5, and
       * a row of 14 floats crosses one every other row */
      const bool inside = (size_t)ih * W + (size_t)i + 16 <= (size_t)H * W;
      const __m512 v = inside ? _mm512_mask_blend_ps(m, lowest, _mm512_loadu_ps(xrow + i))
                              : _mm512_mask_loadu_ps(lowest, m, xrow + i);
      _mm512_storeu_ps(prow + pad_w + i, v);
    }
  }
  for (int ih = 0; ih < H; ih++) {
    const float *prow = pad + (size_t)ih * RS;
    float *rm = rmax + (size_t)(ih + g->pad_h) * C16;
    int *ra = rarg + (size_t)(ih + g->pad_h) * C16;
    for (int ow = 0; ow < C16; ow += 16) {
      const __m512i col0 = _mm512_add_epi32(_mm512_set1_epi32(ow - pad_w), lanes);
      __m512 best = lowest;
      __m512i arg = _mm512_set1_epi32(-1);
      for (int kw = 0; kw < KW; kw++) {
        const __m512 v = _mm512_loadu_ps(prow + ow + kw);
        const __mmask16 gt = _mm512_cmp_ps_mask(v, best, _CMP_GT_OQ);
        best = _mm512_max_ps(v, best);
        arg = _mm512_mask_add_epi32(arg, gt, col0, _mm512_set1_epi32(kw));
      }
      _mm512_storeu_ps(rm + ow, best);
      _mm512_storeu_si512(ra + ow, arg);
    }
  }
  const pool_prefetch ahead = pool_prefetch_plan(next, (size_t)H * W, PH);
  for (int oh = 0; oh < PH; oh++) {
    pool_prefetch_row(&ahead, oh);
    for (int ow = 0; ow < C16; ow += 16) {
      __m512 best = lowest;
      __m512i arg = _mm512_set1_epi32(-1);
      for (int kh = 0; kh < KH; kh++) {
        const size_t at = (size_t)(oh + kh) * C16 + ow;
        const __m512 v = _mm512_loadu_ps(rmax + at);
        const __mmask16 gt = _mm512_cmp_ps_mask(v, best, _CMP_GT_OQ);
        best = _mm512_max_ps(v, best);
        arg = _mm512_mask_add_epi32(arg, gt, _mm512_loadu_si512(rarg + at),
                                    _mm512_set1_epi32((oh + kh - g->pad_h) * W));
      }
      store_max16(y, mask, PH, PW, oh, ow, best, arg);
    }
  }
}

CREMA_V16_TARGET static void forward_v16(const crema_pool_s1 *g, const float *x, const float *next, float *y,
                                         int *mask, float *scratch) {
  if (g->kh == 3 && g->kw == 3)
    forward_k16(g, x, next, y, mask, scratch, 3, 3);
  else
    forward_k16(g, x, next, y, mask, scratch, g->kh, g->kw);
}
#endif

void crema_pool_s1_forward(const crema_pool_s1 *g, const float *x, const float *next, float *y, int *mask,
                           float *scratch) {
#if CREMA_V16
  if (g->wide) {
    forward_v16(g, x, next, y, mask, scratch);
    return;
  }
#endif
#if defined(S1_AVX2)
  if (__builtin_cpu_supports("avx2")) {
    forward_avx2(g, x, next, y, mask, scratch);
    return;
  }
#endif
  (void)next; /* the fast copies' prefetch only */
  /* The same two passes, one output at a time. */
  const int H = g->h, W = g->w, C8 = group_cols(g);
  float *rmax = scratch, *row = scratch + 2 * (size_t)H * C8;
  int *rarg = (int *)(void *)(scratch + (size_t)H * C8);
  row_border(g, row);
  for (int ih = 0; ih < H; ih++) {
    memcpy(row + g->pad_w, x + (size_t)ih * W, (size_t)W * sizeof(float));
    for (int ow = 0; ow < g->pw; ow++) {
      float best = -FLT_MAX;
      int arg = -1;
      for (int kw = 0; kw < g->kw; kw++)
        if (row[ow + kw] > best) {
          best = row[ow + kw];
          arg = ow + kw - g->pad_w;
        }
      rmax[(size_t)ih * C8 + ow] = best;
      rarg[(size_t)ih * C8 + ow] = arg;
    }
  }
  for (int oh = 0; oh < g->ph; oh++) {
    int hs, he;
    window_rows(g, oh, &hs, &he);
    for (int ow = 0; ow < g->pw; ow++) {
      float best = -FLT_MAX;
      int arg = -1;
      for (int ih = hs; ih < he; ih++)
        if (rmax[(size_t)ih * C8 + ow] > best) {
          best = rmax[(size_t)ih * C8 + ow];
          arg = ih * W + rarg[(size_t)ih * C8 + ow];
        }
      y[(size_t)oh * g->pw + ow] = best;
      mask[(size_t)oh * g->pw + ow] = arg;
    }
  }
}
