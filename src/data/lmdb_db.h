/* lmdb_db.h -- the LMDB data sets Caffe's tools write and its Data layer reads.
 *
 * A data set is an LMDB environment directory (data.mdb + lock.mdb) with one unnamed
 * database of key -> serialized Datum records, iterated in key order.
 *
 * Reading: crema_lmdb_open opens the environment read-only without the lock file
 * (MDB_RDONLY | MDB_NOLOCK | MDB_NOTLS), so any number of processes -- and several readers
 * in one process -- can read the same data set at once. Data sets are not written while
 * they are read (convert_imageset refuses to write into an existing one).
 *
 * Writing: crema_lmdb_create makes a NEW environment (an existing path is an error: data
 * sets are never silently overwritten), buffers puts and commits them in batches. When the
 * memory map is full the batch is aborted, the map doubled and the batch redone, so a data
 * set of any size converts without a map-size setting. */
#ifndef CREMA_DATA_LMDB_DB_H
#define CREMA_DATA_LMDB_DB_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "base/error.h"

/* ---------------------------------------------------------------- reading */

typedef struct crema_lmdb crema_lmdb;

/* Opens the data set at `path` for reading and positions the cursor on the first record.
 * Errors name the path and say what is wrong: missing, not an LMDB directory, not an LMDB
 * file, or empty (an empty data set is an error because nothing could be read from it).
 * The caller frees with crema_lmdb_close. */
int crema_lmdb_open(const char *path, crema_lmdb **out, crema_error *err);
void crema_lmdb_close(crema_lmdb *db);

/* Number of records (fixed while open). */
uint64_t crema_lmdb_count(const crema_lmdb *db);
const char *crema_lmdb_path(const crema_lmdb *db);

/* The record under the cursor. Pointers borrow LMDB's memory map and stay valid until the
 * next cursor move or crema_lmdb_close. */
void crema_lmdb_current(const crema_lmdb *db, const void **key, size_t *key_len, const void **value,
                        size_t *value_len);
/* Index (0-based, in key order) of the record under the cursor. */
uint64_t crema_lmdb_index(const crema_lmdb *db);

/* Moves to the next record, wrapping around to the first after the last. */
int crema_lmdb_next(crema_lmdb *db, crema_error *err);
/* Moves to record `index` modulo the count. LMDB has no positional lookup, so this walks
 * from the nearest of the current position and the first record (O(distance)). */
int crema_lmdb_seek(crema_lmdb *db, uint64_t index, crema_error *err);

/* ---------------------------------------------------------------- writing */

typedef struct crema_lmdb_writer crema_lmdb_writer;

#define CREMA_LMDB_BATCH 1000
#define CREMA_LMDB_BATCH_BYTES ((size_t)32 << 20)

/* Creates the directory `path` (it must not exist) and a new environment in it.
 * initial_map_bytes: the first map size (0 = 1 GiB of address space; the file grows with
 * the data); it doubles whenever it fills up.
 * The caller finishes with crema_lmdb_writer_close (commits) or crema_lmdb_writer_abort. */
int crema_lmdb_create(const char *path, size_t initial_map_bytes, crema_lmdb_writer **out, crema_error *err);
/* Copies key and value into the pending batch; commits when CREMA_LMDB_BATCH records or
 * CREMA_LMDB_BATCH_BYTES bytes are pending. A key already in the data set is replaced (as
 * Caffe's put does). */
int crema_lmdb_put(crema_lmdb_writer *w, const void *key, size_t key_len, const void *value, size_t value_len,
                   crema_error *err);
/* Commits the pending batch now (no-op when empty). */
int crema_lmdb_commit(crema_lmdb_writer *w, crema_error *err);
/* Records committed so far, and how many times the map was grown (for tests and logs). */
uint64_t crema_lmdb_written(const crema_lmdb_writer *w);
int crema_lmdb_map_growths(const crema_lmdb_writer *w);
/* Commits what is pending and closes; frees w even on failure. */
int crema_lmdb_writer_close(crema_lmdb_writer *w, crema_error *err);
/* Drops what is pending, closes and frees (the directory stays, with what was committed). */
void crema_lmdb_writer_abort(crema_lmdb_writer *w);
/* Deletes an LMDB directory (its files, then the folder) -- for outputs a failed run made. */
void crema_lmdb_remove(const char *path);

#endif
