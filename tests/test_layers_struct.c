/* test_layers_struct.c -- Concat, Slice, Split, Eltwise, Flatten, Reshape, Silence, ArgMax,
 * Input and DummyData: output layouts and shapes against hand-worked examples, numerical
 * gradient checks along several axes and with 2 and 3 bottoms, and the errors users see. */
#include <check.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "support/run.h"
#include "base/mem.h"
#include "layers/layer.h"
#include "support/gradcheck.h"
#include "support/layer_run.h"
#include "support/textproto.h"

/* ---------------------------------------------------------------- helpers */

/* Blob whose element i holds base + i: makes layouts easy to check. */
static crema_blob *blob_iota(int num_axes, const int *shape, float base) {
  crema_blob *b = blob_of(num_axes, shape);
  for (size_t i = 0; i < b->count; i++) b->data[i] = base + (float)i;
  return b;
}

static void assert_shape(const crema_blob *b, int num_axes, const int *shape) {
  char buf[128];
  ck_assert_msg(b->num_axes == num_axes, "shape %s: expected %d axes",
                crema_blob_shape_string(b, buf, sizeof buf), num_axes);
  for (int i = 0; i < num_axes; i++)
    ck_assert_msg(b->shape[i] == shape[i], "shape %s: axis %d should be %d",
                  crema_blob_shape_string(b, buf, sizeof buf), i, shape[i]);
}

/* Expects setup to fail with a message containing every one of the given words. */
static void expect_setup_error(const char *text, int n_bottom, crema_blob **bottom, int n_top, const char *w1,
                               const char *w2) {
  run r;
  crema_error err;
  ck_assert_msg(run_try(&r, text, n_bottom, bottom, n_top, &err) == -1, "%s: setup should fail", text);
  ck_assert_msg(strstr(err.msg, w1) != NULL, "message lacks \"%s\": %s", w1, err.msg);
  if (w2) ck_assert_msg(strstr(err.msg, w2) != NULL, "message lacks \"%s\": %s", w2, err.msg);
  run_free(&r);
}

static void gradcheck_text(const char *text, int n_bottom, crema_blob **bottom, int n_top) {
  Crema__LayerParameter *p = test_layer_param(text);
  gradcheck_layer(p, n_bottom, bottom, n_top, NULL, NULL);
  crema_message_free(p);
}

/* ---------------------------------------------------------------- Concat */

START_TEST(concat_layout) {
  /* (2, 1, 2) ++ (2, 2, 2) along axis 1 -> (2, 3, 2). */
  crema_blob *b[] = {blob_iota(3, (int[]){2, 1, 2}, 0), blob_iota(3, (int[]){2, 2, 2}, 100)};
  run r;
  run_setup(&r, "name: 'c' type: 'Concat'", 2, b, 1);
  run_forward(&r);
  assert_shape(r.top[0], 3, (int[]){2, 3, 2});
  const float want[] = {0, 1, 100, 101, 102, 103, 2, 3, 104, 105, 106, 107};
  for (int i = 0; i < 12; i++) ck_assert_float_eq(r.top[0]->data[i], want[i]);
  /* Backward: each bottom gets its part of the top diff back. */
  for (int i = 0; i < 12; i++) r.top[0]->diff[i] = want[i] * 2;
  crema_layer_backward(r.l, r.top, (bool[]){true, true}, b);
  for (size_t i = 0; i < b[0]->count; i++) ck_assert_float_eq(b[0]->diff[i], b[0]->data[i] * 2);
  for (size_t i = 0; i < b[1]->count; i++) ck_assert_float_eq(b[1]->diff[i], b[1]->data[i] * 2);
  run_free(&r);
  free_blobs(2, b);

  /* Axis 0 and legacy concat_dim: 0 give (5, 2). */
  const char *texts[] = {"name: 'c' type: 'Concat' concat_param { axis: 0 }",
                         "name: 'c' type: 'Concat' concat_param { concat_dim: 0 }",
                         "name: 'c' type: 'Concat' concat_param { axis: -2 }"};
  for (size_t k = 0; k < CREMA_ARRAY_LEN(texts); k++) {
    crema_blob *c[] = {blob_iota(2, (int[]){2, 2}, 0), blob_iota(2, (int[]){3, 2}, 10)};
    run_setup(&r, texts[k], 2, c, 1);
    run_forward(&r);
    assert_shape(r.top[0], 2, (int[]){5, 2});
    const float w0[] = {0, 1, 2, 3, 10, 11, 12, 13, 14, 15};
    for (int i = 0; i < 10; i++) ck_assert_float_eq(r.top[0]->data[i], w0[i]);
    run_free(&r);
    free_blobs(2, c);
  }
}
END_TEST

