#include "tensor/im2col.h"

#include <limits.h>
#include <stdint.h>
#include <string.h>

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
static void window_rows(float *restrict dst, const float *restrict src, tap_range rh, tap_range rw, int Ho,
                        int Wo, int W, int sh, int sw) {
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

void crema_im2col(const crema_im2col_geom *g, int n, const float *im, float *col) {
  const int C = g->channels, H = g->height, W = g->width, kh = g->kernel_h, kw = g->kernel_w;
  const int Ho = g->out_h, Wo = g->out_w, sh = g->stride_h, sw = g->stride_w;
  const size_t plane_out = (size_t)Ho * Wo, ld = (size_t)n * plane_out, plane_in = (size_t)H * W;
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

void crema_col2im(const crema_im2col_geom *g, int n, const float *col, float *im) {
  const int C = g->channels, H = g->height, W = g->width, kh = g->kernel_h, kw = g->kernel_w;
  const int Ho = g->out_h, Wo = g->out_w, sh = g->stride_h, sw = g->stride_w;
  const size_t plane_out = (size_t)Ho * Wo, ld = (size_t)n * plane_out, plane_in = (size_t)H * W;
  axis_taps th, tw;
  axis_taps_init(&th, kh, g->dilation_h, g->pad_h, sh, H, Ho);
  axis_taps_init(&tw, kw, g->dilation_w, g->pad_w, sw, W, Wo);
  /* One task = one (image, channel) plane: only the kh*kw rows of channel c write into it,
   * so planes can be accumulated in parallel without races. */
#pragma omp parallel for collapse(2) schedule(static) if ((size_t)C * kh * kw * ld > 32768)
  for (int b = 0; b < n; b++)
    for (int c = 0; c < C; c++) {
      float *dst = im + ((size_t)b * C + c) * plane_in;
      memset(dst, 0, plane_in * sizeof(float));
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
