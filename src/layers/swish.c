/* swish.c -- Caffe's "Swish":
 *   top = x * s,  s = sigmoid(beta * x)
 *   d bottom = d top * (beta * top + s * (1 - beta * top))
 * In-place allowed: s is kept from forward, and top holds x * s. */
#include <stdlib.h>

#include "layers/layer.h"
#include "layers/smooth_rows.h"
#include "tensor/math.h"

typedef struct swish_state {
  float beta;
  crema_blob *sig; /* sigmoid(beta * x) from the last forward */
} swish_state;

static int swish_setup(crema_layer *l, crema_blob *const *bottom, crema_blob *const *top, crema_error *err) {
  (void)bottom;
  (void)top;
  swish_state *s = calloc(1, sizeof *s);
  if (!s || !(s->sig = crema_blob_new())) {
    free(s);
    return crema_fail(err, "out of memory");
  }
  l->state = s;
  s->beta = l->param->swish_param ? l->param->swish_param->beta : 1.0f;
  return 0;
}

static int swish_reshape(crema_layer *l, crema_blob *const *bottom, crema_blob *const *top,
                         crema_error *err) {
  swish_state *s = l->state;
  if (crema_blob_reshape_like(top[0], bottom[0], err)) return -1;
  return crema_blob_reshape_like(s->sig, bottom[0], err);
}

static int swish_forward(crema_layer *l, crema_blob *const *bottom, crema_blob *const *top,
                         crema_error *err) {
  (void)err;
  swish_state *s = l->state;
  const size_t n = bottom[0]->count;
  const float *x = bottom[0]->data;
  float *y = top[0]->data, *sg = s->sig->data;
  const float beta = s->beta;
  crema_smooth_rows(CREMA_SMOOTH_SWISH, n, x, beta, 0.0f, y, sg);
  return 0;
}

static void swish_backward(crema_layer *l, crema_blob *const *top, const bool *propagate_down,
                           crema_blob *const *bottom) {
  swish_state *s = l->state;
  if (!propagate_down[0]) return;
  const size_t n = bottom[0]->count;
  const float *y = top[0]->data, *dy = top[0]->diff, *sg = s->sig->data;
  float *dx = bottom[0]->diff;
  const float beta = s->beta;
#pragma omp parallel for if (n > CREMA_PAR_MIN) schedule(static)
  for (size_t i = 0; i < n; i++) dx[i] = dy[i] * (beta * y[i] + sg[i] * (1.0f - beta * y[i]));
}

static void swish_free(crema_layer *l) {
  swish_state *s = l->state;
  if (!s) return;
  crema_blob_free(s->sig);
  free(s);
}

const crema_layer_ops crema_swish_ops = {
    .type = "Swish",
    .min_bottoms = 1,
    .max_bottoms = 1,
    .min_tops = 1,
    .max_tops = 1,
    .allow_inplace = true,
    .setup = swish_setup,
    .reshape = swish_reshape,
    .forward = swish_forward,
    .backward = swish_backward,
    .free_state = swish_free,
};
