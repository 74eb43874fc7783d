/* test_forks.c -- what Caffe forks add and OpenCV's dnn reads: STOCHASTIC pooling (TRAIN
 * draws and TEST weighted average against references, gradients), pooling ceil_mode,
 * dropout scale_train, and NVIDIA Caffe's half-precision blobs (conversions, a FLOAT16
 * caffemodel written by `crema upgrade --fp16` and read back). */
#include <check.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "support/run.h"
#include "layers/layer.h"
#include "proto/io.h"
#include "proto/raw_blobs.h"
#include "support/gradcheck.h"
#include "support/layer_run.h"
#include "support/textproto.h"

static crema_layer *make(const char *text, Crema__Phase phase, crema_blob *b, crema_blob *t,
                         Crema__LayerParameter **p) {
  crema_error err;
  crema_layer *l;
  *p = test_layer_param(text);
  ck_assert_msg(crema_layer_create(*p, phase, 5, &l, &err) == 0, "%s", err.msg);
  ck_assert_msg(crema_layer_setup(l, 1, &b, 1, &t, &err) == 0, "%s", err.msg);
  return l;
}

START_TEST(stochastic_pooling) {
  crema_blob *b = blob_of(4, (int[]){2, 2, 7, 6}), *t = crema_blob_new();
  gradcheck_fill_uniform(b, 0.1f, 2.0f, 4);
  const char *text = "name: 'p' type: 'Pooling' pooling_param { pool: STOCHASTIC kernel_size: 3 stride: 2 }";
  Crema__LayerParameter *p;
  /* TEST: sum x^2 / sum x over each window (clipped at the input), shape as MAX pooling. */
  crema_layer *l = make(text, CREMA__PHASE__TEST, b, t, &p);
  crema_error err;
  ck_assert_int_eq(crema_layer_forward(l, &b, &t, &err), 0);
  ck_assert_int_eq(t->shape[2], 3);
  ck_assert_int_eq(t->shape[3], 3); /* ceil((6 - 3) / 2) + 1 */
  for (int pl = 0; pl < 4; pl++)
    for (int oh = 0; oh < 3; oh++)
      for (int ow = 0; ow < 3; ow++) {
        double s = 0, q = 0;
        for (int h = oh * 2; h < oh * 2 + 3 && h < 7; h++)
          for (int w = ow * 2; w < ow * 2 + 3 && w < 6; w++) {
            const double v = b->data[pl * 42 + h * 6 + w];
            s += v;
            q += v * v;
          }
        ck_assert_double_eq_tol(t->data[pl * 9 + oh * 3 + ow], q / s, 1e-5);
      }
  crema_layer_free(l);
  gradcheck_opts o = gradcheck_defaults();
  o.phase = CREMA__PHASE__TEST;
  gradcheck_layer(p, 1, &b, 1, NULL, &o);
  crema_message_free(p);
  /* TRAIN: every output is one of its window's inputs, drawn with probability x / sum: over
   * many draws of a 1x1 output from the window (1, 3), the frequencies are 1/6, 2/6, 3/6. */
  crema_blob *w = blob_vals(4, (int[]){1, 1, 1, 3}, (const float[]){1, 2, 3});
  l = make("name: 'p' type: 'Pooling' pooling_param { pool: STOCHASTIC kernel_h: 1 kernel_w: 3 }",
           CREMA__PHASE__TRAIN, w, t, &p);
  int count[3] = {0};
  for (int i = 0; i < 6000; i++) {
    ck_assert_int_eq(crema_layer_forward(l, &w, &t, &err), 0);
    const int v = (int)t->data[0];
    ck_assert(v >= 1 && v <= 3);
    count[v - 1]++;
  }
  for (int k = 0; k < 3; k++)
    ck_assert_msg(fabs(count[k] / 6000.0 - (k + 1) / 6.0) < 0.03, "value %d drawn %d times of 6000", k + 1,
                  count[k]);
  /* The gradient goes to the drawn element. */
  t->diff[0] = 2.5f;
  bool prop = true;
  crema_layer_backward(l, &t, &prop, &w);
  const int drawn = (int)t->data[0] - 1;
  for (int k = 0; k < 3; k++) ck_assert_float_eq(w->diff[k], k == drawn ? 2.5f : 0.0f);
  crema_layer_free(l);
  crema_message_free(p);
  /* And SPP pyramids of it build. */
  l = make("name: 's' type: 'SPP' spp_param { pyramid_height: 2 pool: STOCHASTIC }", CREMA__PHASE__TEST, b, t,
           &p);
  ck_assert_int_eq(t->shape[1], 2 * 5);
  crema_layer_free(l);
  crema_message_free(p);
  crema_blob_free(w);
  crema_blob_free(b);
  crema_blob_free(t);
}
END_TEST

