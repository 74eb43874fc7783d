/* test_layers_norm.c -- BatchNorm, Scale and Bias: gradient checks in every configuration
 * (axis, num_axes, learned or second-bottom parameter, bias_term, batch or global statistics),
 * forward values against hand computations, BatchNorm's moving averages after two passes,
 * and in-place == out-of-place. */
#include <check.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "support/run.h"
#include "layers/axis_common.h"
#include "layers/layer.h"
#include "net/net.h"
#include "support/gradcheck.h"
#include "support/textproto.h"

#define TRAIN CREMA__PHASE__TRAIN
#define TEST CREMA__PHASE__TEST

/* ---- helpers */

static crema_blob *blobn(int num_axes, const int *shape) {
  crema_error err;
  crema_blob *b = crema_blob_new();
  ck_assert_ptr_nonnull(b);
  ck_assert_msg(crema_blob_reshape(b, num_axes, shape, &err) == 0, "%s", err.msg);
  return b;
}

static crema_blob *blob4(int n, int c, int h, int w) {
  int s[4] = {n, c, h, w}, k = 0;
  while (k < 4 && s[k] >= 0) k++;
  return blobn(k, s);
}

static crema_layer *make_layer(const char *text, Crema__Phase phase, int n_bottom, crema_blob **bottom,
                               crema_blob **top, Crema__LayerParameter **msg) {
  crema_error err;
  crema_layer *l = NULL;
  *msg = test_layer_param(text);
  ck_assert_msg(crema_layer_create(*msg, phase, 42, &l, &err) == 0, "%s", err.msg);
  ck_assert_msg(crema_layer_setup(l, n_bottom, bottom, 1, top, &err) == 0, "%s: %s", text, err.msg);
  return l;
}

static void forward_ok(crema_layer *l, crema_blob **bottom, crema_blob **top) {
  crema_error err;
  ck_assert_msg(crema_layer_forward(l, bottom, top, &err) == 0, "%s", err.msg);
}

static void free_all(crema_layer *l, Crema__LayerParameter *m) {
  crema_layer_free(l);
  crema_message_free(m);
}

/* Gradient check of `text` with bottom[0] of the given shape and, when n_b1 >= 0, a second
 * bottom of shape b1 (n_b1 axes). */
static void grad(const char *text, Crema__Phase phase, int n0, const int *s0, int n_b1, const int *s1) {
  crema_blob *b[2] = {blobn(n0, s0), n_b1 >= 0 ? blobn(n_b1, s1) : NULL};
  gradcheck_fill_gaussian(b[0], 1.0f, 3);
  if (b[1]) gradcheck_fill_gaussian(b[1], 1.0f, 4);
  Crema__LayerParameter *p = test_layer_param(text);
  gradcheck_opts o = gradcheck_defaults();
  o.phase = phase;
  gradcheck_layer(p, b[1] ? 2 : 1, b, 1, NULL, &o);
  crema_message_free(p);
  crema_blob_free(b[0]);
  crema_blob_free(b[1]);
}

/* Same layer out of place and in place (top = bottom[0]) on the same data and top diff: equal
 * outputs, bottom diffs (both bottoms) and parameter diffs, over two passes. */
static void check_inplace(const char *text, Crema__Phase phase, int n0, const int *s0, int n_b1,
                          const int *s1) {
  crema_blob *x1 = blobn(n0, s0), *x2 = blobn(n0, s0), *y1 = crema_blob_new(), *dy = blobn(n0, s0);
  crema_blob *p1 = n_b1 >= 0 ? blobn(n_b1, s1) : NULL, *p2 = n_b1 >= 0 ? blobn(n_b1, s1) : NULL;
  gradcheck_fill_gaussian(x1, 1.0f, 5);
  if (p1) {
    gradcheck_fill_gaussian(p1, 1.0f, 6);
    memcpy(p2->data, p1->data, p1->count * sizeof(float));
  }
  crema_blob *b1[2] = {x1, p1}, *b2[2] = {x2, p2};
  int nb = p1 ? 2 : 1;
  Crema__LayerParameter *m1, *m2;
  memcpy(x2->data, x1->data, x1->count * sizeof(float));
  crema_layer *l1 = make_layer(text, phase, nb, b1, &y1, &m1);
  crema_layer *l2 = make_layer(text, phase, nb, b2, &x2, &m2);
  for (int pass = 0; pass < 2; pass++) {
    memcpy(x2->data, x1->data, x1->count * sizeof(float));
    forward_ok(l1, b1, &y1);
    forward_ok(l2, b2, &x2);
    for (size_t i = 0; i < y1->count; i++)
      ck_assert_msg(fabsf(y1->data[i] - x2->data[i]) <= 1e-6f * fmaxf(1.0f, fabsf(y1->data[i])),
                    "%s: in-place forward differs at %zu: %g vs %g", text, i, (double)y1->data[i],
                    (double)x2->data[i]);
    gradcheck_fill_gaussian(dy, 1.0f, 70 + (uint64_t)pass);
    memcpy(y1->diff, dy->data, dy->count * sizeof(float));
    memcpy(x2->diff, dy->data, dy->count * sizeof(float));
    for (int i = 0; i < l1->n_blobs; i++) {
      crema_blob_zero_diff(l1->blobs[i]);
      crema_blob_zero_diff(l2->blobs[i]);
    }
    bool prop[2] = {true, true};
    crema_layer_backward(l1, &y1, prop, b1);
    crema_layer_backward(l2, &x2, prop, b2);
    for (size_t i = 0; i < x1->count; i++)
      ck_assert_msg(fabsf(x1->diff[i] - x2->diff[i]) <= 1e-5f * fmaxf(1.0f, fabsf(x1->diff[i])),
                    "%s: in-place bottom diff differs at %zu: %g vs %g", text, i, (double)x1->diff[i],
                    (double)x2->diff[i]);
    if (p1)
      for (size_t i = 0; i < p1->count; i++)
        ck_assert_msg(fabsf(p1->diff[i] - p2->diff[i]) <= 1e-5f * fmaxf(1.0f, fabsf(p1->diff[i])),
                      "%s: in-place bottom[1] diff differs at %zu", text, i);
    for (int b = 0; b < l1->n_blobs; b++)
      for (size_t i = 0; i < l1->blobs[b]->count; i++) {
        float u = l1->blobs[b]->diff[i], v = l2->blobs[b]->diff[i];
        ck_assert_msg(fabsf(u - v) <= 1e-5f * fmaxf(1.0f, fabsf(u)),
                      "%s: in-place param %d diff differs at %zu", text, b, i);
        ck_assert_msg(l1->blobs[b]->data[i] == l2->blobs[b]->data[i], "%s: param %d data differs at %zu",
                      text, b, i);
      }
  }
  free_all(l1, m1);
  free_all(l2, m2);
  crema_blob_free(x1);
  crema_blob_free(x2);
  crema_blob_free(y1);
  crema_blob_free(dy);
  crema_blob_free(p1);
  crema_blob_free(p2);
}

