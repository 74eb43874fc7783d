/* image_probe.h -- what an image file is, read from its bytes before any decoder sees them.
 *
 * stb_image trusts the headers it reads: a truncated BMP becomes an image of zeros, a 16-bit
 * PNM overruns a buffer, a header may declare billions of pixels. crema therefore checks every
 * file here first, by content (the file name's extension plays no part):
 *   - the format, from the magic bytes: JPEG, PNG, BMP, GIF or PNM; anything else is refused;
 *   - the declared width and height (both >= 1), and width * height against a pixel limit;
 *   - the bit depth and the variants the decoder supports (no arithmetic-coded or lossless
 *     JPEG, no RLE BMP, no 12-bit JPEG);
 *   - that the data the header announces is all there (PNG chunks up to IEND, JPEG segments
 *     up to the end-of-image marker, BMP pixel rows, GIF blocks of the first frame, PNM
 *     samples), so a truncated file is refused instead of decoded into padding.
 * Nothing is allocated; the probe reads at most len bytes of buf. */
#ifndef CREMA_DATA_IMAGE_PROBE_H
#define CREMA_DATA_IMAGE_PROBE_H

#include <stddef.h>
#include <stdint.h>

#include "base/error.h"

typedef enum {
  CREMA_IMAGE_FORMAT_JPEG = 1,
  CREMA_IMAGE_FORMAT_PNG,
  CREMA_IMAGE_FORMAT_BMP,
  CREMA_IMAGE_FORMAT_GIF,
  CREMA_IMAGE_FORMAT_PNM
} crema_image_format;

typedef struct crema_image_info {
  crema_image_format format;
  uint32_t width, height;
  int channels;       /* 1 for grey and grey+alpha files, 3 for colour (alpha is dropped) */
  int bits;           /* bits per sample: 1-16 */
  size_t data_offset; /* PNM: where the samples start */
  uint32_t maxval;    /* PNM: the header's maximum sample value */
  int pnm_kind;       /* PNM: 1-6 for P1-P6 */
} crema_image_info;

/* Default limit on width * height: 2^28 pixels (e.g. 16384 x 16384, 768 MB as 8-bit RGB).
 * OpenCV's imread allows 2^30. */
#define CREMA_IMAGE_DEFAULT_MAX_PIXELS (UINT64_C(1) << 28)

/* The process-wide pixel limit used by crema_image_probe (and so by every decode). Tools set it
 * from their --max_pixels flag before decoding; 0 restores the default. Not thread-safe to
 * change while other threads decode. */
void crema_image_set_max_pixels(uint64_t max_pixels);
uint64_t crema_image_max_pixels(void);

/* Short lower-case name of a format ("jpeg", "png", ...). */
const char *crema_image_format_name(crema_image_format f);

/* Checks buf[0, len) as described above and fills *info. On failure returns -1 with a message
 * "<what>: <reason>" (what names the file or record). */
int crema_image_probe(const uint8_t *buf, size_t len, const char *what, crema_image_info *info,
                      crema_error *err);

#endif
