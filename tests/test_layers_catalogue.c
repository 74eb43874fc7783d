/* test_layers_catalogue.c -- the rest of BVLC Caffe's layer catalogue: Exp, Log, BNLL,
 * Threshold, Clip, Swish, Tile, Reduction, Parameter, Filter, BatchReindex, Embed, Crop, MVN,
 * Im2col, SPP. Forward values against naive references written here (in double where it
 * matters), numerical gradient checks in several configurations, and the errors users see. */
#include <check.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "support/run.h"
#include "layers/layer.h"
#include "proto/io.h"
#include "tensor/blob_proto.h"
#include "support/gradcheck.h"
#include "support/layer_run.h"
#include "support/textproto.h"

/* ---------------------------------------------------------------- helpers */

static crema_blob *gauss(int num_axes, const int *shape, uint64_t seed) {
  crema_blob *b = blob_of(num_axes, shape);
  gradcheck_fill_gaussian(b, 1.0f, seed);
  return b;
}

/* Gradient check of text on the given bottoms (check NULL = all), with kink skipping around
 * `kink` when kink_range >= 0. */
static void grad(const char *text, int n_bottom, crema_blob **b, int n_top, const bool *check, float kink,
                 float kink_range) {
  Crema__LayerParameter *p = test_layer_param(text);
  gradcheck_opts o = gradcheck_defaults();
  o.kink = kink;
  o.kink_range = kink_range;
  gradcheck_layer(p, n_bottom, b, n_top, check, &o);
  crema_message_free(p);
}

/* One-bottom element-wise layer: forward against f(x) on a Gaussian (2, 3, 4, 5) input
 * (shifted into [lo, hi) when lo < hi), then a gradient check. */
static void elementwise(const char *text, double (*f)(double, const double *), const double *arg, float lo,
                        float hi, bool check_grad) {
  crema_blob *b[] = {blob_of(4, (int[]){2, 3, 4, 5})};
  if (lo < hi)
    gradcheck_fill_uniform(b[0], lo, hi, 3);
  else
    gradcheck_fill_gaussian(b[0], 1.0f, 3);
  run r;
  run_setup(&r, text, 1, b, 1);
  run_forward(&r);
  ck_assert(crema_blob_same_shape(r.top[0], b[0]));
  for (size_t i = 0; i < b[0]->count; i++) {
    const double want = f(b[0]->data[i], arg);
    ck_assert_msg(fabs(r.top[0]->data[i] - want) <= 1e-5 * fmax(1.0, fabs(want)),
                  "%s: f(%g) = %g, expected %g", text, (double)b[0]->data[i], (double)r.top[0]->data[i],
                  want);
  }
  run_free(&r);
  if (check_grad) grad(text, 1, b, 1, NULL, 0.0f, -1.0f);
  free_blobs(1, b);
}

/* Runs text out of place and in place on the same input and top diff; asserts equal outputs
 * and bottom gradients. */
static void inplace_same(const char *text, float lo, float hi) {
  crema_blob *x1 = blob_of(2, (int[]){4, 7}), *x2 = blob_of(2, (int[]){4, 7});
  gradcheck_fill_uniform(x1, lo, hi, 9);
  memcpy(x2->data, x1->data, x1->count * sizeof(float));
  Crema__LayerParameter *p = test_layer_param(text);
  crema_layer *l1, *l2;
  crema_blob *y1 = crema_blob_new();
  crema_error err;
  ck_assert_int_eq(crema_layer_create(p, CREMA__PHASE__TRAIN, 1, &l1, &err), 0);
  ck_assert_int_eq(crema_layer_create(p, CREMA__PHASE__TRAIN, 1, &l2, &err), 0);
  ck_assert_msg(crema_layer_setup(l1, 1, &x1, 1, &y1, &err) == 0, "%s", err.msg);
  ck_assert_msg(crema_layer_setup(l2, 1, &x2, 1, &x2, &err) == 0, "%s", err.msg);
  ck_assert_int_eq(crema_layer_forward(l1, &x1, &y1, &err), 0);
  ck_assert_int_eq(crema_layer_forward(l2, &x2, &x2, &err), 0);
  for (size_t i = 0; i < x1->count; i++) ck_assert_float_eq(y1->data[i], x2->data[i]);
  crema_blob *dy = blob_of(2, (int[]){4, 7});
  gradcheck_fill_gaussian(dy, 1.0f, 4);
  for (size_t i = 0; i < x1->count; i++) y1->diff[i] = x2->diff[i] = dy->data[i];
  crema_blob_free(dy);
  bool prop = true;
  crema_layer_backward(l1, &y1, &prop, &x1);
  crema_layer_backward(l2, &x2, &prop, &x2);
  for (size_t i = 0; i < x1->count; i++)
    ck_assert_msg(fabsf(x1->diff[i] - x2->diff[i]) <= 1e-6f * fmaxf(1.0f, fabsf(x1->diff[i])),
                  "%s: in-place gradient differs at %zu: %g vs %g", text, i, (double)x1->diff[i],
                  (double)x2->diff[i]);
  crema_layer_free(l1);
  crema_layer_free(l2);
  crema_message_free(p);
  crema_blob_free(x1);
  crema_blob_free(x2);
  crema_blob_free(y1);
}

