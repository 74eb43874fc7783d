#include "data/image.h"

#include <errno.h>
#include <limits.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include <stb_image.h>
#include <stb_image_write.h>

int crema_read_file_bytes(const char *path, uint8_t **out, size_t *len, crema_error *err) {
  FILE *f = fopen(path, "rb");
  if (!f) return crema_fail(err, "cannot open \"%s\": %s", path, strerror(errno));
  uint8_t *buf = NULL;
  size_t n = 0, cap = 0;
  for (;;) {
    if (n == cap) {
      size_t nc = cap ? cap * 2 : 65536;
      uint8_t *p = realloc(buf, nc);
      if (!p) {
        free(buf);
        fclose(f);
        return crema_fail(err, "out of memory reading \"%s\"", path);
      }
      buf = p;
      cap = nc;
    }
    size_t got = fread(buf + n, 1, cap - n, f);
    n += got;
    if (got == 0) break;
  }
  int bad = ferror(f);
  fclose(f);
  if (bad) {
    free(buf);
    return crema_fail(err, "error reading \"%s\"", path);
  }
  *out = buf;
  *len = n;
  return 0;
}

int crema_image_native_channels(const uint8_t *buf, size_t len) {
  int w, h, comp;
  if (len > INT_MAX || !stbi_info_from_memory(buf, (int)len, &w, &h, &comp)) return -1;
  return comp <= 2 ? 1 : 3;
}

int crema_image_decode(const uint8_t *buf, size_t len, crema_image_mode mode, const char *what,
                       crema_image *out, crema_error *err) {
  if (len == 0) return crema_fail(err, "%s: empty file, not an image", what);
  if (len > INT_MAX) return crema_fail(err, "%s: file too large to decode (%zu bytes)", what, len);
  int want = (int)mode;
  if (mode == CREMA_IMAGE_NATIVE) {
    want = crema_image_native_channels(buf, len);
    if (want < 0) return crema_fail(err, "%s: not a readable image (%s)", what, stbi_failure_reason());
  }
  int w, h, comp;
  uint8_t *pixels = stbi_load_from_memory(buf, (int)len, &w, &h, &comp, want);
  if (!pixels) return crema_fail(err, "%s: cannot decode image (%s)", what, stbi_failure_reason());
  /* stb mallocs with the C allocator (STBI_MALLOC default), so free() releases it. */
  out->width = w;
  out->height = h;
  out->channels = want;
  out->data = pixels;
  return 0;
}

int crema_image_decode_file(const char *path, crema_image_mode mode, crema_image *out, crema_error *err) {
  uint8_t *buf;
  size_t len;
  if (crema_read_file_bytes(path, &buf, &len, err)) return -1;
  int rc = crema_image_decode(buf, len, mode, path, out, err);
  free(buf);
  return rc;
}

void crema_image_free(crema_image *img) {
  if (!img) return;
  free(img->data);
  img->data = NULL;
  img->width = img->height = img->channels = 0;
}

/* ---------------------------------------------------------------- resize */

/* OpenCV's INTER_LINEAR source coordinate for destination index d: centres aligned,
 * clamped so that edge pixels are replicated. *i0 is the left/top tap, *a the weight of the
 * right/bottom tap (the left/top one gets 1 - a). */
static void linear_tap(int d, double scale, int n_src, int *i0, float *a) {
  float f = (float)((d + 0.5) * scale - 0.5);
  int i = (int)floorf(f);
  f -= (float)i;
  if (i < 0) {
    i = 0;
    f = 0;
  }
  if (i >= n_src - 1) {
    i = n_src - 1;
    f = 0;
  }
  *i0 = i;
  *a = f;
}

int crema_image_resize(const crema_image *src, int width, int height, crema_image *dst, crema_error *err) {
  if (width <= 0 || height <= 0 || src->width <= 0 || src->height <= 0)
    return crema_fail(err, "cannot resize a %dx%d image to %dx%d", src->width, src->height, width, height);
  const int c = src->channels, sw = src->width, sh = src->height;
  uint8_t *out = malloc((size_t)width * height * c);
  int *xo = malloc(sizeof(int) * (size_t)width);
  float *xa = malloc(sizeof(float) * (size_t)width);
  if (!out || !xo || !xa) {
    free(out);
    free(xo);
    free(xa);
    return crema_fail(err, "out of memory resizing to %dx%d", width, height);
  }
  const double sx = (double)sw / width, sy = (double)sh / height;
  for (int x = 0; x < width; x++) linear_tap(x, sx, sw, &xo[x], &xa[x]);
#pragma omp parallel for if ((size_t)width * height > 65536)
  for (int y = 0; y < height; y++) {
    int y0;
    float b;
    linear_tap(y, sy, sh, &y0, &b);
    const int y1 = y0 + (b > 0 && y0 + 1 < sh);
    const uint8_t *r0 = src->data + (size_t)y0 * sw * c, *r1 = src->data + (size_t)y1 * sw * c;
    uint8_t *o = out + (size_t)y * width * c;
    for (int x = 0; x < width; x++) {
      const int x0 = xo[x], x1 = x0 + (xa[x] > 0 && x0 + 1 < sw);
      const float a = xa[x];
      for (int k = 0; k < c; k++) {
        float top = r0[x0 * c + k] * (1 - a) + r0[x1 * c + k] * a;
        float bot = r1[x0 * c + k] * (1 - a) + r1[x1 * c + k] * a;
        float v = top * (1 - b) + bot * b;
        int iv = (int)lrintf(v);
        o[x * c + k] = (uint8_t)(iv < 0 ? 0 : iv > 255 ? 255 : iv);
      }
    }
  }
  free(xo);
  free(xa);
  dst->width = width;
  dst->height = height;
  dst->channels = c;
  dst->data = out;
  return 0;
}

