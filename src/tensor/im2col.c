#include "tensor/im2col.h"

#include <limits.h>
#include <stdint.h>
#include <string.h>

#include "base/clones.h"
#include "base/v8.h"

/* gcc turns a row's copy loop into a memmove call, a libc call per short row: the dense path
 * below gained nothing until its loops were kept (11.4 -> 12.0 us per image of LeNet's conv2,
 * 4.8 with them), and window_rows's padded rows gained too (CIFAR-10's conv2, 32 channels of
 * 16x16, 5x5 pad 2: 72-76 -> 56-60 us per image; conv1 15 -> 13.4; one thread). */
#if defined(__GNUC__) && !defined(__clang__)
#define KEEP_LOOPS __attribute__((optimize("no-tree-loop-distribute-patterns")))
#else
#define KEEP_LOOPS
#endif

bool crema_im2col_geom_too_large(const crema_im2col_geom *g) {
  const int64_t ext_h = (int64_t)g->dilation_h * ((int64_t)g->kernel_h - 1) + 1,
                ext_w = (int64_t)g->dilation_w * ((int64_t)g->kernel_w - 1) + 1;
  const int64_t padded_h = (int64_t)g->height + 2 * (int64_t)g->pad_h,
                padded_w = (int64_t)g->width + 2 * (int64_t)g->pad_w;
  return ext_h > INT_MAX || ext_w > INT_MAX || padded_h > INT_MAX || padded_w > INT_MAX;
}

int crema_im2col_geom_finish(crema_im2col_geom *g) {
  g->out_h = g->out_w = 0;
  if (g->channels <= 0 || g->height <= 0 || g->width <= 0 || g->kernel_h <= 0 || g->kernel_w <= 0 ||
      g->stride_h <= 0 || g->stride_w <= 0 || g->dilation_h <= 0 || g->dilation_w <= 0 || g->pad_h < 0 ||
      g->pad_w < 0)
    return -1;
  /* A prototxt can ask for pads and dilations whose sums overflow an int, and the kernels
   * index with int: refuse those geometries before computing in int. */
  if (crema_im2col_geom_too_large(g)) return -1;
  const int ext_h = g->dilation_h * (g->kernel_h - 1) + 1, ext_w = g->dilation_w * (g->kernel_w - 1) + 1;
  const int span_h = g->height + 2 * g->pad_h - ext_h, span_w = g->width + 2 * g->pad_w - ext_w;
  if (span_h < 0 || span_w < 0) return -1;
  g->out_h = span_h / g->stride_h + 1;
  g->out_w = span_w / g->stride_w + 1;
  return 0;
}

size_t crema_im2col_rows(const crema_im2col_geom *g) {
  return (size_t)g->channels * (size_t)g->kernel_h * (size_t)g->kernel_w;
}

size_t crema_im2col_cols(const crema_im2col_geom *g, int n) {
  return (size_t)n * (size_t)g->out_h * (size_t)g->out_w;
}

/* The range of output positions o in [0, out) whose input coordinate o*stride + off lies in
 * [0, in): computed once per kernel tap so the inner loop has no bounds test. */
typedef struct tap_range {
  int off, lo, hi;
} tap_range;

static tap_range tap_compute(int t, int dilation, int pad, int stride, int in, int out) {
  tap_range r = {.off = t * dilation - pad};
  int a = r.off >= 0 ? 0 : (-r.off + stride - 1) / stride;
  int b = in - r.off <= 0 ? 0 : (in - r.off - 1) / stride + 1;
  if (b > out) b = out;
  if (a > b) a = b;
  r.lo = a;
  r.hi = b;
  return r;
}

/* The tap ranges of one axis, the first AXIS_TAPS precomputed: computing them per row of
 * the column matrix (several integer divisions each) cost as much as the copy itself on
 * LeNet's conv2 (500 rows of 8x8). Longer kernels compute the rest on the fly. */
#define AXIS_TAPS 32
typedef struct axis_taps {
  int dilation, pad, stride, in, out;
  tap_range first[AXIS_TAPS];
} axis_taps;

