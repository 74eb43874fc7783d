/* canvas.h -- a tiny 2-D drawing surface with two back ends: SVG text and an RGB raster
 * (saved as PNG through stb_image_write). Plots, heat maps and the report draw once through
 * this interface and get both outputs with the same layout.
 *
 * Coordinates are pixels, origin top left, y down. Colours are 0xRRGGBB. The raster back end
 * anti-aliases lines and rectangle edges itself and draws text with stb_easy_font (a public
 * domain bitmap font built of quads), so PNGs need no font files. Drawing never fails: an
 * allocation failure inside the SVG buffer is reported by crema_canvas_save / _png.
 * The canvas owns its buffers; free with crema_canvas_free. */
#ifndef CREMA_REPORT_CANVAS_H
#define CREMA_REPORT_CANVAS_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "base/error.h"
#include "report/strbuf.h"

typedef enum { CREMA_CANVAS_SVG, CREMA_CANVAS_RASTER } crema_canvas_kind;
typedef enum { CREMA_ANCHOR_START, CREMA_ANCHOR_MIDDLE, CREMA_ANCHOR_END } crema_anchor;

#define CREMA_NO_COLOR UINT32_MAX

typedef struct crema_canvas {
  crema_canvas_kind kind;
  int width, height;
  crema_strbuf svg;   /* SVG: the document so far (closed by crema_canvas_finish) */
  unsigned char *rgb; /* raster: width*height*3 */
  bool finished;
} crema_canvas;

/* A white canvas. Fails only when the raster cannot be allocated or the size is absurd. */
int crema_canvas_init(crema_canvas *c, crema_canvas_kind kind, int width, int height, crema_error *err);
void crema_canvas_free(crema_canvas *c);

void crema_canvas_line(crema_canvas *c, double x0, double y0, double x1, double y1, uint32_t color,
                       double width, bool dashed);
/* n points (x0,y0,x1,y1,...); NAN coordinates break the line into pieces. */
void crema_canvas_polyline(crema_canvas *c, const double *xy, int n, uint32_t color, double width,
                           bool dashed);
/* fill and/or stroke (CREMA_NO_COLOR for none). */
void crema_canvas_rect(crema_canvas *c, double x, double y, double w, double h, uint32_t fill,
                       uint32_t stroke);
void crema_canvas_circle(crema_canvas *c, double x, double y, double r, uint32_t fill);
/* Text with its baseline at y; `size` in pixels; vertical = rotated 90 degrees
 * counter-clockwise (for y-axis labels). Non-ASCII bytes are drawn as '?' in rasters. */
void crema_canvas_text(crema_canvas *c, double x, double y, const char *text, double size,
                       crema_anchor anchor, uint32_t color, bool vertical);
/* Approximate width of text at `size` (both back ends use the same estimate for layout). */
double crema_canvas_text_width(const char *text, double size);

/* SVG: closes the document and returns it (owned by the canvas). NULL for rasters. */
const char *crema_canvas_svg_text(crema_canvas *c);
/* Raster: encodes a PNG into *png (caller frees with free()). */
int crema_canvas_png(const crema_canvas *c, unsigned char **png, size_t *n, crema_error *err);
/* Writes the canvas to path (.svg for SVG canvases, PNG for rasters), atomically. */
int crema_canvas_save(crema_canvas *c, const char *path, crema_error *err);

#endif