START_TEST(concat_gradient) {
  const char *texts[] = {"name: 'c' type: 'Concat' concat_param { axis: 0 }", "name: 'c' type: 'Concat'",
                         "name: 'c' type: 'Concat' concat_param { axis: 2 }",
                         "name: 'c' type: 'Concat' concat_param { axis: -1 }"};
  for (int k = 0; k < 4; k++) {
    int axis = k == 3 ? 3 : k;
    int s0[] = {2, 3, 2, 2}, s1[] = {2, 3, 2, 2}, s2[] = {2, 3, 2, 2};
    s1[axis] = 1;
    s2[axis] = 3;
    crema_blob *b[] = {blob_of(4, s0), blob_of(4, s1), blob_of(4, s2)};
    for (int i = 0; i < 3; i++) gradcheck_fill_gaussian(b[i], 1.0f, 50 + i);
    gradcheck_text(texts[k], 2, b, 1); /* 2 bottoms */
    gradcheck_text(texts[k], 3, b, 1); /* 3 bottoms */
    free_blobs(3, b);
  }
}
END_TEST

START_TEST(concat_errors) {
  crema_blob *b[] = {blob_of(4, (int[]){2, 3, 4, 5}), blob_of(4, (int[]){2, 3, 4, 6})};
  expect_setup_error("name: 'cat' type: 'Concat'", 2, b, 1, "2 3 4 5", "2 3 4 6");
  expect_setup_error("name: 'cat' type: 'Concat'", 2, b, 1, "cat", "concat axis 1");
  expect_setup_error("name: 'cat' type: 'Concat' concat_param { axis: 4 }", 2, b, 1, "axis 4",
                     "out of range");
  expect_setup_error("name: 'cat' type: 'Concat' concat_param { axis: 1 concat_dim: 1 }", 2, b, 1,
                     "concat_dim", NULL);
  free_blobs(2, b);
  crema_blob *c[] = {blob_of(2, (int[]){2, 3}), blob_of(3, (int[]){2, 3, 1})};
  expect_setup_error("name: 'cat' type: 'Concat'", 2, c, 1, "2 3 (6)", "2 3 1 (6)");
  free_blobs(2, c);
}
END_TEST

/* ---------------------------------------------------------------- Slice */

START_TEST(slice_layout) {
  /* (2, 5) sliced along axis 1 at 1 and 3: (2,1) (2,2) (2,2). */
  crema_blob *b[] = {blob_iota(2, (int[]){2, 5}, 0)};
  run r;
  run_setup(&r, "name: 's' type: 'Slice' slice_param { slice_point: 1 slice_point: 3 }", 1, b, 3);
  run_forward(&r);
  assert_shape(r.top[0], 2, (int[]){2, 1});
  assert_shape(r.top[1], 2, (int[]){2, 2});
  assert_shape(r.top[2], 2, (int[]){2, 2});
  const float t0[] = {0, 5}, t1[] = {1, 2, 6, 7}, t2[] = {3, 4, 8, 9};
  for (int i = 0; i < 2; i++) ck_assert_float_eq(r.top[0]->data[i], t0[i]);
  for (int i = 0; i < 4; i++) ck_assert_float_eq(r.top[1]->data[i], t1[i]);
  for (int i = 0; i < 4; i++) ck_assert_float_eq(r.top[2]->data[i], t2[i]);
  for (int t = 0; t < 3; t++)
    for (size_t i = 0; i < r.top[t]->count; i++) r.top[t]->diff[i] = -r.top[t]->data[i];
  crema_layer_backward(r.l, r.top, (bool[]){true}, b);
  for (int i = 0; i < 10; i++) ck_assert_float_eq(b[0]->diff[i], -(float)i);
  run_free(&r);

  /* Equal split along axis 0 (and legacy slice_dim). */
  const char *texts[] = {"name: 's' type: 'Slice' slice_param { axis: 0 }",
                         "name: 's' type: 'Slice' slice_param { slice_dim: 0 }"};
  for (int k = 0; k < 2; k++) {
    run_setup(&r, texts[k], 1, b, 2);
    run_forward(&r);
    assert_shape(r.top[0], 2, (int[]){1, 5});
    ck_assert_float_eq(r.top[1]->data[0], 5.0f);
    run_free(&r);
  }
  free_blobs(1, b);
}
END_TEST

