/* db.c -- see db.h: the LMDB backend wraps lmdb_db.c; the LevelDB one is here. */
#include "data/db.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/stat.h>
#include <unistd.h>

#include "data/lmdb_db.h"

#ifdef CREMA_HAVE_LEVELDB
#include <leveldb/c.h>
#endif

int crema_db_backend_parse(const char *name, crema_db_backend *out, crema_error *err) {
  if (name && !strcasecmp(name, "lmdb")) {
    *out = CREMA_DB_LMDB;
    return 0;
  }
  if (name && !strcasecmp(name, "leveldb")) {
    *out = CREMA_DB_LEVELDB;
    return 0;
  }
  return crema_fail(err, "unknown backend \"%s\"; use lmdb or leveldb", name ? name : "");
}

const char *crema_db_backend_name(crema_db_backend b) {
  return b == CREMA_DB_LEVELDB ? "leveldb" : b == CREMA_DB_LMDB ? "lmdb" : "auto";
}

static bool has_file(const char *dir, const char *name) {
  char p[4096];
  snprintf(p, sizeof p, "%s/%s", dir, name);
  struct stat st;
  return stat(p, &st) == 0 && S_ISREG(st.st_mode);
}

crema_db_backend crema_db_detect(const char *path) {
  if (has_file(path, "data.mdb")) return CREMA_DB_LMDB;
  if (has_file(path, "CURRENT")) return CREMA_DB_LEVELDB;
  return CREMA_DB_AUTO;
}

#ifdef CREMA_HAVE_LEVELDB
bool crema_leveldb_available(void) { return true; }
#else
bool crema_leveldb_available(void) { return false; }
static int no_leveldb(const char *path, crema_error *err) {
  return crema_fail(
      err,
      "%s: crema was built without LevelDB, so it cannot read or write LevelDB data sets; install "
      "libleveldb-dev (scripts/install-deps.sh does) and rebuild, or use LMDB",
      path);
}
#endif

/* ---------------------------------------------------------------- reading */

struct crema_db {
  crema_db_backend backend;
  crema_lmdb *lmdb;
  /* LevelDB, read into memory: record i is bytes [off[2i], off[2i+1]) key, then value. */
  char *path;
  char *arena;
  size_t *key_off, *key_len, *val_off, *val_len;
  uint64_t count, at;
};

#ifdef CREMA_HAVE_LEVELDB
static int leveldb_load(crema_db *db, const char *path, crema_error *err) {
  char *e = NULL;
  leveldb_options_t *opt = leveldb_options_create();
  leveldb_options_set_create_if_missing(opt, 0);
  leveldb_t *ldb = leveldb_open(opt, path, &e);
  leveldb_options_destroy(opt);
  if (e) {
    int rc = crema_fail(err, "%s: cannot open as a LevelDB data set (%s)", path, e);
    leveldb_free(e);
    return rc;
  }
  leveldb_readoptions_t *ro = leveldb_readoptions_create();
  leveldb_iterator_t *it = leveldb_create_iterator(ldb, ro);
  size_t cap = 0, used = 0, rcap = 0;
  int rc = 0;
  for (leveldb_iter_seek_to_first(it); leveldb_iter_valid(it); leveldb_iter_next(it)) {
    size_t kl, vl;
    const char *k = leveldb_iter_key(it, &kl), *v = leveldb_iter_value(it, &vl);
    if (db->count == rcap) {
      rcap = rcap ? 2 * rcap : 1024;
      size_t *a = realloc(db->key_off, rcap * sizeof *a),
             *b = a ? realloc(db->key_len, rcap * sizeof *b) : NULL;
      if (a) db->key_off = a;
      if (b) db->key_len = b;
      size_t *c = b ? realloc(db->val_off, rcap * sizeof *c) : NULL,
             *d = c ? realloc(db->val_len, rcap * sizeof *d) : NULL;
      if (c) db->val_off = c;
      if (d) db->val_len = d;
      if (!a || !b || !c || !d) {
        rc = crema_fail(err, "out of memory reading %s", path);
        break;
      }
    }
    if (used + kl + vl > cap) {
      size_t ncap = cap ? cap : ((size_t)1 << 20);
      while (ncap < used + kl + vl) ncap *= 2;
      char *a = realloc(db->arena, ncap);
      if (!a) {
        rc = crema_fail(err, "out of memory reading %s (%zu bytes)", path, ncap);
        break;
      }
      db->arena = a;
      cap = ncap;
    }
    memcpy(db->arena + used, k, kl);
    db->key_off[db->count] = used;
    db->key_len[db->count] = kl;
    used += kl;
    memcpy(db->arena + used, v, vl);
    db->val_off[db->count] = used;
    db->val_len[db->count] = vl;
    used += vl;
    db->count++;
  }
  leveldb_iter_destroy(it);
  leveldb_readoptions_destroy(ro);
  leveldb_close(ldb);
  if (!rc && db->count == 0) rc = crema_fail(err, "%s: the LevelDB data set is empty", path);
  return rc;
}
#endif