/* Expects setup (or reshape) of text on the given bottoms to fail with all the words given. */
static void expect_setup_error(const char *text, int nb, crema_blob **bottom, const char *w1,
                               const char *w2) {
  crema_error err;
  crema_blob *top = crema_blob_new();
  Crema__LayerParameter *m = test_layer_param(text);
  crema_layer *l;
  ck_assert_int_eq(crema_layer_create(m, TRAIN, 1, &l, &err), 0);
  ck_assert_msg(crema_layer_setup(l, nb, bottom, 1, &top, &err) != 0, "%s: setup should fail", text);
  ck_assert_msg(strstr(err.msg, w1) && strstr(err.msg, w2), "%s: message lacks \"%s\"/\"%s\": %s", text, w1,
                w2, err.msg);
  free_all(l, m);
  crema_blob_free(top);
}

static const int S2345[4] = {2, 3, 4, 5};

/* ---- BatchNorm */

/* Per-channel mean and biased variance of x (N, C, S) in double. */
static void channel_stats(const crema_blob *x, int c, double *mean, double *var) {
  int n = x->shape[0], ch = x->shape[1];
  size_t s = x->count / (size_t)(n * ch);
  double sum = 0, sq = 0;
  for (int k = 0; k < n; k++)
    for (size_t i = 0; i < s; i++) sum += x->data[((size_t)k * ch + c) * s + i];
  *mean = sum / (double)(n * s);
  for (int k = 0; k < n; k++)
    for (size_t i = 0; i < s; i++) {
      double d = x->data[((size_t)k * ch + c) * s + i] - *mean;
      sq += d * d;
    }
  *var = sq / (double)(n * s);
}

START_TEST(batch_norm_forward_and_moving_average) {
  crema_blob *a = blob4(2, 3, 2, 2), *b = blob4(2, 3, 2, 2), *y = crema_blob_new();
  gradcheck_fill_gaussian(a, 2.0f, 1);
  gradcheck_fill_gaussian(b, 0.5f, 2);
  for (size_t i = 0; i < b->count; i++) b->data[i] += 1.0f + (float)(i / 4 % 3); /* channel offsets */
  const char *text =
      "name: 'bn' type: 'BatchNorm' param { lr_mult: 1 } param { lr_mult: 1 } param { lr_mult: 1 } "
      "batch_norm_param { moving_average_fraction: 0.9 eps: 0.001 }";
  Crema__LayerParameter *m;
  crema_layer *l = make_layer(text, TRAIN, 1, &a, &y, &m);
  ck_assert_int_eq(l->n_blobs, 3);
  ck_assert_int_eq(l->blobs[0]->count, 3);
  ck_assert_int_eq(l->blobs[2]->count, 1);
  for (int i = 0; i < 3; i++) {
    ck_assert_float_eq(l->lr_mult[i], 0.0f); /* forced, whatever the prototxt says */
    ck_assert(!l->param_propagate_down[i]);
  }
  forward_ok(l, &a, &y);
  double ma[3], va[3], mb[3], vb[3];
  for (int c = 0; c < 3; c++) {
    channel_stats(a, c, &ma[c], &va[c]);
    channel_stats(b, c, &mb[c], &vb[c]);
    for (int n = 0; n < 2; n++)
      for (int i = 0; i < 4; i++) {
        size_t k = (size_t)((n * 3 + c) * 4 + i);
        double expect = (a->data[k] - ma[c]) / sqrt(va[c] + 0.001);
        ck_assert_msg(fabs(y->data[k] - expect) < 1e-4, "y[%zu] = %g, expected %g", k, (double)y->data[k],
                      expect);
      }
  }
  forward_ok(l, &b, &y);
  /* Caffe's update, twice from zero: s = 0.9 * 1 + 1; mean = 0.9 * ma + mb; var likewise with
   * the unbiased correction m / (m - 1), m = 2 * 2 * 2 = 8. */
  const double corr = 8.0 / 7.0;
  ck_assert_float_eq_tol(l->blobs[2]->data[0], 1.9f, 1e-6f);
  for (int c = 0; c < 3; c++) {
    ck_assert_float_eq_tol(l->blobs[0]->data[c], 0.9 * ma[c] + mb[c], 1e-5);
    ck_assert_float_eq_tol(l->blobs[1]->data[c], 0.9 * corr * va[c] + corr * vb[c], 1e-4);
  }

  /* A TEST-phase layer with those statistics normalises with blobs[0..1] / blobs[2]. */
  crema_blob *y2 = crema_blob_new();
  Crema__LayerParameter *m2;
  crema_layer *t = make_layer(text, TEST, 1, &b, &y2, &m2);
  for (int i = 0; i < 3; i++) {
    crema_error err;
    ck_assert_int_eq(crema_blob_copy_from(t->blobs[i], l->blobs[i], false, &err), 0);
  }
  forward_ok(t, &b, &y2);
  for (int c = 0; c < 3; c++) {
    double mu = l->blobs[0]->data[c] / 1.9, var = l->blobs[1]->data[c] / 1.9;
    for (int n = 0; n < 2; n++)
      for (int i = 0; i < 4; i++) {
        size_t k = (size_t)((n * 3 + c) * 4 + i);
        double expect = (b->data[k] - mu) / sqrt(var + 0.001);
        ck_assert_msg(fabs(y2->data[k] - expect) < 1e-4, "global y[%zu] = %g, expected %g", k,
                      (double)y2->data[k], expect);
      }
  }
  /* ... and leaves the statistics alone. */
  ck_assert_float_eq_tol(t->blobs[2]->data[0], 1.9f, 1e-6f);
  free_all(t, m2);
  free_all(l, m);
  crema_blob_free(a);
  crema_blob_free(b);
  crema_blob_free(y);
  crema_blob_free(y2);
}
END_TEST