START_TEST(slice_gradient) {
  const char *texts[] = {"name: 's' type: 'Slice' slice_param { axis: 0 slice_point: 1 }",
                         "name: 's' type: 'Slice' slice_param { slice_point: 1 slice_point: 4 }",
                         "name: 's' type: 'Slice' slice_param { axis: 2 }",
                         "name: 's' type: 'Slice' slice_param { axis: -1 slice_point: 2 }"};
  const int n_top[] = {2, 3, 2, 2};
  for (int k = 0; k < 4; k++) {
    crema_blob *b[] = {blob_of(4, (int[]){3, 5, 4, 3})};
    gradcheck_fill_gaussian(b[0], 1.0f, 60 + k);
    gradcheck_text(texts[k], 1, b, n_top[k]);
    free_blobs(1, b);
  }
}
END_TEST

START_TEST(slice_errors) {
  crema_blob *b[] = {blob_of(2, (int[]){2, 5})};
  expect_setup_error("name: 'sl' type: 'Slice'", 1, b, 2, "evenly divide", "2 5");
  expect_setup_error("name: 'sl' type: 'Slice' slice_param { slice_point: 3 slice_point: 2 }", 1, b, 3,
                     "slice_point 2", NULL);
  expect_setup_error("name: 'sl' type: 'Slice' slice_param { slice_point: 6 }", 1, b, 2, "slice_point 6",
                     NULL);
  expect_setup_error("name: 'sl' type: 'Slice' slice_param { slice_point: 2 }", 1, b, 3, "slice_point",
                     "tops");
  free_blobs(1, b);
}
END_TEST

/* ---------------------------------------------------------------- Split */

START_TEST(split_forward_backward) {
  crema_blob *b[] = {blob_iota(3, (int[]){2, 3, 2}, 1)};
  run r;
  run_setup(&r, "name: 'sp' type: 'Split'", 1, b, 3);
  run_forward(&r);
  for (int t = 0; t < 3; t++) {
    assert_shape(r.top[t], 3, (int[]){2, 3, 2});
    for (size_t i = 0; i < b[0]->count; i++) ck_assert_float_eq(r.top[t]->data[i], b[0]->data[i]);
    for (size_t i = 0; i < b[0]->count; i++) r.top[t]->diff[i] = (float)(t + 1) * (float)i;
  }
  crema_layer_backward(r.l, r.top, (bool[]){true}, b);
  for (size_t i = 0; i < b[0]->count; i++) ck_assert_float_eq(b[0]->diff[i], 6.0f * (float)i);
  run_free(&r);
  /* 2 to 6 tops, above the OpenMP threshold: the diffs summed in top order, to the bit (values
   * of many magnitudes, so that any other order rounds differently somewhere). */
  crema_blob *big[] = {blob_of(2, (int[]){400, 100})};
  for (int tops = 2; tops <= 6; tops++) {
    run_setup(&r, "name: 'sp' type: 'Split'", 1, big, tops);
    unsigned seed = 11u * (unsigned)tops;
    for (int t = 0; t < tops; t++)
      for (size_t i = 0; i < big[0]->count; i++) {
        seed = seed * 1103515245u + 12345u;
        r.top[t]->diff[i] = ldexpf((float)(seed >> 8) / 16777216.0f - 0.5f, (int)(seed % 40) - 20);
      }
    crema_layer_backward(r.l, r.top, (bool[]){true}, big);
    for (size_t i = 0; i < big[0]->count; i++) {
      float want = r.top[0]->diff[i];
      for (int t = 1; t < tops; t++) want += r.top[t]->diff[i];
      ck_assert_msg(big[0]->diff[i] == want, "%d tops, element %zu: %.9g, in top order %.9g", tops, i,
                    (double)big[0]->diff[i], (double)want);
    }
    run_free(&r);
  }
  crema_blob_free(big[0]);
  gradcheck_fill_gaussian(b[0], 1.0f, 70);
  gradcheck_text("name: 'sp' type: 'Split'", 1, b, 2);
  gradcheck_text("name: 'sp' type: 'Split'", 1, b, 3);
  free_blobs(1, b);
}
END_TEST

/* ---------------------------------------------------------------- Eltwise */

