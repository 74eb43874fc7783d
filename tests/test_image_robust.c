/* The images users really have: 16-bit PNG/PGM, alpha, grey+alpha, palettes, progressive
 * JPEG, plain Netpbm, extensions that lie -- decoded to the pixels OpenCV's
 * cv2.imread(IMREAD_COLOR) gives (what Caffe reads) -- and broken files (truncated, zero or
 * absurd sizes, decompression bombs, empty, text) refused with the file and the reason, by the
 * library and by convert_imageset, which never turns them into records or leaves a partial DB.
 * The images come from tests/oracle/make_images.py, run here. Without python3 + numpy + cv2 the
 * test FAILS with what to install (CI installs them). */
#include <check.h>
#include <dirent.h>
#include <stdbool.h>
#include <stdlib.h>
#include <string.h>

#include "data/image.h"
#include "data/image_probe.h"
#include "data_test_util.h"
#include "proto/crema.pb-c.h"
#include "support/run.h"

static char dir[256];

/* $CREMA_PYTHON, else Debian's /usr/bin/python3, else python3: the first with numpy and cv2. */
static const char *find_python(void) {
  static const char *candidates[3] = {NULL, "/usr/bin/python3", "python3"};
  candidates[0] = getenv("CREMA_PYTHON");
  for (int i = 0; i < 3; i++) {
    char cmd[512];
    if (!candidates[i]) continue;
    snprintf(cmd, sizeof cmd, "%s -c 'import numpy, cv2' >/dev/null 2>&1", candidates[i]);
    if (system(cmd) == 0) return candidates[i];
  }
  return NULL;
}

static void setup(void) {
  tmp_dir(dir);
  const char *py = find_python();
  ck_assert_msg(py != NULL, "the OpenCV cross-check needs python3 with numpy and cv2: apt-get install "
                            "python3-opencv python3-numpy (or set CREMA_PYTHON to such an interpreter)");
  char cmd[1024];
  snprintf(cmd, sizeof cmd, "%s '%s/tests/oracle/make_images.py' '%s'", py, CREMA_SOURCE_DIR, dir);
  ck_assert_msg(system(cmd) == 0, "make_images.py failed: %s", cmd);
}

static void teardown(void) { remove_tree(dir); }

static char *path_of(const char *name) {
  static char p[512];
  snprintf(p, sizeof p, "%s/%s", dir, name);
  return p;
}

/* The key words the refusal of each broken file must contain (besides its name). */
static const char *reason_for(const char *name) {
  static const char *table[][2] = {
      {"truncated_header.bmp", "truncated BMP"}, {"zero_height.bmp", "at least 1"},
      {"truncated.jpg", "truncated JPEG"},       {"truncated.png", "truncated PNG"},
      {"truncated16.pgm", "truncated PNM"},      {"zero_width.png", "at least 1"},
      {"bomb.png", "more than the limit"},       {"empty.jpg", "empty file"},
      {"notes.png", "looks like text"},          {"random.bin", "not an image"},
  };
  for (size_t i = 0; i < sizeof table / sizeof table[0]; i++)
    if (!strcmp(table[i][0], name)) return table[i][1];
  ck_abort_msg("no expected reason for %s", name);
  return NULL;
}

