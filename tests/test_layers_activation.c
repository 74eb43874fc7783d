/* test_layers_activation.c -- ReLU, PReLU, RReLU, ELU, Sigmoid, TanH, AbsVal, Power, Dropout:
 * numerical gradient checks in several configurations, forward values against hand
 * computations, and in-place == out-of-place for forward and backward. */
#include <check.h>
#include <math.h>
#include <omp.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "base/rng16.h"
#include "base/vec_math.h"
#include "support/run.h"
#include "layers/drawing_rows.h"
#include "layers/layer.h"
#include "support/gradcheck.h"
#include "support/textproto.h"

/* ---- helpers */

static crema_blob *blob4(int n, int c, int h, int w) {
  crema_error err;
  crema_blob *b = crema_blob_new();
  ck_assert_ptr_nonnull(b);
  ck_assert_msg(crema_blob_reshape4(b, n, c, h, w, &err) == 0, "%s", err.msg);
  return b;
}

/* Creates and sets up a layer from prototxt text on one bottom and top. The message is
 * returned in *msg (the layer borrows it). */
static crema_layer *make_layer(const char *text, Crema__Phase phase, int n_bottom, crema_blob **bottom,
                               crema_blob **top, Crema__LayerParameter **msg) {
  crema_error err;
  crema_layer *l = NULL;
  *msg = test_layer_param(text);
  ck_assert_msg(crema_layer_create(*msg, phase, 42, &l, &err) == 0, "%s", err.msg);
  ck_assert_msg(crema_layer_setup(l, n_bottom, bottom, 1, top, &err) == 0, "%s", err.msg);
  return l;
}

static void forward_ok(crema_layer *l, crema_blob **bottom, crema_blob **top) {
  crema_error err;
  ck_assert_msg(crema_layer_forward(l, bottom, top, &err) == 0, "%s", err.msg);
}

/* Forward of text on the n values v, as a (1, n) blob, compared with expect to 1e-5 relative. */
static void check_forward(const char *text, Crema__Phase phase, int n, const float *v, const float *expect) {
  crema_blob *b = blob4(1, n, -1, -1), *t = crema_blob_new();
  memcpy(b->data, v, (size_t)n * sizeof(float));
  Crema__LayerParameter *msg;
  crema_layer *l = make_layer(text, phase, 1, &b, &t, &msg);
  forward_ok(l, &b, &t);
  for (int i = 0; i < n; i++)
    ck_assert_msg(fabsf(t->data[i] - expect[i]) <= 1e-5f * fmaxf(1.0f, fabsf(expect[i])),
                  "%s: x = %g gives %.7g, expected %.7g", text, (double)v[i], (double)t->data[i],
                  (double)expect[i]);
  crema_layer_free(l);
  crema_message_free(msg);
  crema_blob_free(b);
  crema_blob_free(t);
}

/* Runs the same layer (same seed) out of place and in place on the same data and top diff,
 * and asserts equal top data, bottom diff and parameter diffs. */
static void check_inplace(const char *text, Crema__Phase phase) {
  crema_error err;
  crema_blob *x1 = blob4(2, 3, 4, 5), *y1 = crema_blob_new(), *x2 = blob4(2, 3, 4, 5),
             *dy = blob4(2, 3, 4, 5);
  gradcheck_fill_gaussian(x1, 1.0f, 5);
  memcpy(x2->data, x1->data, x1->count * sizeof(float));
  Crema__LayerParameter *m1, *m2;
  crema_layer *l1 = make_layer(text, phase, 1, &x1, &y1, &m1);
  crema_layer *l2 = make_layer(text, phase, 1, &x2, &x2, &m2);
  for (int pass = 0; pass < 2; pass++) { /* twice: the second pass reuses every buffer */
    forward_ok(l1, &x1, &y1);
    forward_ok(l2, &x2, &x2);
    for (size_t i = 0; i < y1->count; i++)
      ck_assert_msg(y1->data[i] == x2->data[i], "%s: in-place forward differs at %zu: %g vs %g", text, i,
                    (double)y1->data[i], (double)x2->data[i]);
    gradcheck_fill_gaussian(dy, 1.0f, 77 + (uint64_t)pass);
    memcpy(y1->diff, dy->data, y1->count * sizeof(float));
    memcpy(x2->diff, dy->data, y1->count * sizeof(float));
    for (int i = 0; i < l1->n_blobs; i++) {
      crema_blob_zero_diff(l1->blobs[i]);
      crema_blob_zero_diff(l2->blobs[i]);
    }
    bool prop = true;
    crema_layer_backward(l1, &y1, &prop, &x1);
    crema_layer_backward(l2, &x2, &prop, &x2);
    for (size_t i = 0; i < x1->count; i++)
      ck_assert_msg(fabsf(x1->diff[i] - x2->diff[i]) <= 1e-6f * fmaxf(1.0f, fabsf(x1->diff[i])),
                    "%s: in-place backward differs at %zu: %g vs %g", text, i, (double)x1->diff[i],
                    (double)x2->diff[i]);
    for (int b = 0; b < l1->n_blobs; b++)
      for (size_t i = 0; i < l1->blobs[b]->count; i++)
        ck_assert_msg(fabsf(l1->blobs[b]->diff[i] - l2->blobs[b]->diff[i]) <=
                          1e-5f * fmaxf(1.0f, fabsf(l1->blobs[b]->diff[i])),
                      "%s: in-place parameter %d diff differs at %zu", text, b, i);
    /* Restore the in-place input for the next pass. */
    memcpy(x2->data, x1->data, x1->count * sizeof(float));
    ck_assert_int_eq(crema_layer_reshape(l2, &x2, &x2, &err), 0);
  }
  crema_layer_free(l1);
  crema_layer_free(l2);
  crema_message_free(m1);
  crema_message_free(m2);
  crema_blob_free(x1);
  crema_blob_free(y1);
  crema_blob_free(x2);
  crema_blob_free(dy);
}

/* Gradient check of a one-bottom layer on a Gaussian (2, 3, 4, 5) input. kink_range < 0
 * disables skipping elements near 0. */
static void grad1(const char *text, Crema__Phase phase, float kink_range, float lo, float hi) {
  crema_blob *x = blob4(2, 3, 4, 5);
  if (lo < hi)
    gradcheck_fill_uniform(x, lo, hi, 3);
  else
    gradcheck_fill_gaussian(x, 1.0f, 3);
  Crema__LayerParameter *p = test_layer_param(text);
  gradcheck_opts o = gradcheck_defaults();
  o.phase = phase;
  o.kink = 0.0f;
  o.kink_range = kink_range;
  gradcheck_layer(p, 1, &x, 1, NULL, &o);
  crema_message_free(p);
  crema_blob_free(x);
}