void crema_resize_planes_f32(const float *src, int channels, int sh, int sw, float *dst, int dh, int dw) {
  const double sx = (double)sw / dw, sy = (double)sh / dh;
  for (int y = 0; y < dh; y++) {
    int y0;
    float b;
    linear_tap(y, sy, sh, &y0, &b);
    const int y1 = y0 + (b > 0 && y0 + 1 < sh);
    for (int x = 0; x < dw; x++) {
      int x0;
      float a;
      linear_tap(x, sx, sw, &x0, &a);
      const int x1 = x0 + (a > 0 && x0 + 1 < sw);
      for (int k = 0; k < channels; k++) {
        const float *p = src + (size_t)k * sh * sw;
        float top = p[y0 * sw + x0] * (1 - a) + p[y0 * sw + x1] * a;
        float bot = p[y1 * sw + x0] * (1 - a) + p[y1 * sw + x1] * a;
        dst[((size_t)k * dh + y) * dw + x] = top * (1 - b) + bot * b;
      }
    }
  }
}

/* ---------------------------------------------------------------- encode */

typedef struct grow_buf {
  uint8_t *data;
  size_t len, cap;
  int failed;
} grow_buf;

static void append_bytes(void *ctx, void *data, int size) {
  grow_buf *g = ctx;
  if (g->failed || size <= 0) return;
  if (g->len + (size_t)size > g->cap) {
    size_t nc = g->cap ? g->cap : 4096;
    while (nc < g->len + (size_t)size) nc *= 2;
    uint8_t *p = realloc(g->data, nc);
    if (!p) {
      g->failed = 1;
      return;
    }
    g->data = p;
    g->cap = nc;
  }
  memcpy(g->data + g->len, data, (size_t)size);
  g->len += (size_t)size;
}

int crema_image_encode(const crema_image *img, const char *type, uint8_t **out, size_t *len,
                       crema_error *err) {
  grow_buf g = {0};
  int ok;
  if (!strcasecmp(type, "png"))
    ok = stbi_write_png_to_func(append_bytes, &g, img->width, img->height, img->channels, img->data,
                                img->width * img->channels);
  else if (!strcasecmp(type, "jpg") || !strcasecmp(type, "jpeg"))
    ok = stbi_write_jpg_to_func(append_bytes, &g, img->width, img->height, img->channels, img->data, 95);
  else
    return crema_fail(err, "cannot encode images as \"%s\": use png or jpg", type);
  if (!ok || g.failed) {
    free(g.data);
    return crema_fail(err, "encoding a %dx%d image as %s failed", img->width, img->height, type);
  }
  *out = g.data;
  *len = g.len;
  return 0;
}

/* ---------------------------------------------------------------- layouts */

void crema_image_to_chw_bgr(const crema_image *img, uint8_t *out) {
  const int c = img->channels;
  const size_t plane = (size_t)img->width * img->height;
  for (int k = 0; k < c; k++) {
    const int src_k = c == 3 ? 2 - k : k; /* RGB -> BGR */
    uint8_t *o = out + (size_t)k * plane;
    const uint8_t *s = img->data + src_k;
    for (size_t i = 0; i < plane; i++) o[i] = s[i * c];
  }
}

int crema_image_from_chw_bgr(const uint8_t *chw, int channels, int height, int width, crema_image *img,
                             crema_error *err) {
  if (channels != 1 && channels != 3)
    return crema_fail(err, "an image needs 1 or 3 channels, not %d", channels);
  const size_t plane = (size_t)width * height;
  uint8_t *d = malloc(plane * channels);
  if (!d) return crema_fail(err, "out of memory");
  for (int k = 0; k < channels; k++) {
    const int dst_k = channels == 3 ? 2 - k : k;
    for (size_t i = 0; i < plane; i++) d[i * channels + dst_k] = chw[(size_t)k * plane + i];
  }
  img->width = width;
  img->height = height;
  img->channels = channels;
  img->data = d;
  return 0;
}
