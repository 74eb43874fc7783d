/* Data: batches of Datums read from an LMDB data set (data_param), transformed by
 * transform_param, prefetched on a background thread.
 *
 *   tops: data (batch_size, C, H', W'), optional label (batch_size)
 *
 * Records are read in key order, wrapping around at the end. rand_skip skips a number of
 * records (drawn from the layer seed) at the start, as Caffe's rand_skip does. Every random
 * choice of record r (crop, mirror, augmentation) is seeded by (layer seed, r), so the
 * position (records handed to the net so far) determines all later batches: set_position
 * restarts the prefetcher there for an exact resume.
 *
 * In the TRAIN phase the layer reads only its shard of the records (data/shard.h: record g
 * goes to process g mod count, for data-parallel training). Record indices, the per-record
 * draws and the position are those of the whole data set, so every process of a sharded run
 * sees exactly the records, crops and mirrors one process would. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "base/log.h"
#include "data/datum.h"
#include "data/db.h"
#include "data/prefetch.h"
#include "data/shard.h"
#include "data/transformer.h"
#include "layers/layer.h"

typedef struct data_item {
  crema_datum_view view;
  char key[96];
  crema_bytes scratch;
  crema_transform_work work;
  float *floats;
  size_t floats_cap;
  crema_error err;
  int failed;
} data_item;

typedef struct data_state {
  crema_db *db; /* used by the prefetch thread only, once setup is done */
  crema_transformer *tf;
  crema_prefetcher *pf;
  crema_image_mode mode;
  int batch, oc, oh, ow;
  size_t item_count;
  uint64_t skip, position; /* position: this shard's records handed to the net */
  crema_data_shard shard;  /* 0 of 1 unless TRAIN phase under data-parallel training */
  bool parallel;           /* transform batch items on several threads */
  data_item *items;
} data_state;

static uint64_t layer_seed(const crema_layer *l) {
  crema_rng r = l->rng; /* a copy: the layer's own stream stays untouched */
  uint64_t hi = crema_rng_u32(&r);
  return hi << 32 | crema_rng_u32(&r);
}

static void key_text(const void *key, size_t len, char *out, size_t size) {
  snprintf(out, size, "\"%.*s\"", (int)(len < size - 3 ? len : size - 3), (const char *)key);
}

/* Pixels or floats of one parsed record, transformed into out. Runs on any thread. */
static int transform_item(data_state *s, data_item *it, uint64_t record, float *out) {
  int c, h, w;
  const uint8_t *px;
  if (crema_datum_pixels(&it->view, s->mode, it->key, &it->scratch, &c, &h, &w, &px, &it->err)) return -1;
  const float *fl = NULL;
  if (!px) {
    const size_t n = it->view.n_float;
    if (n > it->floats_cap) {
      float *f = realloc(it->floats, n * sizeof *f);
      if (!f) return crema_fail(&it->err, "out of memory");
      it->floats = f;
      it->floats_cap = n;
    }
    crema_datum_copy_floats(&it->view, it->floats);
    fl = it->floats;
  }
  int oc, oh, ow;
  if (crema_transformer_shape(s->tf, c, h, w, &oc, &oh, &ow, &it->err))
    return crema_error_prefix(&it->err, "record %s", it->key);
  if (oc != s->oc || oh != s->oh || ow != s->ow)
    return crema_fail(
        &it->err,
        "record %s gives %d x %d x %d after the transform but the first record gives %d x %d x %d; "
        "convert with --resize_width/--resize_height or set crop_size",
        it->key, oc, oh, ow, s->oc, s->oh, s->ow);
  if (crema_transformer_apply(s->tf, px, fl, c, h, w, record, &it->work, out, &it->err))
    return crema_error_prefix(&it->err, "record %s", it->key);
  return 0;
}

