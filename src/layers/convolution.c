/* Convolution: Caffe's ConvolutionLayer. top = W * bottom + b over every (dilated, strided,
 * padded) window, with weights (num_output, C/group, kh, kw) and bias (num_output).
 * Several bottom/top pairs share the weights (all bottoms must have the same shape).
 * The arithmetic lives in conv_common.c (batch-folded GEMM, 1x1 and depthwise paths), or in
 * the fast engines of src/engine unless convolution_param.engine is CAFFE: crema's Winograd
 * F(4x4,3x3) for 3x3 stride-1 layers, its per-image 1x1 engine for 1x1 stride-1 layers, oneDNN
 * (when crema has it) for the other shapes. */
#include <stdio.h>
#include <stdlib.h>

#include "engine/engine.h"
#include "layers/conv_common.h"
#include "layers/layer.h"

/* Below this many weights per output channel (C/group * kh * kw), the weight gradient runs on
 * the reference path even when oneDNN does the rest: measured on LeNet's conv1 (1x5x5 = 25,
 * batch 64) oneDNN's backward-weights took 1.8-5x the reference's time; from CaffeNet's conv1
 * (3x11x11 = 363) up it was as fast or faster. */
#define ONEDNN_MIN_WEIGHTS_PER_OUTPUT 64
/* Below this many input channels per group (an RGB first layer) the data gradient runs on
 * the reference path: oneDNN 2.6's backward-data for 3 channels, 11x11 stride 4 took 40 ms
 * where the forward took 7 (issue 12's measurement). Only force_backward nets need it. */
#define ONEDNN_MIN_CHANNELS_FOR_DATA_GRADIENT 8

/* A 1x1, stride-1, unpadded convolution stays on the reference path: there the input already
 * is the GEMM's matrix (no im2col, no copy), while oneDNN needs both operands converted to its
 * blocked layout and back. Measured in GoogLeNet (1 thread, in the net): its 1x1 layers took
 * 1050 ms forward and 1808 ms backward on oneDNN against 640 and 1317 ms on the reference. */
static bool reference_is_copy_free(const crema_im2col_geom *g) {
  return g->kernel_h == 1 && g->kernel_w == 1 && g->stride_h == 1 && g->stride_w == 1 && g->pad_h == 0 &&
         g->pad_w == 0;
}

/* Strided 1x1 convolutions too (ResNet's projections; the reference's im2col only picks every
 * other pixel). Most reach this point only with few images: planes of 100+ output pixels go to
 * the 1x1 engine first when there are as many images as threads, smaller ones folded into one
 * product for the batch from 100 columns on (see pointwise.c). Where oneDNN has no AVX-512,
 * on ResNet-50 at batch 10 (AVX2, 1 and 2 threads, in the net) its jit_1x1:avx2 took as long
 * forward and 1.2-1.3x the reference's time backward (res3a_branch1 49.8 against 39.2 ms,
 * res5a_branch1 42.1 against 33.7). With AVX-512 (a Zen 5 core, jit_1x1:avx512_core), at batch
 * 1 and 2 where they come here, its backward took 1.3-2.6x the reference's time (res5a_branch1
 * at batch 1 on one thread 9.2-10.3 against 3.9-4.6 ms; res3a_branch1 on two 1.9 against 1.3)
 * and its forward 0.95-2.0x: there they stay on oneDNN only when the reference's products run on
 * OpenBLAS (`fast` false: CREMA_ENGINE=onednn, oneDNN's engine alone, as before). */
static bool projection_on_reference(const crema_im2col_geom *g, bool fast) {
  return g->kernel_h == 1 && g->kernel_w == 1 && g->pad_h == 0 && g->pad_w == 0 &&
         (fast || !crema_engine_onednn_avx512());
}