static void axis_taps_init(axis_taps *a, int k, int dilation, int pad, int stride, int in, int out) {
  *a = (axis_taps){.dilation = dilation, .pad = pad, .stride = stride, .in = in, .out = out};
  for (int t = 0; t < k && t < AXIS_TAPS; t++) a->first[t] = tap_compute(t, dilation, pad, stride, in, out);
}

static inline tap_range axis_tap(const axis_taps *a, int t) {
  return t < AXIS_TAPS ? a->first[t] : tap_compute(t, a->dilation, a->pad, a->stride, a->in, a->out);
}

/* d[0..n) = s[0..n): runs of 8 and 4 floats as fixed-size moves (a vector each), as a memcpy
 * call per row cost more than the copy on short rows (LeNet's conv2: 8 floats). */
static inline void copy_run(float *restrict d, const float *restrict s, int n) {
  int o = 0;
  for (; o + 8 <= n; o += 8) memcpy(d + o, s + o, 8 * sizeof(float));
  if (o + 4 <= n) {
    memcpy(d + o, s + o, 4 * sizeof(float));
    o += 4;
  }
  for (; o < n; o++) d[o] = s[o];
}

/* One row of the column matrix (one image): kernel tap (rh, rw) at every output position,
 * 0 where it falls in the padding. */
KEEP_LOOPS static void window_rows(float *restrict dst, const float *restrict src, tap_range rh, tap_range rw,
                                   int Ho, int Wo, int W, int sh, int sw) {
  if (rh.lo > 0) memset(dst, 0, (size_t)rh.lo * Wo * sizeof(float));
  for (int oh = rh.lo; oh < rh.hi; oh++) {
    float *d = dst + (size_t)oh * Wo;
    const float *s = src + (size_t)(oh * sh + rh.off) * W; /* the input row, inside the image */
    if (rw.lo > 0) memset(d, 0, (size_t)rw.lo * sizeof(float));
    if (sw == 1 && rw.lo < rw.hi)
      copy_run(d + rw.lo, s + rw.lo + rw.off, rw.hi - rw.lo);
    else
      for (int ow = rw.lo; ow < rw.hi; ow++) d[ow] = s[ow * sw + rw.off];
    if (rw.hi < Wo) memset(d + rw.hi, 0, (size_t)(Wo - rw.hi) * sizeof(float));
  }
  if (rh.hi < Ho) memset(dst + (size_t)rh.hi * Wo, 0, (size_t)(Ho - rh.hi) * Wo * sizeof(float));
}

/* Stride 1, no padding, no dilation (LeNet's conv2: 20 channels of 12x12, 5x5, 8x8 outputs):
 * column-matrix row (c, i, j) at output row oh is input row oh + i from column j on, Wo
 * floats, with no edges to test. Through window_rows (before its loops were kept, above) each
 * row of 8 floats was a memmove call plus the tap bookkeeping: LeNet's conv2 spent 11.4 us per
 * image in im2col and 9.8 in col2im (one thread), a third of the layer's time; 4.8 and 5.7
 * this way. */
static bool dense(const crema_im2col_geom *g) {
  return g->stride_h == 1 && g->stride_w == 1 && g->pad_h == 0 && g->pad_w == 0 && g->dilation_h == 1 &&
         g->dilation_w == 1;
}

/* One (image, channel) plane's kh * kw rows of the column matrix (rows ld apart). */
CREMA_CLONES KEEP_LOOPS static void im2col_dense_plane(const float *restrict src, float *restrict dst,
                                                       size_t ld, int kh, int kw, int Ho, int Wo, int W) {
  const int wv = Wo & ~7;
  for (int i = 0; i < kh; i++)
    for (int j = 0; j < kw; j++) {
      float *d = dst + ((size_t)i * kw + j) * ld;
      const float *s = src + (size_t)i * W + j;
      for (int oh = 0; oh < Ho; oh++, d += Wo, s += W) {
        int o = 0;
        for (; o < wv; o += 8) store8(d + o, load8(s + o));
        for (; o < Wo; o++) d[o] = s[o];
      }
    }
}

