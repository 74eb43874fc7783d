/* raster.c -- anti-aliased drawing into an RGB buffer, and text from stb_easy_font.
 *
 * Lines: each pixel near a segment gets coverage clamp(width/2 + 0.5 - distance, 0, 1), a
 * cheap and good-looking approximation; long segments are cut into short pieces so the box
 * scanned around each stays small. Text: stb_easy_font gives each glyph as axis-aligned
 * quads on a unit grid (about 7 units high for capitals); they are scaled and filled with
 * fractional edges, rotated by 90 degrees for vertical labels. */
#include "report/raster.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "data/image.h"

#if defined(__GNUC__)
#pragma GCC diagnostic push
#pragma GCC diagnostic ignored "-Wunused-function"
#pragma GCC diagnostic ignored "-Wsign-compare"
#pragma GCC diagnostic ignored "-Wconversion"
#endif
#include <stb/stb_easy_font.h>
#if defined(__GNUC__)
#pragma GCC diagnostic pop
#endif

static void blend(unsigned char *rgb, int w, int h, int x, int y, uint32_t color, double a) {
  if (x < 0 || y < 0 || x >= w || y >= h || a <= 0) return;
  if (a > 1) a = 1;
  unsigned char *p = rgb + ((size_t)y * (size_t)w + (size_t)x) * 3;
  const double c[3] = {(double)(color >> 16 & 255), (double)(color >> 8 & 255), (double)(color & 255)};
  for (int k = 0; k < 3; k++) p[k] = (unsigned char)lround(p[k] + (c[k] - p[k]) * a);
}

/* One short segment: coverage by distance to the segment. */
static void segment(unsigned char *rgb, int w, int h, double x0, double y0, double x1, double y1,
                    uint32_t color, double width) {
  const double r = width / 2 + 0.5;
  int xa = (int)floor(fmin(x0, x1) - r), xb = (int)ceil(fmax(x0, x1) + r);
  int ya = (int)floor(fmin(y0, y1) - r), yb = (int)ceil(fmax(y0, y1) + r);
  if (xa < 0) xa = 0;
  if (ya < 0) ya = 0;
  if (xb > w - 1) xb = w - 1;
  if (yb > h - 1) yb = h - 1;
  const double dx = x1 - x0, dy = y1 - y0, len2 = dx * dx + dy * dy;
  for (int y = ya; y <= yb; y++)
    for (int x = xa; x <= xb; x++) {
      const double px = x + 0.5, py = y + 0.5;
      double t = len2 > 0 ? ((px - x0) * dx + (py - y0) * dy) / len2 : 0;
      t = t < 0 ? 0 : t > 1 ? 1 : t;
      const double ex = px - (x0 + t * dx), ey = py - (y0 + t * dy);
      const double cov = r - sqrt(ex * ex + ey * ey);
      if (cov > 0) blend(rgb, w, h, x, y, color, cov > 1 ? 1 : cov);
    }
}

void crema_raster_line(unsigned char *rgb, int w, int h, double x0, double y0, double x1, double y1,
                       uint32_t color, double width, bool dashed) {
  if (!isfinite(x0) || !isfinite(y0) || !isfinite(x1) || !isfinite(y1)) return;
  const double len = hypot(x1 - x0, y1 - y0);
  const double piece = dashed ? 4.5 : 6.0;
  int n = (int)ceil(len / piece);
  if (n < 1) n = 1;
  if (n > 100000) return; /* far outside any canvas */
  for (int i = 0; i < n; i++) {
    if (dashed && (i % 2)) continue;
    const double a = (double)i / n, b = (double)(i + 1) / n;
    segment(rgb, w, h, x0 + a * (x1 - x0), y0 + a * (y1 - y0), x0 + b * (x1 - x0), y0 + b * (y1 - y0), color,
            width);
  }
}

void crema_raster_fill(unsigned char *rgb, int w, int h, double x, double y, double rw, double rh,
                       uint32_t color, double alpha) {
  if (rw <= 0 || rh <= 0) return;
  const double x1 = x + rw, y1 = y + rh;
  int xa = (int)floor(x), xb = (int)ceil(x1), ya = (int)floor(y), yb = (int)ceil(y1);
  if (xa < 0) xa = 0;
  if (ya < 0) ya = 0;
  if (xb > w) xb = w;
  if (yb > h) yb = h;
  for (int py = ya; py < yb; py++) {
    const double cy = fmin(py + 1.0, y1) - fmax((double)py, y);
    if (cy <= 0) continue;
    for (int px = xa; px < xb; px++) {
      const double cx = fmin(px + 1.0, x1) - fmax((double)px, x);
      if (cx > 0) blend(rgb, w, h, px, py, color, alpha * cx * cy);
    }
  }
}

/* stb_easy_font units: capitals span y in [0, 7) from the top of the line; we put the
 * baseline at 7 units. */
#define FONT_UNITS 9.0

double crema_raster_text_width(const char *text, double size) {
  char buf[512];
  snprintf(buf, sizeof buf, "%s", text ? text : "");
  return stb_easy_font_width(buf) * size / FONT_UNITS;
}

void crema_raster_text(unsigned char *rgb, int w, int h, double x, double y, const char *text, double size,
                       uint32_t color, bool vertical) {
  char buf[512];
  snprintf(buf, sizeof buf, "%s", text ? text : "");
  for (char *p = buf; *p; p++)
    if ((unsigned char)*p > 126 || ((unsigned char)*p < 32 && *p != '\n')) *p = '?';
  /* stb_easy_font needs about 270 bytes per character; 1 KB each is ample. */
  const size_t vb_size = (strlen(buf) + 1) * 1024;
  float *vb = malloc(vb_size);
  if (!vb) return;
  const int n = stb_easy_font_print(0, 0, buf, NULL, vb, (int)vb_size);
  const double s = size / FONT_UNITS;
  for (int q = 0; q < n; q++) {
    const float *v = vb + q * 16; /* 4 vertices of (x, y, z, color) */
    double qx0 = v[0], qy0 = v[1], qx1 = v[0], qy1 = v[1];
    for (int k = 1; k < 4; k++) {
      qx0 = fmin(qx0, v[k * 4]), qx1 = fmax(qx1, v[k * 4]);
      qy0 = fmin(qy0, v[k * 4 + 1]), qy1 = fmax(qy1, v[k * 4 + 1]);
    }
    /* unit coordinates relative to the baseline-left origin */
    const double ux0 = qx0 * s, ux1 = qx1 * s, uy0 = (qy0 - 7) * s, uy1 = (qy1 - 7) * s;
    if (!vertical)
      crema_raster_fill(rgb, w, h, x + ux0, y + uy0, ux1 - ux0, uy1 - uy0, color, 1.0);
    else /* rotate by -90 degrees: (u, v) -> (v, -u) */
      crema_raster_fill(rgb, w, h, x + uy0, y - ux1, uy1 - uy0, ux1 - ux0, color, 1.0);
  }
  free(vb);
}

int crema_raster_png(const unsigned char *rgb, int w, int h, unsigned char **png, size_t *n,
                     crema_error *err) {
  crema_image img = {.width = w, .height = h, .channels = 3, .data = (uint8_t *)rgb};
  uint8_t *out = NULL;
  if (crema_image_encode(&img, "png", &out, n, err)) return -1;
  *png = out;
  return 0;
}
