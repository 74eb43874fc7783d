/* Deconvolution: Caffe's DeconvolutionLayer, the transpose of Convolution (its forward is
 * Convolution's bottom-gradient, its bottom-gradient Convolution's forward). Weights
 * (C_in, num_output/group, kh, kw), bias (num_output); output size
 * stride*(in-1) + dilation*(k-1)+1 - 2*pad. Reads convolution_param, as Caffe does. */
#include <inttypes.h>
#include <limits.h>
#include <stdint.h>
#include <stdlib.h>

#include "engine/engine.h"
#include "layers/conv_common.h"
#include "layers/layer.h"

typedef struct deconv_state {
  crema_conv_params p;
  crema_conv_engine engine; /* the convolution from the deconvolution's top to its bottom */
} deconv_state;

static int deconv_setup(crema_layer *l, crema_blob *const *bottom, crema_blob *const *top, crema_error *err) {
  if (crema_conv_nd_wanted(l, bottom[0])) { /* spatial axes != 2: conv_nd.c */
    extern const crema_layer_ops crema_deconvolution_nd_ops;
    l->ops = &crema_deconvolution_nd_ops;
    return l->ops->setup(l, bottom, top, err);
  }
  if (l->n_bottom != l->n_top)
    return crema_fail(err, "needs as many tops as bottoms (got %d bottoms, %d tops)", l->n_bottom, l->n_top);
  deconv_state *s = calloc(1, sizeof *s);
  if (!s) return crema_fail(err, "out of memory");
  l->state = s;
  crema_conv_engine_use_workspace(&s->engine, l->workspace);
  if (crema_conv_params_read(l, bottom[0], &s->p, err)) return -1;
  const Crema__ConvolutionParameter *cp = l->param->convolution_param;
  const int channels = bottom[0]->shape[s->p.axis];
  const int wshape[4] = {channels, s->p.num_output / s->p.group, s->p.kernel_h, s->p.kernel_w};
  if (crema_layer_add_blob(l, 0, 4, wshape, cp ? cp->weight_filler : NULL, err))
    return crema_error_prefix(err, "weight_filler");
  if (s->p.bias_term) {
    const int bshape[1] = {s->p.num_output};
    if (crema_layer_add_blob(l, 1, 1, bshape, cp ? cp->bias_filler : NULL, err))
      return crema_error_prefix(err, "bias_filler");
  }
  return 0;
}

