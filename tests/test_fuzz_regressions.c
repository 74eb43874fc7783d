/* Inputs the fuzzers of tests/fuzz found crashing (or misbehaving under the sanitizers): each
 * is kept in tests/data/fuzz and must now be refused with a clear reason, through the same path
 * the fuzz target took. */
#include <check.h>
#include <stdlib.h>
#include <string.h>

#include "common/npy.h"
#include "data/datum.h"
#include "data/image.h"
#include "data_test_util.h"
#include "support/run.h"

/* fuzz_datum: a Datum whose encoded JPEG has a Huffman table of more than 256 codes. stb_image
 * 2.27 wrote past its tables; crema's probe refuses the file before stb sees it. */
START_TEST(test_jpeg_huffman_table_overflow) {
  size_t len;
  char *buf = slurp(CREMA_TEST_DATA "/fuzz/datum-jpeg-dht-overflow.bin", &len);
  ck_assert_ptr_nonnull(buf);
  crema_datum_view v;
  crema_error err;
  ck_assert_int_eq(crema_datum_parse((const uint8_t *)buf, len, "rec", &v, &err), 0);
  ck_assert(v.encoded);
  crema_bytes scratch = {0};
  int c, h, w;
  const uint8_t *px;
  ck_assert_int_eq(crema_datum_pixels(&v, CREMA_IMAGE_NATIVE, "rec", &scratch, &c, &h, &w, &px, &err), -1);
  ck_assert_msg(strstr(err.msg, "rec: corrupt JPEG (a Huffman table of") != NULL, "%s", err.msg);
  ck_assert_msg(strstr(err.msg, "at most 256") != NULL, "%s", err.msg);
  crema_bytes_free(&scratch);
  free(buf);
}
END_TEST

/* fuzz_npy: a .npy header that ends right after "'descr':" and its spaces; the parser read the
 * byte after the buffer as the value's first character. */
START_TEST(test_npy_key_at_header_end) {
  size_t len;
  char *buf = slurp(CREMA_TEST_DATA "/fuzz/npy-key-at-header-end.npy", &len);
  ck_assert_ptr_nonnull(buf);
  uint8_t *exact = malloc(len); /* exactly the file's size, so ASan sees any read past it */
  ck_assert_ptr_nonnull(exact);
  memcpy(exact, buf, len);
  int n, shape[CREMA_MAX_AXES];
  float *values = NULL;
  crema_error err;
  ck_assert_int_eq(crema_npy_parse(exact, len, "x.npy", &n, shape, &values, &err), -1);
  ck_assert_msg(strstr(err.msg, "x.npy: .npy header has no 'descr' string") != NULL, "%s", err.msg);
  ck_assert_ptr_null(values);
  free(exact);
  free(buf);
}
END_TEST

/* fuzz_image: a progressive JPEG whose AC scan uses a Huffman table no DHT segment defined;
 * stb_image 2.27 decoded with the empty table and read 64303 bytes before it. */
START_TEST(test_jpeg_undefined_huffman_table) {
  crema_image img;
  crema_error err;
  ck_assert_int_eq(crema_image_decode_file(CREMA_TEST_DATA "/fuzz/jpeg-undefined-huffman-table.jpg",
                                           CREMA_IMAGE_COLOR, &img, &err),
                   -1);
  ck_assert_msg(strstr(err.msg, "jpeg-undefined-huffman-table.jpg: corrupt JPEG (a scan uses a Huffman table "
                                "that was never defined)") != NULL,
                "%s", err.msg);
}
END_TEST

int main(void) {
  Suite *s = suite_create("fuzz_regressions");
  TCase *tc = tcase_create("core");
  tcase_add_test(tc, test_jpeg_huffman_table_overflow);
  tcase_add_test(tc, test_npy_key_at_header_end);
  tcase_add_test(tc, test_jpeg_undefined_huffman_table);
  suite_add_tcase(s, tc);
  return test_run_suite(s);
}
