/* test_layers_conv_nd.c -- Convolution and Deconvolution over 1 and 3 spatial axes (Caffe's
 * N-d path, as C3D-style nets use it): forward against direct loops over the definitions,
 * the N-d path on 2-d input (force_nd_im2col) against crema's 2-d engine, and numerical
 * gradient checks with pad, stride, dilation, groups and bias. */
#include <check.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "support/run.h"
#include "layers/layer.h"
#include "support/gradcheck.h"
#include "support/layer_run.h"
#include "support/textproto.h"

/* Direct 3-d convolution: x (N, C, D, H, W), w (M, C/G, kd, kh, kw), same k/s/p/d on every axis. */
static double conv3(const crema_blob *x, const crema_blob *w, const float *b, int G, int k, int s, int p,
                    int dil, int n, int m, int od, int oh, int ow) {
  const int C = x->shape[1], D = x->shape[2], H = x->shape[3], W = x->shape[4], M = w->shape[0], cg = C / G;
  const int g = m / (M / G);
  double acc = b ? b[m] : 0.0;
  for (int c = 0; c < cg; c++)
    for (int a = 0; a < k; a++)
      for (int i = 0; i < k; i++)
        for (int j = 0; j < k; j++) {
          const int zd = od * s - p + a * dil, zh = oh * s - p + i * dil, zw = ow * s - p + j * dil;
          if (zd < 0 || zd >= D || zh < 0 || zh >= H || zw < 0 || zw >= W) continue;
          acc += (double)x->data[((((size_t)n * C + g * cg + c) * D + zd) * H + zh) * W + zw] *
                 w->data[((((size_t)m * cg + c) * k + a) * k + i) * k + j];
        }
  return acc;
}

START_TEST(conv3d_forward_matches_definition) {
  crema_blob *b[] = {blob_of(5, (int[]){2, 4, 5, 6, 5})};
  gradcheck_fill_gaussian(b[0], 1.0f, 1);
  const char *text =
      "name: 'c' type: 'Convolution' convolution_param { num_output: 6 kernel_size: 3 stride: 2 pad: 1 "
      "dilation: 1 group: 2 weight_filler { type: 'gaussian' std: 0.3 } bias_filler { type: 'gaussian' } }";
  run r;
  run_setup(&r, text, 1, b, 1);
  run_forward(&r);
  const int O[3] = {3, 3, 3}; /* (5 + 2 - 3) / 2 + 1, (6 + 2 - 3) / 2 + 1, ... */
  ck_assert_int_eq(r.top[0]->num_axes, 5);
  ck_assert_int_eq(r.top[0]->shape[1], 6);
  for (int a = 0; a < 3; a++) ck_assert_int_eq(r.top[0]->shape[2 + a], O[a]);
  ck_assert_int_eq(r.l->blobs[0]->num_axes, 5);
  ck_assert_int_eq(r.l->blobs[0]->shape[1], 2);
  for (int n = 0; n < 2; n++)
    for (int m = 0; m < 6; m++)
      for (int d = 0; d < 3; d++)
        for (int h = 0; h < 3; h++)
          for (int w = 0; w < 3; w++) {
            const double want = conv3(b[0], r.l->blobs[0], r.l->blobs[1]->data, 2, 3, 2, 1, 1, n, m, d, h, w);
            ck_assert_double_eq_tol(r.top[0]->data[((((size_t)n * 6 + m) * 3 + d) * 3 + h) * 3 + w], want,
                                    1e-4);
          }
  run_free(&r);
  free_blobs(1, b);
}
END_TEST

