/* elu.c -- Caffe's "ELU" (Clevert et al. 2015):
 *   top = x > 0 ? x : alpha (exp(x) - 1)
 *   d bottom = d top * (x > 0 ? 1 : alpha + y)     (alpha exp(x) = y + alpha)
 * In-place allowed. For alpha >= 0 the output has the sign of x, so in place the test
 * x > 0 reads the output, exactly as Caffe does; a negative alpha flips signs, so then an
 * in-place layer keeps a copy of its input. */
#include <stdlib.h>

#include "base/clones.h"
#include "layers/layer.h"
#include "layers/smooth_rows.h"
#include "tensor/math.h"

typedef struct elu_state {
  float alpha;
  crema_input_copy saved; /* copy of the input, only for in-place use with alpha < 0 */
} elu_state;

static int elu_setup(crema_layer *l, crema_blob *const *bottom, crema_blob *const *top, crema_error *err) {
  (void)bottom;
  (void)top;
  const Crema__ELUParameter def = CREMA__ELUPARAMETER__INIT;
  const Crema__ELUParameter *p = l->param->elu_param ? l->param->elu_param : &def;
  elu_state *s = calloc(1, sizeof *s);
  if (!s) return crema_fail(err, "out of memory");
  l->state = s;
  s->alpha = p->alpha;
  return 0;
}

static bool elu_keeps_input(const crema_layer *l, crema_blob *const *bottom, crema_blob *const *top) {
  const elu_state *s = l->state;
  return s->alpha < 0.0f && crema_layer_keeps_input(l, bottom, top);
}

static int elu_reshape(crema_layer *l, crema_blob *const *bottom, crema_blob *const *top, crema_error *err) {
  elu_state *s = l->state;
  if (crema_blob_reshape_like(top[0], bottom[0], err)) return -1;
  return crema_input_copy_reshape(&s->saved, elu_keeps_input(l, bottom, top), bottom[0], err);
}

static int elu_forward(crema_layer *l, crema_blob *const *bottom, crema_blob *const *top, crema_error *err) {
  (void)err;
  elu_state *s = l->state;
  const size_t n = bottom[0]->count;
  const float *x = bottom[0]->data;
  float *y = top[0]->data;
  const float alpha = s->alpha;
  crema_input_copy_save(&s->saved, elu_keeps_input(l, bottom, top), bottom[0]);
  /* expm1 within 1.5e-7 relative of the exact value (base/vec_math.h) */
  crema_smooth_rows(CREMA_SMOOTH_ELU, n, x, alpha, 0.0f, y, NULL);
  return 0;
}

/* dx = dy where x > 0, else dy (alpha + y), in an AVX2/AVX-512 clone (four streams). */
CREMA_CLONES static void elu_grad(size_t n, const float *x, const float *y, const float *dy, float alpha,
                                  float *dx) {
#pragma omp parallel for if (n > CREMA_PAR_MIN_HEAVY) schedule(static)
  for (size_t i = 0; i < n; i++) dx[i] = x[i] > 0.0f ? dy[i] : dy[i] * (alpha + y[i]);
}

static void elu_backward(crema_layer *l, crema_blob *const *top, const bool *propagate_down,
                         crema_blob *const *bottom) {
  elu_state *s = l->state;
  if (!propagate_down[0]) return;
  const float *x = crema_input_copy_data(&s->saved, elu_keeps_input(l, bottom, top), bottom[0]);
  elu_grad(bottom[0]->count, x, top[0]->data, top[0]->diff, s->alpha, bottom[0]->diff);
}

static void elu_free(crema_layer *l) {
  elu_state *s = l->state;
  if (!s) return;
  crema_input_copy_free(&s->saved);
  free(s);
}

const crema_layer_ops crema_elu_ops = {
    .type = "ELU",
    .min_bottoms = 1,
    .max_bottoms = 1,
    .min_tops = 1,
    .max_tops = 1,
    .allow_inplace = true,
    .setup = elu_setup,
    .reshape = elu_reshape,
    .forward = elu_forward,
    .backward = elu_backward,
    .free_state = elu_free,
};
