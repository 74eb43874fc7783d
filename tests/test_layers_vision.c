/* Vision layers: Convolution, Deconvolution, Pooling, InnerProduct, LRN.
 * Forward values against naive reference loops written here (to 1e-4), Caffe's size and
 * averaging rules on hand-computed cases, gradient checks in many configurations, and the
 * error messages for bad parameters. */
#include <check.h>
#include <float.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "support/run.h"
#include "layers/layer.h"
#include "proto/io.h"
#include "support/gradcheck.h"
#include "support/textproto.h"

/* ---- small utilities */

static crema_blob *blob4(int n, int c, int h, int w, uint64_t seed) {
  crema_blob *b = crema_blob_new();
  crema_error err;
  ck_assert_msg(crema_blob_reshape4(b, n, c, h, w, &err) == 0, "%s", err.msg);
  gradcheck_fill_gaussian(b, 1.0f, seed);
  return b;
}

static crema_blob *blobn(int num_axes, const int *shape, uint64_t seed) {
  crema_blob *b = crema_blob_new();
  crema_error err;
  ck_assert_msg(crema_blob_reshape(b, num_axes, shape, &err) == 0, "%s", err.msg);
  gradcheck_fill_gaussian(b, 1.0f, seed);
  return b;
}

/* A layer made from prototxt text, set up on `bottom` and run forward once. */
typedef struct run {
  Crema__LayerParameter *p;
  crema_layer *l;
  crema_blob *top[2];
  int n_top;
} run;

static run run_forward(const char *text, int n_bottom, crema_blob **bottom, int n_top) {
  run r = {.p = test_layer_param(text), .n_top = n_top};
  crema_error err;
  ck_assert_msg(crema_layer_create(r.p, CREMA__PHASE__TRAIN, 42, &r.l, &err) == 0, "%s", err.msg);
  for (int t = 0; t < n_top; t++) r.top[t] = crema_blob_new();
  ck_assert_msg(crema_layer_setup(r.l, n_bottom, bottom, n_top, r.top, &err) == 0, "%s", err.msg);
  ck_assert_msg(crema_layer_forward(r.l, bottom, r.top, &err) == 0, "%s", err.msg);
  return r;
}

static void run_free(run *r) {
  crema_layer_free(r->l);
  for (int t = 0; t < r->n_top; t++) crema_blob_free(r->top[t]);
  crema_message_free(r->p);
}

/* Setup must fail with a message containing `needle`. */
static void expect_setup_error(const char *text, crema_blob *bottom, int n_top, const char *needle) {
  Crema__LayerParameter *p = test_layer_param(text);
  crema_layer *l = NULL;
  crema_error err;
  crema_blob *top[2] = {crema_blob_new(), crema_blob_new()};
  int rc = crema_layer_create(p, CREMA__PHASE__TRAIN, 1, &l, &err);
  if (rc == 0) rc = crema_layer_setup(l, 1, &bottom, n_top, top, &err);
  ck_assert_msg(rc != 0, "setup of \"%s\" should fail", text);
  ck_assert_msg(strstr(err.msg, needle), "error \"%s\" should mention \"%s\"", err.msg, needle);
  crema_layer_free(l);
  crema_blob_free(top[0]);
  crema_blob_free(top[1]);
  crema_message_free(p);
}

static void expect_close(const float *got, const double *want, size_t n, const char *what) {
  for (size_t i = 0; i < n; i++)
    ck_assert_msg(fabs(got[i] - want[i]) <= 1e-4 * fmax(1.0, fabs(want[i])),
                  "%s: element %zu is %.7g, expected %.7g", what, i, got[i], want[i]);
}

/* ---- naive references */

typedef struct conv_cfg {
  int kh, kw, sh, sw, ph, pw, dh, dw, group;
} conv_cfg;

/* Direct convolution: y (N, M, Ho, Wo) from x (N, C, H, W), w (M, C/G, kh, kw). */
static double *ref_conv(const crema_blob *x, const crema_blob *w, const float *bias, conv_cfg c, int *ho,
                        int *wo) {
  const int N = x->shape[0], C = x->shape[1], H = x->shape[2], W = x->shape[3], M = w->shape[0];
  const int Ho = (H + 2 * c.ph - (c.dh * (c.kh - 1) + 1)) / c.sh + 1;
  const int Wo = (W + 2 * c.pw - (c.dw * (c.kw - 1) + 1)) / c.sw + 1;
  const int cg = C / c.group, mg = M / c.group;
  double *y = calloc((size_t)N * M * Ho * Wo, sizeof(double));
  for (int n = 0; n < N; n++)
    for (int m = 0; m < M; m++)
      for (int oh = 0; oh < Ho; oh++)
        for (int ow = 0; ow < Wo; ow++) {
          double s = bias ? bias[m] : 0.0;
          const int g = m / mg;
          for (int ci = 0; ci < cg; ci++)
            for (int i = 0; i < c.kh; i++)
              for (int j = 0; j < c.kw; j++) {
                const int ih = oh * c.sh - c.ph + i * c.dh, iw = ow * c.sw - c.pw + j * c.dw;
                if (ih < 0 || ih >= H || iw < 0 || iw >= W) continue;
                s += (double)w->data[(((size_t)m * cg + ci) * c.kh + i) * c.kw + j] *
                     x->data[(((size_t)n * C + g * cg + ci) * H + ih) * W + iw];
              }
          y[(((size_t)n * M + m) * Ho + oh) * Wo + ow] = s;
        }
  *ho = Ho;
  *wo = Wo;
  return y;
}

/* Direct transposed convolution: every input pixel scatters w * x into the output. */
static double *ref_deconv(const crema_blob *x, const crema_blob *w, const float *bias, conv_cfg c, int M,
                          int *ho, int *wo) {
  const int N = x->shape[0], C = x->shape[1], H = x->shape[2], W = x->shape[3];
  const int Ho = c.sh * (H - 1) + c.dh * (c.kh - 1) + 1 - 2 * c.ph;
  const int Wo = c.sw * (W - 1) + c.dw * (c.kw - 1) + 1 - 2 * c.pw;
  const int cg = C / c.group, mg = M / c.group;
  double *y = calloc((size_t)N * M * Ho * Wo, sizeof(double));
  for (int n = 0; n < N; n++)
    for (int ci = 0; ci < C; ci++)
      for (int h = 0; h < H; h++)
        for (int ww = 0; ww < W; ww++)
          for (int mo = 0; mo < mg; mo++)
            for (int i = 0; i < c.kh; i++)
              for (int j = 0; j < c.kw; j++) {
                const int oh = h * c.sh - c.ph + i * c.dh, ow = ww * c.sw - c.pw + j * c.dw;
                if (oh < 0 || oh >= Ho || ow < 0 || ow >= Wo) continue;
                const int m = (ci / cg) * mg + mo;
                y[(((size_t)n * M + m) * Ho + oh) * Wo + ow] +=
                    (double)w->data[(((size_t)ci * mg + mo) * c.kh + i) * c.kw + j] *
                    x->data[(((size_t)n * C + ci) * H + h) * W + ww];
              }
  if (bias)
    for (int n = 0; n < N; n++)
      for (int m = 0; m < M; m++)
        for (int k = 0; k < Ho * Wo; k++) y[((size_t)n * M + m) * Ho * Wo + k] += bias[m];
  *ho = Ho;
  *wo = Wo;
  return y;
}

/* ---- Convolution */

typedef struct conv_case {
  const char *param; /* the convolution_param body */
  int n, c, h, w;
  conv_cfg cfg;
  bool bias;
} conv_case;

