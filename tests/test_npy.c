/* test_npy.c -- NumPy .npy read/write: round trips, files written by numpy itself, and the
 * errors for arrays crema cannot take. */
#include <check.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "support/run.h"
#include "common/npy.h"
#include "proto/io.h"

static char tmpdir[256];

static void setup_dir(void) {
  snprintf(tmpdir, sizeof tmpdir, "/tmp/crema_test_npy_XXXXXX");
  ck_assert_ptr_nonnull(mkdtemp(tmpdir));
}

static void teardown_dir(void) {
  char cmd[300];
  snprintf(cmd, sizeof cmd, "rm -rf '%s'", tmpdir);
  ck_assert_int_eq(system(cmd), 0);
}

/* The Python with numpy: $CREMA_PYTHON, else Debian's /usr/bin/python3 (a user's own python3
 * on PATH often lacks the Debian packages), else python3. NULL when none imports numpy. */
static const char *find_python(void) {
  static const char *candidates[3] = {NULL, "/usr/bin/python3", "python3"};
  candidates[0] = getenv("CREMA_PYTHON");
  for (int i = 0; i < 3; i++) {
    char cmd[512];
    if (!candidates[i]) continue;
    snprintf(cmd, sizeof cmd, "%s -c 'import numpy' >/dev/null 2>&1", candidates[i]);
    if (system(cmd) == 0) return candidates[i];
  }
  return NULL;
}

static void path_in(char *buf, size_t n, const char *name) { snprintf(buf, n, "%s/%s", tmpdir, name); }

static void write_bytes(const char *path, const void *data, size_t len) {
  FILE *f = fopen(path, "wb");
  ck_assert_ptr_nonnull(f);
  ck_assert_uint_eq(fwrite(data, 1, len, f), len);
  fclose(f);
}

START_TEST(round_trip_shapes) {
  const int shapes[][4] = {{2, 3, 4, 5}, {7, -1, -1, -1}, {1, 1, 28, 28}};
  for (int s = 0; s < 3; s++) {
    crema_blob *a = crema_blob_new(), *b = crema_blob_new();
    crema_error err;
    ck_assert_int_eq(crema_blob_reshape4(a, shapes[s][0], shapes[s][1], shapes[s][2], shapes[s][3], &err), 0);
    for (size_t i = 0; i < a->count; i++) a->data[i] = (float)i * 0.25f - 3.0f;
    char path[300];
    path_in(path, sizeof path, "rt.npy");
    ck_assert_msg(crema_npy_write(path, a, &err) == 0, "%s", err.msg);
    ck_assert_msg(crema_npy_read(path, b, &err) == 0, "%s", err.msg);
    ck_assert(crema_blob_same_shape(a, b));
    ck_assert_int_eq(memcmp(a->data, b->data, a->count * sizeof(float)), 0);
    crema_blob_free(a);
    crema_blob_free(b);
  }
}
END_TEST

START_TEST(header_is_64_byte_aligned) {
  int shape[2] = {3, 2};
  float data[6] = {1, 2, 3, 4, 5, 6};
  void *buf = NULL;
  size_t len = 0;
  crema_error err;
  ck_assert_int_eq(crema_npy_format(2, shape, data, &buf, &len, &err), 0);
  ck_assert_uint_eq((len - sizeof data) % 64, 0);
  const unsigned char *b = buf;
  ck_assert_int_eq(b[len - sizeof data - 1], '\n');
  ck_assert_ptr_nonnull(strstr((const char *)b + 10, "'shape': (3, 2)"));
  /* parse back through the in-memory entry point */
  int n = 0, s[CREMA_MAX_AXES];
  float *out = NULL;
  ck_assert_int_eq(crema_npy_parse(buf, len, "mem", &n, s, &out, &err), 0);
  ck_assert_int_eq(n, 2);
  ck_assert_int_eq(s[0], 3);
  ck_assert_int_eq(s[1], 2);
  ck_assert_float_eq(out[5], 6.0f);
  free(out);
  free(buf);
}
END_TEST

