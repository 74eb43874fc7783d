/* raster.h -- pixels for the canvas's raster back end: anti-aliased thick lines, filled
 * rectangles with fractional edges, and text from stb_easy_font. All functions clip to the
 * image; none allocates except crema_raster_png. rgb is width*height*3 bytes, row-major. */
#ifndef CREMA_REPORT_RASTER_H
#define CREMA_REPORT_RASTER_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "base/error.h"

void crema_raster_line(unsigned char *rgb, int w, int h, double x0, double y0, double x1, double y1,
                       uint32_t color, double width, bool dashed);
/* Fills [x, x+rw) x [y, y+rh) blending `color` with opacity alpha; partial pixels at the
 * edges get partial coverage. */
void crema_raster_fill(unsigned char *rgb, int w, int h, double x, double y, double rw, double rh,
                       uint32_t color, double alpha);
/* Baseline-left origin at (x, y); vertical text reads bottom to top with its start at (x, y). */
void crema_raster_text(unsigned char *rgb, int w, int h, double x, double y, const char *text, double size,
                       uint32_t color, bool vertical);
double crema_raster_text_width(const char *text, double size);
/* PNG bytes of the image (malloc'd; the caller frees). */
int crema_raster_png(const unsigned char *rgb, int w, int h, unsigned char **png, size_t *n,
                     crema_error *err);

#endif
