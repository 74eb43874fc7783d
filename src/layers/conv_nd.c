/* conv_nd.c -- Convolution and Deconvolution over any number of spatial axes (Caffe's
 * num_spatial_axes != 2, e.g. C3D's (N, C, D, H, W); also force_nd_im2col). convolution.c and
 * deconvolution.c hand such layers here at setup.
 *   bottom (outer, C, S_1 .. S_k), outer = the axes before convolution_param.axis
 *   Convolution:   weights (M, C / group, K_1 .. K_k), O_i = (S_i + 2 P_i - (D_i (K_i - 1) + 1)) / T_i + 1
 *                  y[g] = W[g] . im2col(x)[g] + b        (one GEMM per item and group)
 *   Deconvolution: weights (C, M / group, K_1 .. K_k), O_i = T_i (S_i - 1) + D_i (K_i - 1) + 1 - 2 P_i
 *                  y = col2im(W^T . x) + b               (the transpose of Convolution)
 * kernel_size, stride, pad and dilation: one value for every axis or one per axis (the _h/_w
 * forms are 2-d only, as in Caffe). The N-d im2col is a plain loop over kernel and output
 * positions: the reference path, written for clarity rather than speed. */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "layers/conv_common.h"
#include "layers/layer.h"
#include "tensor/math.h"

#define ND_MAX 6 /* spatial axes */

typedef struct nd_state {
  bool deconv;
  int axis, k_axes, group, num_output, channels;
  bool bias;
  int kernel[ND_MAX], stride[ND_MAX], pad[ND_MAX], dil[ND_MAX];
  int in[ND_MAX], out[ND_MAX]; /* spatial sizes of the conv "image" side (in) and column side (out) */
  size_t kcount, in_count, out_count, outer;
  /* The column buffer (rows * out_count floats), scratch from the net's workspace when the
   * layer has one (l->workspace), else from `own`. */
  crema_workspace *ws;
  crema_workspace own;
} nd_state;

static float *nd_col(nd_state *s) { return crema_workspace_data(s->ws ? s->ws : &s->own); }

/* One value for all axes, or one per axis. */
static int read_rep(const char *name, size_t n, const uint32_t *v, int axes, int dflt, int *out,
                    crema_error *err) {
  if (n != 0 && n != 1 && n != (size_t)axes)
    return crema_fail(err, "%s must be given once, or once per spatial axis (%d), not %zu times", name, axes,
                      n);
  for (int i = 0; i < axes; i++) {
    const uint32_t x = n == 0 ? (uint32_t)dflt : v[n == 1 ? 0 : i];
    if (x > 0x7fffff) return crema_fail(err, "%s %u is too large", name, x);
    out[i] = (int)x;
  }
  return 0;
}

bool crema_conv_nd_wanted(const crema_layer *l, const crema_blob *bottom) {
  const Crema__ConvolutionParameter *p = l->param->convolution_param;
  const int a = p ? p->axis : 1;
  const int axis = a < 0 ? a + bottom->num_axes : a;
  const int spatial = bottom->num_axes - axis - 1;
  return spatial >= 1 && (spatial != 2 || (p && p->force_nd_im2col));
}