START_TEST(batch_norm_zero_scale_factor) {
  /* Fresh statistics (all zero) in TEST: scale factor 0 -> mean 0, variance 0. */
  crema_blob *x = blob4(2, 2, -1, -1), *y = crema_blob_new();
  const float v[] = {1.0f, -2.0f, 3.0f, 0.5f};
  memcpy(x->data, v, sizeof v);
  Crema__LayerParameter *m;
  crema_layer *l =
      make_layer("name: 'bn' type: 'BatchNorm' batch_norm_param { eps: 0.25 }", TEST, 1, &x, &y, &m);
  l->blobs[0]->data[0] = 7.0f; /* ignored while blobs[2] is 0 */
  forward_ok(l, &x, &y);
  for (int i = 0; i < 4; i++) ck_assert_float_eq_tol(y->data[i], v[i] / 0.5f, 1e-6f);
  free_all(l, m);
  crema_blob_free(x);
  crema_blob_free(y);
}
END_TEST

START_TEST(batch_norm_use_global_stats_overrides_phase) {
  crema_blob *x = blob4(4, 3, -1, -1), *y = crema_blob_new();
  gradcheck_fill_gaussian(x, 1.0f, 8);
  Crema__LayerParameter *m;
  /* Frozen in TRAIN (finetuning): statistics untouched, output from the stored ones. */
  crema_layer *l = make_layer("name: 'bn' type: 'BatchNorm' batch_norm_param { use_global_stats: true }",
                              TRAIN, 1, &x, &y, &m);
  l->blobs[0]->data[1] = 2.0f;
  l->blobs[1]->data[1] = 4.0f;
  l->blobs[2]->data[0] = 2.0f;
  forward_ok(l, &x, &y);
  ck_assert_float_eq(l->blobs[2]->data[0], 2.0f);
  ck_assert_float_eq_tol(y->data[1], (x->data[1] - 1.0f) / sqrtf(2.0f + 1e-5f), 1e-5f);
  free_all(l, m);
  /* Batch statistics in TEST when asked: the output has zero mean per channel. */
  l = make_layer("name: 'bn' type: 'BatchNorm' batch_norm_param { use_global_stats: false }", TEST, 1, &x, &y,
                 &m);
  forward_ok(l, &x, &y);
  for (int c = 0; c < 3; c++) {
    double s = 0;
    for (int n = 0; n < 4; n++) s += y->data[n * 3 + c];
    ck_assert_msg(fabs(s) < 1e-5, "channel %d mean %g", c, s / 4);
  }
  free_all(l, m);
  crema_blob_free(x);
  crema_blob_free(y);
}
END_TEST

START_TEST(batch_norm_gradient) {
  const int s2[2] = {5, 3};
  grad("name: 'bn' type: 'BatchNorm'", TRAIN, 4, S2345, -1, NULL);
  grad("name: 'bn' type: 'BatchNorm'", TRAIN, 2, s2, -1, NULL);
  grad("name: 'bn' type: 'BatchNorm'", TEST, 4, S2345, -1, NULL);
  grad("name: 'bn' type: 'BatchNorm' batch_norm_param { use_global_stats: true eps: 0.5 }", TRAIN, 4, S2345,
       -1, NULL);
  grad("name: 'bn' type: 'BatchNorm' batch_norm_param { use_global_stats: false }", TEST, 4, S2345, -1, NULL);
}
END_TEST

START_TEST(batch_norm_inplace) {
  check_inplace("name: 'bn' type: 'BatchNorm'", TRAIN, 4, S2345, -1, NULL);
  check_inplace("name: 'bn' type: 'BatchNorm' batch_norm_param { eps: 0.5 }", TEST, 4, S2345, -1, NULL);
}
END_TEST

START_TEST(batch_norm_channel_change_is_an_error) {
  crema_error err;
  crema_blob *x = blob4(2, 3, 2, 2), *y = crema_blob_new();
  Crema__LayerParameter *m;
  crema_layer *l = make_layer("name: 'bn1' type: 'BatchNorm'", TRAIN, 1, &x, &y, &m);
  ck_assert_int_eq(crema_blob_reshape4(x, 2, 4, 2, 2, &err), 0);
  ck_assert_int_ne(crema_layer_reshape(l, &x, &y, &err), 0);
  ck_assert_msg(strstr(err.msg, "bn1") && strstr(err.msg, "channels"), "message: %s", err.msg);
  free_all(l, m);
  crema_blob_free(x);
  crema_blob_free(y);
}
END_TEST

/* ---- Scale */

