/* scale.c -- Caffe's "Scale": top = bottom[0] * s (+ b), s broadcast along a run of axes.
 *
 * s is learned (one bottom: blobs[0], shape bottom.shape[axis .. axis + num_axes), filler
 * default constant 1) or given as bottom[1] (its own shape decides the run; num_axes is
 * ignored, as in Caffe). A scalar s (num_axes 0, or a 0-axis bottom[1]) multiplies every
 * element. With bias_term the layer also adds a learned bias of the same shape as s (the
 * next blob: blobs[1] with a learned s, blobs[0] otherwise; bias_filler default 0) -- what
 * Caffe does with an internal Bias layer. See axis_common.h for the broadcasting.
 *   d bottom[0] = d top * s;   d s = sum of d top * bottom[0];   d b = sum of d top
 * (sums over every axis outside the run). In-place (top = bottom[0]) allowed: the layer then
 * keeps a copy of its input for d s (not when the scale is learned and frozen). Forward and
 * backward each make one pass over the data (axis_common.h). */
#include <stdlib.h>

#include "layers/axis_common.h"
#include "layers/batch_norm_chain.h"
#include "layers/layer.h"
#include "tensor/math.h"

typedef struct scale_state {
  int axis;           /* scale_param.axis as written (may be negative) */
  int bias_index;     /* blob index of the bias, -1 without bias_term */
  crema_axis_dims d;  /* bottom[0] vs s */
  crema_axis_dims bd; /* bottom[0] vs the bias */
  crema_blob *saved;  /* copy of the input, only for in-place use */
  /* Where the copy lives instead, when the net says another layer holds the same values
   * (crema_scale_keep_input_in); NULL: in `saved`, which then stays untouched. */
  crema_blob *borrowed;
} scale_state;

static int scale_setup(crema_layer *l, crema_blob *const *bottom, crema_blob *const *top, crema_error *err) {
  const Crema__ScaleParameter def = CREMA__SCALE_PARAMETER__INIT;
  const Crema__ScaleParameter *p = l->param->scale_param ? l->param->scale_param : &def;
  if (l->n_bottom > 1 && top[0] == bottom[1])
    return crema_fail(err, "the top cannot be the second bottom (the scale); only bottom[0] can be in place");
  scale_state *s = calloc(1, sizeof *s);
  if (!s || !(s->saved = crema_blob_new())) {
    free(s);
    return crema_fail(err, "out of memory");
  }
  l->state = s;
  s->axis = p->axis;
  s->bias_index = -1;
  int n_axes, shape[CREMA_MAX_AXES];
  if (l->n_bottom == 1) {
    Crema__FillerParameter one = CREMA__FILLER_PARAMETER__INIT;
    one.value = 1.0f; /* type "constant" by default */
    if (crema_axis_param_shape(bottom[0], p->axis, p->num_axes, "scale_param", &n_axes, shape, err) ||
        crema_layer_add_blob(l, 0, n_axes, shape, p->filler ? p->filler : &one, err))
      return -1;
  }
  if (p->bias_term) {
    /* The bias has the shape of the scale, wherever the scale comes from. */
    int bias_axes = l->n_bottom > 1 ? bottom[1]->num_axes : p->num_axes;
    s->bias_index = l->n_bottom > 1 ? 0 : 1;
    if (crema_axis_param_shape(bottom[0], p->axis, bias_axes, "scale_param", &n_axes, shape, err) ||
        crema_layer_add_blob(l, s->bias_index, n_axes, shape, p->bias_filler, err))
      return -1;
  }
  return 0;
}

static int scale_reshape(crema_layer *l, crema_blob *const *bottom, crema_blob *const *top,
                         crema_error *err) {
  scale_state *s = l->state;
  const crema_blob *sc = l->n_bottom > 1 ? bottom[1] : l->blobs[0];
  if (crema_axis_dims_compute(bottom[0], sc, s->axis, l->n_bottom > 1 ? "bottom[1] (the scale)" : "scale",
                              &s->d, err))
    return -1;
  if (s->bias_index >= 0 &&
      crema_axis_dims_compute(bottom[0], l->blobs[s->bias_index], s->axis, "bias", &s->bd, err))
    return -1;
  if (bottom[0] == top[0]) return crema_blob_reshape_like(s->saved, bottom[0], err);
  return crema_blob_reshape_like(top[0], bottom[0], err);
}

