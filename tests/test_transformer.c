/* The data transformer against values computed here independently: Caffe's
 * (pixel - mean) * scale with the mean file indexed at full size, centre crop in TEST,
 * random crop + mirror in TRAIN (every output must be exactly one of the possible crops),
 * mean_value forms, a larger mean file centre-cropped, errors, per-record determinism, and
 * crema's augmentation. */
#include <check.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "support/run.h"
#include "data/mean.h"
#include "data/transformer.h"
#include "data_test_util.h"
#include "support/textproto.h"

enum { C = 3, H = 5, W = 7 };
static char dir[256];
static uint8_t img[C * H * W];

static void setup(void) {
  tmp_dir(dir);
  uint8_t *px = random_pixels(W, H, C, 42);
  memcpy(img, px, sizeof img);
  free(px);
}
static void teardown(void) { remove_tree(dir); }

/* Writes a mean file of c x h x w with value(k, y, x) = 10 k + y + 0.25 x. */
static void write_mean(const char *name, int c, int h, int w, char *path) {
  crema_mean m = {c, h, w, malloc(sizeof(float) * c * h * w), 0};
  for (int k = 0; k < c; k++)
    for (int y = 0; y < h; y++)
      for (int x = 0; x < w; x++) m.data[(k * h + y) * w + x] = 10.0f * k + y + 0.25f * x;
  snprintf(path, 300, "%s/%s", dir, name);
  crema_error err;
  ck_assert_int_eq(crema_mean_write(path, &m, &err), 0);
  crema_mean_free(&m);
}

static crema_transformer *make(const char *text, Crema__Phase phase, uint64_t seed) {
  Crema__TransformationParameter *p =
      (Crema__TransformationParameter *)test_message(&crema__transformation_parameter__descriptor, text);
  crema_transformer *t;
  crema_error err;
  ck_assert_msg(crema_transformer_create(p, phase, seed, &t, &err) == 0, "%s: %s", text, err.msg);
  crema_message_free(p);
  return t;
}

/* The expected output for a crop at (ho, wo) of size ch x cw, mirrored or not, with the
 * mean at the full-size position shifted by (mh0, mw0) inside a mean of width mw. */
static void expect(float *out, int ch, int cw, int ho, int wo, int mirror, float scale, int mean_h,
                   int mean_w) {
  const int mh0 = (mean_h - H) / 2, mw0 = (mean_w - W) / 2;
  for (int k = 0; k < C; k++)
    for (int y = 0; y < ch; y++)
      for (int x = 0; x < cw; x++) {
        const int sy = y + ho, sx = x + wo;
        const float mean = mean_h ? 10.0f * k + (sy + mh0) + 0.25f * (sx + mw0) : 0.0f;
        const int ox = mirror ? cw - 1 - x : x;
        out[(k * ch + y) * cw + ox] = ((float)img[(k * H + sy) * W + sx] - mean) * scale;
      }
}

START_TEST(test_test_phase_centre_crop_mean_file) {
  char mean[300], text[512];
  write_mean("m.binaryproto", C, H, W, mean);
  snprintf(text, sizeof text, "crop_size: 3 mirror: true scale: 0.5 mean_file: '%s'", mean);
  crema_transformer *t = make(text, CREMA__PHASE__TEST, 1);
  int oc, oh, ow;
  crema_error err;
  ck_assert_int_eq(crema_transformer_shape(t, C, H, W, &oc, &oh, &ow, &err), 0);
  ck_assert_int_eq(oh, 3);
  ck_assert_int_eq(ow, 3);
  float out[C * 9], want[C * 9];
  crema_transform_work wk = {0};
  /* TEST: centre crop (1, 2), never mirrored, whatever the record. */
  expect(want, 3, 3, 1, 2, 0, 0.5f, H, W);
  for (uint64_t r = 0; r < 20; r++) {
    ck_assert_int_eq(crema_transformer_apply(t, img, NULL, C, H, W, r, &wk, out, &err), 0);
    ck_assert_int_eq(memcmp(out, want, sizeof out), 0);
  }
  crema_transformer_free(t);
  /* A mean file larger than the images is centre-cropped to them. */
  write_mean("big.binaryproto", C, H + 2, W + 4, mean);
  snprintf(text, sizeof text, "crop_size: 3 scale: 0.5 mean_file: '%s'", mean);
  t = make(text, CREMA__PHASE__TEST, 1);
  ck_assert_int_eq(crema_transformer_apply(t, img, NULL, C, H, W, 0, &wk, out, &err), 0);
  expect(want, 3, 3, 1, 2, 0, 0.5f, H + 2, W + 4);
  ck_assert_int_eq(memcmp(out, want, sizeof out), 0);
  crema_transformer_free(t);
  crema_transform_work_free(&wk);
}
END_TEST