START_TEST(test_pixels_match_opencv) {
  char *manifest = slurp(path_of("manifest.txt"), NULL);
  ck_assert_ptr_nonnull(manifest);
  int checked_ok = 0, checked_refused = 0;
  for (char *line = strtok(manifest, "\n"); line; line = strtok(NULL, "\n")) {
    char name[128], expect[16];
    ck_assert_int_eq(sscanf(line, "%127s %15s", name, expect), 2);
    crema_image img = {0};
    crema_error err = {{0}};
    const int rc = crema_image_decode_file(path_of(name), CREMA_IMAGE_COLOR, &img, &err);
    if (!strcmp(expect, "refuse")) {
      ck_assert_msg(rc == -1, "%s must be refused", name);
      ck_assert_msg(strstr(err.msg, name) != NULL, "the error must name the file: %s", err.msg);
      ck_assert_msg(strstr(err.msg, reason_for(name)) != NULL, "%s: expected \"%s\" in: %s", name,
                    reason_for(name), err.msg);
      checked_refused++;
      continue;
    }
    ck_assert_msg(rc == 0, "%s: %s", name, err.msg);
    char cvname[160];
    snprintf(cvname, sizeof cvname, "%s.cv", name);
    size_t cvlen;
    char *cv = slurp(path_of(cvname), &cvlen);
    ck_assert_ptr_nonnull(cv);
    int w, h, hdr;
    ck_assert_msg(sscanf(cv, "%d %d\n%n", &w, &h, &hdr) == 2, "OpenCV could not read %s", name);
    ck_assert_int_eq(img.width, w);
    ck_assert_int_eq(img.height, h);
    ck_assert_int_eq(img.channels, 3);
    ck_assert_uint_eq(cvlen - (size_t)hdr, (size_t)w * h * 3);
    const uint8_t *bgr = (const uint8_t *)cv + hdr;
    /* JPEG: stb's IDCT and upsampling differ from libjpeg's by rounding; everything else is exact. */
    const bool jpeg = (strstr(name, ".jpg") || strstr(name, "jpeg_named"));
    const bool lossy = jpeg && strcmp(name, "png_named.jpg") != 0;
    int max_diff = 0;
    double sum_diff = 0;
    for (size_t i = 0; i < (size_t)w * h; i++)
      for (int c = 0; c < 3; c++) {
        const int d = abs((int)img.data[i * 3 + c] - (int)bgr[i * 3 + (2 - c)]);
        max_diff = d > max_diff ? d : max_diff;
        sum_diff += d;
      }
    const double mean_diff = sum_diff / ((double)w * h * 3);
    if (lossy) {
      fprintf(stderr, "%s: differs from OpenCV by at most %d, mean %.3f\n", name, max_diff, mean_diff);
      ck_assert_msg(max_diff <= 4 && mean_diff < 0.5, "%s: max difference %d, mean %.3f from OpenCV", name,
                    max_diff, mean_diff);
    } else {
      ck_assert_msg(max_diff == 0, "%s: pixels differ from OpenCV's by up to %d", name, max_diff);
    }
    free(cv);
    crema_image_free(&img);
    checked_ok++;
  }
  ck_assert_int_ge(checked_ok, 25);
  ck_assert_int_ge(checked_refused, 10);
  free(manifest);
}
END_TEST

START_TEST(test_native_channels_and_grey) {
  uint8_t *buf;
  size_t len;
  crema_error err;
  const char *grey[] = {"grey_alpha.png", "grey16.pgm", "grey_alpha16.png", "max1000.pgm", "bits.pbm"};
  for (size_t i = 0; i < 5; i++) {
    ck_assert_int_eq(crema_read_file_bytes(path_of(grey[i]), &buf, &len, &err), 0);
    ck_assert_msg(crema_image_native_channels(buf, len) == 1, "%s is grey", grey[i]);
    free(buf);
  }
  const char *colour[] = {"rgba.png", "rgb16.png", "palette_trns.png", "progressive.jpg", "rgb16.ppm"};
  for (size_t i = 0; i < 5; i++) {
    ck_assert_int_eq(crema_read_file_bytes(path_of(colour[i]), &buf, &len, &err), 0);
    ck_assert_msg(crema_image_native_channels(buf, len) == 3, "%s is colour", colour[i]);
    free(buf);
  }
  /* Grey mode of a 16-bit RGB PNG: the high bytes, then stb's luma weights. */
  crema_image c, g;
  ck_assert_int_eq(crema_image_decode_file(path_of("rgb16.png"), CREMA_IMAGE_COLOR, &c, &err), 0);
  ck_assert_int_eq(crema_image_decode_file(path_of("rgb16.png"), CREMA_IMAGE_GRAY, &g, &err), 0);
  ck_assert_int_eq(g.channels, 1);
  for (int i = 0; i < c.width * c.height; i++)
    ck_assert_int_eq(g.data[i], (c.data[3 * i] * 77 + c.data[3 * i + 1] * 150 + c.data[3 * i + 2] * 29) >> 8);
  crema_image_free(&c);
  crema_image_free(&g);
  /* A 2000x2000 16-bit PGM, the file that crashed stb: the high bytes, grey. */
  ck_assert_int_eq(crema_image_decode_file(path_of("grey16.pgm"), CREMA_IMAGE_NATIVE, &g, &err), 0);
  ck_assert_int_eq(g.width, 2000);
  ck_assert_int_eq(g.channels, 1);
  crema_image_free(&g);
}
END_TEST