int crema_db_open(const char *path, crema_db_backend backend, crema_db **out, crema_error *err) {
  *out = NULL;
  if (backend == CREMA_DB_AUTO)
    backend = crema_db_detect(path) == CREMA_DB_LEVELDB ? CREMA_DB_LEVELDB : CREMA_DB_LMDB;
  crema_db *db = calloc(1, sizeof *db);
  if (!db || !(db->path = strdup(path))) {
    free(db);
    return crema_fail(err, "out of memory");
  }
  db->backend = backend;
  int rc;
  if (backend == CREMA_DB_LMDB) {
    rc = crema_lmdb_open(path, &db->lmdb, err);
  } else {
#ifdef CREMA_HAVE_LEVELDB
    rc = leveldb_load(db, path, err);
#else
    rc = no_leveldb(path, err);
#endif
  }
  if (rc) {
    crema_db_close(db);
    return -1;
  }
  *out = db;
  return 0;
}

void crema_db_close(crema_db *db) {
  if (!db) return;
  if (db->lmdb) crema_lmdb_close(db->lmdb);
  free(db->path);
  free(db->arena);
  free(db->key_off);
  free(db->key_len);
  free(db->val_off);
  free(db->val_len);
  free(db);
}

uint64_t crema_db_count(const crema_db *db) { return db->lmdb ? crema_lmdb_count(db->lmdb) : db->count; }
const char *crema_db_path(const crema_db *db) { return db->path; }
uint64_t crema_db_index(const crema_db *db) { return db->lmdb ? crema_lmdb_index(db->lmdb) : db->at; }

void crema_db_current(const crema_db *db, const void **key, size_t *key_len, const void **value,
                      size_t *value_len) {
  if (db->lmdb) {
    crema_lmdb_current(db->lmdb, key, key_len, value, value_len);
    return;
  }
  *key = db->arena + db->key_off[db->at];
  *key_len = db->key_len[db->at];
  *value = db->arena + db->val_off[db->at];
  *value_len = db->val_len[db->at];
}

int crema_db_next(crema_db *db, crema_error *err) {
  if (db->lmdb) return crema_lmdb_next(db->lmdb, err);
  db->at = db->at + 1 == db->count ? 0 : db->at + 1;
  return 0;
}

int crema_db_seek(crema_db *db, uint64_t index, crema_error *err) {
  if (db->lmdb) return crema_lmdb_seek(db->lmdb, index, err);
  db->at = index % db->count;
  return 0;
}

/* ---------------------------------------------------------------- writing */

#define LEVELDB_BATCH 1000 /* Caffe's convert_imageset commits every 1000 records */

struct crema_db_writer {
  crema_db_backend backend;
  crema_lmdb_writer *lmdb;
  char *path;
#ifdef CREMA_HAVE_LEVELDB
  leveldb_t *ldb;
  leveldb_writebatch_t *batch;
  leveldb_writeoptions_t *wo;
  int pending;
#endif
};