/* Products narrower than this many columns (images x output pixels) run on the reference
 * path where its products run on oneDNN's sgemm (`fast`): oneDNN's direct convolution spends
 * its time on the borders and the reductions of so few pixels. Measured on a Zen 5 core
 * (jit:avx512_core), batch 1, 7x7 planes (49 columns), forward / backward: ResNet-50's res5
 * 3x3 layers (512 -> 512) 2.2 / 5.6 -> 2.0 / 3.3-4.0 ms on one thread, 1.2 / 3.0-3.4 -> 1.2 /
 * 1.8-2.5 on two; GoogLeNet's inception_5 3x3 layers 0.44-0.66 / 1.1-1.7 -> 0.41-0.54 /
 * 0.75-1.1, its 5x5 ones even; the same with OpenBLAS's SkylakeX kernels. At 98 and 147
 * columns (batch 2 and 3) it still won res5's 3x3 layers on one thread but tied or lost on two
 * (its narrow product split over both threads), and lost GoogLeNet's inception_5 on two. */
#define ONEDNN_MIN_COLUMNS 64

static bool narrow_on_reference(const crema_im2col_geom *g, int n, bool fast) {
  return fast && (size_t)n * g->out_h * g->out_w < ONEDNN_MIN_COLUMNS;
}

typedef struct conv_state {
  crema_conv_params p;
  crema_conv_engine engine;
  crema_winograd_conv *wino; /* Winograd's buffers, or NULL */
  crema_pointwise_conv *pw;  /* the per-image 1x1 engine, or NULL */
  crema_per_image_conv *pi;  /* the per-image engine for small kernels, or NULL */
  crema_onednn_conv *fast;   /* oneDNN's primitives, or NULL: (without wino, pw) the reference runs */
  bool ref_weights;          /* with fast: the weight gradient still runs on the reference engine */
  bool ref_data;             /* with fast: the data gradient still runs on the reference engine */
  bool has_bias;             /* bias_term, or a BatchNorm folded in (l->fusion.bias) */
  float *zero_bias;          /* a folded bias but no bias_term: the bias of unfused calls */
  char engine_name[80];
} conv_state;

/* With the 1x1 engine: both gradients run on the reference engine (see pointwise.c). */
static bool pw_grads_on_reference(const conv_state *s) {
  return s->pw && !crema_pointwise_conv_backward_suits(s->pw);
}

/* The im2col geometry of bottom b0 (with `channels` channels at p->axis), checked: the
 * padded input must hold the dilated kernel, and every side must fit an int. */
static int conv_geom(const crema_conv_params *p, const crema_blob *b0, int channels, crema_im2col_geom *out,
                     crema_error *err) {
  const int axis = p->axis;
  crema_im2col_geom g = {.channels = channels,
                         .height = b0->shape[axis + 1],
                         .width = b0->shape[axis + 2],
                         .kernel_h = p->kernel_h,
                         .kernel_w = p->kernel_w,
                         .pad_h = p->pad_h,
                         .pad_w = p->pad_w,
                         .stride_h = p->stride_h,
                         .stride_w = p->stride_w,
                         .dilation_h = p->dilation_h,
                         .dilation_w = p->dilation_w};
  if (crema_im2col_geom_too_large(&g))
    return crema_fail(err,
                      "the %dx%d input with pad %d,%d, kernel %dx%d and dilation %d,%d exceeds 2^31-1 "
                      "pixels per side; use a smaller pad, kernel or dilation",
                      g.height, g.width, g.pad_h, g.pad_w, g.kernel_h, g.kernel_w, g.dilation_h,
                      g.dilation_w);
  if (crema_im2col_geom_finish(&g))
    return crema_fail(err,
                      "the %dx%d input (pad %d,%d) is smaller than the %dx%d kernel (dilation %d,%d); "
                      "use a smaller kernel or more padding",
                      g.height, g.width, g.pad_h, g.pad_w, g.kernel_h, g.kernel_w, g.dilation_h,
                      g.dilation_w);
  *out = g;
  return 0;
}

