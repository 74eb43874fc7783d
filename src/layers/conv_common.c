#include "layers/conv_common.h"

#include <inttypes.h>
#include <limits.h>
#include <omp.h>
#include <stdint.h>
#include <string.h>

#include "base/mem.h"
#include "engine/engine.h"
#include "tensor/math.h"

/* Planes at least this large run a 1x1 convolution as one GEMM per image straight on the
 * input; smaller planes are gathered so the GEMM sees the whole batch (a GEMM with a few
 * dozen columns runs below peak), unless the batch is one image. Measured on GoogLeNet's 1x1
 * shapes, batch 10: 7x7 is 20% faster gathered, 14x14 even, 28x28 and 56x56 15-25% faster
 * per image. */
#define ONE_BY_ONE_MIN_PLANE 256

/* Depthwise path up to this many output channels per input channel. */
#define DEPTHWISE_MAX_MULT 4

/* The proto fields are uint32; a value above INT_MAX would turn negative as an int, so it is
 * refused here with the field's name rather than surfacing later as a confusing shape. */
static int checked_int(const char *name, uint32_t v, int *out, crema_error *err) {
  if (v > (uint32_t)INT_MAX)
    return crema_fail(err, "convolution_param.%s %" PRIu32 " is too large (at most %d)", name, v, INT_MAX);
  *out = (int)v;
  return 0;
}

/* One repeated field in Caffe's three spellings: n values (1 or 2), the _h/_w pair, or
 * absent (default). */
static int read_pair(const char *name, size_t n, const uint32_t *v, bool has_h, uint32_t h, bool has_w,
                     uint32_t w, int dflt, int *out_h, int *out_w, crema_error *err) {
  if (has_h || has_w) {
    if (n) return crema_fail(err, "either %s or %s_h/%s_w should be specified, not both", name, name, name);
    if (!(has_h && has_w)) return crema_fail(err, "%s_h and %s_w must be given together", name, name);
    return checked_int(name, h, out_h, err) || checked_int(name, w, out_w, err) ? -1 : 0;
  }
  if (n == 0) {
    *out_h = *out_w = dflt;
  } else if (n == 1) {
    if (checked_int(name, v[0], out_h, err)) return -1;
    *out_w = *out_h;
  } else if (n == 2) {
    return checked_int(name, v[0], out_h, err) || checked_int(name, v[1], out_w, err) ? -1 : 0;
  } else {
    return crema_fail(err,
                      "%s must be specified once, or once per spatial dimension (%s specified %zu times; 2 "
                      "spatial dims)",
                      name, name, n);
  }
  return 0;
}