#define TRAIN CREMA__PHASE__TRAIN
#define TEST CREMA__PHASE__TEST

/* ---- ReLU */

START_TEST(relu_forward_values) {
  const float x[] = {-2.0f, -0.5f, 0.0f, 1.0f, 3.0f};
  const float relu[] = {0.0f, 0.0f, 0.0f, 1.0f, 3.0f};
  const float leaky[] = {-0.2f, -0.05f, 0.0f, 1.0f, 3.0f};
  check_forward("name: 'r' type: 'ReLU'", TRAIN, 5, x, relu);
  check_forward("name: 'r' type: 'ReLU' relu_param { negative_slope: 0.1 }", TEST, 5, x, leaky);
}
END_TEST

/* The vectorised loops keep the scalar rule bit for bit: y = x > 0 ? x : slope * x, and
 * d x = x > 0 ? d y : slope * d y, on -0, NaN and infinities, over a blob above the OpenMP
 * threshold with a length that leaves a scalar tail. */
START_TEST(relu_special_values_bitwise) {
  const float specials[] = {-0.0f, 0.0f, NAN, INFINITY, -INFINITY, -1e-40f, 1e-40f, -3.0f, 2.5f};
  const float slopes[] = {0.0f, 0.1f, -0.5f};
  const int n = 40003;
  for (size_t k = 0; k < sizeof slopes / sizeof slopes[0]; k++) {
    char text[128];
    snprintf(text, sizeof text, "name: 'r' type: 'ReLU' relu_param { negative_slope: %g }",
             (double)slopes[k]);
    crema_blob *x = crema_blob_new(), *y = crema_blob_new();
    crema_error err;
    ck_assert_int_eq(crema_blob_reshape(x, 1, &n, &err), 0);
    for (int i = 0; i < n; i++) {
      x->data[i] = specials[i % 9];
      x->diff[i] = 0.0f;
    }
    Crema__LayerParameter *m;
    crema_layer *l = make_layer(text, TRAIN, 1, &x, &y, &m);
    forward_ok(l, &x, &y);
    for (int i = 0; i < n; i++) y->diff[i] = specials[(i + 4) % 9];
    bool prop = true;
    crema_layer_backward(l, &y, &prop, &x);
    for (int i = 0; i < n; i++) {
      const float v = x->data[i], g = y->diff[i], s = slopes[k];
      const float want = v > 0.0f ? v : s * v, dwant = v > 0.0f ? g : s * g;
      ck_assert_msg(!memcmp(&want, &y->data[i], sizeof want), "%s: y[%d] = %g for x = %g", text, i,
                    (double)y->data[i], (double)v);
      ck_assert_msg(!memcmp(&dwant, &x->diff[i], sizeof dwant), "%s: dx[%d] = %g", text, i,
                    (double)x->diff[i]);
    }
    crema_layer_free(l);
    crema_message_free(m);
    crema_blob_free(x);
    crema_blob_free(y);
  }
}
END_TEST

START_TEST(relu_gradient) {
  grad1("name: 'r' type: 'ReLU'", TRAIN, 0.02f, 0, 0);
  grad1("name: 'r' type: 'ReLU' relu_param { negative_slope: 0.01 }", TRAIN, 0.02f, 0, 0);
  grad1("name: 'r' type: 'ReLU' relu_param { negative_slope: -0.7 }", TEST, 0.02f, 0, 0);
}
END_TEST

START_TEST(relu_inplace) {
  check_inplace("name: 'r' type: 'ReLU'", TRAIN);
  check_inplace("name: 'r' type: 'ReLU' relu_param { negative_slope: 0.2 }", TRAIN);
  check_inplace("name: 'r' type: 'ReLU' relu_param { negative_slope: -0.5 }", TRAIN);
}
END_TEST

/* ---- PReLU */

START_TEST(prelu_forward_values) {
  /* Default filler: every slope 0.25. (1, 5) input: 5 channels of one element. */
  const float x[] = {-2.0f, -0.5f, 0.0f, 1.0f, 3.0f};
  const float y[] = {-0.5f, -0.125f, 0.0f, 1.0f, 3.0f};
  check_forward("name: 'p' type: 'PReLU'", TRAIN, 5, x, y);
  check_forward("name: 'p' type: 'PReLU' prelu_param { channel_shared: true }", TRAIN, 5, x, y);
}
END_TEST

START_TEST(prelu_per_channel_slopes) {
  crema_blob *x = blob4(2, 3, 1, 2), *y = crema_blob_new();
  for (size_t i = 0; i < x->count; i++) x->data[i] = -1.0f - (float)i;
  Crema__LayerParameter *m;
  crema_layer *l = make_layer("name: 'p' type: 'PReLU'", TRAIN, 1, &x, &y, &m);
  ck_assert_int_eq(l->n_blobs, 1);
  ck_assert_int_eq(l->blobs[0]->num_axes, 1);
  ck_assert_int_eq(l->blobs[0]->shape[0], 3);
  for (int c = 0; c < 3; c++) l->blobs[0]->data[c] = 0.1f * (float)(c + 1);
  forward_ok(l, &x, &y);
  for (int n = 0; n < 2; n++)
    for (int c = 0; c < 3; c++)
      for (int k = 0; k < 2; k++) {
        size_t i = (size_t)((n * 3 + c) * 2 + k);
        ck_assert_float_eq_tol(y->data[i], 0.1f * (float)(c + 1) * x->data[i], 1e-6f);
      }
  /* Slope gradient of channel c: sum of dy * x over its (negative) elements. */
  for (size_t i = 0; i < y->count; i++) y->diff[i] = 1.0f;
  crema_blob_zero_diff(l->blobs[0]);
  bool prop = true;
  crema_layer_backward(l, &y, &prop, &x);
  for (int c = 0; c < 3; c++) {
    float expect = 0;
    for (int n = 0; n < 2; n++)
      for (int k = 0; k < 2; k++) expect += x->data[(n * 3 + c) * 2 + k];
    ck_assert_float_eq_tol(l->blobs[0]->diff[c], expect, 1e-5f);
  }
  crema_layer_free(l);
  crema_message_free(m);
  crema_blob_free(x);
  crema_blob_free(y);
}
END_TEST

/* 16+ channels take the one-pass backward (slope sums and dx per row together): dx exact,
 * the slopes' sums to float rounding, in place (the saved input) and out of place, with rows
 * of 21 (two vectors of eight and a tail); then a numerical gradient check on that shape. */