static int conv_setup(crema_layer *l, crema_blob *const *bottom, crema_blob *const *top, crema_error *err) {
  if (crema_conv_nd_wanted(l, bottom[0])) { /* spatial axes != 2: conv_nd.c */
    extern const crema_layer_ops crema_convolution_nd_ops;
    l->ops = &crema_convolution_nd_ops;
    return l->ops->setup(l, bottom, top, err);
  }
  if (l->n_bottom != l->n_top)
    return crema_fail(err, "needs as many tops as bottoms (got %d bottoms, %d tops)", l->n_bottom, l->n_top);
  conv_state *s = calloc(1, sizeof *s);
  if (!s) return crema_fail(err, "out of memory");
  l->state = s;
  crema_conv_engine_use_workspace(&s->engine, l->workspace); /* the net's shared scratch */
  if (crema_conv_params_read(l, bottom[0], &s->p, err)) return -1;
  const Crema__ConvolutionParameter *cp = l->param->convolution_param;
  const int channels = bottom[0]->shape[s->p.axis];
  /* Check the geometry before the weights exist: a kernel that cannot fit the input must not
   * first allocate and fill (num_output * C * kh * kw) weights, possibly gigabytes. */
  crema_im2col_geom g;
  if (conv_geom(&s->p, bottom[0], channels, &g, err)) return -1;
  const int wshape[4] = {s->p.num_output, channels / s->p.group, s->p.kernel_h, s->p.kernel_w};
  if (crema_layer_add_blob(l, 0, 4, wshape, cp ? cp->weight_filler : NULL, err))
    return crema_error_prefix(err, "weight_filler");
  if (s->p.bias_term) {
    const int bshape[1] = {s->p.num_output};
    if (crema_layer_add_blob(l, 1, 1, bshape, cp ? cp->bias_filler : NULL, err))
      return crema_error_prefix(err, "bias_filler");
  }
  return 0;
}

/* Drops every fast engine object but `keep` (one of s->wino, s->pw, s->pi, s->fast, or NULL). */
static void drop_engines_but(conv_state *s, const void *keep) {
  if (s->wino != keep) {
    crema_winograd_conv_free(s->wino);
    s->wino = NULL;
  }
  if (s->pw != keep) {
    crema_pointwise_conv_free(s->pw);
    s->pw = NULL;
  }
  if (s->pi != keep) {
    crema_per_image_conv_free(s->pi);
    s->pi = NULL;
  }
  if (s->fast != keep) {
    crema_onednn_conv_free(s->fast);
    s->fast = NULL;
  }
}

/* The layer now runs on `keep`, one of crema's own engines: the others and the reference
 * buffers go. Returns 1 for the try_* functions below. */
static int adopt(conv_state *s, const void *keep, const char *name) {
  drop_engines_but(s, keep);
  crema_conv_engine_free(&s->engine);
  snprintf(s->engine_name, sizeof s->engine_name, "%s", name);
  return 1;
}

/* Crema's own engines, in turn: 1 when the layer now runs on one (the others and the
 * reference buffers dropped), 0 when the shape is not theirs (or not `wanted`), -1 on error.
 * An engine object made for another shape is dropped first. */
static int try_winograd(conv_state *s, const crema_im2col_geom *g, int n, bool wanted, crema_error *err) {
  const crema_conv_params *p = &s->p;
  const bool use = wanted && crema_winograd_conv_suits(g, n, p->num_output, p->group);
  if (s->wino &&
      (!use || !crema_winograd_conv_matches(s->wino, g, n, p->num_output, p->group, s->has_bias))) {
    crema_winograd_conv_free(s->wino);
    s->wino = NULL;
  }
  crema_error why;
  if (use && !s->wino &&
      crema_winograd_conv_create(g, n, p->num_output, p->group, s->has_bias, &s->wino, &why) < 0)
    return crema_fail(err, "%s", why.msg);
  return s->wino ? adopt(s, s->wino, CREMA_ENGINE_WINOGRAD " F(4x4,3x3)") : 0;
}

