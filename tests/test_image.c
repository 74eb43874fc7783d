/* Image decode/encode/resize and Caffe's channels-first BGR layout. Resize values are the
 * ones OpenCV's INTER_LINEAR (what Caffe uses) gives for the same inputs. */
#include <check.h>
#include <stdlib.h>
#include <string.h>

#include "support/run.h"
#include "data/datum.h"
#include "data/image.h"
#include "data_test_util.h"

START_TEST(test_png_roundtrip_and_bgr) {
  const int w = 7, h = 5;
  uint8_t *px = random_pixels(w, h, 3, 1);
  crema_image img = {w, h, 3, px}, back;
  uint8_t *png;
  size_t len;
  crema_error err;
  ck_assert_msg(crema_image_encode(&img, "png", &png, &len, &err) == 0, "%s", err.msg);
  ck_assert_int_eq(crema_image_native_channels(png, len), 3);
  ck_assert_msg(crema_image_decode(png, len, CREMA_IMAGE_NATIVE, "mem", &back, &err) == 0, "%s", err.msg);
  ck_assert_int_eq(back.width, w);
  ck_assert_int_eq(back.height, h);
  ck_assert_int_eq(back.channels, 3);
  ck_assert_int_eq(memcmp(back.data, px, (size_t)w * h * 3), 0);
  /* Channels-first BGR: plane 0 is blue (stb's third channel), plane 2 red. */
  uint8_t chw[7 * 5 * 3];
  crema_image_to_chw_bgr(&back, chw);
  for (int y = 0; y < h; y++)
    for (int x = 0; x < w; x++)
      for (int c = 0; c < 3; c++) ck_assert_int_eq(chw[(c * h + y) * w + x], px[(y * w + x) * 3 + (2 - c)]);
  crema_image again;
  ck_assert_int_eq(crema_image_from_chw_bgr(chw, 3, h, w, &again, &err), 0);
  ck_assert_int_eq(memcmp(again.data, px, (size_t)w * h * 3), 0);
  /* Grey decoding of a colour file uses stb's luma weights (77 R + 150 G + 29 B) >> 8. */
  crema_image g;
  ck_assert_int_eq(crema_image_decode(png, len, CREMA_IMAGE_GRAY, "mem", &g, &err), 0);
  ck_assert_int_eq(g.channels, 1);
  const uint8_t *p0 = px;
  ck_assert_int_eq(g.data[0], (p0[0] * 77 + p0[1] * 150 + p0[2] * 29) >> 8);
  crema_image_free(&g);
  crema_image_free(&again);
  crema_image_free(&back);
  free(png);
  free(px);
}
END_TEST

START_TEST(test_real_jpegs) {
  crema_image img;
  crema_error err;
  ck_assert_msg(crema_image_decode_file(CREMA_TEST_DATA "/images/cat.jpg", CREMA_IMAGE_NATIVE, &img, &err) ==
                    0,
                "%s", err.msg);
  ck_assert_int_eq(img.width, 480);
  ck_assert_int_eq(img.height, 360);
  ck_assert_int_eq(img.channels, 3);
  crema_image_free(&img);
  ck_assert_int_eq(
      crema_image_decode_file(CREMA_TEST_DATA "/images/cat gray.jpg", CREMA_IMAGE_NATIVE, &img, &err), 0);
  ck_assert_int_eq(img.channels, 1);
  crema_image_free(&img);
  /* A grey file asked for in colour: three equal channels. */
  ck_assert_int_eq(
      crema_image_decode_file(CREMA_TEST_DATA "/images/cat gray.jpg", CREMA_IMAGE_COLOR, &img, &err), 0);
  ck_assert_int_eq(img.channels, 3);
  ck_assert_int_eq(img.data[3000], img.data[3001]);
  ck_assert_int_eq(img.data[3000], img.data[3002]);
  crema_image_free(&img);
  ck_assert_int_eq(
      crema_image_decode_file(CREMA_TEST_DATA "/images/fish-bike.jpg", CREMA_IMAGE_COLOR, &img, &err), 0);
  ck_assert_int_eq(img.width, 481);
  ck_assert_int_eq(img.height, 323);
  /* JPEG re-encode keeps the size and stays close to the pixels. */
  uint8_t *jpg;
  size_t len;
  ck_assert_int_eq(crema_image_encode(&img, "jpg", &jpg, &len, &err), 0);
  crema_image back;
  ck_assert_int_eq(crema_image_decode(jpg, len, CREMA_IMAGE_COLOR, "mem", &back, &err), 0);
  ck_assert_int_eq(back.width, 481);
  double diff = 0;
  for (size_t i = 0; i < (size_t)481 * 323 * 3; i++) diff += abs((int)back.data[i] - (int)img.data[i]);
  ck_assert_double_lt(diff / (481.0 * 323 * 3), 4.0);
  crema_image_free(&back);
  free(jpg);
  crema_image_free(&img);
}
END_TEST