/* Scale and bias broadcast the same way (the usual case): one pass does both. */
static bool same_dims(const scale_state *s) {
  return s->bias_index < 0 ||
         (s->d.outer == s->bd.outer && s->d.dim == s->bd.dim && s->d.inner == s->bd.inner);
}

/* In place, d s needs the input: keep a copy unless nobody asks for d s (a frozen scale, or
 * a net that never runs backward). */
static bool keeps_input(const crema_layer *l, crema_blob *const *bottom, crema_blob *const *top) {
  return crema_layer_keeps_input(l, bottom, top) && (l->n_bottom > 1 || l->param_propagate_down[0]);
}

static float *kept_buffer(const scale_state *s) { return s->borrowed ? s->borrowed->data : s->saved->data; }

float *crema_scale_kept_input(crema_layer *l, crema_blob *blob) {
  crema_blob *b[1] = {blob};
  const scale_state *s = l->state;
  return keeps_input(l, b, b) ? kept_buffer(s) : NULL;
}

void crema_scale_keep_input_in(crema_layer *l, crema_blob *shared) {
  scale_state *s = l->state;
  s->borrowed = shared;
}

static int scale_forward(crema_layer *l, crema_blob *const *bottom, crema_blob *const *top,
                         crema_error *err) {
  (void)err;
  scale_state *s = l->state;
  const crema_blob *sc = l->n_bottom > 1 ? bottom[1] : l->blobs[0];
  const float *bias = s->bias_index >= 0 ? l->blobs[s->bias_index]->data : NULL;
  float *saved = keeps_input(l, bottom, top) ? kept_buffer(s) : NULL;
  if (same_dims(s)) {
    crema_axis_scale_shift(&s->d, bottom[0]->data, sc->data, bias, top[0]->data, saved);
    return 0;
  }
  if (saved) crema_copy(bottom[0]->count, bottom[0]->data, saved);
  crema_axis_mul(&s->d, bottom[0]->data, sc->data, top[0]->data);
  crema_axis_add(&s->bd, bias, top[0]->data);
  return 0;
}

static void scale_backward(crema_layer *l, crema_blob *const *top, const bool *propagate_down,
                           crema_blob *const *bottom) {
  scale_state *s = l->state;
  const bool learned = l->n_bottom == 1;
  crema_blob *sc = learned ? l->blobs[0] : bottom[1];
  const float *dy = top[0]->diff;
  const bool bias_grad = s->bias_index >= 0 && l->param_propagate_down[s->bias_index];
  const bool scale_grad = learned ? l->param_propagate_down[0] : propagate_down[1];
  const float *x = bottom[0] == top[0] ? kept_buffer(s) : bottom[0]->data;
  float *db = bias_grad ? l->blobs[s->bias_index]->diff : NULL;
  if (same_dims(s)) {
    /* A learned scale accumulates; a bottom's diff is overwritten (layer.h). */
    crema_axis_scale_backward(&s->d, dy, x, sc->data, scale_grad ? sc->diff : NULL, learned, db, true,
                              propagate_down[0] ? bottom[0]->diff : NULL);
    return;
  }
  /* Parameter sums first: in place, dy and d bottom[0] are the same buffer. */
  if (db) crema_axis_reduce(&s->bd, dy, NULL, db, true);
  if (scale_grad) crema_axis_reduce(&s->d, dy, x, sc->diff, learned);
  if (propagate_down[0]) crema_axis_mul(&s->d, dy, sc->data, bottom[0]->diff);
}

static void scale_free(crema_layer *l) {
  scale_state *s = l->state;
  if (!s) return;
  crema_blob_free(s->saved);
  free(s);
}

const crema_layer_ops crema_scale_ops = {
    .type = "Scale",
    .min_bottoms = 1,
    .max_bottoms = 2,
    .min_tops = 1,
    .max_tops = 1,
    .allow_inplace = true,
    .setup = scale_setup,
    .reshape = scale_reshape,
    .forward = scale_forward,
    .backward = scale_backward,
    .free_state = scale_free,
};