START_TEST(ceil_mode_and_scale_train) {
  crema_blob *b = blob_of(4, (int[]){1, 1, 7, 7}), *t = crema_blob_new();
  gradcheck_fill_gaussian(b, 1.0f, 3);
  Crema__LayerParameter *p;
  crema_layer *l =
      make("name: 'p' type: 'Pooling' pooling_param { kernel_size: 2 stride: 2 ceil_mode: false }",
           CREMA__PHASE__TEST, b, t, &p);
  ck_assert_int_eq(t->shape[2], 3); /* floor((7 - 2) / 2) + 1 */
  crema_layer_free(l);
  crema_message_free(p);
  l = make("name: 'p' type: 'Pooling' pooling_param { kernel_size: 2 stride: 2 ceil_mode: true }",
           CREMA__PHASE__TEST, b, t, &p);
  ck_assert_int_eq(t->shape[2], 4);
  crema_layer_free(l);
  crema_message_free(p);
  /* scale_train false: TRAIN keeps or drops without scaling, TEST scales by 1 - ratio. */
  crema_error err;
  const char *drop = "name: 'd' type: 'Dropout' dropout_param { dropout_ratio: 0.25 scale_train: false }";
  l = make(drop, CREMA__PHASE__TRAIN, b, t, &p);
  ck_assert_int_eq(crema_layer_forward(l, &b, &t, &err), 0);
  int kept = 0;
  for (size_t i = 0; i < b->count; i++) {
    ck_assert(t->data[i] == 0.0f || t->data[i] == b->data[i]);
    kept += t->data[i] != 0.0f;
  }
  ck_assert_int_gt(kept, 20);
  crema_layer_free(l);
  crema_message_free(p);
  l = make(drop, CREMA__PHASE__TEST, b, t, &p);
  ck_assert_int_eq(crema_layer_forward(l, &b, &t, &err), 0);
  for (size_t i = 0; i < b->count; i++) ck_assert_float_eq_tol(t->data[i], 0.75f * b->data[i], 1e-7f);
  gradcheck_opts o = gradcheck_defaults();
  o.phase = CREMA__PHASE__TEST;
  gradcheck_layer(p, 1, &b, 1, NULL, &o);
  crema_layer_free(l);
  crema_message_free(p);
  crema_blob_free(b);
  crema_blob_free(t);
}
END_TEST

