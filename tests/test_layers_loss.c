/* test_layers_loss.c -- Softmax, SoftmaxWithLoss, EuclideanLoss, SigmoidCrossEntropyLoss,
 * Accuracy: forward values against sums computed here in double precision, numerical gradient
 * checks in every normalisation mode, and the errors users see for bad labels. */
#include <check.h>
#include <float.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "support/run.h"
#include "base/mem.h"
#include "layers/layer.h"
#include "support/gradcheck.h"
#include "support/layer_run.h"
#include "support/textproto.h"

/* ---------------------------------------------------------------- helpers */

/* Random integer labels in [0, classes) (deterministic). */
static void fill_labels(crema_blob *b, int classes, uint64_t seed) {
  crema_rng r;
  crema_rng_seed(&r, seed, 5);
  for (size_t i = 0; i < b->count; i++) b->data[i] = (float)crema_rng_below(&r, (uint32_t)classes);
}

/* Reference softmax loss of scores (outer, C, inner) in double: returns the un-normalised sum
 * over non-ignored positions and writes their number to *valid. */
static double ref_softmax_loss(const float *x, const float *label, int outer, int C, int inner,
                               bool has_ignore, int ignore, double eps, int *valid) {
  double loss = 0.0;
  *valid = 0;
  for (int i = 0; i < outer; i++)
    for (int j = 0; j < inner; j++) {
      int y = (int)label[i * inner + j];
      if (has_ignore && y == ignore) continue;
      double m = -INFINITY, sum = 0.0;
      for (int c = 0; c < C; c++) m = fmax(m, x[(i * C + c) * inner + j]);
      for (int c = 0; c < C; c++) sum += exp(x[(i * C + c) * inner + j] - m);
      for (int c = 0; c < C; c++) {
        double logp = x[(i * C + c) * inner + j] - m - log(sum);
        double t = (c == y ? 1.0 - eps : 0.0) + eps / C;
        loss -= t * logp;
      }
      (*valid)++;
    }
  return loss;
}

/* gradcheck_layer weights a 1-element top by one fixed random number that happens to be
 * small (about -0.02), so its default tolerance (1e-2 absolute) would hide a wrong loss
 * gradient. Loss layers are therefore checked with a tight tolerance, and again by
 * loss_gradcheck below with a loss weight of 1.7. */
static gradcheck_opts loss_opts(void) {
  gradcheck_opts o = gradcheck_defaults();
  o.threshold = 1e-4f;
  return o;
}

/* ---------------------------------------------------------------- Softmax */

START_TEST(softmax_forward_values) {
  const float x[] = {1, 2, 3, -1, 0, 1000, 1001, 999}; /* (2, 4): 1000-ish logits must not overflow */
  crema_blob *b[] = {blob_vals(2, (int[]){2, 4}, x)};
  run r;
  run_setup(&r, "name: 's' type: 'Softmax'", 1, b, 1);
  run_forward(&r);
  for (int i = 0; i < 2; i++) {
    double m = -INFINITY, sum = 0;
    for (int c = 0; c < 4; c++) m = fmax(m, x[i * 4 + c]);
    for (int c = 0; c < 4; c++) sum += exp(x[i * 4 + c] - m);
    for (int c = 0; c < 4; c++) {
      double want = exp(x[i * 4 + c] - m) / sum;
      ck_assert_msg(isfinite(r.top[0]->data[i * 4 + c]), "softmax overflowed");
      ck_assert_double_eq_tol(r.top[0]->data[i * 4 + c], want, 1e-6);
    }
  }
  run_free(&r);
  free_blobs(1, b);
}
END_TEST

START_TEST(softmax_forward_axis) {
  /* (2, 3, 2) along axis 1: every (n, w) column sums to 1 and matches the reference. */
  crema_blob *b[] = {blob_of(3, (int[]){2, 3, 2})};
  gradcheck_fill_gaussian(b[0], 2.0f, 3);
  run r;
  run_setup(&r, "name: 's' type: 'Softmax' softmax_param { axis: -2 }", 1, b, 1);
  run_forward(&r);
  for (int n = 0; n < 2; n++)
    for (int w = 0; w < 2; w++) {
      double sum = 0, ref = 0;
      for (int c = 0; c < 3; c++) ref += exp(b[0]->data[(n * 3 + c) * 2 + w]);
      for (int c = 0; c < 3; c++) {
        float y = r.top[0]->data[(n * 3 + c) * 2 + w];
        sum += y;
        ck_assert_double_eq_tol(y, exp(b[0]->data[(n * 3 + c) * 2 + w]) / ref, 1e-6);
      }
      ck_assert_double_eq_tol(sum, 1.0, 1e-6);
    }
  run_free(&r);
  free_blobs(1, b);
}
END_TEST

