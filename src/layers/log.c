/* log.c -- Caffe's "Log":
 *   top = log_base(shift + scale * x)      (base -1 means e)
 *       = ln(shift + scale * x) / ln(base)
 *   d bottom = d top * scale / ((shift + scale * x) * ln(base))
 * In-place allowed: the layer then keeps a copy of its input for backward. */
#include <math.h>
#include <stdlib.h>

#include "layers/layer.h"
#include "tensor/math.h"

typedef struct log_state {
  float scale, shift, inv_log_base;
  crema_input_copy saved; /* the input, only when run in place */
} log_state;

static int log_setup(crema_layer *l, crema_blob *const *bottom, crema_blob *const *top, crema_error *err) {
  (void)bottom;
  (void)top;
  const Crema__LogParameter def = CREMA__LOG_PARAMETER__INIT;
  const Crema__LogParameter *p = l->param->log_param ? l->param->log_param : &def;
  if (p->base_ != -1.0f && !(p->base_ > 0.0f && p->base_ != 1.0f))
    return crema_fail(err, "log_param base must be -1 (for e) or > 0 and != 1, got %g", (double)p->base_);
  log_state *s = calloc(1, sizeof *s);
  if (!s) return crema_fail(err, "out of memory");
  l->state = s;
  s->scale = p->scale;
  s->shift = p->shift;
  s->inv_log_base = p->base_ == -1.0f ? 1.0f : (float)(1.0 / log((double)p->base_));
  return 0;
}

static int log_reshape(crema_layer *l, crema_blob *const *bottom, crema_blob *const *top, crema_error *err) {
  log_state *s = l->state;
  if (crema_blob_reshape_like(top[0], bottom[0], err)) return -1;
  return crema_input_copy_reshape(&s->saved, crema_layer_keeps_input(l, bottom, top), bottom[0], err);
}

static int log_forward(crema_layer *l, crema_blob *const *bottom, crema_blob *const *top, crema_error *err) {
  (void)err;
  log_state *s = l->state;
  const size_t n = bottom[0]->count;
  const float *x = bottom[0]->data;
  float *y = top[0]->data;
  crema_input_copy_save(&s->saved, crema_layer_keeps_input(l, bottom, top), bottom[0]);
  const float a = s->scale, b = s->shift, k = s->inv_log_base;
#pragma omp parallel for if (n > CREMA_PAR_MIN) schedule(static)
  for (size_t i = 0; i < n; i++) y[i] = logf(b + a * x[i]) * k;
  return 0;
}

static void log_backward(crema_layer *l, crema_blob *const *top, const bool *propagate_down,
                         crema_blob *const *bottom) {
  log_state *s = l->state;
  if (!propagate_down[0]) return;
  const size_t n = bottom[0]->count;
  const float *x = crema_input_copy_data(&s->saved, crema_layer_keeps_input(l, bottom, top), bottom[0]);
  const float *dy = top[0]->diff;
  float *dx = bottom[0]->diff;
  const float a = s->scale, b = s->shift, k = s->inv_log_base;
#pragma omp parallel for if (n > CREMA_PAR_MIN) schedule(static)
  for (size_t i = 0; i < n; i++) dx[i] = dy[i] * a * k / (b + a * x[i]);
}

static void log_free(crema_layer *l) {
  log_state *s = l->state;
  if (!s) return;
  crema_input_copy_free(&s->saved);
  free(s);
}

const crema_layer_ops crema_log_ops = {
    .type = "Log",
    .min_bottoms = 1,
    .max_bottoms = 1,
    .min_tops = 1,
    .max_tops = 1,
    .allow_inplace = true,
    .setup = log_setup,
    .reshape = log_reshape,
    .forward = log_forward,
    .backward = log_backward,
    .free_state = log_free,
};