START_TEST(prelu_many_channels) {
  for (int inplace = 0; inplace < 2; inplace++) {
    crema_blob *x = blob4(2, 20, 3, 7), *y = inplace ? x : crema_blob_new();
    gradcheck_fill_gaussian(x, 1.0f, 11);
    x->data[5] = x->data[77] = x->data[20] = NAN; /* not > 0: dx = a * dy; not <= 0: no slope share */
    float *x0 = malloc(x->count * sizeof(float)), *dy = malloc(x->count * sizeof(float));
    memcpy(x0, x->data, x->count * sizeof(float));
    Crema__LayerParameter *m;
    crema_layer *l = make_layer("name: 'p' type: 'PReLU' prelu_param { filler { type: 'gaussian' std: 1 } }",
                                TRAIN, 1, &x, &y, &m);
    forward_ok(l, &x, &y);
    for (size_t i = 0; i < y->count; i++) dy[i] = y->diff[i] = (float)((i * 37) % 23) / 7.0f - 1.5f;
    for (int c = 0; c < 20; c++) l->blobs[0]->diff[c] = 0.5f; /* slope diffs accumulate */
    bool prop = true;
    crema_layer_backward(l, &y, &prop, &x);
    for (int c = 0; c < 20; c++) {
      const float a = l->blobs[0]->data[c];
      double want = 0.5;
      for (int n = 0; n < 2; n++)
        for (int k = 0; k < 21; k++) {
          const size_t i = (size_t)(n * 20 + c) * 21 + (size_t)k;
          const float dx = x0[i] > 0.0f ? dy[i] : a * dy[i];
          ck_assert_msg(!memcmp(&dx, &x->diff[i], sizeof dx), "dx[%zu] (in place %d)", i, inplace);
          if (x0[i] <= 0.0f) want += (double)dy[i] * x0[i];
        }
      ck_assert_double_eq_tol(l->blobs[0]->diff[c], want, 1e-5 * (1.0 + fabs(want)));
    }
    crema_layer_free(l);
    crema_message_free(m);
    free(x0);
    free(dy);
    if (!inplace) crema_blob_free(y);
    crema_blob_free(x);
  }
  crema_blob *x = blob4(2, 20, 3, 7);
  gradcheck_fill_gaussian(x, 1.0f, 5);
  Crema__LayerParameter *p =
      test_layer_param("name: 'p' type: 'PReLU' prelu_param { filler { type: 'gaussian' } }");
  gradcheck_opts o = gradcheck_defaults();
  o.kink = 0.0f;
  o.kink_range = 0.02f;
  gradcheck_layer(p, 1, &x, 1, NULL, &o);
  crema_message_free(p);
  crema_blob_free(x);
}
END_TEST

START_TEST(prelu_gradient) {
  grad1("name: 'p' type: 'PReLU'", TRAIN, 0.02f, 0, 0);
  grad1("name: 'p' type: 'PReLU' prelu_param { channel_shared: true }", TRAIN, 0.02f, 0, 0);
  grad1("name: 'p' type: 'PReLU' prelu_param { filler { type: 'gaussian' std: 1 } }", TRAIN, 0.02f, 0, 0);
  grad1(
      "name: 'p' type: 'PReLU' prelu_param { channel_shared: true filler { type: 'constant' value: -0.3 } }",
      TRAIN, 0.02f, 0, 0);
}
END_TEST

START_TEST(prelu_inplace) {
  check_inplace("name: 'p' type: 'PReLU' prelu_param { filler { type: 'gaussian' std: 1 } }", TRAIN);
  check_inplace("name: 'p' type: 'PReLU' prelu_param { channel_shared: true }", TRAIN);
}
END_TEST

/* Slope gradients on a blob large enough for the threaded loops, against double sums. */
static void prelu_large(const char *text, bool shared) {
  crema_blob *x = blob4(8, 4, 32, 33), *y = crema_blob_new();
  gradcheck_fill_gaussian(x, 1.0f, 31);
  Crema__LayerParameter *m;
  crema_layer *l = make_layer(text, TRAIN, 1, &x, &y, &m);
  forward_ok(l, &x, &y);
  for (size_t i = 0; i < y->count; i++) y->diff[i] = (float)(i % 7) - 3.0f;
  crema_blob_zero_diff(l->blobs[0]);
  bool prop = true;
  crema_layer_backward(l, &y, &prop, &x);
  const size_t s = 32 * 33;
  double sum[4] = {0, 0, 0, 0};
  for (size_t k = 0; k < x->count; k++) {
    if (x->data[k] <= 0.0f) sum[shared ? 0 : (k / s) % 4] += (double)y->diff[k] * x->data[k];
    float a = l->blobs[0]->data[shared ? 0 : (k / s) % 4];
    ck_assert_float_eq(y->data[k], x->data[k] > 0.0f ? x->data[k] : a * x->data[k]);
    ck_assert_float_eq(x->diff[k], x->data[k] > 0.0f ? y->diff[k] : a * y->diff[k]);
  }
  for (int c = 0; c < (shared ? 1 : 4); c++)
    ck_assert_msg(fabs(l->blobs[0]->diff[c] - sum[c]) <= 1e-4 * fmax(1.0, fabs(sum[c])),
                  "slope %d gradient %g, expected %g", c, (double)l->blobs[0]->diff[c], sum[c]);
  crema_layer_free(l);
  crema_message_free(m);
  crema_blob_free(x);
  crema_blob_free(y);
}

START_TEST(prelu_large_blob) {
  prelu_large("name: 'p' type: 'PReLU' prelu_param { filler { type: 'uniform' min: 0 max: 0.5 } }", false);
  prelu_large("name: 'p' type: 'PReLU' prelu_param { channel_shared: true }", true);
}
END_TEST

START_TEST(prelu_needs_two_axes) {
  crema_error err;
  crema_blob *x = blob4(5, -1, -1, -1), *y = crema_blob_new();
  Crema__LayerParameter *m = test_layer_param("name: 'p' type: 'PReLU'");
  crema_layer *l;
  ck_assert_int_eq(crema_layer_create(m, TRAIN, 1, &l, &err), 0);
  ck_assert_int_ne(crema_layer_setup(l, 1, &x, 1, &y, &err), 0);
  ck_assert_msg(strstr(err.msg, "\"p\"") && strstr(err.msg, "2 axes"), "message: %s", err.msg);
  crema_layer_free(l);
  crema_message_free(m);
  crema_blob_free(x);
  crema_blob_free(y);
}
END_TEST

/* ---- RReLU */

START_TEST(rrelu_test_slope_is_mean) {
  const float x[] = {-2.0f, -0.5f, 0.0f, 1.0f, 3.0f};
  const float a = 0.5f * (0.125f + 0.3333333f);
  const float y[] = {-2.0f * a, -0.5f * a, 0.0f, 1.0f, 3.0f};
  check_forward("name: 'r' type: 'RReLU'", TEST, 5, x, y);
  const float y2[] = {-0.5f, -0.125f, 0.0f, 1.0f, 3.0f};
  check_forward("name: 'r' type: 'RReLU' rrelu_param { lower: 0.2 upper: 0.3 }", TEST, 5, x, y2);
}
END_TEST