static int try_pointwise(conv_state *s, const crema_im2col_geom *g, int n, bool wanted, crema_error *err) {
  const crema_conv_params *p = &s->p;
  const bool use = wanted && crema_pointwise_conv_suits(g, n, p->group);
  if (s->pw && (!use || !crema_pointwise_conv_matches(s->pw, g, n, p->num_output, p->group, s->has_bias))) {
    crema_pointwise_conv_free(s->pw);
    s->pw = NULL;
  }
  crema_error why;
  if (use && !s->pw &&
      crema_pointwise_conv_create(g, n, p->num_output, p->group, s->has_bias, &s->pw, &why) < 0)
    return crema_fail(err, "%s", why.msg);
  if (!s->pw) return 0;
  return adopt(s, s->pw,
               crema_pointwise_conv_folded(s->pw) ? CREMA_ENGINE_POINTWISE
                   " (strided; one sgemm for the batch)"
                                                  : CREMA_ENGINE_POINTWISE " (sgemm per image)");
}

static int try_per_image(conv_state *s, const crema_im2col_geom *g, int n, bool wanted, crema_error *err) {
  const crema_conv_params *p = &s->p;
  const bool use = wanted && crema_per_image_conv_suits(g, n, p->num_output, p->group);
  if (s->pi && (!use || !crema_per_image_conv_matches(s->pi, g, n, p->num_output, p->group, s->has_bias))) {
    crema_per_image_conv_free(s->pi);
    s->pi = NULL;
  }
  crema_error why;
  if (use && !s->pi &&
      crema_per_image_conv_create(g, n, p->num_output, p->group, s->has_bias, &s->pi, &why) < 0)
    return crema_fail(err, "%s", why.msg);
  if (!s->pi) return 0;
  if (crema_per_image_conv_direct(s->pi))
    return adopt(s, s->pi, CREMA_ENGINE_PER_IMAGE " (from the image; data gradient: sgemm + col2im)");
  return adopt(s, s->pi, CREMA_ENGINE_PER_IMAGE " (im2col + sgemm per image)");
}

