/* ImageData: batches of image files named by a "<path> <label>" list (image_data_param),
 * decoded with stb_image, optionally resized, transformed by transform_param, prefetched
 * on a background thread.
 *
 *   tops: data (batch_size, C, H', W'), label (batch_size)
 *
 * Lines are read in order, or -- with shuffle -- in an order reshuffled at every epoch from
 * (layer seed, epoch), so the position alone determines every later batch (exact resume,
 * see data_layer.c). rand_skip skips a seeded number of lines at the start. In the TRAIN
 * phase the layer reads only its shard (data/shard.h): line g of that order goes to process
 * g mod count, with record indices and positions of the whole list, as in data_layer.c. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "base/log.h"
#include "data/datum.h"
#include "data/image.h"
#include "data/list_file.h"
#include "data/prefetch.h"
#include "data/shard.h"
#include "data/transformer.h"
#include "layers/layer.h"

typedef struct image_item {
  size_t line; /* index into the list */
  crema_bytes chw;
  crema_transform_work work;
  crema_error err;
  int failed;
} image_item;

typedef struct image_state {
  crema_image_list list;
  const char *root;
  bool shuffle, color;
  int new_h, new_w;
  uint32_t *perm; /* order of the current epoch (prefetch thread only) */
  int64_t perm_epoch;
  crema_transformer *tf;
  crema_prefetcher *pf;
  int batch, oc, oh, ow;
  size_t item_count;
  uint64_t seed, skip, position; /* position: this shard's records handed to the net */
  crema_data_shard shard;
  image_item *items;
} image_state;

static uint64_t layer_seed(const crema_layer *l) {
  crema_rng r = l->rng;
  uint64_t hi = crema_rng_u32(&r);
  return hi << 32 | crema_rng_u32(&r);
}

/* List line of record g (counted from the layer's start, skip included by the caller). */
static size_t line_of(image_state *s, uint64_t g) {
  const uint64_t n = s->list.count;
  const size_t idx = (size_t)(g % n);
  if (!s->shuffle) return idx;
  const int64_t epoch = (int64_t)(g / n);
  if (epoch != s->perm_epoch) {
    for (size_t i = 0; i < n; i++) s->perm[i] = (uint32_t)i;
    crema_shuffle_indices(s->perm, n, s->seed, (uint64_t)epoch + 1);
    s->perm_epoch = epoch;
  }
  return s->perm[idx];
}

/* Decodes (and resizes) line `line` into item->chw; *c, *h, *w get its shape. */
static int load_image(const image_state *s, image_item *it, size_t line, int *c, int *h, int *w) {
  char path[4096];
  snprintf(path, sizeof path, "%s%s", s->root, s->list.entries[line].path);
  crema_image img;
  if (crema_image_decode_file(path, s->color ? CREMA_IMAGE_COLOR : CREMA_IMAGE_GRAY, &img, &it->err))
    return -1;
  if (s->new_h > 0 && s->new_w > 0) {
    crema_image r;
    int rc = crema_image_resize(&img, s->new_w, s->new_h, &r, &it->err);
    crema_image_free(&img);
    if (rc) return crema_error_prefix(&it->err, "%s", path);
    img = r;
  }
  const size_t n = (size_t)img.channels * img.height * img.width;
  if (crema_bytes_reserve(&it->chw, n, &it->err)) {
    crema_image_free(&img);
    return -1;
  }
  crema_image_to_chw_bgr(&img, it->chw.data);
  *c = img.channels;
  *h = img.height;
  *w = img.width;
  crema_image_free(&img);
  return 0;
}

static int transform_item(const image_state *s, image_item *it, uint64_t record, float *out) {
  int c, h, w, oc, oh, ow;
  if (load_image(s, it, it->line, &c, &h, &w)) return -1;
  const char *file = s->list.entries[it->line].path;
  if (crema_transformer_shape(s->tf, c, h, w, &oc, &oh, &ow, &it->err))
    return crema_error_prefix(&it->err, "%s", file);
  if (oc != s->oc || oh != s->oh || ow != s->ow)
    return crema_fail(&it->err,
                      "%s gives %d x %d x %d after the transform but the first image gives %d x %d x %d; set "
                      "new_height/new_width or crop_size",
                      file, oc, oh, ow, s->oc, s->oh, s->ow);
  return crema_transformer_apply(s->tf, it->chw.data, NULL, c, h, w, record, &it->work, out, &it->err);
}

/* `first` counts this shard's records; item i is global record shard_record(first + i). */
static int image_fill(void *ctx, uint64_t first, float *data, float *label, crema_error *err) {
  image_state *s = ctx;
  for (int i = 0; i < s->batch; i++) {
    s->items[i].line = line_of(s, s->skip + crema_data_shard_record(s->shard, first + (uint64_t)i));
    label[i] = (float)s->list.entries[s->items[i].line].label;
  }
#pragma omp parallel for schedule(dynamic, 1)
  for (int i = 0; i < s->batch; i++)
    s->items[i].failed =
        transform_item(s, &s->items[i], crema_data_shard_record(s->shard, first + (uint64_t)i),
                       data + (size_t)i * s->item_count);
  for (int i = 0; i < s->batch; i++)
    if (s->items[i].failed) {
      *err = s->items[i].err;
      return -1;
    }
  return 0;
}

