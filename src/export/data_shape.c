/* data_shape.c -- the shape a data layer feeds the net, for the Input layer of a deploy net:
 * (batch, channels, height, width) with Caffe's crop applied. Data layers read their first
 * LMDB record, ImageData layers their first image, when the prototxt alone does not say. */
#include "export/data_shape.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "data/datum.h"
#include "data/image.h"
#include "data/list_file.h"
#include "data/lmdb_db.h"

static crema_image_mode mode_of(const Crema__TransformationParameter *t) {
  if (t && t->force_gray) return CREMA_IMAGE_GRAY;
  if (t && t->force_color) return CREMA_IMAGE_COLOR;
  return CREMA_IMAGE_NATIVE;
}

/* Channels and size of the first record of an LMDB data set. */
static int lmdb_first_shape(const Crema__LayerParameter *lp, int *c, int *h, int *w, crema_error *err) {
  const char *src = lp->data_param ? lp->data_param->source : NULL;
  if (!src || !*src)
    return crema_fail(err, "data layer \"%s\" has no data_param.source to read its image size from",
                      lp->name);
  crema_lmdb *db = NULL;
  if (crema_lmdb_open(src, &db, err))
    return crema_error_prefix(err,
                              "data layer \"%s\": its image size comes from its first record, but the data "
                              "set cannot be read (run from the folder its source path is relative to, or "
                              "export a deploy prototxt)",
                              lp->name);
  const void *key, *val;
  size_t klen, vlen;
  crema_lmdb_current(db, &key, &klen, &val, &vlen);
  crema_datum_view v;
  crema_bytes scratch = {0};
  const uint8_t *px;
  int rc = crema_datum_parse(val, vlen, "first record", &v, err);
  if (!rc && (v.data || v.encoded))
    rc = crema_datum_pixels(&v, mode_of(lp->transform_param), "first record", &scratch, c, h, w, &px, err);
  else if (!rc) {
    *c = v.channels;
    *h = v.height;
    *w = v.width;
  }
  crema_bytes_free(&scratch);
  crema_lmdb_close(db);
  return rc ? crema_error_prefix(err, "data layer \"%s\" (%s)", lp->name, src) : 0;
}

/* Size of the first image of an ImageData list (resized when new_height/new_width say). */
static int image_first_shape(const Crema__LayerParameter *lp, int *h, int *w, crema_error *err) {
  const Crema__ImageDataParameter *p = lp->image_data_param;
  if (p && p->new_height > 0 && p->new_width > 0) {
    *h = (int)p->new_height;
    *w = (int)p->new_width;
    return 0;
  }
  if (!p || !p->source)
    return crema_fail(err, "ImageData layer \"%s\" has no image_data_param.source", lp->name);
  crema_image_list list;
  if (crema_image_list_read(p->source, &list, err))
    return crema_error_prefix(err, "ImageData layer \"%s\": its image size comes from its first image",
                              lp->name);
  char path[4096];
  snprintf(path, sizeof path, "%s%s", p->root_folder ? p->root_folder : "", list.entries[0].path);
  crema_image img;
  int rc = crema_image_decode_file(path, CREMA_IMAGE_NATIVE, &img, err);
  crema_image_list_free(&list);
  if (rc) return crema_error_prefix(err, "ImageData layer \"%s\"", lp->name);
  *h = img.height;
  *w = img.width;
  crema_image_free(&img);
  return 0;
}

int crema_data_layer_shape(const Crema__LayerParameter *lp, int batch, int shape[4], crema_error *err) {
  const char *type = lp->type ? lp->type : "";
  const Crema__TransformationParameter *t = lp->transform_param;
  int c = 0, h = 0, w = 0, n = batch > 0 ? batch : 1;
  if (!strcmp(type, "Data")) {
    /* the prototxt often says enough: crop size, and channels from force_* or mean_value */
    if (t && t->n_mean_value > 1) c = (int)t->n_mean_value;
    if (t && (t->force_gray || t->force_color)) c = t->force_gray ? 1 : 3;
    bool known = c > 0 && t && t->crop_size > 0;
    if (!known && lmdb_first_shape(lp, &c, &h, &w, err)) return -1;
  } else if (!strcmp(type, "ImageData")) {
    const Crema__ImageDataParameter *p = lp->image_data_param;
    c = (p && p->has_is_color && !p->is_color) ? 1 : 3;
    if (!(t && t->crop_size > 0) && image_first_shape(lp, &h, &w, err)) return -1;
  } else if (!strcmp(type, "MemoryData")) {
    const Crema__MemoryDataParameter *p = lp->memory_data_param;
    if (!p) return crema_fail(err, "MemoryData layer \"%s\" has no memory_data_param", lp->name);
    c = (int)p->channels;
    h = (int)p->height;
    w = (int)p->width;
  } else if (!strcmp(type, "DummyData")) {
    const Crema__DummyDataParameter *p = lp->dummy_data_param;
    if (p && p->n_shape > 0 && p->shape[0]->n_dim == 4) {
      c = (int)p->shape[0]->dim[1];
      h = (int)p->shape[0]->dim[2];
      w = (int)p->shape[0]->dim[3];
    } else if (p && p->n_channels > 0 && p->n_height > 0 && p->n_width > 0) {
      c = (int)p->channels[0];
      h = (int)p->height[0];
      w = (int)p->width[0];
    } else {
      return crema_fail(err, "DummyData layer \"%s\": only a 4-d first top can become the deploy input",
                        lp->name);
    }
  } else {
    return crema_fail(err,
                      "layer \"%s\" of type %s cannot become the deploy net's input; crema exports "
                      "nets fed by Data, ImageData, MemoryData, DummyData or Input layers",
                      lp->name, type);
  }
  if (t && t->force_gray) c = 1;
  if (t && t->force_color) c = 3;
  if (t && t->crop_size > 0) h = w = (int)t->crop_size;
  if (c <= 0 || h <= 0 || w <= 0)
    return crema_fail(err,
                      "data layer \"%s\": cannot tell its input shape (channels %d, height %d, width %d)",
                      lp->name, c, h, w);
  shape[0] = n;
  shape[1] = c;
  shape[2] = h;
  shape[3] = w;
  return 0;
}