static int deconv_reshape(crema_layer *l, crema_blob *const *bottom, crema_blob *const *top,
                          crema_error *err) {
  deconv_state *s = l->state;
  const crema_blob *b0 = bottom[0];
  const int axis = s->p.axis;
  char got[128], want[128];
  for (int i = 1; i < l->n_bottom; i++)
    if (!crema_blob_same_shape(bottom[i], b0))
      return crema_fail(err, "all bottoms must have the same shape: bottom 0 is %s, bottom %d is %s",
                        crema_blob_shape_string(b0, want, sizeof want), i,
                        crema_blob_shape_string(bottom[i], got, sizeof got));
  const int channels = l->blobs[0]->shape[0];
  if (b0->num_axes != axis + 3 || b0->shape[axis] != channels)
    return crema_fail(err,
                      "input size incompatible with the deconvolution weights: bottom is %s, weights %s "
                      "expect %d channels at axis %d",
                      crema_blob_shape_string(b0, got, sizeof got),
                      crema_blob_shape_string(l->blobs[0], want, sizeof want), channels, axis);
  const int in_h = b0->shape[axis + 1], in_w = b0->shape[axis + 2];
  /* In 64 bits: stride * (in - 1) and the dilated kernel overflow an int for hostile
   * prototxts; the output side must fit an int (and so must the convolution geometry). */
  const int64_t ext_h = (int64_t)s->p.dilation_h * (s->p.kernel_h - 1) + 1,
                ext_w = (int64_t)s->p.dilation_w * (s->p.kernel_w - 1) + 1;
  const int64_t out_h64 = (int64_t)s->p.stride_h * (in_h - 1) + ext_h - 2 * (int64_t)s->p.pad_h;
  const int64_t out_w64 = (int64_t)s->p.stride_w * (in_w - 1) + ext_w - 2 * (int64_t)s->p.pad_w;
  if (in_h <= 0 || in_w <= 0 || out_h64 <= 0 || out_w64 <= 0)
    return crema_fail(err,
                      "the %dx%d input gives an empty %" PRId64 "x%" PRId64
                      " output (pad %d,%d too large for the kernel)",
                      in_h, in_w, out_h64, out_w64, s->p.pad_h, s->p.pad_w);
  if (out_h64 > INT_MAX || out_w64 > INT_MAX || ext_h > INT_MAX || ext_w > INT_MAX ||
      out_h64 + 2 * (int64_t)s->p.pad_h > INT_MAX || out_w64 + 2 * (int64_t)s->p.pad_w > INT_MAX)
    return crema_fail(err,
                      "the %dx%d input with stride %d,%d, kernel %dx%d and dilation %d,%d gives an output "
                      "side above 2^31-1; use a smaller stride, kernel or dilation",
                      in_h, in_w, s->p.stride_h, s->p.stride_w, s->p.kernel_h, s->p.kernel_w, s->p.dilation_h,
                      s->p.dilation_w);
  const int out_h = (int)out_h64, out_w = (int)out_w64;
  /* The convolution that maps our top (num_output channels, out_h x out_w) back to our
   * bottom (C_in channels, in_h x in_w). */
  crema_im2col_geom g = {.channels = s->p.num_output,
                         .height = out_h,
                         .width = out_w,
                         .kernel_h = s->p.kernel_h,
                         .kernel_w = s->p.kernel_w,
                         .pad_h = s->p.pad_h,
                         .pad_w = s->p.pad_w,
                         .stride_h = s->p.stride_h,
                         .stride_w = s->p.stride_w,
                         .dilation_h = s->p.dilation_h,
                         .dilation_w = s->p.dilation_w};
  if (crema_im2col_geom_finish(&g) || g.out_h != in_h || g.out_w != in_w)
    return crema_fail(err, "internal geometry mismatch for a %dx%d input", in_h, in_w);
  int shape[CREMA_MAX_AXES];
  for (int k = 0; k < axis; k++) shape[k] = b0->shape[k];
  shape[axis] = s->p.num_output;
  shape[axis + 1] = out_h;
  shape[axis + 2] = out_w;
  for (int i = 0; i < l->n_top; i++)
    if (crema_blob_reshape(top[i], axis + 3, shape, err)) return -1;
  /* Where crema's own engines run, the products go to oneDNN's sgemm where it is faster, as a
   * convolution's reference path does (conv_common.c's ref_gemm): DCGAN-style 4x4 stride-2
   * layers at batch 16 ran at 80-93 GFLOP/s on OpenBLAS's preset Haswell kernel, at 125-161
   * on oneDNN's (one Zen 5 core). */
  const Crema__ConvolutionParameter *cp = l->param->convolution_param;
  s->engine.omp_gemm = crema_engine_winograd_wanted(cp ? (int)cp->engine : 0);
  return crema_conv_engine_reshape(&s->engine, &g, channels, s->p.group,
                                   (int)crema_blob_count_range(b0, 0, axis), err);
}

static int deconv_forward(crema_layer *l, crema_blob *const *bottom, crema_blob *const *top,
                          crema_error *err) {
  (void)err;
  deconv_state *s = l->state;
  const int axis = s->p.axis;
  for (int i = 0; i < l->n_bottom; i++) {
    crema_conv_engine_backward(&s->engine, NULL, bottom[i]->data, l->blobs[0]->data, NULL, top[i]->data);
    if (s->p.bias_term)
      crema_conv_bias_add((int)crema_blob_count_range(top[i], 0, axis), s->p.num_output,
                          crema_blob_count_range(top[i], axis + 1, top[i]->num_axes), l->blobs[1]->data,
                          top[i]->data);
  }
  return 0;
}

static void deconv_backward(crema_layer *l, crema_blob *const *top, const bool *propagate_down,
                            crema_blob *const *bottom) {
  deconv_state *s = l->state;
  const int axis = s->p.axis;
  for (int i = 0; i < l->n_top; i++) {
    const crema_blob *t = top[i];
    if (s->p.bias_term && l->param_propagate_down[1])
      crema_conv_bias_backward((int)crema_blob_count_range(t, 0, axis), t->shape[axis],
                               crema_blob_count_range(t, axis + 1, t->num_axes), t->diff, l->blobs[1]->diff);
    /* In the convolution view our top diff is the input and our bottom the output. */
    if (l->param_propagate_down[0])
      crema_conv_engine_backward(&s->engine, t->diff, bottom[i]->data, l->blobs[0]->data, l->blobs[0]->diff,
                                 NULL);
    if (propagate_down[i])
      crema_conv_engine_forward(&s->engine, t->diff, l->blobs[0]->data, NULL, (crema_act){0},
                                bottom[i]->diff);
  }
}

static void deconv_free(crema_layer *l) {
  deconv_state *s = l->state;
  if (!s) return;
  crema_conv_engine_free(&s->engine);
  free(s);
  l->state = NULL;
}

const crema_layer_ops crema_deconvolution_ops = {
    .type = "Deconvolution",
    .min_bottoms = 1,
    .max_bottoms = -1,
    .min_tops = 1,
    .max_tops = -1,
    .setup = deconv_setup,
    .reshape = deconv_reshape,
    .forward = deconv_forward,
    .backward = deconv_backward,
    .free_state = deconv_free,
};
