/* pooling_ave.c -- AVE pooling, one plane at a time, the same bits as Caffe's window loops.
 *
 * Forward: Caffe starts each output at 0, adds its window's cells row by row, each row left to
 * right, then divides by the window's size (clipped at in + pad). Here the plane is first
 * copied into a block of zeros, so every window is a full kh x kw block with the cells outside
 * the input reading 0; adding +0 changes no sum (a sum that starts at +0 is never -0 when
 * rounding to nearest, and inf + 0, NaN + 0 stay what they were), so each output sees the same
 * additions in the same order, border windows included. With AVX2 eight outputs run side by
 * side, every tap one or two loads and an add.
 *
 * Backward: Caffe adds dy / size into each cell of each output's window, outputs in row-major
 * order; a cell therefore receives its outputs' shares in that order. Here each input cell
 * gathers them in that order instead: for each output row covering the cell (top to bottom),
 * the outputs of that row covering it, left to right. Input column x lies in the windows of
 * output columns floor((x + pad) / s) - j' for j' = J - 1 .. 0 (J = ceil(kw / s) of them,
 * those with (x + pad) mod s + j' * s < kw), so eight cells side by side read eight shares
 * from one row of scaled gradients padded with zeros, lanes whose output does not cover them
 * masked to +0. No zeroing pass and no read-modify-write of dx: each cell is written once.
 * (32, 64, 56, 56), 3x3 stride 2 pad 1, one thread: forward 5.2 -> 1.3 ms, backward 10.6 ->
 * 1.9 ms.
 *
 * With AVX-512, rows of more than eight outputs run sixteen lanes wide (the same operations
 * lane for lane, so the same bits), the stride and the number of shares as constants for the
 * common windows; and the forward pass fetches the next plane while this one's sums run, as
 * MAX pooling's does: a third of its time went to copying the plane in from memory. */
#include "layers/pooling_ave.h"

#include <stdint.h>
#include <string.h>

#include "base/v16.h"
#include "layers/pooling_simd.h" /* POOL_AVX2 */

/* The lanes side by side, and the output columns rounded up to whole groups of them. */
static int lanes_of(const crema_pool_ave *g) { return g->wide ? 16 : 8; }

static int group_cols(const crema_pool_ave *g) { return (g->pw + lanes_of(g) - 1) & ~(lanes_of(g) - 1); }

bool crema_pool_ave_wide(int pw) { return CREMA_V16 && pw > 8 && crema_cpu_v16(); }

/* The outputs' shares a column receives at most: J = ceil(kw / sw). */
static int shares(const crema_pool_ave *g) { return (g->kw + g->sw - 1) / g->sw; }

/* The zero-padded copy: every row and column of every output's window, the last group of
 * outputs in a row included (its extra lanes are computed and dropped), and 16 to spare. In
 * 64 bits for suits: a fuzzed kernel or stride must not wrap. */
static int64_t padded_cols64(const crema_pool_ave *g) {
  return ((int64_t)group_cols(g) - 1) * g->sw + g->kw + 16;
}

static int64_t padded_rows64(const crema_pool_ave *g) { return ((int64_t)g->ph - 1) * g->sh + g->kh; }

/* One row of scaled output gradients, dy / size, at index ow + J - 1, zeros around: every
 * index a group of eight (sixteen) cells reads, (x0 + pad_w) / sw + j + 7 (15) for the last
 * group. */
static int share_row_floats(const crema_pool_ave *g) {
  const int in = (g->w + g->pad_w) / g->sw, out = g->pw, lanes = lanes_of(g);
  return ((in > out ? in : out) + shares(g) + 2 * lanes - 1) & ~(lanes - 1);
}

#define POOL_AVE_MAX_FLOATS ((int64_t)1 << 24)

/* Rows of fewer than eight outputs (ResNet-50's and GoogLeNet's 7x7 pool5, one output a
 * plane) would fill a vector with lanes computed and dropped: ResNet-50's pool5 took 0.6 ->
 * 1.1 ms forward and 2.0 -> 2.3-3.1 backward here, so those keep the window loops. */