START_TEST(half_precision) {
  /* Exact values and rounding. */
  ck_assert_uint_eq(crema_float_to_half(1.0f), 0x3c00);
  ck_assert_uint_eq(crema_float_to_half(-2.0f), 0xc000);
  ck_assert_uint_eq(crema_float_to_half(65504.0f), 0x7bff);
  ck_assert_uint_eq(crema_float_to_half(65520.0f), 0x7c00); /* rounds past the largest half */
  ck_assert_uint_eq(crema_float_to_half(ldexpf(1.0f, -24)), 0x0001);
  ck_assert_uint_eq(crema_float_to_half(1e-9f), 0x0000);
  ck_assert_uint_eq(crema_float_to_half(1.0f + ldexpf(1.0f, -11)), 0x3c00); /* tie to even */
  ck_assert_uint_eq(crema_float_to_half(1.0f + 3 * ldexpf(1.0f, -11)), 0x3c02);
  ck_assert(isnan(crema_half_to_float(0x7e00)));
  /* Every finite half converts to float and back to itself. */
  for (uint32_t h = 0; h < 0x10000; h++) {
    if ((h & 0x7c00) == 0x7c00 && (h & 0x3ff)) continue; /* NaNs */
    ck_assert_msg(crema_float_to_half(crema_half_to_float((uint16_t)h)) == h, "half 0x%04x", h);
  }
  /* A FLOAT16 caffemodel: half the size, weights within half precision, read as floats. */
  char dir[] = "/tmp/crema_test_fp16_XXXXXX", out[128], cmd[512];
  ck_assert_ptr_nonnull(mkdtemp(dir));
  snprintf(out, sizeof out, "%s/lenet_fp16.caffemodel", dir);
  snprintf(cmd, sizeof cmd,
           "'%s/crema' upgrade '%s/lenet/lenet_mnist_iter_10000.caffemodel' '%s' --fp16 >/dev/null",
           CREMA_BIN_DIR, CREMA_TEST_DATA, out);
  ck_assert_int_eq(system(cmd), 0);
  struct stat a, b;
  ck_assert_int_eq(stat(CREMA_TEST_DATA "/lenet/lenet_mnist_iter_10000.caffemodel", &a), 0);
  ck_assert_int_eq(stat(out, &b), 0);
  ck_assert_msg(b.st_size < a.st_size * 0.51, "fp16 file %lld bytes, original %lld", (long long)b.st_size,
                (long long)a.st_size);
  crema_error err;
  Crema__NetParameter *orig = NULL, *half = NULL;
  ck_assert_int_eq(
      crema_read_net_param(CREMA_TEST_DATA "/lenet/lenet_mnist_iter_10000.caffemodel", &orig, &err), 0);
  ck_assert_msg(crema_read_net_param(out, &half, &err) == 0, "%s", err.msg);
  size_t checked = 0;
  for (size_t i = 0; i < orig->n_layer; i++)
    for (size_t k = 0; k < orig->layer[i]->n_blobs; k++) {
      const Crema__BlobProto *x = orig->layer[i]->blobs[k], *y = half->layer[i]->blobs[k];
      ck_assert(!y->has_raw_data);
      ck_assert_uint_eq(x->n_data, y->n_data);
      for (size_t j = 0; j < x->n_data; j++, checked++)
        ck_assert_msg(fabsf(x->data[j] - y->data[j]) <= fmaxf(fabsf(x->data[j]) * 4.9e-4f, 6e-8f), "%g vs %g",
                      (double)x->data[j], (double)y->data[j]);
    }
  ck_assert_uint_gt(checked, 400000);
  crema_message_free(orig);
  crema_message_free(half);
  /* --fp16 on a solver is a usage error. */
  snprintf(cmd, sizeof cmd,
           "'%s/crema' upgrade '%s/zoo/mnist/lenet_solver.prototxt' '%s/s.prototxt' --fp16 2>/dev/null",
           CREMA_BIN_DIR, CREMA_TEST_DATA, dir);
  ck_assert_int_ne(system(cmd), 0);
  snprintf(cmd, sizeof cmd, "rm -rf '%s'", dir);
  ck_assert_int_eq(system(cmd), 0);
}
END_TEST

int main(void) {
  Suite *s = suite_create("forks");
  TCase *tc = tcase_create("core");
  tcase_set_timeout(tc, 300);
  tcase_add_test(tc, stochastic_pooling);
  tcase_add_test(tc, ceil_mode_and_scale_train);
  tcase_add_test(tc, half_precision);
  suite_add_tcase(s, tc);
  return test_run_suite(s);
}
