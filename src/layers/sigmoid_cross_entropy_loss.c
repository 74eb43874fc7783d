/* SigmoidCrossEntropyLoss: cross-entropy between sigmoid(x) (x = bottom[0]) and targets
 * t in [0, 1] (bottom[1], same count), summed over every element:
 *   loss = -sum [t log s(x) + (1 - t) log(1 - s(x))] / normaliser
 * computed in the overflow-free form x (t - [x >= 0]) - log(1 + exp(x - 2 x [x >= 0])).
 * Elements whose target, truncated to int, equals loss_param.ignore_label are skipped.
 *
 * Normalisation follows BVLC/caffe master: an explicit `normalization` wins, then the legacy
 * `normalize` (true = VALID, false = BATCH_SIZE), and when neither is given BATCH_SIZE
 * ("for historical reasons" -- the layer predates normalisation modes and always divided by
 * the batch size). Note this differs from SoftmaxWithLoss, whose default is VALID.
 * Backward: (s(x) - t) * top_diff / normaliser; 0 at ignored elements; never to the targets. */
#include <math.h>
#include <stdlib.h>

#include "layers/layer.h"
#include "layers/loss_common.h"
#include "tensor/math.h"

typedef struct sigmoid_ce_state {
  Crema__LossParameter__NormalizationMode mode;
  bool has_ignore;
  int ignore_label;
  int outer, inner;
  float normalizer; /* of the last forward pass */
} sigmoid_ce_state;

static bool ignored(const sigmoid_ce_state *s, float t) {
  int v;
  return s->has_ignore && crema_label_to_int(t, &v) && v == s->ignore_label;
}

static int sigmoid_ce_setup(crema_layer *l, crema_blob *const *bottom, crema_blob *const *top,
                            crema_error *err) {
  (void)bottom;
  (void)top;
  sigmoid_ce_state *s = calloc(1, sizeof *s);
  if (!s) return crema_fail(err, "out of memory");
  l->state = s;
  const Crema__LossParameter *lp = l->param->loss_param;
  s->mode = crema_loss_mode(lp, CREMA__LOSS_PARAMETER__NORMALIZATION_MODE__BATCH_SIZE);
  s->has_ignore = lp && lp->has_ignore_label;
  s->ignore_label = s->has_ignore ? lp->ignore_label : 0;
  s->normalizer = 1.0f;
  return 0;
}

static int sigmoid_ce_reshape(crema_layer *l, crema_blob *const *bottom, crema_blob *const *top,
                              crema_error *err) {
  sigmoid_ce_state *s = l->state;
  char a[256], b[256];
  if (crema_blob_legacy_dim(bottom[0], 0) != crema_blob_legacy_dim(bottom[1], 0) ||
      bottom[0]->count != bottom[1]->count)
    return crema_fail(err, "scores %s and targets %s must have the same first dimension and the same count",
                      crema_blob_shape_string(bottom[0], a, sizeof a),
                      crema_blob_shape_string(bottom[1], b, sizeof b));
  s->outer = crema_blob_legacy_dim(bottom[0], 0);
  s->inner = (int)crema_blob_count_range(bottom[0], 1, bottom[0]->num_axes);
  return crema_loss_reshape_top(top[0], err);
}

static int sigmoid_ce_forward(crema_layer *l, crema_blob *const *bottom, crema_blob *const *top,
                              crema_error *err) {
  (void)err;
  sigmoid_ce_state *s = l->state;
  const size_t n = bottom[0]->count;
  const float *x = bottom[0]->data, *t = bottom[1]->data;
  double loss = 0.0;
  long valid = 0;
#pragma omp parallel for reduction(+ : loss, valid) if (n > CREMA_PAR_MIN) schedule(static)
  for (size_t i = 0; i < n; i++) {
    if (ignored(s, t[i])) continue;
    /* x - 2 x [x >= 0] = -|x|, so exp never overflows. Terms in float, the sum in double:
     * logf(1 + e) is twice as fast as double log1p and off by < 1e-7 absolute when e is tiny. */
    const float xi = x[i], pos = xi >= 0.0f ? 1.0f : 0.0f;
    loss -= (double)(xi * (t[i] - pos) - logf(1.0f + expf(-fabsf(xi))));
    valid++;
  }
  s->normalizer = crema_loss_normalizer(s->mode, s->outer, s->inner, (int)valid);
  top[0]->data[0] = (float)(loss / s->normalizer);
  return 0;
}

static void sigmoid_ce_backward(crema_layer *l, crema_blob *const *top, const bool *propagate_down,
                                crema_blob *const *bottom) {
  if (!propagate_down[0]) return;
  sigmoid_ce_state *s = l->state;
  const size_t n = bottom[0]->count;
  const float *x = bottom[0]->data, *t = bottom[1]->data;
  float *dx = bottom[0]->diff;
  const float scale = top[0]->diff[0] / s->normalizer;
#pragma omp parallel for if (n > CREMA_PAR_MIN) schedule(static)
  for (size_t i = 0; i < n; i++) {
    if (ignored(s, t[i])) {
      dx[i] = 0.0f;
      continue;
    }
    /* Sigmoid without overflow for either sign of x. */
    const float e = expf(-fabsf(x[i]));
    const float sig = x[i] >= 0.0f ? 1.0f / (1.0f + e) : e / (1.0f + e);
    dx[i] = (sig - t[i]) * scale;
  }
}

static void sigmoid_ce_free(crema_layer *l) { free(l->state); }

const crema_layer_ops crema_sigmoid_cross_entropy_loss_ops = {
    .type = "SigmoidCrossEntropyLoss",
    .min_bottoms = 2,
    .max_bottoms = 2,
    .min_tops = 1,
    .max_tops = 1,
    .is_loss = true,
    .setup = sigmoid_ce_setup,
    .reshape = sigmoid_ce_reshape,
    .forward = sigmoid_ce_forward,
    .backward = sigmoid_ce_backward,
    .free_state = sigmoid_ce_free,
};