START_TEST(softmax_gradient_axes) {
  const char *params[] = {
      "name: 's' type: 'Softmax'",
      "name: 's' type: 'Softmax' softmax_param { axis: 0 }",
      "name: 's' type: 'Softmax' softmax_param { axis: 2 }",
      "name: 's' type: 'Softmax' softmax_param { axis: -1 }",
  };
  for (size_t k = 0; k < CREMA_ARRAY_LEN(params); k++) {
    crema_blob *b[] = {blob_of(4, (int[]){2, 3, 2, 3})};
    gradcheck_fill_gaussian(b[0], 1.0f, 10 + k);
    Crema__LayerParameter *p = test_layer_param(params[k]);
    gradcheck_layer(p, 1, b, 1, NULL, NULL);
    crema_message_free(p);
    free_blobs(1, b);
  }
}
END_TEST

START_TEST(softmax_long_inner_axis) {
  /* inner = 600 > one block of positions: forward against the reference, gradient sampled. */
  crema_blob *b[] = {blob_of(3, (int[]){2, 3, 600})};
  gradcheck_fill_gaussian(b[0], 2.0f, 12);
  run r;
  run_setup(&r, "name: 's' type: 'Softmax'", 1, b, 1);
  run_forward(&r);
  for (int n = 0; n < 2; n++)
    for (int j = 0; j < 600; j++) {
      double ref = 0;
      for (int c = 0; c < 3; c++) ref += exp(b[0]->data[(n * 3 + c) * 600 + j]);
      for (int c = 0; c < 3; c++)
        ck_assert_double_eq_tol(r.top[0]->data[(n * 3 + c) * 600 + j],
                                exp(b[0]->data[(n * 3 + c) * 600 + j]) / ref, 1e-6);
    }
  run_free(&r);
  Crema__LayerParameter *p = test_layer_param("name: 's' type: 'Softmax'");
  gradcheck_opts o = gradcheck_defaults();
  o.max_per_blob = 300;
  gradcheck_layer(p, 1, b, 1, NULL, &o);
  crema_message_free(p);
  free_blobs(1, b);
}
END_TEST

START_TEST(softmax_in_place) {
  crema_blob *b = blob_of(2, (int[]){3, 5});
  gradcheck_fill_gaussian(b, 1.0f, 4);
  crema_blob *ref = blob_of(2, (int[]){3, 5});
  memcpy(ref->data, b->data, b->count * sizeof(float));
  run r1;
  crema_blob *bot[] = {ref};
  run_setup(&r1, "name: 's' type: 'Softmax'", 1, bot, 1);
  run_forward(&r1);
  /* In place: top is the bottom blob. */
  Crema__LayerParameter *p = test_layer_param("name: 's' type: 'Softmax'");
  crema_layer *l;
  crema_error err;
  ck_assert_int_eq(crema_layer_create(p, CREMA__PHASE__TRAIN, 1, &l, &err), 0);
  crema_blob *io[] = {b};
  ck_assert_msg(crema_layer_setup(l, 1, io, 1, io, &err) == 0, "%s", err.msg);
  ck_assert_int_eq(crema_layer_forward(l, io, io, &err), 0);
  for (size_t i = 0; i < b->count; i++) ck_assert_float_eq_tol(b->data[i], r1.top[0]->data[i], 1e-7f);
  /* Backward in place equals backward out of place. */
  for (size_t i = 0; i < b->count; i++) b->diff[i] = r1.top[0]->diff[i] = (float)i * 0.1f - 0.5f;
  bool prop[] = {true};
  crema_layer_backward(l, io, prop, io);
  crema_layer_backward(r1.l, r1.top, prop, bot);
  for (size_t i = 0; i < b->count; i++) ck_assert_float_eq_tol(b->diff[i], ref->diff[i], 1e-6f);
  crema_layer_free(l);
  crema_message_free(p);
  run_free(&r1);
  crema_blob_free(b);
  crema_blob_free(ref);
}
END_TEST

/* ---------------------------------------------------------------- SoftmaxWithLoss */

static const float SCORES[] = {0.5f, -1.0f, 2.0f, 3.0f, 0.0f, 0.25f, -2.0f, 1.5f, 1.0f, 0.1f, 0.2f, 0.3f};
static const float LABELS[] = {2, 0, 1, 2};

/* Forward value for the given text with the 4x3 scores above; returns the loss. */
static float softmax_loss_value(const char *text, const float *labels) {
  crema_blob *b[] = {blob_vals(2, (int[]){4, 3}, SCORES), blob_vals(1, (int[]){4}, labels)};
  run r;
  run_setup(&r, text, 2, b, 1);
  run_forward(&r);
  ck_assert_int_eq(r.top[0]->num_axes, 0);
  ck_assert_uint_eq(r.top[0]->count, 1);
  float loss = r.top[0]->data[0];
  run_free(&r);
  free_blobs(2, b);
  return loss;
}