bool crema_pool_ave_suits(const crema_pool_ave *g) {
  return g->sw >= 1 && g->sw <= 2 && g->sh >= 1 && g->ph >= 1 && g->pw >= 8 && shares(g) <= 8 &&
         padded_rows64(g) * padded_cols64(g) <= POOL_AVE_MAX_FLOATS &&
         (int64_t)g->ph * share_row_floats(g) <= POOL_AVE_MAX_FLOATS;
}

static size_t round16(size_t n) { return (n + 15) & ~(size_t)15; }

/* The scratch: the divisor's column extents (group_cols floats), then the forward's padded copy or
 * the backward's rows of shares. */
size_t crema_pool_ave_scratch_floats(const crema_pool_ave *g) {
  const size_t fwd = (size_t)(padded_rows64(g) * padded_cols64(g)),
               bwd = (size_t)g->ph * (size_t)share_row_floats(g);
  return round16((size_t)group_cols(g)) + round16(fwd > bwd ? fwd : bwd);
}

static float *second_part(const crema_pool_ave *g, float *scratch) {
  return scratch + round16((size_t)group_cols(g));
}

/* The divisor's column extents as floats; 1 past the last output, so dropped lanes divide by
 * something harmless. The divisor len_h * len_w is exact in float: both are below 2^24. */
static void column_extents(const crema_pool_ave *g, float *ext) {
  for (int ow = 0; ow < group_cols(g); ow++) ext[ow] = ow < g->pw ? (float)g->cols[3 * ow + 2] : 1.0f;
}

void crema_pool_ave_begin(const crema_pool_ave *g, bool forward, float *scratch) {
  column_extents(g, scratch);
  if (forward)
    memset(second_part(g, scratch), 0, (size_t)(padded_rows64(g) * padded_cols64(g)) * sizeof(float));
}

/* The plane into the padded copy at (pad_h, pad_w); rows and columns no window reads stay out. */
static void copy_in(const crema_pool_ave *g, const float *x, float *pad) {
  const int pc = (int)padded_cols64(g), pr = (int)padded_rows64(g);
  const int n_cols = g->w < pc - g->pad_w ? g->w : pc - g->pad_w;
  for (int y = g->pad_h; y < pr && y - g->pad_h < g->h; y++)
    memcpy(pad + (size_t)y * pc + g->pad_w, x + (size_t)(y - g->pad_h) * g->w,
           (size_t)n_cols * sizeof(float));
}

/* Output rows [*lo, *hi] whose windows hold input row h (none when *lo > *hi). */
static void rows_covering(const crema_pool_ave *g, int h, int *lo, int *hi) {
  const int first = h + g->pad_h - g->kh + 1, last = (h + g->pad_h) / g->sh;
  *lo = first <= 0 ? 0 : (first + g->sh - 1) / g->sh;
  *hi = last < g->ph - 1 ? last : g->ph - 1;
}

/* Share j of column x: whether output column floor((x + pad_w) / sw) - (J - 1) + j covers x. */
static bool share_covers(const crema_pool_ave *g, int x, int j) {
  return (x + g->pad_w) % g->sw + (shares(g) - 1 - j) * g->sw < g->kw;
}

#if defined(POOL_AVX2)
/* copy_in with the rows moved eight floats at a time (copy_floats8). */
POOL_AVX2_FN static void copy_in_avx2(const crema_pool_ave *g, const float *x, float *pad) {
  const int pc = (int)padded_cols64(g), pr = (int)padded_rows64(g);
  const int n = g->w < pc - g->pad_w ? g->w : pc - g->pad_w;
  for (int y = g->pad_h; y < pr && y - g->pad_h < g->h; y++)
    copy_floats8(pad + (size_t)y * pc + g->pad_w, x + (size_t)(y - g->pad_h) * g->w, n);
}

/* Eight outputs at a time, their sums in tap8_turned's lane order, turned back before the
 * division. */