static void expect_error(const char *text, int n_bottom, crema_blob **b, int n_top, const char *words) {
  run r;
  crema_error err = {{0}};
  ck_assert_int_eq(run_try(&r, text, n_bottom, b, n_top, &err), -1);
  ck_assert_msg(strstr(err.msg, words) != NULL, "expected \"%s\" in: %s", words, err.msg);
  run_free(&r);
}

/* ---------------------------------------------------------------- element-wise */

static double f_exp(double x, const double *a) { return pow(a[0], a[2] + a[1] * x); }
static double f_log(double x, const double *a) { return log(a[2] + a[1] * x) / log(a[0]); }
static double f_bnll(double x, const double *a) {
  (void)a;
  return log1p(exp(x));
}
static double f_threshold(double x, const double *a) { return x > a[0] ? 1.0 : 0.0; }
static double f_clip(double x, const double *a) { return fmin(fmax(x, a[0]), a[1]); }
static double f_swish(double x, const double *a) { return x / (1.0 + exp(-a[0] * x)); }

START_TEST(exp_log_bnll) {
  elementwise("name: 'e' type: 'Exp'", f_exp, (double[]){2.718281828459045, 1, 0}, 0, 0, true);
  elementwise("name: 'e' type: 'Exp' exp_param { base: 2 scale: 0.5 shift: 1 }", f_exp, (double[]){2, 0.5, 1},
              0, 0, true);
  elementwise("name: 'e' type: 'Exp' exp_param { scale: -1.5 shift: 0.25 }", f_exp,
              (double[]){2.718281828459045, -1.5, 0.25}, 0, 0, true);
  elementwise("name: 'l' type: 'Log'", f_log, (double[]){2.718281828459045, 1, 0}, 0.5f, 3.0f, true);
  elementwise("name: 'l' type: 'Log' log_param { base: 10 scale: 2 shift: 0.5 }", f_log,
              (double[]){10, 2, 0.5}, 0.5f, 3.0f, true);
  elementwise("name: 'b' type: 'BNLL'", f_bnll, NULL, 0, 0, true);
  inplace_same("name: 'l' type: 'Log' log_param { base: 2 }", 0.5f, 2.0f);
  inplace_same("name: 'b' type: 'BNLL'", -3.0f, 3.0f);
  inplace_same("name: 'e' type: 'Exp' exp_param { scale: 0.7 }", -3.0f, 3.0f);
  crema_blob *b[] = {blob_of(1, (int[]){3})};
  expect_error("name: 'e' type: 'Exp' exp_param { base: -2 }", 1, b, 1, "base must be -1");
  expect_error("name: 'l' type: 'Log' log_param { base: 1 }", 1, b, 1, "base must be -1");
  free_blobs(1, b);
}
END_TEST