static int conv_reshape(crema_layer *l, crema_blob *const *bottom, crema_blob *const *top, crema_error *err) {
  conv_state *s = l->state;
  const crema_blob *b0 = bottom[0];
  const int axis = s->p.axis;
  char got[128], want[128];
  for (int i = 1; i < l->n_bottom; i++)
    if (!crema_blob_same_shape(bottom[i], b0))
      return crema_fail(err, "all bottoms must have the same shape: bottom 0 is %s, bottom %d is %s",
                        crema_blob_shape_string(b0, want, sizeof want), i,
                        crema_blob_shape_string(bottom[i], got, sizeof got));
  const int channels = l->blobs[0]->shape[1] * s->p.group;
  if (b0->num_axes != axis + 3 || b0->shape[axis] != channels)
    return crema_fail(err,
                      "input size incompatible with the convolution weights: bottom is %s, weights %s "
                      "expect %d channels at axis %d",
                      crema_blob_shape_string(b0, got, sizeof got),
                      crema_blob_shape_string(l->blobs[0], want, sizeof want), channels, axis);
  crema_im2col_geom g;
  if (conv_geom(&s->p, b0, channels, &g, err)) return -1;
  int shape[CREMA_MAX_AXES];
  for (int k = 0; k < axis; k++) shape[k] = b0->shape[k];
  shape[axis] = s->p.num_output;
  shape[axis + 1] = g.out_h;
  shape[axis + 2] = g.out_w;
  for (int i = 0; i < l->n_top; i++)
    if (crema_blob_reshape(top[i], axis + 3, shape, err)) return -1;
  const int n = (int)crema_blob_count_range(b0, 0, axis);
  s->has_bias = s->p.bias_term || l->fusion.bias;
  if (s->has_bias && !s->p.bias_term && !s->zero_bias &&
      !(s->zero_bias = calloc((size_t)s->p.num_output, sizeof *s->zero_bias)))
    return crema_fail(err, "out of memory");
  const Crema__ConvolutionParameter *cp = l->param->convolution_param;
  const int proto_engine = cp ? (int)cp->engine : 0;
  const bool fast = crema_engine_winograd_wanted(proto_engine); /* crema's own engines are on */
  s->engine.omp_gemm = fast; /* the reference path's products on OpenMP's threads too */
  int rc = try_winograd(s, &g, n, fast, err);
  if (rc == 0) rc = try_pointwise(s, &g, n, fast, err);
  if (rc == 0) rc = try_per_image(s, &g, n, fast, err);
  if (rc > 0 &&
      pw_grads_on_reference(s)) { /* copy-free: the reference needs no buffers for a 1x1 stride-1 layer */
    snprintf(s->engine_name, sizeof s->engine_name, "%s (sgemm per image; gradients: caffe)",
             CREMA_ENGINE_POINTWISE);
    return crema_conv_engine_reshape(&s->engine, &g, s->p.num_output, s->p.group, n, err);
  }
  if (rc != 0) return rc < 0 ? -1 : 0;
  if (crema_engine_onednn_wanted(proto_engine) && !reference_is_copy_free(&g) &&
      !projection_on_reference(&g, fast) && !narrow_on_reference(&g, n, fast)) {
    if (s->fast &&
        !crema_onednn_conv_matches(s->fast, &g, n, s->p.num_output, s->p.group, s->has_bias, l->fusion.act)) {
      crema_onednn_conv_free(s->fast);
      s->fast = NULL;
    }
    crema_error why;
    if (!s->fast) {
      int rc = crema_onednn_conv_create(&g, n, s->p.num_output, s->p.group, s->has_bias, l->fusion.act,
                                        &s->fast, &why);
      if (rc < 0) return crema_fail(err, "%s", why.msg);
    }
    if (s->fast) {
      s->ref_weights = l->blobs[0]->count / (size_t)s->p.num_output < ONEDNN_MIN_WEIGHTS_PER_OUTPUT;
      s->ref_data = channels / s->p.group < ONEDNN_MIN_CHANNELS_FOR_DATA_GRADIENT;
      snprintf(s->engine_name, sizeof s->engine_name, "%s %s%s", CREMA_ENGINE_ONEDNN,
               crema_onednn_conv_impl(s->fast),
               s->ref_weights && s->ref_data ? " (gradients: caffe)"
               : s->ref_weights              ? " (weight gradient: caffe)"
               : s->ref_data                 ? " (data gradient: caffe)"
                                             : "");
      if (s->ref_weights || s->ref_data)
        return crema_conv_engine_reshape(&s->engine, &g, s->p.num_output, s->p.group, n, err);
      crema_conv_engine_free(&s->engine); /* the reference buffers are not needed */
      return 0;
    }
  } else if (s->fast) {
    crema_onednn_conv_free(s->fast);
    s->fast = NULL;
  }
  snprintf(s->engine_name, sizeof s->engine_name, "%s", CREMA_ENGINE_REFERENCE);
  return crema_conv_engine_reshape(&s->engine, &g, s->p.num_output, s->p.group, n, err);
}