START_TEST(rrelu_train_slopes_random_in_range) {
  crema_blob *x = blob4(1, 4000, -1, -1), *y = crema_blob_new();
  for (size_t i = 0; i < x->count; i++) x->data[i] = (i % 2) ? 2.0f : -1.0f;
  Crema__LayerParameter *m;
  crema_layer *l =
      make_layer("name: 'r' type: 'RReLU' rrelu_param { lower: 0.1 upper: 0.5 }", TRAIN, 1, &x, &y, &m);
  forward_ok(l, &x, &y);
  double sum = 0, mn = 1, mx = 0;
  for (size_t i = 0; i < x->count; i += 2) {
    double a = -y->data[i];
    ck_assert_msg(a >= 0.1 && a < 0.5, "slope %g outside [0.1, 0.5)", a);
    sum += a;
    mn = fmin(mn, a);
    mx = fmax(mx, a);
    ck_assert_float_eq(y->data[i + 1], 2.0f);
  }
  double mean = sum / 2000.0;
  ck_assert_msg(fabs(mean - 0.3) < 0.01, "mean slope %g, expected about 0.3", mean);
  ck_assert_msg(mn < 0.11 && mx > 0.49, "slopes span [%g, %g], expected most of [0.1, 0.5)", mn, mx);
  /* A second pass draws new slopes; backward uses the ones of the last forward. */
  float first = y->data[0];
  forward_ok(l, &x, &y);
  ck_assert_float_ne(first, y->data[0]);
  for (size_t i = 0; i < y->count; i++) y->diff[i] = 1.0f;
  bool prop = true;
  crema_layer_backward(l, &y, &prop, &x);
  for (size_t i = 0; i < x->count; i += 2) ck_assert_float_eq_tol(x->diff[i], -y->data[i], 1e-6f);
  crema_layer_free(l);
  crema_message_free(m);
  crema_blob_free(x);
  crema_blob_free(y);
}
END_TEST

START_TEST(rrelu_gradient) {
  grad1("name: 'r' type: 'RReLU'", TRAIN, 0.02f, 0, 0);
  grad1("name: 'r' type: 'RReLU' rrelu_param { lower: 0.01 upper: 0.9 }", TRAIN, 0.02f, 0, 0);
  grad1("name: 'r' type: 'RReLU'", TEST, 0.02f, 0, 0);
}
END_TEST

START_TEST(rrelu_inplace) {
  check_inplace("name: 'r' type: 'RReLU'", TRAIN);
  check_inplace("name: 'r' type: 'RReLU'", TEST);
}
END_TEST

START_TEST(rrelu_bad_range) {
  crema_error err;
  crema_blob *x = blob4(2, 3, -1, -1), *y = crema_blob_new();
  Crema__LayerParameter *m =
      test_layer_param("name: 'r' type: 'RReLU' rrelu_param { lower: 0.5 upper: 0.1 }");
  crema_layer *l;
  ck_assert_int_eq(crema_layer_create(m, TRAIN, 1, &l, &err), 0);
  ck_assert_int_ne(crema_layer_setup(l, 1, &x, 1, &y, &err), 0);
  ck_assert_msg(strstr(err.msg, "lower") && strstr(err.msg, "upper"), "message: %s", err.msg);
  crema_layer_free(l);
  crema_message_free(m);
  crema_blob_free(x);
  crema_blob_free(y);
}
END_TEST

/* ---- ELU, Sigmoid, TanH, AbsVal */

START_TEST(smooth_forward_values) {
  const float x[] = {-2.0f, -0.5f, 0.0f, 1.0f, 3.0f};
  float elu[5], elu2[5], sig[5], th[5], ab[5];
  for (int i = 0; i < 5; i++) {
    double v = x[i];
    elu[i] = (float)(v > 0 ? v : exp(v) - 1.0);
    elu2[i] = (float)(v > 0 ? v : 0.5 * (exp(v) - 1.0));
    sig[i] = (float)(1.0 / (1.0 + exp(-v)));
    th[i] = (float)tanh(v);
    ab[i] = (float)fabs(v);
  }
  check_forward("name: 'e' type: 'ELU'", TRAIN, 5, x, elu);
  check_forward("name: 'e' type: 'ELU' elu_param { alpha: 0.5 }", TRAIN, 5, x, elu2);
  check_forward("name: 's' type: 'Sigmoid'", TRAIN, 5, x, sig);
  check_forward("name: 't' type: 'TanH'", TRAIN, 5, x, th);
  check_forward("name: 'a' type: 'AbsVal'", TRAIN, 5, x, ab);
  /* Sigmoid saturates without overflow. */
  const float big[] = {-100.0f, 100.0f};
  const float sat[] = {0.0f, 1.0f};
  check_forward("name: 's' type: 'Sigmoid'", TRAIN, 2, big, sat);
}
END_TEST

/* TanH, Sigmoid, ELU and Exp run eight or sixteen lanes at a time through crema's own exp
 * (base/vec_math.h), not libm: each stays within 3e-7 relative of the exact value (2.5 to 5
 * ulps) over tiny, mid and saturated inputs, denormal results excepted, and NaN stays NaN. */
typedef double (*exact_fn)(double);
static double exact_tanh(double v) { return tanh(v); }
static double exact_sigmoid(double v) { return 1.0 / (1.0 + exp(-v)); }
static double exact_elu(double v) { return v > 0 ? v : 0.75 * expm1(v); }
static double exact_exp(double v) { return exp(-2.0 * v); } /* -2 x is exact in float too */

START_TEST(smooth_accuracy) {
  const struct {
    const char *text;
    exact_fn exact;
    double reach; /* inputs span +-reach */
  } cases[] = {
      {"name: 't' type: 'TanH'", exact_tanh, 20.0},
      {"name: 's' type: 'Sigmoid'", exact_sigmoid, 20.0},
      {"name: 'e' type: 'ELU' elu_param { alpha: 0.75 }", exact_elu, 30.0},
      {"name: 'x' type: 'Exp' exp_param { scale: -2 }", exact_exp, 44.0},
  };
  const int n = 60001;
  for (size_t c = 0; c < sizeof cases / sizeof cases[0]; c++) {
    crema_blob *x = blob4(1, n, -1, -1), *y = crema_blob_new();
    for (int i = 0; i < n - 1; i++) {
      double t = (double)(i - 30000) / 30000.0;         /* [-1, 1) */
      x->data[i] = (float)(t * t * t * cases[c].reach); /* dense near 0 */
    }
    x->data[n - 1] = NAN;
    Crema__LayerParameter *m;
    crema_layer *l = make_layer(cases[c].text, TRAIN, 1, &x, &y, &m);
    forward_ok(l, &x, &y);
    for (int i = 0; i < n - 1; i++) {
      const double v = x->data[i], e = cases[c].exact(v);
      ck_assert_msg(fabs(y->data[i] - e) <= 3e-7 * fabs(e) + 1e-37, "%s: f(%.9g) = %.9g, exact %.9g",
                    cases[c].text, v, (double)y->data[i], e);
    }
    ck_assert_msg(isnan(y->data[n - 1]), "%s: NaN in, %g out", cases[c].text, (double)y->data[n - 1]);
    crema_layer_free(l);
    crema_message_free(m);
    crema_blob_free(x);
    crema_blob_free(y);
  }
}
END_TEST

