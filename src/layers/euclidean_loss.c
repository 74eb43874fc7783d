/* EuclideanLoss: loss = sum (a - b)^2 / (2 N) over bottoms a = bottom[0], b = bottom[1] of
 * equal count per sample, N = first dimension (Caffe's num). Backward sends
 * +-(a - b) * top_diff / N to whichever bottoms ask for it (both may: e.g. siamese nets). */
#include <stdlib.h>

#include "layers/layer.h"
#include "layers/loss_common.h"
#include "tensor/math.h"

typedef struct euclidean_state {
  crema_blob *diff; /* a - b from the last forward */
  int num;
} euclidean_state;

static int euclidean_setup(crema_layer *l, crema_blob *const *bottom, crema_blob *const *top,
                           crema_error *err) {
  (void)bottom;
  (void)top;
  euclidean_state *s = calloc(1, sizeof *s);
  if (!s) return crema_fail(err, "out of memory");
  l->state = s;
  if (!(s->diff = crema_blob_new())) return crema_fail(err, "out of memory");
  return 0;
}

static int euclidean_reshape(crema_layer *l, crema_blob *const *bottom, crema_blob *const *top,
                             crema_error *err) {
  euclidean_state *s = l->state;
  char a[256], b[256];
  if (crema_blob_legacy_dim(bottom[0], 0) != crema_blob_legacy_dim(bottom[1], 0) ||
      bottom[0]->count != bottom[1]->count)
    return crema_fail(
        err,
        "the two inputs must have the same first dimension and the same size per sample, got %s "
        "and %s",
        crema_blob_shape_string(bottom[0], a, sizeof a), crema_blob_shape_string(bottom[1], b, sizeof b));
  s->num = crema_blob_legacy_dim(bottom[0], 0);
  if (crema_blob_reshape_like(s->diff, bottom[0], err)) return -1;
  return crema_loss_reshape_top(top[0], err);
}

static int euclidean_forward(crema_layer *l, crema_blob *const *bottom, crema_blob *const *top,
                             crema_error *err) {
  (void)err;
  euclidean_state *s = l->state;
  const size_t n = bottom[0]->count;
  const float *a = bottom[0]->data, *b = bottom[1]->data;
  float *d = s->diff->data;
  double sum = 0.0;
#pragma omp parallel for reduction(+ : sum) if (n > CREMA_PAR_MIN) schedule(static)
  for (size_t i = 0; i < n; i++) {
    d[i] = a[i] - b[i];
    sum += (double)d[i] * d[i];
  }
  top[0]->data[0] = s->num > 0 ? (float)(sum / s->num / 2.0) : 0.0f;
  return 0;
}

static void euclidean_backward(crema_layer *l, crema_blob *const *top, const bool *propagate_down,
                               crema_blob *const *bottom) {
  euclidean_state *s = l->state;
  if (s->num <= 0) return;
  for (int i = 0; i < 2; i++) {
    if (!propagate_down[i]) continue;
    const float alpha = (i == 0 ? 1.0f : -1.0f) * top[0]->diff[0] / (float)s->num;
    const float *d = s->diff->data;
    float *g = bottom[i]->diff;
    const size_t n = bottom[i]->count;
#pragma omp parallel for if (n > CREMA_PAR_MIN) schedule(static)
    for (size_t k = 0; k < n; k++) g[k] = alpha * d[k];
  }
}

static void euclidean_free(crema_layer *l) {
  euclidean_state *s = l->state;
  if (!s) return;
  crema_blob_free(s->diff);
  free(s);
}

const crema_layer_ops crema_euclidean_loss_ops = {
    .type = "EuclideanLoss",
    .min_bottoms = 2,
    .max_bottoms = 2,
    .min_tops = 1,
    .max_tops = 1,
    .is_loss = true,
    .setup = euclidean_setup,
    .reshape = euclidean_reshape,
    .forward = euclidean_forward,
    .backward = euclidean_backward,
    .free_state = euclidean_free,
};
