/* data_test_util.h -- small fixtures shared by the data test suites (header-only):
 * temporary folders, generated images, running a tool and capturing its output, reading
 * every record of an LMDB back. */
#ifndef CREMA_TESTS_DATA_TEST_UTIL_H
#define CREMA_TESTS_DATA_TEST_UTIL_H

#include <check.h>
#include <lmdb.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

#include <stb_image_write.h>

#include "base/rng.h"

/* A fresh folder under /tmp; path has room for 256 bytes. */
static inline void tmp_dir(char *path) {
  snprintf(path, 256, "/tmp/crema-data-test-XXXXXX");
  ck_assert_msg(mkdtemp(path) != NULL, "mkdtemp failed");
}

static inline void remove_tree(const char *path) {
  char cmd[600];
  snprintf(cmd, sizeof cmd, "rm -rf '%s'", path);
  ck_assert_int_eq(system(cmd), 0);
}

/* Deterministic pseudo-random pixels (interleaved, c channels). Caller frees. */
static inline uint8_t *random_pixels(int w, int h, int c, uint64_t seed) {
  uint8_t *p = malloc((size_t)w * h * c);
  ck_assert_ptr_nonnull(p);
  crema_rng r;
  crema_rng_seed(&r, seed, 7);
  for (size_t i = 0; i < (size_t)w * h * c; i++) p[i] = (uint8_t)(crema_rng_u32(&r) >> 24);
  return p;
}

static inline void write_png(const char *path, int w, int h, int c, const uint8_t *px) {
  ck_assert_msg(stbi_write_png(path, w, h, c, px, w * c), "cannot write %s", path);
}

static inline void write_jpg(const char *path, int w, int h, int c, const uint8_t *px) {
  ck_assert_msg(stbi_write_jpg(path, w, h, c, px, 95), "cannot write %s", path);
}

static inline void write_text(const char *path, const char *text) {
  FILE *f = fopen(path, "w");
  ck_assert_ptr_nonnull(f);
  fputs(text, f);
  fclose(f);
}

/* Whole file as a NUL-terminated string (caller frees); NULL when missing. */
static inline char *slurp(const char *path, size_t *len) {
  FILE *f = fopen(path, "rb");
  if (!f) return NULL;
  fseek(f, 0, SEEK_END);
  long n = ftell(f);
  fseek(f, 0, SEEK_SET);
  char *buf = malloc((size_t)n + 1);
  ck_assert_ptr_nonnull(buf);
  ck_assert_int_eq(fread(buf, 1, (size_t)n, f), (size_t)n);
  buf[n] = '\0';
  fclose(f);
  if (len) *len = (size_t)n;
  return buf;
}

/* Runs `CREMA_BIN_DIR/<args>` with stdout+stderr captured into *output (caller frees).
 * Returns the exit status. */
static inline int run_tool(const char *dir, const char *args, char **output) {
  char cmd[4096], log[300];
  snprintf(log, sizeof log, "%s/tool-output.txt", dir);
  snprintf(cmd, sizeof cmd, "CREMA_NO_REEXEC=1 %s/%s > '%s' 2>&1", CREMA_BIN_DIR, args, log);
  int st = system(cmd);
  *output = slurp(log, NULL);
  ck_assert_ptr_nonnull(*output);
  return WIFEXITED(st) ? WEXITSTATUS(st) : -1;
}

/* Every record of an LMDB, in key order. */
typedef struct db_records {
  size_t n;
  char **keys;
  uint8_t **values;
  size_t *value_len;
} db_records;

static inline db_records read_db(const char *path) {
  db_records r = {0};
  MDB_env *env;
  MDB_txn *txn;
  MDB_dbi dbi;
  MDB_cursor *cur;
  ck_assert_int_eq(mdb_env_create(&env), 0);
  ck_assert_msg(mdb_env_open(env, path, MDB_RDONLY | MDB_NOLOCK, 0664) == 0, "cannot open %s", path);
  ck_assert_int_eq(mdb_txn_begin(env, NULL, MDB_RDONLY, &txn), 0);
  ck_assert_int_eq(mdb_dbi_open(txn, NULL, 0, &dbi), 0);
  ck_assert_int_eq(mdb_cursor_open(txn, dbi, &cur), 0);
  MDB_val k, v;
  size_t cap = 0;
  for (int rc = mdb_cursor_get(cur, &k, &v, MDB_FIRST); rc == 0; rc = mdb_cursor_get(cur, &k, &v, MDB_NEXT)) {
    if (r.n == cap) {
      cap = cap ? cap * 2 : 16;
      r.keys = realloc(r.keys, cap * sizeof *r.keys);
      r.values = realloc(r.values, cap * sizeof *r.values);
      r.value_len = realloc(r.value_len, cap * sizeof *r.value_len);
    }
    r.keys[r.n] = calloc(1, k.mv_size + 1);
    memcpy(r.keys[r.n], k.mv_data, k.mv_size);
    r.values[r.n] = malloc(v.mv_size ? v.mv_size : 1);
    memcpy(r.values[r.n], v.mv_data, v.mv_size);
    r.value_len[r.n] = v.mv_size;
    r.n++;
  }
  mdb_cursor_close(cur);
  mdb_txn_abort(txn);
  mdb_env_close(env);
  return r;
}

static inline void free_db(db_records *r) {
  for (size_t i = 0; i < r->n; i++) {
    free(r->keys[i]);
    free(r->values[i]);
  }
  free(r->keys);
  free(r->values);
  free(r->value_len);
  memset(r, 0, sizeof *r);
}

#endif
