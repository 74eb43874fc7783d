/* im2col_layer.c -- Caffe's "Im2col": the convolution windows of each image as channels.
 *   bottom (N, C, H, W) -> top (N, C*kh*kw, Ho, Wo), with top[n, (c*kh + i)*kw + j, oh, ow] =
 *   bottom[n, c, oh*sh - ph + i*dh, ow*sw - pw + j*dw] (0 in the padding)
 *   d bottom = col2im(d top), the adjoint
 * Window geometry from convolution_param (kernel, stride, pad, dilation; num_output unused). */
#include <stdlib.h>

#include "layers/conv_common.h"
#include "layers/layer.h"
#include "tensor/im2col.h"

typedef struct im2col_state {
  crema_im2col_geom g;
} im2col_state;

static int im2col_setup(crema_layer *l, crema_blob *const *bottom, crema_blob *const *top, crema_error *err) {
  (void)top;
  im2col_state *s = calloc(1, sizeof *s);
  if (!s) return crema_fail(err, "out of memory");
  l->state = s;
  (void)bottom;
  return 0;
}

static int im2col_reshape(crema_layer *l, crema_blob *const *bottom, crema_blob *const *top,
                          crema_error *err) {
  im2col_state *s = l->state;
  /* The convolution reader wants num_output and group; Im2col has neither. */
  Crema__ConvolutionParameter dflt = CREMA__CONVOLUTION_PARAMETER__INIT;
  Crema__ConvolutionParameter cp = l->param->convolution_param ? *l->param->convolution_param : dflt;
  cp.has_num_output = 1;
  cp.num_output = 1;
  cp.group = 1;
  Crema__LayerParameter lp = *l->param;
  lp.convolution_param = &cp;
  crema_layer view = *l;
  view.param = &lp;
  crema_conv_params c;
  if (crema_conv_params_read(&view, bottom[0], &c, err)) return -1;
  if (c.axis != 1) return crema_fail(err, "Im2col needs convolution_param axis 1 (N, C, H, W)");
  crema_im2col_geom g = {.channels = bottom[0]->shape[1],
                         .height = bottom[0]->shape[2],
                         .width = bottom[0]->shape[3],
                         .kernel_h = c.kernel_h,
                         .kernel_w = c.kernel_w,
                         .pad_h = c.pad_h,
                         .pad_w = c.pad_w,
                         .stride_h = c.stride_h,
                         .stride_w = c.stride_w,
                         .dilation_h = c.dilation_h,
                         .dilation_w = c.dilation_w};
  if (crema_im2col_geom_finish(&g))
    return crema_fail(err, "the %dx%d window (dilation %d, %d) does not fit the padded %dx%d input",
                      g.kernel_h, g.kernel_w, g.dilation_h, g.dilation_w, g.height + 2 * g.pad_h,
                      g.width + 2 * g.pad_w);
  s->g = g;
  const size_t rows = crema_im2col_rows(&g);
  if (rows > 0x7fffffff) return crema_fail(err, "Im2col output has too many channels (%zu)", rows);
  return crema_blob_reshape4(top[0], bottom[0]->shape[0], (int)rows, g.out_h, g.out_w, err);
}

static int im2col_forward(crema_layer *l, crema_blob *const *bottom, crema_blob *const *top,
                          crema_error *err) {
  (void)err;
  const im2col_state *s = l->state;
  const int n = bottom[0]->shape[0];
  const size_t in = bottom[0]->count / (size_t)(n ? n : 1), out = top[0]->count / (size_t)(n ? n : 1);
  for (int i = 0; i < n; i++)
    crema_im2col(&s->g, 1, bottom[0]->data + (size_t)i * in, top[0]->data + (size_t)i * out);
  return 0;
}

static void im2col_backward(crema_layer *l, crema_blob *const *top, const bool *propagate_down,
                            crema_blob *const *bottom) {
  if (!propagate_down[0]) return;
  const im2col_state *s = l->state;
  const int n = bottom[0]->shape[0];
  const size_t in = bottom[0]->count / (size_t)(n ? n : 1), out = top[0]->count / (size_t)(n ? n : 1);
  for (int i = 0; i < n; i++)
    crema_col2im(&s->g, 1, top[0]->diff + (size_t)i * out, bottom[0]->diff + (size_t)i * in);
}

static void im2col_free(crema_layer *l) { free(l->state); }

const crema_layer_ops crema_im2col_ops = {
    .type = "Im2col",
    .min_bottoms = 1,
    .max_bottoms = 1,
    .min_tops = 1,
    .max_tops = 1,
    .setup = im2col_setup,
    .reshape = im2col_reshape,
    .forward = im2col_forward,
    .backward = im2col_backward,
    .free_state = im2col_free,
};
