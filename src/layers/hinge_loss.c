/* hinge_loss.c -- Caffe's "HingeLoss" (one-vs-all hinge on scores (N, dim), labels (N)):
 *   t[i, j] = max(0, 1 + s_ij * x[i, j]),  s_ij = -1 if j = label_i else +1
 *   L1: loss = sum t / N                   d x[i, j] = s_ij * sign(t[i, j]) * d top / N
 *   L2: loss = sum t^2 / N                 d x[i, j] = 2 s_ij * t[i, j] * d top / N
 * Labels get no gradient. A label outside [0, dim) makes forward fail. */
#include <math.h>
#include <stdlib.h>

#include "layers/layer.h"
#include "layers/loss_common.h"
#include "tensor/math.h"

typedef struct hinge_state {
  bool l2;
  int num, dim;
  crema_blob *t; /* the hinge terms from the last forward */
} hinge_state;

static int hinge_setup(crema_layer *l, crema_blob *const *bottom, crema_blob *const *top, crema_error *err) {
  (void)bottom;
  (void)top;
  hinge_state *s = calloc(1, sizeof *s);
  if (!s || !(s->t = crema_blob_new())) {
    free(s);
    return crema_fail(err, "out of memory");
  }
  l->state = s;
  const Crema__HingeLossParameter *p = l->param->hinge_loss_param;
  s->l2 = p && p->norm == CREMA__HINGE_LOSS_PARAMETER__NORM__L2;
  if (p && p->norm != CREMA__HINGE_LOSS_PARAMETER__NORM__L1 && !s->l2)
    return crema_fail(err, "unknown hinge_loss_param norm %d (L1 or L2)", (int)p->norm);
  return 0;
}

static int hinge_reshape(crema_layer *l, crema_blob *const *bottom, crema_blob *const *top,
                         crema_error *err) {
  hinge_state *s = l->state;
  char a[256], b[256];
  s->num = crema_blob_legacy_dim(bottom[0], 0);
  if (s->num <= 0 || bottom[1]->count != (size_t)s->num)
    return crema_fail(err, "scores %s need one label per item, got labels %s",
                      crema_blob_shape_string(bottom[0], a, sizeof a),
                      crema_blob_shape_string(bottom[1], b, sizeof b));
  s->dim = (int)(bottom[0]->count / (size_t)s->num);
  if (crema_blob_reshape_like(s->t, bottom[0], err)) return -1;
  return crema_loss_reshape_top(top[0], err);
}

static int hinge_forward(crema_layer *l, crema_blob *const *bottom, crema_blob *const *top,
                         crema_error *err) {
  hinge_state *s = l->state;
  const float *x = bottom[0]->data, *label = bottom[1]->data;
  float *t = s->t->data;
  double loss = 0.0;
  for (int i = 0; i < s->num; i++) {
    int y;
    if (!crema_label_to_int(label[i], &y) || y < 0 || y >= s->dim)
      return crema_fail(err, "label %g of item %d is outside 0..%d", (double)label[i], i, s->dim - 1);
    for (int j = 0; j < s->dim; j++) {
      const size_t k = (size_t)i * s->dim + j;
      t[k] = fmaxf(0.0f, 1.0f + (j == y ? -x[k] : x[k]));
      loss += s->l2 ? (double)t[k] * t[k] : t[k];
    }
  }
  top[0]->data[0] = (float)(loss / s->num);
  return 0;
}

static void hinge_backward(crema_layer *l, crema_blob *const *top, const bool *propagate_down,
                           crema_blob *const *bottom) {
  hinge_state *s = l->state;
  if (!propagate_down[0]) return;
  const float *label = bottom[1]->data, *t = s->t->data;
  float *dx = bottom[0]->diff;
  const float scale = top[0]->diff[0] / (float)s->num;
  for (int i = 0; i < s->num; i++) {
    const int y = (int)label[i];
    for (int j = 0; j < s->dim; j++) {
      const size_t k = (size_t)i * s->dim + j;
      const float g = s->l2 ? 2.0f * t[k] : (t[k] > 0.0f ? 1.0f : 0.0f);
      dx[k] = (j == y ? -g : g) * scale;
    }
  }
}

static void hinge_free(crema_layer *l) {
  hinge_state *s = l->state;
  if (!s) return;
  crema_blob_free(s->t);
  free(s);
}

const crema_layer_ops crema_hinge_loss_ops = {
    .type = "HingeLoss",
    .min_bottoms = 2,
    .max_bottoms = 2,
    .min_tops = 1,
    .max_tops = 1,
    .is_loss = true,
    .setup = hinge_setup,
    .reshape = hinge_reshape,
    .forward = hinge_forward,
    .backward = hinge_backward,
    .free_state = hinge_free,
};