static const conv_case CONV_CASES[] = {
    {"num_output: 4 kernel_size: 3 pad: 1", 2, 3, 7, 6, {3, 3, 1, 1, 1, 1, 1, 1, 1}, true},
    {"num_output: 3 kernel_h: 3 kernel_w: 2 pad_h: 2 pad_w: 0 stride_h: 2 stride_w: 1 dilation: 2",
     2,
     2,
     9,
     7,
     {3, 2, 2, 1, 2, 0, 2, 2, 1},
     true},
    {"num_output: 2 kernel_size: 3 kernel_size: 2 stride: 1 stride: 2 pad: 0 pad: 1 dilation: 1 dilation: 3",
     1,
     2,
     6,
     8,
     {3, 2, 1, 2, 0, 1, 1, 3, 1},
     true},
    {"num_output: 6 kernel_size: 3 group: 2 stride: 2", 3, 4, 7, 7, {3, 3, 2, 2, 0, 0, 1, 1, 2}, true},
    {"num_output: 4 kernel_size: 3 group: 4 pad: 1 stride: 2", 2, 4, 6, 5, {3, 3, 2, 2, 1, 1, 1, 1, 4}, true},
    {"num_output: 8 kernel_size: 3 group: 4 pad: 2 dilation: 2",
     2,
     4,
     5,
     5,
     {3, 3, 1, 1, 2, 2, 2, 2, 4},
     true},
    {"num_output: 3 kernel_size: 3 stride: 2", 2, 1, 7, 7, {3, 3, 2, 2, 0, 0, 1, 1, 1}, true}, /* 1 -> 3:
                                                                                                  direct */
    {"num_output: 6 kernel_size: 3 pad: 1", 2, 1, 6, 6, {3, 3, 1, 1, 1, 1, 1, 1, 1}, true}, /* 1 -> 6: GEMM */
    {"num_output: 5 kernel_size: 1", 2, 3, 4, 5, {1, 1, 1, 1, 0, 0, 1, 1, 1}, true},
    {"num_output: 5 kernel_size: 1 group: 1", 2, 3, 32, 33, {1, 1, 1, 1, 0, 0, 1, 1, 1}, true}, /* 1x1 GEMM
                                                                                                   path */
    {"num_output: 4 kernel_size: 1 group: 2 bias_term: false",
     2,
     4,
     32,
     32,
     {1, 1, 1, 1, 0, 0, 1, 1, 2},
     false},
    {"num_output: 3 kernel_size: 2 bias_term: false", 2, 2, 5, 5, {2, 2, 1, 1, 0, 0, 1, 1, 1}, false},
    /* one image, a small plane: the 1x1 GEMM straight on the input (no gathering) */
    {"num_output: 5 kernel_size: 1", 1, 3, 4, 5, {1, 1, 1, 1, 0, 0, 1, 1, 1}, true},
    {"num_output: 4 kernel_size: 1 group: 2", 1, 4, 5, 6, {1, 1, 1, 1, 0, 0, 1, 1, 2}, true},
    {"num_output: 2 kernel_size: 5 pad: 2", 3, 16, 100, 100, {5, 5, 1, 1, 2, 2, 1, 1, 1}, true}, /* chunked */
};

static char *conv_text(const char *type, const char *param) {
  static char buf[1024];
  snprintf(buf, sizeof buf,
           "name: 'c' type: '%s' convolution_param { %s weight_filler { type: 'gaussian' std: 0.5 } "
           "bias_filler { type: 'uniform' min: -1 max: 1 } }",
           type, param);
  return buf;
}

START_TEST(test_conv_forward_matches_reference) {
  for (size_t t = 0; t < sizeof CONV_CASES / sizeof CONV_CASES[0]; t++) {
    const conv_case *cc = &CONV_CASES[t];
    crema_blob *x = blob4(cc->n, cc->c, cc->h, cc->w, 100 + t);
    run r = run_forward(conv_text("Convolution", cc->param), 1, &x, 1);
    ck_assert_int_eq(r.l->n_blobs, (cc->bias ? 2 : 1));
    crema_blob *wb = r.l->blobs[0];
    ck_assert_int_eq(wb->shape[1], cc->c / cc->cfg.group);
    int ho, wo;
    double *want = ref_conv(x, wb, cc->bias ? r.l->blobs[1]->data : NULL, cc->cfg, &ho, &wo);
    ck_assert_int_eq(r.top[0]->num_axes, 4);
    ck_assert_int_eq(r.top[0]->shape[0], cc->n);
    ck_assert_int_eq(r.top[0]->shape[1], wb->shape[0]);
    ck_assert_int_eq(r.top[0]->shape[2], ho);
    ck_assert_int_eq(r.top[0]->shape[3], wo);
    char what[64];
    snprintf(what, sizeof what, "convolution case %zu", t);
    expect_close(r.top[0]->data, want, r.top[0]->count, what);
    free(want);
    run_free(&r);
    crema_blob_free(x);
  }
}
END_TEST

/* Output size (in + 2 pad - (dilation (k-1) + 1)) / stride + 1 on CaffeNet's conv1. */
START_TEST(test_conv_shapes) {
  crema_blob *x = blob4(1, 3, 227, 227, 1);
  run r = run_forward("name: 'conv1' type: 'Convolution' convolution_param { num_output: 96 kernel_size: 11 "
                      "stride: 4 }",
                      1, &x, 1);
  ck_assert_int_eq(r.top[0]->shape[1], 96);
  ck_assert_int_eq(r.top[0]->shape[2], 55);
  ck_assert_int_eq(r.top[0]->shape[3], 55);
  ck_assert_int_eq(r.l->blobs[0]->shape[0], 96);
  ck_assert_int_eq(r.l->blobs[0]->shape[1], 3);
  ck_assert_int_eq(r.l->blobs[1]->count, 96);
  run_free(&r);
  crema_blob_free(x);
}
END_TEST

/* axis 2: the leading two axes are both "batch"; and two bottoms share the weights. */
START_TEST(test_conv_axis_and_two_bottoms) {
  const int shape[5] = {2, 3, 2, 5, 4};
  crema_blob *x = blobn(5, shape, 5);
  run r = run_forward(conv_text("Convolution", "num_output: 3 kernel_size: 3 pad: 1 axis: 2"), 1, &x, 1);
  ck_assert_int_eq(r.top[0]->num_axes, 5);
  ck_assert_int_eq(r.top[0]->shape[0], 2);
  ck_assert_int_eq(r.top[0]->shape[1], 3);
  ck_assert_int_eq(r.top[0]->shape[2], 3);
  crema_blob *x4 = blob4(6, 2, 5, 4, 0);
  memcpy(x4->data, x->data, x->count * sizeof(float));
  int ho, wo;
  conv_cfg cfg = {3, 3, 1, 1, 1, 1, 1, 1, 1};
  double *want = ref_conv(x4, r.l->blobs[0], r.l->blobs[1]->data, cfg, &ho, &wo);
  expect_close(r.top[0]->data, want, r.top[0]->count, "axis 2");
  free(want);
  run_free(&r);

  crema_blob *xs[2] = {blob4(2, 2, 5, 5, 6), blob4(2, 2, 5, 5, 7)};
  run r2 = run_forward(conv_text("Convolution", "num_output: 3 kernel_size: 3"), 2, xs, 2);
  for (int k = 0; k < 2; k++) {
    conv_cfg c3 = {3, 3, 1, 1, 0, 0, 1, 1, 1};
    double *w2 = ref_conv(xs[k], r2.l->blobs[0], r2.l->blobs[1]->data, c3, &ho, &wo);
    expect_close(r2.top[k]->data, w2, r2.top[k]->count, "second bottom");
    free(w2);
  }
  run_free(&r2);
  /* Gradients: two bottoms sharing weights (parameter gradients add up), and axis 2. */
  Crema__LayerParameter *p2 =
      test_layer_param(conv_text("Convolution", "num_output: 2 kernel_size: 2 stride: 2"));
  gradcheck_layer(p2, 2, xs, 2, NULL, NULL);
  crema_message_free(p2);
  Crema__LayerParameter *pa =
      test_layer_param(conv_text("Convolution", "num_output: 2 kernel_size: 3 axis: 2"));
  gradcheck_layer(pa, 1, &x, 1, NULL, NULL);
  crema_message_free(pa);
  crema_blob_free(xs[0]);
  crema_blob_free(xs[1]);
  crema_blob_free(x4);
  crema_blob_free(x);
}
END_TEST

START_TEST(test_conv_gradients) {
  /* Every case but the large chunked one (too many elements for finite differences). */
  for (size_t t = 0; t + 1 < sizeof CONV_CASES / sizeof CONV_CASES[0]; t++) {
    const conv_case *cc = &CONV_CASES[t];
    const bool big = cc->h * cc->w >= 1024;
    crema_blob *x = big ? blob4(1, cc->c, cc->h, cc->w, 200 + t) : blob4(cc->n, cc->c, cc->h, cc->w, 200 + t);
    Crema__LayerParameter *p = test_layer_param(conv_text("Convolution", cc->param));
    gradcheck_opts o = gradcheck_defaults();
    if (big) o.max_per_blob = 150;
    gradcheck_layer(p, 1, &x, 1, NULL, &o);
    crema_message_free(p);
    crema_blob_free(x);
  }
}
END_TEST

/* Forward and backward of the chunked general path against direct loops (dW = sum dy * x over
 * windows, db = sum dy, dx = scatter of W * dy): chunks of one image (no staging matrix) and
 * chunks of two then one. */
