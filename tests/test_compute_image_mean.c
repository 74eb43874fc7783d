/* compute_image_mean: the .binaryproto equals an independent double-precision mean to 1e-5
 * for raw, encoded (PNG) and float datums; Caffe's legacy BlobProto fields and log lines;
 * mixed sizes refused naming the record; mean files read back in both shape forms. */
#include <check.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "support/run.h"
#include "data/datum.h"
#include "data/lmdb_db.h"
#include "data/mean.h"
#include "data_test_util.h"

enum { N = 23, C = 3, H = 5, W = 7 };
static char dir[256];
static uint8_t images[N][C * H * W]; /* channels-first, as stored */

static void setup(void) {
  tmp_dir(dir);
  for (int i = 0; i < N; i++) {
    uint8_t *px = random_pixels(W, H, C, (uint64_t)i + 100);
    memcpy(images[i], px, sizeof images[i]);
    free(px);
  }
}

static void teardown(void) { remove_tree(dir); }

/* kind 0: raw bytes, 1: encoded PNG, 2: float_data; odd_one >= 0 gets a different size. */
static void make_db(const char *name, int kind, int odd_one) {
  char p[512];
  snprintf(p, sizeof p, "%s/%s", dir, name);
  crema_lmdb_writer *w;
  crema_error err;
  ck_assert_msg(crema_lmdb_create(p, 0, &w, &err) == 0, "%s", err.msg);
  crema_bytes rec = {0};
  for (int i = 0; i < N; i++) {
    const int h = i == odd_one ? H - 1 : H;
    if (kind == 0) {
      ck_assert_int_eq(crema_datum_serialize_raw(images[i], C, h, W, i, &rec, &err), 0);
    } else if (kind == 1) {
      crema_image img;
      uint8_t *png;
      size_t len;
      ck_assert_int_eq(crema_image_from_chw_bgr(images[i], C, h, W, &img, &err), 0);
      ck_assert_int_eq(crema_image_encode(&img, "png", &png, &len, &err), 0);
      ck_assert_int_eq(crema_datum_serialize_encoded(png, len, i, &rec, &err), 0);
      free(png);
      crema_image_free(&img);
    } else {
      Crema__Datum d = CREMA__DATUM__INIT;
      float f[C * H * W];
      for (int j = 0; j < C * H * W; j++) f[j] = images[i][j] * 0.5f - 3.0f;
      d.has_channels = d.has_height = d.has_width = 1;
      d.channels = C;
      d.height = h;
      d.width = W;
      d.n_float_data = (size_t)C * h * W;
      d.float_data = f;
      ck_assert_int_eq(crema_datum_serialize(&d, &rec, &err), 0);
    }
    char key[32];
    int kl = snprintf(key, sizeof key, "%08d_img%d.png", i, i);
    ck_assert_int_eq(crema_lmdb_put(w, key, (size_t)kl, rec.data, rec.len, &err), 0);
  }
  crema_bytes_free(&rec);
  ck_assert_int_eq(crema_lmdb_writer_close(w, &err), 0);
}

static void expected_mean(int kind, double *out) {
  for (int j = 0; j < C * H * W; j++) {
    double s = 0;
    for (int i = 0; i < N; i++) s += kind == 2 ? images[i][j] * 0.5 - 3.0 : images[i][j];
    out[j] = s / N;
  }
}

static void check_binaryproto(const char *path, int kind) {
  size_t len;
  char *buf = slurp(path, &len);
  ck_assert_ptr_nonnull(buf);
  Crema__BlobProto *b = crema__blob_proto__unpack(NULL, len, (const uint8_t *)buf);
  free(buf);
  ck_assert_ptr_nonnull(b);
  /* Caffe's form: legacy num/channels/height/width, no shape. */
  ck_assert_ptr_null(b->shape);
  ck_assert_int_eq(b->num, 1);
  ck_assert_int_eq(b->channels, C);
  ck_assert_int_eq(b->height, H);
  ck_assert_int_eq(b->width, W);
  ck_assert_int_eq(b->n_data, C * H * W);
  double want[C * H * W];
  expected_mean(kind, want);
  for (int j = 0; j < C * H * W; j++) ck_assert_double_eq_tol(b->data[j], want[j], 1e-5);
  crema__blob_proto__free_unpacked(b, NULL);
}

START_TEST(test_raw_tool) {
  make_db("raw", 0, -1);
  char args[1024], *out, p[512];
  snprintf(args, sizeof args, "compute_image_mean '%s/raw' '%s/mean.binaryproto'", dir, dir);
  ck_assert_int_eq(run_tool(dir, args, &out), 0);
  ck_assert_msg(strstr(out, "Number of channels: 3") != NULL, "%s", out);
  double want[C * H * W];
  expected_mean(0, want);
  for (int c = 0; c < C; c++) {
    char tag[64];
    snprintf(tag, sizeof tag, "mean_value channel [%d]: ", c);
    const char *at = strstr(out, tag);
    ck_assert_msg(at != NULL, "%s", out);
    double s = 0;
    for (int j = 0; j < H * W; j++) s += want[c * H * W + j];
    ck_assert_double_eq_tol(strtod(at + strlen(tag), NULL), s / (H * W), 1e-3);
  }
  free(out);
  snprintf(p, sizeof p, "%s/mean.binaryproto", dir);
  check_binaryproto(p, 0);
  /* Read back through the library (legacy form). */
  crema_mean m;
  crema_error err;
  ck_assert_msg(crema_mean_read(p, &m, &err) == 0, "%s", err.msg);
  ck_assert_int_eq(m.channels, C);
  ck_assert_int_eq(m.height, H);
  ck_assert_int_eq(m.width, W);
  ck_assert_double_eq_tol(m.data[10], want[10], 1e-5);
  crema_mean_free(&m);
}
END_TEST