START_TEST(test_train_random_crop_mirror) {
  char mean[300], text[512];
  write_mean("m.binaryproto", C, H, W, mean);
  snprintf(text, sizeof text, "crop_size: 3 mirror: true mean_file: '%s'", mean);
  crema_transformer *t = make(text, CREMA__PHASE__TRAIN, 77);
  float out[C * 9], again[C * 9], cand[C * 9];
  crema_transform_work wk = {0};
  crema_error err;
  int seen[H - 2][W - 2][2] = {{{0}}};
  for (uint64_t r = 0; r < 300; r++) {
    ck_assert_int_eq(crema_transformer_apply(t, img, NULL, C, H, W, r, &wk, out, &err), 0);
    int matches = 0;
    for (int ho = 0; ho <= H - 3; ho++)
      for (int wo = 0; wo <= W - 3; wo++)
        for (int m = 0; m < 2; m++) {
          expect(cand, 3, 3, ho, wo, m, 1.0f, H, W);
          if (!memcmp(cand, out, sizeof out)) {
            matches++;
            seen[ho][wo][m]++;
          }
        }
    ck_assert_int_eq(matches, 1);
    /* The same record always gets the same crop and flip. */
    ck_assert_int_eq(crema_transformer_apply(t, img, NULL, C, H, W, r, &wk, again, &err), 0);
    ck_assert_int_eq(memcmp(out, again, sizeof out), 0);
  }
  /* Every offset and both flips occur over 300 records (15 x 2 cases, ~10 each). */
  for (int ho = 0; ho <= H - 3; ho++)
    for (int wo = 0; wo <= W - 3; wo++)
      for (int m = 0; m < 2; m++) ck_assert_int_gt(seen[ho][wo][m], 0);
  crema_transformer_free(t);
  crema_transform_work_free(&wk);
}
END_TEST

START_TEST(test_mean_values_and_floats) {
  crema_transform_work wk = {0};
  crema_error err;
  float out[C * H * W];
  crema_transformer *t = make("mean_value: 100 scale: 2", CREMA__PHASE__TRAIN, 3);
  ck_assert_int_eq(crema_transformer_apply(t, img, NULL, C, H, W, 5, &wk, out, &err), 0);
  for (int i = 0; i < C * H * W; i++) ck_assert_float_eq(out[i], ((float)img[i] - 100.0f) * 2.0f);
  crema_transformer_free(t);
  t = make("mean_value: 104 mean_value: 117 mean_value: 123", CREMA__PHASE__TEST, 3);
  ck_assert_int_eq(crema_transformer_apply(t, img, NULL, C, H, W, 5, &wk, out, &err), 0);
  const float mv[3] = {104, 117, 123};
  for (int k = 0; k < C; k++)
    for (int i = 0; i < H * W; i++) ck_assert_float_eq(out[k * H * W + i], (float)img[k * H * W + i] - mv[k]);
  /* float input (float_data datums) takes the same path. */
  float in[C * H * W];
  for (int i = 0; i < C * H * W; i++) in[i] = i * 0.5f;
  ck_assert_int_eq(crema_transformer_apply(t, NULL, in, C, H, W, 0, &wk, out, &err), 0);
  ck_assert_float_eq(out[H * W + 3], (H * W + 3) * 0.5f - 117.0f);
  /* Two mean values for 3 channels: an error saying what to give. */
  crema_transformer_free(t);
  t = make("mean_value: 1 mean_value: 2", CREMA__PHASE__TEST, 3);
  ck_assert_int_eq(crema_transformer_apply(t, img, NULL, C, H, W, 0, &wk, out, &err), -1);
  ck_assert_ptr_nonnull(strstr(err.msg, "mean_value"));
  crema_transformer_free(t);
  crema_transform_work_free(&wk);
}
END_TEST

START_TEST(test_errors) {
  char mean[300], text[512];
  int oc, oh, ow;
  crema_error err;
  crema_transformer *t = make("crop_size: 6", CREMA__PHASE__TRAIN, 1);
  ck_assert_int_eq(crema_transformer_shape(t, C, H, W, &oc, &oh, &ow, &err), -1);
  ck_assert_ptr_nonnull(strstr(err.msg, "crop_size 6"));
  crema_transformer_free(t);
  write_mean("small.binaryproto", C, H - 1, W, mean);
  snprintf(text, sizeof text, "mean_file: '%s'", mean);
  t = make(text, CREMA__PHASE__TRAIN, 1);
  ck_assert_int_eq(crema_transformer_shape(t, C, H, W, &oc, &oh, &ow, &err), -1);
  ck_assert_ptr_nonnull(strstr(err.msg, "at least as large"));
  ck_assert_int_eq(crema_transformer_shape(t, 1, H - 1, W, &oc, &oh, &ow, &err), -1);
  ck_assert_ptr_nonnull(strstr(err.msg, "channel"));
  crema_transformer_free(t);
  Crema__TransformationParameter *p = (Crema__TransformationParameter *)test_message(
      &crema__transformation_parameter__descriptor, "mean_file: '/nonexistent/mean.binaryproto'");
  ck_assert_int_eq(crema_transformer_create(p, CREMA__PHASE__TRAIN, 1, &t, &err), -1);
  ck_assert_ptr_nonnull(strstr(err.msg, "/nonexistent/mean.binaryproto"));
  crema_message_free(p);
  p = (Crema__TransformationParameter *)test_message(&crema__transformation_parameter__descriptor,
                                                     "augment { max_area: 0.5 min_area: 0.9 }");
  ck_assert_int_eq(crema_transformer_create(p, CREMA__PHASE__TRAIN, 1, &t, &err), -1);
  ck_assert_ptr_nonnull(strstr(err.msg, "min_area"));
  crema_message_free(p);
}
END_TEST