START_TEST(softmax_loss_forward_modes) {
  int valid;
  const double sum = ref_softmax_loss(SCORES, LABELS, 4, 3, 1, false, 0, 0.0, &valid);
  ck_assert_int_eq(valid, 4);
  /* Default VALID: all 4 labelled. */
  ck_assert_double_eq_tol(softmax_loss_value("name: 'l' type: 'SoftmaxWithLoss'", LABELS), sum / 4, 1e-5);
  ck_assert_double_eq_tol(
      softmax_loss_value("name: 'l' type: 'SoftmaxWithLoss' loss_param { normalization: NONE }", LABELS), sum,
      1e-5);

  /* ignore_label 0: position 1 drops out. */
  int valid_ig;
  const double sum_ig = ref_softmax_loss(SCORES, LABELS, 4, 3, 1, true, 0, 0.0, &valid_ig);
  ck_assert_int_eq(valid_ig, 3);
  ck_assert_double_lt(sum_ig, sum);
  ck_assert_double_eq_tol(
      softmax_loss_value("name: 'l' type: 'SoftmaxWithLoss' loss_param { ignore_label: 0 }", LABELS),
      sum_ig / 3, 1e-5);
  ck_assert_double_eq_tol(softmax_loss_value("name: 'l' type: 'SoftmaxWithLoss' "
                                             "loss_param { ignore_label: 0 normalization: FULL }",
                                             LABELS),
                          sum_ig / 4, 1e-5);
  ck_assert_double_eq_tol(softmax_loss_value("name: 'l' type: 'SoftmaxWithLoss' "
                                             "loss_param { ignore_label: 0 normalization: BATCH_SIZE }",
                                             LABELS),
                          sum_ig / 4, 1e-5);
  ck_assert_double_eq_tol(softmax_loss_value("name: 'l' type: 'SoftmaxWithLoss' "
                                             "loss_param { ignore_label: 0 normalization: NONE }",
                                             LABELS),
                          sum_ig, 1e-5);
  /* Legacy normalize: false = BATCH_SIZE (4), true = VALID (3). */
  ck_assert_double_eq_tol(softmax_loss_value("name: 'l' type: 'SoftmaxWithLoss' "
                                             "loss_param { ignore_label: 0 normalize: false }",
                                             LABELS),
                          sum_ig / 4, 1e-5);
  ck_assert_double_eq_tol(softmax_loss_value("name: 'l' type: 'SoftmaxWithLoss' "
                                             "loss_param { ignore_label: 0 normalize: true }",
                                             LABELS),
                          sum_ig / 3, 1e-5);
  /* An explicit normalization wins over the legacy flag. */
  ck_assert_double_eq_tol(
      softmax_loss_value("name: 'l' type: 'SoftmaxWithLoss' "
                         "loss_param { ignore_label: 0 normalize: false normalization: NONE }",
                         LABELS),
      sum_ig, 1e-5);
  /* Every label ignored: normaliser clamps to 1, loss 0 (no division by zero). */
  const float all_ignored[] = {7, 7, 7, 7};
  ck_assert_float_eq(
      softmax_loss_value("name: 'l' type: 'SoftmaxWithLoss' loss_param { ignore_label: 7 }", all_ignored),
      0.0f);
}
END_TEST

START_TEST(softmax_loss_label_smoothing_value) {
  int valid;
  const double sum = ref_softmax_loss(SCORES, LABELS, 4, 3, 1, false, 0, 0.1, &valid);
  const double plain = ref_softmax_loss(SCORES, LABELS, 4, 3, 1, false, 0, 0.0, &valid);
  ck_assert_double_ne_tol(sum, plain, 1e-3); /* smoothing changes the loss */
  ck_assert_double_eq_tol(
      softmax_loss_value("name: 'l' type: 'SoftmaxWithLoss' loss_param { label_smoothing: 0.1 }", LABELS),
      sum / 4, 1e-5);
}
END_TEST

START_TEST(softmax_loss_hand_computed) {
  /* One sample, scores (0, ln 3): p = (1/4, 3/4); label 1 -> loss = -ln(3/4). */
  const float x[] = {0.0f, (float)log(3.0)}, y[] = {1};
  crema_blob *b[] = {blob_vals(2, (int[]){1, 2}, x), blob_vals(1, (int[]){1}, y)};
  run r;
  run_setup(&r, "name: 'l' type: 'SoftmaxWithLoss'", 2, b, 2);
  run_forward(&r);
  ck_assert_double_eq_tol(r.top[0]->data[0], -log(0.75), 1e-6);
  /* Second top: the probabilities, bottom-shaped. */
  ck_assert_int_eq(r.top[1]->num_axes, 2);
  ck_assert_double_eq_tol(r.top[1]->data[0], 0.25, 1e-6);
  ck_assert_double_eq_tol(r.top[1]->data[1], 0.75, 1e-6);
  /* Backward with loss weight 2: diff = 2 * (p - onehot). */
  r.top[0]->diff[0] = 2.0f;
  bool prop[] = {true, false};
  crema_layer_backward(r.l, r.top, prop, b);
  ck_assert_double_eq_tol(b[0]->diff[0], 2 * 0.25, 1e-6);
  ck_assert_double_eq_tol(b[0]->diff[1], 2 * (0.75 - 1.0), 1e-6);
  run_free(&r);
  free_blobs(2, b);
}
END_TEST