POOL_AVX2_FN static void forward_avx2(const crema_pool_ave *g, const float *x, const float *next, float *y,
                                      float *scratch) {
  const int PW = g->pw, C8 = (PW + 7) & ~7, PC = (int)padded_cols64(g), sw = g->sw;
  const float *ext = scratch;
  float *pad = second_part(g, scratch);
  copy_in_avx2(g, x, pad);
  const __m256i tail =
      _mm256_cmpgt_epi32(_mm256_set1_epi32(PW % 8 ? PW % 8 : 8), _mm256_setr_epi32(0, 1, 2, 3, 4, 5, 6, 7));
  const pool_prefetch ahead = pool_prefetch_plan(next, (size_t)g->h * g->w, g->ph);
  for (int oh = 0; oh < g->ph; oh++) {
    pool_prefetch_row(&ahead, oh);
    const __m256 len_h = _mm256_set1_ps((float)g->rows[3 * oh + 2]);
    const float *top = pad + (size_t)oh * g->sh * PC;
    for (int ow = 0; ow < C8; ow += 8) {
      __m256 sum = _mm256_setzero_ps();
      for (int kh = 0; kh < g->kh; kh++) {
        const float *p = top + (size_t)kh * PC + (size_t)ow * sw;
        for (int kw = 0; kw < g->kw; kw++) sum = _mm256_add_ps(sum, tap8_turned(p, sw, kw));
      }
      const __m256 v = _mm256_div_ps(turn8(sum, sw), _mm256_mul_ps(len_h, _mm256_loadu_ps(ext + ow)));
      if (ow + 8 <= PW)
        _mm256_storeu_ps(y + (size_t)oh * PW + ow, v);
      else
        _mm256_maskstore_ps(y + (size_t)oh * PW + ow, tail, v);
    }
  }
}
#endif

#if CREMA_V16
/* Sixteen at a time (AVX-512): tap kw of sixteen outputs whose windows start at p, p + stride,
 * ...; with stride 2 the even floats of p[kw .. kw + 31], in plain lane order. */
CREMA_V16_TARGET POOL_INLINE __m512 tap16(const float *p, int stride, int kw, __m512i evens) {
  if (stride == 1) return _mm512_loadu_ps(p + kw);
  return _mm512_permutex2var_ps(_mm512_loadu_ps(p + kw), evens, _mm512_loadu_ps(p + kw + 16));
}

/* The plane into the padded copy, sixteen floats at a time (copy_in with copy_floats16). */
CREMA_V16_TARGET POOL_INLINE void copy_in16(const crema_pool_ave *g, const float *x, float *pad) {
  const int pc = (int)padded_cols64(g), pr = (int)padded_rows64(g);
  const int n = g->w < pc - g->pad_w ? g->w : pc - g->pad_w;
  for (int y = g->pad_h; y < pr && y - g->pad_h < g->h; y++)
    copy_floats16(pad + (size_t)y * pc + g->pad_w, x + (size_t)(y - g->pad_h) * g->w, n);
}

CREMA_V16_TARGET POOL_INLINE void forward16_k(const crema_pool_ave *g, const float *x, const float *next,
                                              float *y, float *scratch, int KH, int KW, int sw) {
  const int PW = g->pw, PC = (int)padded_cols64(g);
  const float *ext = scratch;
  float *pad = second_part(g, scratch);
  copy_in16(g, x, pad);
  const __m512i evens = _mm512_setr_epi32(0, 2, 4, 6, 8, 10, 12, 14, 16, 18, 20, 22, 24, 26, 28, 30);
  const pool_prefetch ahead = pool_prefetch_plan(next, (size_t)g->h * g->w, g->ph);
  for (int oh = 0; oh < g->ph; oh++) {
    pool_prefetch_row(&ahead, oh);
    const __m512 len_h = _mm512_set1_ps((float)g->rows[3 * oh + 2]);
    const float *top = pad + (size_t)oh * g->sh * PC;
    for (int ow = 0; ow < PW; ow += 16) {
      __m512 sum = _mm512_setzero_ps();
      for (int kh = 0; kh < KH; kh++) {
        const float *p = top + (size_t)kh * PC + (size_t)ow * sw;
        for (int kw = 0; kw < KW; kw++) sum = _mm512_add_ps(sum, tap16(p, sw, kw, evens));
      }
      const __m512 v = _mm512_div_ps(sum, _mm512_mul_ps(len_h, _mm512_loadu_ps(ext + ow)));
      if (ow + 16 <= PW || oh + 1 < g->ph) /* a row's tail spills into the next row, written later */
        _mm512_storeu_ps(y + (size_t)oh * PW + ow, v);
      else
        _mm512_mask_storeu_ps(y + (size_t)oh * PW + ow, (__mmask16)((1u << (PW - ow)) - 1), v);
    }
  }
}

