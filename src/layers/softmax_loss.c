/* SoftmaxWithLoss: multinomial logistic loss of the softmax of bottom[0] (scores, softmax
 * along softmax_param.axis) against integer labels in bottom[1], as Caffe computes it:
 *   loss = -sum over labelled positions of log(max(p[label], FLT_MIN)) / normaliser
 * with loss_param.ignore_label, normalization FULL / VALID / BATCH_SIZE / NONE (legacy
 * `normalize: false` = BATCH_SIZE; default VALID) and an optional second top holding the
 * probabilities. Labels are (N), (N,1,1,1) or, for spatial scores (N,C,H,W), (N,H,W): any
 * shape with outer * inner elements.
 *
 * crema addition, loss_param.label_smoothing = eps: the target becomes
 * t = (1 - eps) * one_hot(label) + eps / K, the loss -sum_k t_k log p_k and the gradient
 * p - t. eps = 0 is exactly Caffe's loss.
 *
 * Backward scales by top[0]->diff[0] (the net seeds it with the loss weight) and never
 * propagates to the labels. A label outside [0, K) that is not ignore_label makes forward fail
 * with the value, its position and the valid range. */
#include <float.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "layers/layer.h"
#include "layers/loss_common.h"
#include "tensor/math.h"

typedef struct softmax_loss_state {
  int axis_param;
  int outer, channels, inner;
  Crema__LossParameter__NormalizationMode mode;
  bool has_ignore;
  int ignore_label;
  float eps;
  float normalizer; /* of the last forward pass; backward uses the same */
  crema_blob *prob; /* softmax of bottom[0], kept for backward */
} softmax_loss_state;

static int softmax_loss_setup(crema_layer *l, crema_blob *const *bottom, crema_blob *const *top,
                              crema_error *err) {
  (void)bottom;
  (void)top;
  softmax_loss_state *s = calloc(1, sizeof *s);
  if (!s) return crema_fail(err, "out of memory");
  l->state = s;
  if (!(s->prob = crema_blob_new())) return crema_fail(err, "out of memory");
  const Crema__SoftmaxParameter *sp = l->param->softmax_param;
  const Crema__LossParameter *lp = l->param->loss_param;
  s->axis_param = sp ? sp->axis : 1;
  s->mode = crema_loss_mode(lp, CREMA__LOSS_PARAMETER__NORMALIZATION_MODE__VALID);
  s->has_ignore = lp && lp->has_ignore_label;
  s->ignore_label = s->has_ignore ? lp->ignore_label : 0;
  s->eps = lp ? lp->label_smoothing : 0.0f;
  if (!(s->eps >= 0.0f && s->eps < 1.0f))
    return crema_fail(err, "loss_param label_smoothing is %g; it must be in [0, 1) (0 = off, 0.1 is typical)",
                      (double)s->eps);
  s->normalizer = 1.0f;
  return 0;
}

static int softmax_loss_reshape(crema_layer *l, crema_blob *const *bottom, crema_blob *const *top,
                                crema_error *err) {
  softmax_loss_state *s = l->state;
  char a[256], b[256];
  int axis = crema_layer_axis(bottom[0], s->axis_param, "softmax_param axis", err);
  if (axis < 0) return -1;
  if (bottom[1]->num_axes < 1 || bottom[0]->shape[0] != bottom[1]->shape[0])
    return crema_fail(err, "scores %s and labels %s must have the same first dimension (batch size)",
                      crema_blob_shape_string(bottom[0], a, sizeof a),
                      crema_blob_shape_string(bottom[1], b, sizeof b));
  s->outer = (int)crema_blob_count_range(bottom[0], 0, axis);
  s->channels = bottom[0]->shape[axis];
  s->inner = (int)crema_blob_count_range(bottom[0], axis + 1, bottom[0]->num_axes);
  if ((size_t)s->outer * (size_t)s->inner != bottom[1]->count)
    return crema_fail(err,
                      "number of labels must match number of predictions: scores %s with softmax axis %d "
                      "need %zu labels, got labels %s; e.g. scores (N, C, H, W) with axis 1 take labels "
                      "(N, H, W) with values in 0..C-1",
                      crema_blob_shape_string(bottom[0], a, sizeof a), axis, (size_t)s->outer * s->inner,
                      crema_blob_shape_string(bottom[1], b, sizeof b));
  if (crema_blob_reshape_like(s->prob, bottom[0], err) || crema_loss_reshape_top(top[0], err)) return -1;
  if (l->n_top > 1 && crema_blob_reshape_like(top[1], bottom[0], err)) return -1;
  return 0;
}

/* Checks every label once (cheap, and keeps the error path out of the parallel loop).
 * Returns the number of labelled (not ignored) positions, or -1 with err filled. */