static void check_softmax_loss_gradient(const char *text, int num_axes, const int *shape, int label_axes,
                                        const int *label_shape, int classes, float ignore_share) {
  crema_blob *b[] = {blob_of(num_axes, shape), blob_of(label_axes, label_shape)};
  gradcheck_fill_gaussian(b[0], 2.0f, 21);
  fill_labels(b[1], classes, 22);
  if (ignore_share > 0) /* put the ignore label (classes - 1 here by convention) at some positions */
    for (size_t i = 0; i < b[1]->count; i += 3) b[1]->data[i] = (float)(classes - 1);
  Crema__LayerParameter *p = test_layer_param(text);
  gradcheck_opts o = loss_opts();
  gradcheck_layer(p, 2, b, 1, (bool[]){true, false}, &o);
  gradcheck_loss(p, 2, b, (bool[]){true, false});
  crema_message_free(p);
  free_blobs(2, b);
}

START_TEST(softmax_loss_gradient_modes) {
  const int s[] = {5, 4}, ls[] = {5};
  const char *params[] = {
      "name: 'l' type: 'SoftmaxWithLoss'",
      "name: 'l' type: 'SoftmaxWithLoss' loss_param { normalization: FULL }",
      "name: 'l' type: 'SoftmaxWithLoss' loss_param { normalization: BATCH_SIZE }",
      "name: 'l' type: 'SoftmaxWithLoss' loss_param { normalization: NONE }",
      "name: 'l' type: 'SoftmaxWithLoss' loss_param { normalize: false }",
      "name: 'l' type: 'SoftmaxWithLoss' loss_param { ignore_label: 3 }",
      "name: 'l' type: 'SoftmaxWithLoss' loss_param { ignore_label: 3 normalization: NONE }",
      "name: 'l' type: 'SoftmaxWithLoss' loss_param { label_smoothing: 0.1 }",
      "name: 'l' type: 'SoftmaxWithLoss' loss_param { label_smoothing: 0.2 ignore_label: 3 }",
  };
  for (size_t k = 0; k < CREMA_ARRAY_LEN(params); k++)
    check_softmax_loss_gradient(params[k], 2, s, 1, ls, 4, 1);
}
END_TEST

START_TEST(softmax_loss_spatial) {
  /* Scores (2, 3, 2, 2) with labels (2, 2, 2): a per-pixel classifier. */
  const int s[] = {2, 3, 2, 2}, ls[] = {2, 2, 2}, ls4[] = {2, 1, 2, 2};
  check_softmax_loss_gradient("name: 'l' type: 'SoftmaxWithLoss'", 4, s, 3, ls, 3, 0);
  check_softmax_loss_gradient("name: 'l' type: 'SoftmaxWithLoss' loss_param { ignore_label: 2 }", 4, s, 4,
                              ls4, 3, 1);
  check_softmax_loss_gradient("name: 'l' type: 'SoftmaxWithLoss' loss_param { label_smoothing: 0.1 }", 4, s,
                              3, ls, 3, 0);
  /* Softmax over the last axis: scores (2, 2, 3), labels (2, 2). */
  const int s3[] = {2, 2, 3}, ls2[] = {2, 2};
  check_softmax_loss_gradient("name: 'l' type: 'SoftmaxWithLoss' softmax_param { axis: -1 }", 3, s3, 2, ls2,
                              3, 0);

  /* Value: matches the double-precision reference. */
  crema_blob *b[] = {blob_of(4, s), blob_of(3, ls)};
  gradcheck_fill_gaussian(b[0], 2.0f, 5);
  fill_labels(b[1], 3, 6);
  run r;
  run_setup(&r, "name: 'l' type: 'SoftmaxWithLoss'", 2, b, 1);
  run_forward(&r);
  int valid;
  double sum = ref_softmax_loss(b[0]->data, b[1]->data, 2, 3, 4, false, 0, 0.0, &valid);
  ck_assert_int_eq(valid, 8);
  ck_assert_double_eq_tol(r.top[0]->data[0], sum / 8, 1e-5);
  run_free(&r);
  free_blobs(2, b);
}
END_TEST