START_TEST(test_pixel_limit) {
  crema_image img;
  crema_error err;
  ck_assert_uint_eq(crema_image_max_pixels(), UINT64_C(1) << 28);
  crema_image_set_max_pixels(77 * 61 - 1); /* grey16.png is 77 x 61 */
  ck_assert_int_eq(crema_image_decode_file(path_of("grey16.png"), CREMA_IMAGE_COLOR, &img, &err), -1);
  ck_assert_msg(strstr(err.msg, "77 x 61 = 4697 pixels is more than the limit of 4696") != NULL, "%s",
                err.msg);
  ck_assert_msg(strstr(err.msg, "--max_pixels") != NULL, "%s", err.msg);
  crema_image_set_max_pixels(77 * 61);
  ck_assert_int_eq(crema_image_decode_file(path_of("grey16.png"), CREMA_IMAGE_COLOR, &img, &err), 0);
  crema_image_free(&img);
  crema_image_set_max_pixels(0); /* back to the default */
  ck_assert_uint_eq(crema_image_max_pixels(), CREMA_IMAGE_DEFAULT_MAX_PIXELS);
}
END_TEST

/* No DB.partial-<pid> (or anything else) beside the DB. */
static int entries_in_dir(const char *prefix) {
  DIR *d = opendir(dir);
  ck_assert_ptr_nonnull(d);
  int n = 0;
  for (struct dirent *e; (e = readdir(d));)
    if (!strncmp(e->d_name, prefix, strlen(prefix))) n++;
  closedir(d);
  return n;
}

