/* multinomial_logistic_loss.c -- Caffe's "MultinomialLogisticLoss" on probabilities (N, dim)
 * (e.g. a Softmax output) and labels (N):
 *   loss = -sum_i ln(max(p[i, label_i], 1e-20)) / N
 *   d p[i, label_i] = -d top / (N * max(p[i, label_i], 1e-20)), 0 elsewhere
 * Labels get no gradient. A label outside [0, dim) makes forward fail. */
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "layers/layer.h"
#include "layers/loss_common.h"

#define MLL_LOG_THRESHOLD 1e-20f /* Caffe's kLOG_THRESHOLD */

typedef struct mll_state {
  int num, dim;
} mll_state;

static int mll_setup(crema_layer *l, crema_blob *const *bottom, crema_blob *const *top, crema_error *err) {
  (void)bottom;
  (void)top;
  if (!(l->state = calloc(1, sizeof(mll_state)))) return crema_fail(err, "out of memory");
  return 0;
}

static int mll_reshape(crema_layer *l, crema_blob *const *bottom, crema_blob *const *top, crema_error *err) {
  mll_state *s = l->state;
  char a[256], b[256];
  s->num = crema_blob_legacy_dim(bottom[0], 0);
  if (s->num <= 0 || bottom[1]->count != (size_t)s->num)
    return crema_fail(err, "probabilities %s need one label per item, got labels %s",
                      crema_blob_shape_string(bottom[0], a, sizeof a),
                      crema_blob_shape_string(bottom[1], b, sizeof b));
  s->dim = (int)(bottom[0]->count / (size_t)s->num);
  return crema_loss_reshape_top(top[0], err);
}

static int mll_forward(crema_layer *l, crema_blob *const *bottom, crema_blob *const *top, crema_error *err) {
  const mll_state *s = l->state;
  const float *p = bottom[0]->data, *label = bottom[1]->data;
  double loss = 0.0;
  for (int i = 0; i < s->num; i++) {
    int y;
    if (!crema_label_to_int(label[i], &y) || y < 0 || y >= s->dim)
      return crema_fail(err, "label %g of item %d is outside 0..%d", (double)label[i], i, s->dim - 1);
    loss -= log(fmaxf(p[(size_t)i * s->dim + y], MLL_LOG_THRESHOLD));
  }
  top[0]->data[0] = (float)(loss / s->num);
  return 0;
}

static void mll_backward(crema_layer *l, crema_blob *const *top, const bool *propagate_down,
                         crema_blob *const *bottom) {
  const mll_state *s = l->state;
  if (!propagate_down[0]) return;
  const float *p = bottom[0]->data, *label = bottom[1]->data;
  float *dx = bottom[0]->diff;
  const float scale = -top[0]->diff[0] / (float)s->num;
  memset(dx, 0, bottom[0]->count * sizeof *dx);
  for (int i = 0; i < s->num; i++) {
    const size_t k = (size_t)i * s->dim + (size_t)(int)label[i];
    dx[k] = scale / fmaxf(p[k], MLL_LOG_THRESHOLD);
  }
}

static void mll_free(crema_layer *l) { free(l->state); }

const crema_layer_ops crema_multinomial_logistic_loss_ops = {
    .type = "MultinomialLogisticLoss",
    .min_bottoms = 2,
    .max_bottoms = 2,
    .min_tops = 1,
    .max_tops = 1,
    .is_loss = true,
    .setup = mll_setup,
    .reshape = mll_reshape,
    .forward = mll_forward,
    .backward = mll_backward,
    .free_state = mll_free,
};