START_TEST(test_augmentation) {
  crema_transform_work wk = {0};
  crema_error err;
  float a[C * 9], b[C * 9];
  crema_transformer *t =
      make("crop_size: 3 mirror: true augment { max_rotation: 30 max_area: 0.8 min_area: 0.3 "
           "brightness: 0.4 contrast: 0.4 saturation: 0.4 }",
           CREMA__PHASE__TRAIN, 9);
  int differ = 0;
  for (uint64_t r = 0; r < 20; r++) {
    ck_assert_int_eq(crema_transformer_apply(t, img, NULL, C, H, W, r, &wk, a, &err), 0);
    ck_assert_int_eq(crema_transformer_apply(t, img, NULL, C, H, W, r, &wk, b, &err), 0);
    ck_assert_int_eq(memcmp(a, b, sizeof a), 0); /* a pure function of the record */
    ck_assert_int_eq(crema_transformer_apply(t, img, NULL, C, H, W, r + 1000, &wk, b, &err), 0);
    differ += memcmp(a, b, sizeof a) != 0;
    for (int i = 0; i < C * 9; i++) ck_assert(isfinite(a[i]) && a[i] >= 0.0f && a[i] <= 255.0f);
  }
  ck_assert_int_ge(differ, 18);
  crema_transformer_free(t);
  /* In TEST the augmentation is off: exactly the centre crop. */
  t = make("crop_size: 3 augment { max_rotation: 30 brightness: 0.4 }", CREMA__PHASE__TEST, 9);
  ck_assert_int_eq(crema_transformer_apply(t, img, NULL, C, H, W, 0, &wk, a, &err), 0);
  expect(b, 3, 3, 1, 2, 0, 1.0f, 0, 0);
  ck_assert_int_eq(memcmp(a, b, sizeof a), 0);
  crema_transformer_free(t);
  /* Brightness alone scales every unclipped pixel by one factor in [0.8, 1.2]. */
  t = make("augment { brightness: 0.2 }", CREMA__PHASE__TRAIN, 9);
  float full[C * H * W];
  ck_assert_int_eq(crema_transformer_apply(t, img, NULL, C, H, W, 4, &wk, full, &err), 0);
  double factor = -1;
  for (int i = 0; i < C * H * W; i++) {
    if (img[i] < 10 || full[i] >= 255.0f) continue;
    const double f = full[i] / img[i];
    if (factor < 0) factor = f;
    ck_assert_double_eq_tol(f, factor, 1e-4);
  }
  ck_assert(factor >= 0.8 && factor <= 1.2);
  crema_transformer_free(t);
  /* Rotation turns about the centre pixel (kept exactly) and fills what comes from
   * outside the image with zeros. */
  t = make("augment { max_rotation: 90 }", CREMA__PHASE__TRAIN, 9);
  int zero_filled = 0;
  for (uint64_t r = 0; r < 10; r++) {
    ck_assert_int_eq(crema_transformer_apply(t, img, NULL, C, H, W, r, &wk, full, &err), 0);
    for (int k = 0; k < C; k++)
      ck_assert_float_eq(full[(k * H + 2) * W + 3], (float)img[(k * H + 2) * W + 3]);
    zero_filled += full[0] == 0.0f && img[0] != 0;
  }
  ck_assert_int_gt(zero_filled, 0);
  crema_transformer_free(t);
  crema_transform_work_free(&wk);
}
END_TEST

int main(void) {
  Suite *s = suite_create("transformer");
  TCase *tc = tcase_create("core");
  tcase_add_checked_fixture(tc, setup, teardown);
  tcase_add_test(tc, test_test_phase_centre_crop_mean_file);
  tcase_add_test(tc, test_train_random_crop_mirror);
  tcase_add_test(tc, test_mean_values_and_floats);
  tcase_add_test(tc, test_errors);
  tcase_add_test(tc, test_augmentation);
  suite_add_tcase(s, tc);
  return test_run_suite(s);
}