static const conv_case CHUNKED_CASES[] = {
    {"num_output: 2 kernel_size: 5 pad: 2", 3, 16, 100, 100, {5, 5, 1, 1, 2, 2, 1, 1, 1}, true}, /* 1 + 1 + 1
                                                                                                  */
    {"num_output: 3 kernel_size: 5 pad: 2", 3, 16, 25, 40, {5, 5, 1, 1, 2, 2, 1, 1, 1}, true},   /* 2 + 1 */
};

START_TEST(test_conv_chunked_backward_matches_reference) {
  const conv_case *cc = &CHUNKED_CASES[_i];
  const conv_cfg c = cc->cfg;
  crema_blob *x = blob4(cc->n, cc->c, cc->h, cc->w, 77);
  run r = run_forward(conv_text("Convolution", cc->param), 1, &x, 1);
  crema_blob *top = r.top[0], *w = r.l->blobs[0], *b = r.l->blobs[1];
  int ho0, wo0;
  double *fwd = ref_conv(x, w, b->data, c, &ho0, &wo0);
  expect_close(top->data, fwd, top->count, "chunked forward");
  free(fwd);
  gradcheck_fill_gaussian(top, 1.0f, 78);
  memcpy(top->diff, top->data, top->count * sizeof(float));
  crema_blob_zero_diff(w);
  crema_blob_zero_diff(b);
  const bool prop[1] = {true};
  crema_layer_backward(r.l, r.top, prop, &x);
  const int N = cc->n, C = cc->c, H = cc->h, W = cc->w, M = w->shape[0], Ho = top->shape[2],
            Wo = top->shape[3];
  double *dw = calloc(w->count, sizeof(double)), *dx = calloc(x->count, sizeof(double)),
         *db = calloc(M, sizeof(double));
  for (int n = 0; n < N; n++)
    for (int m = 0; m < M; m++)
      for (int oh = 0; oh < Ho; oh++)
        for (int ow = 0; ow < Wo; ow++) {
          const double d = top->diff[(((size_t)n * M + m) * Ho + oh) * Wo + ow];
          db[m] += d;
          for (int ci = 0; ci < C; ci++)
            for (int i = 0; i < c.kh; i++)
              for (int j = 0; j < c.kw; j++) {
                const int ih = oh * c.sh - c.ph + i * c.dh, iw = ow * c.sw - c.pw + j * c.dw;
                if (ih < 0 || ih >= H || iw < 0 || iw >= W) continue;
                const size_t xi = (((size_t)n * C + ci) * H + ih) * W + iw;
                const size_t wi = (((size_t)m * C + ci) * c.kh + i) * c.kw + j;
                dw[wi] += d * x->data[xi];
                dx[xi] += d * w->data[wi];
              }
        }
  for (size_t i = 0; i < w->count; i++)
    ck_assert_msg(fabs(w->diff[i] - dw[i]) <= 1e-3 * fmax(1.0, fabs(dw[i])), "dW[%zu] %g vs %g", i,
                  w->diff[i], dw[i]);
  for (int m = 0; m < M; m++)
    ck_assert_msg(fabs(b->diff[m] - db[m]) <= 1e-3 * fmax(1.0, fabs(db[m])), "db[%d] %g vs %g", m, b->diff[m],
                  db[m]);
  expect_close(x->diff, dx, x->count, "chunked bottom diff");
  free(dw);
  free(dx);
  free(db);
  run_free(&r);
  crema_blob_free(x);
}
END_TEST

/* A deconvolution whose column buffer is also chunked (16*5*5 rows x 100*100 per image). */
START_TEST(test_deconv_chunked_forward) {
  const conv_cfg cfg = {5, 5, 1, 1, 2, 2, 1, 1, 1};
  crema_blob *x = blob4(3, 2, 100, 100, 79);
  run r = run_forward(conv_text("Deconvolution", "num_output: 16 kernel_size: 5 pad: 2"), 1, &x, 1);
  int ho, wo;
  double *want = ref_deconv(x, r.l->blobs[0], r.l->blobs[1]->data, cfg, 16, &ho, &wo);
  ck_assert_int_eq(ho, 100);
  expect_close(r.top[0]->data, want, r.top[0]->count, "chunked deconvolution");
  free(want);
  run_free(&r);
  crema_blob_free(x);
}
END_TEST

/* Frozen weights (lr_mult 0) get no gradient; without propagate_down the bottom is untouched. */
START_TEST(test_conv_skips_frozen_and_unpropagated) {
  crema_blob *x = blob4(2, 2, 5, 5, 3);
  Crema__LayerParameter *p =
      test_layer_param("name: 'c' type: 'Convolution' param { lr_mult: 0 } param { lr_mult: 1 } "
                       "convolution_param { num_output: 2 kernel_size: 3 "
                       "weight_filler { type: 'gaussian' } }");
  crema_layer *l;
  crema_error err;
  crema_blob *top = crema_blob_new();
  ck_assert_int_eq(crema_layer_create(p, CREMA__PHASE__TRAIN, 1, &l, &err), 0);
  ck_assert_msg(crema_layer_setup(l, 1, &x, 1, &top, &err) == 0, "%s", err.msg);
  ck_assert(!l->param_propagate_down[0]);
  ck_assert(l->param_propagate_down[1]);
  ck_assert_int_eq(crema_layer_forward(l, &x, &top, &err), 0);
  for (size_t i = 0; i < top->count; i++) top->diff[i] = 1.0f;
  for (size_t i = 0; i < x->count; i++) x->diff[i] = 123.0f;
  crema_blob_zero_diff(l->blobs[0]);
  crema_blob_zero_diff(l->blobs[1]);
  const bool no[1] = {false};
  crema_layer_backward(l, &top, no, &x);
  ck_assert_float_eq(x->diff[0], 123.0f);
  ck_assert_float_eq(crema_blob_asum_diff(l->blobs[0]), 0.0f);
  ck_assert_float_eq_tol(l->blobs[1]->diff[0], (float)(2 * 3 * 3), 1e-4);
  /* Param diffs accumulate: a second backward doubles the bias gradient. */
  crema_layer_backward(l, &top, no, &x);
  ck_assert_float_eq_tol(l->blobs[1]->diff[1], (float)(2 * 2 * 3 * 3), 1e-4);
  crema_layer_free(l);
  crema_blob_free(top);
  crema_blob_free(x);
  crema_message_free(p);
}
END_TEST

/* Reshaping to a new batch size or image size keeps working (buffers grow). */
START_TEST(test_conv_reshape) {
  crema_blob *x = blob4(1, 3, 6, 6, 9);
  run r = run_forward(conv_text("Convolution", "num_output: 4 kernel_size: 3 pad: 1"), 1, &x, 1);
  crema_error err;
  ck_assert_int_eq(crema_blob_reshape4(x, 3, 3, 9, 7, &err), 0);
  gradcheck_fill_gaussian(x, 1.0f, 10);
  ck_assert_msg(crema_layer_reshape(r.l, &x, r.top, &err) == 0, "%s", err.msg);
  ck_assert_int_eq(crema_layer_forward(r.l, &x, r.top, &err), 0);
  int ho, wo;
  conv_cfg cfg = {3, 3, 1, 1, 1, 1, 1, 1, 1};
  double *want = ref_conv(x, r.l->blobs[0], r.l->blobs[1]->data, cfg, &ho, &wo);
  ck_assert_int_eq(r.top[0]->shape[0], 3);
  ck_assert_int_eq(r.top[0]->shape[2], 9);
  expect_close(r.top[0]->data, want, r.top[0]->count, "after reshape");
  free(want);
  /* A different channel count does not fit the weights. */
  ck_assert_int_eq(crema_blob_reshape4(x, 1, 2, 6, 6, &err), 0);
  ck_assert_int_ne(crema_layer_reshape(r.l, &x, r.top, &err), 0);
  ck_assert_msg(strstr(err.msg, "incompatible"), "%s", err.msg);
  run_free(&r);
  crema_blob_free(x);
}
END_TEST

