/* infogain_loss.c -- Caffe 1.0's "InfogainLoss": SoftmaxWithLoss weighted by an infogain
 * matrix H (K x K) that gives the value of predicting class l for true class y.
 *   p = softmax of bottom[0] along infogain_loss_param.axis (K classes), labels bottom[1]
 *   loss = -sum over labelled positions sum_l H[y, l] ln(max(p_l, FLT_MIN)) / normaliser
 *   d x_l = (p_l * sum_k H[y, k] - H[y, l]) * d top / normaliser     (0 at ignored positions)
 * H comes from a third bottom, or else from the binaryproto file infogain_loss_param.source
 * (any shape with K*K values). H = identity gives exactly SoftmaxWithLoss. loss_param
 * ignore_label and normalization (default VALID) as in SoftmaxWithLoss; an optional second
 * top holds p. Labels and H get no gradient. */
#include <float.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "layers/layer.h"
#include "layers/loss_common.h"
#include "proto/io.h"
#include "tensor/blob_proto.h"

typedef struct infogain_state {
  int axis_param;
  int outer, k, inner;
  Crema__LossParameter__NormalizationMode mode;
  bool has_ignore;
  int ignore_label;
  float normalizer;
  crema_blob *h;    /* H from the source file (unused with a third bottom) */
  crema_blob *prob; /* softmax, kept for backward */
  float *row_sum;   /* sum_l H[y, l] per class y */
  size_t row_cap;
} infogain_state;

static int infogain_setup(crema_layer *l, crema_blob *const *bottom, crema_blob *const *top,
                          crema_error *err) {
  (void)bottom;
  (void)top;
  infogain_state *s = calloc(1, sizeof *s);
  if (!s) return crema_fail(err, "out of memory");
  l->state = s;
  if (!(s->prob = crema_blob_new()) || !(s->h = crema_blob_new())) return crema_fail(err, "out of memory");
  const Crema__InfogainLossParameter *ip = l->param->infogain_loss_param;
  const Crema__LossParameter *lp = l->param->loss_param;
  s->axis_param = ip ? ip->axis : 1;
  s->mode = crema_loss_mode(lp, CREMA__LOSS_PARAMETER__NORMALIZATION_MODE__VALID);
  s->has_ignore = lp && lp->has_ignore_label;
  s->ignore_label = s->has_ignore ? lp->ignore_label : 0;
  s->normalizer = 1.0f;
  if (l->n_bottom < 3) {
    if (!ip || !ip->source || !ip->source[0])
      return crema_fail(err, "give the infogain matrix as a third bottom or as infogain_loss_param { source: "
                             "\"H.binaryproto\" }");
    Crema__BlobProto *bp = NULL;
    if (crema_read_binary_message(ip->source, &crema__blob_proto__descriptor, (ProtobufCMessage **)&bp, err))
      return crema_error_prefix(err, "infogain_loss_param source");
    int rc = crema_blob_from_proto(s->h, bp, false, err);
    crema_message_free(bp);
    if (rc) return crema_error_prefix(err, "infogain matrix %s", ip->source);
  }
  return 0;
}

static int infogain_reshape(crema_layer *l, crema_blob *const *bottom, crema_blob *const *top,
                            crema_error *err) {
  infogain_state *s = l->state;
  char a[256], b[256];
  int axis = crema_layer_axis(bottom[0], s->axis_param, "infogain_loss_param axis", err);
  if (axis < 0) return -1;
  s->outer = (int)crema_blob_count_range(bottom[0], 0, axis);
  s->k = bottom[0]->shape[axis];
  s->inner = (int)crema_blob_count_range(bottom[0], axis + 1, bottom[0]->num_axes);
  if ((size_t)s->outer * (size_t)s->inner != bottom[1]->count)
    return crema_fail(err, "scores %s with axis %d need %zu labels, got labels %s",
                      crema_blob_shape_string(bottom[0], a, sizeof a), axis, (size_t)s->outer * s->inner,
                      crema_blob_shape_string(bottom[1], b, sizeof b));
  const crema_blob *h = l->n_bottom > 2 ? bottom[2] : s->h;
  if (h->count != (size_t)s->k * (size_t)s->k)
    return crema_fail(err, "the infogain matrix has shape %s; it needs %d x %d values for %d classes",
                      crema_blob_shape_string(h, a, sizeof a), s->k, s->k, s->k);
  if ((size_t)s->k > s->row_cap) {
    float *r = realloc(s->row_sum, (size_t)s->k * sizeof *r);
    if (!r) return crema_fail(err, "out of memory");
    s->row_sum = r;
    s->row_cap = (size_t)s->k;
  }
  if (crema_blob_reshape_like(s->prob, bottom[0], err) || crema_loss_reshape_top(top[0], err)) return -1;
  if (l->n_top > 1 && crema_blob_reshape_like(top[1], bottom[0], err)) return -1;
  return 0;
}