START_TEST(test_encoded_and_float) {
  make_db("enc", 1, -1);
  make_db("flt", 2, -1);
  char p[512];
  crema_mean m;
  crema_error err;
  snprintf(p, sizeof p, "%s/enc", dir);
  ck_assert_msg(crema_compute_image_mean(p, NULL, NULL, &m, &err) == 0, "%s", err.msg);
  ck_assert_int_eq(m.count, N);
  snprintf(p, sizeof p, "%s/enc.binaryproto", dir);
  ck_assert_int_eq(crema_mean_write(p, &m, &err), 0);
  crema_mean_free(&m);
  check_binaryproto(p, 1); /* PNG is lossless: same mean as the raw bytes */
  snprintf(p, sizeof p, "%s/flt", dir);
  ck_assert_msg(crema_compute_image_mean(p, NULL, NULL, &m, &err) == 0, "%s", err.msg);
  snprintf(p, sizeof p, "%s/flt.binaryproto", dir);
  ck_assert_int_eq(crema_mean_write(p, &m, &err), 0);
  crema_mean_free(&m);
  check_binaryproto(p, 2);
}
END_TEST

START_TEST(test_errors_and_shape_form) {
  make_db("mixed", 0, 9);
  char args[1024], *out, p[512];
  snprintf(args, sizeof args, "compute_image_mean '%s/mixed' '%s/mixed.binaryproto'", dir, dir);
  ck_assert_int_ne(run_tool(dir, args, &out), 0);
  ck_assert_msg(strstr(out, "error:") && strstr(out, "00000009_img9.png"), "%s", out);
  free(out);
  struct stat st;
  snprintf(p, sizeof p, "%s/mixed.binaryproto", dir);
  ck_assert_int_ne(stat(p, &st), 0);
  snprintf(args, sizeof args, "compute_image_mean '%s/none'", dir);
  ck_assert_int_ne(run_tool(dir, args, &out), 0);
  ck_assert_ptr_nonnull(strstr(out, "does not exist"));
  free(out);
  snprintf(args, sizeof args, "compute_image_mean --backend=rocksdb '%s/none'", dir);
  ck_assert_int_ne(run_tool(dir, args, &out), 0);
  ck_assert_ptr_nonnull(strstr(out, "use lmdb or leveldb"));
  free(out);
  /* A mean written with the `shape` field (as newer tools do) reads the same. */
  float vals[2 * 3 * 4];
  for (int i = 0; i < 24; i++) vals[i] = (float)i;
  Crema__BlobShape shape = CREMA__BLOB_SHAPE__INIT;
  int64_t dims[4] = {1, 2, 3, 4};
  shape.n_dim = 4;
  shape.dim = dims;
  Crema__BlobProto b = CREMA__BLOB_PROTO__INIT;
  b.shape = &shape;
  b.n_data = 24;
  b.data = vals;
  uint8_t buf[512];
  size_t len = crema__blob_proto__pack(&b, buf);
  snprintf(p, sizeof p, "%s/shape.binaryproto", dir);
  FILE *f = fopen(p, "wb");
  fwrite(buf, 1, len, f);
  fclose(f);
  crema_mean m;
  crema_error err;
  ck_assert_msg(crema_mean_read(p, &m, &err) == 0, "%s", err.msg);
  ck_assert_int_eq(m.channels, 2);
  ck_assert_int_eq(m.height, 3);
  ck_assert_int_eq(m.width, 4);
  ck_assert_float_eq(m.data[23], 23.0f);
  crema_mean_free(&m);
  /* Byte for byte Caffe's compute_image_mean output for a 1 x 1 x 2 mean: num, channels,
   * height, width, then the packed data. */
  float two[2] = {1.5f, -2.0f};
  crema_mean tiny = {1, 1, 2, two, 1};
  snprintf(p, sizeof p, "%s/tiny.binaryproto", dir);
  ck_assert_int_eq(crema_mean_write(p, &tiny, &err), 0);
  size_t tlen;
  char *tb = slurp(p, &tlen);
  const uint8_t caffe_bytes[] = {0x08, 1, 0x10, 1, 0x18, 1, 0x20, 2, 0x2a, 8};
  ck_assert_int_eq(tlen, sizeof caffe_bytes + 8);
  ck_assert_int_eq(memcmp(tb, caffe_bytes, sizeof caffe_bytes), 0);
  ck_assert_int_eq(memcmp(tb + sizeof caffe_bytes, two, 8), 0);
  free(tb);
  /* Not a BlobProto. */
  snprintf(p, sizeof p, "%s/junk.binaryproto", dir);
  write_text(p, "\xff\xff\xff junk");
  ck_assert_int_eq(crema_mean_read(p, &m, &err), -1);
  ck_assert_ptr_nonnull(strstr(err.msg, "junk.binaryproto"));
}
END_TEST

int main(void) {
  Suite *s = suite_create("compute_image_mean");
  TCase *tc = tcase_create("core");
  tcase_add_checked_fixture(tc, setup, teardown);
  tcase_add_test(tc, test_raw_tool);
  tcase_add_test(tc, test_encoded_and_float);
  tcase_add_test(tc, test_errors_and_shape_form);
  suite_add_tcase(s, tc);
  return test_run_suite(s);
}
