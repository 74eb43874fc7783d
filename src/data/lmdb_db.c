#include "data/lmdb_db.h"

#include <errno.h>
#include <lmdb.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <dirent.h>
#include <sys/stat.h>
#include <unistd.h>

#include "base/fs.h"

struct crema_lmdb {
  char *path;
  MDB_env *env;
  MDB_dbi dbi;
  MDB_txn *txn;
  MDB_cursor *cursor;
  uint64_t count;
  uint64_t index; /* position of the cursor in key order */
  MDB_val key, value;
};

static char *dup_string(const char *s) {
  size_t n = strlen(s) + 1;
  char *d = malloc(n);
  if (d) memcpy(d, s, n);
  return d;
}

/* Explains why `path` cannot be an LMDB before LMDB gives its terser answer. */
static int check_lmdb_dir(const char *path, crema_error *err) {
  struct stat st;
  if (stat(path, &st) != 0)
    return crema_fail(err, "data set \"%s\" does not exist (%s); create it with convert_imageset", path,
                      strerror(errno));
  if (!S_ISDIR(st.st_mode))
    return crema_fail(err, "\"%s\" is not an LMDB data set: expected a directory holding data.mdb", path);
  char file[4096];
  snprintf(file, sizeof file, "%s/data.mdb", path);
  if (stat(file, &st) != 0)
    return crema_fail(
        err, "\"%s\" is not an LMDB data set: it has no data.mdb (is it a LevelDB or another folder?)", path);
  return 0;
}

int crema_lmdb_open(const char *path, crema_lmdb **out, crema_error *err) {
  *out = NULL;
  if (!path || !*path) return crema_fail(err, "no data set path given (data_param.source is empty)");
  if (check_lmdb_dir(path, err)) return -1;
  crema_lmdb *db = calloc(1, sizeof *db);
  if (!db || !(db->path = dup_string(path))) {
    free(db);
    return crema_fail(err, "out of memory opening \"%s\"", path);
  }
  int rc = mdb_env_create(&db->env);
  if (rc == 0) rc = mdb_env_open(db->env, path, MDB_RDONLY | MDB_NOLOCK | MDB_NOTLS, 0664);
  if (rc == 0) rc = mdb_txn_begin(db->env, NULL, MDB_RDONLY, &db->txn);
  if (rc == 0) rc = mdb_dbi_open(db->txn, NULL, 0, &db->dbi);
  if (rc == 0) {
    MDB_stat st;
    rc = mdb_stat(db->txn, db->dbi, &st);
    db->count = st.ms_entries;
  }
  if (rc == 0) rc = mdb_cursor_open(db->txn, db->dbi, &db->cursor);
  if (rc != 0) {
    const char *why = rc == MDB_INVALID ? "data.mdb is not an LMDB file" : mdb_strerror(rc);
    crema_fail(err, "cannot open LMDB data set \"%s\": %s", path, why);
    crema_lmdb_close(db);
    return -1;
  }
  if (db->count == 0) {
    crema_fail(err,
               "LMDB data set \"%s\" is empty (0 records); check the list file given to convert_imageset",
               path);
    crema_lmdb_close(db);
    return -1;
  }
  rc = mdb_cursor_get(db->cursor, &db->key, &db->value, MDB_FIRST);
  if (rc != 0) {
    crema_fail(err, "cannot read the first record of \"%s\": %s", path, mdb_strerror(rc));
    crema_lmdb_close(db);
    return -1;
  }
  *out = db;
  return 0;
}

void crema_lmdb_close(crema_lmdb *db) {
  if (!db) return;
  if (db->cursor) mdb_cursor_close(db->cursor);
  if (db->txn) mdb_txn_abort(db->txn);
  if (db->env) mdb_env_close(db->env);
  free(db->path);
  free(db);
}

uint64_t crema_lmdb_count(const crema_lmdb *db) { return db->count; }
const char *crema_lmdb_path(const crema_lmdb *db) { return db->path; }
uint64_t crema_lmdb_index(const crema_lmdb *db) { return db->index; }

void crema_lmdb_current(const crema_lmdb *db, const void **key, size_t *key_len, const void **value,
                        size_t *value_len) {
  if (key) *key = db->key.mv_data;
  if (key_len) *key_len = db->key.mv_size;
  if (value) *value = db->value.mv_data;
  if (value_len) *value_len = db->value.mv_size;
}

