/* bnll.c -- Caffe's "BNLL" (binomial normal log likelihood, i.e. softplus):
 *   top = x > 0 ? x + ln(1 + exp(-x)) : ln(1 + exp(x))
 *   d bottom = d top * e / (e + 1),  e = exp(min(x, 50))   (Caffe's kBNLL_THRESHOLD)
 * In-place allowed: the layer then keeps a copy of its input for backward. */
#include <math.h>
#include <stdlib.h>

#include "layers/layer.h"
#include "tensor/math.h"

#define BNLL_THRESHOLD 50.0f

typedef struct bnll_state {
  crema_input_copy saved; /* the input, only when run in place */
} bnll_state;

static int bnll_setup(crema_layer *l, crema_blob *const *bottom, crema_blob *const *top, crema_error *err) {
  (void)bottom;
  (void)top;
  bnll_state *s = calloc(1, sizeof *s);
  if (!s) return crema_fail(err, "out of memory");
  l->state = s;
  return 0;
}

static int bnll_reshape(crema_layer *l, crema_blob *const *bottom, crema_blob *const *top, crema_error *err) {
  bnll_state *s = l->state;
  if (crema_blob_reshape_like(top[0], bottom[0], err)) return -1;
  return crema_input_copy_reshape(&s->saved, crema_layer_keeps_input(l, bottom, top), bottom[0], err);
}

static int bnll_forward(crema_layer *l, crema_blob *const *bottom, crema_blob *const *top, crema_error *err) {
  (void)err;
  bnll_state *s = l->state;
  const size_t n = bottom[0]->count;
  const float *x = bottom[0]->data;
  float *y = top[0]->data;
  crema_input_copy_save(&s->saved, crema_layer_keeps_input(l, bottom, top), bottom[0]);
#pragma omp parallel for if (n > CREMA_PAR_MIN) schedule(static)
  for (size_t i = 0; i < n; i++) y[i] = x[i] > 0.0f ? x[i] + log1pf(expf(-x[i])) : log1pf(expf(x[i]));
  return 0;
}

static void bnll_backward(crema_layer *l, crema_blob *const *top, const bool *propagate_down,
                          crema_blob *const *bottom) {
  bnll_state *s = l->state;
  if (!propagate_down[0]) return;
  const size_t n = bottom[0]->count;
  const float *x = crema_input_copy_data(&s->saved, crema_layer_keeps_input(l, bottom, top), bottom[0]);
  const float *dy = top[0]->diff;
  float *dx = bottom[0]->diff;
#pragma omp parallel for if (n > CREMA_PAR_MIN) schedule(static)
  for (size_t i = 0; i < n; i++) {
    const float e = expf(fminf(x[i], BNLL_THRESHOLD));
    dx[i] = dy[i] * e / (e + 1.0f);
  }
}

static void bnll_free(crema_layer *l) {
  bnll_state *s = l->state;
  if (!s) return;
  crema_input_copy_free(&s->saved);
  free(s);
}

const crema_layer_ops crema_bnll_ops = {
    .type = "BNLL",
    .min_bottoms = 1,
    .max_bottoms = 1,
    .min_tops = 1,
    .max_tops = 1,
    .allow_inplace = true,
    .setup = bnll_setup,
    .reshape = bnll_reshape,
    .forward = bnll_forward,
    .backward = bnll_backward,
    .free_state = bnll_free,
};
