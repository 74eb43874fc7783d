/* contrastive_loss.c -- Caffe's "ContrastiveLoss" (Hadsell et al. 2006) for siamese nets:
 * features a, b (N, C, 1, 1 or N, C) and a similarity label y (N; non-zero = similar):
 *   d_i = ||a_i - b_i||^2
 *   loss = sum_i [ y_i ? d_i : max(margin - sqrt(d_i), 0)^2 ] / (2N)
 *   legacy_version: dissimilar pairs add max(margin - d_i, 0) instead (Caffe's first form)
 * Gradient for a (b gets the negative), g = d top / N:
 *   similar:      g (a - b)
 *   dissimilar:   -g m / (sqrt(d) + 1e-4) (a - b) where m = margin - sqrt(d) > 0 (Caffe's epsilon)
 *   legacy:       -g (a - b) where margin - d > 0
 * The label gets no gradient. */
#include <math.h>
#include <stdlib.h>

#include "layers/layer.h"
#include "layers/loss_common.h"
#include "tensor/math.h"

typedef struct contrastive_state {
  float margin;
  bool legacy;
  int num, channels;
  crema_blob *diff; /* a - b */
  float *dist_sq;   /* per item */
  size_t dist_cap;
} contrastive_state;

static int contrastive_setup(crema_layer *l, crema_blob *const *bottom, crema_blob *const *top,
                             crema_error *err) {
  (void)bottom;
  (void)top;
  contrastive_state *s = calloc(1, sizeof *s);
  if (!s || !(s->diff = crema_blob_new())) {
    free(s);
    return crema_fail(err, "out of memory");
  }
  l->state = s;
  const Crema__ContrastiveLossParameter *p = l->param->contrastive_loss_param;
  s->margin = p ? p->margin : 1.0f;
  s->legacy = p && p->legacy_version;
  return 0;
}

static int contrastive_reshape(crema_layer *l, crema_blob *const *bottom, crema_blob *const *top,
                               crema_error *err) {
  contrastive_state *s = l->state;
  char a[256], b[256];
  s->num = crema_blob_legacy_dim(bottom[0], 0);
  if (!crema_blob_same_shape(bottom[0], bottom[1]) || s->num <= 0)
    return crema_fail(err, "the two feature bottoms must have the same shape, got %s and %s",
                      crema_blob_shape_string(bottom[0], a, sizeof a),
                      crema_blob_shape_string(bottom[1], b, sizeof b));
  s->channels = (int)(bottom[0]->count / (size_t)s->num);
  if (bottom[2]->count != (size_t)s->num)
    return crema_fail(err, "the similarity label needs one value per pair (%d), got shape %s", s->num,
                      crema_blob_shape_string(bottom[2], a, sizeof a));
  if ((size_t)s->num > s->dist_cap) {
    float *d = realloc(s->dist_sq, (size_t)s->num * sizeof *d);
    if (!d) return crema_fail(err, "out of memory");
    s->dist_sq = d;
    s->dist_cap = (size_t)s->num;
  }
  if (crema_blob_reshape_like(s->diff, bottom[0], err)) return -1;
  return crema_loss_reshape_top(top[0], err);
}

static int contrastive_forward(crema_layer *l, crema_blob *const *bottom, crema_blob *const *top,
                               crema_error *err) {
  (void)err;
  contrastive_state *s = l->state;
  const float *a = bottom[0]->data, *b = bottom[1]->data, *y = bottom[2]->data;
  float *d = s->diff->data;
  double loss = 0.0;
  for (int i = 0; i < s->num; i++) {
    double sq = 0.0;
    for (int c = 0; c < s->channels; c++) {
      const size_t k = (size_t)i * s->channels + c;
      d[k] = a[k] - b[k];
      sq += (double)d[k] * d[k];
    }
    s->dist_sq[i] = (float)sq;
    if (y[i] != 0.0f)
      loss += sq;
    else if (s->legacy)
      loss += fmax(s->margin - sq, 0.0);
    else {
      const double m = fmax(s->margin - sqrt(sq), 0.0);
      loss += m * m;
    }
  }
  top[0]->data[0] = (float)(loss / s->num / 2.0);
  return 0;
}

static void contrastive_backward(crema_layer *l, crema_blob *const *top, const bool *propagate_down,
                                 crema_blob *const *bottom) {
  contrastive_state *s = l->state;
  const float *y = bottom[2]->data, *d = s->diff->data;
  for (int side = 0; side < 2; side++) {
    if (!propagate_down[side]) continue;
    const float alpha = (side == 0 ? 1.0f : -1.0f) * top[0]->diff[0] / (float)s->num;
    float *dx = bottom[side]->diff;
    for (int i = 0; i < s->num; i++) {
      float coef;
      if (y[i] != 0.0f) {
        coef = alpha;
      } else if (s->legacy) {
        coef = s->margin - s->dist_sq[i] > 0.0f ? -alpha : 0.0f;
      } else {
        const float dist = sqrtf(s->dist_sq[i]), m = s->margin - dist;
        coef = m > 0.0f ? -alpha * m / (dist + 1e-4f) : 0.0f;
      }
      for (int c = 0; c < s->channels; c++) {
        const size_t k = (size_t)i * s->channels + c;
        dx[k] = coef * d[k];
      }
    }
  }
}

static void contrastive_free(crema_layer *l) {
  contrastive_state *s = l->state;
  if (!s) return;
  crema_blob_free(s->diff);
  free(s->dist_sq);
  free(s);
}

const crema_layer_ops crema_contrastive_loss_ops = {
    .type = "ContrastiveLoss",
    .min_bottoms = 3,
    .max_bottoms = 3,
    .min_tops = 1,
    .max_tops = 1,
    .is_loss = true,
    .setup = contrastive_setup,
    .reshape = contrastive_reshape,
    .forward = contrastive_forward,
    .backward = contrastive_backward,
    .free_state = contrastive_free,
};
