#include "data/mean.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "data/datum.h"
#include "data/image.h"
#include "data/db.h"
#include "proto/crema.pb-c.h"
#include "proto/io.h"

#define MEAN_CHUNK 256

void crema_mean_free(crema_mean *m) {
  if (!m) return;
  free(m->data);
  memset(m, 0, sizeof *m);
}

typedef struct mean_slot {
  crema_datum_view v;
  crema_bytes scratch;
  const uint8_t *pixels;
  int c, h, w;
  char key[128];
  crema_error err;
  int failed;
} mean_slot;

int crema_compute_image_mean(const char *db_path, void (*progress)(void *ctx, size_t done, size_t total),
                             void *ctx, crema_mean *out, crema_error *err) {
  memset(out, 0, sizeof *out);
  crema_db *db; /* LMDB or LevelDB, detected from the files */
  if (crema_db_open(db_path, CREMA_DB_AUTO, &db, err)) return -1;
  const uint64_t n = crema_db_count(db);
  mean_slot *slots = calloc(MEAN_CHUNK, sizeof *slots);
  double *sum = NULL;
  float *floats = NULL;
  size_t dim = 0;
  int rc = 0;
  if (!slots) {
    rc = crema_fail(err, "out of memory");
    goto out;
  }
  for (uint64_t start = 0; start < n && rc == 0; start += MEAN_CHUNK) {
    const int m = (int)(n - start < MEAN_CHUNK ? n - start : MEAN_CHUNK);
    /* Gather the chunk's records: record pointers stay valid while the data set is open (LMDB's read
     * transaction, LevelDB's copy in memory). */
    for (int i = 0; i < m && rc == 0; i++) {
      const void *k, *val;
      size_t kl, vl;
      crema_db_current(db, &k, &kl, &val, &vl);
      mean_slot *s = &slots[i];
      snprintf(s->key, sizeof s->key, "\"%.*s\"", (int)(kl < 100 ? kl : 100), (const char *)k);
      if (crema_datum_parse(val, vl, s->key, &s->v, err))
        rc = -1;
      else if (start + (uint64_t)i + 1 < n)
        rc = crema_db_next(db, err);
    }
    if (rc) break;
#pragma omp parallel for schedule(dynamic, 4)
    for (int i = 0; i < m; i++) {
      mean_slot *s = &slots[i];
      s->failed = crema_datum_pixels(&s->v, CREMA_IMAGE_NATIVE, s->key, &s->scratch, &s->c, &s->h, &s->w,
                                     &s->pixels, &s->err) != 0;
    }
    for (int i = 0; i < m; i++) {
      mean_slot *s = &slots[i];
      if (s->failed) {
        rc = crema_fail(err, "%s: %s", db_path, s->err.msg);
        break;
      }
      const size_t sz = (size_t)s->c * s->h * s->w;
      if (!sum) {
        out->channels = s->c;
        out->height = s->h;
        out->width = s->w;
        dim = sz;
        sum = calloc(dim, sizeof *sum);
        floats = malloc(dim * sizeof *floats);
        if (!sum || !floats) {
          rc = crema_fail(err, "out of memory");
          break;
        }
      } else if (s->c != out->channels || s->h != out->height || s->w != out->width) {
        rc = crema_fail(
            err,
            "%s: record %s is %d x %d x %d but the first record is %d x %d x %d; a mean needs images of "
            "one size (convert with --resize_width/--resize_height)",
            db_path, s->key, s->c, s->h, s->w, out->channels, out->height, out->width);
        break;
      }
      if (s->pixels) {
        for (size_t j = 0; j < dim; j++) sum[j] += s->pixels[j];
      } else {
        crema_datum_copy_floats(&s->v, floats);
        for (size_t j = 0; j < dim; j++) sum[j] += floats[j];
      }
    }
    if (rc == 0 && progress) progress(ctx, (size_t)(start + m), (size_t)n);
  }
  if (rc == 0) {
    out->data = malloc(dim * sizeof *out->data);
    if (!out->data)
      rc = crema_fail(err, "out of memory");
    else
      for (size_t j = 0; j < dim; j++) out->data[j] = (float)(sum[j] / (double)n);
    out->count = n;
  }
out:
  if (slots)
    for (int i = 0; i < MEAN_CHUNK; i++) crema_bytes_free(&slots[i].scratch);
  free(slots);
  free(sum);
  free(floats);
  crema_db_close(db);
  if (rc) crema_mean_free(out);
  return rc;
}

int crema_mean_write(const char *path, const crema_mean *m, crema_error *err) {
  Crema__BlobProto b = CREMA__BLOB_PROTO__INIT;
  b.has_num = b.has_channels = b.has_height = b.has_width = 1;
  b.num = 1;
  b.channels = m->channels;
  b.height = m->height;
  b.width = m->width;
  b.n_data = (size_t)m->channels * m->height * m->width;
  b.data = m->data;
  /* Atomic: a temporary file beside the target, renamed into place. */
  return crema_write_binary_message(path, &b.base, err);
}

int crema_mean_read(const char *path, crema_mean *out, crema_error *err) {
  memset(out, 0, sizeof *out);
  uint8_t *buf;
  size_t len;
  if (crema_read_file_bytes(path, &buf, &len, err)) return crema_error_prefix(err, "mean file");
  Crema__BlobProto *b = crema__blob_proto__unpack(NULL, len, buf);
  free(buf);
  if (!b) return crema_fail(err, "mean file \"%s\" is not a BlobProto (.binaryproto)", path);
  long dims[4] = {b->num, b->channels, b->height, b->width};
  if (b->shape) {
    if (b->shape->n_dim < 1 || b->shape->n_dim > 4) {
      crema__blob_proto__free_unpacked(b, NULL);
      return crema_fail(err, "mean file \"%s\" has %zu axes; expected (1,) C x H x W", path, b->shape->n_dim);
    }
    for (int i = 0; i < 4; i++) dims[i] = 1;
    for (size_t i = 0; i < b->shape->n_dim; i++) dims[4 - b->shape->n_dim + i] = (long)b->shape->dim[i];
  }
  const size_t count = (size_t)(dims[1] > 0 ? dims[1] : 0) * (size_t)(dims[2] > 0 ? dims[2] : 0) *
                       (size_t)(dims[3] > 0 ? dims[3] : 0);
  const size_t have = b->n_data ? b->n_data : b->n_double_data;
  if (dims[0] != 1 || count == 0 || have != count) {
    crema_fail(err,
               "mean file \"%s\": shape %ld x %ld x %ld x %ld with %zu values; expected one image (num 1)",
               path, dims[0], dims[1], dims[2], dims[3], have);
    crema__blob_proto__free_unpacked(b, NULL);
    return -1;
  }
  out->data = malloc(count * sizeof *out->data);
  if (!out->data) {
    crema__blob_proto__free_unpacked(b, NULL);
    return crema_fail(err, "out of memory reading \"%s\"", path);
  }
  for (size_t i = 0; i < count; i++) out->data[i] = b->n_data ? b->data[i] : (float)b->double_data[i];
  out->channels = (int)dims[1];
  out->height = (int)dims[2];
  out->width = (int)dims[3];
  crema__blob_proto__free_unpacked(b, NULL);
  return 0;
}