/* The kernel and stride as constants for the common windows, so the tap loops unroll. */
CREMA_V16_TARGET static void forward16(const crema_pool_ave *g, const float *x, const float *next, float *y,
                                       float *scratch) {
  if (g->kh == 3 && g->kw == 3 && g->sw == 2)
    forward16_k(g, x, next, y, scratch, 3, 3, 2);
  else if (g->kh == 2 && g->kw == 2 && g->sw == 2)
    forward16_k(g, x, next, y, scratch, 2, 2, 2);
  else if (g->kh == 3 && g->kw == 3 && g->sw == 1)
    forward16_k(g, x, next, y, scratch, 3, 3, 1);
  else if (g->sw == 2)
    forward16_k(g, x, next, y, scratch, g->kh, g->kw, 2);
  else
    forward16_k(g, x, next, y, scratch, g->kh, g->kw, 1);
}
#endif

void crema_pool_ave_forward(const crema_pool_ave *g, const float *x, const float *next, float *y,
                            float *scratch) {
#if CREMA_V16
  if (g->wide) {
    forward16(g, x, next, y, scratch);
    return;
  }
#endif
#if defined(POOL_AVX2)
  if (__builtin_cpu_supports("avx2")) {
    forward_avx2(g, x, next, y, scratch);
    return;
  }
#endif
  (void)next;
  const int PC = (int)padded_cols64(g);
  const float *ext = scratch;
  float *pad = second_part(g, scratch);
  copy_in(g, x, pad);
  for (int oh = 0; oh < g->ph; oh++)
    for (int ow = 0; ow < g->pw; ow++) {
      const float *p = pad + (size_t)oh * g->sh * PC + (size_t)ow * g->sw;
      float sum = 0.0f;
      for (int kh = 0; kh < g->kh; kh++)
        for (int kw = 0; kw < g->kw; kw++) sum += p[(size_t)kh * PC + kw];
      y[(size_t)oh * g->pw + ow] = sum / ((float)g->rows[3 * oh + 2] * ext[ow]);
    }
}

/* Each output row's shares dy / size at index ow + J - 1 of its row of share_row_floats,
 * zeros around. Caffe divides by the same int size converted to float. */
static void scale_shares(const crema_pool_ave *g, const float *dy, const float *ext, float *sh) {
  const int VW = share_row_floats(g), off = shares(g) - 1;
  for (int oh = 0; oh < g->ph; oh++) {
    float *row = sh + (size_t)oh * VW;
    const float len_h = (float)g->rows[3 * oh + 2];
    const float *d = dy + (size_t)oh * g->pw;
    memset(row, 0, (size_t)VW * sizeof(float));
    for (int ow = 0; ow < g->pw; ow++) row[off + ow] = d[ow] / (len_h * ext[ow]);
  }
}

#if defined(POOL_AVX2)
/* scale_shares, eight divisions at a time: one at a time they took as long as the gathers. */
POOL_AVX2_FN static void scale_shares_avx2(const crema_pool_ave *g, const float *dy, const float *ext,
                                           float *sh) {
  const int VW = share_row_floats(g), off = shares(g) - 1, PW = g->pw;
  for (int oh = 0; oh < g->ph; oh++) {
    float *row = sh + (size_t)oh * VW;
    const float len_h = (float)g->rows[3 * oh + 2];
    const __m256 lh = _mm256_set1_ps(len_h);
    const float *d = dy + (size_t)oh * PW;
    memset(row, 0, (size_t)off * sizeof(float));
    int ow = 0;
    for (; ow + 8 <= PW; ow += 8)
      _mm256_storeu_ps(row + off + ow,
                       _mm256_div_ps(_mm256_loadu_ps(d + ow), _mm256_mul_ps(lh, _mm256_loadu_ps(ext + ow))));
    for (; ow < PW; ow++) row[off + ow] = d[ow] / (len_h * ext[ow]);
    memset(row + off + PW, 0, (size_t)(VW - off - PW) * sizeof(float));
  }
}