START_TEST(softmax_loss_label_out_of_range) {
  const float bad[] = {2, 0, 5, 1};
  crema_blob *b[] = {blob_vals(2, (int[]){4, 3}, SCORES), blob_vals(1, (int[]){4}, bad)};
  run r;
  run_setup(&r, "name: 'loss' type: 'SoftmaxWithLoss'", 2, b, 1);
  crema_error err;
  ck_assert_int_eq(crema_layer_forward(r.l, r.bottom, r.top, &err), -1);
  ck_assert_msg(strstr(err.msg, "loss") && strstr(err.msg, "label 5") && strstr(err.msg, "0..2"),
                "message: %s", err.msg);
  /* Negative labels too, and a NaN label. */
  b[1]->data[2] = -1;
  ck_assert_int_eq(crema_layer_forward(r.l, r.bottom, r.top, &err), -1);
  ck_assert_msg(strstr(err.msg, "label -1"), "message: %s", err.msg);
  b[1]->data[2] = NAN;
  ck_assert_int_eq(crema_layer_forward(r.l, r.bottom, r.top, &err), -1);
  run_free(&r);
  free_blobs(2, b);
}
END_TEST

START_TEST(softmax_loss_shape_errors) {
  crema_blob *b[] = {blob_vals(2, (int[]){4, 3}, SCORES), blob_of(1, (int[]){3})};
  run r;
  crema_error err;
  ck_assert_int_eq(run_try(&r, "name: 'loss' type: 'SoftmaxWithLoss'", 2, b, 1, &err), -1);
  ck_assert_msg(strstr(err.msg, "4 3") && strstr(err.msg, "first dimension"), "message: %s", err.msg);
  run_free(&r);
  crema_blob_free(b[1]);
  b[1] = blob_of(2, (int[]){4, 2});
  ck_assert_int_eq(run_try(&r, "name: 'loss' type: 'SoftmaxWithLoss'", 2, b, 1, &err), -1);
  ck_assert_msg(strstr(err.msg, "number of labels"), "message: %s", err.msg);
  run_free(&r);
  ck_assert_int_eq(
      run_try(&r, "name: 'loss' type: 'SoftmaxWithLoss' loss_param { label_smoothing: 1.5 }", 2, b, 1, &err),
      -1);
  ck_assert_msg(strstr(err.msg, "label_smoothing"), "message: %s", err.msg);
  run_free(&r);
  free_blobs(2, b);
}
END_TEST

/* ---------------------------------------------------------------- EuclideanLoss */

START_TEST(euclidean_loss_value_and_gradient) {
  const float a[] = {1, 2, 3, 4, 5, 6}, bb[] = {1.5f, 2, 1, 4, 0, 6.25f};
  crema_blob *b[] = {blob_vals(2, (int[]){2, 3}, a), blob_vals(4, (int[]){2, 3, 1, 1}, bb)};
  run r;
  run_setup(&r, "name: 'e' type: 'EuclideanLoss'", 2, b, 1);
  run_forward(&r);
  double want = 0;
  for (int i = 0; i < 6; i++) want += (a[i] - bb[i]) * (a[i] - bb[i]);
  ck_assert_double_eq_tol(r.top[0]->data[0], want / 2 / 2, 1e-6);
  run_free(&r);
  Crema__LayerParameter *p = test_layer_param("name: 'e' type: 'EuclideanLoss'");
  gradcheck_opts o = loss_opts();
  gradcheck_layer(p, 2, b, 1, NULL, &o); /* both bottoms, with opposite signs */
  gradcheck_loss(p, 2, b, (bool[]){true, true});
  crema_message_free(p);
  free_blobs(2, b);

  crema_blob *c[] = {blob_of(3, (int[]){3, 2, 2}), blob_of(2, (int[]){3, 4})};
  gradcheck_fill_gaussian(c[0], 1.0f, 1);
  gradcheck_fill_gaussian(c[1], 1.0f, 2);
  p = test_layer_param("name: 'e' type: 'EuclideanLoss'");
  gradcheck_layer(p, 2, c, 1, (bool[]){false, true}, &o);
  gradcheck_loss(p, 2, c, (bool[]){false, true});
  crema_message_free(p);
  free_blobs(2, c);

  crema_blob *d[] = {blob_of(2, (int[]){3, 4}), blob_of(2, (int[]){4, 3})};
  crema_error err;
  ck_assert_int_eq(run_try(&r, "name: 'e' type: 'EuclideanLoss'", 2, d, 1, &err), -1);
  ck_assert_msg(strstr(err.msg, "3 4") && strstr(err.msg, "4 3"), "message: %s", err.msg);
  run_free(&r);
  free_blobs(2, d);
}
END_TEST

/* ---------------------------------------------------------------- SigmoidCrossEntropyLoss */

static double ref_sigmoid_ce(const float *x, const float *t, int n, bool has_ignore, int ignore, int *valid) {
  double loss = 0;
  *valid = 0;
  for (int i = 0; i < n; i++) {
    if (has_ignore && (int)t[i] == ignore) continue;
    double s = 1.0 / (1.0 + exp(-(double)x[i]));
    loss -= t[i] * log(s) + (1 - t[i]) * log(1 - s);
    (*valid)++;
  }
  return loss;
}