START_TEST(eltwise_forward_values) {
  crema_blob *b[] = {blob_iota(2, (int[]){2, 3}, -2), blob_iota(2, (int[]){2, 3}, 1),
                     blob_of(2, (int[]){2, 3})};
  const float third[] = {5, -1, 0, 2, 9, -3};
  memcpy(b[2]->data, third, sizeof third);
  run r;
  /* b0 = -2..3, b1 = 1..6 */
  run_setup(&r, "name: 'e' type: 'Eltwise' eltwise_param { operation: PROD }", 3, b, 1);
  run_forward(&r);
  for (int i = 0; i < 6; i++)
    ck_assert_float_eq(r.top[0]->data[i], (float)(i - 2) * (float)(i + 1) * third[i]);
  run_free(&r);
  run_setup(&r, "name: 'e' type: 'Eltwise' eltwise_param { operation: SUM coeff: 1 coeff: -0.5 coeff: 2 }", 3,
            b, 1);
  run_forward(&r);
  for (int i = 0; i < 6; i++)
    ck_assert_float_eq_tol(r.top[0]->data[i], (float)(i - 2) - 0.5f * (float)(i + 1) + 2 * third[i], 1e-6f);
  run_free(&r);
  run_setup(&r, "name: 'e' type: 'Eltwise'", 2, b, 1); /* default SUM, coeff 1 */
  run_forward(&r);
  for (int i = 0; i < 6; i++) ck_assert_float_eq(r.top[0]->data[i], (float)(2 * i - 1));
  run_free(&r);
  run_setup(&r, "name: 'e' type: 'Eltwise' eltwise_param { operation: MAX }", 3, b, 1);
  run_forward(&r);
  for (int i = 0; i < 6; i++)
    ck_assert_float_eq(r.top[0]->data[i], fmaxf(fmaxf((float)(i - 2), (float)(i + 1)), third[i]));
  /* Backward routes the diff to the winner only. */
  for (int i = 0; i < 6; i++) r.top[0]->diff[i] = 1.0f;
  crema_layer_backward(r.l, r.top, (bool[]){true, true, true}, b);
  const float win2[] = {1, 0, 0, 0, 1, 0}; /* third[] wins at 0 and 4 */
  for (int i = 0; i < 6; i++) {
    ck_assert_float_eq(b[2]->diff[i], win2[i]);
    ck_assert_float_eq(b[1]->diff[i], 1.0f - win2[i]);
    ck_assert_float_eq(b[0]->diff[i], 0.0f);
  }
  run_free(&r);
  free_blobs(3, b);
}
END_TEST

/* Bottoms for MAX whose values differ by at least 0.5 at every element, so the finite
 * differences never cross a switch of the winner; the winner varies with the element. */
static void fill_distinct(crema_blob **b, int n) {
  for (size_t k = 0; k < b[0]->count; k++)
    for (int i = 0; i < n; i++)
      b[i]->data[k] = 0.5f * (float)((i + (int)k) % n) - 0.6f + 0.01f * (float)(k % 7);
}

START_TEST(eltwise_gradient) {
  const char *texts[] = {
      "name: 'e' type: 'Eltwise' eltwise_param { operation: PROD }",
      "name: 'e' type: 'Eltwise' eltwise_param { operation: PROD stable_prod_grad: false }",
      "name: 'e' type: 'Eltwise' eltwise_param { operation: SUM }",
      "name: 'e' type: 'Eltwise' eltwise_param { operation: MAX }",
  };
  for (int nb = 2; nb <= 3; nb++)
    for (int k = 0; k < 4; k++) {
      crema_blob *b[] = {blob_of(3, (int[]){2, 3, 4}), blob_of(3, (int[]){2, 3, 4}),
                         blob_of(3, (int[]){2, 3, 4})};
      if (k == 3) {
        fill_distinct(b, nb);
      } else {
        /* Away from 0 so that top / bottom (unstable PROD gradient) is well conditioned. */
        for (int i = 0; i < 3; i++) gradcheck_fill_uniform(b[i], 0.5f, 1.5f, 80 + i);
        for (int i = 0; i < 3; i++)
          for (size_t j = i; j < b[i]->count; j += 3) b[i]->data[j] = -b[i]->data[j];
      }
      gradcheck_text(texts[k], nb, b, 1);
      free_blobs(3, b);
    }
  /* SUM with coefficients, 2 and 3 bottoms. */
  crema_blob *b[] = {blob_of(2, (int[]){3, 4}), blob_of(2, (int[]){3, 4}), blob_of(2, (int[]){3, 4})};
  for (int i = 0; i < 3; i++) gradcheck_fill_gaussian(b[i], 1.0f, 90 + i);
  gradcheck_text("name: 'e' type: 'Eltwise' eltwise_param { operation: SUM coeff: 2 coeff: -0.5 }", 2, b, 1);
  gradcheck_text("name: 'e' type: 'Eltwise' eltwise_param { coeff: 0.5 coeff: -1 coeff: 3 }", 3, b, 1);
  free_blobs(3, b);
}
END_TEST