/* Its adjoint, into a cleared plane: each pixel receives its taps in kernel-row-then-column
 * order, as window_rows_add adds them, so the same bits. */
CREMA_CLONES KEEP_LOOPS static void col2im_dense_plane(const float *restrict src, float *restrict dst,
                                                       size_t ld, int kh, int kw, int Ho, int Wo, int W) {
  const int wv = Wo & ~7;
  for (int i = 0; i < kh; i++)
    for (int j = 0; j < kw; j++) {
      const float *s = src + ((size_t)i * kw + j) * ld;
      float *d = dst + (size_t)i * W + j;
      for (int oh = 0; oh < Ho; oh++, s += Wo, d += W) {
        int o = 0;
        for (; o < wv; o += 8) store8(d + o, load8(d + o) + load8(s + o));
        for (; o < Wo; o++) d[o] += s[o];
      }
    }
}

void crema_im2col(const crema_im2col_geom *g, int n, const float *im, float *col) {
  const int C = g->channels, H = g->height, W = g->width, kh = g->kernel_h, kw = g->kernel_w;
  const int Ho = g->out_h, Wo = g->out_w, sh = g->stride_h, sw = g->stride_w;
  const size_t plane_out = (size_t)Ho * Wo, ld = (size_t)n * plane_out, plane_in = (size_t)H * W;
  if (dense(g)) {
#pragma omp parallel for collapse(2) schedule(static) if ((size_t)C * kh * kw * ld > 32768)
    for (int c = 0; c < C; c++)
      for (int b = 0; b < n; b++)
        im2col_dense_plane(im + ((size_t)b * C + c) * plane_in,
                           col + (size_t)c * kh * kw * ld + (size_t)b * plane_out, ld, kh, kw, Ho, Wo, W);
    return;
  }
  axis_taps th, tw;
  axis_taps_init(&th, kh, g->dilation_h, g->pad_h, sh, H, Ho);
  axis_taps_init(&tw, kw, g->dilation_w, g->pad_w, sw, W, Wo);
  /* One task = one (channel, kernel row, image): kw contiguous Ho*Wo runs of the column
   * matrix, rows r = (c*kh + i)*kw + j for j in [0, kw). */
#pragma omp parallel for collapse(2) schedule(static) if ((size_t)C * kh * kw * ld > 32768)
  for (int ci = 0; ci < C * kh; ci++)
    for (int b = 0; b < n; b++) {
      const int c = ci / kh;
      const tap_range rh = axis_tap(&th, ci - c * kh);
      const float *src = im + ((size_t)b * C + c) * plane_in;
      for (int j = 0; j < kw; j++) {
        const tap_range rw = axis_tap(&tw, j);
        float *dst = col + ((size_t)ci * kw + j) * ld + (size_t)b * plane_out;
        window_rows(dst, src, rh, rw, Ho, Wo, W, sh, sw);
      }
    }
}

/* The adjoint of window_rows: adds one row of the column matrix into its image plane. */
static void window_rows_add(float *restrict dst, const float *restrict src, tap_range rh, tap_range rw,
                            int Wo, int W, int sh, int sw) {
  for (int oh = rh.lo; oh < rh.hi; oh++) {
    const float *s = src + (size_t)oh * Wo;
    float *d = dst + (size_t)(oh * sh + rh.off) * W; /* the input row, inside the image */
    if (sw == 1)
      for (int ow = rw.lo; ow < rw.hi; ow++) d[ow + rw.off] += s[ow];
    else
      for (int ow = rw.lo; ow < rw.hi; ow++) d[ow * sw + rw.off] += s[ow];
  }
}

/* Strided col2im by phases (stride sw of 2 or 4 across, undilated): the taps j of a kernel row
 * go in groups of sw, [q sw, q sw + sw), and within a group each input column x receives at most
 * one of them (the j with j = x + pad_w mod sw), so a group's sw column-matrix rows interleave
 * into one contiguous run of the input row, added eight floats at a time. Groups go in order,
 * so every input element still receives its taps in Caffe's order (kernel row, then column),
 * the same bits; where a group's tap lies outside the image it adds +0, which changes no sum
 * that starts from the +0 of the cleared plane (such a sum is never -0). Tap by tap, each add
 * went to every sw-th float: CaffeNet's conv1 data gradient spent about 5 ms in that loop. */