START_TEST(sigmoid_ce_values) {
  const float x[] = {0.5f, -1.0f, 2.0f, 3.0f, -0.25f, 0.0f}, t[] = {1, 0, 0.25f, 1, -1, 0};
  int valid;
  const double sum = ref_sigmoid_ce(x, t, 6, false, 0, &valid);
  const char *texts[] = {
      "name: 's' type: 'SigmoidCrossEntropyLoss'",
      "name: 's' type: 'SigmoidCrossEntropyLoss' loss_param { normalization: VALID }",
      "name: 's' type: 'SigmoidCrossEntropyLoss' loss_param { ignore_label: -1 }",
      "name: 's' type: 'SigmoidCrossEntropyLoss' loss_param { ignore_label: -1 normalize: true }"};
  int valid_ig;
  const double sum_ig = ref_sigmoid_ce(x, t, 6, true, -1, &valid_ig);
  ck_assert_int_eq(valid_ig, 5);
  /* Default normalisation is BATCH_SIZE (2), as in BVLC/caffe master. */
  const double want[] = {sum / 2, sum / 6, sum_ig / 2, sum_ig / 5};
  for (size_t k = 0; k < CREMA_ARRAY_LEN(texts); k++) {
    crema_blob *b[] = {blob_vals(2, (int[]){2, 3}, x), blob_vals(2, (int[]){2, 3}, t)};
    run r;
    run_setup(&r, texts[k], 2, b, 1);
    run_forward(&r);
    ck_assert_msg(fabs(r.top[0]->data[0] - want[k]) < 1e-5, "%s: got %g want %g", texts[k], r.top[0]->data[0],
                  want[k]);
    run_free(&r);
    free_blobs(2, b);
  }
  /* Large logits stay finite. */
  const float big[] = {100, -100}, tb[] = {0, 1};
  crema_blob *b[] = {blob_vals(1, (int[]){2}, big), blob_vals(1, (int[]){2}, tb)};
  run r;
  run_setup(&r, "name: 's' type: 'SigmoidCrossEntropyLoss'", 2, b, 1);
  run_forward(&r);
  ck_assert_double_eq_tol(r.top[0]->data[0], 200.0 / 2, 1e-3);
  run_free(&r);
  free_blobs(2, b);
}
END_TEST

START_TEST(sigmoid_ce_gradient) {
  const char *texts[] = {"name: 's' type: 'SigmoidCrossEntropyLoss'",
                         "name: 's' type: 'SigmoidCrossEntropyLoss' loss_param { normalization: FULL }",
                         "name: 's' type: 'SigmoidCrossEntropyLoss' loss_param { normalization: NONE }",
                         "name: 's' type: 'SigmoidCrossEntropyLoss' loss_param { ignore_label: -1 }",
                         "name: 's' type: 'SigmoidCrossEntropyLoss' "
                         "loss_param { ignore_label: -1 normalization: VALID }"};
  for (size_t k = 0; k < CREMA_ARRAY_LEN(texts); k++) {
    crema_blob *b[] = {blob_of(3, (int[]){3, 2, 2}), blob_of(3, (int[]){3, 2, 2})};
    gradcheck_fill_gaussian(b[0], 2.0f, 30 + k);
    gradcheck_fill_uniform(b[1], 0.0f, 1.0f, 40 + k);
    for (size_t i = 0; i < b[1]->count; i += 4) b[1]->data[i] = -1.0f; /* ignored when asked */
    Crema__LayerParameter *p = test_layer_param(texts[k]);
    gradcheck_opts o = loss_opts();
    gradcheck_layer(p, 2, b, 1, (bool[]){true, false}, &o);
    gradcheck_loss(p, 2, b, (bool[]){true, false});
    crema_message_free(p);
    free_blobs(2, b);
  }
}
END_TEST

/* ---------------------------------------------------------------- Accuracy */

static float accuracy_of(const char *text, int num_axes, const int *shape, const float *x, int label_axes,
                         const int *label_shape, const float *labels, float *per_class, int classes) {
  crema_blob *b[] = {blob_vals(num_axes, shape, x), blob_vals(label_axes, label_shape, labels)};
  run r;
  run_setup(&r, text, 2, b, per_class ? 2 : 1);
  run_forward(&r);
  float acc = r.top[0]->data[0];
  if (per_class) {
    ck_assert_int_eq(r.top[1]->num_axes, 1);
    ck_assert_int_eq(r.top[1]->shape[0], classes);
    memcpy(per_class, r.top[1]->data, (size_t)classes * sizeof(float));
  }
  run_free(&r);
  free_blobs(2, b);
  return acc;
}