POOL_AVX2_FN static void backward_avx2(const crema_pool_ave *g, const float *dy, const float *next,
                                       const float *ext, float *sh, float *dx) {
  scale_shares_avx2(g, dy, ext, sh);
  const int W = g->w, VW = share_row_floats(g), J = shares(g), sw = g->sw;
  const __m256i lanes = _mm256_setr_epi32(0, 1, 2, 3, 4, 5, 6, 7);
  /* stride 2: lane i of a group starting at x0 reads share index (x0 + pad_w + i) / 2, which
   * is (x0 + pad_w) / 2 plus 0 0 1 1 2 2 3 3 (pad_w even) or 0 1 1 2 2 3 3 4 (odd) */
  const __m256i pick = _mm256_srli_epi32(_mm256_add_epi32(lanes, _mm256_set1_epi32(g->pad_w & 1)), 1);
  __m256 covers[8];
  for (int j = 0; j < J; j++) {
    int m[8];
    for (int i = 0; i < 8; i++) m[i] = share_covers(g, i, j) ? -1 : 0; /* x0 is a multiple of 8 */
    covers[j] = _mm256_castsi256_ps(_mm256_loadu_si256((const __m256i *)(const void *)m));
  }
  const __m256i tail = _mm256_cmpgt_epi32(_mm256_set1_epi32(W % 8 ? W % 8 : 8), lanes);
  const pool_prefetch ahead = pool_prefetch_plan(next, (size_t)g->ph * g->pw, g->h);
  for (int h = 0; h < g->h; h++) {
    pool_prefetch_row(&ahead, h);
    int lo, hi;
    rows_covering(g, h, &lo, &hi);
    float *drow = dx + (size_t)h * W;
    for (int x0 = 0; x0 < W; x0 += 8) {
      const int q = (x0 + g->pad_w) / sw;
      __m256 acc = _mm256_setzero_ps();
      for (int oh = lo; oh <= hi; oh++) {
        const float *s = sh + (size_t)oh * VW + q;
        if (sw == 1)
          for (int j = 0; j < J; j++) acc = _mm256_add_ps(acc, _mm256_loadu_ps(s + j));
        else
          for (int j = 0; j < J; j++) {
            const __m256 v = _mm256_permutevar8x32_ps(_mm256_loadu_ps(s + j), pick);
            acc = _mm256_add_ps(acc, _mm256_and_ps(v, covers[j]));
          }
      }
      if (x0 + 8 <= W)
        _mm256_storeu_ps(drow + x0, acc);
      else
        _mm256_maskstore_ps(drow + x0, tail, acc);
    }
  }
}
#endif

#if CREMA_V16
/* scale_shares, sixteen divisions at a time. */
CREMA_V16_TARGET POOL_INLINE void scale_shares16(const crema_pool_ave *g, const float *dy, const float *ext,
                                                 float *sh) {
  const int VW = share_row_floats(g), off = shares(g) - 1, PW = g->pw;
  for (int oh = 0; oh < g->ph; oh++) {
    float *row = sh + (size_t)oh * VW;
    const __m512 lh = _mm512_set1_ps((float)g->rows[3 * oh + 2]);
    const float *d = dy + (size_t)oh * PW;
    memset(row, 0, (size_t)off * sizeof(float));
    for (int ow = 0; ow < PW; ow += 16) {
      if (ow + 16 <= PW) { /* masked only for the row's tail (slow across lines on Zen 5) */
        _mm512_storeu_ps(row + off + ow, _mm512_div_ps(_mm512_loadu_ps(d + ow),
                                                       _mm512_mul_ps(lh, _mm512_loadu_ps(ext + ow))));
        continue;
      }
      const __mmask16 m = (__mmask16)((1u << (PW - ow)) - 1);
      _mm512_mask_storeu_ps(
          row + off + ow, m,
          _mm512_div_ps(_mm512_maskz_loadu_ps(m, d + ow), _mm512_mul_ps(lh, _mm512_loadu_ps(ext + ow))));
    }
    memset(row + off + PW, 0, (size_t)(VW - off - PW) * sizeof(float));
  }
}