static int nd_setup_common(crema_layer *l, crema_blob *const *bottom, bool deconv, crema_error *err) {
  const Crema__ConvolutionParameter *p = l->param->convolution_param;
  if (!p) return crema_fail(err, "convolution_param is required");
  if (l->n_bottom != l->n_top)
    return crema_fail(err, "needs as many tops as bottoms (got %d bottoms, %d tops)", l->n_bottom, l->n_top);
  nd_state *s = calloc(1, sizeof *s);
  if (!s) return crema_fail(err, "out of memory");
  l->state = s;
  s->ws = l->workspace;
  s->deconv = deconv;
  if (crema_blob_canonical_axis(bottom[0], p->axis, &s->axis, err))
    return crema_error_prefix(err, "convolution_param.axis");
  s->k_axes = bottom[0]->num_axes - s->axis - 1;
  if (s->k_axes < 1 || s->k_axes > ND_MAX)
    return crema_fail(err, "%d spatial axes after axis %d; crema's N-d convolution takes 1 to %d", s->k_axes,
                      s->axis, ND_MAX);
  if (p->has_kernel_h || p->has_kernel_w || p->has_stride_h || p->has_stride_w || p->has_pad_h ||
      p->has_pad_w)
    return crema_fail(err,
                      "kernel_h/w, stride_h/w and pad_h/w are for 2-d convolution only; give kernel_size, "
                      "stride and pad once per spatial axis");
  if (!p->has_num_output || !p->num_output || p->num_output > 0x7fffffff)
    return crema_fail(err, "convolution_param.num_output must be given and > 0");
  if (!p->group || p->group > 0x7fffffff) return crema_fail(err, "convolution_param.group must be > 0");
  if (read_rep("kernel_size", p->n_kernel_size, p->kernel_size, s->k_axes, 0, s->kernel, err) ||
      read_rep("stride", p->n_stride, p->stride, s->k_axes, 1, s->stride, err) ||
      read_rep("pad", p->n_pad, p->pad, s->k_axes, 0, s->pad, err) ||
      read_rep("dilation", p->n_dilation, p->dilation, s->k_axes, 1, s->dil, err))
    return -1;
  for (int i = 0; i < s->k_axes; i++)
    if (s->kernel[i] <= 0 || s->stride[i] <= 0 || s->dil[i] <= 0)
      return crema_fail(err, "kernel_size, stride and dilation must be > 0 on every spatial axis");
  s->num_output = (int)p->num_output;
  s->group = (int)p->group;
  s->bias = p->bias_term;
  s->channels = bottom[0]->shape[s->axis];
  if (s->channels % s->group || s->num_output % s->group)
    return crema_fail(err, "channels %d and num_output %d must both be multiples of group %d", s->channels,
                      s->num_output, s->group);
  int wshape[ND_MAX + 2];
  wshape[0] = deconv ? s->channels : s->num_output;
  wshape[1] = deconv ? s->num_output / s->group : s->channels / s->group;
  s->kcount = 1;
  for (int i = 0; i < s->k_axes; i++) {
    wshape[2 + i] = s->kernel[i];
    s->kcount *= (size_t)s->kernel[i];
  }
  if (crema_layer_add_blob(l, 0, 2 + s->k_axes, wshape, p->weight_filler, err))
    return crema_error_prefix(err, "weight_filler");
  if (s->bias && crema_layer_add_blob(l, 1, 1, &s->num_output, p->bias_filler, err))
    return crema_error_prefix(err, "bias_filler");
  return 0;
}

static int nd_reshape(crema_layer *l, crema_blob *const *bottom, crema_blob *const *top, crema_error *err) {
  nd_state *s = l->state;
  const crema_blob *b = bottom[0];
  char sh[256];
  if (b->num_axes != s->axis + 1 + s->k_axes || b->shape[s->axis] != s->channels)
    return crema_fail(err,
                      "the bottom changed to %s; this layer was set up for %d channels and %d spatial axes",
                      crema_blob_shape_string(b, sh, sizeof sh), s->channels, s->k_axes);
  int shape[CREMA_MAX_AXES];
  memcpy(shape, b->shape, sizeof shape);
  shape[s->axis] = s->num_output;
  s->in_count = s->out_count = 1;
  for (int i = 0; i < s->k_axes; i++) {
    const long S = b->shape[s->axis + 1 + i], ext = (long)s->dil[i] * (s->kernel[i] - 1) + 1;
    long O;
    if (s->deconv) {
      O = (long)s->stride[i] * (S - 1) + ext - 2L * s->pad[i];
      s->out[i] = (int)S; /* the column side is the deconv's bottom */
      s->in[i] = (int)O;
    } else {
      O = (S + 2L * s->pad[i] - ext) / s->stride[i] + 1;
      if (S + 2L * s->pad[i] < ext) O = 0;
      s->in[i] = (int)S;
      s->out[i] = (int)O;
    }
    if (O <= 0 || O > 0x7fffffff)
      return crema_fail(
          err, "spatial axis %d: the kernel (%d, dilation %d) does not fit the input %ld with pad %d", i,
          s->kernel[i], s->dil[i], S, s->pad[i]);
    shape[s->axis + 1 + i] = (int)O;
    s->in_count *= (size_t)s->in[i];
    s->out_count *= (size_t)s->out[i];
  }
  s->outer = crema_blob_count_range(b, 0, s->axis);
  const size_t col_rows = (size_t)(s->deconv ? s->num_output : s->channels) * s->kcount;
  if (s->out_count && col_rows > SIZE_MAX / sizeof(float) / s->out_count)
    return crema_fail(err, "a column buffer of %zu x %zu floats exceeds the address space", col_rows,
                      s->out_count);
  if (crema_workspace_reserve(s->ws ? s->ws : &s->own, col_rows * s->out_count, err)) return -1;
  for (int t = 0; t < l->n_top; t++) {
    if (!crema_blob_same_shape(bottom[t], b))
      return crema_fail(err, "every bottom needs the shape of the first (%s)",
                        crema_blob_shape_string(b, sh, sizeof sh));
    if (crema_blob_reshape(top[t], b->num_axes, shape, err)) return -1;
  }
  return 0;
}