START_TEST(test_errors) {
  crema_image img = {0};
  crema_error err;
  const uint8_t junk[] = "this is not an image at all";
  ck_assert_int_eq(crema_image_decode(junk, sizeof junk, CREMA_IMAGE_COLOR, "junk.jpg", &img, &err), -1);
  ck_assert_ptr_nonnull(strstr(err.msg, "junk.jpg"));
  ck_assert_ptr_null(img.data);
  ck_assert_int_eq(crema_image_native_channels(junk, sizeof junk), -1);
  ck_assert_int_eq(crema_image_decode_file("/nonexistent/x.png", CREMA_IMAGE_COLOR, &img, &err), -1);
  ck_assert_ptr_nonnull(strstr(err.msg, "/nonexistent/x.png"));
  uint8_t px[3] = {1, 2, 3};
  crema_image one = {1, 1, 3, px};
  uint8_t *out;
  size_t len;
  ck_assert_int_eq(crema_image_encode(&one, "webp", &out, &len, &err), -1);
  ck_assert_ptr_nonnull(strstr(err.msg, "png or jpg"));
}
END_TEST

START_TEST(test_resize_like_opencv) {
  crema_error err;
  /* Upscale 2 -> 4: OpenCV INTER_LINEAR gives 0 25 75 100. */
  uint8_t row[2] = {0, 100};
  crema_image a = {2, 1, 1, row}, r;
  ck_assert_int_eq(crema_image_resize(&a, 4, 1, &r, &err), 0);
  const uint8_t up[4] = {0, 25, 75, 100};
  ck_assert_int_eq(memcmp(r.data, up, 4), 0);
  crema_image_free(&r);
  /* Downscale 4 -> 2 samples between pixels, no smoothing: 50 125. */
  uint8_t row4[4] = {0, 100, 200, 50};
  crema_image b = {4, 1, 1, row4};
  ck_assert_int_eq(crema_image_resize(&b, 2, 1, &r, &err), 0);
  ck_assert_int_eq(r.data[0], 50);
  ck_assert_int_eq(r.data[1], 125);
  crema_image_free(&r);
  /* 2-D: (1,1) of a 2x2 -> 4x4 is 0.75/0.25 in both directions: 58.75 -> 59. */
  uint8_t sq[4] = {0, 100, 200, 40};
  crema_image c = {2, 2, 1, sq};
  ck_assert_int_eq(crema_image_resize(&c, 4, 4, &r, &err), 0);
  ck_assert_int_eq(r.data[1 * 4 + 1], 59);
  ck_assert_int_eq(r.data[0], 0);
  ck_assert_int_eq(r.data[15], 40);
  crema_image_free(&r);
  /* A constant colour image stays constant at any size; channels stay interleaved. */
  uint8_t *flat = malloc(9 * 7 * 3);
  for (int i = 0; i < 9 * 7; i++) flat[3 * i] = 10, flat[3 * i + 1] = 20, flat[3 * i + 2] = 30;
  crema_image f = {9, 7, 3, flat};
  ck_assert_int_eq(crema_image_resize(&f, 5, 13, &r, &err), 0);
  for (int i = 0; i < 5 * 13; i++) {
    ck_assert_int_eq(r.data[3 * i], 10);
    ck_assert_int_eq(r.data[3 * i + 2], 30);
  }
  crema_image_free(&r);
  free(flat);
  /* The float plane version agrees with the byte version before rounding. */
  float src[4] = {0, 100, 200, 40}, dst[16];
  crema_resize_planes_f32(src, 1, 2, 2, dst, 4, 4);
  ck_assert_float_eq_tol(dst[5], 58.75f, 1e-4f);
  ck_assert_int_eq(crema_image_resize(&a, 0, 1, &r, &err), -1);
}
END_TEST