static int move(crema_lmdb *db, MDB_cursor_op op, crema_error *err) {
  int rc = mdb_cursor_get(db->cursor, &db->key, &db->value, op);
  if (rc != 0) return crema_fail(err, "reading LMDB data set \"%s\": %s", db->path, mdb_strerror(rc));
  return 0;
}

int crema_lmdb_next(crema_lmdb *db, crema_error *err) {
  if (db->index + 1 >= db->count) {
    db->index = 0;
    return move(db, MDB_FIRST, err);
  }
  db->index++;
  return move(db, MDB_NEXT, err);
}

int crema_lmdb_seek(crema_lmdb *db, uint64_t index, crema_error *err) {
  index %= db->count;
  if (index < db->index) {
    if (move(db, MDB_FIRST, err)) return -1;
    db->index = 0;
  }
  while (db->index < index) {
    if (move(db, MDB_NEXT, err)) return -1;
    db->index++;
  }
  return 0;
}

/* ---------------------------------------------------------------- writing */

struct crema_lmdb_writer {
  char *path;
  MDB_env *env;
  MDB_dbi dbi;
  size_t map_size;
  int growths;
  uint64_t written;
  /* Pending batch: keys and values copied back to back into one arena. */
  unsigned char *arena;
  size_t arena_used, arena_cap;
  size_t *offsets; /* 4 per record: key offset, key length, value offset, value length */
  size_t n_pending, pending_cap;
};

int crema_lmdb_create(const char *path, size_t initial_map_bytes, crema_lmdb_writer **out, crema_error *err) {
  *out = NULL;
  struct stat st;
  if (stat(path, &st) == 0)
    return crema_fail(
        err,
        "output \"%s\" already exists; remove it or choose another name (crema never overwrites a "
        "data set)",
        path);
  if (mkdir(path, 0775) != 0) {
    char rb[512];
    return crema_fail(err, "cannot create directory \"%s\": %s", path,
                      crema_io_reason(errno, path, rb, sizeof rb));
  }
  crema_lmdb_writer *w = calloc(1, sizeof *w);
  if (!w || !(w->path = dup_string(path))) {
    free(w);
    return crema_fail(err, "out of memory creating \"%s\"", path);
  }
  w->map_size = initial_map_bytes ? initial_map_bytes : (size_t)1 << 30; /* address space only */
  int rc = mdb_env_create(&w->env);
  if (rc == 0) rc = mdb_env_set_mapsize(w->env, w->map_size);
  /* No fsync per batch: a data set is only used once closed (crema_lmdb_writer_close syncs
   * once), and convert_imageset builds it under a temporary name. */
  if (rc == 0) rc = mdb_env_open(w->env, path, MDB_NOSYNC, 0664);
  MDB_txn *txn = NULL;
  if (rc == 0) rc = mdb_txn_begin(w->env, NULL, 0, &txn);
  if (rc == 0) rc = mdb_dbi_open(txn, NULL, 0, &w->dbi);
  if (rc == 0) {
    rc = mdb_txn_commit(txn);
    txn = NULL;
  }
  if (rc != 0) {
    if (txn) mdb_txn_abort(txn);
    char rb[512];
    crema_fail(err, "cannot create LMDB data set \"%s\": %s", path,
               rc > 0 ? crema_io_reason(rc, path, rb, sizeof rb) : mdb_strerror(rc));
    crema_lmdb_writer_abort(w);
    return -1;
  }
  *out = w;
  return 0;
}

static int reserve(void **buf, size_t *cap, size_t need, size_t elem) {
  if (need <= *cap) return 0;
  size_t n = *cap ? *cap : 64;
  while (n < need) n *= 2;
  void *p = realloc(*buf, n * elem);
  if (!p) return -1;
  *buf = p;
  *cap = n;
  return 0;
}

