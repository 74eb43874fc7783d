/* db.h -- Caffe's two data-set backends behind one interface: LMDB (lmdb_db.h, Caffe's
 * default for convert_imageset) and LevelDB (the default of Caffe's DataParameter, used by
 * older data sets such as Caffe's MNIST and CIFAR-10 examples). Keys and records are the
 * same in both: key -> serialized Datum, read in key order.
 *
 * Reading LevelDB: the whole data set (keys and values) is read into memory when opened, so
 * record pointers stay valid until close and seeking is O(1); old LevelDB data sets are
 * small. Writing LevelDB: a new database (an existing path is an error), records written in
 * batches of 1000 as Caffe's tools do. LevelDB is optional (Debian libleveldb-dev, found by
 * CMake): without it the LevelDB functions fail with a message naming the package.
 * Every object has one owner; close/abort frees it. */
#ifndef CREMA_DATA_DB_H
#define CREMA_DATA_DB_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "base/error.h"

typedef enum { CREMA_DB_AUTO = 0, CREMA_DB_LMDB = 1, CREMA_DB_LEVELDB = 2 } crema_db_backend;

/* "lmdb" or "leveldb" (any case); anything else is an error listing both. */
int crema_db_backend_parse(const char *name, crema_db_backend *out, crema_error *err);
const char *crema_db_backend_name(crema_db_backend b);
/* Which backend wrote the data set at path: LMDB (data.mdb), LevelDB (CURRENT), or AUTO when
 * neither is recognisable. */
crema_db_backend crema_db_detect(const char *path);
bool crema_leveldb_available(void);

typedef struct crema_db crema_db;
/* Opens for reading, positioned on the first record. backend AUTO: detected from the files.
 * An empty data set is an error. The caller frees with crema_db_close. */
int crema_db_open(const char *path, crema_db_backend backend, crema_db **out, crema_error *err);
void crema_db_close(crema_db *db);
uint64_t crema_db_count(const crema_db *db);
const char *crema_db_path(const crema_db *db);
/* The record under the cursor (pointers valid until the next move; LevelDB's until close). */
void crema_db_current(const crema_db *db, const void **key, size_t *key_len, const void **value,
                      size_t *value_len);
uint64_t crema_db_index(const crema_db *db);
/* Next record, wrapping around after the last. */
int crema_db_next(crema_db *db, crema_error *err);
/* Record `index` modulo the count. */
int crema_db_seek(crema_db *db, uint64_t index, crema_error *err);

typedef struct crema_db_writer crema_db_writer;
/* Creates a new data set at path (must not exist). initial_map_bytes: LMDB only (0 = default).
 * backend must be LMDB or LEVELDB. */
int crema_db_create(const char *path, crema_db_backend backend, size_t initial_map_bytes,
                    crema_db_writer **out, crema_error *err);
int crema_db_put(crema_db_writer *w, const void *key, size_t key_len, const void *value, size_t value_len,
                 crema_error *err);
int crema_db_commit(crema_db_writer *w, crema_error *err);
/* LMDB map growths so far (0 for LevelDB). */
int crema_db_map_growths(const crema_db_writer *w);
/* Commits and closes; frees w even on failure. */
int crema_db_writer_close(crema_db_writer *w, crema_error *err);
/* Drops what is pending, closes and frees. */
void crema_db_writer_abort(crema_db_writer *w);
/* Deletes a data-set directory (its files, then the folder), of either backend. */
void crema_db_remove(const char *path);

#endif
