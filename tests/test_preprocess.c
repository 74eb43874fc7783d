/* The deploy-time preprocessing (preprocess.prototxt) against values computed here
 * independently: (pixel - mean at the full-size position) * scale, BGR planes, centre crop;
 * the 10-crop oversample in classify.py's order; resize before crop; channel conversion of
 * pixel buffers in every order agreeing with decoding the same picture from a PNG; a mean
 * file relative to the preprocess file's folder; RGB channel order; errors that name the
 * file and place. */
#include <check.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "data/mean.h"
#include "data/preprocess.h"
#include "data_test_util.h"
#include "support/run.h"

enum { W = 8, H = 6 };
static char dir[256];
static uint8_t *rgb; /* H x W x 3 interleaved RGB */

static void setup(void) {
  tmp_dir(dir);
  rgb = random_pixels(W, H, 3, 5);
}
static void teardown(void) {
  free(rgb);
  remove_tree(dir);
}

/* mean(k, y, x) = 10 k + y + 0.25 x, size 3 x H x W, written to dir/name. */
static void write_mean(const char *name) {
  crema_mean m = {3, H, W, malloc(sizeof(float) * 3 * H * W), 0};
  for (int k = 0; k < 3; k++)
    for (int y = 0; y < H; y++)
      for (int x = 0; x < W; x++) m.data[(k * H + y) * W + x] = 10.0f * k + y + 0.25f * x;
  char path[400];
  snprintf(path, sizeof path, "%s/%s", dir, name);
  crema_error err;
  ck_assert_int_eq(crema_mean_write(path, &m, &err), 0);
  crema_mean_free(&m);
}
static float mean_at(int k, int y, int x) { return 10.0f * k + y + 0.25f * x; }

static crema_preprocess *load(const char *text) {
  char path[400];
  snprintf(path, sizeof path, "%s/preprocess.prototxt", dir);
  write_text(path, text);
  crema_preprocess *pp;
  crema_error err;
  ck_assert_msg(crema_preprocess_load(path, &pp, &err) == 0, "%s: %s", text, err.msg);
  return pp;
}

/* BGR plane k of the RGB test image at (y, x). */
static float px(int k, int y, int x) { return rgb[(y * W + x) * 3 + (2 - k)]; }

START_TEST(test_mean_file_scale_centre_crop) {
  write_mean("mean.binaryproto");
  /* relative mean_file: read from the preprocess file's folder */
  crema_preprocess *pp = load("crop_size: 4 mean_file: 'mean.binaryproto' scale: 0.5 mirror: true\n");
  int c, h, w;
  crema_error err;
  ck_assert_int_eq(crema_preprocess_shape(pp, 3, H, W, &c, &h, &w, &err), 0);
  ck_assert_int_eq(c, 3);
  ck_assert_int_eq(h, 4);
  ck_assert_int_eq(w, 4);
  float out[3 * 4 * 4];
  ck_assert_int_eq(crema_preprocess_pixels(pp, rgb, W, H, 0, CREMA_PIXELS_RGB, false, out, 48, &err), 0);
  const int y0 = (H - 4) / 2, x0 = (W - 4) / 2; /* 1, 2 */
  for (int k = 0; k < 3; k++)
    for (int y = 0; y < 4; y++)
      for (int x = 0; x < 4; x++)
        ck_assert_float_eq_tol(out[(k * 4 + y) * 4 + x],
                               (px(k, y + y0, x + x0) - mean_at(k, y + y0, x + x0)) * 0.5f, 1e-5);
  /* mirror is training-only: a second call gives the same, unmirrored values */
  float again[48];
  ck_assert_int_eq(crema_preprocess_pixels(pp, rgb, W, H, 0, CREMA_PIXELS_RGB, false, again, 48, &err), 0);
  ck_assert_mem_eq(out, again, sizeof out);
  /* too small an output buffer is refused, naming both sizes */
  ck_assert_int_eq(crema_preprocess_pixels(pp, rgb, W, H, 0, CREMA_PIXELS_RGB, false, out, 47, &err), -1);
  ck_assert_msg(strstr(err.msg, "47") && strstr(err.msg, "48"), "%s", err.msg);
  crema_preprocess_free(pp);
}
END_TEST