START_TEST(eltwise_errors) {
  crema_blob *b[] = {blob_of(2, (int[]){2, 3}), blob_of(2, (int[]){3, 2})};
  expect_setup_error("name: 'el' type: 'Eltwise'", 2, b, 1, "2 3 (6)", "3 2 (6)");
  crema_blob_free(b[1]);
  b[1] = blob_of(2, (int[]){2, 3});
  expect_setup_error("name: 'el' type: 'Eltwise' eltwise_param { coeff: 1 }", 2, b, 1, "coeff",
                     "one per bottom");
  expect_setup_error("name: 'el' type: 'Eltwise' eltwise_param { operation: PROD coeff: 1 coeff: 2 }", 2, b,
                     1, "coeff", "SUM");
  expect_setup_error("name: 'el' type: 'Eltwise'", 1, b, 1, "at least 2", NULL);
  free_blobs(2, b);
}
END_TEST

/* ---------------------------------------------------------------- Flatten, Reshape */

START_TEST(flatten_shapes) {
  crema_blob *b[] = {blob_iota(4, (int[]){2, 3, 4, 5}, 0)};
  struct {
    const char *text;
    int n;
    int shape[4];
  } cases[] = {
      {"name: 'f' type: 'Flatten'", 2, {2, 60}},
      {"name: 'f' type: 'Flatten' flatten_param { axis: 2 }", 3, {2, 3, 20}},
      {"name: 'f' type: 'Flatten' flatten_param { axis: 1 end_axis: 2 }", 3, {2, 12, 5}},
      {"name: 'f' type: 'Flatten' flatten_param { axis: 0 end_axis: -2 }", 2, {24, 5}},
      {"name: 'f' type: 'Flatten' flatten_param { axis: -1 }", 4, {2, 3, 4, 5}},
  };
  for (size_t k = 0; k < CREMA_ARRAY_LEN(cases); k++) {
    run r;
    run_setup(&r, cases[k].text, 1, b, 1);
    run_forward(&r);
    assert_shape(r.top[0], cases[k].n, cases[k].shape);
    for (size_t i = 0; i < b[0]->count; i += 7) ck_assert_float_eq(r.top[0]->data[i], (float)i);
    run_free(&r);
  }
  gradcheck_fill_gaussian(b[0], 1.0f, 100);
  gradcheck_text("name: 'f' type: 'Flatten' flatten_param { axis: 1 end_axis: 2 }", 1, b, 1);
  expect_setup_error("name: 'fl' type: 'Flatten' flatten_param { axis: 4 }", 1, b, 1, "flatten_param axis 4",
                     NULL);
  expect_setup_error("name: 'fl' type: 'Flatten' flatten_param { axis: 2 end_axis: 1 }", 1, b, 1, "end_axis",
                     NULL);
  free_blobs(1, b);
}
END_TEST

START_TEST(reshape_shapes) {
  crema_blob *b[] = {blob_iota(4, (int[]){2, 3, 4, 5}, 0)};
  struct {
    const char *text;
    int n;
    int shape[6];
  } cases[] = {
      {"reshape_param { shape { dim: 6 dim: 20 } }", 2, {6, 20}},
      {"reshape_param { shape { dim: 0 dim: -1 } }", 2, {2, 60}},
      {"reshape_param { shape { dim: 0 dim: 0 dim: -1 } }", 3, {2, 3, 20}},
      {"reshape_param { shape { dim: -1 dim: 5 } }", 2, {24, 5}},
      {"reshape_param { shape { dim: 2 dim: 2 } axis: 2 num_axes: 1 }", 5, {2, 3, 2, 2, 5}},
      {"reshape_param { shape { dim: -1 } axis: 1 num_axes: 2 }", 3, {2, 12, 5}},
      {"reshape_param { shape { dim: 1 } axis: -1 num_axes: 0 }", 5, {2, 3, 4, 5, 1}},
      {"reshape_param { shape { dim: 1 } axis: 0 num_axes: 0 }", 5, {1, 2, 3, 4, 5}},
      {"reshape_param { shape { dim: 0 dim: 1 dim: -1 } axis: 2 }", 5, {2, 3, 4, 1, 5}},
  };
  for (size_t k = 0; k < CREMA_ARRAY_LEN(cases); k++) {
    char text[256];
    snprintf(text, sizeof text, "name: 'r' type: 'Reshape' %s", cases[k].text);
    run r;
    run_setup(&r, text, 1, b, 1);
    run_forward(&r);
    assert_shape(r.top[0], cases[k].n, cases[k].shape);
    for (size_t i = 0; i < b[0]->count; i += 11) ck_assert_float_eq(r.top[0]->data[i], (float)i);
    run_free(&r);
  }
  gradcheck_fill_gaussian(b[0], 1.0f, 101);
  gradcheck_text("name: 'r' type: 'Reshape' reshape_param { shape { dim: 0 dim: -1 dim: 2 } }", 1, b, 1);
  expect_setup_error("name: 'rs' type: 'Reshape' reshape_param { shape { dim: -1 dim: -1 } }", 1, b, 1, "-1",
                     NULL);
  expect_setup_error("name: 'rs' type: 'Reshape' reshape_param { shape { dim: 7 dim: -1 } }", 1, b, 1,
                     "divisible", NULL);
  expect_setup_error("name: 'rs' type: 'Reshape' reshape_param { shape { dim: 7 dim: 3 } }", 1, b, 1, "count",
                     NULL);
  expect_setup_error("name: 'rs' type: 'Reshape' reshape_param { shape { dim: 0 dim: 0 } axis: 3 }", 1, b, 1,
                     "no axis", NULL);
  expect_setup_error("name: 'rs' type: 'Reshape' reshape_param { shape { dim: 1 } axis: 5 }", 1, b, 1,
                     "axis 5", NULL);
  /* axis + num_axes once overflowed int (UBSan) before the range check. */
  expect_setup_error(
      "name: 'rs' type: 'Reshape' reshape_param { shape { dim: 1 } axis: 1 num_axes: 2147483647 }", 1, b, 1,
      "axis + num_axes = 2147483648 is out of range", NULL);
  free_blobs(1, b);
}
END_TEST