static void image_free_state(crema_layer *l) {
  image_state *s = l->state;
  if (!s) return;
  crema_prefetcher_free(s->pf);
  if (s->items)
    for (int i = 0; i < s->batch; i++) {
      crema_bytes_free(&s->items[i].chw);
      crema_transform_work_free(&s->items[i].work);
    }
  free(s->items);
  free(s->perm);
  crema_transformer_free(s->tf);
  crema_image_list_free(&s->list);
  free(s);
  l->state = NULL;
}

static int image_reshape(crema_layer *l, crema_blob *const *bottom, crema_blob *const *top,
                         crema_error *err) {
  (void)bottom;
  const image_state *s = l->state;
  const int shape[1] = {s->batch};
  if (crema_blob_reshape4(top[0], s->batch, s->oc, s->oh, s->ow, err)) return -1;
  return crema_blob_reshape(top[1], 1, shape, err);
}

static int image_setup(crema_layer *l, crema_blob *const *bottom, crema_blob *const *top, crema_error *err) {
  const Crema__ImageDataParameter *p = l->param->image_data_param;
  if (!p || !p->source || !*p->source)
    return crema_fail(err, "image_data_param.source (a list file) is required");
  if (p->batch_size == 0) return crema_fail(err, "image_data_param.batch_size must be positive");
  if ((p->new_height > 0) != (p->new_width > 0))
    return crema_fail(err, "image_data_param: set both new_height and new_width, or neither");
  image_state *s = calloc(1, sizeof *s);
  if (!s) return crema_fail(err, "out of memory");
  l->state = s;
  s->batch = (int)p->batch_size;
  s->shard = l->phase == CREMA__PHASE__TRAIN ? crema_data_shard_get() : (crema_data_shard){0, 1};
  s->root = p->root_folder ? p->root_folder : "";
  s->shuffle = p->shuffle;
  s->color = p->has_is_color ? p->is_color : true;
  s->new_h = (int)p->new_height;
  s->new_w = (int)p->new_width;
  s->perm_epoch = -1;
  s->seed = layer_seed(l);
  if (crema_transformer_create(l->param->transform_param, l->phase, s->seed, &s->tf, err)) return -1;
  if (crema_image_list_read(p->source, &s->list, err)) return -1;
  s->items = calloc((size_t)s->batch, sizeof *s->items);
  s->perm = s->shuffle ? malloc(sizeof *s->perm * s->list.count) : NULL;
  if (!s->items || (s->shuffle && !s->perm)) return crema_fail(err, "out of memory");
  if (p->rand_skip) {
    crema_rng r;
    crema_rng_seed(&r, s->seed, 0x5c1b);
    s->skip = crema_rng_below(&r, p->rand_skip);
    CREMA_INFO("Skipping first %llu data points.", (unsigned long long)s->skip);
  }
  /* The first image fixes the output shape. */
  image_item *it = &s->items[0];
  int c, h, w;
  it->line = line_of(s, s->skip + s->shard.index);
  if (load_image(s, it, it->line, &c, &h, &w)) {
    *err = it->err;
    return crema_error_prefix(err, "%s", p->source);
  }
  if (crema_transformer_shape(s->tf, c, h, w, &s->oc, &s->oh, &s->ow, err))
    return crema_error_prefix(err, "%s", s->list.entries[it->line].path);
  s->item_count = (size_t)s->oc * s->oh * s->ow;
  CREMA_INFO("output data size: %d,%d,%d,%d (%zu images in %s)", s->batch, s->oc, s->oh, s->ow, s->list.count,
             p->source);
  if (image_reshape(l, bottom, top, err)) return -1;
  return crema_prefetcher_create(4, s->item_count * s->batch, (size_t)s->batch, (uint64_t)s->batch,
                                 image_fill, s, 0, &s->pf, err);
}

static int image_forward(crema_layer *l, crema_blob *const *bottom, crema_blob *const *top,
                         crema_error *err) {
  (void)bottom;
  image_state *s = l->state;
  if (crema_prefetcher_next(s->pf, top[0]->data, top[1]->data, err)) return -1;
  s->position += (uint64_t)s->batch;
  return 0;
}

/* Records of the whole list consumed: every shard reads in step with the others. */
static uint64_t image_get_position(const crema_layer *l) {
  const image_state *s = l->state;
  return s->position * s->shard.count;
}

static int image_set_position(crema_layer *l, uint64_t position, crema_error *err) {
  image_state *s = l->state;
  if (position % s->shard.count)
    CREMA_WARN("data position %llu is not a multiple of %u processes: continuing at record %llu",
               (unsigned long long)position, s->shard.count,
               (unsigned long long)(position / s->shard.count * s->shard.count));
  s->position = position / s->shard.count;
  return crema_prefetcher_restart(s->pf, s->position, err);
}

const crema_layer_ops crema_image_data_ops = {
    .type = "ImageData",
    .min_bottoms = 0,
    .max_bottoms = 0,
    .min_tops = 2,
    .max_tops = 2,
    .setup = image_setup,
    .reshape = image_reshape,
    .forward = image_forward,
    .free_state = image_free_state,
    .get_position = image_get_position,
    .set_position = image_set_position,
    .refills_top = crema_layer_refills_every_top,
};