/* The image (C, in...) and its columns (C * kcount, out...): im2col when to_col, else col2im
 * (accumulating into a zeroed image). One output row at a time (every axis but the last
 * fixed): along the last axis the input positions step by the stride, so a row is zeros, a
 * strided run of the image and zeros again, and whether the other axes fall inside is known
 * once per row. Element by element, with the inside test and the index on every axis for
 * every element, this was 68% of a 3-d convolution's time. col2im adds in the same order as
 * before (channel, kernel offset, output position), so the bits are the same; channels run
 * in parallel, each writing only its own image channel or column rows. */
static void nd_im2col(const nd_state *s, int C, float *im, float *col, bool to_col) {
  const int last = s->k_axes - 1;
  if (!to_col) memset(im, 0, (size_t)C * s->in_count * sizeof *im);
  const size_t W = (size_t)s->out[last], rows = s->out_count / W;
  const long in_w = s->in[last], stride = s->stride[last];
#pragma omp parallel for if ((size_t)C * s->kcount * s->out_count > CREMA_PAR_MIN) schedule(static)
  for (int c = 0; c < C; c++) {
    int kk[ND_MAX] = {0};
    for (size_t ki = 0; ki < s->kcount; ki++) {
      float *crow = col + ((size_t)c * s->kcount + ki) * s->out_count;
      /* along the last axis, output ow reads input x0 + ow * stride: inside for ow in [lo, hi) */
      const long x0 = (long)kk[last] * s->dil[last] - s->pad[last];
      const long lo_l = x0 >= 0 ? 0 : (-x0 + stride - 1) / stride;
      const long hi_l = x0 < in_w ? (in_w - 1 - x0) / stride + 1 : 0;
      const size_t hi = hi_l < (long)W ? (size_t)hi_l : W, lo = (size_t)lo_l < hi ? (size_t)lo_l : hi;
      int oo[ND_MAX] = {0};
      for (size_t r = 0; r < rows; r++) {
        size_t at = 0;
        bool inside = true;
        for (int a = 0; a < last && inside; a++) {
          const long pos = (long)oo[a] * s->stride[a] - s->pad[a] + (long)kk[a] * s->dil[a];
          inside = pos >= 0 && pos < s->in[a];
          at = at * (size_t)s->in[a] + (size_t)pos;
        }
        float *o = crow + r * W;
        if (!inside) {
          if (to_col) memset(o, 0, W * sizeof *o);
        } else {
          float *img = im + (size_t)c * s->in_count + at * (size_t)in_w;
          if (to_col) {
            for (size_t ow = 0; ow < lo; ow++) o[ow] = 0.0f;
            for (size_t ow = lo; ow < hi; ow++) o[ow] = img[x0 + (long)ow * stride];
            for (size_t ow = hi; ow < W; ow++) o[ow] = 0.0f;
          } else {
            for (size_t ow = lo; ow < hi; ow++) img[x0 + (long)ow * stride] += o[ow];
          }
        }
        for (int a = last - 1; a >= 0; a--) {
          if (++oo[a] < s->out[a]) break;
          oo[a] = 0;
        }
      }
      for (int a = last; a >= 0; a--) {
        if (++kk[a] < s->kernel[a]) break;
        kk[a] = 0;
      }
    }
  }
}

static int nd_forward(crema_layer *l, crema_blob *const *bottom, crema_blob *const *top, crema_error *err) {
  (void)err;
  nd_state *s = l->state;
  const float *w = l->blobs[0]->data;
  const int G = s->group, M = s->num_output, C = s->channels;
  float *col = nd_col(s);
  for (int t = 0; t < l->n_top; t++)
    for (size_t n = 0; n < s->outer; n++) {
      const float *x = bottom[t]->data + n * (size_t)C * (s->deconv ? s->out_count : s->in_count);
      float *y = top[t]->data + n * (size_t)M * (s->deconv ? s->in_count : s->out_count);
      if (!s->deconv) {
        nd_im2col(s, C, (float *)x, col, true);
        const int mg = M / G, kg = (int)((size_t)(C / G) * s->kcount);
        for (int g = 0; g < G; g++)
          crema_gemm(false, false, mg, (int)s->out_count, kg, 1.0f, w + (size_t)g * mg * kg,
                     col + (size_t)g * kg * s->out_count, 0.0f, y + (size_t)g * mg * s->out_count);
        if (s->bias)
          for (int m = 0; m < M; m++)
            for (size_t o = 0; o < s->out_count; o++) y[(size_t)m * s->out_count + o] += l->blobs[1]->data[m];
      } else {
        /* col (M * kcount, S) = W^T (M/G * kcount, C/G) per group . x (C/G, S) */
        const int cg = C / G, kg = (int)((size_t)(M / G) * s->kcount);
        for (int g = 0; g < G; g++)
          crema_gemm(true, false, kg, (int)s->out_count, cg, 1.0f, w + (size_t)g * cg * kg,
                     x + (size_t)g * cg * s->out_count, 0.0f, col + (size_t)g * kg * s->out_count);
        nd_im2col(s, M, y, col, false);
        if (s->bias)
          for (int m = 0; m < M; m++)
            for (size_t o = 0; o < s->in_count; o++) y[(size_t)m * s->in_count + o] += l->blobs[1]->data[m];
      }
    }
  return 0;
}

