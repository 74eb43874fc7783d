/* mean.h -- the mean image of a data set (compute_image_mean) and mean files (.binaryproto).
 *
 * A mean file is a BlobProto holding one channels x height x width float image. Caffe writes
 * it with the legacy num/channels/height/width fields (num = 1); crema writes exactly that,
 * so Caffe, OpenCV and crema all read it, and reads either that form or the `shape` form. */
#ifndef CREMA_DATA_MEAN_H
#define CREMA_DATA_MEAN_H

#include <stddef.h>
#include <stdint.h>

#include "base/error.h"

typedef struct crema_mean {
  int channels, height, width;
  float *data;    /* channels * height * width values, channels-first (BGR for colour) */
  uint64_t count; /* images averaged (0 when read from a file) */
} crema_mean;

/* Averages every Datum of the LMDB at db_path (raw bytes, float_data, or encoded images
 * decoded in their native grey/colour, as Caffe's DecodeDatumNative). All records must have
 * the first one's size: a mismatch is an error naming the record's key. Encoded records are
 * decoded on all cores. progress (may be NULL) is called now and then from this thread.
 * The caller frees out with crema_mean_free. */
int crema_compute_image_mean(const char *db_path, void (*progress)(void *ctx, size_t done, size_t total),
                             void *ctx, crema_mean *out, crema_error *err);

/* Writes m as a BlobProto (num = 1, channels, height, width, data), atomically. */
int crema_mean_write(const char *path, const crema_mean *m, crema_error *err);
/* Reads a mean file (legacy 4-d fields or `shape` with leading 1s; float or double data).
 * Fails naming the file when it is not a BlobProto or its size does not match its shape. */
int crema_mean_read(const char *path, crema_mean *out, crema_error *err);
void crema_mean_free(crema_mean *m);

#endif