START_TEST(test_conv_errors) {
  crema_blob *x = blob4(1, 3, 5, 5, 1);
  expect_setup_error("name: 'c' type: 'Convolution' convolution_param { num_output: 2 }", x, 1,
                     "kernel_size");
  expect_setup_error("name: 'c' type: 'Convolution' convolution_param { kernel_size: 3 }", x, 1,
                     "num_output");
  expect_setup_error(
      "name: 'c' type: 'Convolution' convolution_param { num_output: 2 kernel_size: 3 kernel_h: 3 "
      "kernel_w: 3 }",
      x, 1, "not both");
  expect_setup_error("name: 'c' type: 'Convolution' convolution_param { num_output: 2 kernel_h: 3 }", x, 1,
                     "together");
  expect_setup_error(
      "name: 'c' type: 'Convolution' convolution_param { num_output: 2 kernel_size: 3 group: 2 }", x, 1,
      "divisible by group");
  expect_setup_error(
      "name: 'c' type: 'Convolution' convolution_param { num_output: 3 kernel_size: 1 group: 2 }", x, 1,
      "group");
  expect_setup_error("name: 'c' type: 'Convolution' convolution_param { num_output: 2 kernel_size: 7 }", x, 1,
                     "smaller than");
  expect_setup_error(
      "name: 'c' type: 'Convolution' convolution_param { num_output: 2 kernel_size: 1 kernel_size: 1 "
      "kernel_size: 1 }",
      x, 1, "once per spatial dimension");
  expect_setup_error(
      "name: 'c' type: 'Convolution' convolution_param { num_output: 2 kernel_size: 1 axis: 3 }", x, 1,
      "0 spatial axes");
  crema_blob_free(x);
}
END_TEST

/* ---- Deconvolution */

typedef struct deconv_case {
  const char *param;
  int n, c, h, w, m;
  conv_cfg cfg;
  bool bias;
} deconv_case;

static const deconv_case DECONV_CASES[] = {
    {"num_output: 3 kernel_size: 4 stride: 2 pad: 1", 2, 2, 4, 5, 3, {4, 4, 2, 2, 1, 1, 1, 1, 1}, true},
    {"num_output: 4 kernel_h: 3 kernel_w: 2 stride_h: 1 stride_w: 3 pad_h: 1 pad_w: 0 dilation: 2",
     1,
     3,
     4,
     3,
     4,
     {3, 2, 1, 3, 1, 0, 2, 2, 1},
     true},
    {"num_output: 4 kernel_size: 3 group: 2 stride: 2", 2, 4, 3, 3, 4, {3, 3, 2, 2, 0, 0, 1, 1, 2}, true},
    {"num_output: 3 kernel_size: 3 group: 3 pad: 1", 2, 3, 4, 4, 3, {3, 3, 1, 1, 1, 1, 1, 1, 3}, true},
    {"num_output: 2 kernel_size: 1 bias_term: false", 2, 3, 4, 4, 2, {1, 1, 1, 1, 0, 0, 1, 1, 1}, false},
    {"num_output: 2 kernel_size: 1 bias_term: false", 1, 3, 32, 32, 2, {1, 1, 1, 1, 0, 0, 1, 1, 1}, false},
};

START_TEST(test_deconv_forward_matches_reference) {
  for (size_t t = 0; t < sizeof DECONV_CASES / sizeof DECONV_CASES[0]; t++) {
    const deconv_case *dc = &DECONV_CASES[t];
    crema_blob *x = blob4(dc->n, dc->c, dc->h, dc->w, 300 + t);
    run r = run_forward(conv_text("Deconvolution", dc->param), 1, &x, 1);
    crema_blob *wb = r.l->blobs[0];
    ck_assert_int_eq(wb->shape[0], dc->c);
    ck_assert_int_eq(wb->shape[1], dc->m / dc->cfg.group);
    int ho, wo;
    double *want = ref_deconv(x, wb, dc->bias ? r.l->blobs[1]->data : NULL, dc->cfg, dc->m, &ho, &wo);
    ck_assert_int_eq(r.top[0]->shape[1], dc->m);
    ck_assert_int_eq(r.top[0]->shape[2], ho);
    ck_assert_int_eq(r.top[0]->shape[3], wo);
    char what[64];
    snprintf(what, sizeof what, "deconvolution case %zu", t);
    expect_close(r.top[0]->data, want, r.top[0]->count, what);
    free(want);
    run_free(&r);
    crema_blob_free(x);
  }
}
END_TEST

START_TEST(test_deconv_gradients) {
  for (size_t t = 0; t < sizeof DECONV_CASES / sizeof DECONV_CASES[0]; t++) {
    const deconv_case *dc = &DECONV_CASES[t];
    crema_blob *x = blob4(dc->n, dc->c, dc->h, dc->w, 400 + t);
    Crema__LayerParameter *p = test_layer_param(conv_text("Deconvolution", dc->param));
    gradcheck_opts o = gradcheck_defaults();
    if (dc->h * dc->w >= 1024) o.max_per_blob = 150;
    gradcheck_layer(p, 1, &x, 1, NULL, &o);
    crema_message_free(p);
    crema_blob_free(x);
  }
}
END_TEST

/* FCN-style 2x upsampling: a group-per-channel deconvolution with the bilinear filler
 * interpolates, so a constant image stays constant away from the border. */
START_TEST(test_deconv_bilinear_upsampling) {
  crema_blob *x = blob4(1, 2, 4, 4, 0);
  for (size_t i = 0; i < x->count; i++) x->data[i] = 3.0f;
  run r = run_forward(
      "name: 'up' type: 'Deconvolution' convolution_param { num_output: 2 kernel_size: 4 stride: 2 "
      "pad: 1 group: 2 bias_term: false weight_filler { type: 'bilinear' } }",
      1, &x, 1);
  ck_assert_int_eq(r.top[0]->shape[2], 8);
  ck_assert_int_eq(r.top[0]->shape[3], 8);
  for (int c = 0; c < 2; c++)
    for (int h = 1; h < 7; h++)
      for (int w = 1; w < 7; w++) ck_assert_float_eq_tol(r.top[0]->data[(c * 8 + h) * 8 + w], 3.0f, 1e-5);
  run_free(&r);
  crema_blob_free(x);
}
END_TEST

START_TEST(test_deconv_errors) {
  crema_blob *x = blob4(1, 3, 5, 5, 1);
  /* stride * (in - 1) and the dilated kernel overflowed int before they were checked. */
  expect_setup_error(
      "name: 'd' type: 'Deconvolution' convolution_param { num_output: 2 kernel_size: 3 stride: 2147483647 }",
      x, 1, "layer \"d\" (Deconvolution): the 5x5 input with stride 2147483647");
  expect_setup_error("name: 'd' type: 'Deconvolution' convolution_param { num_output: 2 kernel_size: 3 "
                     "dilation: 2147483647 }",
                     x, 1, "output side above 2^31-1");
  expect_setup_error(
      "name: 'd' type: 'Deconvolution' convolution_param { num_output: 2 kernel_size: 3 pad: 9 }", x, 1,
      "empty");
  crema_blob_free(x);
}
END_TEST

/* ---- Pooling */

static crema_blob *ramp(int n, int c, int h, int w) {
  crema_blob *b = blob4(n, c, h, w, 0);
  for (size_t i = 0; i < b->count; i++) b->data[i] = (float)(i % (size_t)(h * w)) + 1.0f;
  return b;
}

START_TEST(test_pool_max_ceil_and_floor) {
  crema_blob *x = ramp(1, 1, 3, 3); /* 1..9 */
  run r =
      run_forward("name: 'p' type: 'Pooling' pooling_param { pool: MAX kernel_size: 2 stride: 2 }", 1, &x, 2);
  ck_assert_int_eq(r.top[0]->shape[2], 2); /* ceil((3 - 2) / 2) + 1 */
  ck_assert_int_eq(r.top[0]->shape[3], 2);
  const float want[4] = {5, 6, 8, 9}, mask[4] = {4, 5, 7, 8};
  for (int i = 0; i < 4; i++) {
    ck_assert_float_eq(r.top[0]->data[i], want[i]);
    ck_assert_float_eq(r.top[1]->data[i], mask[i]);
  }
  run_free(&r);
  run f = run_forward("name: 'p' type: 'Pooling' pooling_param { pool: MAX kernel_size: 2 stride: 2 "
                      "round_mode: FLOOR }",
                      1, &x, 1);
  ck_assert_int_eq(f.top[0]->shape[2], 1);
  ck_assert_float_eq(f.top[0]->data[0], 5.0f);
  run_free(&f);
  crema_blob_free(x);
}
END_TEST

/* With padding, a last window starting in the bottom/right padding is dropped. */
START_TEST(test_pool_pad_drops_last_window) {
  crema_blob *x = ramp(1, 1, 3, 3);
  run r = run_forward("name: 'p' type: 'Pooling' pooling_param { pool: MAX kernel_size: 2 stride: 2 pad: 1 }",
                      1, &x, 1);
  /* ceil((3 + 2 - 2) / 2) + 1 = 3, but (3 - 1) * 2 = 4 >= 3 + 1, so 2. */
  ck_assert_int_eq(r.top[0]->shape[2], 2);
  ck_assert_int_eq(r.top[0]->shape[3], 2);
  const float want[4] = {1, 3, 7, 9};
  for (int i = 0; i < 4; i++) ck_assert_float_eq(r.top[0]->data[i], want[i]);
  run_free(&r);
  crema_blob_free(x);
}
END_TEST

