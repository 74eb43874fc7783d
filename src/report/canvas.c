/* canvas.c -- the canvas front end and its SVG back end (raster.c draws pixels). */
#include "report/canvas.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "proto/io.h"
#include "report/raster.h"

int crema_canvas_init(crema_canvas *c, crema_canvas_kind kind, int width, int height, crema_error *err) {
  memset(c, 0, sizeof *c);
  if (width <= 0 || height <= 0 || width > 16384 || height > 16384)
    return crema_fail(err, "canvas size %dx%d is out of range (1..16384)", width, height);
  c->kind = kind;
  c->width = width;
  c->height = height;
  if (kind == CREMA_CANVAS_RASTER) {
    c->rgb = malloc((size_t)width * (size_t)height * 3);
    if (!c->rgb) return crema_fail(err, "out of memory for a %dx%d image", width, height);
    memset(c->rgb, 255, (size_t)width * (size_t)height * 3);
  } else {
    crema_strbuf_printf(
        &c->svg,
        "<svg xmlns=\"http://www.w3.org/2000/svg\" width=\"%d\" height=\"%d\" viewBox=\"0 0 %d %d\" "
        "font-family=\"DejaVu Sans, Helvetica, Arial, sans-serif\">\n"
        "<rect width=\"%d\" height=\"%d\" fill=\"#ffffff\"/>\n",
        width, height, width, height, width, height);
  }
  return 0;
}

void crema_canvas_free(crema_canvas *c) {
  crema_strbuf_free(&c->svg);
  free(c->rgb);
  c->rgb = NULL;
}

static void svg_dash(crema_canvas *c, bool dashed) {
  if (dashed) crema_strbuf_printf(&c->svg, " stroke-dasharray=\"5,4\"");
}

void crema_canvas_line(crema_canvas *c, double x0, double y0, double x1, double y1, uint32_t color,
                       double width, bool dashed) {
  if (c->kind == CREMA_CANVAS_RASTER) {
    crema_raster_line(c->rgb, c->width, c->height, x0, y0, x1, y1, color, width, dashed);
    return;
  }
  crema_strbuf_printf(
      &c->svg, "<line x1=\"%.1f\" y1=\"%.1f\" x2=\"%.1f\" y2=\"%.1f\" stroke=\"#%06x\" stroke-width=\"%g\"",
      x0, y0, x1, y1, (unsigned)color, width);
  svg_dash(c, dashed);
  crema_strbuf_printf(&c->svg, "/>\n");
}

void crema_canvas_polyline(crema_canvas *c, const double *xy, int n, uint32_t color, double width,
                           bool dashed) {
  int i = 0;
  while (i < n) {
    while (i < n && (isnan(xy[2 * i]) || isnan(xy[2 * i + 1]))) i++;
    int start = i;
    while (i < n && !isnan(xy[2 * i]) && !isnan(xy[2 * i + 1])) i++;
    if (i - start == 1) {
      crema_canvas_circle(c, xy[2 * start], xy[2 * start + 1], width + 1, color);
      continue;
    }
    if (i - start < 2) continue;
    if (c->kind == CREMA_CANVAS_RASTER) {
      for (int k = start + 1; k < i; k++)
        crema_raster_line(c->rgb, c->width, c->height, xy[2 * k - 2], xy[2 * k - 1], xy[2 * k], xy[2 * k + 1],
                          color, width, dashed);
      continue;
    }
    crema_strbuf_printf(
        &c->svg, "<polyline fill=\"none\" stroke=\"#%06x\" stroke-width=\"%g\" stroke-linejoin=\"round\"",
        (unsigned)color, width);
    svg_dash(c, dashed);
    crema_strbuf_printf(&c->svg, " points=\"");
    for (int k = start; k < i; k++)
      crema_strbuf_printf(&c->svg, "%s%.1f,%.1f", k > start ? " " : "", xy[2 * k], xy[2 * k + 1]);
    crema_strbuf_printf(&c->svg, "\"/>\n");
  }
}