START_TEST(scale_forward_values) {
  crema_blob *x = blob4(2, 3, 2, -1), *y = crema_blob_new();
  for (size_t i = 0; i < x->count; i++) x->data[i] = (float)i - 5.0f;
  Crema__LayerParameter *m;
  crema_layer *l =
      make_layer("name: 's' type: 'Scale' scale_param { bias_term: true }", TRAIN, 1, &x, &y, &m);
  ck_assert_int_eq(l->n_blobs, 2);
  ck_assert_int_eq(l->blobs[0]->count, 3);
  ck_assert_float_eq(l->blobs[0]->data[2], 1.0f); /* default filler: 1 */
  ck_assert_float_eq(l->blobs[1]->data[2], 0.0f); /* default bias filler: 0 */
  for (int c = 0; c < 3; c++) {
    l->blobs[0]->data[c] = (float)(c + 2);
    l->blobs[1]->data[c] = 0.5f * (float)c;
  }
  forward_ok(l, &x, &y);
  for (int n = 0; n < 2; n++)
    for (int c = 0; c < 3; c++)
      for (int i = 0; i < 2; i++) {
        size_t k = (size_t)((n * 3 + c) * 2 + i);
        ck_assert_float_eq_tol(y->data[k], x->data[k] * (float)(c + 2) + 0.5f * (float)c, 1e-6f);
      }
  /* Parameter gradients: d scale_c = sum dy * x, d bias_c = sum dy. */
  for (size_t i = 0; i < y->count; i++) y->diff[i] = 1.0f;
  bool prop = true;
  crema_layer_backward(l, &y, &prop, &x);
  for (int c = 0; c < 3; c++) {
    float sx = 0;
    for (int n = 0; n < 2; n++)
      for (int i = 0; i < 2; i++) sx += x->data[(n * 3 + c) * 2 + i];
    ck_assert_float_eq_tol(l->blobs[0]->diff[c], sx, 1e-5f);
    ck_assert_float_eq_tol(l->blobs[1]->diff[c], 4.0f, 1e-6f);
    ck_assert_float_eq_tol(x->diff[c * 2], (float)(c + 2), 1e-6f);
  }
  /* Parameter diffs accumulate over backward calls (the solver zeroes them). */
  crema_layer_backward(l, &y, &prop, &x);
  ck_assert_float_eq_tol(l->blobs[1]->diff[0], 8.0f, 1e-6f);
  free_all(l, m);
  crema_blob_free(x);
  crema_blob_free(y);
}
END_TEST

START_TEST(scale_two_bottoms_values) {
  const int sx[3] = {2, 3, 2}, ss[2] = {2, 3};
  crema_blob *x = blobn(3, sx), *s = blobn(2, ss), *y = crema_blob_new();
  for (size_t i = 0; i < x->count; i++) x->data[i] = (float)i;
  for (size_t i = 0; i < s->count; i++) s->data[i] = (float)i - 2.0f;
  crema_blob *b[2] = {x, s};
  Crema__LayerParameter *m;
  crema_layer *l = make_layer("name: 's' type: 'Scale' scale_param { axis: 0 }", TRAIN, 2, b, &y, &m);
  ck_assert_int_eq(l->n_blobs, 0);
  forward_ok(l, b, &y);
  for (size_t i = 0; i < x->count; i++) ck_assert_float_eq(y->data[i], x->data[i] * s->data[i / 2]);
  for (size_t i = 0; i < y->count; i++) y->diff[i] = 1.0f;
  bool prop[2] = {true, true};
  s->diff[0] = 123.0f; /* a bottom's diff is overwritten, not accumulated */
  crema_layer_backward(l, &y, prop, b);
  for (size_t i = 0; i < s->count; i++) ck_assert_float_eq(s->diff[i], x->data[2 * i] + x->data[2 * i + 1]);
  free_all(l, m);
  crema_blob_free(x);
  crema_blob_free(s);
  crema_blob_free(y);
}
END_TEST

START_TEST(scale_gradient) {
  const char *g = "filler { type: 'gaussian' std: 1 } ";
  char text[512];
  /* Learned scale: axis 0/1/2/-1, num_axes 0/1/2/-1, with and without bias. */
  const char *configs[] = {"axis: 0",
                           "axis: 1",
                           "axis: 2",
                           "axis: -1",
                           "num_axes: 0",
                           "num_axes: 2",
                           "num_axes: -1",
                           "axis: 0 num_axes: 2",
                           "axis: 2 num_axes: -1",
                           "bias_term: true",
                           "axis: 2 bias_term: true bias_filler { type: 'gaussian' std: 1 }",
                           "num_axes: 0 bias_term: true",
                           "num_axes: -1 bias_term: true"};
  for (size_t i = 0; i < sizeof configs / sizeof *configs; i++) {
    snprintf(text, sizeof text, "name: 's' type: 'Scale' scale_param { %s%s }", g, configs[i]);
    grad(text, TRAIN, 4, S2345, -1, NULL);
  }
  /* Scale from a second bottom: per channel, (N, C) at axis 0, (H, W) at axis 2, a scalar. */
  const int c[1] = {3}, nc[2] = {2, 3}, hw[2] = {4, 5};
  grad("name: 's' type: 'Scale'", TRAIN, 4, S2345, 1, c);
  grad("name: 's' type: 'Scale' scale_param { axis: 0 }", TRAIN, 4, S2345, 2, nc);
  grad("name: 's' type: 'Scale' scale_param { axis: 2 }", TRAIN, 4, S2345, 2, hw);
  grad("name: 's' type: 'Scale' scale_param { axis: -2 }", TRAIN, 4, S2345, 2, hw);
  grad("name: 's' type: 'Scale'", TRAIN, 4, S2345, 0, NULL);
  grad("name: 's' type: 'Scale' scale_param { bias_term: true bias_filler { type: 'gaussian' } }", TRAIN, 4,
       S2345, 1, c);
  grad("name: 's' type: 'Scale' scale_param { axis: 0 bias_term: true }", TRAIN, 4, S2345, 2, nc);
}
END_TEST

START_TEST(scale_inplace) {
  const int c[1] = {3}, nc[2] = {2, 3};
  check_inplace("name: 's' type: 'Scale' scale_param { filler { type: 'gaussian' } }", TRAIN, 4, S2345, -1,
                NULL);
  check_inplace("name: 's' type: 'Scale' scale_param { filler { type: 'gaussian' } bias_term: true "
                "bias_filler { type: 'gaussian' } }",
                TRAIN, 4, S2345, -1, NULL);
  check_inplace("name: 's' type: 'Scale' scale_param { num_axes: 0 filler { type: 'gaussian' } }", TRAIN, 4,
                S2345, -1, NULL);
  check_inplace("name: 's' type: 'Scale'", TRAIN, 4, S2345, 1, c);
  check_inplace("name: 's' type: 'Scale' scale_param { axis: 0 bias_term: true }", TRAIN, 4, S2345, 2, nc);
}
END_TEST