/* AVE divides by the window clipped to in + pad: padding cells count, cells beyond do not. */
START_TEST(test_pool_ave_divisor) {
  crema_blob *x = ramp(1, 1, 4, 4); /* 1..16 */
  run r = run_forward("name: 'p' type: 'Pooling' pooling_param { pool: AVE kernel_size: 3 stride: 2 pad: 1 }",
                      1, &x, 1);
  ck_assert_int_eq(r.top[0]->shape[2], 3);
  const float *y = r.top[0]->data;
  ck_assert_float_eq_tol(y[0], (1 + 2 + 5 + 6) / 9.0f, 1e-6);         /* 3x3 window, 4 real cells */
  ck_assert_float_eq_tol(y[1], (2 + 3 + 4 + 6 + 7 + 8) / 9.0f, 1e-6); /* rows -1..1, cols 1..3 */
  ck_assert_float_eq_tol(y[2], (4 + 8) / 6.0f, 1e-6);                 /* cols 3..4 (4 = pad): 3x2 */
  ck_assert_float_eq_tol(y[8], 16 / 4.0f, 1e-6);                      /* rows 3..4, cols 3..4 */
  ck_assert_float_eq_tol(y[4], (6 + 7 + 8 + 10 + 11 + 12 + 14 + 15 + 16) / 9.0f, 1e-6);
  run_free(&r);
  crema_blob_free(x);
}
END_TEST

START_TEST(test_pool_global_and_rect) {
  crema_blob *x = blob4(2, 3, 5, 4, 8);
  run g = run_forward("name: 'p' type: 'Pooling' pooling_param { pool: AVE global_pooling: true }", 1, &x, 1);
  run m = run_forward("name: 'p' type: 'Pooling' pooling_param { pool: MAX global_pooling: true }", 1, &x, 1);
  ck_assert_int_eq(g.top[0]->shape[2], 1);
  ck_assert_int_eq(g.top[0]->shape[3], 1);
  for (int pl = 0; pl < 6; pl++) {
    double s = 0, mx = -DBL_MAX;
    for (int k = 0; k < 20; k++) {
      s += x->data[pl * 20 + k];
      mx = fmax(mx, x->data[pl * 20 + k]);
    }
    ck_assert_float_eq_tol(g.top[0]->data[pl], s / 20, 1e-5);
    ck_assert_float_eq(m.top[0]->data[pl], (float)mx);
  }
  run_free(&g);
  run_free(&m);
  run r =
      run_forward("name: 'p' type: 'Pooling' pooling_param { pool: MAX kernel_h: 3 kernel_w: 2 stride_h: 2 "
                  "stride_w: 1 pad_h: 1 pad_w: 0 }",
                  1, &x, 1);
  /* H: ceil((5 + 2 - 3) / 2) + 1 = 3; W: ceil((4 - 2) / 1) + 1 = 3 */
  ck_assert_int_eq(r.top[0]->shape[2], 3);
  ck_assert_int_eq(r.top[0]->shape[3], 3);
  for (int pl = 0; pl < 6; pl++)
    for (int oh = 0; oh < 3; oh++)
      for (int ow = 0; ow < 3; ow++) {
        float best = -FLT_MAX;
        for (int ih = oh * 2 - 1; ih < oh * 2 + 2; ih++)
          for (int iw = ow; iw < ow + 2; iw++)
            if (ih >= 0 && ih < 5) best = fmaxf(best, x->data[pl * 20 + ih * 4 + iw]);
        ck_assert_float_eq(r.top[0]->data[pl * 9 + oh * 3 + ow], best);
      }
  run_free(&r);
  crema_blob_free(x);
}
END_TEST

/* Distinct, well-separated values so finite differences never swap a max. */
static crema_blob *separated(int n, int c, int h, int w, uint64_t seed) {
  crema_blob *b = blob4(n, c, h, w, seed);
  size_t cnt = b->count;
  crema_rng r;
  crema_rng_seed(&r, seed, 5);
  for (size_t i = 0; i < cnt; i++) b->data[i] = (float)i;
  for (size_t i = cnt - 1; i > 0; i--) {
    size_t j = crema_rng_below(&r, (uint32_t)(i + 1));
    float t = b->data[i];
    b->data[i] = b->data[j];
    b->data[j] = t;
  }
  for (size_t i = 0; i < cnt; i++) b->data[i] = b->data[i] * 0.05f - (float)cnt * 0.025f;
  return b;
}

START_TEST(test_pool_gradients) {
  static const char *const cases[] = {
      "pool: MAX kernel_size: 3 stride: 2",
      "pool: MAX kernel_size: 3 stride: 2 pad: 1",
      "pool: MAX kernel_h: 3 kernel_w: 2 stride_h: 1 stride_w: 2 pad_h: 1 pad_w: 1",
      "pool: MAX global_pooling: true",
      "pool: AVE kernel_size: 3 stride: 2",
      "pool: AVE kernel_size: 3 stride: 2 pad: 1",
      "pool: AVE kernel_h: 2 kernel_w: 3 stride: 1 pad_h: 1 pad_w: 2",
      "pool: AVE global_pooling: true",
      "pool: AVE kernel_size: 2 stride: 2 round_mode: FLOOR",
  };
  for (size_t t = 0; t < sizeof cases / sizeof cases[0]; t++) {
    crema_blob *x = separated(2, 2, 6, 5, 500 + t);
    char text[256];
    snprintf(text, sizeof text, "name: 'p' type: 'Pooling' pooling_param { %s }", cases[t]);
    Crema__LayerParameter *p = test_layer_param(text);
    gradcheck_layer(p, 1, &x, 1, NULL, NULL);
    crema_message_free(p);
    crema_blob_free(x);
  }
}
END_TEST

/* Caffe's pooling loops as written in pooling_layer.cpp, one window at a time; except that an
 * empty window (ceil mode, no padding, past the input) divides by 1, not 0 (see below). */
typedef struct ref_win {
  int hs, he, ws, we, size; /* the window clipped to the input, and AVE's divisor */
} ref_win;

static ref_win ref_window(int oh, int ow, int H, int W, int kh, int kw, int sh, int sw, int ph, int pw) {
  int hs = oh * sh - ph, ws = ow * sw - pw;
  int he = hs + kh < H + ph ? hs + kh : H + ph, we = ws + kw < W + pw ? ws + kw : W + pw;
  const int size = (he - hs > 1 ? he - hs : 1) * (we - ws > 1 ? we - ws : 1);
  return (ref_win){hs < 0 ? 0 : hs, he < H ? he : H, ws < 0 ? 0 : ws, we < W ? we : W, size};
}

static void ref_pool(const float *x, int planes, int H, int W, int PH, int PW, int kh, int kw, int sh, int sw,
                     int ph, int pw, bool is_max, float *y, float *mask) {
  for (int pl = 0; pl < planes; pl++)
    for (int oh = 0; oh < PH; oh++)
      for (int ow = 0; ow < PW; ow++) {
        const ref_win r = ref_window(oh, ow, H, W, kh, kw, sh, sw, ph, pw);
        const int hs = r.hs, he = r.he, ws = r.ws, we = r.we, size = r.size;
        const float *src = x + (size_t)pl * H * W;
        const size_t o = ((size_t)pl * PH + oh) * PW + ow;
        float best = -FLT_MAX, sum = 0.0f;
        int arg = -1;
        for (int h = hs; h < he; h++)
          for (int w = ws; w < we; w++) {
            sum += src[h * W + w];
            if (src[h * W + w] > best) {
              best = src[h * W + w];
              arg = h * W + w;
            }
          }
        y[o] = is_max ? best : sum / (float)size;
        if (is_max) mask[o] = (float)arg;
      }
}

/* Caffe's backward loops: MAX scatters each output's gradient to its argmax, AVE spreads it
 * over its window (divided by the same size as forward), in output order. g starts zeroed. */