static long count_valid_labels(const softmax_loss_state *s, const float *label, crema_error *err) {
  long valid = 0;
  const size_t n = (size_t)s->outer * s->inner;
  for (size_t k = 0; k < n; k++) {
    int v;
    bool ok = crema_label_to_int(label[k], &v);
    if (ok && s->has_ignore && v == s->ignore_label) continue;
    if (!ok || v < 0 || v >= s->channels)
      return crema_fail(err,
                        "label %g at position %zu (sample %zu) is outside the valid range 0..%d; the layer "
                        "before has %d outputs: make its num_output cover every class, or set "
                        "loss_param { ignore_label: ... } for labels that should not count",
                        (double)label[k], k, k / (size_t)s->inner, s->channels - 1, s->channels);
    valid++;
  }
  return valid;
}

static int softmax_loss_forward(crema_layer *l, crema_blob *const *bottom, crema_blob *const *top,
                                crema_error *err) {
  softmax_loss_state *s = l->state;
  const int channels = s->channels, inner = s->inner;
  if (channels < 1) return crema_fail(err, "scores have 0 classes along the softmax axis");
  crema_softmax_cpu(bottom[0]->data, s->prob->data, s->outer, channels, inner);
  const float *label = bottom[1]->data, *p = s->prob->data;
  long valid = count_valid_labels(s, label, err);
  if (valid < 0) return -1;

  const size_t n = (size_t)s->outer * inner, dim = (size_t)channels * inner;
  const double on = 1.0 - s->eps, off = (double)s->eps / channels;
  double loss = 0.0;
#pragma omp parallel for reduction(+ : loss) if (n * (size_t)channels > CREMA_PAR_MIN) schedule(static)
  for (size_t k = 0; k < n; k++) {
    int v = (int)label[k];
    if (s->has_ignore && v == s->ignore_label) continue;
    const float *pk = p + (k / inner) * dim + k % inner;
    if (s->eps == 0.0f) {
      loss -= log(fmax(pk[(size_t)v * inner], FLT_MIN));
    } else {
      double sum_log = 0.0;
      for (int c = 0; c < channels; c++) sum_log += log(fmax(pk[(size_t)c * inner], FLT_MIN));
      loss -= on * log(fmax(pk[(size_t)v * inner], FLT_MIN)) + off * sum_log;
    }
  }
  s->normalizer = crema_loss_normalizer(s->mode, s->outer, inner, (int)valid);
  top[0]->data[0] = (float)(loss / s->normalizer);
  if (l->n_top > 1) memcpy(top[1]->data, p, s->prob->count * sizeof(float));
  return 0;
}

/* d loss / d x_c = (p_c - t_c) * top_diff / normaliser; 0 at ignored positions. Done as one
 * contiguous pass (p - eps/K) * scale over everything, then one fix-up per position. */
static void softmax_loss_backward(crema_layer *l, crema_blob *const *top, const bool *propagate_down,
                                  crema_blob *const *bottom) {
  if (!propagate_down[0]) return; /* labels are never differentiated */
  softmax_loss_state *s = l->state;
  const int channels = s->channels;
  const size_t inner = (size_t)s->inner, n = (size_t)s->outer * inner, dim = (size_t)channels * inner;
  const size_t count = s->prob->count;
  const float *label = bottom[1]->data, *p = s->prob->data;
  float *dx = bottom[0]->diff;
  const float scale = top[0]->diff[0] / s->normalizer;
  const float on = (1.0f - s->eps) * scale, off = s->eps / (float)channels;
#pragma omp parallel for if (count > CREMA_PAR_MIN) schedule(static)
  for (size_t k = 0; k < count; k++) dx[k] = (p[k] - off) * scale;
#pragma omp parallel for if (n > CREMA_PAR_MIN) schedule(static)
  for (size_t k = 0; k < n; k++) {
    float *dk = dx + (k / inner) * dim + k % inner;
    const int v = (int)label[k]; /* validated by forward */
    if (s->has_ignore && v == s->ignore_label)
      for (int c = 0; c < channels; c++) dk[(size_t)c * inner] = 0.0f;
    else
      dk[(size_t)v * inner] -= on;
  }
}

static void softmax_loss_free(crema_layer *l) {
  softmax_loss_state *s = l->state;
  if (!s) return;
  crema_blob_free(s->prob);
  free(s);
}

const crema_layer_ops crema_softmax_loss_ops = {
    .type = "SoftmaxWithLoss",
    .min_bottoms = 2,
    .max_bottoms = 2,
    .min_tops = 1,
    .max_tops = 2,
    .is_loss = true,
    .setup = softmax_loss_setup,
    .reshape = softmax_loss_reshape,
    .forward = softmax_loss_forward,
    .backward = softmax_loss_backward,
    .free_state = softmax_loss_free,
};