START_TEST(threshold_clip_swish) {
  elementwise("name: 't' type: 'Threshold'", f_threshold, (double[]){0}, 0, 0, false);
  elementwise("name: 't' type: 'Threshold' threshold_param { threshold: 0.4 }", f_threshold, (double[]){0.4},
              0, 0, false);
  ck_assert_ptr_null(crema_layer_lookup("Threshold")->backward); /* a step: no gradient, as in Caffe */
  elementwise("name: 'c' type: 'Clip' clip_param { min: -0.5 max: 0.75 }", f_clip, (double[]){-0.5, 0.75}, 0,
              0, false);
  elementwise("name: 's' type: 'Swish'", f_swish, (double[]){1}, 0, 0, true);
  elementwise("name: 's' type: 'Swish' swish_param { beta: 0.5 }", f_swish, (double[]){0.5}, 0, 0, true);
  inplace_same("name: 's' type: 'Swish' swish_param { beta: 1.5 }", -3.0f, 3.0f);
  inplace_same("name: 'c' type: 'Clip' clip_param { min: -1 max: 1 }", -3.0f, 3.0f);
  /* Clip's gradient: inputs kept away from the two bounds (finite differences across a kink
   * are meaningless). */
  crema_blob *b[] = {gauss(4, (int[]){2, 3, 4, 5}, 8)};
  for (size_t i = 0; i < b[0]->count; i++)
    if (fabsf(fabsf(b[0]->data[i]) - 0.5f) < 0.03f) b[0]->data[i] += 0.07f;
  grad("name: 'c' type: 'Clip' clip_param { min: -0.5 max: 0.5 }", 1, b, 1, NULL, 0.0f, -1.0f);
  /* Caffe passes the gradient at the bounds themselves. */
  run r;
  const float v[] = {-0.5f, 0.5f, 0.6f, -0.6f};
  crema_blob *c[] = {blob_vals(1, (int[]){4}, v)};
  run_setup(&r, "name: 'c' type: 'Clip' clip_param { min: -0.5 max: 0.5 }", 1, c, 1);
  run_forward(&r);
  for (int i = 0; i < 4; i++) r.top[0]->diff[i] = 2.0f;
  bool prop = true;
  crema_layer_backward(r.l, r.top, &prop, c);
  ck_assert_float_eq(c[0]->diff[0], 2.0f);
  ck_assert_float_eq(c[0]->diff[1], 2.0f);
  ck_assert_float_eq(c[0]->diff[2], 0.0f);
  ck_assert_float_eq(c[0]->diff[3], 0.0f);
  run_free(&r);
  expect_error("name: 'c' type: 'Clip' clip_param { min: 0 }", 1, c, 1, "both min and max");
  expect_error("name: 'c' type: 'Clip' clip_param { min: 2 max: 1 }", 1, c, 1, "larger than max");
  free_blobs(1, b);
  free_blobs(1, c);
}
END_TEST

/* ---------------------------------------------------------------- Tile, Reduction */

START_TEST(tile_values_and_gradient) {
  crema_blob *b[] = {gauss(3, (int[]){2, 3, 4}, 1)};
  run r;
  run_setup(&r, "name: 't' type: 'Tile' tile_param { axis: 1 tiles: 3 }", 1, b, 1);
  run_forward(&r);
  ck_assert_int_eq(r.top[0]->shape[1], 9);
  for (int n = 0; n < 2; n++)
    for (int t = 0; t < 3; t++)
      for (int i = 0; i < 12; i++)
        ck_assert_float_eq(r.top[0]->data[(n * 3 + t) * 12 + i], b[0]->data[n * 12 + i]);
  run_free(&r);
  grad("name: 't' type: 'Tile' tile_param { axis: 1 tiles: 3 }", 1, b, 1, NULL, 0, -1);
  grad("name: 't' type: 'Tile' tile_param { axis: -1 tiles: 2 }", 1, b, 1, NULL, 0, -1);
  grad("name: 't' type: 'Tile' tile_param { axis: 0 tiles: 2 }", 1, b, 1, NULL, 0, -1);
  expect_error("name: 't' type: 'Tile'", 1, b, 1, "tiles");
  expect_error("name: 't' type: 'Tile' tile_param { axis: 3 tiles: 2 }", 1, b, 1, "out of range");
  free_blobs(1, b);
}
END_TEST

START_TEST(reduction_values_and_gradient) {
  const char *ops[] = {"SUM", "ASUM", "SUMSQ", "MEAN"};
  crema_blob *b[] = {gauss(3, (int[]){2, 3, 4}, 2)};
  for (int op = 0; op < 4; op++)
    for (int axis = 0; axis < 3; axis++) {
      char text[256];
      snprintf(text, sizeof text,
               "name: 'r' type: 'Reduction' reduction_param { operation: %s axis: %d coeff: -1.5 }", ops[op],
               axis);
      run r;
      run_setup(&r, text, 1, b, 1);
      run_forward(&r);
      ck_assert_int_eq(r.top[0]->num_axes, axis);
      const size_t outer = crema_blob_count_range(b[0], 0, axis), dim = b[0]->count / outer;
      ck_assert_uint_eq(r.top[0]->count, outer);
      for (size_t o = 0; o < outer; o++) {
        double acc = 0;
        for (size_t d = 0; d < dim; d++) {
          const double x = b[0]->data[o * dim + d];
          acc += op == 1 ? fabs(x) : op == 2 ? x * x : x;
        }
        if (op == 3) acc /= (double)dim;
        ck_assert_double_eq_tol(r.top[0]->data[o], -1.5 * acc, 1e-5);
      }
      run_free(&r);
      grad(text, 1, b, 1, NULL, 0.0f, op == 1 ? 0.02f : -1.0f);
    }
  expect_error("name: 'r' type: 'Reduction' reduction_param { axis: 5 }", 1, b, 1, "out of range");
  free_blobs(1, b);
}
END_TEST

/* ---------------------------------------------------------------- Parameter, Filter, BatchReindex, Embed */