int crema_lmdb_put(crema_lmdb_writer *w, const void *key, size_t key_len, const void *value, size_t value_len,
                   crema_error *err) {
  if (key_len == 0 || key_len > 511)
    return crema_fail(err,
                      "LMDB key of %zu bytes for \"%s\": keys must be 1 to 511 bytes (shorten the file name)",
                      key_len, w->path);
  if (reserve((void **)&w->arena, &w->arena_cap, w->arena_used + key_len + value_len, 1) ||
      reserve((void **)&w->offsets, &w->pending_cap, (w->n_pending + 1) * 4, sizeof(size_t)))
    return crema_fail(err, "out of memory writing \"%s\"", w->path);
  size_t *o = w->offsets + 4 * w->n_pending;
  o[0] = w->arena_used;
  o[1] = key_len;
  memcpy(w->arena + w->arena_used, key, key_len);
  w->arena_used += key_len;
  o[2] = w->arena_used;
  o[3] = value_len;
  if (value_len) memcpy(w->arena + w->arena_used, value, value_len);
  w->arena_used += value_len;
  w->n_pending++;
  /* Big records also commit by size: a transaction with hundreds of MB of dirty pages makes
   * LMDB spill pages mid-transaction, which costs more than the extra commits. */
  if (w->n_pending >= CREMA_LMDB_BATCH || w->arena_used >= CREMA_LMDB_BATCH_BYTES)
    return crema_lmdb_commit(w, err);
  return 0;
}

/* One attempt at writing the pending batch in one transaction. Returns an LMDB code. */
static int write_batch(crema_lmdb_writer *w) {
  MDB_txn *txn;
  int rc = mdb_txn_begin(w->env, NULL, 0, &txn);
  if (rc) return rc;
  for (size_t i = 0; i < w->n_pending && rc == 0; i++) {
    const size_t *o = w->offsets + 4 * i;
    MDB_val k = {o[1], w->arena + o[0]}, v = {o[3], w->arena + o[2]};
    rc = mdb_put(txn, w->dbi, &k, &v, 0);
  }
  if (rc) {
    mdb_txn_abort(txn);
    return rc;
  }
  return mdb_txn_commit(txn); /* frees txn whatever the outcome */
}

int crema_lmdb_commit(crema_lmdb_writer *w, crema_error *err) {
  if (w->n_pending == 0) return 0;
  for (;;) {
    int rc = write_batch(w);
    if (rc == 0) break;
    if (rc != MDB_MAP_FULL) {
      char rb[512];
      return crema_fail(err, "writing LMDB data set \"%s\": %s", w->path,
                        rc > 0 ? crema_io_reason(rc, w->path, rb, sizeof rb) : mdb_strerror(rc));
    }
    /* The map is full: grow it (no transaction is open now) and redo the whole batch. */
    if (w->map_size > ((size_t)1 << 46))
      return crema_fail(err, "LMDB data set \"%s\" would need a map larger than 64 TiB", w->path);
    w->map_size *= 2;
    rc = mdb_env_set_mapsize(w->env, w->map_size);
    if (rc) return crema_fail(err, "growing LMDB map of \"%s\": %s", w->path, mdb_strerror(rc));
    w->growths++;
  }
  w->written += w->n_pending;
  w->n_pending = 0;
  w->arena_used = 0;
  return 0;
}

uint64_t crema_lmdb_written(const crema_lmdb_writer *w) { return w->written; }
int crema_lmdb_map_growths(const crema_lmdb_writer *w) { return w->growths; }

int crema_lmdb_writer_close(crema_lmdb_writer *w, crema_error *err) {
  if (!w) return 0;
  int rc = crema_lmdb_commit(w, err);
  if (rc == 0) {
    int src = mdb_env_sync(w->env, 1);
    char rb[512];
    if (src)
      rc = crema_fail(err, "flushing LMDB data set \"%s\" to disk: %s", w->path,
                      src > 0 ? crema_io_reason(src, w->path, rb, sizeof rb) : mdb_strerror(src));
  }
  crema_lmdb_writer_abort(w);
  return rc;
}

void crema_lmdb_writer_abort(crema_lmdb_writer *w) {
  if (!w) return;
  if (w->env) mdb_env_close(w->env);
  free(w->arena);
  free(w->offsets);
  free(w->path);
  free(w);
}

void crema_lmdb_remove(const char *path) {
  DIR *d = opendir(path);
  if (d) {
    const struct dirent *e;
    while ((e = readdir(d))) {
      if (!strcmp(e->d_name, ".") || !strcmp(e->d_name, "..")) continue;
      char p[8192];
      snprintf(p, sizeof p, "%s/%s", path, e->d_name);
      unlink(p);
    }
    closedir(d);
  }
  rmdir(path);
}