static void nd_backward(crema_layer *l, crema_blob *const *top, const bool *propagate_down,
                        crema_blob *const *bottom) {
  nd_state *s = l->state;
  const float *w = l->blobs[0]->data;
  float *dw = l->blobs[0]->diff;
  const int G = s->group, M = s->num_output, C = s->channels;
  const size_t ysz = s->deconv ? s->in_count : s->out_count, xsz = s->deconv ? s->out_count : s->in_count;
  float *col = nd_col(s);
  for (int t = 0; t < l->n_top; t++)
    for (size_t n = 0; n < s->outer; n++) {
      const float *x = bottom[t]->data + n * (size_t)C * xsz, *dy = top[t]->diff + n * (size_t)M * ysz;
      float *dx = bottom[t]->diff + n * (size_t)C * xsz;
      if (s->bias && l->param_propagate_down[1])
        for (int m = 0; m < M; m++) {
          double acc = 0;
          for (size_t o = 0; o < ysz; o++) acc += dy[(size_t)m * ysz + o];
          l->blobs[1]->diff[m] += (float)acc;
        }
      if (!s->deconv) {
        const int mg = M / G, kg = (int)((size_t)(C / G) * s->kcount);
        if (l->param_propagate_down[0]) {
          nd_im2col(s, C, (float *)x, col, true);
          for (int g = 0; g < G; g++)
            crema_gemm(false, true, mg, kg, (int)s->out_count, 1.0f, dy + (size_t)g * mg * s->out_count,
                       col + (size_t)g * kg * s->out_count, 1.0f, dw + (size_t)g * mg * kg);
        }
        if (propagate_down[t]) {
          for (int g = 0; g < G; g++)
            crema_gemm(true, false, kg, (int)s->out_count, mg, 1.0f, w + (size_t)g * mg * kg,
                       dy + (size_t)g * mg * s->out_count, 0.0f, col + (size_t)g * kg * s->out_count);
          nd_im2col(s, C, dx, col, false);
        }
      } else {
        /* Deconvolution is Convolution's transpose: columns of d y. */
        const int cg = C / G, kg = (int)((size_t)(M / G) * s->kcount);
        nd_im2col(s, M, (float *)dy, col, true);
        if (l->param_propagate_down[0])
          for (int g = 0; g < G; g++)
            crema_gemm(false, true, cg, kg, (int)s->out_count, 1.0f, x + (size_t)g * cg * s->out_count,
                       col + (size_t)g * kg * s->out_count, 1.0f, dw + (size_t)g * cg * kg);
        if (propagate_down[t])
          for (int g = 0; g < G; g++)
            crema_gemm(false, false, cg, (int)s->out_count, kg, 1.0f, w + (size_t)g * cg * kg,
                       col + (size_t)g * kg * s->out_count, 0.0f, dx + (size_t)g * cg * s->out_count);
      }
    }
}

static int conv_nd_setup(crema_layer *l, crema_blob *const *bottom, crema_blob *const *top,
                         crema_error *err) {
  (void)top;
  return nd_setup_common(l, bottom, false, err);
}

static int deconv_nd_setup(crema_layer *l, crema_blob *const *bottom, crema_blob *const *top,
                           crema_error *err) {
  (void)top;
  return nd_setup_common(l, bottom, true, err);
}

static void nd_free(crema_layer *l) {
  nd_state *s = l->state;
  if (!s) return;
  crema_workspace_release(&s->own);
  free(s);
}

const crema_layer_ops crema_convolution_nd_ops = {
    .type = "Convolution",
    .min_bottoms = 1,
    .max_bottoms = -1,
    .min_tops = 1,
    .max_tops = -1,
    .setup = conv_nd_setup,
    .reshape = nd_reshape,
    .forward = nd_forward,
    .backward = nd_backward,
    .free_state = nd_free,
};

const crema_layer_ops crema_deconvolution_nd_ops = {
    .type = "Deconvolution",
    .min_bottoms = 1,
    .max_bottoms = -1,
    .min_tops = 1,
    .max_tops = -1,
    .setup = deconv_nd_setup,
    .reshape = nd_reshape,
    .forward = nd_forward,
    .backward = nd_backward,
    .free_state = nd_free,
};