START_TEST(scale_shape_errors) {
  crema_blob *x = blob4(2, 3, 4, 5), *s = blob4(4, -1, -1, -1);
  crema_blob *b[2] = {x, s};
  /* A (4) scale does not match axis 1 (3 channels). */
  expect_setup_error("name: 'sc' type: 'Scale'", 2, b, "sc", "does not match");
  expect_setup_error("name: 'sc' type: 'Scale' scale_param { axis: 3 num_axes: 2 }", 1, b, "sc", "axes");
  expect_setup_error("name: 'sc' type: 'Scale' scale_param { axis: 4 }", 1, b, "sc", "axis");
  expect_setup_error("name: 'sc' type: 'Scale' scale_param { num_axes: -2 }", 1, b, "sc", "num_axes");
  /* axis + num_axes once overflowed int (UBSan) before the comparison. */
  expect_setup_error("name: 'sc' type: 'Scale' scale_param { num_axes: 2147483647 }", 1, b, "sc",
                     "num_axes 2147483647 needs a bottom with at least 2147483648 axes");
  crema_blob_free(x);
  crema_blob_free(s);
}
END_TEST

/* ---- Bias */

START_TEST(bias_forward_values) {
  crema_blob *x = blob4(2, 3, 2, -1), *y = crema_blob_new();
  for (size_t i = 0; i < x->count; i++) x->data[i] = (float)i;
  Crema__LayerParameter *m;
  crema_layer *l =
      make_layer("name: 'b' type: 'Bias' bias_param { axis: 0 num_axes: 2 }", TRAIN, 1, &x, &y, &m);
  ck_assert_int_eq(l->n_blobs, 1);
  ck_assert_int_eq(l->blobs[0]->num_axes, 2);
  ck_assert_int_eq(l->blobs[0]->count, 6);
  ck_assert_float_eq(l->blobs[0]->data[3], 0.0f); /* default filler: 0 */
  for (int i = 0; i < 6; i++) l->blobs[0]->data[i] = 10.0f * (float)i;
  forward_ok(l, &x, &y);
  for (size_t i = 0; i < x->count; i++) ck_assert_float_eq(y->data[i], x->data[i] + 10.0f * (float)(i / 2));
  for (size_t i = 0; i < y->count; i++) y->diff[i] = (float)i;
  bool prop = true;
  crema_layer_backward(l, &y, &prop, &x);
  for (int i = 0; i < 6; i++) ck_assert_float_eq(l->blobs[0]->diff[i], (float)(4 * i + 1));
  for (size_t i = 0; i < x->count; i++) ck_assert_float_eq(x->diff[i], (float)i);
  free_all(l, m);
  crema_blob_free(x);
  crema_blob_free(y);
}
END_TEST

START_TEST(bias_gradient) {
  const char *configs[] = {"axis: 0",     "axis: 1",     "axis: 2",      "axis: -1",
                           "num_axes: 0", "num_axes: 2", "num_axes: -1", "axis: 1 num_axes: 3"};
  char text[256];
  for (size_t i = 0; i < sizeof configs / sizeof *configs; i++) {
    snprintf(text, sizeof text, "name: 'b' type: 'Bias' bias_param { filler { type: 'gaussian' } %s }",
             configs[i]);
    grad(text, TRAIN, 4, S2345, -1, NULL);
  }
  const int c[1] = {3}, nc[2] = {2, 3}, w[1] = {5};
  grad("name: 'b' type: 'Bias'", TRAIN, 4, S2345, 1, c);
  grad("name: 'b' type: 'Bias' bias_param { axis: 0 }", TRAIN, 4, S2345, 2, nc);
  grad("name: 'b' type: 'Bias' bias_param { axis: 3 }", TRAIN, 4, S2345, 1, w);
  grad("name: 'b' type: 'Bias'", TRAIN, 4, S2345, 0, NULL);
}
END_TEST

START_TEST(bias_inplace) {
  const int c[1] = {3};
  check_inplace("name: 'b' type: 'Bias' bias_param { filler { type: 'gaussian' } }", TRAIN, 4, S2345, -1,
                NULL);
  check_inplace("name: 'b' type: 'Bias' bias_param { num_axes: 0 filler { type: 'gaussian' } }", TRAIN, 4,
                S2345, -1, NULL);
  check_inplace("name: 'b' type: 'Bias'", TRAIN, 4, S2345, 1, c);
}
END_TEST

START_TEST(bias_shape_errors) {
  crema_blob *x = blob4(2, 3, 4, 5), *s = blob4(2, 4, -1, -1);
  crema_blob *b[2] = {x, s};
  expect_setup_error("name: 'bi' type: 'Bias' bias_param { axis: 0 }", 2, b, "bi", "does not match");
  expect_setup_error("name: 'bi' type: 'Bias' bias_param { axis: 2 num_axes: 3 }", 1, b, "bi", "axes");
  expect_setup_error("name: 'bi' type: 'Bias' bias_param { axis: -1 num_axes: 2147483647 }", 1, b, "bi",
                     "num_axes 2147483647 needs a bottom");
  crema_blob_free(x);
  crema_blob_free(s);
}
END_TEST

/* ---- large blobs: the multi-threaded loops and reductions against plain double references */

/* Learned scale (and bias) gradients of `text` on bottom shape s0 against sums in double. */
static void scale_reduce_reference(const char *text, const int *s0, int axis, int num_axes) {
  crema_blob *x = blobn(4, s0), *y = crema_blob_new();
  gradcheck_fill_gaussian(x, 1.0f, 12);
  Crema__LayerParameter *m;
  crema_layer *l = make_layer(text, TRAIN, 1, &x, &y, &m);
  forward_ok(l, &x, &y);
  gradcheck_fill_gaussian(y, 1.0f, 13); /* used as the top diff below */
  memcpy(y->diff, y->data, y->count * sizeof(float));
  for (int i = 0; i < l->n_blobs; i++) crema_blob_zero_diff(l->blobs[i]);
  bool prop = true;
  crema_layer_backward(l, &y, &prop, &x);
  size_t outer = crema_blob_count_range(x, 0, axis), dim = crema_blob_count_range(x, axis, axis + num_axes);
  size_t inner = crema_blob_count_range(x, axis + num_axes, 4);
  ck_assert_uint_eq(l->blobs[0]->count, dim);
  for (size_t d = 0; d < dim; d++) {
    double sx = 0, sb = 0;
    for (size_t o = 0; o < outer; o++)
      for (size_t i = 0; i < inner; i++) {
        size_t k = (o * dim + d) * inner + i;
        sx += (double)y->diff[k] * x->data[k];
        sb += y->diff[k];
      }
    ck_assert_msg(fabs(l->blobs[0]->diff[d] - sx) <= 1e-4 * fmax(1.0, fabs(sx)),
                  "%s: d scale[%zu] = %g, expected %g", text, d, (double)l->blobs[0]->diff[d], sx);
    if (l->n_blobs > 1)
      ck_assert_msg(fabs(l->blobs[1]->diff[d] - sb) <= 1e-4 * fmax(1.0, fabs(sb)),
                    "%s: d bias[%zu] = %g, expected %g", text, d, (double)l->blobs[1]->diff[d], sb);
  }
  free_all(l, m);
  crema_blob_free(x);
  crema_blob_free(y);
}