int crema_conv_params_read(const crema_layer *l, const crema_blob *bottom, crema_conv_params *out,
                           crema_error *err) {
  Crema__ConvolutionParameter dflt = CREMA__CONVOLUTION_PARAMETER__INIT;
  const Crema__ConvolutionParameter *p = l->param->convolution_param ? l->param->convolution_param : &dflt;
  memset(out, 0, sizeof *out);
  int axis;
  if (crema_blob_canonical_axis(bottom, p->axis, &axis, err))
    return crema_error_prefix(err, "convolution_param.axis");
  int spatial = bottom->num_axes - axis - 1;
  if (spatial != 2)
    return crema_fail(
        err,
        "the bottom has %d axes and axis %d leaves %d spatial axes; convolution needs at least 1 "
        "(e.g. an N x C x H x W bottom with axis 1)",
        bottom->num_axes, p->axis, spatial < 0 ? 0 : spatial);
  out->axis = axis;
  if (!p->has_num_output || p->num_output == 0)
    return crema_fail(err, "convolution_param.num_output must be given and > 0");
  if (checked_int("num_output", p->num_output, &out->num_output, err) ||
      checked_int("group", p->group, &out->group, err))
    return -1;
  out->bias_term = p->bias_term;
  if (read_pair("kernel_size", p->n_kernel_size, p->kernel_size, p->has_kernel_h, p->kernel_h,
                p->has_kernel_w, p->kernel_w, 0, &out->kernel_h, &out->kernel_w, err))
    return -1;
  if (out->kernel_h <= 0 || out->kernel_w <= 0)
    return crema_fail(err, "filter dimensions must be nonzero: give kernel_size (or kernel_h and kernel_w)");
  if (read_pair("stride", p->n_stride, p->stride, p->has_stride_h, p->stride_h, p->has_stride_w, p->stride_w,
                1, &out->stride_h, &out->stride_w, err))
    return -1;
  if (out->stride_h <= 0 || out->stride_w <= 0) return crema_fail(err, "stride must be > 0");
  if (read_pair("pad", p->n_pad, p->pad, p->has_pad_h, p->pad_h, p->has_pad_w, p->pad_w, 0, &out->pad_h,
                &out->pad_w, err))
    return -1;
  if (read_pair("dilation", p->n_dilation, p->dilation, false, 0, false, 0, 1, &out->dilation_h,
                &out->dilation_w, err))
    return -1;
  if (out->dilation_h <= 0 || out->dilation_w <= 0) return crema_fail(err, "dilation must be > 0");
  int channels = bottom->shape[axis];
  if (out->group <= 0) return crema_fail(err, "convolution_param.group must be > 0");
  if (channels % out->group)
    return crema_fail(err, "the bottom's %d channels are not divisible by group %d", channels, out->group);
  if (out->num_output % out->group)
    return crema_fail(err, "num_output %d is not a multiple of group %d", out->num_output, out->group);
  return 0;
}

void crema_conv_engine_use_workspace(crema_conv_engine *e, crema_workspace *ws) { e->ws = ws; }

static crema_workspace *scratch(crema_conv_engine *e) { return e->ws ? e->ws : &e->own; }

int crema_conv_engine_reshape(crema_conv_engine *e, const crema_im2col_geom *g, int cy, int group, int n,
                              crema_error *err) {
  e->g = *g;
  e->cy = cy;
  e->group = group;
  e->n = n;
  e->col_floats = e->tmp_floats = 0;
  const size_t plane = (size_t)g->out_h * g->out_w;
  const bool one = g->kernel_h == 1 && g->kernel_w == 1 && g->stride_h == 1 && g->stride_w == 1 &&
                   g->pad_h == 0 && g->pad_w == 0;
  /* The direct loops win when each group maps one input channel to a few outputs (a GEMM
   * per channel is tiny); with many outputs per channel (LeNet's conv1: 1 -> 20) the
   * GEMM over the column matrix is faster again. */
  e->pointwise = one;
  if (g->channels / group == 1 && cy / group <= DEPTHWISE_MAX_MULT)
    e->path = CREMA_CONV_DEPTHWISE;
  else if (one && (plane >= ONE_BY_ONE_MIN_PLANE || n == 1))
    e->path = CREMA_CONV_1X1; /* one image: its input already is the GEMM's matrix, nothing to gather */
  else
    e->path = CREMA_CONV_GENERAL;
  e->chunk = n;
  if (e->path != CREMA_CONV_GENERAL || n == 0 || plane == 0) return 0;
  const size_t rows = crema_im2col_rows(g), per_image = rows * plane;
  size_t chunk = CREMA_CONV_COL_BUDGET / (per_image ? per_image : 1);
  if (chunk < 1) chunk = 1;
  if (chunk > (size_t)n) chunk = (size_t)n;
  e->chunk = (int)chunk;
  /* rows * plane of a huge kernel over a huge input can exceed what a byte count holds. */
  if (per_image > SIZE_MAX / sizeof(float) / chunk || (size_t)cy * plane > SIZE_MAX / sizeof(float) / chunk)
    return crema_fail(err, "a convolution buffer of %zu x %zu floats exceeds the address space", per_image,
                      chunk);
  const size_t col = per_image * chunk;
  /* A chunk of one image needs no staging matrix (see forward/backward). */
  const size_t tmp = chunk > 1 ? (size_t)cy * plane * chunk : 0;
  /* The staging matrix starts on a 64-byte boundary, like the column matrix. */
  const size_t col_padded = (col + 15) / 16 * 16;
  if (tmp && col_padded > SIZE_MAX / sizeof(float) - tmp)
    return crema_fail(err, "a convolution buffer of %zu + %zu floats exceeds the address space", col, tmp);
  if (crema_workspace_reserve(scratch(e), tmp ? col_padded + tmp : col, err))
    return crema_error_prefix(err, "convolution buffers");
  e->col_floats = tmp ? col_padded : col;
  e->tmp_floats = tmp;
  return 0;
}