/* `first` counts this shard's records; item i is global record shard_record(first + i). */
static int data_fill(void *ctx, uint64_t first, float *data, float *label, crema_error *err) {
  data_state *s = ctx;
  for (int i = 0; i < s->batch; i++) {
    data_item *it = &s->items[i];
    const void *k, *v;
    size_t kl, vl;
    /* Forward seeks move the cursor record by record from where it is: one step unsharded. */
    if (crema_db_seek(s->db, s->skip + crema_data_shard_record(s->shard, first + (uint64_t)i), err))
      return -1;
    crema_db_current(s->db, &k, &kl, &v, &vl);
    key_text(k, kl, it->key, sizeof it->key);
    if (crema_datum_parse(v, vl, it->key, &it->view, err))
      return crema_error_prefix(err, "%s", crema_db_path(s->db));
    label[i] = (float)it->view.label;
  }
  /* Small raw batches (MNIST-sized) transform faster than a thread team wakes up, and idle
   * team threads would only compete with the net's own threads. */
#pragma omp parallel for schedule(dynamic, 1) if (s->parallel)
  for (int i = 0; i < s->batch; i++)
    s->items[i].failed =
        transform_item(s, &s->items[i], crema_data_shard_record(s->shard, first + (uint64_t)i),
                       data + (size_t)i * s->item_count);
  for (int i = 0; i < s->batch; i++)
    if (s->items[i].failed) {
      *err = s->items[i].err;
      return crema_error_prefix(err, "%s", crema_db_path(s->db));
    }
  return 0;
}

static void data_free_state(crema_layer *l) {
  data_state *s = l->state;
  if (!s) return;
  crema_prefetcher_free(s->pf); /* joins the thread before its inputs go away */
  if (s->items)
    for (int i = 0; i < s->batch; i++) {
      crema_bytes_free(&s->items[i].scratch);
      crema_transform_work_free(&s->items[i].work);
      free(s->items[i].floats);
    }
  free(s->items);
  crema_transformer_free(s->tf);
  crema_db_close(s->db);
  free(s);
  l->state = NULL;
}

static int data_reshape(crema_layer *l, crema_blob *const *bottom, crema_blob *const *top, crema_error *err) {
  (void)bottom;
  data_state *s = l->state;
  if (crema_blob_reshape4(top[0], s->batch, s->oc, s->oh, s->ow, err)) return -1;
  if (l->n_top > 1) {
    const int shape[1] = {s->batch};
    if (crema_blob_reshape(top[1], 1, shape, err)) return -1;
  }
  return 0;
}