START_TEST(test_convert_imageset_refuses_broken_images) {
  char list[512], args[2048];
  snprintf(list, sizeof list, "%s/list.txt", dir);
  write_text(list, "grey16.pgm 1\ntruncated_header.bmp 2\nzero_height.bmp 3\nrgba.png 4\nbomb.png 5\n"
                   "notes.png 6\ntruncated.jpg 7\nempty.jpg 8\npng_named.jpg 9\n");
  snprintf(args, sizeof args, "convert_imageset '%s/' '%s' '%s/db'", dir, list, dir);
  char *out;
  ck_assert_int_eq(run_tool(dir, args, &out), 0);
  ck_assert_msg(strstr(out, "3 written, 6 skipped") != NULL, "%s", out);
  ck_assert_msg(strstr(out, "truncated_header.bmp: truncated BMP") != NULL, "%s", out);
  ck_assert_msg(strstr(out, "zero_height.bmp: BMP of 4 x 0 pixels") != NULL, "%s", out);
  ck_assert_msg(strstr(out, "bomb.png: png image of 20000 x 20000") != NULL, "%s", out);
  free(out);
  char p[512];
  snprintf(p, sizeof p, "%s/db", dir);
  db_records r = read_db(p);
  ck_assert_int_eq(r.n, 3);
  ck_assert_str_eq(r.keys[0], "00000000_grey16.pgm");
  ck_assert_str_eq(r.keys[1], "00000003_rgba.png");
  ck_assert_str_eq(r.keys[2], "00000008_png_named.jpg");
  /* The 16-bit PGM: 3 x 2000 x 2000 bytes, each the high byte of its sample. */
  Crema__Datum *d = crema__datum__unpack(NULL, r.value_len[0], r.values[0]);
  ck_assert_ptr_nonnull(d);
  ck_assert_int_eq(d->channels, 3);
  ck_assert_int_eq(d->height, 2000);
  ck_assert_uint_eq(d->data.len, (size_t)3 * 2000 * 2000);
  crema__datum__free_unpacked(d, NULL);
  free_db(&r);
  ck_assert_int_eq(entries_in_dir("db.partial"), 0);

  /* Only broken images: an error, no DB and no partial one. */
  write_text(list, "truncated_header.bmp 2\nbomb.png 5\nnotes.png 6\n");
  snprintf(args, sizeof args, "convert_imageset '%s/' '%s' '%s/db2'", dir, list, dir);
  ck_assert_int_eq(run_tool(dir, args, &out), 1);
  ck_assert_msg(strstr(out, "none of the 3 images could be read") != NULL, "%s", out);
  free(out);
  ck_assert_int_eq(entries_in_dir("db2"), 0);

  /* Encoded records: the content, not the extension, decides whether the file's bytes are kept. */
  write_text(list, "png_named.jpg 1\njpeg_named.png 2\n");
  snprintf(args, sizeof args, "convert_imageset --encode_type=png '%s/' '%s' '%s/enc'", dir, list, dir);
  ck_assert_int_eq(run_tool(dir, args, &out), 0);
  free(out);
  snprintf(p, sizeof p, "%s/enc", dir);
  r = read_db(p);
  ck_assert_int_eq(r.n, 2);
  size_t flen;
  char *file = slurp(path_of("png_named.jpg"), &flen);
  d = crema__datum__unpack(NULL, r.value_len[0], r.values[0]);
  ck_assert(d->encoded);
  ck_assert_uint_eq(d->data.len, flen); /* a PNG already: stored as it is */
  ck_assert_int_eq(memcmp(d->data.data, file, flen), 0);
  crema__datum__free_unpacked(d, NULL);
  free(file);
  d = crema__datum__unpack(NULL, r.value_len[1], r.values[1]);
  ck_assert_int_eq(memcmp(d->data.data, "\x89PNG", 4), 0); /* a JPEG: re-encoded as PNG */
  crema__datum__free_unpacked(d, NULL);
  free_db(&r);

  /* --max_pixels lowers the limit; a bad value is refused. */
  write_text(list, "rgba.png 1\ngrey16.png 2\n");
  snprintf(args, sizeof args, "convert_imageset --max_pixels=1000 '%s/' '%s' '%s/db3'", dir, list, dir);
  ck_assert_int_eq(run_tool(dir, args, &out), 0);
  ck_assert_msg(strstr(out, "1 written, 1 skipped") != NULL, "%s", out);
  ck_assert_msg(strstr(out, "more than the limit of 1000") != NULL, "%s", out);
  free(out);
  snprintf(args, sizeof args, "convert_imageset --max_pixels=0 '%s/' '%s' '%s/db4'", dir, list, dir);
  ck_assert_int_eq(run_tool(dir, args, &out), 2);
  ck_assert_msg(strstr(out, "--max_pixels") != NULL, "%s", out);
  free(out);
}
END_TEST

int main(void) {
  Suite *s = suite_create("image_robust");
  TCase *tc = tcase_create("core");
  tcase_add_unchecked_fixture(tc, setup, teardown);
  tcase_add_test(tc, test_pixels_match_opencv);
  tcase_add_test(tc, test_native_channels_and_grey);
  tcase_add_test(tc, test_pixel_limit);
  tcase_add_test(tc, test_convert_imageset_refuses_broken_images);
  suite_add_tcase(s, tc);
  return test_run_suite(s);
}