/* ---------------------------------------------------------------- Silence */

START_TEST(silence_zeroes_diffs) {
  crema_blob *b[] = {blob_iota(2, (int[]){2, 2}, 0), blob_iota(1, (int[]){3}, 0)};
  for (int i = 0; i < 4; i++) b[0]->diff[i] = 5.0f;
  for (int i = 0; i < 3; i++) b[1]->diff[i] = 5.0f;
  run r;
  run_setup(&r, "name: 'si' type: 'Silence'", 2, b, 0);
  run_forward(&r);
  crema_layer_backward(r.l, r.top, (bool[]){true, false}, b);
  for (int i = 0; i < 4; i++) ck_assert_float_eq(b[0]->diff[i], 0.0f);
  for (int i = 0; i < 3; i++) ck_assert_float_eq(b[1]->diff[i], 5.0f); /* not asked: untouched */
  run_free(&r);
  expect_setup_error("name: 'si' type: 'Silence'", 1, b, 1, "top", NULL);
  free_blobs(2, b);
}
END_TEST

/* ---------------------------------------------------------------- ArgMax */

START_TEST(argmax_values) {
  /* 2 samples x 5 values; ties: equal values rank the larger index first (Caffe). */
  const float x[] = {0.1f, 0.9f, 0.3f, 0.9f, -1.0f, 5.0f, 4.0f, 3.0f, 2.0f, 1.0f};
  crema_blob *b[] = {blob_of(2, (int[]){2, 5})};
  memcpy(b[0]->data, x, sizeof x);
  run r;
  run_setup(&r, "name: 'am' type: 'ArgMax'", 1, b, 1);
  run_forward(&r);
  assert_shape(r.top[0], 3, (int[]){2, 1, 1});
  ck_assert_float_eq(r.top[0]->data[0], 3.0f);
  ck_assert_float_eq(r.top[0]->data[1], 0.0f);
  run_free(&r);

  run_setup(&r, "name: 'am' type: 'ArgMax' argmax_param { top_k: 3 out_max_val: true }", 1, b, 1);
  run_forward(&r);
  assert_shape(r.top[0], 3, (int[]){2, 2, 3});
  const float want[] = {3, 1, 2, 0.9f, 0.9f, 0.3f, 0, 1, 2, 5, 4, 3};
  for (int i = 0; i < 12; i++) ck_assert_float_eq(r.top[0]->data[i], want[i]);
  run_free(&r);

  /* With axis: along axis 0 of (2, 5) -> (1, 5) of row indices, or values. */
  run_setup(&r, "name: 'am' type: 'ArgMax' argmax_param { axis: 0 }", 1, b, 1);
  run_forward(&r);
  assert_shape(r.top[0], 2, (int[]){1, 5});
  const float rows[] = {1, 1, 1, 1, 1};
  for (int i = 0; i < 5; i++) ck_assert_float_eq(r.top[0]->data[i], rows[i]);
  run_free(&r);
  run_setup(&r, "name: 'am' type: 'ArgMax' argmax_param { axis: -1 top_k: 2 out_max_val: true }", 1, b, 1);
  run_forward(&r);
  assert_shape(r.top[0], 2, (int[]){2, 2});
  const float vals[] = {0.9f, 0.9f, 5, 4};
  for (int i = 0; i < 4; i++) ck_assert_float_eq(r.top[0]->data[i], vals[i]);
  run_free(&r);
  free_blobs(1, b);

  /* Axis in the middle of (2, 3, 2): indices per (n, w). */
  crema_blob *c[] = {blob_of(3, (int[]){2, 3, 2})};
  const float y[] = {1, 9, 5, 2, 3, 4, /* n=0: w0 -> c1, w1 -> c0 */ 0, 0, 7, 1, 8, 2};
  memcpy(c[0]->data, y, sizeof y);
  run_setup(&r, "name: 'am' type: 'ArgMax' argmax_param { axis: 1 top_k: 2 }", 1, c, 1);
  run_forward(&r);
  assert_shape(r.top[0], 3, (int[]){2, 2, 2});
  const float idx[] = {1, 0, 2, 2, 2, 2, 1, 1};
  for (int i = 0; i < 8; i++) ck_assert_float_eq(r.top[0]->data[i], idx[i]);
  run_free(&r);
  expect_setup_error("name: 'am' type: 'ArgMax' argmax_param { axis: 1 top_k: 4 }", 1, c, 1, "top_k", NULL);
  expect_setup_error("name: 'am' type: 'ArgMax' argmax_param { top_k: 4000000000 }", 1, c, 1,
                     "top_k 4000000000 is too large", NULL);
  free_blobs(1, c);
}
END_TEST

