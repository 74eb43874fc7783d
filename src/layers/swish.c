/* swish.c -- Caffe's "Swish":
 *   top = x * s,  s = sigmoid(beta * x)
 *   d bottom = d top * (beta * top + s * (1 - beta * top))
 * In-place allowed: s is kept from forward, and top holds x * s. */
#include <stdlib.h>

#include "base/clones.h"
#include "base/v8_math.h"
#include "layers/layer.h"
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

/* s = sigmoid(beta x) and y = x s, eight lanes at a time (sigmoid8 in base/v8_math.h). */
CREMA_CLONES static void swish_rows(size_t n, const float *x, float beta, float *sg, float *y) {
  const v8 b = v8_splat(beta);
#pragma omp parallel for if (n > CREMA_PAR_MIN) schedule(static)
  for (size_t i = 0; i < n; i += 8) {
    const v8 v = load8_part(x + i, n - i), s = sigmoid8(b * v);
    store8_part(sg + i, s, n - i);
    store8_part(y + i, v * s, n - i);
  }
}

static int swish_forward(crema_layer *l, crema_blob *const *bottom, crema_blob *const *top,
                         crema_error *err) {
  (void)err;
  swish_state *s = l->state;
  const size_t n = bottom[0]->count;
  const float *x = bottom[0]->data;
  float *y = top[0]->data, *sg = s->sig->data;
  const float beta = s->beta;
  swish_rows(n, x, beta, sg, y);
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
