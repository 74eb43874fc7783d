/* Accuracy: fraction of labelled positions whose true class is among the top_k scores of
 * bottom[0] along accuracy_param.axis (default 1), labels in bottom[1] (outer * inner values).
 * Positions labelled accuracy_param.ignore_label are not counted. An optional second top gets
 * the per-class accuracy (C values; 0 for a class absent from the batch).
 *
 * Ties follow BVLC/caffe master exactly: the true class is a hit when fewer than top_k classes
 * (itself included, hence the start at -1) score >= its score, so a class tied with the true
 * class counts against it. No backward. A label outside [0, C) that is not ignore_label makes
 * forward fail, naming the value and the valid range. */
#include <limits.h>
#include <stdlib.h>
#include <string.h>

#include "layers/layer.h"
#include "layers/loss_common.h"

typedef struct accuracy_state {
  int top_k, axis_param;
  bool has_ignore;
  int ignore_label;
  int outer, inner, num_labels;
  int *nums; /* labelled positions per class (per-class top), grow-only */
  int nums_capacity;
} accuracy_state;

static int accuracy_setup(crema_layer *l, crema_blob *const *bottom, crema_blob *const *top,
                          crema_error *err) {
  (void)bottom;
  (void)top;
  accuracy_state *s = calloc(1, sizeof *s);
  if (!s) return crema_fail(err, "out of memory");
  l->state = s;
  const Crema__AccuracyParameter *ap = l->param->accuracy_param;
  if (ap && ap->top_k > INT_MAX) return crema_fail(err, "accuracy_param top_k %u is too large", ap->top_k);
  s->top_k = ap ? (int)ap->top_k : 1;
  s->axis_param = ap ? ap->axis : 1;
  s->has_ignore = ap && ap->has_ignore_label;
  s->ignore_label = s->has_ignore ? ap->ignore_label : 0;
  if (s->top_k < 1) return crema_fail(err, "accuracy_param top_k must be at least 1, got %d", s->top_k);
  return 0;
}

static int accuracy_reshape(crema_layer *l, crema_blob *const *bottom, crema_blob *const *top,
                            crema_error *err) {
  accuracy_state *s = l->state;
  char a[256], b[256];
  int axis = crema_layer_axis(bottom[0], s->axis_param, "accuracy_param axis", err);
  if (axis < 0) return -1;
  s->outer = (int)crema_blob_count_range(bottom[0], 0, axis);
  s->num_labels = bottom[0]->shape[axis];
  s->inner = (int)crema_blob_count_range(bottom[0], axis + 1, bottom[0]->num_axes);
  if ((size_t)s->outer * (size_t)s->inner != bottom[1]->count)
    return crema_fail(err,
                      "number of labels must match number of predictions: scores %s with axis %d need %zu "
                      "labels, got labels %s",
                      crema_blob_shape_string(bottom[0], a, sizeof a), axis, (size_t)s->outer * s->inner,
                      crema_blob_shape_string(bottom[1], b, sizeof b));
  if (s->top_k > s->num_labels)
    return crema_fail(err, "accuracy_param top_k (%d) must be at most the number of classes (%d)", s->top_k,
                      s->num_labels);
  if (crema_loss_reshape_top(top[0], err)) return -1;
  if (l->n_top > 1) {
    int c = s->num_labels;
    if (crema_blob_reshape(top[1], 1, &c, err)) return -1;
    if (c > s->nums_capacity) {
      int *nums = realloc(s->nums, (size_t)c * sizeof *nums);
      if (!nums) return crema_fail(err, "out of memory");
      s->nums = nums;
      s->nums_capacity = c;
    }
  }
  return 0;
}

static int accuracy_forward(crema_layer *l, crema_blob *const *bottom, crema_blob *const *top,
                            crema_error *err) {
  accuracy_state *s = l->state;
  const float *x = bottom[0]->data, *label = bottom[1]->data;
  const int inner = s->inner, num_labels = s->num_labels, top_k = s->top_k;
  const size_t dim = (size_t)num_labels * inner;
  const bool per_class = l->n_top > 1;
  float *class_hits = per_class ? top[1]->data : NULL;
  if (per_class) {
    memset(s->nums, 0, (size_t)num_labels * sizeof *s->nums);
    memset(class_hits, 0, (size_t)num_labels * sizeof *class_hits);
  }
  long hits = 0, counted = 0;
  for (int i = 0; i < s->outer; i++)
    for (int j = 0; j < inner; j++) {
      const float lv = label[(size_t)i * inner + j];
      int v;
      bool ok = crema_label_to_int(lv, &v);
      if (ok && s->has_ignore && v == s->ignore_label) continue;
      if (!ok || v < 0 || v >= num_labels)
        return crema_fail(
            err,
            "label %g at position %zu is outside the valid range 0..%d (the scores have %d "
            "classes); set accuracy_param { ignore_label: ... } for labels that should not count",
            (double)lv, (size_t)i * inner + j, num_labels - 1, num_labels);
      const float *xs = x + (size_t)i * dim + j;
      const float truth = xs[(size_t)v * inner];
      int better = -1; /* the true class itself is counted once below */
      for (int k = 0; k < num_labels && better < top_k; k++) better += xs[(size_t)k * inner] >= truth;
      if (per_class) s->nums[v]++;
      if (better < top_k) {
        hits++;
        if (per_class) class_hits[v] += 1.0f;
      }
      counted++;
    }
  top[0]->data[0] = counted ? (float)((double)hits / (double)counted) : 0.0f;
  if (per_class)
    for (int c = 0; c < num_labels; c++)
      class_hits[c] = s->nums[c] ? class_hits[c] / (float)s->nums[c] : 0.0f;
  return 0;
}

static void accuracy_free(crema_layer *l) {
  accuracy_state *s = l->state;
  if (!s) return;
  free(s->nums);
  free(s);
}

const crema_layer_ops crema_accuracy_ops = {
    .type = "Accuracy",
    .min_bottoms = 2,
    .max_bottoms = 2,
    .min_tops = 1,
    .max_tops = 2,
    .setup = accuracy_setup,
    .reshape = accuracy_reshape,
    .forward = accuracy_forward,
    .free_state = accuracy_free,
};
