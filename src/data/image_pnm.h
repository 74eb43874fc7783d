/* image_pnm.h -- crema's own decoder of Netpbm files (P1-P6), with OpenCV's imread results.
 *
 * stb_image reads only P5/P6 and does not check that the samples are all there (a 16-bit file
 * also overruns its buffer when converted), so crema decodes PNM itself. Like OpenCV:
 *   - binary samples (P5, P6) are used as stored; 16-bit ones keep their high byte;
 *   - plain (ASCII) samples are clamped to the maximum value, then scaled to 0-255
 *     (v * 255 / max, rounded down) when the maximum is below 255, or keep their high byte
 *     when it is above;
 *   - bitmaps (P1, P4) give 0 for a set bit (black) and 255 otherwise. */
#ifndef CREMA_DATA_IMAGE_PNM_H
#define CREMA_DATA_IMAGE_PNM_H

#include <stddef.h>
#include <stdint.h>

#include "base/error.h"
#include "data/image_probe.h"

/* Decodes the file described by info (from crema_image_probe) to info->channels interleaved
 * 8-bit samples per pixel; *out is malloc'd, freed by the caller. */
int crema_pnm_decode(const uint8_t *buf, size_t len, const crema_image_info *info, const char *what,
                     uint8_t **out, crema_error *err);

#endif