START_TEST(parameter_layer) {
  run r;
  run_setup(&r, "name: 'p' type: 'Parameter' parameter_param { shape { dim: 2 dim: 3 } }", 0, NULL, 1);
  ck_assert_int_eq(r.l->n_blobs, 1);
  for (int i = 0; i < 6; i++) r.l->blobs[0]->data[i] = (float)i - 2.0f;
  run_forward(&r);
  ck_assert_int_eq(r.top[0]->num_axes, 2);
  for (int i = 0; i < 6; i++) ck_assert_float_eq(r.top[0]->data[i], (float)i - 2.0f);
  for (int i = 0; i < 6; i++) r.top[0]->diff[i] = 1.0f;
  crema_layer_backward(r.l, r.top, NULL, NULL);
  crema_layer_backward(r.l, r.top, NULL, NULL);
  ck_assert_float_eq(r.l->blobs[0]->diff[4], 2.0f); /* accumulates */
  run_free(&r);
  grad("name: 'p' type: 'Parameter' parameter_param { shape { dim: 4 } }", 0, NULL, 1, NULL, 0, -1);
  expect_error("name: 'p' type: 'Parameter'", 0, NULL, 1, "shape");
}
END_TEST

START_TEST(filter_layer) {
  crema_blob *b[] = {gauss(3, (int[]){5, 2, 3}, 3), gauss(2, (int[]){5, 4}, 4),
                     blob_vals(1, (int[]){5}, (const float[]){1, 0, 0, 2, 1})};
  run r;
  run_setup(&r, "name: 'f' type: 'Filter'", 3, b, 2);
  run_forward(&r);
  const int kept[] = {0, 3, 4};
  ck_assert_int_eq(r.top[0]->shape[0], 3);
  ck_assert_int_eq(r.top[1]->shape[0], 3);
  ck_assert_int_eq(r.top[0]->shape[2], 3);
  for (int j = 0; j < 3; j++) {
    for (int k = 0; k < 6; k++) ck_assert_float_eq(r.top[0]->data[j * 6 + k], b[0]->data[kept[j] * 6 + k]);
    for (int k = 0; k < 4; k++) ck_assert_float_eq(r.top[1]->data[j * 4 + k], b[1]->data[kept[j] * 4 + k]);
  }
  run_free(&r);
  grad("name: 'f' type: 'Filter'", 3, b, 2, (const bool[]){true, true, false}, 0, -1);
  expect_error("name: 'f' type: 'Filter'", 3, b, 1, "one top per data bottom");
  crema_blob *bad[] = {b[0], b[1], blob_of(1, (int[]){4})};
  expect_error("name: 'f' type: 'Filter'", 3, bad, 2, "first axes must agree");
  crema_blob_free(bad[2]);
  free_blobs(3, b);
}
END_TEST

START_TEST(batch_reindex_layer) {
  crema_blob *b[] = {gauss(3, (int[]){4, 2, 3}, 5),
                     blob_vals(1, (int[]){6}, (const float[]){3, 0, 3, 1, 1, 3})};
  run r;
  run_setup(&r, "name: 'r' type: 'BatchReindex'", 2, b, 1);
  run_forward(&r);
  ck_assert_int_eq(r.top[0]->shape[0], 6);
  for (int j = 0; j < 6; j++)
    for (int k = 0; k < 6; k++)
      ck_assert_float_eq(r.top[0]->data[j * 6 + k], b[0]->data[(int)b[1]->data[j] * 6 + k]);
  run_free(&r);
  grad("name: 'r' type: 'BatchReindex'", 2, b, 1, (const bool[]){true, false}, 0, -1);
  b[1]->data[2] = 4; /* out of range */
  run_setup(&r, "name: 'r' type: 'BatchReindex'", 2, b, 1);
  crema_error err;
  ck_assert_int_eq(crema_layer_forward(r.l, b, r.top, &err), -1);
  ck_assert_msg(strstr(err.msg, "outside the 4 items"), "%s", err.msg);
  run_free(&r);
  free_blobs(2, b);
}
END_TEST