static void ref_pool_backward(const float *dy, int planes, int H, int W, int PH, int PW, int kh, int kw,
                              int sh, int sw, int ph, int pw, bool is_max, const float *mask, float *g) {
  for (int pl = 0; pl < planes; pl++)
    for (int oh = 0; oh < PH; oh++)
      for (int ow = 0; ow < PW; ow++) {
        const size_t o = ((size_t)pl * PH + oh) * PW + ow;
        float *dst = g + (size_t)pl * H * W;
        if (is_max) {
          if (mask[o] >= 0) dst[(int)mask[o]] += dy[o];
          continue;
        }
        const ref_win r = ref_window(oh, ow, H, W, kh, kw, sh, sw, ph, pw);
        for (int h = r.hs; h < r.he; h++)
          for (int w = r.ws; w < r.we; w++) dst[h * W + w] += dy[o] / (float)r.size;
      }
}

/* The vectorised row loops against Caffe's window loops, bit for bit: every kernel, stride and
 * pad up to 5 on odd and even sizes, ceil and floor, rectangles, global pooling. The data
 * hold many ties (a few distinct values) and, for MAX, -inf, -FLT_MAX and NaN, so the argmax
 * tie rule (the first maximum in row-major order wins) is exercised. Backward against Caffe's
 * scatter, bit for bit: output gradients of many magnitudes, so a sum in another order would
 * round differently where windows overlap. */
START_TEST(test_pool_matches_caffe_loops_bitwise) {
  /* 50 x 50: planes of 2048 floats or more prefetch the next plane in the padded MAX passes */
  static const int sizes[][2] = {{1, 1},   {3, 3},  {5, 7},  {8, 8},  {13, 11},
                                 {27, 27}, {2, 31}, {4, 45}, {50, 50}};
  static const int kernels[] = {1, 2, 3, 4, 5, 8, 9}; /* 8: AVE's widest with stride 1 in pooling_ave.c */
  int n_cases = 0;
  for (size_t si = 0; si < sizeof sizes / sizeof sizes[0]; si++)
    for (size_t ki = 0; ki < sizeof kernels / sizeof kernels[0]; ki++)
      for (int stride = 1, k = kernels[ki]; stride <= 3; stride++)
        for (int pad = 0; pad < k && pad <= 2; pad++)
          for (int mode = 0; mode < 4; mode++) { /* bit 0: AVE; bit 1: floor */
            const int H = sizes[si][0], W = sizes[si][1];
            const bool ave = mode & 1, fl = mode & 2;
            const int kh = k, kw = k > 1 && (si & 1) ? k - 1 : k; /* rectangles on every other size */
            if (H + 2 * pad < kh || W + 2 * pad < kw || pad >= kw) continue;
            crema_blob *x = blob4(2, 3, H, W, 700 + (uint64_t)n_cases);
            for (size_t i = 0; i < x->count; i++) {
              x->data[i] = (float)((int)(x->data[i] * 2.0f)); /* ties */
              if (!ave && i % 17 == 3) x->data[i] = -INFINITY;
              if (!ave && i % 23 == 5) x->data[i] = NAN;
              if (!ave && i % 29 == 7) x->data[i] = -FLT_MAX;
              /* AVE: many magnitudes, so a sum in another order rounds differently; -0 and, in
               * a few planes, infinities of both signs */
              if (ave) x->data[i] = ldexpf(x->data[i] + 0.37f * (float)(i % 11), (int)(i % 19) - 9);
              if (ave && i % 31 == 4) x->data[i] = -0.0f;
              if (ave && si == 3 && i % 37 == 6) x->data[i] = i % 2 ? INFINITY : -INFINITY;
            }
            char text[256];
            snprintf(
                text, sizeof text,
                "name: 'p' type: 'Pooling' pooling_param { pool: %s kernel_h: %d kernel_w: %d stride: %d "
                "pad: %d round_mode: %s }",
                ave ? "AVE" : "MAX", kh, kw, stride, pad, fl ? "FLOOR" : "CEIL");
            run r = run_forward(text, 1, &x, ave ? 1 : 2);
            const int PH = r.top[0]->shape[2], PW = r.top[0]->shape[3];
            float *y = malloc(r.top[0]->count * sizeof(float)), *m = malloc(r.top[0]->count * sizeof(float));
            ref_pool(x->data, 6, H, W, PH, PW, kh, kw, stride, stride, pad, pad, !ave, y, m);
            ck_assert_msg(!memcmp(y, r.top[0]->data, r.top[0]->count * sizeof(float)), "%s on %dx%d: values",
                          text, H, W);
            if (!ave)
              ck_assert_msg(!memcmp(m, r.top[1]->data, r.top[0]->count * sizeof(float)),
                            "%s on %dx%d: argmax", text, H, W);
            for (size_t i = 0; i < r.top[0]->count; i++)
              r.top[0]->diff[i] =
                  ldexpf(((float)((i * 2654435761u) % 1009) - 500.0f) / 7.0f, (int)(i % 13) - 6);
            const bool down = true;
            crema_layer_backward(r.l, r.top, &down, &x);
            float *g = calloc(x->count, sizeof(float));
            ref_pool_backward(r.top[0]->diff, 6, H, W, PH, PW, kh, kw, stride, stride, pad, pad, !ave, m, g);
            ck_assert_msg(!memcmp(g, x->diff, x->count * sizeof(float)), "%s on %dx%d: gradient", text, H, W);
            free(g);
            free(y);
            free(m);
            run_free(&r);
            crema_blob_free(x);
            n_cases++;
          }
  ck_assert_int_gt(n_cases, 500);
  for (int ave = 0; ave < 2; ave++) { /* global pooling */
    crema_blob *x = blob4(2, 5, 7, 9, 77);
    for (size_t i = 0; i < x->count; i++) x->data[i] = (float)((int)(x->data[i] * 2.0f));
    run r = run_forward(ave ? "name: 'p' type: 'Pooling' pooling_param { pool: AVE global_pooling: true }"
                            : "name: 'p' type: 'Pooling' pooling_param { pool: MAX global_pooling: true }",
                        1, &x, ave ? 1 : 2);
    float y[10], m[10];
    ref_pool(x->data, 10, 7, 9, 1, 1, 7, 9, 1, 1, 0, 0, !ave, y, m);
    ck_assert(!memcmp(y, r.top[0]->data, sizeof y));
    if (!ave) ck_assert(!memcmp(m, r.top[1]->data, sizeof m));
    run_free(&r);
    crema_blob_free(x);
  }
}
END_TEST

/* A stride near INT_MAX: in ceil mode without padding Caffe keeps a last window that starts
 * far past the input. o * stride and the window end once overflowed int (UBSan); such a
 * window is empty: AVE gives 0, MAX gives -FLT_MAX with no argmax, as in Caffe. */
START_TEST(test_pool_huge_stride) {
  crema_blob *x = blob4(1, 1, 8, 8, 3);
  run r = run_forward(
      "name: 'p' type: 'Pooling' pooling_param { pool: AVE kernel_size: 3 stride: 2147483647 }", 1, &x, 1);
  ck_assert_int_eq(r.top[0]->shape[2], 2);
  ck_assert_int_eq(r.top[0]->shape[3], 2);
  double mean = 0;
  for (int h = 0; h < 3; h++)
    for (int w = 0; w < 3; w++) mean += x->data[h * 8 + w] / 9.0;
  const double want[4] = {mean, 0, 0, 0};
  expect_close(r.top[0]->data, want, 4, "AVE, huge stride");
  for (int i = 0; i < 4; i++) r.top[0]->diff[i] = 1.0f;
  const bool down = true;
  crema_layer_backward(r.l, r.top, &down, &x);
  ck_assert_float_eq_tol(x->diff[0], 1.0f / 9.0f, 1e-6f);
  ck_assert_float_eq(x->diff[8 * 8 - 1], 0.0f);
  run_free(&r);
  r = run_forward("name: 'p' type: 'Pooling' pooling_param { pool: MAX kernel_size: 3 stride: 2147483647 }",
                  1, &x, 1);
  ck_assert_float_eq(r.top[0]->data[3], -FLT_MAX);
  for (int i = 0; i < 4; i++) r.top[0]->diff[i] = 1.0f;
  crema_layer_backward(r.l, r.top, &down, &x);
  run_free(&r);
  crema_blob_free(x);
}
END_TEST