START_TEST(test_oversample_ten_crops) {
  crema_preprocess *pp = load("crop_size: 3 mean_value: 1 mean_value: 2 mean_value: 3\n");
  float out[10 * 27];
  crema_error err;
  ck_assert_int_eq(crema_preprocess_pixels(pp, rgb, W, H, 0, CREMA_PIXELS_RGB, true, out, 270, &err), 0);
  const int ys[5] = {0, 0, H - 3, H - 3, (H - 3) / 2}, xs[5] = {0, W - 3, 0, W - 3, (W - 3) / 2};
  for (int i = 0; i < 10; i++)
    for (int k = 0; k < 3; k++)
      for (int y = 0; y < 3; y++)
        for (int x = 0; x < 3; x++) {
          const int sx = i >= 5 ? 2 - x : x;
          ck_assert_float_eq_tol(out[i * 27 + (k * 3 + y) * 3 + x],
                                 px(k, ys[i % 5] + y, xs[i % 5] + sx) - (float)(k + 1), 1e-5);
        }
  crema_preprocess_free(pp);
  /* no crop, no oversample */
  pp = load("scale: 2\n");
  ck_assert_int_eq(crema_preprocess_pixels(pp, rgb, W, H, 0, CREMA_PIXELS_RGB, true, out, 270, &err), -1);
  ck_assert_msg(strstr(err.msg, "crop_size"), "%s", err.msg);
  crema_preprocess_free(pp);
}
END_TEST

/* Every pixel order of the same picture, and the PNG file, give identical inputs. */
START_TEST(test_pixel_orders_and_file_agree) {
  crema_preprocess *pp = load("crop_size: 4 mean_value: 100 resize_height: 9 resize_width: 7\n");
  crema_error err;
  int c, h, w;
  ck_assert_int_eq(crema_preprocess_shape(pp, 3, 100, 50, &c, &h, &w, &err), 0);
  ck_assert_int_eq(h, 4);
  float ref[48], got[48];
  ck_assert_int_eq(crema_preprocess_pixels(pp, rgb, W, H, 0, CREMA_PIXELS_RGB, false, ref, 48, &err), 0);
  /* the reference is the resize rule applied to the picture, then centre crop */
  crema_image im = {W, H, 3, rgb}, rs;
  ck_assert_int_eq(crema_image_resize(&im, 7, 9, &rs, &err), 0);
  for (int k = 0; k < 3; k++)
    for (int y = 0; y < 4; y++)
      for (int x = 0; x < 4; x++)
        ck_assert_float_eq(ref[(k * 4 + y) * 4 + x],
                           (float)rs.data[((y + 2) * 7 + x + 1) * 3 + (2 - k)] - 100.0f);
  crema_image_free(&rs);
  /* BGR, RGBA, BGRA with padded rows */
  uint8_t *bgr = malloc(H * W * 3), *rgba = malloc(H * (W * 4 + 5)), *bgra = malloc(H * (W * 4 + 5));
  for (int y = 0; y < H; y++)
    for (int x = 0; x < W; x++) {
      const uint8_t *s = rgb + (y * W + x) * 3;
      uint8_t *b = bgr + (y * W + x) * 3, *a = rgba + y * (W * 4 + 5) + x * 4,
              *z = bgra + y * (W * 4 + 5) + x * 4;
      b[0] = s[2], b[1] = s[1], b[2] = s[0];
      a[0] = s[0], a[1] = s[1], a[2] = s[2], a[3] = 7;
      z[0] = s[2], z[1] = s[1], z[2] = s[0], z[3] = 9;
    }
  ck_assert_int_eq(crema_preprocess_pixels(pp, bgr, W, H, 0, CREMA_PIXELS_BGR, false, got, 48, &err), 0);
  ck_assert_mem_eq(ref, got, sizeof ref);
  ck_assert_int_eq(
      crema_preprocess_pixels(pp, rgba, W, H, W * 4 + 5, CREMA_PIXELS_RGBA, false, got, 48, &err), 0);
  ck_assert_mem_eq(ref, got, sizeof ref);
  ck_assert_int_eq(
      crema_preprocess_pixels(pp, bgra, W, H, W * 4 + 5, CREMA_PIXELS_BGRA, false, got, 48, &err), 0);
  ck_assert_mem_eq(ref, got, sizeof ref);
  char png[400];
  snprintf(png, sizeof png, "%s/pic.png", dir);
  write_png(png, W, H, 3, rgb);
  ck_assert_int_eq(crema_preprocess_file(pp, png, false, got, 48, &err), 0);
  ck_assert_mem_eq(ref, got, sizeof ref);
  /* a stride shorter than a row */
  ck_assert_int_eq(crema_preprocess_pixels(pp, rgba, W, H, W * 3, CREMA_PIXELS_RGBA, false, got, 48, &err),
                   -1);
  ck_assert_msg(strstr(err.msg, "stride"), "%s", err.msg);
  free(bgr);
  free(rgba);
  free(bgra);
  crema_preprocess_free(pp);
}
END_TEST