static int conv_forward(crema_layer *l, crema_blob *const *bottom, crema_blob *const *top, crema_error *err) {
  (void)err;
  conv_state *s = l->state;
  const crema_fusion *f = &l->fusion;
  const bool fused = l->run_fused;
  const float *w = fused && f->weights ? f->weights : l->blobs[0]->data;
  const float *bias = fused && f->bias ? f->bias : s->p.bias_term ? l->blobs[1]->data : s->zero_bias;
  const crema_act act = fused ? f->act : (crema_act){0};
  for (int i = 0; i < l->n_bottom; i++) {
    const float *x = bottom[i]->data;
    float *y = top[i]->data;
    if (s->wino)
      crema_winograd_conv_forward(s->wino, x, w, bias, act, y);
    else if (s->pw)
      crema_pointwise_conv_forward(s->pw, x, w, bias, act, y);
    else if (s->pi)
      crema_per_image_conv_forward(s->pi, x, w, bias, act, y);
    else if (s->fast)
      crema_onednn_conv_forward(s->fast, x, w, bias, act, y);
    else
      crema_conv_engine_forward(&s->engine, x, w, bias, act, y);
  }
  return 0;
}

static void conv_backward(crema_layer *l, crema_blob *const *top, const bool *propagate_down,
                          crema_blob *const *bottom) {
  conv_state *s = l->state;
  const int axis = s->p.axis;
  for (int i = 0; i < l->n_top; i++) {
    const crema_blob *t = top[i];
    float *db = s->p.bias_term && l->param_propagate_down[1] ? l->blobs[1]->diff : NULL;
    if (db && !s->pi) /* the per-image engine sums each image's gradients while they are in cache */
      crema_conv_bias_backward((int)crema_blob_count_range(t, 0, axis), t->shape[axis],
                               crema_blob_count_range(t, axis + 1, t->num_axes), t->diff, db);
    float *dw = l->param_propagate_down[0] ? l->blobs[0]->diff : NULL;
    float *dx = propagate_down[i] ? bottom[i]->diff : NULL;
    if (s->wino) {
      crema_winograd_conv_backward(s->wino, bottom[i]->data, t->diff, l->blobs[0]->data, dw, dx);
    } else if (s->pw && !pw_grads_on_reference(s)) {
      crema_pointwise_conv_backward(s->pw, bottom[i]->data, t->diff, l->blobs[0]->data, dw, dx);
    } else if (s->pi) {
      crema_per_image_conv_backward(s->pi, bottom[i]->data, t->diff, l->blobs[0]->data, dw, db, dx);
    } else if (s->fast && (s->ref_weights || s->ref_data)) {
      /* each gradient on the engine that does it best (see the thresholds above) */
      const float *x = bottom[i]->data, *w = l->blobs[0]->data;
      crema_onednn_conv_backward(s->fast, x, t->diff, w, s->ref_weights ? NULL : dw, s->ref_data ? NULL : dx);
      crema_conv_engine_backward(&s->engine, x, t->diff, w, s->ref_weights ? dw : NULL,
                                 s->ref_data ? dx : NULL);
    } else if (s->fast)
      crema_onednn_conv_backward(s->fast, bottom[i]->data, t->diff, l->blobs[0]->data, dw, dx);
    else
      crema_conv_engine_backward(&s->engine, bottom[i]->data, t->diff, l->blobs[0]->data, dw, dx);
  }
}

static void conv_free(crema_layer *l) {
  conv_state *s = l->state;
  if (!s) return;
  crema_conv_engine_free(&s->engine);
  crema_onednn_conv_free(s->fast);
  crema_winograd_conv_free(s->wino);
  crema_pointwise_conv_free(s->pw);
  crema_per_image_conv_free(s->pi);
  free(s->zero_bias);
  free(s);
  l->state = NULL;
}

static const char *conv_engine_name(const crema_layer *l) {
  const conv_state *s = l->state;
  return s && s->engine_name[0] ? s->engine_name : CREMA_ENGINE_REFERENCE;
}

const crema_layer_ops crema_convolution_ops = {
    .type = "Convolution",
    .min_bottoms = 1,
    .max_bottoms = -1,
    .min_tops = 1,
    .max_tops = -1,
    .setup = conv_setup,
    .reshape = conv_reshape,
    .forward = conv_forward,
    .backward = conv_backward,
    .free_state = conv_free,
    .engine_name = conv_engine_name,
    .takes_fusion = true,
};