/* The same input gives the same bits wherever it sits: in a group of eight or in a blob's last,
 * partial group (the same vector code runs on a zero-padded copy), at any offset. The ends of
 * the range: infinities, overflow, underflow, -0. */
START_TEST(smooth_positions_and_limits) {
  const char *texts[] = {"name: 't' type: 'TanH'", "name: 's' type: 'Sigmoid'",
                         "name: 'e' type: 'ELU' elu_param { alpha: 0.5 }", "name: 'x' type: 'Exp'",
                         "name: 'w' type: 'Swish'"};
  const float v[] = {-INFINITY, -200.0f, -104.5f, -88.9f, -87.0f, -9.5f, -1.0f, -0.999f, -1e-30f, -0.0f,
                     0.0f,      1e-30f,  0.5f,    1.0f,   1.001f, 9.5f,  88.5f, 88.8f,   200.0f,  INFINITY};
  const int nv = (int)(sizeof v / sizeof v[0]), n = nv + 11;
  for (size_t c = 0; c < sizeof texts / sizeof texts[0]; c++) {
    float ref[sizeof v / sizeof v[0]];
    for (int shift = 0; shift <= 11; shift++) {
      crema_blob *x = blob4(1, n - 11 + shift, -1, -1), *y = crema_blob_new();
      for (int i = 0; i < shift; i++) x->data[i] = 0.25f * (float)i;
      memcpy(x->data + shift, v, sizeof v);
      Crema__LayerParameter *m;
      crema_layer *l = make_layer(texts[c], TRAIN, 1, &x, &y, &m);
      forward_ok(l, &x, &y);
      if (shift == 0) memcpy(ref, y->data, sizeof ref);
      ck_assert_msg(!memcmp(ref, y->data + shift, sizeof ref), "%s: results move with offset %d", texts[c],
                    shift);
      crema_layer_free(l);
      crema_message_free(m);
      crema_blob_free(x);
      crema_blob_free(y);
    }
    const float first = ref[0], last = ref[nv - 1];
    switch (c) {
    case 0: /* tanh */
      ck_assert(first == -1.0f && last == 1.0f && ref[2] == -1.0f && ref[18] == 1.0f);
      ck_assert(signbit(ref[9]) && ref[9] == 0.0f && !signbit(ref[10]));
      ck_assert(ref[8] == -1e-30f && ref[11] == 1e-30f);
      break;
    case 1: /* sigmoid: exactly 0 once exp(-x) overflows, exactly 1 far right */
      ck_assert(first == 0.0f && ref[1] == 0.0f && ref[2] == 0.0f && ref[3] == 0.0f);
      ck_assert(ref[4] > 0.0f && ref[4] < 2e-38f);
      ck_assert(last == 1.0f && ref[18] == 1.0f && ref[9] == 0.5f && ref[10] == 0.5f);
      break;
    case 2: /* ELU, alpha 0.5: -alpha at the far left, x itself right of 0 */
      ck_assert(first == -0.5f && ref[1] == -0.5f && fabs(ref[5] - 0.5 * expm1(-9.5)) <= 1e-7);
      ck_assert(ref[8] == -0.5e-30f && ref[11] == 1e-30f && last == INFINITY && ref[18] == 200.0f);
      break;
    case 3: /* exp: 0 below the smallest denormal, inf past the largest float */
      ck_assert(first == 0.0f && ref[1] == 0.0f && ref[2] == 0.0f && ref[3] > 0.0f && ref[3] < 1e-38f);
      ck_assert(ref[9] == 1.0f && ref[10] == 1.0f && ref[17] == INFINITY && last == INFINITY);
      ck_assert(ref[16] > 1e38f && ref[16] < INFINITY);
      break;
    default: /* swish: x sigmoid(x) */
      ck_assert(ref[1] == -0.0f && ref[18] == 200.0f && last == INFINITY && ref[10] == 0.0f);
      ck_assert(isnan(first)); /* -inf * 0, as x * sigmoid(x) gives */
      break;
    }
  }
}
END_TEST

/* The layers run sixteen lanes at a time on a CPU with AVX-512 and eight on others
 * (layers/smooth_rows.c, built with fused multiply-adds where the CPU has them): every copy
 * must give the bits of the eight-lane functions of base/vec_math.h evaluated here the same
 * way: built for AVX2 + FMA with multiply-adds fused where the library has such a copy and the
 * CPU runs it, else in this file's own baseline build. Inputs over the whole range, specials
 * included, in a blob whose length leaves a partial last vector. */
#define SMOOTH_EXPECTED(attr, name)                                                                          \
  attr static void name(int c, const float *x, float *y, size_t k) {                                         \
    const v8 v = load8_part(x, k);                                                                           \
    v8 r;                                                                                                    \
    switch (c) {                                                                                             \
    case 0: r = sigmoid_v8(v); break;                                                                        \
    case 1: r = tanh_v8(v); break;                                                                           \
    case 2: {                                                                                                \
      const v8 zero = {0};                                                                                   \
      r = v8_select(v > zero, v, v8_splat(0.5f) * expm1_v8(v));                                              \
      break;                                                                                                 \
    }                                                                                                        \
    case 3: r = v8_splat(1.0f) * exp_v8(v8_splat(-2.0f) * v); break;                                         \
    default: r = v * sigmoid_v8(v8_splat(1.0f) * v); break;                                                  \
    }                                                                                                        \
    store8_part(y, r, k);                                                                                    \
  }
SMOOTH_EXPECTED(, smooth_expected_plain)
#if CREMA_V16
SMOOTH_EXPECTED(__attribute__((target("arch=x86-64-v3"), optimize("fp-contract=fast"))), smooth_expected_fma)
#endif

static void smooth_expected(int c, const float *x, float *y, size_t k) {
#if CREMA_V16
  if (__builtin_cpu_supports("x86-64-v3")) {
    smooth_expected_fma(c, x, y, k);
    return;
  }
#endif
  smooth_expected_plain(c, x, y, k);
}

