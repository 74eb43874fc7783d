/* clip.c -- Caffe's "Clip":
 *   top = max(min, min(x, max))
 *   d bottom = d top where min <= x <= max, else 0   (Caffe's rule at the bounds)
 * In-place allowed: the layer then keeps a copy of its input for backward (the clipped
 * output cannot tell x = max from x > max). */
#include <stdlib.h>

#include "layers/layer.h"
#include "tensor/math.h"

typedef struct clip_state {
  float lo, hi;
  crema_input_copy saved; /* the input, only when run in place */
} clip_state;

static int clip_setup(crema_layer *l, crema_blob *const *bottom, crema_blob *const *top, crema_error *err) {
  (void)bottom;
  (void)top;
  const Crema__ClipParameter *p = l->param->clip_param;
  if (!p || !p->has_min || !p->has_max)
    return crema_fail(err, "clip_param needs both min and max (e.g. clip_param { min: 0 max: 6 })");
  if (p->min > p->max)
    return crema_fail(err, "clip_param min (%g) is larger than max (%g)", (double)p->min, (double)p->max);
  clip_state *s = calloc(1, sizeof *s);
  if (!s) return crema_fail(err, "out of memory");
  l->state = s;
  s->lo = p->min;
  s->hi = p->max;
  return 0;
}

static int clip_reshape(crema_layer *l, crema_blob *const *bottom, crema_blob *const *top, crema_error *err) {
  clip_state *s = l->state;
  if (crema_blob_reshape_like(top[0], bottom[0], err)) return -1;
  return crema_input_copy_reshape(&s->saved, crema_layer_keeps_input(l, bottom, top), bottom[0], err);
}

static int clip_forward(crema_layer *l, crema_blob *const *bottom, crema_blob *const *top, crema_error *err) {
  (void)err;
  clip_state *s = l->state;
  const size_t n = bottom[0]->count;
  const float *x = bottom[0]->data;
  float *y = top[0]->data;
  crema_input_copy_save(&s->saved, crema_layer_keeps_input(l, bottom, top), bottom[0]);
  const float lo = s->lo, hi = s->hi;
#pragma omp parallel for if (n > CREMA_PAR_MIN) schedule(static)
  for (size_t i = 0; i < n; i++) y[i] = x[i] < lo ? lo : (x[i] > hi ? hi : x[i]);
  return 0;
}

static void clip_backward(crema_layer *l, crema_blob *const *top, const bool *propagate_down,
                          crema_blob *const *bottom) {
  clip_state *s = l->state;
  if (!propagate_down[0]) return;
  const size_t n = bottom[0]->count;
  const float *x = crema_input_copy_data(&s->saved, crema_layer_keeps_input(l, bottom, top), bottom[0]);
  const float *dy = top[0]->diff;
  float *dx = bottom[0]->diff;
  const float lo = s->lo, hi = s->hi;
#pragma omp parallel for if (n > CREMA_PAR_MIN) schedule(static)
  for (size_t i = 0; i < n; i++) dx[i] = x[i] >= lo && x[i] <= hi ? dy[i] : 0.0f;
}

static void clip_free(crema_layer *l) {
  clip_state *s = l->state;
  if (!s) return;
  crema_input_copy_free(&s->saved);
  free(s);
}

const crema_layer_ops crema_clip_ops = {
    .type = "Clip",
    .min_bottoms = 1,
    .max_bottoms = 1,
    .min_tops = 1,
    .max_tops = 1,
    .allow_inplace = true,
    .setup = clip_setup,
    .reshape = clip_reshape,
    .forward = clip_forward,
    .backward = clip_backward,
    .free_state = clip_free,
};