START_TEST(test_pool_errors) {
  crema_blob *x = blob4(1, 1, 4, 4, 1);
  expect_setup_error("name: 'p' type: 'Pooling' pooling_param { pool: MAX }", x, 1, "kernel_size");
  expect_setup_error("name: 'p' type: 'Pooling' pooling_param { kernel_size: 2 kernel_h: 2 kernel_w: 2 }", x,
                     1, "kernel_size");
  expect_setup_error("name: 'p' type: 'Pooling' pooling_param { kernel_size: 2 pad: 2 }", x, 1,
                     "smaller than the kernel");
  expect_setup_error("name: 'p' type: 'Pooling' pooling_param { global_pooling: true kernel_size: 2 }", x, 1,
                     "global_pooling");
  expect_setup_error("name: 'p' type: 'Pooling' pooling_param { pool: AVE kernel_size: 2 }", x, 2, "mask");
  /* Hostile sizes: past INT_MAX, or a pad whose padded input overflowed int. */
  expect_setup_error("name: 'p' type: 'Pooling' pooling_param { kernel_size: 4000000000 }", x, 1,
                     "pooling_param.kernel_size 4000000000 is too large");
  expect_setup_error("name: 'p' type: 'Pooling' pooling_param { kernel_size: 2 stride: 4000000000 }", x, 1,
                     "pooling_param.stride 4000000000 is too large");
  expect_setup_error("name: 'p' type: 'Pooling' pooling_param { kernel_size: 2147483647 pad: 2147483646 }", x,
                     1, "layer \"p\" (Pooling): the 4x4 input with pad 2147483646,2147483646 exceeds 2^31-1");
  crema_blob_free(x);
}
END_TEST

/* ---- InnerProduct */

static double *ref_ip(const crema_blob *x, const crema_blob *w, const float *bias, int axis, bool transpose,
                      int nout) {
  const size_t M = crema_blob_count_range(x, 0, axis), K = crema_blob_count_range(x, axis, x->num_axes);
  double *y = calloc(M * (size_t)nout, sizeof(double));
  for (size_t i = 0; i < M; i++)
    for (int j = 0; j < nout; j++) {
      double s = bias ? bias[j] : 0.0;
      for (size_t k = 0; k < K; k++)
        s += (double)x->data[i * K + k] * (transpose ? w->data[k * nout + j] : w->data[(size_t)j * K + k]);
      y[i * nout + j] = s;
    }
  return y;
}

START_TEST(test_ip_forward_and_gradients) {
  static const struct {
    const char *param;
    int axis; /* canonical */
    bool transpose, bias;
  } cases[] = {
      {"num_output: 4", 1, false, true},
      {"num_output: 3 axis: 2", 2, false, true},
      {"num_output: 5 axis: -1", 3, false, true},
      {"num_output: 4 transpose: true", 1, true, true},
      {"num_output: 2 axis: 2 transpose: true bias_term: false", 2, true, false},
  };
  for (size_t t = 0; t < sizeof cases / sizeof cases[0]; t++) {
    crema_blob *x = blob4(3, 2, 2, 3, 600 + t);
    char text[512];
    snprintf(text, sizeof text,
             "name: 'ip' type: 'InnerProduct' inner_product_param { %s weight_filler { type: 'gaussian' } "
             "bias_filler { type: 'gaussian' } }",
             cases[t].param);
    run r = run_forward(text, 1, &x, 1);
    const int nout = (int)r.p->inner_product_param->num_output;
    const size_t K = crema_blob_count_range(x, cases[t].axis, 4);
    ck_assert_int_eq(r.l->blobs[0]->shape[0], (cases[t].transpose ? (int)K : nout));
    ck_assert_int_eq(r.l->blobs[0]->shape[1], (cases[t].transpose ? nout : (int)K));
    ck_assert_int_eq(r.l->n_blobs, (cases[t].bias ? 2 : 1));
    ck_assert_int_eq(r.top[0]->num_axes, cases[t].axis + 1);
    ck_assert_int_eq(r.top[0]->shape[cases[t].axis], nout);
    double *want = ref_ip(x, r.l->blobs[0], cases[t].bias ? r.l->blobs[1]->data : NULL, cases[t].axis,
                          cases[t].transpose, nout);
    expect_close(r.top[0]->data, want, r.top[0]->count, cases[t].param);
    free(want);
    run_free(&r);
    Crema__LayerParameter *p = test_layer_param(text);
    gradcheck_layer(p, 1, &x, 1, NULL, NULL);
    crema_message_free(p);
    crema_blob_free(x);
  }
}
END_TEST

START_TEST(test_ip_errors) {
  crema_blob *x = blob4(2, 3, 1, 1, 1);
  expect_setup_error("name: 'ip' type: 'InnerProduct' inner_product_param { }", x, 1, "num_output");
  expect_setup_error("name: 'ip' type: 'InnerProduct' inner_product_param { num_output: 4000000000 }", x, 1,
                     "num_output 4000000000 is too large");
  expect_setup_error("name: 'ip' type: 'InnerProduct' inner_product_param { num_output: 2 axis: 4 }", x, 1,
                     "axis");
  run r = run_forward("name: 'ip' type: 'InnerProduct' inner_product_param { num_output: 2 }", 1, &x, 1);
  crema_error err;
  ck_assert_int_eq(crema_blob_reshape4(x, 2, 4, 1, 1, &err), 0);
  ck_assert_int_ne(crema_layer_reshape(r.l, &x, r.top, &err), 0);
  ck_assert_msg(strstr(err.msg, "incompatible"), "%s", err.msg);
  run_free(&r);
  crema_blob_free(x);
}
END_TEST

/* ---- LRN */

/* y = x * scale^-beta in double; the scales go to scale_out when it is not NULL. */
static double *ref_lrn_scales(const crema_blob *x, int size, double alpha, double beta, double k, bool within,
                              double *scale_out) {
  const int N = x->shape[0], C = x->shape[1], H = x->shape[2], W = x->shape[3], pre = (size - 1) / 2;
  double *y = calloc(x->count, sizeof(double));
  for (int n = 0; n < N; n++)
    for (int c = 0; c < C; c++)
      for (int h = 0; h < H; h++)
        for (int w = 0; w < W; w++) {
          double s = 0;
          if (within) {
            for (int i = h - pre; i <= h + pre; i++)
              for (int j = w - pre; j <= w + pre; j++)
                if (i >= 0 && i < H && j >= 0 && j < W) {
                  double v = x->data[(((size_t)n * C + c) * H + i) * W + j];
                  s += v * v;
                }
            s = 1.0 + alpha / (size * size) * s;
          } else {
            for (int cc = c - pre; cc <= c + pre; cc++)
              if (cc >= 0 && cc < C) {
                double v = x->data[(((size_t)n * C + cc) * H + h) * W + w];
                s += v * v;
              }
            s = k + alpha / size * s;
          }
          const size_t i = (((size_t)n * C + c) * H + h) * W + w;
          y[i] = x->data[i] * pow(s, -beta);
          if (scale_out) scale_out[i] = s;
        }
  return y;
}

static double *ref_lrn(const crema_blob *x, int size, double alpha, double beta, double k, bool within) {
  return ref_lrn_scales(x, size, alpha, beta, k, within, NULL);
}

/* dL/dx for dL/dy = dy, exactly (in double): dx_j = dy_j s_j^-beta - (2 alpha beta / norm) x_j
 * * (sum of dy_i x_i s_i^(-beta-1) over the positions i whose window holds j, which are the
 * positions in j's window: the windows are symmetric), norm = size (across channels) or
 * size^2 (within a channel). */
static double *ref_lrn_backward(const crema_blob *x, const float *dy, int size, double alpha, double beta,
                                double k, bool within) {
  const int N = x->shape[0], C = x->shape[1], H = x->shape[2], W = x->shape[3], pre = (size - 1) / 2;
  double *s = calloc(x->count, sizeof(double)), *dx = calloc(x->count, sizeof(double));
  free(ref_lrn_scales(x, size, alpha, beta, k, within, s));
  const double norm = within ? (double)size * size : size;
#define AT(n, c, h, w) ((((size_t)(n)*C + (c)) * H + (h)) * W + (w))
  for (int n = 0; n < N; n++)
    for (int c = 0; c < C; c++)
      for (int h = 0; h < H; h++)
        for (int w = 0; w < W; w++) {
          double acc = 0;
          for (int cc = within ? c : c - pre; cc <= (within ? c : c + pre); cc++)
            for (int i = within ? h - pre : h; i <= (within ? h + pre : h); i++)
              for (int jj = within ? w - pre : w; jj <= (within ? w + pre : w); jj++)
                if (cc >= 0 && cc < C && i >= 0 && i < H && jj >= 0 && jj < W) {
                  const size_t o = AT(n, cc, i, jj);
                  acc += dy[o] * x->data[o] * pow(s[o], -beta - 1);
                }
          const size_t j = AT(n, c, h, w);
          dx[j] = dy[j] * pow(s[j], -beta) - 2 * alpha * beta / norm * x->data[j] * acc;
        }
#undef AT
  free(s);
  return dx;
}

