/* datum.h -- Caffe's Datum record (one image + label) as stored in LMDB data sets.
 *
 * Raw datums hold channels * height * width bytes, channels-first, BGR for colour (as
 * OpenCV and so Caffe lay them out), or the same number of floats in float_data. Encoded
 * datums hold a whole image file (JPEG, PNG...) in `data` with encoded = true; their
 * channels/height/width may be unset.
 *
 * Reading uses a zero-copy view: crema_datum_parse points into the record's bytes (the LMDB
 * memory map), so a data layer reads records without allocating. Writing goes through
 * protobuf-c's generated crema__datum__pack into a reusable byte buffer. */
#ifndef CREMA_DATA_DATUM_H
#define CREMA_DATA_DATUM_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "base/error.h"
#include "data/image.h"
#include "proto/crema.pb-c.h"

/* A grow-only byte buffer (one owner; free with crema_bytes_free). */
typedef struct crema_bytes {
  uint8_t *data;
  size_t len, cap;
} crema_bytes;

/* Makes room for n bytes (keeps the contents); len is not changed. */
int crema_bytes_reserve(crema_bytes *b, size_t n, crema_error *err);
void crema_bytes_free(crema_bytes *b);

typedef struct crema_datum_view {
  int channels, height, width, label;
  bool encoded;
  const uint8_t *data; /* borrowed from the parsed buffer; NULL when absent */
  size_t data_len;
  size_t n_float; /* number of float_data values */
  /* Where the record lives, to read float_data on request. */
  const uint8_t *buf;
  size_t buf_len;
} crema_datum_view;

/* Parses a serialized Datum without copying: the view borrows buf, which must outlive it.
 * Fails on malformed bytes, naming `what` (e.g. the record key). */
int crema_datum_parse(const uint8_t *buf, size_t len, const char *what, crema_datum_view *v,
                      crema_error *err);
/* Copies the view's float_data (n_float values) into out. */
void crema_datum_copy_floats(const crema_datum_view *v, float *out);

/* The pixels of a datum as channels-first bytes (BGR for colour), decoding encoded datums
 * with stb_image in `mode` (NATIVE keeps the file's grey/colour, like Caffe's
 * DecodeDatumNative; GRAY/COLOR are force_gray/force_color). Raw datums are returned as they
 * are (*pixels points into the view; mode must then be NATIVE or match their channels);
 * decoded ones land in `scratch` (grow-only, reused across calls). Datums holding only
 * float_data are not handled here (*pixels = NULL, shape set). */
int crema_datum_pixels(const crema_datum_view *v, crema_image_mode mode, const char *what,
                       crema_bytes *scratch, int *channels, int *height, int *width, const uint8_t **pixels,
                       crema_error *err);

/* Serializes d into out (out->len = size). */
int crema_datum_serialize(const Crema__Datum *d, crema_bytes *out, crema_error *err);

/* Serializes a raw datum from channels-first bytes, or an encoded one from file bytes
 * (encoded: channels/height/width are written when > 0, as crema and Caffe both ignore them). */
int crema_datum_serialize_raw(const uint8_t *chw, int channels, int height, int width, int label,
                              crema_bytes *out, crema_error *err);
int crema_datum_serialize_encoded(const uint8_t *file_bytes, size_t len, int label, crema_bytes *out,
                                  crema_error *err);

#endif