START_TEST(large_scale_reductions) {
  const int wide[4] = {8, 4, 32, 33}, tall[4] = {4096, 4, 1, 3};
  /* A scalar (one long sum, split along inner), few channels (split along inner, then outer),
   * many parameters (one sum per thread). */
  scale_reduce_reference("name: 's' type: 'Scale' scale_param { num_axes: 0 bias_term: true }", wide, 0, 0);
  scale_reduce_reference("name: 's' type: 'Scale' scale_param { bias_term: true }", wide, 1, 1);
  scale_reduce_reference("name: 's' type: 'Scale' scale_param { bias_term: true }", tall, 1, 1);
  scale_reduce_reference("name: 's' type: 'Scale' scale_param { axis: 2 num_axes: -1 bias_term: true }", wide,
                         2, 2);
}
END_TEST

/* The one-pass kernels of Scale and Bias (axis_common.c) against the separate passes they
 * replace, bit for bit: a scalar, few channels (the reductions split each sum over threads),
 * many channels (one pass per channel); below and above the OpenMP threshold; in place. */
START_TEST(scale_one_pass_matches_separate_passes) {
  static const size_t dims[][3] = {{1, 1, 40000}, {8, 4, 1089}, {4, 64, 300}, {2, 32, 7}, {3, 1, 5}};
  for (size_t c = 0; c < sizeof dims / sizeof dims[0]; c++) {
    const crema_axis_dims d = {1, dims[c][0], dims[c][1], dims[c][2]};
    const size_t n = d.outer * d.dim * d.inner;
    crema_blob *x = blob4((int)n, -1, -1, -1), *dy = blob4((int)n, -1, -1, -1),
               *p = blob4((int)d.dim, -1, -1, -1);
    crema_blob *y1 = blob4((int)n, -1, -1, -1), *y2 = blob4((int)n, -1, -1, -1),
               *sv = blob4((int)n, -1, -1, -1);
    gradcheck_fill_gaussian(x, 1.0f, 31 + c);
    gradcheck_fill_gaussian(dy, 1.0f, 41 + c);
    gradcheck_fill_gaussian(p, 1.0f, 51 + c); /* data: the scale; diff: the bias */
    memcpy(p->diff, x->data, d.dim * sizeof(float));
    x->data[0] = -0.0f; /* x + 0 would give +0: the kernels must not add a missing bias */
    /* forward: scale and bias; scale only; bias only; in place with a saved copy */
    crema_axis_mul(&d, x->data, p->data, y1->data);
    crema_axis_add(&d, p->diff, y1->data);
    crema_axis_scale_shift(&d, x->data, p->data, p->diff, y2->data, sv->data);
    ck_assert_msg(!memcmp(y1->data, y2->data, n * sizeof(float)), "case %zu: scale + bias", c);
    ck_assert(!memcmp(sv->data, x->data, n * sizeof(float)));
    for (size_t i = 0; i < n; i++) y1->data[i] = x->data[i] * p->data[(i / d.inner) % d.dim];
    crema_axis_scale_shift(&d, x->data, p->data, NULL, y2->data, NULL);
    ck_assert_msg(!memcmp(y1->data, y2->data, n * sizeof(float)), "case %zu: scale", c);
    for (size_t i = 0; i < n; i++) y1->data[i] = x->data[i] + p->diff[(i / d.inner) % d.dim];
    memcpy(y2->data, x->data, n * sizeof(float));
    crema_axis_scale_shift(&d, y2->data, NULL, p->diff, y2->data, NULL);
    ck_assert_msg(!memcmp(y1->data, y2->data, n * sizeof(float)), "case %zu: bias in place", c);
    crema_axis_scale_shift(&d, x->data, NULL, NULL, y2->data, NULL); /* nothing to do: y untouched */
    ck_assert(!memcmp(y1->data, y2->data, n * sizeof(float)));
    /* backward, accumulating and not, out of place and in place (dx = dy) */
    for (int acc = 0; acc < 2; acc++)
      for (int inplace = 0; inplace < 2; inplace++) {
        float ds1[64], db1[64], ds2[64], db2[64];
        for (size_t k = 0; k < d.dim; k++) ds1[k] = ds2[k] = db1[k] = db2[k] = (float)k;
        crema_axis_reduce(&d, dy->data, NULL, db1, true);
        crema_axis_reduce(&d, dy->data, x->data, ds1, acc);
        crema_axis_mul(&d, dy->data, p->data, y1->diff);
        memcpy(y2->diff, dy->data, n * sizeof(float));
        crema_axis_scale_backward(&d, inplace ? y2->diff : dy->data, x->data, p->data, ds2, acc, db2, true,
                                  y2->diff);
        ck_assert_msg(!memcmp(y1->diff, y2->diff, n * sizeof(float)), "case %zu: d x", c);
        ck_assert_msg(!memcmp(ds1, ds2, d.dim * sizeof(float)), "case %zu: d scale", c);
        ck_assert_msg(!memcmp(db1, db2, d.dim * sizeof(float)), "case %zu: d bias", c);
        /* Bias's backward: no scale, dx = dy */
        for (size_t k = 0; k < d.dim; k++) db2[k] = (float)k;
        memcpy(y2->diff, dy->data, n * sizeof(float));
        if (!inplace) memset(y2->diff, 0xff, n * sizeof(float)); /* NaN: must be overwritten */
        crema_axis_scale_backward(&d, inplace ? y2->diff : dy->data, NULL, NULL, NULL, false, db2, true,
                                  y2->diff);
        ck_assert_msg(!memcmp(dy->data, y2->diff, n * sizeof(float)), "case %zu: bias d x", c);
        ck_assert_msg(!memcmp(db1, db2, d.dim * sizeof(float)), "case %zu: bias d bias", c);
      }
    crema_blob *all[] = {x, dy, p, y1, y2, sv};
    for (size_t i = 0; i < sizeof all / sizeof all[0]; i++) crema_blob_free(all[i]);
  }
}
END_TEST