void crema_canvas_rect(crema_canvas *c, double x, double y, double w, double h, uint32_t fill,
                       uint32_t stroke) {
  if (c->kind == CREMA_CANVAS_RASTER) {
    if (fill != CREMA_NO_COLOR) crema_raster_fill(c->rgb, c->width, c->height, x, y, w, h, fill, 1.0);
    if (stroke != CREMA_NO_COLOR) {
      crema_raster_line(c->rgb, c->width, c->height, x, y, x + w, y, stroke, 1, false);
      crema_raster_line(c->rgb, c->width, c->height, x + w, y, x + w, y + h, stroke, 1, false);
      crema_raster_line(c->rgb, c->width, c->height, x + w, y + h, x, y + h, stroke, 1, false);
      crema_raster_line(c->rgb, c->width, c->height, x, y + h, x, y, stroke, 1, false);
    }
    return;
  }
  crema_strbuf_printf(&c->svg, "<rect x=\"%.1f\" y=\"%.1f\" width=\"%.1f\" height=\"%.1f\"", x, y, w, h);
  if (fill != CREMA_NO_COLOR)
    crema_strbuf_printf(&c->svg, " fill=\"#%06x\"", (unsigned)fill);
  else
    crema_strbuf_printf(&c->svg, " fill=\"none\"");
  if (stroke != CREMA_NO_COLOR) crema_strbuf_printf(&c->svg, " stroke=\"#%06x\"", (unsigned)stroke);
  crema_strbuf_printf(&c->svg, "/>\n");
}

void crema_canvas_circle(crema_canvas *c, double x, double y, double r, uint32_t fill) {
  if (c->kind == CREMA_CANVAS_RASTER) {
    crema_raster_line(c->rgb, c->width, c->height, x, y, x, y, fill, 2 * r, false);
    return;
  }
  crema_strbuf_printf(&c->svg, "<circle cx=\"%.1f\" cy=\"%.1f\" r=\"%.1f\" fill=\"#%06x\"/>\n", x, y, r,
                      (unsigned)fill);
}

double crema_canvas_text_width(const char *text, double size) { return crema_raster_text_width(text, size); }

void crema_canvas_text(crema_canvas *c, double x, double y, const char *text, double size,
                       crema_anchor anchor, uint32_t color, bool vertical) {
  if (c->kind == CREMA_CANVAS_RASTER) {
    double w = crema_raster_text_width(text, size);
    double shift = anchor == CREMA_ANCHOR_MIDDLE ? w / 2 : anchor == CREMA_ANCHOR_END ? w : 0;
    if (vertical)
      crema_raster_text(c->rgb, c->width, c->height, x, y + shift, text, size, color, true);
    else
      crema_raster_text(c->rgb, c->width, c->height, x - shift, y, text, size, color, false);
    return;
  }
  static const char *const ANCHORS[] = {"start", "middle", "end"};
  crema_strbuf_printf(&c->svg,
                      "<text x=\"%.1f\" y=\"%.1f\" font-size=\"%g\" fill=\"#%06x\" text-anchor=\"%s\"", x, y,
                      size, (unsigned)color, ANCHORS[anchor]);
  if (vertical) crema_strbuf_printf(&c->svg, " transform=\"rotate(-90 %.1f %.1f)\"", x, y);
  crema_strbuf_printf(&c->svg, ">");
  crema_strbuf_escape(&c->svg, text);
  crema_strbuf_printf(&c->svg, "</text>\n");
}

const char *crema_canvas_svg_text(crema_canvas *c) {
  if (c->kind != CREMA_CANVAS_SVG) return NULL;
  if (!c->finished) {
    crema_strbuf_printf(&c->svg, "</svg>\n");
    c->finished = true;
  }
  return c->svg.oom ? NULL : c->svg.data;
}

int crema_canvas_png(const crema_canvas *c, unsigned char **png, size_t *n, crema_error *err) {
  if (c->kind != CREMA_CANVAS_RASTER) return crema_fail(err, "internal: PNG asked of an SVG canvas");
  return crema_raster_png(c->rgb, c->width, c->height, png, n, err);
}

int crema_canvas_save(crema_canvas *c, const char *path, crema_error *err) {
  if (c->kind == CREMA_CANVAS_SVG) {
    const char *s = crema_canvas_svg_text(c);
    if (crema_strbuf_ok(&c->svg, path, err)) return -1;
    return crema_write_file_atomic(path, s, strlen(s), err);
  }
  unsigned char *png = NULL;
  size_t n = 0;
  if (crema_canvas_png(c, &png, &n, err)) return -1;
  int rc = crema_write_file_atomic(path, png, n, err);
  free(png);
  return rc;
}