static int infogain_forward(crema_layer *l, crema_blob *const *bottom, crema_blob *const *top,
                            crema_error *err) {
  infogain_state *s = l->state;
  const int k = s->k, inner = s->inner;
  if (k < 1) return crema_fail(err, "scores have 0 classes along the axis");
  const float *hm = (l->n_bottom > 2 ? bottom[2] : s->h)->data;
  crema_softmax_cpu(bottom[0]->data, s->prob->data, s->outer, k, inner);
  const float *p = s->prob->data, *label = bottom[1]->data;
  double loss = 0.0;
  long valid = 0;
  for (int i = 0; i < s->outer; i++)
    for (int j = 0; j < inner; j++) {
      const float lv = label[(size_t)i * inner + j];
      int y;
      const bool ok = crema_label_to_int(lv, &y);
      if (ok && s->has_ignore && y == s->ignore_label) continue;
      if (!ok || y < 0 || y >= k)
        return crema_fail(err, "label %g at position %d is outside 0..%d", (double)lv, i * inner + j, k - 1);
      const float *pk = p + (size_t)i * k * inner + j;
      for (int c = 0; c < k; c++) loss -= hm[(size_t)y * k + c] * log(fmax(pk[(size_t)c * inner], FLT_MIN));
      valid++;
    }
  for (int y = 0; y < k; y++) {
    double r = 0.0;
    for (int c = 0; c < k; c++) r += hm[(size_t)y * k + c];
    s->row_sum[y] = (float)r;
  }
  s->normalizer = crema_loss_normalizer(s->mode, s->outer, inner, (int)valid);
  top[0]->data[0] = (float)(loss / s->normalizer);
  if (l->n_top > 1) memcpy(top[1]->data, p, s->prob->count * sizeof(float));
  return 0;
}

static void infogain_backward(crema_layer *l, crema_blob *const *top, const bool *propagate_down,
                              crema_blob *const *bottom) {
  infogain_state *s = l->state;
  if (!propagate_down[0]) return;
  const int k = s->k, inner = s->inner;
  const float *hm = (l->n_bottom > 2 ? bottom[2] : s->h)->data;
  const float *p = s->prob->data, *label = bottom[1]->data;
  float *dx = bottom[0]->diff;
  const float scale = top[0]->diff[0] / s->normalizer;
  for (int i = 0; i < s->outer; i++)
    for (int j = 0; j < inner; j++) {
      const size_t base = (size_t)i * k * inner + j;
      const int y = (int)label[(size_t)i * inner + j]; /* validated by forward */
      if (s->has_ignore && y == s->ignore_label) {
        for (int c = 0; c < k; c++) dx[base + (size_t)c * inner] = 0.0f;
        continue;
      }
      for (int c = 0; c < k; c++) {
        const size_t at = base + (size_t)c * inner;
        dx[at] = (p[at] * s->row_sum[y] - hm[(size_t)y * k + c]) * scale;
      }
    }
}

static void infogain_free(crema_layer *l) {
  infogain_state *s = l->state;
  if (!s) return;
  crema_blob_free(s->h);
  crema_blob_free(s->prob);
  free(s->row_sum);
  free(s);
}

const crema_layer_ops crema_infogain_loss_ops = {
    .type = "InfogainLoss",
    .min_bottoms = 2,
    .max_bottoms = 3,
    .min_tops = 1,
    .max_tops = 2,
    .is_loss = true,
    .setup = infogain_setup,
    .reshape = infogain_reshape,
    .forward = infogain_forward,
    .backward = infogain_backward,
    .free_state = infogain_free,
};