/* force_gray: a colour buffer becomes the grey level the PNG decoder computes; force_color
 * turns grey into three equal planes; channel_order RGB swaps the colour planes. */
START_TEST(test_channels) {
  crema_preprocess *pp = load("force_gray: true\n");
  crema_error err;
  int c, h, w;
  ck_assert_int_eq(crema_preprocess_shape(pp, 3, H, W, &c, &h, &w, &err), 0);
  ck_assert_int_eq(c, 1);
  float a[H * W], b[H * W];
  ck_assert_int_eq(crema_preprocess_pixels(pp, rgb, W, H, 0, CREMA_PIXELS_RGB, false, a, H * W, &err), 0);
  char png[400];
  snprintf(png, sizeof png, "%s/pic.png", dir);
  write_png(png, W, H, 3, rgb);
  ck_assert_int_eq(crema_preprocess_file(pp, png, false, b, H * W, &err), 0);
  ck_assert_mem_eq(a, b, sizeof a);
  const uint8_t *p0 = rgb;
  ck_assert_float_eq(a[0], (float)((p0[0] * 77 + p0[1] * 150 + p0[2] * 29) >> 8));
  crema_preprocess_free(pp);

  pp = load("force_color: true\n");
  float col[3 * H * W];
  ck_assert_int_eq(crema_preprocess_pixels(pp, rgb, W, H, 0, CREMA_PIXELS_GRAY, false, col, 3 * H * W, &err),
                   0);
  for (int i = 0; i < H * W; i++) {
    ck_assert_float_eq(col[i], (float)rgb[i]);
    ck_assert_float_eq(col[2 * H * W + i], (float)rgb[i]);
  }
  crema_preprocess_free(pp);

  pp = load("channel_order: RGB mean_value: [1, 2, 3]\n");
  ck_assert_int_eq(crema_preprocess_pixels(pp, rgb, W, H, 0, CREMA_PIXELS_RGB, false, col, 3 * H * W, &err),
                   0);
  for (int k = 0; k < 3; k++) ck_assert_float_eq(col[k * H * W + 3], (float)rgb[3 * 3 + k] - (float)(k + 1));
  crema_preprocess_free(pp);
}
END_TEST