/* ---------------------------------------------------------------- Input, DummyData */

START_TEST(input_shapes) {
  run r;
  run_setup(&r, "name: 'in' type: 'Input' top: 'a' top: 'b' input_param { shape { dim: 2 dim: 3 } }", 0, NULL,
            2);
  assert_shape(r.top[0], 2, (int[]){2, 3});
  assert_shape(r.top[1], 2, (int[]){2, 3});
  r.top[0]->data[0] = 7.0f;
  run_forward(&r);
  ck_assert_float_eq(r.top[0]->data[0], 7.0f); /* forward leaves the caller's data alone */
  run_free(&r);
  run_setup(&r,
            "name: 'in' type: 'Input' input_param { shape { dim: 1 dim: 3 dim: 8 dim: 8 } shape { dim: 1 } }",
            0, NULL, 2);
  assert_shape(r.top[0], 4, (int[]){1, 3, 8, 8});
  assert_shape(r.top[1], 1, (int[]){1});
  run_free(&r);
  expect_setup_error("name: 'in' type: 'Input' input_param { shape { dim: 1 } shape { dim: 2 } }", 0, NULL, 3,
                     "2 shapes for 3 tops", NULL);
  expect_setup_error("name: 'in' type: 'Input' input_param { shape { dim: -4 } }", 0, NULL, 1, "-4", NULL);
}
END_TEST

START_TEST(dummy_data_fill) {
  run r;
  run_setup(&r,
            "name: 'd' type: 'DummyData' dummy_data_param { "
            "  shape { dim: 2 dim: 3 } shape { dim: 4 } "
            "  data_filler { type: 'constant' value: 1.5 } data_filler { type: 'gaussian' std: 1 } }",
            0, NULL, 2);
  assert_shape(r.top[0], 2, (int[]){2, 3});
  assert_shape(r.top[1], 1, (int[]){4});
  for (int i = 0; i < 6; i++) ck_assert_float_eq(r.top[0]->data[i], 1.5f);
  /* Constant tops are filled once: a value overwritten by the user stays. Gaussian tops are
   * refilled on every forward. */
  r.top[0]->data[0] = -9.0f;
  float before[4];
  memcpy(before, r.top[1]->data, sizeof before);
  run_forward(&r);
  ck_assert_float_eq(r.top[0]->data[0], -9.0f);
  bool changed = false;
  for (int i = 0; i < 4; i++) changed |= r.top[1]->data[i] != before[i];
  ck_assert_msg(changed, "gaussian DummyData top was not refilled");
  run_free(&r);

  /* Legacy dims, one filler for all tops; no filler = zeros. */
  run_setup(
      &r,
      "name: 'd' type: 'DummyData' dummy_data_param { num: 2 channels: 3 channels: 1 height: 4 width: 5 "
      "data_filler { type: 'constant' value: 2 } }",
      0, NULL, 2);
  assert_shape(r.top[0], 4, (int[]){2, 3, 4, 5});
  assert_shape(r.top[1], 4, (int[]){2, 1, 4, 5});
  ck_assert_float_eq(r.top[1]->data[39], 2.0f);
  run_free(&r);
  run_setup(&r, "name: 'd' type: 'DummyData' dummy_data_param { shape { dim: 3 } }", 0, NULL, 1);
  run_forward(&r);
  for (int i = 0; i < 3; i++) ck_assert_float_eq(r.top[0]->data[i], 0.0f);
  run_free(&r);

  expect_setup_error("name: 'd' type: 'DummyData' dummy_data_param { shape { dim: 3 } num: 1 }", 0, NULL, 1,
                     "legacy", NULL);
  expect_setup_error("name: 'd' type: 'DummyData' dummy_data_param { shape { dim: 3 } shape { dim: 3 } }", 0,
                     NULL, 3, "2 shape", NULL);
  expect_setup_error(
      "name: 'd' type: 'DummyData' dummy_data_param { shape { dim: 3 } data_filler { type: 'nope' } }", 0,
      NULL, 1, "nope", NULL);
}
END_TEST