START_TEST(accuracy_values) {
  /* 5 samples x 4 classes. Ranks of the true class: 1, 2, 3, 1, 4. */
  const float x[] = {
      0.9f, 0.1f, 0.0f, 0.0f, /* label 0: rank 1 */
      0.5f, 0.4f, 0.1f, 0.0f, /* label 1: rank 2 */
      0.1f, 0.2f, 0.3f, 0.4f, /* label 1: rank 3 */
      0.0f, 0.0f, 0.0f, 1.0f, /* label 3: rank 1 */
      0.4f, 0.3f, 0.2f, 0.1f, /* label 3: rank 4 */
  };
  const float y[] = {0, 1, 1, 3, 3};
  const int s[] = {5, 4}, ls[] = {5};
  ck_assert_float_eq_tol(accuracy_of("name: 'a' type: 'Accuracy'", 2, s, x, 1, ls, y, NULL, 0), 2.0f / 5,
                         1e-6f);
  ck_assert_float_eq_tol(
      accuracy_of("name: 'a' type: 'Accuracy' accuracy_param { top_k: 2 }", 2, s, x, 1, ls, y, NULL, 0),
      3.0f / 5, 1e-6f);
  ck_assert_float_eq_tol(
      accuracy_of("name: 'a' type: 'Accuracy' accuracy_param { top_k: 3 }", 2, s, x, 1, ls, y, NULL, 0),
      4.0f / 5, 1e-6f);
  ck_assert_float_eq_tol(
      accuracy_of("name: 'a' type: 'Accuracy' accuracy_param { top_k: 4 }", 2, s, x, 1, ls, y, NULL, 0), 1.0f,
      1e-6f);
  /* ignore_label 3: samples 3 and 4 drop out, 1 of 3 right. */
  ck_assert_float_eq_tol(accuracy_of("name: 'a' type: 'Accuracy' accuracy_param { ignore_label: 3 }", 2, s, x,
                                     1, ls, y, NULL, 0),
                         1.0f / 3, 1e-6f);
  /* Per-class: class 0 1/1, class 1 0/2, class 2 absent -> 0, class 3 1/2. */
  float pc[4];
  ck_assert_float_eq_tol(accuracy_of("name: 'a' type: 'Accuracy'", 2, s, x, 1, ls, y, pc, 4), 2.0f / 5,
                         1e-6f);
  ck_assert_float_eq(pc[0], 1.0f);
  ck_assert_float_eq(pc[1], 0.0f);
  ck_assert_float_eq(pc[2], 0.0f);
  ck_assert_float_eq(pc[3], 0.5f);
  accuracy_of("name: 'a' type: 'Accuracy' accuracy_param { top_k: 2 }", 2, s, x, 1, ls, y, pc, 4);
  ck_assert_float_eq(pc[1], 0.5f);
}
END_TEST

START_TEST(accuracy_ties_and_axis) {
  /* Ties count against the true class, as in Caffe: scores all equal -> top-1 miss, but top-k
   * with k = classes is always a hit. */
  const float x[] = {1, 1, 1, 2, 2, 0};
  const float y[] = {0, 1};
  const int s[] = {2, 3}, ls[] = {2};
  ck_assert_float_eq(accuracy_of("name: 'a' type: 'Accuracy'", 2, s, x, 1, ls, y, NULL, 0), 0.0f);
  ck_assert_float_eq(
      accuracy_of("name: 'a' type: 'Accuracy' accuracy_param { top_k: 2 }", 2, s, x, 1, ls, y, NULL, 0),
      0.5f);
  ck_assert_float_eq(
      accuracy_of("name: 'a' type: 'Accuracy' accuracy_param { top_k: 3 }", 2, s, x, 1, ls, y, NULL, 0),
      1.0f);

  /* Spatial: scores (1, 2, 3) along axis 1 = per-position classes; labels (1, 3). */
  const float xs[] = {0.9f, 0.2f, 0.5f, 0.1f, 0.8f, 0.4f};
  const float ys[] = {0, 1, 1};
  ck_assert_float_eq_tol(
      accuracy_of("name: 'a' type: 'Accuracy'", 3, (int[]){1, 2, 3}, xs, 2, (int[]){1, 3}, ys, NULL, 0),
      2.0f / 3, 1e-6f);
  /* Same data transposed to (1, 3, 2) with axis: -1. */
  const float xt[] = {0.9f, 0.1f, 0.2f, 0.8f, 0.5f, 0.4f};
  ck_assert_float_eq_tol(accuracy_of("name: 'a' type: 'Accuracy' accuracy_param { axis: -1 }", 3,
                                     (int[]){1, 3, 2}, xt, 2, (int[]){1, 3}, ys, NULL, 0),
                         2.0f / 3, 1e-6f);
}
END_TEST