void crema_conv_engine_free(crema_conv_engine *e) {
  crema_workspace_release(&e->own);
  e->col_floats = e->tmp_floats = 0;
}

size_t crema_conv_engine_scratch_floats(const crema_conv_engine *e) { return e->col_floats + e->tmp_floats; }

/* ---- depthwise: one input channel per group, `mult` output channels per input channel */

/* Output positions o in [0, out) whose input coordinate o*stride + off lies in [0, in), so
 * the inner loops run without bounds tests (and vectorise for stride 1). */
static void valid_range(int off, int stride, int in, int out, int *lo, int *hi) {
  int a = off >= 0 ? 0 : (-off + stride - 1) / stride;
  int b = in - off <= 0 ? 0 : (in - off - 1) / stride + 1;
  if (b > out) b = out;
  if (a > b) a = b;
  *lo = a;
  *hi = b;
}

static void depthwise_forward(const crema_conv_engine *e, const float *x, const float *w, const float *bias,
                              float *y) {
  const crema_im2col_geom *g = &e->g;
  const int H = g->height, W = g->width, Ho = g->out_h, Wo = g->out_w, kh = g->kernel_h, kw = g->kernel_w;
  const int cx = g->channels, cy = e->cy, mult = cy / cx, sh = g->stride_h, sw = g->stride_w;
  const size_t pin = (size_t)H * W, pout = (size_t)Ho * Wo;
#pragma omp parallel for collapse(2) schedule(static)
  for (int b = 0; b < e->n; b++)
    for (int o = 0; o < cy; o++) {
      const float *src = x + ((size_t)b * cx + o / mult) * pin;
      float *dst = y + ((size_t)b * cy + o) * pout;
      const float b0 = bias ? bias[o] : 0.0f;
      const float *wk = w + (size_t)o * kh * kw;
      /* Row by row: the output row stays in L1 while all kh*kw taps add into it. */
      for (int oh = 0; oh < Ho; oh++) {
        float *drow = dst + (size_t)oh * Wo;
        for (int ow = 0; ow < Wo; ow++) drow[ow] = b0;
        for (int i = 0; i < kh; i++) {
          const int ih = oh * sh + i * g->dilation_h - g->pad_h;
          if (ih < 0 || ih >= H) continue;
          const float *srow = src + (size_t)ih * W; /* row start */
          for (int j = 0; j < kw; j++) {
            const float wv = wk[i * kw + j];
            const int off_w = j * g->dilation_w - g->pad_w;
            int ow_lo, ow_hi;
            valid_range(off_w, sw, W, Wo, &ow_lo, &ow_hi);
            if (sw == 1) {
#pragma omp simd
              for (int ow = ow_lo; ow < ow_hi; ow++) drow[ow] += wv * srow[ow + off_w];
            } else {
#pragma omp simd
              for (int ow = ow_lo; ow < ow_hi; ow++) drow[ow] += wv * srow[ow * sw + off_w];
            }
          }
        }
      }
    }
}