typedef struct phase_rows {
  const float *src[4]; /* the group's column-matrix rows at this output row; NULL past kw */
  tap_range rw[4];
} phase_rows;

/* Interleaved, the lanes of a and b: {a0 b0 a1 b1 ...} in lo, the rest in hi. */
static inline __attribute__((always_inline)) void zip8(v8 a, v8 b, v8 *lo, v8 *hi) {
  *lo = V8_SHUF(a, b, 0, 8, 1, 9, 2, 10, 3, 11);
  *hi = V8_SHUF(a, b, 4, 12, 5, 13, 6, 14, 7, 15);
}

static inline __attribute__((always_inline)) v8 row8(const float *s, int ow) {
  return s ? load8(s + ow) : (v8){0};
}

/* d[base + ow * sw + r] += src[r][ow] for the group, sw 2 or 4 (a constant where inlined), in
 * a row of W floats. The vectors cover only output columns where every tap of the group is
 * inside the image and whose runs of sw * 8 floats stay inside the row (a group cut short by
 * the kernel's end, its missing taps added as +0, must not touch the next row: another thread
 * may be writing there). */
static inline __attribute__((always_inline)) void phase_add(float *restrict d, const phase_rows *g, int sw,
                                                            int base, int Wo, int W) {
  int lo = 0, hi = Wo;
  for (int r = 0; r < sw; r++)
    if (g->src[r]) {
      lo = g->rw[r].lo > lo ? g->rw[r].lo : lo;
      hi = g->rw[r].hi < hi ? g->rw[r].hi : hi;
    }
  int ow = lo;
  for (; ow + 8 <= hi && base + (ow + 8) * sw <= W; ow += 8) {
    float *p = d + base + ow * sw;
    if (sw == 2) {
      v8 a, b;
      zip8(row8(g->src[0], ow), row8(g->src[1], ow), &a, &b);
      store8(p, load8(p) + a);
      store8(p + 8, load8(p + 8) + b);
    } else {
      v8 ab0, ab1, cd0, cd1, o[4];
      zip8(row8(g->src[0], ow), row8(g->src[1], ow), &ab0, &ab1);
      zip8(row8(g->src[2], ow), row8(g->src[3], ow), &cd0, &cd1);
      /* pairs of (a, b) and (c, d) to runs of four */
      o[0] = V8_SHUF(ab0, cd0, 0, 1, 8, 9, 2, 3, 10, 11);
      o[1] = V8_SHUF(ab0, cd0, 4, 5, 12, 13, 6, 7, 14, 15);
      o[2] = V8_SHUF(ab1, cd1, 0, 1, 8, 9, 2, 3, 10, 11);
      o[3] = V8_SHUF(ab1, cd1, 4, 5, 12, 13, 6, 7, 14, 15);
      for (int v = 0; v < 4; v++) store8(p + 8 * v, load8(p + 8 * v) + o[v]);
    }
  }
  /* the rest of each row, and its edges, one by one: one tap per element per group */
  for (int r = 0; r < sw; r++)
    if (g->src[r]) {
      const float *src = g->src[r];
      const int a = g->rw[r].lo, e = g->rw[r].hi;
      for (int w = a; w < e && w < lo; w++) d[base + w * sw + r] += src[w];
      for (int w = ow > a ? ow : a; w < e; w++) d[base + w * sw + r] += src[w];
    }
}