START_TEST(smooth_same_bits_every_width) {
  const char *texts[] = {"name: 's' type: 'Sigmoid'", "name: 't' type: 'TanH'",
                         "name: 'e' type: 'ELU' elu_param { alpha: 0.5 }",
                         "name: 'x' type: 'Exp' exp_param { scale: -2 }", "name: 'w' type: 'Swish'"};
  const float special[] = {NAN, -INFINITY, INFINITY, -0.0f, 0.0f, 1e-30f, -1e-30f, 88.72f, -88.8f, -104.5f};
  const int n = 40013, ns = (int)(sizeof special / sizeof special[0]);
  for (int c = 0; c < 5; c++) {
    crema_blob *x = blob4(1, n, -1, -1), *y = crema_blob_new();
    uint32_t h = 12345u;
    for (int i = 0; i < n; i++) {
      h = h * 1664525u + 1013904223u;
      x->data[i] = i % 97 < ns ? special[i % 97] : ((float)(h >> 8) / 16777216.0f - 0.5f) * 230.0f;
    }
    for (int i = 0; i < 2000; i++) x->data[i] *= 0.01f; /* near 0 too */
    Crema__LayerParameter *m;
    crema_layer *l = make_layer(texts[c], TRAIN, 1, &x, &y, &m);
    forward_ok(l, &x, &y);
    for (int i = 0; i < n; i += 8) {
      const size_t k = (size_t)(n - i);
      float want[8];
      smooth_expected(c, x->data + i, want, k);
      ck_assert_msg(!memcmp(want, y->data + i, (k < 8 ? k : 8) * sizeof(float)),
                    "%s: elements %d.. differ from the eight-lane functions' bits", texts[c], i);
    }
    crema_layer_free(l);
    crema_message_free(m);
    crema_blob_free(x);
    crema_blob_free(y);
  }
}
END_TEST

START_TEST(smooth_gradient) {
  grad1("name: 'e' type: 'ELU'", TRAIN, 0.02f, 0, 0);
  grad1("name: 'e' type: 'ELU' elu_param { alpha: 0.5 }", TRAIN, 0.02f, 0, 0);
  grad1("name: 's' type: 'Sigmoid'", TRAIN, -1, 0, 0);
  grad1("name: 't' type: 'TanH'", TRAIN, -1, 0, 0);
  grad1("name: 'a' type: 'AbsVal'", TRAIN, 0.02f, 0, 0);
}
END_TEST

START_TEST(smooth_inplace) {
  check_inplace("name: 'e' type: 'ELU'", TRAIN);
  check_inplace("name: 'e' type: 'ELU' elu_param { alpha: -0.5 }", TRAIN);
  check_inplace("name: 's' type: 'Sigmoid'", TRAIN);
  check_inplace("name: 't' type: 'TanH'", TRAIN);
  check_inplace("name: 'a' type: 'AbsVal'", TRAIN);
}
END_TEST

/* ---- Power */

START_TEST(power_forward_values) {
  const float x[] = {0.5f, 1.0f, 2.0f, 3.0f};
  float p2[4], p1[4], pf[4], p0[4], s0[4];
  for (int i = 0; i < 4; i++) {
    double v = x[i];
    p2[i] = (float)((1.0 + 0.5 * v) * (1.0 + 0.5 * v));
    p1[i] = (float)(0.3 + 2.0 * v);
    pf[i] = (float)pow(0.5 + 1.3 * v, 0.37);
    p0[i] = 1.0f;
    s0[i] = (float)pow(2.0, 3.0);
  }
  check_forward("name: 'p' type: 'Power' power_param { power: 2 scale: 0.5 shift: 1 }", TRAIN, 4, x, p2);
  check_forward("name: 'p' type: 'Power' power_param { power: 1 scale: 2 shift: 0.3 }", TRAIN, 4, x, p1);
  check_forward("name: 'p' type: 'Power' power_param { power: 0.37 scale: 1.3 shift: 0.5 }", TRAIN, 4, x, pf);
  check_forward("name: 'p' type: 'Power' power_param { power: 0 scale: 1.3 shift: 0.5 }", TRAIN, 4, x, p0);
  check_forward("name: 'p' type: 'Power' power_param { power: 3 scale: 0 shift: 2 }", TRAIN, 4, x, s0);
  check_forward("name: 'p' type: 'Power'", TRAIN, 4, x, x);
}
END_TEST

START_TEST(power_gradient) {
  grad1("name: 'p' type: 'Power' power_param { power: 2 scale: 0.5 shift: 1 }", TRAIN, -1, 0, 0);
  grad1("name: 'p' type: 'Power' power_param { power: 2 scale: -0.7 shift: 0 }", TRAIN, -1, 0, 0);
  grad1("name: 'p' type: 'Power' power_param { power: 1 scale: 2 shift: 0.3 }", TRAIN, -1, 0, 0);
  grad1("name: 'p' type: 'Power' power_param { power: 0 scale: 1.3 shift: 0.5 }", TRAIN, -1, 0, 0);
  grad1("name: 'p' type: 'Power' power_param { power: 3 scale: 0 shift: 2 }", TRAIN, -1, 0, 0);
  grad1("name: 'p' type: 'Power' power_param { power: 3 scale: 0.6 shift: -0.2 }", TRAIN, -1, 0, 0);
  /* Fractional powers need a positive base; shift 0 takes Caffe's power * y / x path. */
  grad1("name: 'p' type: 'Power' power_param { power: 0.37 scale: 0.83 shift: 0.4 }", TRAIN, -1, 0.5f, 2.0f);
  grad1("name: 'p' type: 'Power' power_param { power: -1.5 scale: 1.2 }", TRAIN, -1, 0.5f, 2.0f);
}
END_TEST

START_TEST(power_inplace) {
  check_inplace("name: 'p' type: 'Power' power_param { power: 2 scale: 0.5 shift: 1 }", TRAIN);
  check_inplace("name: 'p' type: 'Power' power_param { power: 3 scale: 0.6 shift: -0.2 }", TRAIN);
  check_inplace("name: 'p' type: 'Power' power_param { power: 1 scale: 2 shift: 0.3 }", TRAIN);
  check_inplace("name: 'p' type: 'Power' power_param { power: 0 }", TRAIN);
}
END_TEST

/* A constant Power (power 0 or scale 0) on an empty blob: the blob has no buffer, and the
 * constant fill once passed that NULL to memset (undefined behaviour, caught by UBSan). */
START_TEST(power_constant_on_empty_blob) {
  crema_blob *b = blob4(0, 3, 8, 8), *t = crema_blob_new();
  Crema__LayerParameter *msg;
  crema_layer *l =
      make_layer("name: 'p' type: 'Power' power_param { power: 0 scale: 2 }", TRAIN, 1, &b, &t, &msg);
  ck_assert_uint_eq(t->count, 0);
  forward_ok(l, &b, &t);
  const bool down = true;
  crema_layer_backward(l, &t, &down, &b);
  crema_layer_free(l);
  crema_message_free(msg);
  crema_blob_free(b);
  crema_blob_free(t);
}
END_TEST