START_TEST(embed_layer) {
  crema_blob *b[] = {blob_vals(2, (int[]){2, 3}, (const float[]){0, 4, 2, 2, 1, 4})};
  const char *text = "name: 'e' type: 'Embed' embed_param { num_output: 3 input_dim: 5 "
                     "weight_filler { type: 'gaussian' } bias_filler { type: 'gaussian' } }";
  run r;
  run_setup(&r, text, 1, b, 1);
  run_forward(&r);
  ck_assert_int_eq(r.top[0]->num_axes, 3);
  ck_assert_int_eq(r.top[0]->shape[2], 3);
  for (int i = 0; i < 6; i++)
    for (int k = 0; k < 3; k++)
      ck_assert_float_eq_tol(r.top[0]->data[i * 3 + k],
                             r.l->blobs[0]->data[(int)b[0]->data[i] * 3 + k] + r.l->blobs[1]->data[k], 1e-6f);
  run_free(&r);
  grad(text, 1, b, 1, (const bool[]){false}, 0, -1);
  grad("name: 'e' type: 'Embed' embed_param { num_output: 4 input_dim: 5 bias_term: false "
       "weight_filler { type: 'uniform' min: -1 max: 1 } }",
       1, b, 1, (const bool[]){false}, 0, -1);
  b[0]->data[1] = 5;
  run_setup(&r, text, 1, b, 1);
  crema_error err;
  ck_assert_int_eq(crema_layer_forward(r.l, b, r.top, &err), -1);
  ck_assert_msg(strstr(err.msg, "input_dim 5"), "%s", err.msg);
  run_free(&r);
  expect_error("name: 'e' type: 'Embed' embed_param { num_output: 3 }", 1, b, 1, "input_dim");
  free_blobs(1, b);
}
END_TEST

/* ---------------------------------------------------------------- Crop */

START_TEST(crop_layer) {
  crema_blob *b[] = {gauss(4, (int[]){2, 3, 7, 6}, 6), blob_of(4, (int[]){1, 1, 4, 3})};
  /* axis 2, one offset for both spatial axes */
  run r;
  run_setup(&r, "name: 'c' type: 'Crop' crop_param { offset: 2 }", 2, b, 1);
  run_forward(&r);
  ck_assert_int_eq(r.top[0]->shape[0], 2);
  ck_assert_int_eq(r.top[0]->shape[1], 3);
  ck_assert_int_eq(r.top[0]->shape[2], 4);
  ck_assert_int_eq(r.top[0]->shape[3], 3);
  for (int n = 0; n < 2; n++)
    for (int c = 0; c < 3; c++)
      for (int h = 0; h < 4; h++)
        for (int w = 0; w < 3; w++)
          ck_assert_float_eq(r.top[0]->data[((n * 3 + c) * 4 + h) * 3 + w],
                             b[0]->data[((n * 3 + c) * 7 + h + 2) * 6 + w + 2]);
  run_free(&r);
  /* axis 1, one offset per axis */
  crema_blob *c2[] = {b[0], blob_of(4, (int[]){9, 2, 5, 4})};
  run_setup(&r, "name: 'c' type: 'Crop' crop_param { axis: 1 offset: 1 offset: 0 offset: 2 }", 2, c2, 1);
  run_forward(&r);
  ck_assert_int_eq(r.top[0]->shape[0], 2);
  ck_assert_int_eq(r.top[0]->shape[1], 2);
  for (int n = 0; n < 2; n++)
    for (int c = 0; c < 2; c++)
      for (int h = 0; h < 5; h++)
        for (int w = 0; w < 4; w++)
          ck_assert_float_eq(r.top[0]->data[((n * 2 + c) * 5 + h) * 4 + w],
                             b[0]->data[((n * 3 + c + 1) * 7 + h) * 6 + w + 2]);
  run_free(&r);
  grad("name: 'c' type: 'Crop' crop_param { offset: 2 }", 2, b, 1, (const bool[]){true, false}, 0, -1);
  grad("name: 'c' type: 'Crop' crop_param { axis: 1 offset: 1 offset: 0 offset: 2 }", 2, c2, 1,
       (const bool[]){true, false}, 0, -1);
  grad("name: 'c' type: 'Crop'", 2, b, 1, (const bool[]){true, false}, 0, -1);
  expect_error("name: 'c' type: 'Crop' crop_param { offset: 4 }", 2, b, 1, "exceeds the size");
  expect_error("name: 'c' type: 'Crop' crop_param { offset: 1 offset: 1 offset: 1 }", 2, b, 1, "3 offsets");
  crema_blob_free(c2[1]);
  free_blobs(2, b);
}
END_TEST

/* ---------------------------------------------------------------- MVN */