/* A frozen learned scale in place keeps no copy of its input (nobody needs d scale); the
 * bottom and bias gradients are still right. */
START_TEST(scale_frozen_inplace) {
  crema_blob *x = blob4(2, 3, 4, 5), *ref = blob4(2, 3, 4, 5), *yr = crema_blob_new();
  gradcheck_fill_gaussian(x, 1.0f, 90);
  memcpy(ref->data, x->data, x->count * sizeof(float));
  const char *text = "name: 's' type: 'Scale' scale_param { filler { type: 'gaussian' } bias_term: true }";
  Crema__LayerParameter *m1, *m2;
  crema_layer *l = make_layer(text, TRAIN, 1, &x, &x, &m1), *lr = make_layer(text, TRAIN, 1, &ref, &yr, &m2);
  l->param_propagate_down[0] = lr->param_propagate_down[0] = false;
  forward_ok(l, &x, &x);
  forward_ok(lr, &ref, &yr);
  ck_assert(!memcmp(x->data, yr->data, x->count * sizeof(float)));
  gradcheck_fill_gaussian(yr, 1.0f, 91);
  memcpy(yr->diff, yr->data, yr->count * sizeof(float));
  memcpy(x->diff, yr->data, yr->count * sizeof(float));
  crema_blob_zero_diff(l->blobs[1]);
  crema_blob_zero_diff(lr->blobs[1]);
  bool prop = true;
  crema_layer_backward(l, &x, &prop, &x);
  crema_layer_backward(lr, &yr, &prop, &ref);
  ck_assert(!memcmp(x->diff, ref->diff, x->count * sizeof(float)));
  ck_assert(!memcmp(l->blobs[1]->diff, lr->blobs[1]->diff, 3 * sizeof(float)));
  ck_assert(crema_blob_asum_diff(l->blobs[1]) > 0.0);
  free_all(l, m1);
  free_all(lr, m2);
  crema_blob_free(x);
  crema_blob_free(ref);
  crema_blob_free(yr);
}
END_TEST

START_TEST(large_batch_norm) {
  crema_blob *x = blob4(8, 4, 32, 33), *y = crema_blob_new();
  gradcheck_fill_gaussian(x, 3.0f, 21);
  Crema__LayerParameter *m;
  crema_layer *l = make_layer("name: 'bn' type: 'BatchNorm'", TRAIN, 1, &x, &y, &m);
  forward_ok(l, &x, &y);
  for (int c = 0; c < 4; c++) { /* the first running mean is the batch mean: the same sums, same bits */
    double sum = 0.0;
    for (int n = 0; n < 8; n++)
      sum += crema_sum_floats(x->data + ((size_t)n * 4 + (size_t)c) * 32 * 33, 32 * 33);
    const float mu = (float)(sum / (8.0 * 32 * 33));
    ck_assert_msg(!memcmp(&mu, &l->blobs[0]->data[c], sizeof mu), "channel %d mean", c);
  }
  gradcheck_fill_gaussian(y, 1.0f, 22);
  memcpy(y->diff, y->data, y->count * sizeof(float));
  forward_ok(l, &x, &y); /* restores y's data */
  bool prop = true;
  crema_layer_backward(l, &y, &prop, &x);
  const size_t s = 32 * 33, mm = 8 * s;
  for (int c = 0; c < 4; c++) {
    double mean, var, sdy = 0, sdyy = 0;
    channel_stats(x, c, &mean, &var);
    double sd = sqrt(var + 1e-5);
    for (int n = 0; n < 8; n++)
      for (size_t i = 0; i < s; i++) {
        size_t k = ((size_t)n * 4 + c) * s + i;
        double yn = (x->data[k] - mean) / sd;
        ck_assert_msg(fabs(y->data[k] - yn) < 1e-4, "y[%zu] = %g, expected %g", k, (double)y->data[k], yn);
        sdy += y->diff[k];
        sdyy += y->diff[k] * yn;
      }
    for (int n = 0; n < 8; n++)
      for (size_t i = 0; i < s; i += 7) {
        size_t k = ((size_t)n * 4 + c) * s + i;
        double yn = (x->data[k] - mean) / sd;
        double dx = (y->diff[k] - sdy / (double)mm - yn * sdyy / (double)mm) / sd;
        ck_assert_msg(fabs(x->diff[k] - dx) < 1e-4 * fmax(1.0, fabs(dx)), "dx[%zu] = %g, expected %g", k,
                      (double)x->diff[k], dx);
      }
  }
  free_all(l, m);
  crema_blob_free(x);
  crema_blob_free(y);
}
END_TEST

/* ---- a ResNet-style chain in a net: Convolution -> BatchNorm -> Scale -> ReLU -> Dropout,
 * every one in place on the same blob, against the same net with a blob per top. The layers
 * keep what their backward needs (BatchNorm its normalised output, Scale its input), so the
 * loss and every parameter gradient must agree. */

static const char *CHAIN =
    "name: 'chain' "
    "layer { name: 'data' type: 'Input' top: 'data' top: 'target' "
    "  input_param { shape { dim: 4 dim: 3 dim: 6 dim: 6 } shape { dim: 4 dim: 5 } } } "
    "layer { name: 'conv' type: 'Convolution' bottom: 'data' top: 'conv' convolution_param { num_output: 4 "
    "  kernel_size: 3 weight_filler { type: 'gaussian' std: 0.3 } bias_filler { type: 'constant' value: 0.1 "
    "} } } "
    "layer { name: 'bn' type: 'BatchNorm' bottom: 'conv' top: '%s' } "
    "layer { name: 'sc' type: 'Scale' bottom: '%s' top: '%s' scale_param { bias_term: true "
    "  filler { type: 'uniform' min: 0.5 max: 1.5 } bias_filler { type: 'gaussian' std: 0.2 } } } "
    "layer { name: 'relu' type: 'ReLU' bottom: '%s' top: '%s' } "
    "layer { name: 'drop' type: 'Dropout' bottom: '%s' top: '%s' dropout_param { dropout_ratio: 0.25 } } "
    "layer { name: 'ip' type: 'InnerProduct' bottom: '%s' top: 'ip' inner_product_param { num_output: 5 "
    "  weight_filler { type: 'gaussian' std: 0.1 } } } "
    "layer { name: 'loss' type: 'EuclideanLoss' bottom: 'ip' bottom: 'target' top: 'loss' } ";

