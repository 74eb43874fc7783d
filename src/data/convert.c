#include "data/convert.h"

#include <errno.h>
#include <omp.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/stat.h>
#include <unistd.h>

#include "base/fs.h"
#include "data/datum.h"
#include "data/image.h"
#include "data/image_probe.h"
#include "data/list_file.h"
#include "data/db.h"

/* What one worker produced for one line. */
typedef struct line_result {
  crema_bytes record; /* serialized Datum */
  int ok;
  int channels, height, width; /* of raw datums, for check_size */
  crema_error why;             /* when !ok */
} line_result;

static bool same_encoding(const char *ext, const char *enc) {
  if (!strcasecmp(ext, enc)) return true;
  bool ext_jpg = !strcmp(ext, "jpg") || !strcmp(ext, "jpeg");
  bool enc_jpg = !strcasecmp(enc, "jpg") || !strcasecmp(enc, "jpeg");
  return ext_jpg && enc_jpg;
}

static void convert_line(const crema_convert_options *o, const char *file, int label, bool encoded,
                         line_result *r) {
  r->ok = 0;
  char path[4096];
  int pn = snprintf(path, sizeof path, "%s%s", o->root ? o->root : "", file);
  if (pn < 0 || (size_t)pn >= sizeof path) {
    crema_fail(&r->why, "path too long");
    return;
  }
  uint8_t *bytes = NULL;
  size_t len = 0;
  crema_image img = {0}, resized = {0};
  uint8_t *encoded_bytes = NULL;
  if (crema_read_file_bytes(path, &bytes, &len, &r->why)) return;
  const crema_image_mode mode = o->gray ? CREMA_IMAGE_GRAY : CREMA_IMAGE_COLOR;
  if (crema_image_decode(bytes, len, mode, path, &img, &r->why)) goto done;
  const bool resize = o->resize_width > 0 && o->resize_height > 0;
  if (resize) {
    if (crema_image_resize(&img, o->resize_width, o->resize_height, &resized, &r->why)) goto done;
    crema_image_free(&img);
    img = resized;
  }
  if (encoded) {
    /* The file's own format, by content (a PNG named .jpg is a PNG), decides whether its bytes
     * can be stored as they are; without --encode_type, that format is the encoding. */
    crema_image_info info;
    if (crema_image_probe(bytes, len, path, &info, &r->why)) goto done;
    const char *actual = crema_image_format_name(info.format);
    char enc[16];
    snprintf(enc, sizeof enc, "%s", o->encode_type && *o->encode_type ? o->encode_type : actual);
    if (!resize && same_encoding(actual, enc) && info.channels == img.channels) {
      if (crema_datum_serialize_encoded(bytes, len, label, &r->record, &r->why)) goto done;
    } else {
      /* Re-encoding writes PNG or JPEG only: other formats (BMP, GIF, PNM) become PNG. */
      if (!same_encoding("jpg", enc) && strcasecmp(enc, "png")) snprintf(enc, sizeof enc, "png");
      size_t elen;
      if (crema_image_encode(&img, enc, &encoded_bytes, &elen, &r->why) ||
          crema_datum_serialize_encoded(encoded_bytes, elen, label, &r->record, &r->why)) {
        crema_error_prefix(&r->why, "%s", path);
        goto done;
      }
    }
  } else {
    /* The datum's data is the channels-first copy; stage it at the end of the record buffer
     * region we already own to avoid a second allocation per line. */
    const size_t n = (size_t)img.channels * img.height * img.width;
    uint8_t *chw = malloc(n);
    if (!chw) {
      crema_fail(&r->why, "%s: out of memory", path);
      goto done;
    }
    crema_image_to_chw_bgr(&img, chw);
    int rc = crema_datum_serialize_raw(chw, img.channels, img.height, img.width, label, &r->record, &r->why);
    free(chw);
    if (rc) goto done;
  }
  r->channels = img.channels;
  r->height = img.height;
  r->width = img.width;
  r->ok = 1;
done:
  free(encoded_bytes);
  crema_image_free(&img);
  free(bytes);
}

/* What the writing side of the pipeline needs. */
typedef struct write_state {
  const crema_convert_options *o;
  const crema_image_list *list;
  const uint32_t *order;
  bool encoded;
  crema_db_writer *w;
  crema_convert_result *res;
  crema_error *err;
  crema_bytes key;
  size_t expect_size; /* --check_size: values of the first record */
} write_state;

/* Writes lines [start, start + n) from their results, in order: skips reported, sizes
 * checked, records put under Caffe's keys. Runs on the calling thread. */
static int write_chunk(write_state *ws, const line_result *results, size_t start, size_t n) {
  const crema_convert_options *o = ws->o;
  for (size_t i = 0; i < n; i++) {
    const size_t line_id = start + i;
    const crema_list_entry *e = &ws->list->entries[ws->order[line_id]];
    const line_result *r = &results[i];
    if (!r->ok) {
      ws->res->skipped++;
      if (o->skipped) o->skipped(o->ctx, e->path, r->why.msg);
      continue;
    }
    if (o->check_size && !ws->encoded) {
      const size_t sz = (size_t)r->channels * r->height * r->width;
      if (!ws->expect_size)
        ws->expect_size = sz;
      else if (sz != ws->expect_size)
        return crema_fail(ws->err,
                          "%s: %d x %d x %d does not match the first image's size (%zu values); resize with "
                          "--resize_width/--resize_height or drop --check_size",
                          e->path, r->channels, r->height, r->width, ws->expect_size);
    }
    const size_t klen = strlen(e->path) + 10;
    if (crema_bytes_reserve(&ws->key, klen, ws->err)) return -1;
    const int kn = snprintf((char *)ws->key.data, klen, "%08zu_%s", line_id, e->path);
    if (crema_db_put(ws->w, ws->key.data, (size_t)kn, r->record.data, r->record.len, ws->err)) return -1;
    ws->res->written++;
  }
  return 0;
}

