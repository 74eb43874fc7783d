/* exp.c -- Caffe's "Exp":
 *   top = base ^ (shift + scale * x)      (base -1 means e)
 *       = outer * exp(inner * x),  inner = scale * ln(base), outer = base ^ shift
 *   d bottom = d top * top * inner
 * In-place allowed: backward reads only the top. */
#include <math.h>
#include <stdlib.h>

#include "layers/layer.h"
#include "layers/smooth_rows.h"
#include "tensor/math.h"

typedef struct exp_state {
  float inner, outer;
} exp_state;

static int exp_setup(crema_layer *l, crema_blob *const *bottom, crema_blob *const *top, crema_error *err) {
  (void)bottom;
  (void)top;
  const Crema__ExpParameter def = CREMA__EXP_PARAMETER__INIT;
  const Crema__ExpParameter *p = l->param->exp_param ? l->param->exp_param : &def;
  if (p->base_ != -1.0f && !(p->base_ > 0.0f))
    return crema_fail(err, "exp_param base must be -1 (for e) or > 0, got %g", (double)p->base_);
  exp_state *s = calloc(1, sizeof *s);
  if (!s) return crema_fail(err, "out of memory");
  l->state = s;
  const double log_base = p->base_ == -1.0f ? 1.0 : log((double)p->base_);
  s->inner = (float)(log_base * p->scale);
  s->outer = p->shift == 0.0f ? 1.0f : (float)exp(log_base * p->shift);
  return 0;
}

static int exp_forward(crema_layer *l, crema_blob *const *bottom, crema_blob *const *top, crema_error *err) {
  (void)err;
  const exp_state *s = l->state;
  const size_t n = bottom[0]->count;
  const float *x = bottom[0]->data;
  float *y = top[0]->data;
  const float in = s->inner, out = s->outer;
  /* y = outer exp(inner x), exp within 1 ulp (base/vec_math.h) */
  crema_smooth_rows(CREMA_SMOOTH_EXP, n, x, in, out, y, NULL);
  return 0;
}

static void exp_backward(crema_layer *l, crema_blob *const *top, const bool *propagate_down,
                         crema_blob *const *bottom) {
  const exp_state *s = l->state;
  if (!propagate_down[0]) return;
  const size_t n = bottom[0]->count;
  const float *y = top[0]->data, *dy = top[0]->diff;
  float *dx = bottom[0]->diff;
  const float in = s->inner;
#pragma omp parallel for if (n > CREMA_PAR_MIN) schedule(static)
  for (size_t i = 0; i < n; i++) dx[i] = dy[i] * y[i] * in;
}

static void exp_free(crema_layer *l) { free(l->state); }

const crema_layer_ops crema_exp_ops = {
    .type = "Exp",
    .min_bottoms = 1,
    .max_bottoms = 1,
    .min_tops = 1,
    .max_tops = 1,
    .allow_inplace = true,
    .setup = exp_setup,
    .reshape = crema_reshape_like_bottom,
    .forward = exp_forward,
    .backward = exp_backward,
    .free_state = exp_free,
};