START_TEST(one_axis_and_scalar) {
  int shape1[1] = {5};
  float d[5] = {1, 2, 3, 4, 5};
  void *buf = NULL;
  size_t len = 0;
  crema_error err;
  ck_assert_int_eq(crema_npy_format(1, shape1, d, &buf, &len, &err), 0);
  ck_assert_ptr_nonnull(strstr((const char *)buf + 10, "'shape': (5,)"));
  free(buf);
  ck_assert_int_eq(crema_npy_format(0, NULL, d, &buf, &len, &err), 0);
  ck_assert_ptr_nonnull(strstr((const char *)buf + 10, "'shape': ()"));
  int n = -1, s[CREMA_MAX_AXES];
  float *out = NULL;
  ck_assert_int_eq(crema_npy_parse(buf, len, "mem", &n, s, &out, &err), 0);
  ck_assert_int_eq(n, 0);
  ck_assert_float_eq(out[0], 1.0f);
  free(out);
  free(buf);
}
END_TEST

/* numpy writes, crema reads (float32 and float64, version 1 and 2 headers); crema writes,
 * numpy reads and checks. */
START_TEST(interoperates_with_numpy) {
  char p32[300], p64[300], pv2[300], pout[300], cmd[2048];
  path_in(p32, sizeof p32, "np32.npy");
  path_in(p64, sizeof p64, "np64.npy");
  path_in(pv2, sizeof pv2, "npv2.npy");
  path_in(pout, sizeof pout, "crema.npy");
  const char *py = find_python();
  ck_assert_msg(py != NULL, "python3 with numpy is needed for this test (apt-get install python3-numpy)");
  snprintf(cmd, sizeof cmd,
           "%s -c \"import numpy as np; a=np.arange(24,dtype=np.float32).reshape(2,3,4)/7; "
           "np.save('%s',a); np.save('%s',a.astype(np.float64)); "
           "np.lib.format.write_array(open('%s','wb'),a,version=(2,0))\"",
           py, p32, p64, pv2);
  ck_assert_msg(system(cmd) == 0, "numpy failed to write the test arrays");
  crema_blob *b = crema_blob_new();
  crema_error err;
  const char *files[3] = {p32, p64, pv2};
  for (int f = 0; f < 3; f++) {
    ck_assert_msg(crema_npy_read(files[f], b, &err) == 0, "%s", err.msg);
    ck_assert_int_eq(b->num_axes, 3);
    ck_assert_int_eq(b->shape[0], 2);
    ck_assert_int_eq(b->shape[2], 4);
    for (int i = 0; i < 24; i++) ck_assert_float_eq_tol(b->data[i], (float)i / 7.0f, 1e-6f);
  }
  for (size_t i = 0; i < b->count; i++) b->data[i] = -(float)i;
  ck_assert_int_eq(crema_npy_write(pout, b, &err), 0);
  snprintf(cmd, sizeof cmd,
           "%s -c \"import numpy as np, sys; a=np.load('%s'); "
           "sys.exit(0 if a.dtype==np.float32 and a.shape==(2,3,4) and (a.ravel()==-np.arange(24)).all() "
           "else 1)\"",
           py, pout);
  ck_assert_msg(system(cmd) == 0, "numpy could not read crema's .npy back");
  crema_blob_free(b);
}
END_TEST

static void expect_error(const char *text_header, size_t data_bytes, const char *key) {
  char hdr[256];
  size_t hl = strlen(text_header);
  unsigned char buf[512] = {0x93, 'N', 'U', 'M', 'P', 'Y', 1, 0, (unsigned char)hl, 0};
  memcpy(hdr, text_header, hl);
  memcpy(buf + 10, hdr, hl);
  int n;
  int s[CREMA_MAX_AXES];
  float *out = NULL;
  crema_error err;
  ck_assert_int_eq(crema_npy_parse(buf, 10 + hl + data_bytes, "bad.npy", &n, s, &out, &err), -1);
  ck_assert_msg(strstr(err.msg, key) != NULL, "expected \"%s\" in: %s", key, err.msg);
  ck_assert_msg(strstr(err.msg, "bad.npy") != NULL, "error should name the file: %s", err.msg);
  ck_assert_ptr_null(out);
}