START_TEST(test_errors_name_file_and_place) {
  char path[400];
  snprintf(path, sizeof path, "%s/preprocess.prototxt", dir);
  crema_preprocess *pp;
  crema_error err;
  write_text(path, "scale: 1\ncrop_sise: 3\n");
  ck_assert_int_eq(crema_preprocess_load(path, &pp, &err), -1);
  ck_assert_ptr_null(pp);
  ck_assert_msg(strstr(err.msg, "preprocess.prototxt:2:1") && strstr(err.msg, "crop_sise"), "%s", err.msg);
  write_text(path, "mean_file: 'nowhere.binaryproto'\n");
  ck_assert_int_eq(crema_preprocess_load(path, &pp, &err), -1);
  ck_assert_msg(strstr(err.msg, "nowhere.binaryproto") && strstr(err.msg, dir), "%s", err.msg);
  write_text(path, "resize_height: 10\n");
  ck_assert_int_eq(crema_preprocess_load(path, &pp, &err), -1);
  ck_assert_msg(strstr(err.msg, "resize_width"), "%s", err.msg);
  write_text(path, "crop_size: 20 resize_height: 10 resize_width: 10\n");
  ck_assert_int_eq(crema_preprocess_load(path, &pp, &err), -1);
  ck_assert_msg(strstr(err.msg, "crop_size 20"), "%s", err.msg);
  /* a crop larger than an image that is not resized */
  pp = load("crop_size: 7\n");
  float out[3 * 49];
  ck_assert_int_eq(crema_preprocess_pixels(pp, rgb, W, H, 0, CREMA_PIXELS_RGB, false, out, 147, &err), -1);
  ck_assert_msg(strstr(err.msg, "crop_size 7"), "%s", err.msg);
  crema_preprocess_free(pp);
  /* an unreadable image names the file */
  pp = load("scale: 1\n");
  char bad[400];
  snprintf(bad, sizeof bad, "%s/broken.png", dir);
  write_text(bad, "not a png");
  ck_assert_int_eq(crema_preprocess_file(pp, bad, false, out, 147, &err), -1);
  ck_assert_msg(strstr(err.msg, "broken.png"), "%s", err.msg);
  crema_preprocess_free(pp);
}
END_TEST

/* Written with crema_preprocess_write, a message reads back with the same fields. */
START_TEST(test_write_round_trip) {
  Crema__TransformationParameter p = CREMA__TRANSFORMATION_PARAMETER__INIT;
  float mv[1] = {33};
  p.has_crop_size = 1, p.crop_size = 5;
  p.has_resize_height = 1, p.resize_height = 8;
  p.has_resize_width = 1, p.resize_width = 9;
  p.has_scale = 1, p.scale = 0.00390625f;
  p.n_mean_value = 1, p.mean_value = mv;
  p.has_force_gray = 1, p.force_gray = 1;
  char path[400];
  snprintf(path, sizeof path, "%s/pp.prototxt", dir);
  crema_error err;
  ck_assert_int_eq(crema_preprocess_write(path, &p, &err), 0);
  crema_preprocess *pp;
  ck_assert_int_eq(crema_preprocess_load(path, &pp, &err), 0);
  const Crema__TransformationParameter *q = crema_preprocess_param(pp);
  ck_assert_uint_eq(q->crop_size, 5);
  ck_assert_uint_eq(q->resize_height, 8);
  ck_assert_uint_eq(q->resize_width, 9);
  ck_assert_float_eq(q->scale, 0.00390625f);
  ck_assert(q->force_gray);
  int c, h, w;
  ck_assert_int_eq(crema_preprocess_shape(pp, 3, 100, 100, &c, &h, &w, &err), 0);
  ck_assert_int_eq(c, 1);
  ck_assert_int_eq(h * w, 25);
  crema_preprocess_free(pp);
}
END_TEST

int main(void) {
  Suite *s = suite_create("preprocess");
  TCase *tc = tcase_create("core");
  tcase_add_checked_fixture(tc, setup, teardown);
  tcase_add_test(tc, test_mean_file_scale_centre_crop);
  tcase_add_test(tc, test_oversample_ten_crops);
  tcase_add_test(tc, test_pixel_orders_and_file_agree);
  tcase_add_test(tc, test_channels);
  tcase_add_test(tc, test_errors_name_file_and_place);
  tcase_add_test(tc, test_write_round_trip);
  suite_add_tcase(s, tc);
  return test_run_suite(s);
}
