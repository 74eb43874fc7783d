/* preprocess.h -- the stored preprocessing of a deployed model (preprocess.prototxt).
 *
 * A preprocess file is a text-format Caffe TransformationParameter: scale, crop_size,
 * mean_file, mean_value, force_color, force_gray (mirror and augment are training-only and
 * ignored here), plus crema's deployment fields resize_height / resize_width (the size the
 * images were resized to before cropping) and channel_order (BGR, Caffe's, or RGB).
 * A relative mean_file is read from the preprocess file's own folder, so a run folder can be
 * moved or copied as a whole.
 *
 * Applying it to an image gives the net's CHW float input exactly as the TEST-phase Data
 * layer produced it during training:
 *   1. channels: force_gray -> 1, force_color -> 3, else the image's own (grey stays grey);
 *   2. resize to resize_width x resize_height (OpenCV's INTER_LINEAR rule, as
 *      convert_imageset) when both are > 0;
 *   3. channels-first planes in channel_order (BGR unless told RGB);
 *   4. (pixel - mean) * scale, the mean file indexed at full (resized) size, as Caffe;
 *   5. the centre crop_size x crop_size crop (when crop_size > 0).
 * The oversample variant is Caffe's classifier.py 10-crop: the four corner crops and the
 * centre crop, then the same five mirrored left-right, in that order.
 *
 * A crema_preprocess is read-only after creation: every apply function may run on several
 * threads at once. Outputs are written into the caller's buffer, whose size (in floats) is
 * checked. */
#ifndef CREMA_DATA_PREPROCESS_H
#define CREMA_DATA_PREPROCESS_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "base/error.h"
#include "data/image.h"
#include "proto/crema.pb-c.h"

typedef struct crema_preprocess crema_preprocess;

/* Channel order (and count) of an 8-bit interleaved pixel buffer handed to
 * crema_preprocess_pixels. Alpha channels are ignored. */
typedef enum {
  CREMA_PIXELS_GRAY = 0,
  CREMA_PIXELS_RGB,
  CREMA_PIXELS_BGR,
  CREMA_PIXELS_RGBA,
  CREMA_PIXELS_BGRA,
} crema_pixel_order;

/* Number of 10-crop outputs of the oversample variant. */
#define CREMA_OVERSAMPLE_CROPS 10

/* Reads a preprocess.prototxt. Parse errors name file:line:col; a missing or unreadable mean
 * file, or inconsistent fields, are errors naming the file. The caller frees *out with
 * crema_preprocess_free. */
int crema_preprocess_load(const char *path, crema_preprocess **out, crema_error *err);

/* Creates one from a message (copied; p may be NULL for "as is"). base_dir (may be NULL)
 * is the folder a relative mean_file is read from. */
int crema_preprocess_create(const Crema__TransformationParameter *p, const char *base_dir,
                            crema_preprocess **out, crema_error *err);
void crema_preprocess_free(crema_preprocess *pp);

/* The parameters in use (mean_file resolved against base_dir). Owned by pp. */
const Crema__TransformationParameter *crema_preprocess_param(const crema_preprocess *pp);

/* Writes p as a text-format preprocess file, atomically (temp file + rename). */
int crema_preprocess_write(const char *path, const Crema__TransformationParameter *p, crema_error *err);

/* Output shape (per crop) for an image of img_channels x img_h x img_w pixels. Fails when
 * the crop does not fit the (resized) image, or the mean does not fit. */
int crema_preprocess_shape(const crema_preprocess *pp, int img_channels, int img_h, int img_w, int *c, int *h,
                           int *w, crema_error *err);

/* How files are decoded: CREMA_IMAGE_GRAY with force_gray, COLOR with force_color, else
 * NATIVE. */
crema_image_mode crema_preprocess_decode_mode(const crema_preprocess *pp);

/* Applies to a decoded image (interleaved RGB or grey, as crema_image holds). out receives
 * c*h*w floats (10 times that with oversample: crop i at out + i*c*h*w); out_floats is its
 * capacity. Allocates scratch memory per call. */
int crema_preprocess_image(const crema_preprocess *pp, const crema_image *img, bool oversample, float *out,
                           size_t out_floats, crema_error *err);

/* Applies to an 8-bit interleaved buffer of width x height pixels in the given order;
 * stride is the bytes between rows (0 = tightly packed). */
int crema_preprocess_pixels(const crema_preprocess *pp, const uint8_t *pixels, int width, int height,
                            size_t stride, crema_pixel_order order, bool oversample, float *out,
                            size_t out_floats, crema_error *err);

/* Decodes an image file (JPEG, PNG, ...) and applies. Errors name the file. */
int crema_preprocess_file(const crema_preprocess *pp, const char *path, bool oversample, float *out,
                          size_t out_floats, crema_error *err);

#endif