/* Backward of the layer in r (forward already run) against ref_lrn_backward, for a random dy. */
static void expect_lrn_gradient(run *r, crema_blob *x, int size, double alpha, double beta, double k,
                                bool within, const char *what) {
  crema_blob *dy = blob4(x->shape[0], x->shape[1], x->shape[2], x->shape[3], 77); /* y stays */
  memcpy(r->top[0]->diff, dy->data, dy->count * sizeof(float));
  crema_blob_free(dy);
  const bool down = true;
  crema_layer_backward(r->l, r->top, &down, &x);
  double *want = ref_lrn_backward(x, r->top[0]->diff, size, alpha, beta, k, within);
  expect_close(x->diff, want, x->count, what);
  free(want);
}

START_TEST(test_lrn_forward_and_gradients) {
  static const struct {
    const char *param;
    int size;
    double alpha, beta, k;
    bool within;
  } cases[] = {
      {"local_size: 5 alpha: 1 beta: 0.75", 5, 1, 0.75, 1, false},
      {"local_size: 3 alpha: 0.5 beta: 0.6 k: 2", 3, 0.5, 0.6, 2, false},
      {"local_size: 9 alpha: 2 beta: 0.75 k: 1.5", 9, 2, 0.75, 1.5, false}, /* window wider than C */
      {"local_size: 3 alpha: 1 beta: 0.75 norm_region: WITHIN_CHANNEL", 3, 1, 0.75, 1, true},
      /* Caffe's WITHIN_CHANNEL always uses shift 1: k is ignored. */
      {"local_size: 5 alpha: 2 beta: 0.5 k: 3 norm_region: WITHIN_CHANNEL", 5, 2, 0.5, 1, true},
  };
  for (size_t t = 0; t < sizeof cases / sizeof cases[0]; t++) {
    crema_blob *x = blob4(2, 7, 5, 4, 700 + t);
    char text[256];
    snprintf(text, sizeof text, "name: 'n' type: 'LRN' lrn_param { %s }", cases[t].param);
    run r = run_forward(text, 1, &x, 1);
    double *want = ref_lrn(x, cases[t].size, cases[t].alpha, cases[t].beta, cases[t].k, cases[t].within);
    expect_close(r.top[0]->data, want, r.top[0]->count, cases[t].param);
    free(want);
    expect_lrn_gradient(&r, x, cases[t].size, cases[t].alpha, cases[t].beta, cases[t].k, cases[t].within,
                        cases[t].param);
    run_free(&r);
    Crema__LayerParameter *p = test_layer_param(text);
    gradcheck_layer(p, 1, &x, 1, NULL, NULL);
    crema_message_free(p);
    crema_blob_free(x);
  }
}
END_TEST

/* Block boundaries of the across-channel loops (128 positions forward, 64 backward) inside
 * one plane of 323, the last blocks part ones. */
START_TEST(test_lrn_large_plane) {
  crema_blob *x = blob4(1, 4, 17, 19, 9);
  run r = run_forward("name: 'n' type: 'LRN' lrn_param { local_size: 3 alpha: 1 beta: 0.75 }", 1, &x, 1);
  double *want = ref_lrn(x, 3, 1, 0.75, 1, false);
  expect_close(r.top[0]->data, want, r.top[0]->count, "large plane");
  free(want);
  expect_lrn_gradient(&r, x, 3, 1, 0.75, 1, false, "large plane, gradient");
  run_free(&r);
  crema_blob_free(x);
}
END_TEST

/* A window far wider than the input covers all of it: with local_size 2^31-1 the half-window
 * arithmetic once overflowed int (WITHIN_CHANNEL) and read outside the input. */
START_TEST(test_lrn_huge_window) {
  crema_blob *x = blob4(2, 3, 2, 2, 5);
  /* alpha = size, so the scale is k + (sum of x^2 over every channel). */
  run r = run_forward(
      "name: 'n' type: 'LRN' lrn_param { local_size: 2147483647 alpha: 2147483647 beta: 0.75 }", 1, &x, 1);
  double *want = calloc(x->count, sizeof(double));
  const size_t hw = 4;
  for (int n = 0; n < 2; n++)
    for (size_t q = 0; q < hw; q++) {
      double sum = 0;
      for (int c = 0; c < 3; c++)
        sum += (double)x->data[((size_t)n * 3 + c) * hw + q] * x->data[((size_t)n * 3 + c) * hw + q];
      for (int c = 0; c < 3; c++) {
        const size_t i = ((size_t)n * 3 + c) * hw + q;
        want[i] = x->data[i] * pow(1.0 + sum, -0.75);
      }
    }
  expect_close(r.top[0]->data, want, r.top[0]->count, "across, huge window");
  free(want);
  run_free(&r);
  r = run_forward("name: 'n' type: 'LRN' lrn_param { local_size: 2147483647 norm_region: WITHIN_CHANNEL }", 1,
                  &x, 1);
  for (size_t i = 0; i < r.top[0]->count; i++) {
    ck_assert_msg(isfinite(r.top[0]->data[i]), "within, huge window: element %zu is %g", i,
                  r.top[0]->data[i]);
    r.top[0]->diff[i] = 1.0f;
  }
  const bool down = true;
  crema_layer_backward(r.l, r.top, &down, &x);
  for (size_t i = 0; i < x->count; i++)
    ck_assert_msg(isfinite(x->diff[i]), "within, huge window: gradient %zu is %g", i, x->diff[i]);
  run_free(&r);
  crema_blob_free(x);
}
END_TEST

START_TEST(test_lrn_errors) {
  crema_blob *x = blob4(1, 3, 4, 4, 1);
  expect_setup_error("name: 'n' type: 'LRN' lrn_param { local_size: 4 }", x, 1, "odd");
  expect_setup_error("name: 'n' type: 'LRN' lrn_param { local_size: 4000000001 }", x, 1,
                     "lrn_param.local_size 4000000001 is too large");
  const int shape[2] = {2, 3};
  crema_blob *x2 = blobn(2, shape, 1);
  expect_setup_error("name: 'n' type: 'LRN'", x2, 1, "4 axes");
  crema_blob_free(x2);
  crema_blob_free(x);
}
END_TEST

int main(void) {
  Suite *s = suite_create("layers_vision");
  TCase *conv = tcase_create("convolution");
  tcase_set_timeout(conv, 600);
  tcase_add_test(conv, test_conv_forward_matches_reference);
  tcase_add_test(conv, test_conv_shapes);
  tcase_add_test(conv, test_conv_axis_and_two_bottoms);
  tcase_add_test(conv, test_conv_gradients);
  tcase_add_loop_test(conv, test_conv_chunked_backward_matches_reference, 0, 2);
  tcase_add_test(conv, test_conv_skips_frozen_and_unpropagated);
  tcase_add_test(conv, test_conv_reshape);
  tcase_add_test(conv, test_conv_errors);
  suite_add_tcase(s, conv);
  TCase *deconv = tcase_create("deconvolution");
  tcase_set_timeout(deconv, 600);
  tcase_add_test(deconv, test_deconv_forward_matches_reference);
  tcase_add_test(deconv, test_deconv_gradients);
  tcase_add_test(deconv, test_deconv_bilinear_upsampling);
  tcase_add_test(deconv, test_deconv_chunked_forward);
  tcase_add_test(deconv, test_deconv_errors);
  suite_add_tcase(s, deconv);
  TCase *pool = tcase_create("pooling");
  tcase_set_timeout(pool, 600);
  tcase_add_test(pool, test_pool_max_ceil_and_floor);
  tcase_add_test(pool, test_pool_pad_drops_last_window);
  tcase_add_test(pool, test_pool_ave_divisor);
  tcase_add_test(pool, test_pool_global_and_rect);
  tcase_add_test(pool, test_pool_gradients);
  tcase_add_test(pool, test_pool_matches_caffe_loops_bitwise);
  tcase_add_test(pool, test_pool_huge_stride);
  tcase_add_test(pool, test_pool_errors);
  suite_add_tcase(s, pool);
  TCase *ip = tcase_create("inner_product");
  tcase_set_timeout(ip, 600);
  tcase_add_test(ip, test_ip_forward_and_gradients);
  tcase_add_test(ip, test_ip_errors);
  suite_add_tcase(s, ip);
  TCase *lrn = tcase_create("lrn");
  tcase_set_timeout(lrn, 600);
  tcase_add_test(lrn, test_lrn_forward_and_gradients);
  tcase_add_test(lrn, test_lrn_large_plane);
  tcase_add_test(lrn, test_lrn_huge_window);
  tcase_add_test(lrn, test_lrn_errors);
  suite_add_tcase(s, lrn);
  return test_run_suite(s);
}
