/* transformer.h -- Caffe's DataTransformer (transform_param) plus crema's augmentation.
 *
 * For each image (channels-first, BGR, bytes or floats) of size C x H x W:
 *   out[c][y][x] = (in[c][y + h_off][x' + w_off] - mean) * scale
 * where mean is the mean file's value at the same full-size position (the mean file is
 * indexed before the crop, as Caffe does) or mean_value[c] (one value, or one per channel),
 * (h_off, w_off) is a random crop offset in TRAIN and the centre crop in TEST (when
 * crop_size > 0), and x' = crop_size - 1 - x when the image is mirrored (a coin flip per
 * image, TRAIN only). force_color / force_gray choose how encoded datums are decoded.
 *
 * A mean file larger than the images is centre-cropped to their size (Caffe refuses it);
 * one smaller than the images is an error.
 *
 * crema's augmentation (transform_param.augment, TRAIN only): colour jitter (brightness,
 * contrast, saturation factors in [1 - x, 1 + x]) on the raw pixels, then mean
 * subtraction, then a random rotation (bilinear, zero fill), then a random-resized crop
 * (area fraction and aspect ratio ranges, resized to the output size) instead of the plain
 * crop, then the mirror and the scale.
 *
 * Every random choice for an image comes from a crema_rng seeded with (seed, record):
 * the same record index always gets the same crop, flip and augmentation, which makes a
 * data layer's output a pure function of its position (exact resume). */
#ifndef CREMA_DATA_TRANSFORMER_H
#define CREMA_DATA_TRANSFORMER_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "base/error.h"
#include "data/image.h"
#include "data/mean.h"
#include "proto/crema.pb-c.h"

typedef struct crema_transformer crema_transformer;

/* Reads the parameters (p may be NULL: identity) and loads the mean file. The caller frees
 * with crema_transformer_free. */
int crema_transformer_create(const Crema__TransformationParameter *p, Crema__Phase phase, uint64_t seed,
                             crema_transformer **out, crema_error *err);
void crema_transformer_free(crema_transformer *t);

/* How to decode encoded images (force_color / force_gray, else their own grey/colour). */
crema_image_mode crema_transformer_decode_mode(const crema_transformer *t);

/* Output shape for a C x H x W input; fails when the crop does not fit, the mean file does
 * not fit, or mean_value has the wrong count. */
int crema_transformer_shape(const crema_transformer *t, int c, int h, int w, int *oc, int *oh, int *ow,
                            crema_error *err);

/* Scratch space for one image at a time (one per thread); grow-only. */
typedef struct crema_transform_work {
  float *a, *b;
  size_t cap;
} crema_transform_work;
void crema_transform_work_free(crema_transform_work *w);

/* Transforms one image into out (oc * oh * ow floats, from crema_transformer_shape).
 * Exactly one of pixels (bytes) and floats is non-NULL. `record` selects the random draws.
 * Thread-safe for distinct `work` and `out`. Allocates only when `work` must grow. */
int crema_transformer_apply(const crema_transformer *t, const uint8_t *pixels, const float *floats, int c,
                            int h, int w, uint64_t record, crema_transform_work *work, float *out,
                            crema_error *err);

#endif