/* The image plane of (b, c) from its kh * kw column-matrix rows, phase by phase. */
CREMA_CLONES static void col2im_phases(float *restrict dst, const float *col, const axis_taps *th,
                                       const axis_taps *tw, int kh, int kw, int sw, int sh, int Wo, int W,
                                       size_t ld, size_t row0) {
  for (int i = 0; i < kh; i++) {
    const tap_range rh = axis_tap(th, i);
    for (int q = 0; q * sw < kw; q++) {
      phase_rows g;
      memset(&g, 0, sizeof g);
      for (int r = 0; r < sw; r++) {
        const int j = q * sw + r;
        if (j >= kw) break;
        g.src[r] = col + ((size_t)i * kw + j) * ld + row0;
        g.rw[r] = axis_tap(tw, j);
      }
      const int base = q * sw - tw->pad;
      for (int oh = rh.lo; oh < rh.hi; oh++) {
        float *d = dst + (size_t)(oh * sh + rh.off) * W;
        phase_rows at = g;
        for (int r = 0; r < sw; r++)
          if (at.src[r]) at.src[r] += (size_t)oh * Wo;
        if (sw == 2)
          phase_add(d, &at, 2, base, Wo, W);
        else
          phase_add(d, &at, 4, base, Wo, W);
      }
    }
  }
}

void crema_col2im(const crema_im2col_geom *g, int n, const float *col, float *im) {
  const int C = g->channels, H = g->height, W = g->width, kh = g->kernel_h, kw = g->kernel_w;
  const int Ho = g->out_h, Wo = g->out_w, sh = g->stride_h, sw = g->stride_w;
  const size_t plane_out = (size_t)Ho * Wo, ld = (size_t)n * plane_out, plane_in = (size_t)H * W;
  axis_taps th, tw;
  axis_taps_init(&th, kh, g->dilation_h, g->pad_h, sh, H, Ho);
  axis_taps_init(&tw, kw, g->dilation_w, g->pad_w, sw, W, Wo);
  const bool phases = (sw == 2 || sw == 4) && g->dilation_w == 1 && kw >= sw, whole_rows = dense(g);
  /* One task = one (image, channel) plane: only the kh*kw rows of channel c write into it,
   * so planes can be accumulated in parallel without races. */
#pragma omp parallel for collapse(2) schedule(static) if ((size_t)C * kh * kw * ld > 32768)
  for (int b = 0; b < n; b++)
    for (int c = 0; c < C; c++) {
      float *dst = im + ((size_t)b * C + c) * plane_in;
      memset(dst, 0, plane_in * sizeof(float));
      if (whole_rows) {
        col2im_dense_plane(col + (size_t)c * kh * kw * ld + (size_t)b * plane_out, dst, ld, kh, kw, Ho, Wo,
                           W);
        continue;
      }
      if (phases) {
        col2im_phases(dst, col + (size_t)c * kh * kw * ld, &th, &tw, kh, kw, sw, sh, Wo, W, ld,
                      (size_t)b * plane_out);
        continue;
      }
      for (int i = 0; i < kh; i++) {
        const tap_range rh = axis_tap(&th, i);
        for (int j = 0; j < kw; j++) {
          const tap_range rw = axis_tap(&tw, j);
          const float *src = col + ((size_t)(c * kh + i) * kw + j) * ld + (size_t)b * plane_out;
          window_rows_add(dst, src, rh, rw, Wo, W, sh, sw);
        }
      }
    }
}

void crema_batch_to_rows(int n, int c, size_t s, const float *x, float *y) {
#pragma omp parallel for collapse(2) schedule(static) if ((size_t)n * c * s > 32768)
  for (int ch = 0; ch < c; ch++)
    for (int b = 0; b < n; b++)
      memcpy(y + ((size_t)ch * n + b) * s, x + ((size_t)b * c + ch) * s, s * sizeof(float));
}

void crema_rows_to_batch(int n, int c, size_t s, const float *y, const float *bias, float *x) {
#pragma omp parallel for collapse(2) schedule(static) if ((size_t)n * c * s > 32768)
  for (int b = 0; b < n; b++)
    for (int ch = 0; ch < c; ch++) {
      const float *src = y + ((size_t)ch * n + b) * s;
      float *dst = x + ((size_t)b * c + ch) * s;
      if (bias) {
        const float v = bias[ch];
        for (size_t k = 0; k < s; k++) dst[k] = src[k] + v;
      } else {
        memcpy(dst, src, s * sizeof(float));
      }
    }
}
