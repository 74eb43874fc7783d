/* Softmax: top = exp(x - max) / sum exp(x - max) along softmax_param.axis (default 1, negative
 * counts from the end), for every position of the other axes. In-place allowed: backward
 * reads only top data and top diff. */
#include <stdlib.h>

#include "layers/layer.h"
#include "layers/loss_common.h"
#include "tensor/math.h"

typedef struct softmax_state {
  int axis; /* as written in the prototxt; resolved against the bottom in reshape */
  int outer, channels, inner;
} softmax_state;

static int softmax_setup(crema_layer *l, crema_blob *const *bottom, crema_blob *const *top,
                         crema_error *err) {
  (void)bottom;
  (void)top;
  softmax_state *s = calloc(1, sizeof *s);
  if (!s) return crema_fail(err, "out of memory");
  l->state = s;
  const Crema__SoftmaxParameter *sp = l->param->softmax_param;
  s->axis = sp ? sp->axis : 1;
  return 0;
}

static int softmax_reshape(crema_layer *l, crema_blob *const *bottom, crema_blob *const *top,
                           crema_error *err) {
  softmax_state *s = l->state;
  int axis = crema_layer_axis(bottom[0], s->axis, "softmax_param axis", err);
  if (axis < 0) return -1;
  s->outer = (int)crema_blob_count_range(bottom[0], 0, axis);
  s->channels = bottom[0]->shape[axis];
  s->inner = (int)crema_blob_count_range(bottom[0], axis + 1, bottom[0]->num_axes);
  return crema_blob_reshape_like(top[0], bottom[0], err);
}

static int softmax_forward(crema_layer *l, crema_blob *const *bottom, crema_blob *const *top,
                           crema_error *err) {
  (void)err;
  softmax_state *s = l->state;
  if (s->channels > 0) crema_softmax_cpu(bottom[0]->data, top[0]->data, s->outer, s->channels, s->inner);
  return 0;
}

/* dx_c = y_c * (dy_c - sum_k dy_k y_k): the Jacobian of softmax applied to the top diff.
 * dx may alias dy (in place): every element is read before it is written. */
static void softmax_backward(crema_layer *l, crema_blob *const *top, const bool *propagate_down,
                             crema_blob *const *bottom) {
  if (!propagate_down[0]) return;
  softmax_state *s = l->state;
  const int channels = s->channels;
  const size_t inner = (size_t)s->inner, dim = (size_t)channels * inner;
  const float *y = top[0]->data, *dy = top[0]->diff;
  float *dx = bottom[0]->diff;
  const bool par = top[0]->count > CREMA_PAR_MIN;
  if (inner == 1) { /* rows of contiguous channels: the classifier case */
#pragma omp parallel for if (par) schedule(static)
    for (int i = 0; i < s->outer; i++) {
      const float *yi = y + (size_t)i * dim, *dyi = dy + (size_t)i * dim;
      float *dxi = dx + (size_t)i * dim;
      float dot = 0.0f;
      for (int c = 0; c < channels; c++) dot += dyi[c] * yi[c];
      for (int c = 0; c < channels; c++) dxi[c] = yi[c] * (dyi[c] - dot);
    }
    return;
  }
  /* Work items = (outer index, block of inner positions). */
  const size_t blocks = (inner + CREMA_SOFTMAX_BLOCK - 1) / CREMA_SOFTMAX_BLOCK;
  const size_t items = (size_t)s->outer * blocks;
#pragma omp parallel for if (par) schedule(static)
  for (size_t w = 0; w < items; w++) {
    const size_t j0 = (w % blocks) * CREMA_SOFTMAX_BLOCK, base = (w / blocks) * dim + j0;
    const int n = inner - j0 < CREMA_SOFTMAX_BLOCK ? (int)(inner - j0) : CREMA_SOFTMAX_BLOCK;
    float dot[CREMA_SOFTMAX_BLOCK];
    for (int j = 0; j < n; j++) dot[j] = 0.0f;
    for (int c = 0; c < channels; c++)
      for (int j = 0; j < n; j++)
        dot[j] += dy[base + (size_t)c * inner + j] * y[base + (size_t)c * inner + j];
    for (int c = 0; c < channels; c++)
      for (int j = 0; j < n; j++) {
        const size_t k = base + (size_t)c * inner + j;
        dx[k] = y[k] * (dy[k] - dot[j]);
      }
  }
}

static void softmax_free(crema_layer *l) { free(l->state); }

const crema_layer_ops crema_softmax_ops = {
    .type = "Softmax",
    .min_bottoms = 1,
    .max_bottoms = 1,
    .min_tops = 1,
    .max_tops = 1,
    .allow_inplace = true,
    .setup = softmax_setup,
    .reshape = softmax_reshape,
    .forward = softmax_forward,
    .backward = softmax_backward,
    .free_state = softmax_free,
};