int crema_convert_imageset(const crema_convert_options *o, crema_convert_result *res, crema_error *err) {
  memset(res, 0, sizeof *res);
  crema_db_backend backend = CREMA_DB_LMDB;
  if (o->backend && *o->backend && crema_db_backend_parse(o->backend, &backend, err)) return -1;
  struct stat st;
  if (stat(o->db_path, &st) == 0)
    return crema_fail(
        err,
        "output \"%s\" already exists; remove it or choose another name (crema never overwrites "
        "a data set)",
        o->db_path);
  const bool encoded = o->encoded || (o->encode_type && *o->encode_type);
  if (o->encode_type && *o->encode_type && strcasecmp(o->encode_type, "png") &&
      strcasecmp(o->encode_type, "jpg") && strcasecmp(o->encode_type, "jpeg"))
    return crema_fail(err, "--encode_type=%s is not supported: use png or jpg", o->encode_type);

  crema_image_list list;
  if (crema_image_list_read(o->list_file, &list, err)) return -1;
  res->lines = list.count;
  if (list.count > 99999999u) {
    crema_image_list_free(&list);
    return crema_fail(err, "%s: %zu lines; keys hold at most 8 digits", o->list_file, list.count);
  }
  uint32_t *order = malloc(sizeof *order * list.count);
  if (!order) {
    crema_image_list_free(&list);
    return crema_fail(err, "out of memory");
  }
  for (size_t i = 0; i < list.count; i++) order[i] = (uint32_t)i;
  if (o->shuffle) crema_shuffle_indices(order, list.count, o->seed, 0);

  /* "out/" and "out" name the same data set; the partial one sits beside it. */
  char dest[4096], tmp[4200];
  snprintf(dest, sizeof dest, "%s", o->db_path);
  for (size_t dl = strlen(dest); dl > 1 && dest[dl - 1] == '/'; dl--) dest[dl - 1] = '\0';
  snprintf(tmp, sizeof tmp, "%s.partial-%ld", dest, (long)getpid());
  crema_remove_stale_temps(dest); /* partial DBs of killed runs */
  crema_db_writer *w = NULL;
  const int threads = omp_get_max_threads();
  const size_t chunk = (size_t)(threads > 0 ? threads : 1) * 32;
  /* Two chunks of results: the calling thread writes one while the others decode the next. */
  line_result *results = calloc(2 * chunk, sizeof *results);
  write_state ws = {.o = o, .list = &list, .order = order, .encoded = encoded, .res = res, .err = err};
  int rc = 0;
  if (!results) {
    rc = crema_fail(err, "out of memory");
    goto out;
  }
  if (crema_db_create(tmp, backend, o->initial_map_bytes, &w, err)) {
    rc = -1;
    goto out;
  }
  ws.w = w;
  const size_t n_chunks = (list.count + chunk - 1) / chunk;
#pragma omp parallel for schedule(dynamic, 1)
  for (size_t i = 0; i < (list.count < chunk ? list.count : chunk); i++) {
    const crema_list_entry *e = &list.entries[order[i]];
    convert_line(o, e->path, e->label, encoded, &results[i]);
  }
  for (size_t k = 0; k < n_chunks && rc == 0; k++) {
    line_result *cur = results + (k % 2) * chunk, *next = results + ((k + 1) % 2) * chunk;
    const size_t start = k * chunk, n = list.count - start < chunk ? list.count - start : chunk;
    const size_t next_start = start + n;
    const size_t next_n = list.count - next_start < chunk ? list.count - next_start : chunk;
#pragma omp parallel
    {
      /* master: the calling thread, so callbacks run where the caller expects them. It joins
       * the decoding of the next chunk once its writing is done (dynamic schedule). */
#pragma omp master
      rc = write_chunk(&ws, cur, start, n);
#pragma omp for schedule(dynamic, 1)
      for (size_t i = 0; i < next_n; i++) {
        const crema_list_entry *e = &list.entries[order[next_start + i]];
        convert_line(o, e->path, e->label, encoded, &next[i]);
      }
    }
    if (rc == 0 && o->progress) o->progress(o->ctx, start + n, list.count);
  }
  if (rc == 0 && res->written == 0)
    rc = crema_fail(
        err,
        "none of the %zu images could be read; check the root folder (\"%s\", joined to each path as "
        "written) and the paths in %s",
        list.count, o->root ? o->root : "", o->list_file);
  if (rc == 0) rc = crema_db_commit(w, err);
  if (rc == 0) {
    res->map_growths = crema_db_map_growths(w);
    rc = crema_db_writer_close(w, err);
    w = NULL;
  }
  if (rc == 0 && rename(tmp, dest) != 0)
    rc = crema_fail(err, "cannot move the finished data set to \"%s\": %s", dest, strerror(errno));
out:
  if (w) crema_db_writer_abort(w);
  if (rc) crema_db_remove(tmp);
  if (results)
    for (size_t i = 0; i < 2 * chunk; i++) crema_bytes_free(&results[i].record);
  free(results);
  crema_bytes_free(&ws.key);
  free(order);
  crema_image_list_free(&list);
  return rc;
}