int crema_db_create(const char *path, crema_db_backend backend, size_t initial_map_bytes,
                    crema_db_writer **out, crema_error *err) {
  *out = NULL;
  crema_db_writer *w = calloc(1, sizeof *w);
  if (!w || !(w->path = strdup(path))) {
    free(w);
    return crema_fail(err, "out of memory");
  }
  w->backend = backend;
  if (backend != CREMA_DB_LEVELDB) {
    if (crema_lmdb_create(path, initial_map_bytes, &w->lmdb, err)) {
      free(w->path);
      free(w);
      return -1;
    }
    *out = w;
    return 0;
  }
#ifdef CREMA_HAVE_LEVELDB
  struct stat st;
  if (stat(path, &st) == 0) {
    free(w->path);
    free(w);
    return crema_fail(err, "output \"%s\" already exists; remove it or choose another name", path);
  }
  char *e = NULL;
  leveldb_options_t *opt = leveldb_options_create();
  leveldb_options_set_create_if_missing(opt, 1);
  leveldb_options_set_error_if_exists(opt, 1);
  leveldb_options_set_write_buffer_size(opt, 268435456); /* as Caffe's LevelDB::Open */
  w->ldb = leveldb_open(opt, path, &e);
  leveldb_options_destroy(opt);
  if (e) {
    int rc = crema_fail(err, "%s: cannot create a LevelDB data set (%s)", path, e);
    leveldb_free(e);
    free(w->path);
    free(w);
    return rc;
  }
  w->batch = leveldb_writebatch_create();
  w->wo = leveldb_writeoptions_create();
  *out = w;
  return 0;
#else
  (void)initial_map_bytes;
  free(w->path);
  free(w);
  return no_leveldb(path, err);
#endif
}

int crema_db_commit(crema_db_writer *w, crema_error *err) {
  if (w->lmdb) return crema_lmdb_commit(w->lmdb, err);
#ifdef CREMA_HAVE_LEVELDB
  if (!w->pending) return 0;
  char *e = NULL;
  leveldb_write(w->ldb, w->wo, w->batch, &e);
  leveldb_writebatch_clear(w->batch);
  w->pending = 0;
  if (e) {
    int rc = crema_fail(err, "%s: LevelDB write failed (%s)", w->path, e);
    leveldb_free(e);
    return rc;
  }
#else
  (void)err;
#endif
  return 0;
}

int crema_db_put(crema_db_writer *w, const void *key, size_t key_len, const void *value, size_t value_len,
                 crema_error *err) {
  if (w->lmdb) return crema_lmdb_put(w->lmdb, key, key_len, value, value_len, err);
#ifdef CREMA_HAVE_LEVELDB
  leveldb_writebatch_put(w->batch, key, key_len, value, value_len);
  if (++w->pending >= LEVELDB_BATCH) return crema_db_commit(w, err);
#else
  (void)key;
  (void)key_len;
  (void)value;
  (void)value_len;
  (void)err;
#endif
  return 0;
}

int crema_db_map_growths(const crema_db_writer *w) { return w->lmdb ? crema_lmdb_map_growths(w->lmdb) : 0; }

static void writer_free(crema_db_writer *w) {
#ifdef CREMA_HAVE_LEVELDB
  if (w->batch) leveldb_writebatch_destroy(w->batch);
  if (w->wo) leveldb_writeoptions_destroy(w->wo);
  if (w->ldb) leveldb_close(w->ldb);
#endif
  free(w->path);
  free(w);
}

int crema_db_writer_close(crema_db_writer *w, crema_error *err) {
  if (w->lmdb) {
    int rc = crema_lmdb_writer_close(w->lmdb, err);
    w->lmdb = NULL;
    writer_free(w);
    return rc;
  }
  int rc = crema_db_commit(w, err);
  writer_free(w);
  return rc;
}

void crema_db_writer_abort(crema_db_writer *w) {
  if (!w) return;
  if (w->lmdb) crema_lmdb_writer_abort(w->lmdb);
  w->lmdb = NULL;
  writer_free(w);
}

void crema_db_remove(const char *path) { crema_lmdb_remove(path); }