START_TEST(mvn_values_and_gradient) {
  crema_blob *b[] = {gauss(4, (int[]){2, 3, 4, 5}, 7)};
  for (size_t i = 0; i < b[0]->count; i++) b[0]->data[i] = b[0]->data[i] * 2.0f + (float)(i / 20);
  for (int nv = 0; nv < 2; nv++)
    for (int ac = 0; ac < 2; ac++) {
      char text[200];
      snprintf(text, sizeof text,
               "name: 'm' type: 'MVN' mvn_param { normalize_variance: %s across_channels: %s eps: 1e-6 }",
               nv ? "true" : "false", ac ? "true" : "false");
      run r;
      run_setup(&r, text, 1, b, 1);
      run_forward(&r);
      const size_t groups = ac ? 2 : 6, dim = 120 / groups;
      for (size_t g = 0; g < groups; g++) {
        double m = 0, v = 0;
        for (size_t k = 0; k < dim; k++) m += b[0]->data[g * dim + k];
        m /= (double)dim;
        for (size_t k = 0; k < dim; k++) v += pow(b[0]->data[g * dim + k] - m, 2);
        const double sd = sqrt(v / (double)dim) + 1e-6;
        for (size_t k = 0; k < dim; k++) {
          const double want = (b[0]->data[g * dim + k] - m) / (nv ? sd : 1.0);
          ck_assert_double_eq_tol(r.top[0]->data[g * dim + k], want, 1e-5);
        }
      }
      run_free(&r);
      grad(text, 1, b, 1, NULL, 0, -1);
      inplace_same(text, -2.0f, 3.0f);
    }
  free_blobs(1, b);
}
END_TEST

/* ---------------------------------------------------------------- Im2col */

START_TEST(im2col_values_and_gradient) {
  crema_blob *b[] = {gauss(4, (int[]){2, 3, 6, 5}, 8)};
  const char *text = "name: 'i' type: 'Im2col' convolution_param { kernel_h: 3 kernel_w: 2 stride: 2 pad: 1 "
                     "dilation: 1 }";
  run r;
  run_setup(&r, text, 1, b, 1);
  run_forward(&r);
  const int kh = 3, kw = 2, ho = (6 + 2 - 3) / 2 + 1, wo = (5 + 2 - 2) / 2 + 1;
  ck_assert_int_eq(r.top[0]->shape[1], 3 * kh * kw);
  ck_assert_int_eq(r.top[0]->shape[2], ho);
  ck_assert_int_eq(r.top[0]->shape[3], wo);
  for (int n = 0; n < 2; n++)
    for (int c = 0; c < 3; c++)
      for (int i = 0; i < kh; i++)
        for (int j = 0; j < kw; j++)
          for (int oh = 0; oh < ho; oh++)
            for (int ow = 0; ow < wo; ow++) {
              const int h = oh * 2 - 1 + i, w = ow * 2 - 1 + j;
              const float want =
                  h >= 0 && h < 6 && w >= 0 && w < 5 ? b[0]->data[((n * 3 + c) * 6 + h) * 5 + w] : 0.0f;
              ck_assert_float_eq(r.top[0]->data[(((n * 3 + c) * kh + i) * kw + j) * ho * wo + oh * wo + ow],
                                 want);
            }
  run_free(&r);
  grad(text, 1, b, 1, NULL, 0, -1);
  grad("name: 'i' type: 'Im2col' convolution_param { kernel_size: 2 dilation: 2 }", 1, b, 1, NULL, 0, -1);
  free_blobs(1, b);
}
END_TEST

/* ---------------------------------------------------------------- SPP */

START_TEST(spp_values_and_gradient) {
  crema_blob *b[] = {gauss(4, (int[]){2, 3, 7, 6}, 9)};
  run r;
  run_setup(&r, "name: 's' type: 'SPP' spp_param { pyramid_height: 1 }", 1, b, 1);
  run_forward(&r);
  ck_assert_int_eq(r.top[0]->num_axes, 4);
  ck_assert_int_eq(r.top[0]->shape[2], 1);
  for (int p = 0; p < 6; p++) {
    float m = -INFINITY;
    for (int k = 0; k < 42; k++) m = fmaxf(m, b[0]->data[p * 42 + k]);
    ck_assert_float_eq(r.top[0]->data[p], m);
  }
  run_free(&r);
  run_setup(&r, "name: 's' type: 'SPP' spp_param { pyramid_height: 3 pool: AVE }", 1, b, 1);
  run_forward(&r);
  ck_assert_int_eq(r.top[0]->num_axes, 2);
  ck_assert_int_eq(r.top[0]->shape[1], 3 * (1 + 4 + 16));
  /* Level 0 of AVE: the plane's mean (kernel = plane, no pad). */
  for (int n = 0; n < 2; n++)
    for (int c = 0; c < 3; c++) {
      double m = 0;
      for (int k = 0; k < 42; k++) m += b[0]->data[(n * 3 + c) * 42 + k];
      ck_assert_double_eq_tol(r.top[0]->data[n * 63 + c], m / 42.0, 1e-5);
    }
  run_free(&r);
  /* MAX: distinct values 0.1 apart, so no finite-difference step changes a window's argmax. */
  for (size_t i = 0; i < b[0]->count; i++) b[0]->data[i] = (float)((int)((i * 97) % 252) - 126) * 0.1f;
  grad("name: 's' type: 'SPP' spp_param { pyramid_height: 3 }", 1, b, 1, NULL, 0, -1);
  grad("name: 's' type: 'SPP' spp_param { pyramid_height: 2 pool: AVE }", 1, b, 1, NULL, 0, -1);
  expect_error("name: 's' type: 'SPP'", 1, b, 1, "pyramid_height");
  free_blobs(1, b);
}
END_TEST