static void depthwise_backward(const crema_conv_engine *e, const float *x, const float *dy, const float *w,
                               float *dw, float *dx) {
  const crema_im2col_geom *g = &e->g;
  const int H = g->height, W = g->width, Ho = g->out_h, Wo = g->out_w, kh = g->kernel_h, kw = g->kernel_w;
  const int cx = g->channels, cy = e->cy, mult = cy / cx, sh = g->stride_h, sw = g->stride_w, n = e->n;
  const size_t pin = (size_t)H * W, pout = (size_t)Ho * Wo;
  if (dw) {
    /* One task per output channel: it owns its kh*kw weights, so no races. Row by row, so a
     * row of dy and of x is reused from cache by every tap of a kernel row. */
#pragma omp parallel for schedule(static)
    for (int o = 0; o < cy; o++) {
      float *wo = dw + (size_t)o * kh * kw;
      for (int b = 0; b < n; b++) {
        const float *src = x + ((size_t)b * cx + o / mult) * pin;
        const float *d = dy + ((size_t)b * cy + o) * pout;
        for (int i = 0; i < kh; i++) {
          const int off_h = i * g->dilation_h - g->pad_h;
          int oh_lo, oh_hi;
          valid_range(off_h, sh, H, Ho, &oh_lo, &oh_hi);
          for (int oh = oh_lo; oh < oh_hi; oh++) {
            const float *srow = src + (size_t)(oh * sh + off_h) * W; /* row start */
            const float *drow = d + (size_t)oh * Wo;
            for (int j = 0; j < kw; j++) {
              const int off_w = j * g->dilation_w - g->pad_w;
              int ow_lo, ow_hi;
              valid_range(off_w, sw, W, Wo, &ow_lo, &ow_hi);
              float acc = 0.0f;
              if (sw == 1) {
#pragma omp simd reduction(+ : acc)
                for (int ow = ow_lo; ow < ow_hi; ow++) acc += drow[ow] * srow[ow + off_w];
              } else {
#pragma omp simd reduction(+ : acc)
                for (int ow = ow_lo; ow < ow_hi; ow++) acc += drow[ow] * srow[ow * sw + off_w];
              }
              wo[i * kw + j] += acc;
            }
          }
        }
      }
    }
  }
  if (dx) {
    /* One task per input plane: every output channel of that input writes only into it. */
#pragma omp parallel for collapse(2) schedule(static)
    for (int b = 0; b < n; b++)
      for (int c = 0; c < cx; c++) {
        float *dst = dx + ((size_t)b * cx + c) * pin;
        memset(dst, 0, pin * sizeof(float));
        for (int o = c * mult; o < (c + 1) * mult; o++) {
          const float *d = dy + ((size_t)b * cy + o) * pout;
          for (int i = 0; i < kh; i++) {
            const int off_h = i * g->dilation_h - g->pad_h;
            int oh_lo, oh_hi;
            valid_range(off_h, sh, H, Ho, &oh_lo, &oh_hi);
            for (int j = 0; j < kw; j++) {
              const float wv = w[((size_t)o * kh + i) * kw + j];
              const int off_w = j * g->dilation_w - g->pad_w;
              int ow_lo, ow_hi;
              valid_range(off_w, sw, W, Wo, &ow_lo, &ow_hi);
              for (int oh = oh_lo; oh < oh_hi; oh++) {
                float *drow = dst + (size_t)(oh * sh + off_h) * W; /* row start */
                const float *srow = d + (size_t)oh * Wo;
                if (sw == 1) {
#pragma omp simd
                  for (int ow = ow_lo; ow < ow_hi; ow++) drow[ow + off_w] += wv * srow[ow];
                } else {
#pragma omp simd
                  for (int ow = ow_lo; ow < ow_hi; ow++) drow[ow * sw + off_w] += wv * srow[ow];
                }
              }
            }
          }
        }
      }
  }
}

/* ---- forward / backward */

/* C = alpha op(A) op(B) + beta C for the general path: with e->omp_gemm, on oneDNN's sgemm
 * over OpenMP's threads (as InnerProduct's products) where crema_gemm_prefers_onednn says it
 * is faster, else on OpenBLAS. Reference-only runs (e->omp_gemm false) stay on OpenBLAS. */
