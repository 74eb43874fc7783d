/* test_leveldb.c -- Caffe's LevelDB backend: convert_imageset --backend=leveldb writes the
 * same keys and records as the LMDB, and the Data layer (backend: LEVELDB, or detected),
 * compute_image_mean and the generic reader give the same results from either backend. */
#include <check.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "support/run.h"
#include "data/db.h"
#include "data/mean.h"
#include "layers/layer.h"
#include "support/layer_run.h"

static char dir[128];

static void make_sets(void) {
  snprintf(dir, sizeof dir, "/tmp/crema_test_leveldb_XXXXXX");
  ck_assert_ptr_nonnull(mkdtemp(dir));
  char cmd[2048];
  snprintf(cmd, sizeof cmd,
           "cd '%s' && printf 'cat.jpg 0\\nfish-bike.jpg 1\\ncat gray.jpg 2\\ncat.jpg 3\\nfish-bike.jpg "
           "4\\n' > list.txt && "
           "'%s/convert_imageset' --resize_height=24 --resize_width=20 '%s/images/' list.txt lmdb >/dev/null "
           "2>&1 && "
           "'%s/convert_imageset' --resize_height=24 --resize_width=20 --backend=leveldb '%s/images/' "
           "list.txt ldb "
           ">/dev/null 2>&1",
           dir, CREMA_BIN_DIR, CREMA_TEST_DATA, CREMA_BIN_DIR, CREMA_TEST_DATA);
  ck_assert_int_eq(system(cmd), 0);
}

static void remove_sets(void) {
  char cmd[256];
  snprintf(cmd, sizeof cmd, "rm -rf '%s'", dir);
  if (system(cmd) != 0) fprintf(stderr, "cannot remove %s\n", dir);
}

START_TEST(same_records_both_backends) {
  if (!crema_leveldb_available()) return;
  make_sets();
  char a[256], b[256];
  snprintf(a, sizeof a, "%s/lmdb", dir);
  snprintf(b, sizeof b, "%s/ldb", dir);
  ck_assert_int_eq(crema_db_detect(a), CREMA_DB_LMDB);
  ck_assert_int_eq(crema_db_detect(b), CREMA_DB_LEVELDB);
  crema_db *x, *y;
  crema_error err;
  ck_assert_msg(crema_db_open(a, CREMA_DB_AUTO, &x, &err) == 0, "%s", err.msg);
  ck_assert_msg(crema_db_open(b, CREMA_DB_LEVELDB, &y, &err) == 0, "%s", err.msg);
  ck_assert_uint_eq(crema_db_count(x), 5);
  ck_assert_uint_eq(crema_db_count(y), 5);
  for (int i = 0; i < 7; i++) { /* past the end: both wrap around */
    const void *k1, *v1, *k2, *v2;
    size_t kl1, vl1, kl2, vl2;
    crema_db_current(x, &k1, &kl1, &v1, &vl1);
    crema_db_current(y, &k2, &kl2, &v2, &vl2);
    ck_assert_uint_eq(kl1, kl2);
    ck_assert(!memcmp(k1, k2, kl1));
    ck_assert_uint_eq(vl1, vl2);
    ck_assert(!memcmp(v1, v2, vl1));
    ck_assert_int_eq(crema_db_next(x, &err), 0);
    ck_assert_int_eq(crema_db_next(y, &err), 0);
  }
  ck_assert_int_eq(crema_db_seek(y, 3, &err), 0);
  ck_assert_uint_eq(crema_db_index(y), 3);
  crema_db_close(x);
  crema_db_close(y);
  /* compute_image_mean reads either. */
  crema_mean m1, m2;
  ck_assert_msg(crema_compute_image_mean(a, NULL, NULL, &m1, &err) == 0, "%s", err.msg);
  ck_assert_msg(crema_compute_image_mean(b, NULL, NULL, &m2, &err) == 0, "%s", err.msg);
  ck_assert_int_eq(m1.channels * m1.height * m1.width, m2.channels * m2.height * m2.width);
  ck_assert(!memcmp(m1.data, m2.data, (size_t)m1.channels * m1.height * m1.width * sizeof(float)));
  crema_mean_free(&m1);
  crema_mean_free(&m2);
  /* The Data layer: the same batches from backend LEVELDB as from the LMDB. */
  char t1[512], t2[512];
  snprintf(t1, sizeof t1,
           "name: 'd' type: 'Data' top: 'data' top: 'label' data_param { source: '%s' batch_size: 3 }", a);
  snprintf(t2, sizeof t2,
           "name: 'd' type: 'Data' top: 'data' top: 'label' data_param { source: '%s' batch_size: 3 backend: "
           "LEVELDB }",
           b);
  run r1, r2;
  run_setup(&r1, t1, 0, NULL, 2);
  run_setup(&r2, t2, 0, NULL, 2);
  for (int it = 0; it < 3; it++) {
    run_forward(&r1);
    run_forward(&r2);
    ck_assert_uint_eq(r1.top[0]->count, r2.top[0]->count);
    ck_assert(!memcmp(r1.top[0]->data, r2.top[0]->data, r1.top[0]->count * sizeof(float)));
    ck_assert(!memcmp(r1.top[1]->data, r2.top[1]->data, 3 * sizeof(float)));
  }
  run_free(&r1);
  run_free(&r2);
  /* An existing output is refused, as for LMDB. */
  crema_db_writer *w = NULL;
  ck_assert_int_eq(crema_db_create(b, CREMA_DB_LEVELDB, 0, &w, &err), -1);
  ck_assert_msg(strstr(err.msg, "already exists"), "%s", err.msg);
  remove_sets();
}
END_TEST

int main(void) {
  Suite *s = suite_create("leveldb");
  TCase *tc = tcase_create("core");
  tcase_set_timeout(tc, 300);
  tcase_add_test(tc, same_records_both_backends);
  suite_add_tcase(s, tc);
  return test_run_suite(s);
}