START_TEST(large_blobs) {
  /* Sizes above the OpenMP threshold: Concat along axis 1, Eltwise MAX of 3, Split. */
  crema_blob *b[] = {blob_iota(3, (int[]){8, 50, 100}, 0), blob_iota(3, (int[]){8, 30, 100}, 1e6f),
                     blob_iota(3, (int[]){8, 50, 100}, 0.5f)};
  run r;
  run_setup(&r, "name: 'c' type: 'Concat'", 2, b, 1);
  run_forward(&r);
  assert_shape(r.top[0], 3, (int[]){8, 80, 100});
  for (int n = 0; n < 8; n++)
    for (int c = 0; c < 80; c++) {
      float want = c < 50 ? (float)((n * 50 + c) * 100 + 7) : 1e6f + (float)((n * 30 + c - 50) * 100 + 7);
      ck_assert_float_eq(r.top[0]->data[(n * 80 + c) * 100 + 7], want);
    }
  run_free(&r);
  for (size_t i = 0; i < b[0]->count; i++) b[0]->data[i] = (float)(i % 3 == 0);
  crema_blob *m[] = {b[0], b[2], blob_of(3, (int[]){8, 50, 100})};
  for (size_t i = 0; i < m[2]->count; i++) m[2]->data[i] = (float)(i % 3 == 1) * 1e7f;
  run_setup(&r, "name: 'e' type: 'Eltwise' eltwise_param { operation: MAX }", 3, m, 1);
  run_forward(&r);
  for (size_t i = 0; i < m[0]->count; i++) {
    float want = fmaxf(fmaxf(m[0]->data[i], m[1]->data[i]), m[2]->data[i]);
    ck_assert_float_eq(r.top[0]->data[i], want);
  }
  run_free(&r);
  crema_blob_free(m[2]);
  free_blobs(3, b);
}
END_TEST

START_TEST(registry_knows_struct_types) {
  const char *types[] = {"Input",   "DummyData", "Concat",  "Slice",   "Split",
                         "Eltwise", "Flatten",   "Reshape", "Silence", "ArgMax"};
  for (size_t i = 0; i < CREMA_ARRAY_LEN(types); i++) {
    const crema_layer_ops *ops = crema_layer_lookup(types[i]);
    ck_assert_msg(ops != NULL, "%s not registered", types[i]);
    ck_assert_str_eq(ops->type, types[i]);
  }
  ck_assert(crema_layer_lookup("ArgMax")->backward == NULL);
  ck_assert(crema_layer_lookup("Input")->backward == NULL);
}
END_TEST

static Suite *suite(void) {
  Suite *s = suite_create("layers_struct");
  TCase *tc = tcase_create("core");
  tcase_add_test(tc, concat_layout);
  tcase_add_test(tc, concat_gradient);
  tcase_add_test(tc, concat_errors);
  tcase_add_test(tc, slice_layout);
  tcase_add_test(tc, slice_gradient);
  tcase_add_test(tc, slice_errors);
  tcase_add_test(tc, split_forward_backward);
  tcase_add_test(tc, eltwise_forward_values);
  tcase_add_test(tc, eltwise_gradient);
  tcase_add_test(tc, eltwise_errors);
  tcase_add_test(tc, flatten_shapes);
  tcase_add_test(tc, reshape_shapes);
  tcase_add_test(tc, silence_zeroes_diffs);
  tcase_add_test(tc, argmax_values);
  tcase_add_test(tc, input_shapes);
  tcase_add_test(tc, dummy_data_fill);
  tcase_add_test(tc, large_blobs);
  tcase_add_test(tc, registry_knows_struct_types);
  suite_add_tcase(s, tc);
  return s;
}

int main(void) { return test_run_suite(suite()); }