static int data_setup(crema_layer *l, crema_blob *const *bottom, crema_blob *const *top, crema_error *err) {
  (void)bottom;
  (void)top;
  const Crema__DataParameter *dp = l->param->data_param;
  if (!dp || !dp->source || !*dp->source)
    return crema_fail(err, "data_param.source (an LMDB data set) is required");
  if (dp->batch_size == 0) return crema_fail(err, "data_param.batch_size must be positive");
  if ((dp->mean_file && *dp->mean_file) || dp->has_crop_size || dp->has_mirror || dp->has_scale)
    CREMA_WARN("layer \"%s\": data_param.scale/mean_file/crop_size/mirror are legacy fields that are ignored "
               "here (as in Caffe); move them into transform_param",
               l->param->name ? l->param->name : "");
  data_state *s = calloc(1, sizeof *s);
  if (!s) return crema_fail(err, "out of memory");
  l->state = s;
  s->batch = (int)dp->batch_size;
  s->shard = l->phase == CREMA__PHASE__TRAIN ? crema_data_shard_get() : (crema_data_shard){0, 1};
  const uint64_t seed = layer_seed(l);
  if (crema_transformer_create(l->param->transform_param, l->phase, seed, &s->tf, err)) return -1;
  s->mode = crema_transformer_decode_mode(s->tf);
  /* backend as given, else detected from the files (Caffe's default, LEVELDB, would break
   * the many nets that omit it for an LMDB). */
  const crema_db_backend backend = !dp->has_backend                                    ? CREMA_DB_AUTO
                                   : dp->backend == CREMA__DATA_PARAMETER__DB__LEVELDB ? CREMA_DB_LEVELDB
                                                                                       : CREMA_DB_LMDB;
  if (crema_db_open(dp->source, backend, &s->db, err)) return -1;
  s->items = calloc((size_t)s->batch, sizeof *s->items);
  if (!s->items) return crema_fail(err, "out of memory");
  if (dp->rand_skip) {
    crema_rng r;
    crema_rng_seed(&r, seed, 0x5c1b);
    s->skip = crema_rng_below(&r, dp->rand_skip);
    CREMA_INFO("Skipping first %llu data points.", (unsigned long long)s->skip);
  }
  /* The first record fixes the output shape (every later one must match it). */
  data_item *it = &s->items[0];
  const void *k, *v;
  size_t kl, vl;
  crema_db_current(s->db, &k, &kl, &v, &vl);
  key_text(k, kl, it->key, sizeof it->key);
  int c, h, w;
  const uint8_t *px;
  if (crema_datum_parse(v, vl, it->key, &it->view, err) ||
      crema_datum_pixels(&it->view, s->mode, it->key, &it->scratch, &c, &h, &w, &px, err) ||
      crema_transformer_shape(s->tf, c, h, w, &s->oc, &s->oh, &s->ow, err))
    return crema_error_prefix(err, "%s", dp->source);
  s->item_count = (size_t)s->oc * s->oh * s->ow;
  s->parallel = it->view.encoded || s->item_count * (size_t)s->batch >= ((size_t)1 << 20);
  CREMA_INFO("output data size: %d,%d,%d,%d (%llu records in %s)", s->batch, s->oc, s->oh, s->ow,
             (unsigned long long)crema_db_count(s->db), dp->source);
  if (s->shard.count > 1)
    CREMA_INFO("Reading shard %u of %u: records %u, %u + %u, ...", s->shard.index, s->shard.count,
               s->shard.index, s->shard.index, s->shard.count);
  if (data_reshape(l, bottom, top, err)) return -1;
  const int slots = dp->has_prefetch ? (int)dp->prefetch : 4;
  return crema_prefetcher_create(slots < 1 ? 1 : slots, s->item_count * s->batch, (size_t)s->batch,
                                 (uint64_t)s->batch, data_fill, s, 0, &s->pf, err);
}

static int data_forward(crema_layer *l, crema_blob *const *bottom, crema_blob *const *top, crema_error *err) {
  (void)bottom;
  data_state *s = l->state;
  if (crema_prefetcher_next(s->pf, top[0]->data, l->n_top > 1 ? top[1]->data : NULL, err)) return -1;
  s->position += (uint64_t)s->batch;
  return 0;
}

/* Records of the whole data set consumed: every shard reads in step with the others. */
static uint64_t data_get_position(const crema_layer *l) {
  const data_state *s = l->state;
  return s->position * s->shard.count;
}

static int data_set_position(crema_layer *l, uint64_t position, crema_error *err) {
  data_state *s = l->state;
  if (position % s->shard.count)
    CREMA_WARN("data position %llu is not a multiple of %u processes: continuing at record %llu",
               (unsigned long long)position, s->shard.count,
               (unsigned long long)(position / s->shard.count * s->shard.count));
  s->position = position / s->shard.count;
  return crema_prefetcher_restart(s->pf, s->position, err);
}

const crema_layer_ops crema_data_ops = {
    .type = "Data",
    .min_bottoms = 0,
    .max_bottoms = 0,
    .min_tops = 1,
    .max_tops = 2,
    .setup = data_setup,
    .reshape = data_reshape,
    .forward = data_forward,
    .free_state = data_free_state,
    .get_position = data_get_position,
    .set_position = data_set_position,
    .refills_top = crema_layer_refills_every_top,
};
