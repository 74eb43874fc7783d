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
static void valid_range(int off, int stride, int in, int out, int *lo, int *hi) {
  int a = off >= 0 ? 0 : (-off + stride - 1) / stride;
  int b = in - off <= 0 ? 0 : (in - off - 1) / stride + 1;
  if (b > out) b = out;
  if (a > b) a = b;
  *lo = a;
  *hi = b;
}

void crema_im2col(const crema_im2col_geom *g, int n, const float *im, float *col) {
  const int C = g->channels, H = g->height, W = g->width, kh = g->kernel_h, kw = g->kernel_w;
  const int Ho = g->out_h, Wo = g->out_w, sh = g->stride_h, sw = g->stride_w;
  const size_t plane_out = (size_t)Ho * Wo, ld = (size_t)n * plane_out, plane_in = (size_t)H * W;
  const int rows = C * kh * kw;
  /* One task = one (row, image) pair: a contiguous Ho*Wo run of the column matrix. */
#pragma omp parallel for collapse(2) schedule(static) if ((size_t)rows * ld > 32768)
  for (int r = 0; r < rows; r++)
    for (int b = 0; b < n; b++) {
      const int c = r / (kh * kw), i = (r / kw) % kh, j = r % kw;
      const int off_h = i * g->dilation_h - g->pad_h, off_w = j * g->dilation_w - g->pad_w;
      const float *src = im + ((size_t)b * C + c) * plane_in;
      float *dst = col + (size_t)r * ld + (size_t)b * plane_out;
      int oh_lo, oh_hi, ow_lo, ow_hi;
      valid_range(off_h, sh, H, Ho, &oh_lo, &oh_hi);
      valid_range(off_w, sw, W, Wo, &ow_lo, &ow_hi);
      if (oh_lo > 0) memset(dst, 0, (size_t)oh_lo * Wo * sizeof(float));
      for (int oh = oh_lo; oh < oh_hi; oh++) {
        float *d = dst + (size_t)oh * Wo;
        const float *s = src + (size_t)(oh * sh + off_h) * W; /* row start */
        for (int ow = 0; ow < ow_lo; ow++) d[ow] = 0.0f;
        if (sw == 1) { /* a loop, not memcpy: rows are often a few floats (LeNet's conv2: 8) */
          const float *sr = s + off_w;
          for (int ow = ow_lo; ow < ow_hi; ow++) d[ow] = sr[ow];
        } else {
          for (int ow = ow_lo; ow < ow_hi; ow++) d[ow] = s[ow * sw + off_w];
        }
        for (int ow = ow_hi; ow < Wo; ow++) d[ow] = 0.0f;
      }
      if (oh_hi < Ho) memset(dst + (size_t)oh_hi * Wo, 0, (size_t)(Ho - oh_hi) * Wo * sizeof(float));
    }
}

void crema_col2im(const crema_im2col_geom *g, int n, const float *col, float *im) {
  const int C = g->channels, H = g->height, W = g->width, kh = g->kernel_h, kw = g->kernel_w;
  const int Ho = g->out_h, Wo = g->out_w, sh = g->stride_h, sw = g->stride_w;
  const size_t plane_out = (size_t)Ho * Wo, ld = (size_t)n * plane_out, plane_in = (size_t)H * W;
  /* One task = one (image, channel) plane: only the kh*kw rows of channel c write into it,
   * so planes can be accumulated in parallel without races. */
#pragma omp parallel for collapse(2) schedule(static) if ((size_t)C * kh * kw * ld > 32768)
  for (int b = 0; b < n; b++)
    for (int c = 0; c < C; c++) {
      float *dst = im + ((size_t)b * C + c) * plane_in;
      memset(dst, 0, plane_in * sizeof(float));
      for (int i = 0; i < kh; i++)
        for (int j = 0; j < kw; j++) {
          const int r = (c * kh + i) * kw + j;
          const int off_h = i * g->dilation_h - g->pad_h, off_w = j * g->dilation_w - g->pad_w;
          const float *src = col + (size_t)r * ld + (size_t)b * plane_out;
          int oh_lo, oh_hi, ow_lo, ow_hi;
          valid_range(off_h, sh, H, Ho, &oh_lo, &oh_hi);
          valid_range(off_w, sw, W, Wo, &ow_lo, &ow_hi);
          for (int oh = oh_lo; oh < oh_hi; oh++) {
            const float *s = src + (size_t)oh * Wo;
            float *d = dst + (size_t)(oh * sh + off_h) * W; /* row start */
            if (sw == 1) {
              for (int ow = ow_lo; ow < ow_hi; ow++) d[ow + off_w] += s[ow];
            } else {
              for (int ow = ow_lo; ow < ow_hi; ow++) d[ow * sw + off_w] += s[ow];
            }
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