/* force_nd_im2col on a 2-d input: the N-d path gives the 2-d engine's output. */
START_TEST(nd_path_equals_2d_engine) {
  crema_blob *b[] = {blob_of(4, (int[]){2, 3, 9, 8})};
  gradcheck_fill_gaussian(b[0], 1.0f, 2);
  const char *common =
      "convolution_param { num_output: 4 kernel_size: 3 kernel_size: 2 stride: 2 pad: 1 dilation: 2 "
      "weight_filler { type: 'gaussian' } bias_filler { type: 'gaussian' } %s }";
  for (int deconv = 0; deconv < 2; deconv++) {
    char t1[512], t2[512], tail[256];
    snprintf(tail, sizeof tail, common, "");
    snprintf(t1, sizeof t1, "name: 'c' type: '%s' %s", deconv ? "Deconvolution" : "Convolution", tail);
    snprintf(tail, sizeof tail, common, "force_nd_im2col: true");
    snprintf(t2, sizeof t2, "name: 'c' type: '%s' %s", deconv ? "Deconvolution" : "Convolution", tail);
    run a, c;
    run_setup(&a, t1, 1, b, 1);
    run_setup(&c, t2, 1, b, 1);
    ck_assert_int_eq(a.l->n_blobs, c.l->n_blobs);
    for (int k = 0; k < a.l->n_blobs; k++) {
      ck_assert(crema_blob_same_shape(a.l->blobs[k], c.l->blobs[k]));
      memcpy(c.l->blobs[k]->data, a.l->blobs[k]->data, a.l->blobs[k]->count * sizeof(float));
    }
    run_forward(&a);
    run_forward(&c);
    ck_assert(crema_blob_same_shape(a.top[0], c.top[0]));
    for (size_t i = 0; i < a.top[0]->count; i++)
      ck_assert_msg(fabsf(a.top[0]->data[i] - c.top[0]->data[i]) < 1e-4f, "%s [%zu]: %g vs %g", t1, i,
                    (double)a.top[0]->data[i], (double)c.top[0]->data[i]);
    run_free(&a);
    run_free(&c);
  }
  free_blobs(1, b);
}
END_TEST

static void grad(const char *text, int num_axes, const int *shape) {
  crema_blob *b = blob_of(num_axes, shape);
  gradcheck_fill_gaussian(b, 1.0f, 3);
  Crema__LayerParameter *p = test_layer_param(text);
  gradcheck_layer(p, 1, &b, 1, NULL, NULL);
  crema_message_free(p);
  crema_blob_free(b);
}

START_TEST(nd_gradients) {
  const int s3[5] = {1, 2, 4, 5, 4}, s1[3] = {2, 3, 9};
  grad("name: 'c' type: 'Convolution' convolution_param { num_output: 3 kernel_size: 2 stride: 1 pad: 1 "
       "weight_filler { type: 'gaussian' } bias_filler { type: 'gaussian' } }",
       5, s3);
  grad("name: 'c' type: 'Convolution' convolution_param { num_output: 4 kernel_size: 3 kernel_size: 2 "
       "kernel_size: 2 "
       "stride: 2 dilation: 1 group: 2 weight_filler { type: 'gaussian' } }",
       5, s3);
  grad("name: 'c' type: 'Convolution' convolution_param { num_output: 2 kernel_size: 3 dilation: 2 pad: 2 "
       "weight_filler { type: 'gaussian' } bias_filler { type: 'gaussian' } }",
       3, s1);
  grad("name: 'c' type: 'Deconvolution' convolution_param { num_output: 2 kernel_size: 2 stride: 2 "
       "weight_filler { type: 'gaussian' } bias_filler { type: 'gaussian' } }",
       5, s3);
  grad("name: 'c' type: 'Deconvolution' convolution_param { num_output: 4 kernel_size: 3 stride: 2 pad: 1 "
       "group: 2 "
       "weight_filler { type: 'gaussian' } }",
       3, (const int[]){2, 4, 5});
  /* Errors: the 2-d-only fields, and a kernel count for the wrong number of axes. */
  crema_blob *b[] = {blob_of(5, s3)};
  run r;
  crema_error err;
  ck_assert_int_eq(
      run_try(&r, "name: 'c' type: 'Convolution' convolution_param { num_output: 2 kernel_h: 2 kernel_w: 2 }",
              1, b, 1, &err),
      -1);
  ck_assert_msg(strstr(err.msg, "2-d convolution only"), "%s", err.msg);
  run_free(&r);
  ck_assert_int_eq(run_try(&r,
                           "name: 'c' type: 'Convolution' convolution_param { num_output: 2 kernel_size: 2 "
                           "kernel_size: 2 }",
                           1, b, 1, &err),
                   -1);
  ck_assert_msg(strstr(err.msg, "once per spatial axis (3)"), "%s", err.msg);
  run_free(&r);
  free_blobs(1, b);
}
END_TEST

int main(void) {
  Suite *s = suite_create("layers_conv_nd");
  TCase *tc = tcase_create("core");
  tcase_set_timeout(tc, 300);
  tcase_add_test(tc, conv3d_forward_matches_definition);
  tcase_add_test(tc, nd_path_equals_2d_engine);
  tcase_add_test(tc, nd_gradients);
  suite_add_tcase(s, tc);
  return test_run_suite(s);
}