/* ---------------------------------------------------------------- losses */

/* gradcheck_loss on a layer given as text. */
static void loss_grad(const char *text, int n_bottom, crema_blob **bottom, const bool *check) {
  Crema__LayerParameter *p = test_layer_param(text);
  gradcheck_loss(p, n_bottom, bottom, check);
  crema_message_free(p);
}

static float forward_loss(const char *text, int n_bottom, crema_blob **b) {
  run r;
  run_setup(&r, text, n_bottom, b, 1);
  run_forward(&r);
  const float v = r.top[0]->data[0];
  run_free(&r);
  return v;
}

static void labels(crema_blob *b, int classes, uint64_t seed) {
  crema_rng r;
  crema_rng_seed(&r, seed, 5);
  for (size_t i = 0; i < b->count; i++) b->data[i] = (float)crema_rng_below(&r, (uint32_t)classes);
}

START_TEST(hinge_loss) {
  crema_blob *b[] = {gauss(2, (int[]){6, 5}, 11), blob_of(1, (int[]){6})};
  labels(b[1], 5, 1);
  for (size_t i = 0; i < b[0]->count; i++) /* keep 1 + s x away from the hinge's kink */
    if (fabsf(fabsf(b[0]->data[i]) - 1.0f) < 0.03f) b[0]->data[i] *= 1.1f;
  for (int l2 = 0; l2 < 2; l2++) {
    const char *text =
        l2 ? "name: 'h' type: 'HingeLoss' hinge_loss_param { norm: L2 }" : "name: 'h' type: 'HingeLoss'";
    double want = 0;
    for (int i = 0; i < 6; i++)
      for (int j = 0; j < 5; j++) {
        const double x = b[0]->data[i * 5 + j], t = fmax(0.0, 1.0 + (j == (int)b[1]->data[i] ? -x : x));
        want += l2 ? t * t : t;
      }
    ck_assert_double_eq_tol(forward_loss(text, 2, b), want / 6, 1e-5);
    loss_grad(text, 2, b, (const bool[]){true, false});
  }
  b[1]->data[3] = 5;
  run r;
  run_setup(&r, "name: 'h' type: 'HingeLoss'", 2, b, 1);
  crema_error err;
  ck_assert_int_eq(crema_layer_forward(r.l, b, r.top, &err), -1);
  ck_assert_msg(strstr(err.msg, "label 5 of item 3"), "%s", err.msg);
  run_free(&r);
  free_blobs(2, b);
}
END_TEST

START_TEST(multinomial_logistic_loss) {
  crema_blob *b[] = {blob_of(2, (int[]){4, 3}), blob_of(1, (int[]){4})};
  gradcheck_fill_uniform(b[0], 0.4f, 1.0f, 12);
  labels(b[1], 3, 2);
  double want = 0;
  for (int i = 0; i < 4; i++) want -= log(b[0]->data[i * 3 + (int)b[1]->data[i]]);
  ck_assert_double_eq_tol(forward_loss("name: 'm' type: 'MultinomialLogisticLoss'", 2, b), want / 4, 1e-5);
  loss_grad("name: 'm' type: 'MultinomialLogisticLoss'", 2, b, (const bool[]){true, false});
  b[0]->data[(int)b[1]->data[0]] = 0.0f; /* p = 0: clamped at 1e-20, finite */
  ck_assert(isfinite(forward_loss("name: 'm' type: 'MultinomialLogisticLoss'", 2, b)));
  free_blobs(2, b);
}
END_TEST

START_TEST(contrastive_loss) {
  crema_blob *b[] = {gauss(4, (int[]){6, 4, 1, 1}, 13), gauss(4, (int[]){6, 4, 1, 1}, 14),
                     blob_vals(1, (int[]){6}, (const float[]){1, 0, 0, 1, 0, 0})};
  for (size_t i = 0; i < b[0]->count; i++) b[0]->data[i] *= 0.6f;
  for (size_t i = 0; i < b[1]->count; i++) b[1]->data[i] *= 0.6f;
  for (int legacy = 0; legacy < 2; legacy++) {
    char text[200];
    snprintf(text, sizeof text, "name: 'c' type: 'ContrastiveLoss' contrastive_loss_param { margin: 2.5 %s }",
             legacy ? "legacy_version: true" : "");
    double want = 0;
    for (int i = 0; i < 6; i++) {
      double d = 0;
      for (int c = 0; c < 4; c++) d += pow(b[0]->data[i * 4 + c] - b[1]->data[i * 4 + c], 2);
      if (b[2]->data[i] != 0)
        want += d;
      else
        want += legacy ? fmax(2.5 - d, 0) : pow(fmax(2.5 - sqrt(d), 0), 2);
    }
    ck_assert_double_eq_tol(forward_loss(text, 3, b), want / 12, 1e-5);
    loss_grad(text, 3, b, (const bool[]){true, true, false});
  }
  free_blobs(3, b);
}
END_TEST