/* backward_avx2 on sixteen cells, lanes whose output does not cover them left out of the add
 * by a mask register (the same sums: adding +0 or nothing). */
CREMA_V16_TARGET POOL_INLINE void backward16_k(const crema_pool_ave *g, const float *dy, const float *next,
                                               const float *ext, float *sh, float *dx, int sw, int J) {
  scale_shares16(g, dy, ext, sh);
  const int W = g->w, VW = share_row_floats(g);
  const __m512i lanes = _mm512_setr_epi32(0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15);
  const __m512i pick = _mm512_srli_epi32(_mm512_add_epi32(lanes, _mm512_set1_epi32(g->pad_w & 1)), 1);
  __mmask16 covers[8];
  for (int j = 0; j < J; j++) {
    unsigned m = 0;
    for (int i = 0; i < 16; i++) m |= (unsigned)share_covers(g, i, j) << i; /* x0 is a multiple of 16 */
    covers[j] = (__mmask16)m;
  }
  const pool_prefetch ahead = pool_prefetch_plan(next, (size_t)g->ph * g->pw, g->h);
  for (int h = 0; h < g->h; h++) {
    pool_prefetch_row(&ahead, h);
    int lo, hi;
    rows_covering(g, h, &lo, &hi);
    float *drow = dx + (size_t)h * W;
    for (int x0 = 0; x0 < W; x0 += 16) {
      const int q = (x0 + g->pad_w) / sw;
      __m512 acc = _mm512_setzero_ps();
      for (int oh = lo; oh <= hi; oh++) {
        const float *s = sh + (size_t)oh * VW + q;
        if (sw == 1)
          for (int j = 0; j < J; j++) acc = _mm512_add_ps(acc, _mm512_loadu_ps(s + j));
        else
          for (int j = 0; j < J; j++)
            acc =
                _mm512_mask_add_ps(acc, covers[j], acc, _mm512_permutexvar_ps(pick, _mm512_loadu_ps(s + j)));
      }
      if (x0 + 16 <= W)
        _mm512_storeu_ps(drow + x0, acc);
      else
        _mm512_mask_storeu_ps(drow + x0, (__mmask16)((1u << (W - x0)) - 1), acc);
    }
  }
}

/* The stride and the shares as constants for the common windows (3x3 and 2x2 stride 2, 3x3
 * stride 1), so the share loops unroll. */
CREMA_V16_TARGET static void backward16(const crema_pool_ave *g, const float *dy, const float *next,
                                        const float *ext, float *sh, float *dx) {
  const int J = shares(g);
  if (g->sw == 2 && J == 2)
    backward16_k(g, dy, next, ext, sh, dx, 2, 2);
  else if (g->sw == 2 && J == 1)
    backward16_k(g, dy, next, ext, sh, dx, 2, 1);
  else if (g->sw == 1 && J == 3)
    backward16_k(g, dy, next, ext, sh, dx, 1, 3);
  else if (g->sw == 2)
    backward16_k(g, dy, next, ext, sh, dx, 2, J);
  else
    backward16_k(g, dy, next, ext, sh, dx, 1, J);
}
#endif

void crema_pool_ave_backward(const crema_pool_ave *g, const float *dy, const float *next, float *dx,
                             float *scratch) {
  const float *ext = scratch;
  float *sh = second_part(g, scratch);
#if CREMA_V16
  if (g->wide) {
    backward16(g, dy, next, ext, sh, dx);
    return;
  }
#endif
#if defined(POOL_AVX2)
  if (__builtin_cpu_supports("avx2")) {
    backward_avx2(g, dy, next, ext, sh, dx);
    return;
  }
#endif
  (void)next;
  scale_shares(g, dy, ext, sh);
  const int VW = share_row_floats(g), J = shares(g);
  for (int h = 0; h < g->h; h++) {
    int lo, hi;
    rows_covering(g, h, &lo, &hi);
    for (int x = 0; x < g->w; x++) {
      float acc = 0.0f;
      for (int oh = lo; oh <= hi; oh++)
        for (int j = 0; j < J; j++)
          if (share_covers(g, x, j)) acc += sh[(size_t)oh * VW + (x + g->pad_w) / g->sw + j];
      dx[(size_t)h * g->w + x] = acc;
    }
  }
}
