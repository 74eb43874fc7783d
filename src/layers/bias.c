/* bias.c -- Caffe's "Bias": top = bottom[0] + b, b broadcast along a run of axes.
 *
 * b is learned (one bottom: blobs[0], shape bottom.shape[axis .. axis + num_axes), filler
 * default constant 0) or given as bottom[1] (its own shape decides the run). A scalar b
 * (num_axes 0, or a 0-axis bottom[1]) is added to every element. See axis_common.h.
 *   d bottom[0] = d top;   d b = sum of d top over every axis outside the run.
 * In-place (top = bottom[0]) allowed. */
#include <stdlib.h>

#include "layers/axis_common.h"
#include "layers/layer.h"
#include "tensor/math.h"

typedef struct bias_state {
  int axis; /* bias_param.axis as written (may be negative) */
  crema_axis_dims d;
} bias_state;

static int bias_setup(crema_layer *l, crema_blob *const *bottom, crema_blob *const *top, crema_error *err) {
  const Crema__BiasParameter def = CREMA__BIAS_PARAMETER__INIT;
  const Crema__BiasParameter *p = l->param->bias_param ? l->param->bias_param : &def;
  if (l->n_bottom > 1 && top[0] == bottom[1])
    return crema_fail(err, "the top cannot be the second bottom (the bias); only bottom[0] can be in place");
  bias_state *s = calloc(1, sizeof *s);
  if (!s) return crema_fail(err, "out of memory");
  l->state = s;
  s->axis = p->axis;
  if (l->n_bottom == 1) {
    int n_axes, shape[CREMA_MAX_AXES];
    if (crema_axis_param_shape(bottom[0], p->axis, p->num_axes, "bias_param", &n_axes, shape, err) ||
        crema_layer_add_blob(l, 0, n_axes, shape, p->filler, err))
      return -1;
  }
  return 0;
}

static int bias_reshape(crema_layer *l, crema_blob *const *bottom, crema_blob *const *top, crema_error *err) {
  bias_state *s = l->state;
  const crema_blob *b = l->n_bottom > 1 ? bottom[1] : l->blobs[0];
  if (crema_axis_dims_compute(bottom[0], b, s->axis, l->n_bottom > 1 ? "bottom[1] (the bias)" : "bias", &s->d,
                              err))
    return -1;
  return crema_blob_reshape_like(top[0], bottom[0], err);
}

static int bias_forward(crema_layer *l, crema_blob *const *bottom, crema_blob *const *top, crema_error *err) {
  (void)err;
  bias_state *s = l->state;
  const crema_blob *b = l->n_bottom > 1 ? bottom[1] : l->blobs[0];
  crema_axis_scale_shift(&s->d, bottom[0]->data, NULL, b->data, top[0]->data, NULL); /* one pass */
  return 0;
}

static void bias_backward(crema_layer *l, crema_blob *const *top, const bool *propagate_down,
                          crema_blob *const *bottom) {
  bias_state *s = l->state;
  const bool learned = l->n_bottom == 1;
  const float *dy = top[0]->diff;
  /* A learned bias accumulates; a bottom's diff is overwritten (layer.h). */
  float *db = !(learned ? l->param_propagate_down[0] : propagate_down[1]) ? NULL
              : learned                                                   ? l->blobs[0]->diff
                                                                          : bottom[1]->diff;
  float *dx =
      propagate_down[0] && bottom[0]->diff != dy ? bottom[0]->diff : NULL; /* in place: nothing to do */
  /* one pass: each row summed and copied while it is in cache */
  if (db || dx) crema_axis_scale_backward(&s->d, dy, NULL, NULL, NULL, false, db, learned, dx);
}

static void bias_free(crema_layer *l) { free(l->state); }

const crema_layer_ops crema_bias_ops = {
    .type = "Bias",
    .min_bottoms = 1,
    .max_bottoms = 2,
    .min_tops = 1,
    .max_tops = 1,
    .allow_inplace = true,
    .setup = bias_setup,
    .reshape = bias_reshape,
    .forward = bias_forward,
    .backward = bias_backward,
    .free_state = bias_free,
};
