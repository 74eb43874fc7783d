/* image.h -- 8-bit images: decode (stb_image), bilinear resize, encode (stb_image_write),
 * and the conversion to Caffe's channels-first BGR layout.
 *
 * A crema_image holds interleaved pixels (row-major, channels last) in stb's RGB order;
 * Caffe (through OpenCV) stores BGR, so crema_image_to_chw_bgr swaps the order when it
 * lays the pixels out channels-first. channels is 1 (grey) or 3 (colour): alpha is dropped.
 * One owner: whoever filled the struct calls crema_image_free. */
#ifndef CREMA_DATA_IMAGE_H
#define CREMA_DATA_IMAGE_H

#include <stddef.h>
#include <stdint.h>

#include "base/error.h"

typedef struct crema_image {
  int width, height, channels;
  uint8_t *data; /* height * width * channels bytes, malloc'd */
} crema_image;

/* Channel requests for decoding. NATIVE gives 1 for grey (and grey+alpha) files, 3 for
 * colour ones, like OpenCV's IMREAD_ANYCOLOR; GRAY and COLOR convert like IMREAD_GRAYSCALE
 * and IMREAD_COLOR. */
typedef enum { CREMA_IMAGE_NATIVE = 0, CREMA_IMAGE_GRAY = 1, CREMA_IMAGE_COLOR = 3 } crema_image_mode;

/* Reads a whole file into a malloc'd buffer (*out, freed by the caller). Fails naming the
 * file and the system's reason. */
int crema_read_file_bytes(const char *path, uint8_t **out, size_t *len, crema_error *err);

/* Decodes JPEG (baseline, progressive), PNG (1-16 bits), BMP, GIF (first frame) and PNM
 * (P1-P6) from memory, recognised by content, with the pixels OpenCV's imread gives: 16-bit
 * samples keep their high byte, alpha is dropped, grey+alpha is grey. Every file is checked by
 * crema_image_probe first (format, size, pixel limit, truncation), so a broken file is refused
 * with the reason rather than decoded into padding. `what` names the source in error messages
 * (a file name or a record key). On failure *out is untouched. */
int crema_image_decode(const uint8_t *buf, size_t len, crema_image_mode mode, const char *what,
                       crema_image *out, crema_error *err);
int crema_image_decode_file(const char *path, crema_image_mode mode, crema_image *out, crema_error *err);
/* Number of channels a file would decode to in NATIVE mode (1 or 3), or -1 when the bytes
 * are not an image crema reads (see crema_image_probe). */
int crema_image_native_channels(const uint8_t *buf, size_t len);
void crema_image_free(crema_image *img);

/* Resizes to width x height with the same bilinear rule as OpenCV's INTER_LINEAR (pixel
 * centres aligned, edge pixels replicated, no smoothing when shrinking) -- the rule Caffe's
 * ReadImageToCVMat uses -- so results agree with Caffe's to within rounding (+-1).
 * dst is allocated here (free with crema_image_free). */
int crema_image_resize(const crema_image *src, int width, int height, crema_image *dst, crema_error *err);
/* The same rule on float channels-first planes (c, sh, sw) -> (c, dh, dw), no allocation. */
void crema_resize_planes_f32(const float *src, int channels, int sh, int sw, float *dst, int dh, int dw);

/* Encodes as "png" or "jpg"/"jpeg" (quality 95, OpenCV's default). *out is malloc'd. */
int crema_image_encode(const crema_image *img, const char *type, uint8_t **out, size_t *len,
                       crema_error *err);

/* Lays the pixels out channels-first, BGR for colour: out[(c * height + y) * width + x].
 * out holds channels * height * width bytes. */
void crema_image_to_chw_bgr(const crema_image *img, uint8_t *out);
/* The inverse: Caffe's CHW BGR bytes back to an interleaved RGB image (allocates img->data). */
int crema_image_from_chw_bgr(const uint8_t *chw, int channels, int height, int width, crema_image *img,
                             crema_error *err);

#endif