START_TEST(clear_errors) {
  expect_error("{'descr': '<i8', 'fortran_order': False, 'shape': (2,), }\n", 16, "astype(numpy.float32)");
  expect_error("{'descr': '>f4', 'fortran_order': False, 'shape': (2,), }\n", 8, "little-endian");
  expect_error("{'descr': '<f4', 'fortran_order': True, 'shape': (2, 2), }\n", 16, "ascontiguousarray");
  expect_error("{'descr': '<f4', 'fortran_order': False, 'shape': (4, 4), }\n", 8, "truncated");
  expect_error("{'descr': '<f4', 'fortran_order': False, 'shape': (1,1,1,1,1,1,1,1,1), }\n", 4, "axes");
  expect_error("{'fortran_order': False, 'shape': (2,), }\n", 8, "descr");

  crema_error err;
  int n, s[CREMA_MAX_AXES];
  float *out = NULL;
  ck_assert_int_eq(crema_npy_parse("PK\3\4 not numpy at all", 22, "x.npz", &n, s, &out, &err), -1);
  ck_assert_ptr_nonnull(strstr(err.msg, "not a NumPy .npy file"));

  char path[300];
  path_in(path, sizeof path, "missing.npy");
  crema_blob *b = crema_blob_new();
  ck_assert_int_eq(crema_npy_read(path, b, &err), -1);
  ck_assert_ptr_nonnull(strstr(err.msg, "missing.npy"));
  path_in(path, sizeof path, "garbage.npy");
  write_bytes(path, "hello", 5);
  ck_assert_int_eq(crema_npy_read(path, b, &err), -1);
  ck_assert_ptr_nonnull(strstr(err.msg, "garbage.npy"));
  crema_blob_free(b);
}
END_TEST

/* A buffer that ends inside its header: parsing stops at its end (under ASan, the exact-size heap
 * copy makes any read past it fail the test). Once, "False" and the shape's digits were compared
 * or read up to 5 bytes past it. */
static void expect_header_cut(const char *header, const char *words) {
  const size_t hl = strlen(header), len = 10 + hl;
  unsigned char *buf = malloc(len);
  ck_assert_ptr_nonnull(buf);
  memcpy(buf, "\x93NUMPY\x01\x00", 8);
  buf[8] = (unsigned char)(hl & 0xff);
  buf[9] = (unsigned char)(hl >> 8);
  memcpy(buf + 10, header, hl);
  crema_error err;
  int n, s[CREMA_MAX_AXES];
  float *out = NULL;
  ck_assert_int_eq(crema_npy_parse(buf, len, "cut.npy", &n, s, &out, &err), -1);
  ck_assert_msg(strstr(err.msg, words) != NULL, "expected \"%s\" in: %s", words, err.msg);
  ck_assert_ptr_null(out);
  free(buf);
}

START_TEST(header_cut_short) {
  expect_header_cut("{'descr': '<f4', 'fortran_order': Fal", "fortran_order");
  expect_header_cut("{'descr': '<f4', 'fortran_order': Tr", "fortran_order");
  expect_header_cut("{'shape': (12, 'descr': '<f4', 'fortran_order': False, 'shape': (12", "shape");
  expect_header_cut("{'descr': '<f4', 'fortran_order': False, 'shape': (3", "unterminated");
  expect_header_cut("{'descr':   ", "descr"); /* found by fuzz_npy: nothing after the key */
  expect_header_cut("{'descr': '<f4', 'fortran_order':", "fortran_order");
  expect_header_cut("{'descr': '<f4', 'fortran_order': False, 'shape':", "shape");
}
END_TEST

int main(void) {
  Suite *s = suite_create("npy");
  TCase *tc = tcase_create("npy");
  tcase_add_checked_fixture(tc, setup_dir, teardown_dir);
  tcase_add_test(tc, round_trip_shapes);
  tcase_add_test(tc, header_is_64_byte_aligned);
  tcase_add_test(tc, one_axis_and_scalar);
  tcase_add_test(tc, interoperates_with_numpy);
  tcase_add_test(tc, clear_errors);
  tcase_add_test(tc, header_cut_short);
  suite_add_tcase(s, tc);
  return test_run_suite(s);
}
