/* LMDB data sets: write in batches with a growing map, read back in key order with
 * wrap-around and seeking, two readers at once, and the errors users meet (missing path,
 * not a data set, empty, existing output). */
#include <check.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "support/run.h"
#include "data/lmdb_db.h"
#include "data_test_util.h"

/* Writes n records "key%05d" -> value of (i % 50 + 1) * 97 bytes filled with i. */
static void write_records(const char *path, int n, size_t initial_map, int *growths) {
  crema_lmdb_writer *w;
  crema_error err;
  ck_assert_msg(crema_lmdb_create(path, initial_map, &w, &err) == 0, "%s", err.msg);
  uint8_t value[50 * 97];
  for (int i = 0; i < n; i++) {
    char key[32];
    int kl = snprintf(key, sizeof key, "key%05d", i);
    size_t vl = (size_t)(i % 50 + 1) * 97;
    memset(value, i & 0xff, vl);
    ck_assert_msg(crema_lmdb_put(w, key, (size_t)kl, value, vl, &err) == 0, "%s", err.msg);
  }
  ck_assert_msg(crema_lmdb_commit(w, &err) == 0, "%s", err.msg);
  ck_assert_int_eq(crema_lmdb_written(w), n);
  if (growths) *growths = crema_lmdb_map_growths(w);
  ck_assert_msg(crema_lmdb_writer_close(w, &err) == 0, "%s", err.msg);
}

static void check_record(crema_lmdb *db, int i) {
  const void *k, *v;
  size_t kl, vl;
  crema_lmdb_current(db, &k, &kl, &v, &vl);
  char key[32];
  snprintf(key, sizeof key, "key%05d", i);
  ck_assert_int_eq(kl, strlen(key));
  ck_assert_int_eq(memcmp(k, key, kl), 0);
  ck_assert_int_eq(vl, (size_t)(i % 50 + 1) * 97);
  ck_assert_int_eq(((const uint8_t *)v)[vl - 1], i & 0xff);
  ck_assert_int_eq(crema_lmdb_index(db), (uint64_t)i);
}

START_TEST(test_write_grow_read_wrap) {
  char dir[256], path[300];
  tmp_dir(dir);
  snprintf(path, sizeof path, "%s/db", dir);
  int growths = 0;
  /* ~600 KB of values through a 64 KB initial map: must grow several times, lose nothing. */
  write_records(path, 2500, 64 << 10, &growths);
  ck_assert_int_ge(growths, 3);
  crema_lmdb *db;
  crema_error err;
  ck_assert_msg(crema_lmdb_open(path, &db, &err) == 0, "%s", err.msg);
  ck_assert_int_eq(crema_lmdb_count(db), 2500);
  for (int i = 0; i < 2500; i++) {
    check_record(db, i);
    ck_assert_int_eq(crema_lmdb_next(db, &err), 0);
  }
  check_record(db, 0); /* wrapped around */
  ck_assert_int_eq(crema_lmdb_seek(db, 1234, &err), 0);
  check_record(db, 1234);
  ck_assert_int_eq(crema_lmdb_seek(db, 17, &err), 0); /* backwards */
  check_record(db, 17);
  ck_assert_int_eq(crema_lmdb_seek(db, 2500 * 3 + 5, &err), 0); /* modulo the count */
  check_record(db, 5);
  /* A second reader of the same data set in the same process, interleaved with the first. */
  crema_lmdb *db2;
  ck_assert_msg(crema_lmdb_open(path, &db2, &err) == 0, "%s", err.msg);
  check_record(db2, 0);
  ck_assert_int_eq(crema_lmdb_next(db2, &err), 0);
  check_record(db2, 1);
  check_record(db, 5);
  crema_lmdb_close(db2);
  crema_lmdb_close(db);
  remove_tree(dir);
}
END_TEST

START_TEST(test_errors) {
  char dir[256], path[300];
  tmp_dir(dir);
  crema_lmdb *db = NULL;
  crema_error err;
  /* Missing. */
  snprintf(path, sizeof path, "%s/nope", dir);
  ck_assert_int_eq(crema_lmdb_open(path, &db, &err), -1);
  ck_assert_ptr_null(db);
  ck_assert_ptr_nonnull(strstr(err.msg, path));
  ck_assert_ptr_nonnull(strstr(err.msg, "does not exist"));
  /* A plain file. */
  snprintf(path, sizeof path, "%s/file.txt", dir);
  write_text(path, "hello");
  ck_assert_int_eq(crema_lmdb_open(path, &db, &err), -1);
  ck_assert_ptr_nonnull(strstr(err.msg, "not an LMDB"));
  /* A folder without data.mdb. */
  ck_assert_int_eq(crema_lmdb_open(dir, &db, &err), -1);
  ck_assert_ptr_nonnull(strstr(err.msg, "no data.mdb"));
  /* A folder whose data.mdb is garbage. */
  char sub[300], f[350];
  snprintf(sub, sizeof sub, "%s/garbage", dir);
  ck_assert_int_eq(mkdir(sub, 0775), 0);
  snprintf(f, sizeof f, "%s/data.mdb", sub);
  char junk[8192];
  memset(junk, 'x', sizeof junk);
  FILE *fp = fopen(f, "wb");
  fwrite(junk, 1, sizeof junk, fp);
  fclose(fp);
  ck_assert_int_eq(crema_lmdb_open(sub, &db, &err), -1);
  ck_assert_ptr_nonnull(strstr(err.msg, sub));
  /* Empty data set. */
  snprintf(path, sizeof path, "%s/empty", dir);
  write_records(path, 0, 0, NULL);
  ck_assert_int_eq(crema_lmdb_open(path, &db, &err), -1);
  ck_assert_ptr_nonnull(strstr(err.msg, "empty"));
  /* An existing output is never overwritten. */
  crema_lmdb_writer *w = NULL;
  ck_assert_int_eq(crema_lmdb_create(path, 0, &w, &err), -1);
  ck_assert_ptr_null(w);
  ck_assert_ptr_nonnull(strstr(err.msg, "already exists"));
  remove_tree(dir);
}
END_TEST

int main(void) {
  Suite *s = suite_create("lmdb");
  TCase *tc = tcase_create("core");
  tcase_add_test(tc, test_write_grow_read_wrap);
  tcase_add_test(tc, test_errors);
  suite_add_tcase(s, tc);
  return test_run_suite(s);
}
