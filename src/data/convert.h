/* convert.h -- the engine of convert_imageset: a list of images -> an LMDB of Datums.
 *
 * Behaves as Caffe's tools/convert_imageset.cpp: record keys "%08d_<path>" where the number
 * is the line's index after the optional shuffle; raw datums (channels-first BGR bytes, 1
 * channel with gray) or encoded ones (the file's own bytes when no resize is asked, the
 * extension matches the encoding and the file's grey/colour matches --gray; otherwise the
 * decoded image re-encoded as png or jpg). Unreadable images are reported through the
 * `skipped` callback and left out. Decoding runs on all cores over chunks of lines; records
 * are written in list order, committed in batches (crema_lmdb_put).
 *
 * The data set is built under "<db_path>.partial-<pid>" and renamed into place at the end,
 * so an interrupted run never leaves a half-written data set under the real name. */
#ifndef CREMA_DATA_CONVERT_H
#define CREMA_DATA_CONVERT_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "base/error.h"

typedef struct crema_convert_options {
  const char *root;      /* prefix joined to every path as is (Caffe: ROOTFOLDER/) */
  const char *list_file; /* "<path> <label>" lines */
  const char *db_path;   /* must not exist */
  const char *backend;   /* "lmdb" (NULL = lmdb); "leveldb" is refused */
  bool gray;             /* decode as 1-channel grey */
  bool shuffle;          /* shuffle the lines with `seed` first */
  uint64_t seed;
  bool check_size;                 /* every raw datum must have the first one's size */
  bool encoded;                    /* store encoded image files */
  const char *encode_type;         /* "png" / "jpg"; non-empty implies encoded */
  int resize_width, resize_height; /* both > 0 to resize */
  size_t initial_map_bytes;        /* 0 = default; the map grows when full */
  /* Optional callbacks (may be NULL), always called from the calling thread. */
  void (*progress)(void *ctx, size_t done, size_t total);
  void (*skipped)(void *ctx, const char *path, const char *reason);
  void *ctx;
} crema_convert_options;

typedef struct crema_convert_result {
  size_t lines, written, skipped;
  int map_growths;
} crema_convert_result;

/* Runs the conversion. Fails (and removes the partial output) on a bad list file, an
 * existing output, an unsupported backend, a size mismatch with check_size, an LMDB error,
 * or when no image at all could be read; single unreadable images are not failures. */
int crema_convert_imageset(const crema_convert_options *opt, crema_convert_result *res, crema_error *err);

#endif