static void ref_gemm(const crema_conv_engine *e, bool ta, bool tb, int m, int n, int k, float alpha,
                     const float *a, int lda, const float *b, int ldb, float beta, float *c, int ldc) {
  if (e->omp_gemm)
    crema_gemm_best(ta, tb, m, n, k, alpha, a, lda, b, ldb, beta, c, ldc);
  else
    crema_gemm_ld(ta, tb, m, n, k, alpha, a, lda, b, ldb, beta, c, ldc);
}

/* Column matrix of nb images into col. A pointwise (1x1, stride 1, no pad) convolution
 * needs no im2col: its columns are the images' planes side by side, a plain transpose of
 * the first two axes. */
static void lower(const crema_conv_engine *e, int nb, const float *x, float *col) {
  if (e->pointwise)
    crema_batch_to_rows(nb, e->g.channels, (size_t)e->g.height * e->g.width, x, col);
  else
    crema_im2col(&e->g, nb, x, col);
}

void crema_conv_engine_forward(crema_conv_engine *e, const float *x, const float *w, const float *bias,
                               crema_act act, float *y) {
  const crema_im2col_geom *g = &e->g;
  const int G = e->group, cx = g->channels, cy = e->cy, mg = cy / G;
  const size_t plane = (size_t)g->out_h * g->out_w, pin = (size_t)g->height * g->width;
  const int kg = (int)(crema_im2col_rows(g) / (size_t)G);
  if (e->n == 0 || plane == 0) return;
  if (e->path == CREMA_CONV_DEPTHWISE) {
    depthwise_forward(e, x, w, bias, y);
    crema_act_apply(act, (size_t)e->n * cy * plane, y, false);
    return;
  }
  if (e->path == CREMA_CONV_1X1) {
    for (int b = 0; b < e->n; b++)
      for (int gr = 0; gr < G; gr++)
        ref_gemm(e, false, false, mg, (int)plane, kg, 1.0f, w + (size_t)gr * mg * kg, kg,
                 x + ((size_t)b * cx + (size_t)gr * kg) * pin, (int)plane, 0.0f,
                 y + ((size_t)b * cy + (size_t)gr * mg) * plane, (int)plane);
    if (bias) crema_conv_bias_add(e->n, cy, plane, bias, y);
    crema_act_apply(act, (size_t)e->n * cy * plane, y, false);
    return;
  }
  float *col = crema_workspace_data(scratch(e)), *tmp = col + e->col_floats;
  for (int b0 = 0; b0 < e->n; b0 += e->chunk) {
    const int nb = e->n - b0 < e->chunk ? e->n - b0 : e->chunk;
    const size_t ld = (size_t)nb * plane;
    float *yb = y + (size_t)b0 * cy * plane;
    /* One image: the GEMM result (Cy, Ho*Wo) already is its NCHW output, no scatter. */
    float *out = nb == 1 ? yb : tmp;
    lower(e, nb, x + (size_t)b0 * cx * pin, col);
    for (int gr = 0; gr < G; gr++)
      ref_gemm(e, false, false, mg, (int)ld, kg, 1.0f, w + (size_t)gr * mg * kg, kg,
               col + (size_t)gr * kg * ld, (int)ld, 0.0f, out + (size_t)gr * mg * ld, (int)ld);
    if (nb > 1)
      crema_rows_to_batch(nb, cy, plane, tmp, bias, yb);
    else if (bias)
      crema_conv_bias_add(1, cy, plane, bias, yb);
    crema_act_apply(act, (size_t)nb * cy * plane, yb, false); /* while the chunk is in cache */
  }
}

