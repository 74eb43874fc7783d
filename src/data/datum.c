#include "data/datum.h"

#include <stdlib.h>
#include <string.h>

int crema_bytes_reserve(crema_bytes *b, size_t n, crema_error *err) {
  if (n <= b->cap) return 0;
  size_t nc = b->cap ? b->cap : 256;
  while (nc < n) nc *= 2;
  uint8_t *p = realloc(b->data, nc);
  if (!p) return crema_fail(err, "out of memory (%zu bytes)", nc);
  b->data = p;
  b->cap = nc;
  return 0;
}

void crema_bytes_free(crema_bytes *b) {
  free(b->data);
  b->data = NULL;
  b->len = b->cap = 0;
}

/* ---------------------------------------------------------------- wire parsing */

static int read_varint(const uint8_t **p, const uint8_t *end, uint64_t *out) {
  uint64_t v = 0;
  for (int shift = 0; shift < 64; shift += 7) {
    if (*p >= end) return -1;
    uint8_t b = *(*p)++;
    v |= (uint64_t)(b & 0x7f) << shift;
    if (!(b & 0x80)) {
      *out = v;
      return 0;
    }
  }
  return -1;
}

/* Walks the record; for each float_data value calls back (floats may be packed or not). */
typedef void (*float_sink)(void *ctx, size_t i, float value);

static int walk(const uint8_t *buf, size_t len, crema_datum_view *v, float_sink sink, void *ctx) {
  const uint8_t *p = buf, *end = buf + len;
  size_t n_float = 0;
  while (p < end) {
    uint64_t tag, x;
    if (read_varint(&p, end, &tag)) return -1;
    const int field = (int)(tag >> 3), wire = (int)(tag & 7);
    switch (wire) {
    case 0:
      if (read_varint(&p, end, &x)) return -1;
      if (v) {
        if (field == 1)
          v->channels = (int)(int32_t)x;
        else if (field == 2)
          v->height = (int)(int32_t)x;
        else if (field == 3)
          v->width = (int)(int32_t)x;
        else if (field == 5)
          v->label = (int)(int32_t)x;
        else if (field == 7)
          v->encoded = x != 0;
      }
      break;
    case 1:
      if (end - p < 8) return -1;
      p += 8;
      break;
    case 2:
      if (read_varint(&p, end, &x) || x > (uint64_t)(end - p)) return -1;
      if (field == 4 && v) {
        v->data = p;
        v->data_len = (size_t)x;
      } else if (field == 6) { /* packed float_data */
        if (x % 4) return -1;
        for (size_t i = 0; i < x / 4; i++) {
          if (sink) {
            float f;
            memcpy(&f, p + 4 * i, 4); /* little-endian wire = host order on our targets */
            sink(ctx, n_float, f);
          }
          n_float++;
        }
      }
      p += x;
      break;
    case 5:
      if (end - p < 4) return -1;
      if (field == 6) {
        if (sink) {
          float f;
          memcpy(&f, p, 4);
          sink(ctx, n_float, f);
        }
        n_float++;
      }
      p += 4;
      break;
    default: return -1;
    }
  }
  if (v) v->n_float = n_float;
  return 0;
}

int crema_datum_parse(const uint8_t *buf, size_t len, const char *what, crema_datum_view *v,
                      crema_error *err) {
  memset(v, 0, sizeof *v);
  v->buf = buf;
  v->buf_len = len;
  if (walk(buf, len, v, NULL, NULL))
    return crema_fail(err, "record %s is not a valid Datum (corrupt or not written by convert_imageset)",
                      what);
  return 0;
}

static void store_float(void *ctx, size_t i, float value) { ((float *)ctx)[i] = value; }

void crema_datum_copy_floats(const crema_datum_view *v, float *out) {
  crema_datum_view tmp;
  (void)walk(v->buf, v->buf_len, &tmp, store_float, out);
}

int crema_datum_pixels(const crema_datum_view *v, crema_image_mode mode, const char *what,
                       crema_bytes *scratch, int *channels, int *height, int *width, const uint8_t **pixels,
                       crema_error *err) {
  *pixels = NULL;
  if (v->encoded) {
    crema_image img;
    if (crema_image_decode(v->data, v->data_len, mode, what, &img, err)) return -1;
    size_t n = (size_t)img.width * img.height * img.channels;
    if (crema_bytes_reserve(scratch, n, err)) {
      crema_image_free(&img);
      return -1;
    }
    crema_image_to_chw_bgr(&img, scratch->data);
    scratch->len = n;
    *channels = img.channels;
    *height = img.height;
    *width = img.width;
    *pixels = scratch->data;
    crema_image_free(&img);
    return 0;
  }
  *channels = v->channels;
  *height = v->height;
  *width = v->width;
  if (v->channels <= 0 || v->height <= 0 || v->width <= 0)
    return crema_fail(err,
                      "record %s: Datum has shape %d x %d x %d; channels, height and width must be positive",
                      what, v->channels, v->height, v->width);
  const size_t n = (size_t)v->channels * v->height * v->width;
  if (v->data_len == 0 && v->n_float == n) return 0; /* float datum: the caller reads float_data */
  if (v->data_len != n)
    return crema_fail(err,
                      "record %s: Datum says %d x %d x %d (%zu values) but holds %zu bytes and %zu floats",
                      what, v->channels, v->height, v->width, n, v->data_len, v->n_float);
  if (mode != CREMA_IMAGE_NATIVE && (int)mode != v->channels)
    return crema_fail(err,
                      "record %s: force_%s applies to encoded datums only; this raw datum has %d channel(s)",
                      what, mode == CREMA_IMAGE_GRAY ? "gray" : "color", v->channels);
  *pixels = v->data;
  return 0;
}

int crema_datum_serialize(const Crema__Datum *d, crema_bytes *out, crema_error *err) {
  size_t n = crema__datum__get_packed_size(d);
  if (crema_bytes_reserve(out, n ? n : 1, err)) return -1;
  out->len = crema__datum__pack(d, out->data);
  return 0;
}

int crema_datum_serialize_raw(const uint8_t *chw, int channels, int height, int width, int label,
                              crema_bytes *out, crema_error *err) {
  Crema__Datum d = CREMA__DATUM__INIT;
  d.has_channels = d.has_height = d.has_width = d.has_label = d.has_data = 1;
  d.channels = channels;
  d.height = height;
  d.width = width;
  d.label = label;
  d.data.data = (uint8_t *)chw; /* read-only use by pack */
  d.data.len = (size_t)channels * height * width;
  d.has_encoded = 1;
  d.encoded = 0;
  return crema_datum_serialize(&d, out, err);
}

int crema_datum_serialize_encoded(const uint8_t *file_bytes, size_t len, int label, crema_bytes *out,
                                  crema_error *err) {
  Crema__Datum d = CREMA__DATUM__INIT;
  d.has_label = d.has_data = d.has_encoded = 1;
  d.label = label;
  d.data.data = (uint8_t *)file_bytes;
  d.data.len = len;
  d.encoded = 1;
  return crema_datum_serialize(&d, out, err);
}