START_TEST(accuracy_errors) {
  const float x[] = {1, 2, 3, 4, 5, 6};
  const float bad[] = {0, 3};
  crema_blob *b[] = {blob_vals(2, (int[]){2, 3}, x), blob_vals(1, (int[]){2}, bad)};
  run r;
  run_setup(&r, "name: 'acc' type: 'Accuracy'", 2, b, 1);
  crema_error err;
  ck_assert_int_eq(crema_layer_forward(r.l, r.bottom, r.top, &err), -1);
  ck_assert_msg(strstr(err.msg, "acc") && strstr(err.msg, "label 3") && strstr(err.msg, "0..2"),
                "message: %s", err.msg);
  run_free(&r);
  ck_assert_int_eq(run_try(&r, "name: 'acc' type: 'Accuracy' accuracy_param { top_k: 4 }", 2, b, 1, &err),
                   -1);
  ck_assert_msg(strstr(err.msg, "top_k"), "message: %s", err.msg);
  run_free(&r);
  /* A uint32 beyond int's range is reported as given, not wrapped to a negative number. */
  ck_assert_int_eq(
      run_try(&r, "name: 'acc' type: 'Accuracy' accuracy_param { top_k: 4000000000 }", 2, b, 1, &err), -1);
  ck_assert_msg(strstr(err.msg, "top_k 4000000000 is too large"), "message: %s", err.msg);
  run_free(&r);
  free_blobs(2, b);
}
END_TEST

START_TEST(softmax_loss_large_batch) {
  /* Big enough (64 x 600) for the OpenMP paths; forward and backward against references. */
  const int N = 64, C = 600;
  crema_blob *b[] = {blob_of(2, (int[]){N, C}), blob_of(1, (int[]){N})};
  gradcheck_fill_gaussian(b[0], 3.0f, 77);
  fill_labels(b[1], C, 78);
  for (int i = 0; i < N; i += 5) b[1]->data[i] = 0; /* ignored below */
  run r;
  run_setup(&r, "name: 'l' type: 'SoftmaxWithLoss' loss_param { ignore_label: 0 label_smoothing: 0.05 }", 2,
            b, 2);
  run_forward(&r);
  int valid;
  double sum = ref_softmax_loss(b[0]->data, b[1]->data, N, C, 1, true, 0, 0.05, &valid);
  ck_assert_double_eq_tol(r.top[0]->data[0], sum / valid, 1e-4 * fabs(sum / valid));
  r.top[0]->diff[0] = 0.5f;
  crema_layer_backward(r.l, r.top, (bool[]){true, false}, b);
  for (int i = 0; i < N; i++) {
    int y = (int)b[1]->data[i];
    for (int c = 0; c < C; c++) {
      double want = 0.0;
      if (y != 0) want = 0.5 * (r.top[1]->data[i * C + c] - (c == y ? 0.95 : 0.0) - 0.05 / C) / valid;
      ck_assert_double_eq_tol(b[0]->diff[i * C + c], want, 1e-7);
    }
  }
  run_free(&r);
  free_blobs(2, b);
}
END_TEST

START_TEST(registry_knows_loss_types) {
  const char *types[] = {"Softmax", "SoftmaxWithLoss", "EuclideanLoss", "SigmoidCrossEntropyLoss",
                         "Accuracy"};
  for (size_t i = 0; i < CREMA_ARRAY_LEN(types); i++) {
    const crema_layer_ops *ops = crema_layer_lookup(types[i]);
    ck_assert_msg(ops != NULL, "%s not registered", types[i]);
    ck_assert_str_eq(ops->type, types[i]);
  }
  ck_assert(crema_layer_lookup("SoftmaxWithLoss")->is_loss);
  ck_assert(crema_layer_lookup("EuclideanLoss")->is_loss);
  ck_assert(!crema_layer_lookup("Accuracy")->is_loss);
  ck_assert(crema_layer_lookup("Accuracy")->backward == NULL);
}
END_TEST

static Suite *suite(void) {
  Suite *s = suite_create("layers_loss");
  TCase *tc = tcase_create("core");
  tcase_add_test(tc, softmax_forward_values);
  tcase_add_test(tc, softmax_forward_axis);
  tcase_add_test(tc, softmax_gradient_axes);
  tcase_add_test(tc, softmax_long_inner_axis);
  tcase_add_test(tc, softmax_in_place);
  tcase_add_test(tc, softmax_loss_forward_modes);
  tcase_add_test(tc, softmax_loss_label_smoothing_value);
  tcase_add_test(tc, softmax_loss_hand_computed);
  tcase_add_test(tc, softmax_loss_gradient_modes);
  tcase_add_test(tc, softmax_loss_spatial);
  tcase_add_test(tc, softmax_loss_label_out_of_range);
  tcase_add_test(tc, softmax_loss_shape_errors);
  tcase_add_test(tc, euclidean_loss_value_and_gradient);
  tcase_add_test(tc, sigmoid_ce_values);
  tcase_add_test(tc, sigmoid_ce_gradient);
  tcase_add_test(tc, accuracy_values);
  tcase_add_test(tc, accuracy_ties_and_axis);
  tcase_add_test(tc, accuracy_errors);
  tcase_add_test(tc, softmax_loss_large_batch);
  tcase_add_test(tc, registry_knows_loss_types);
  suite_add_tcase(s, tc);
  return s;
}

int main(void) { return test_run_suite(suite()); }