START_TEST(infogain_loss) {
  char dir[] = "/tmp/crema_test_infogain_XXXXXX", path[128];
  ck_assert_ptr_nonnull(mkdtemp(dir));
  snprintf(path, sizeof path, "%s/H.binaryproto", dir);
  crema_blob *b[] = {gauss(4, (int[]){3, 4, 2, 2}, 15), blob_of(3, (int[]){3, 2, 2}),
                     blob_of(2, (int[]){4, 4})};
  labels(b[1], 4, 3);
  /* H = identity: exactly SoftmaxWithLoss. */
  for (int i = 0; i < 4; i++) b[2]->data[i * 5] = 1.0f;
  const float sm = forward_loss("name: 's' type: 'SoftmaxWithLoss'", 2, b);
  ck_assert_float_eq_tol(forward_loss("name: 'i' type: 'InfogainLoss'", 3, b), sm, 1e-6f);
  /* A general H, as a bottom and from a binaryproto file. */
  gradcheck_fill_uniform(b[2], 0.0f, 1.0f, 16);
  double want = 0;
  for (int n = 0; n < 3; n++)
    for (int s = 0; s < 4; s++) {
      double m = -INFINITY, z = 0;
      for (int c = 0; c < 4; c++) m = fmax(m, b[0]->data[(n * 4 + c) * 4 + s]);
      for (int c = 0; c < 4; c++) z += exp(b[0]->data[(n * 4 + c) * 4 + s] - m);
      const int y = (int)b[1]->data[n * 4 + s];
      for (int c = 0; c < 4; c++)
        want -= b[2]->data[y * 4 + c] * (b[0]->data[(n * 4 + c) * 4 + s] - m - log(z));
    }
  ck_assert_double_eq_tol(forward_loss("name: 'i' type: 'InfogainLoss'", 3, b), want / 12, 1e-5);
  Crema__BlobProto *bp;
  crema_error err;
  ck_assert_int_eq(crema_blob_to_proto(b[2], false, &bp, &err), 0);
  ck_assert_msg(crema_write_binary_message(path, &bp->base, &err) == 0, "%s", err.msg);
  crema_message_free(bp);
  char text[300];
  snprintf(text, sizeof text, "name: 'i' type: 'InfogainLoss' infogain_loss_param { source: '%s' }", path);
  ck_assert_double_eq_tol(forward_loss(text, 2, b), want / 12, 1e-5);
  loss_grad(text, 2, b, (const bool[]){true, false});
  loss_grad("name: 'i' type: 'InfogainLoss' loss_param { ignore_label: 2 normalization: FULL }", 3, b,
            (const bool[]){true, false, false});
  expect_error("name: 'i' type: 'InfogainLoss'", 2, b, 1, "third bottom");
  crema_blob *small[] = {b[0], b[1], blob_of(2, (int[]){3, 3})};
  expect_error("name: 'i' type: 'InfogainLoss'", 3, small, 1, "4 x 4");
  crema_blob_free(small[2]);
  free_blobs(3, b);
  remove(path);
  rmdir(dir);
}
END_TEST

int main(void) {
  Suite *s = suite_create("layers_catalogue");
  TCase *tc = tcase_create("core");
  tcase_set_timeout(tc, 300);
  tcase_add_test(tc, exp_log_bnll);
  tcase_add_test(tc, threshold_clip_swish);
  tcase_add_test(tc, tile_values_and_gradient);
  tcase_add_test(tc, reduction_values_and_gradient);
  tcase_add_test(tc, parameter_layer);
  tcase_add_test(tc, filter_layer);
  tcase_add_test(tc, batch_reindex_layer);
  tcase_add_test(tc, embed_layer);
  tcase_add_test(tc, crop_layer);
  tcase_add_test(tc, mvn_values_and_gradient);
  tcase_add_test(tc, im2col_values_and_gradient);
  tcase_add_test(tc, spp_values_and_gradient);
  tcase_add_test(tc, hinge_loss);
  tcase_add_test(tc, multinomial_logistic_loss);
  tcase_add_test(tc, contrastive_loss);
  tcase_add_test(tc, infogain_loss);
  suite_add_tcase(s, tc);
  return test_run_suite(s);
}