/* ---- Dropout */

START_TEST(dropout_keep_rate_and_scale) {
  const int n = 200000;
  crema_blob *x = blob4(4, n / 4, -1, -1), *y = crema_blob_new();
  gradcheck_fill_uniform(x, 0.5f, 1.5f, 9);
  Crema__LayerParameter *m;
  crema_layer *l =
      make_layer("name: 'd' type: 'Dropout' dropout_param { dropout_ratio: 0.3 }", TRAIN, 1, &x, &y, &m);
  forward_ok(l, &x, &y);
  size_t kept = 0;
  for (size_t i = 0; i < x->count; i++) {
    if (y->data[i] != 0.0f) {
      kept++;
      ck_assert_float_eq_tol(y->data[i], x->data[i] / 0.7f, 1e-6f);
    }
  }
  double rate = (double)kept / (double)n;
  /* Binomial(200000, 0.7): standard deviation of the rate about 0.001. */
  ck_assert_msg(fabs(rate - 0.7) < 0.006, "keep rate %g, expected 0.7", rate);
  /* Backward applies the same mask and scale. */
  for (size_t i = 0; i < y->count; i++) y->diff[i] = 1.0f;
  bool prop = true;
  crema_layer_backward(l, &y, &prop, &x);
  for (size_t i = 0; i < x->count; i++)
    ck_assert_float_eq(x->diff[i], y->data[i] != 0.0f ? 1.0f / 0.7f : 0.0f);
  /* A second pass draws a different mask. */
  float snapshot[64];
  memcpy(snapshot, y->data, sizeof snapshot);
  forward_ok(l, &x, &y);
  ck_assert_int_ne(memcmp(snapshot, y->data, sizeof snapshot), 0);
  crema_layer_free(l);
  crema_message_free(m);
  crema_blob_free(x);
  crema_blob_free(y);
}
END_TEST

START_TEST(dropout_test_is_identity) {
  const float x[] = {-2.0f, -0.5f, 0.0f, 1.0f, 3.0f};
  check_forward("name: 'd' type: 'Dropout' dropout_param { dropout_ratio: 0.9 }", TEST, 5, x, x);
}
END_TEST

START_TEST(dropout_same_seed_same_mask) {
  crema_blob *x = blob4(1, 1000, -1, -1), *y1 = crema_blob_new(), *y2 = crema_blob_new();
  gradcheck_fill_gaussian(x, 1.0f, 1);
  Crema__LayerParameter *m1, *m2;
  crema_layer *l1 = make_layer("name: 'd' type: 'Dropout'", TRAIN, 1, &x, &y1, &m1);
  crema_layer *l2 = make_layer("name: 'd' type: 'Dropout'", TRAIN, 1, &x, &y2, &m2);
  forward_ok(l1, &x, &y1);
  forward_ok(l2, &x, &y2);
  ck_assert_int_eq(memcmp(y1->data, y2->data, 1000 * sizeof(float)), 0);
  crema_layer_free(l1);
  crema_layer_free(l2);
  crema_message_free(m1);
  crema_message_free(m2);
  crema_blob_free(x);
  crema_blob_free(y1);
  crema_blob_free(y2);
}
END_TEST

/* Same seed, 1 thread or 2: the same random draws (the layers key per-chunk streams from
 * their generator, they do not share one generator between threads). */
static void same_draws_any_thread_count(const char *text) {
  crema_blob *x = blob4(4, 30000, -1, -1), *y1 = crema_blob_new(), *y2 = crema_blob_new();
  gradcheck_fill_gaussian(x, 1.0f, 2);
  Crema__LayerParameter *m1, *m2;
  crema_layer *l1 = make_layer(text, TRAIN, 1, &x, &y1, &m1);
  crema_layer *l2 = make_layer(text, TRAIN, 1, &x, &y2, &m2);
  int saved = omp_get_max_threads();
  omp_set_num_threads(1);
  forward_ok(l1, &x, &y1);
  omp_set_num_threads(2);
  forward_ok(l2, &x, &y2);
  omp_set_num_threads(saved);
  ck_assert_int_eq(memcmp(y1->data, y2->data, x->count * sizeof(float)), 0);
  crema_layer_free(l1);
  crema_layer_free(l2);
  crema_message_free(m1);
  crema_message_free(m2);
  crema_blob_free(x);
  crema_blob_free(y1);
  crema_blob_free(y2);
}

START_TEST(random_draws_independent_of_threads) {
  same_draws_any_thread_count("name: 'd' type: 'Dropout'");
  same_draws_any_thread_count("name: 'r' type: 'RReLU'");
}
END_TEST

/* Element i's draw in a pass keyed `key` (rng16.h): run c = i / 4096, lane j = i % 16 of its
 * sixteen generators, seeded (key, 16 c + j), its draw number (i % 4096) / 16. */
static uint32_t lane_draw(uint64_t key, size_t i) {
  const size_t run = i / CREMA_RNG16_RUN, at = i % CREMA_RNG16_RUN;
  crema_rng r;
  crema_rng_seed(&r, key, 16 * run + at % 16);
  uint32_t u = 0;
  for (size_t t = 0; t <= at / 16; t++) u = crema_rng_u32(&r);
  return u;
}

/* Dropout's mask and RReLU's slopes are the numbers of the layer's lane generators (one
 * 64-bit key per pass, then lane_draw), drawn by hand here: three whole runs and a last one
 * ending in a partial group of four. */
START_TEST(random_layers_draw_the_lane_numbers) {
  const size_t n = 3 * CREMA_RNG16_RUN + 6 * 16 + 4;
  for (int rrelu = 0; rrelu < 2; rrelu++) {
    crema_blob *x = blob4(1, (int)n, -1, -1), *y = crema_blob_new();
    for (size_t i = 0; i < n; i++) x->data[i] = -1.0f - (float)(i % 7) / 8.0f;
    Crema__LayerParameter *m;
    crema_layer *l = make_layer(rrelu ? "name: 'r' type: 'RReLU' rrelu_param { lower: 0.1 upper: 0.4 }"
                                      : "name: 'd' type: 'Dropout' dropout_param { dropout_ratio: 0.25 }",
                                TRAIN, 1, &x, &y, &m);
    crema_rng before = l->rng;
    const uint64_t key = crema_rng_u64(&before);
    forward_ok(l, &x, &y);
    for (size_t i = 0; i < n; i++) {
      const uint32_t u = lane_draw(key, i);
      const float want = rrelu
                             ? (0.1f + (0.4f - 0.1f) * ((float)(u >> 8) * (1.0f / 16777216.0f))) * x->data[i]
                             : x->data[i] * ((float)(u >= 1073741824u) * (1.0f / 0.75f));
      ck_assert_msg(y->data[i] == want, "%s, element %zu: %g, want %g", rrelu ? "RReLU" : "Dropout", i,
                    (double)y->data[i], (double)want);
    }
    crema_layer_free(l);
    crema_message_free(m);
    crema_blob_free(x);
    crema_blob_free(y);
  }
}
END_TEST