void crema_conv_engine_backward(crema_conv_engine *e, const float *x, const float *dy, const float *w,
                                float *dw, float *dx) {
  const crema_im2col_geom *g = &e->g;
  const int G = e->group, cx = g->channels, cy = e->cy, mg = cy / G;
  const size_t plane = (size_t)g->out_h * g->out_w, pin = (size_t)g->height * g->width;
  const int kg = (int)(crema_im2col_rows(g) / (size_t)G);
  if (!dw && !dx) return;
  if (e->n == 0 || plane == 0) {
    if (dx) memset(dx, 0, (size_t)e->n * cx * pin * sizeof(float));
    return;
  }
  if (e->path == CREMA_CONV_DEPTHWISE) {
    depthwise_backward(e, x, dy, w, dw, dx);
    return;
  }
  if (e->path == CREMA_CONV_1X1) {
    for (int b = 0; b < e->n; b++)
      for (int gr = 0; gr < G; gr++) {
        const float *dyg = dy + ((size_t)b * cy + (size_t)gr * mg) * plane;
        if (dw)
          ref_gemm(e, false, true, mg, kg, (int)plane, 1.0f, dyg, (int)plane,
                   x + ((size_t)b * cx + (size_t)gr * kg) * pin, (int)plane, 1.0f, dw + (size_t)gr * mg * kg,
                   kg);
        if (dx)
          ref_gemm(e, true, false, kg, (int)plane, mg, 1.0f, w + (size_t)gr * mg * kg, kg, dyg, (int)plane,
                   0.0f, dx + ((size_t)b * cx + (size_t)gr * kg) * pin, (int)plane);
      }
    return;
  }
  float *col = crema_workspace_data(scratch(e)), *tmp = col + e->col_floats;
  for (int b0 = 0; b0 < e->n; b0 += e->chunk) {
    const int nb = e->n - b0 < e->chunk ? e->n - b0 : e->chunk;
    const size_t ld = (size_t)nb * plane;
    /* One image: its dy (Cy, Ho*Wo) already is the gathered matrix. */
    const float *dyb = dy + (size_t)b0 * cy * plane, *d = dyb;
    if (nb > 1) {
      crema_batch_to_rows(nb, cy, plane, dyb, tmp);
      d = tmp;
    }
    if (dw) {
      lower(e, nb, x + (size_t)b0 * cx * pin, col);
      for (int gr = 0; gr < G; gr++)
        ref_gemm(e, false, true, mg, kg, (int)ld, 1.0f, d + (size_t)gr * mg * ld, (int)ld,
                 col + (size_t)gr * kg * ld, (int)ld, 1.0f, dw + (size_t)gr * mg * kg, kg);
    }
    if (dx) {
      for (int gr = 0; gr < G; gr++)
        ref_gemm(e, true, false, kg, (int)ld, mg, 1.0f, w + (size_t)gr * mg * kg, kg,
                 d + (size_t)gr * mg * ld, (int)ld, 0.0f, col + (size_t)gr * kg * ld, (int)ld);
      if (e->pointwise) /* each pixel has exactly one column entry: a plain scatter */
        crema_rows_to_batch(nb, cx, pin, col, NULL, dx + (size_t)b0 * cx * pin);
      else
        crema_col2im(g, nb, col, dx + (size_t)b0 * cx * pin);
    }
  }
}

void crema_conv_bias_backward(int n, int c, size_t s, const float *dy, float *dbias) {
#pragma omp parallel for schedule(static) if ((size_t)n * c * s > 32768)
  for (int ch = 0; ch < c; ch++) {
    double acc = 0;
    for (int b = 0; b < n; b++) {
      const float *d = dy + ((size_t)b * c + ch) * s;
      float part = 0.0f;
#pragma omp simd reduction(+ : part)
      for (size_t k = 0; k < s; k++) part += d[k];
      acc += part;
    }
    dbias[ch] += (float)acc;
  }
}

void crema_conv_bias_add(int n, int c, size_t s, const float *bias, float *x) {
#pragma omp parallel for collapse(2) schedule(static) if ((size_t)n * c * s > 32768)
  for (int b = 0; b < n; b++)
    for (int ch = 0; ch < c; ch++) {
      float *d = x + ((size_t)b * c + ch) * s;
      const float v = bias[ch];
      for (size_t k = 0; k < s; k++) d[k] += v;
    }
}