/* Builds the chain, runs two iterations of forward + backward and returns the last loss and
 * a copy of every parameter gradient (concatenated into grads, which holds cap floats). */
static float run_chain(bool inplace, float *grads, size_t cap, size_t *n_grads) {
  char text[2048];
  if (inplace)
    snprintf(text, sizeof text, CHAIN, "conv", "conv", "conv", "conv", "conv", "conv", "conv", "conv");
  else
    snprintf(text, sizeof text, CHAIN, "bn", "bn", "sc", "sc", "relu", "relu", "drop", "drop");
  Crema__NetParameter *np = test_net_param(text);
  crema_net_options opt = {.phase = TRAIN, .seed = 17};
  crema_net *net = NULL;
  crema_error err;
  ck_assert_msg(crema_net_build(np, &opt, &net, &err) == 0, "%s", err.msg);
  crema_blob *data = crema_net_blob_by_name(net, "data"), *target = crema_net_blob_by_name(net, "target");
  ck_assert_ptr_nonnull(data);
  ck_assert_ptr_nonnull(target);
  float loss = 0;
  for (int it = 0; it < 2; it++) {
    gradcheck_fill_gaussian(data, 1.0f, 100 + (uint64_t)it);
    gradcheck_fill_gaussian(target, 1.0f, 200 + (uint64_t)it);
    for (int i = 0; i < crema_net_num_params(net); i++)
      crema_blob_zero_diff(crema_net_param_at(net, i)->blob);
    ck_assert_msg(crema_net_forward(net, &loss, &err) == 0, "%s", err.msg);
    crema_net_backward(net);
  }
  *n_grads = 0;
  int bn = crema_net_layer_index(net, "bn"), n_bn = 0;
  for (int i = 0; i < crema_net_num_params(net); i++) {
    const crema_net_param *np_i = crema_net_param_at(net, i);
    if (np_i->layer == bn) { /* the solver must never touch BatchNorm's statistics */
      ck_assert_float_eq(np_i->lr_mult, 0.0f);
      ck_assert_float_eq(np_i->decay_mult, 0.0f);
      n_bn++;
    }
    const crema_blob *b = np_i->blob;
    ck_assert_uint_le(*n_grads + b->count, cap);
    memcpy(grads + *n_grads, b->diff, b->count * sizeof(float));
    *n_grads += b->count;
  }
  ck_assert_int_eq(n_bn, 3);
  crema_net_free(net);
  crema_message_free(np);
  return loss;
}

START_TEST(inplace_chain_in_a_net) {
  static float g1[4096], g2[4096];
  size_t n1, n2;
  float l1 = run_chain(false, g1, 4096, &n1), l2 = run_chain(true, g2, 4096, &n2);
  ck_assert_msg(l1 > 0.0f, "loss %g", (double)l1);
  ck_assert_float_eq_tol(l1, l2, 1e-5f * fmaxf(1.0f, l1));
  ck_assert_uint_eq(n1, n2);
  /* conv 4*3*3*3 + 4, BatchNorm's statistics 4 + 4 + 1 (listed, with lr_mult 0), scale 4 + 4,
   * ip 5*64 + 5. */
  ck_assert_uint_eq(n1, 108 + 4 + 9 + 4 + 4 + 320 + 5);
  double norm = 0;
  for (size_t i = 0; i < n1; i++) {
    ck_assert_msg(fabsf(g1[i] - g2[i]) <= 1e-4f * fmaxf(1.0f, fabsf(g1[i])), "gradient %zu: %g vs %g", i,
                  (double)g1[i], (double)g2[i]);
    norm += fabs(g1[i]);
  }
  ck_assert_msg(norm > 1e-3, "gradients are all zero");
}
END_TEST

START_TEST(registry_knows_types) {
  ck_assert_ptr_nonnull(crema_layer_lookup("BatchNorm"));
  ck_assert_ptr_nonnull(crema_layer_lookup("Scale"));
  ck_assert_ptr_nonnull(crema_layer_lookup("Bias"));
}
END_TEST

int main(void) {
  Suite *s = suite_create("layers_norm");
  TCase *tc = tcase_create("core");
  tcase_add_test(tc, registry_knows_types);
  tcase_add_test(tc, batch_norm_forward_and_moving_average);
  tcase_add_test(tc, batch_norm_zero_scale_factor);
  tcase_add_test(tc, batch_norm_use_global_stats_overrides_phase);
  tcase_add_test(tc, batch_norm_gradient);
  tcase_add_test(tc, batch_norm_inplace);
  tcase_add_test(tc, batch_norm_channel_change_is_an_error);
  tcase_add_test(tc, scale_forward_values);
  tcase_add_test(tc, scale_two_bottoms_values);
  tcase_add_test(tc, scale_gradient);
  tcase_add_test(tc, scale_inplace);
  tcase_add_test(tc, scale_shape_errors);
  tcase_add_test(tc, bias_forward_values);
  tcase_add_test(tc, bias_gradient);
  tcase_add_test(tc, bias_inplace);
  tcase_add_test(tc, bias_shape_errors);
  tcase_add_test(tc, large_scale_reductions);
  tcase_add_test(tc, scale_one_pass_matches_separate_passes);
  tcase_add_test(tc, scale_frozen_inplace);
  tcase_add_test(tc, large_batch_norm);
  tcase_add_test(tc, inplace_chain_in_a_net);
  suite_add_tcase(s, tc);
  return test_run_suite(s);
}