/* The eight-lane copies (CPUs without AVX-512) and the sixteen-lane ones give the same bits:
 * masks, slopes and outputs, in place or not, on lengths that end in every kind of tail. */
START_TEST(random_layers_eight_and_sixteen_lanes_agree) {
  const size_t sizes[] = {1, 15, 16, 17, CREMA_RNG16_RUN - 3, CREMA_RNG16_RUN, 2 * CREMA_RNG16_RUN + 37};
  for (size_t c = 0; c < sizeof sizes / sizeof *sizes; c++) {
    const size_t n = sizes[c];
    float *x = malloc(n * sizeof *x), *y[2], *slope[2];
    uint8_t *keep[2];
    ck_assert_ptr_nonnull(x);
    for (size_t i = 0; i < n; i++) x[i] = (float)((int)(i % 13) - 6) / 4.0f;
    for (int w = 0; w < 2; w++) {
      y[w] = malloc(n * sizeof **y);
      slope[w] = malloc(n * sizeof **slope);
      keep[w] = malloc(n);
      ck_assert(y[w] && slope[w] && keep[w]);
      crema_dropout_train_rows(n, x, y[w], keep[w], 0xFEED + c, 0x60000000u, 1.5f, w == 1);
    }
    ck_assert_int_eq(memcmp(keep[0], keep[1], n), 0);
    ck_assert_int_eq(memcmp(y[0], y[1], n * sizeof(float)), 0);
    for (size_t i = 0; i < n; i++) /* and the draws are the lane numbers */
      ck_assert_int_eq(keep[0][i], lane_draw(0xFEED + c, i) >= 0x60000000u);
    for (int w = 0; w < 2; w++) {
      memcpy(y[w], x, n * sizeof(float)); /* in place */
      crema_rrelu_train_rows(n, y[w], y[w], slope[w], 0xBEEF + c, 0.125f, 0.375f, w == 1);
    }
    ck_assert_int_eq(memcmp(slope[0], slope[1], n * sizeof(float)), 0);
    ck_assert_int_eq(memcmp(y[0], y[1], n * sizeof(float)), 0);
    for (int w = 0; w < 2; w++) {
      free(y[w]);
      free(slope[w]);
      free(keep[w]);
    }
    free(x);
  }
}
END_TEST

START_TEST(dropout_gradient) {
  grad1("name: 'd' type: 'Dropout'", TRAIN, -1, 0, 0);
  grad1("name: 'd' type: 'Dropout' dropout_param { dropout_ratio: 0.2 }", TRAIN, -1, 0, 0);
  grad1("name: 'd' type: 'Dropout'", TEST, -1, 0, 0);
}
END_TEST

START_TEST(dropout_inplace) {
  check_inplace("name: 'd' type: 'Dropout'", TRAIN);
  check_inplace("name: 'd' type: 'Dropout'", TEST);
}
END_TEST

START_TEST(dropout_bad_ratio) {
  crema_error err;
  crema_blob *x = blob4(2, 3, -1, -1), *y = crema_blob_new();
  Crema__LayerParameter *m =
      test_layer_param("name: 'drop7' type: 'Dropout' dropout_param { dropout_ratio: 1 }");
  crema_layer *l;
  ck_assert_int_eq(crema_layer_create(m, TRAIN, 1, &l, &err), 0);
  ck_assert_int_ne(crema_layer_setup(l, 1, &x, 1, &y, &err), 0);
  ck_assert_msg(strstr(err.msg, "drop7") && strstr(err.msg, "dropout_ratio"), "message: %s", err.msg);
  crema_layer_free(l);
  crema_message_free(m);
  crema_blob_free(x);
  crema_blob_free(y);
}
END_TEST

START_TEST(registry_knows_types) {
  const char *types[] = {"ReLU", "PReLU", "RReLU", "ELU", "Sigmoid", "TanH", "AbsVal", "Power", "Dropout"};
  for (size_t i = 0; i < sizeof types / sizeof *types; i++)
    ck_assert_msg(crema_layer_lookup(types[i]) != NULL, "type %s not registered", types[i]);
}
END_TEST

int main(void) {
  Suite *s = suite_create("layers_activation");
  TCase *tc = tcase_create("core");
  tcase_add_test(tc, registry_knows_types);
  tcase_add_test(tc, relu_forward_values);
  tcase_add_test(tc, relu_gradient);
  tcase_add_test(tc, relu_special_values_bitwise);
  tcase_add_test(tc, relu_inplace);
  tcase_add_test(tc, prelu_forward_values);
  tcase_add_test(tc, prelu_per_channel_slopes);
  tcase_add_test(tc, prelu_gradient);
  tcase_add_test(tc, prelu_many_channels);
  tcase_add_test(tc, prelu_inplace);
  tcase_add_test(tc, prelu_large_blob);
  tcase_add_test(tc, prelu_needs_two_axes);
  tcase_add_test(tc, rrelu_test_slope_is_mean);
  tcase_add_test(tc, rrelu_train_slopes_random_in_range);
  tcase_add_test(tc, rrelu_gradient);
  tcase_add_test(tc, rrelu_inplace);
  tcase_add_test(tc, rrelu_bad_range);
  tcase_add_test(tc, smooth_forward_values);
  tcase_add_test(tc, smooth_accuracy);
  tcase_add_test(tc, smooth_positions_and_limits);
  tcase_add_test(tc, smooth_same_bits_every_width);
  tcase_add_test(tc, smooth_gradient);
  tcase_add_test(tc, smooth_inplace);
  tcase_add_test(tc, power_forward_values);
  tcase_add_test(tc, power_gradient);
  tcase_add_test(tc, power_inplace);
  tcase_add_test(tc, power_constant_on_empty_blob);
  tcase_add_test(tc, dropout_keep_rate_and_scale);
  tcase_add_test(tc, dropout_test_is_identity);
  tcase_add_test(tc, dropout_same_seed_same_mask);
  tcase_add_test(tc, random_draws_independent_of_threads);
  tcase_add_test(tc, random_layers_draw_the_lane_numbers);
  tcase_add_test(tc, random_layers_eight_and_sixteen_lanes_agree);
  tcase_add_test(tc, dropout_gradient);
  tcase_add_test(tc, dropout_inplace);
  tcase_add_test(tc, dropout_bad_ratio);
  suite_add_tcase(s, tc);
  return test_run_suite(s);
}