START_TEST(test_datum_roundtrip) {
  uint8_t chw[2 * 3 * 4];
  for (int i = 0; i < 24; i++) chw[i] = (uint8_t)(i * 10);
  crema_bytes buf = {0};
  crema_error err;
  ck_assert_int_eq(crema_datum_serialize_raw(chw, 2, 3, 4, -7, &buf, &err), 0);
  /* Byte for byte what Caffe's CVMatToDatum + set_label serialize (C++ protobuf writes
   * fields in number order: channels, height, width, data, label, encoded = false). */
  const uint8_t caffe_head[] = {0x08, 2, 0x10, 3, 0x18, 4, 0x22, 24};
  ck_assert_int_eq(buf.len, sizeof caffe_head + 24 + 11 + 2);
  ck_assert_int_eq(memcmp(buf.data, caffe_head, sizeof caffe_head), 0);
  ck_assert_int_eq(memcmp(buf.data + sizeof caffe_head, chw, 24), 0);
  const uint8_t caffe_tail[] = {0x28, 0xf9, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0x01, 0x38, 0x00};
  ck_assert_int_eq(memcmp(buf.data + sizeof caffe_head + 24, caffe_tail, sizeof caffe_tail), 0);
  /* protobuf-c's own parser agrees with our zero-copy view. */
  Crema__Datum *d = crema__datum__unpack(NULL, buf.len, buf.data);
  ck_assert_ptr_nonnull(d);
  ck_assert_int_eq(d->channels, 2);
  ck_assert_int_eq(d->label, -7);
  crema__datum__free_unpacked(d, NULL);
  crema_datum_view v;
  ck_assert_int_eq(crema_datum_parse(buf.data, buf.len, "k", &v, &err), 0);
  ck_assert_int_eq(v.channels, 2);
  ck_assert_int_eq(v.height, 3);
  ck_assert_int_eq(v.width, 4);
  ck_assert_int_eq(v.label, -7);
  ck_assert(!v.encoded);
  ck_assert_int_eq(v.data_len, 24);
  ck_assert_int_eq(memcmp(v.data, chw, 24), 0);
  /* float_data, written by protobuf-c (unpacked, as Caffe's proto2 field). */
  Crema__Datum f = CREMA__DATUM__INIT;
  float vals[6] = {1.5f, -2, 3, 4, 5, 6.25f};
  f.has_channels = f.has_height = f.has_width = 1;
  f.channels = 6;
  f.height = f.width = 1;
  f.n_float_data = 6;
  f.float_data = vals;
  ck_assert_int_eq(crema_datum_serialize(&f, &buf, &err), 0);
  ck_assert_int_eq(crema_datum_parse(buf.data, buf.len, "k", &v, &err), 0);
  ck_assert_int_eq(v.n_float, 6);
  float got[6];
  crema_datum_copy_floats(&v, got);
  ck_assert_int_eq(memcmp(got, vals, sizeof vals), 0);
  /* Encoded records as Caffe's ReadFileToDatum writes them: data, label, encoded = true. */
  const uint8_t file[3] = {0xff, 0xd8, 0xff};
  ck_assert_int_eq(crema_datum_serialize_encoded(file, 3, 5, &buf, &err), 0);
  const uint8_t caffe_enc[] = {0x22, 3, 0xff, 0xd8, 0xff, 0x28, 5, 0x38, 1};
  ck_assert_int_eq(buf.len, sizeof caffe_enc);
  ck_assert_int_eq(memcmp(buf.data, caffe_enc, sizeof caffe_enc), 0);
  /* Garbage is reported with the record's name. */
  const uint8_t bad[] = {0x22, 0x50, 0x01};
  ck_assert_int_eq(crema_datum_parse(bad, sizeof bad, "\"00000003_x.jpg\"", &v, &err), -1);
  ck_assert_ptr_nonnull(strstr(err.msg, "00000003_x.jpg"));
  crema_bytes_free(&buf);
}
END_TEST

int main(void) {
  Suite *s = suite_create("image");
  TCase *tc = tcase_create("core");
  tcase_add_test(tc, test_png_roundtrip_and_bgr);
  tcase_add_test(tc, test_real_jpegs);
  tcase_add_test(tc, test_errors);
  tcase_add_test(tc, test_resize_like_opencv);
  tcase_add_test(tc, test_datum_roundtrip);
  suite_add_tcase(s, tc);
  return test_run_suite(s);
}
