#include "data/image.h"

#include <errno.h>
#include <limits.h>
#include <math.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include <stb_image.h>
#include <stb_image_write.h>

#include "data/image_pnm.h"
#include "data/image_probe.h"

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
  crema_image_info info;
  if (crema_image_probe(buf, len, "image", &info, NULL)) return -1;
  return info.channels;
}

/* n interleaved 8-bit channels (1 grey, 2 grey+alpha, 3 RGB, 4 RGBA) -> want (1 or 3): alpha
 * dropped, grey replicated, colour to grey with stb's luma weights (77 R + 150 G + 29 B) >> 8.
 * src holds 8-bit samples, or 16-bit ones (wide) of which the high byte is kept, as OpenCV's
 * imread does. Returns a malloc'd buffer or NULL. */
static uint8_t *convert_channels(const void *src, bool wide, size_t pixels, int n, int want) {
  uint8_t *dst = malloc(pixels * (size_t)want);
  if (!dst) return NULL;
  const uint8_t *s8 = src;
  const uint16_t *s16 = src;
  for (size_t i = 0; i < pixels; i++) {
    int v[4];
    for (int k = 0; k < n; k++) v[k] = wide ? s16[i * n + k] >> 8 : s8[i * n + k];
    if (want == 1)
      dst[i] = (uint8_t)(n >= 3 ? (v[0] * 77 + v[1] * 150 + v[2] * 29) >> 8 : v[0]);
    else
      for (int k = 0; k < 3; k++) dst[i * 3 + k] = (uint8_t)(n >= 3 ? v[k] : v[0]);
  }
  return dst;
}

int crema_image_decode(const uint8_t *buf, size_t len, crema_image_mode mode, const char *what,
                       crema_image *out, crema_error *err) {
  crema_image_info info;
  if (crema_image_probe(buf, len, what, &info, err)) return -1;
  if (len > INT_MAX) return crema_fail(err, "%s: file too large to decode (%zu bytes)", what, len);
  const int want = mode == CREMA_IMAGE_NATIVE ? info.channels : (int)mode;
  const size_t pixels = (size_t)info.width * info.height;
  uint8_t *data = NULL;
  int w = (int)info.width, h = (int)info.height, comp = 0;
  if (info.format == CREMA_IMAGE_FORMAT_PNM) {
    uint8_t *native;
    if (crema_pnm_decode(buf, len, &info, what, &native, err)) return -1;
    data = info.channels == want ? native : convert_channels(native, false, pixels, info.channels, want);
    if (data != native) free(native);
  } else if (info.format == CREMA_IMAGE_FORMAT_PNG && info.bits == 16) {
    /* stb only decodes here (no conversion: its 16-bit conversions are not trusted); crema keeps
     * the high byte and converts the channels itself. */
    uint16_t *wide = stbi_load_16_from_memory(buf, (int)len, &w, &h, &comp, 0);
    if (!wide) return crema_fail(err, "%s: cannot decode PNG (%s)", what, stbi_failure_reason());
    data = (w == (int)info.width && h == (int)info.height && comp >= 1 && comp <= 4)
               ? convert_channels(wide, true, pixels, comp, want)
               : NULL;
    free(wide);
  } else {
    data = stbi_load_from_memory(buf, (int)len, &w, &h, &comp, want);
    if (!data)
      return crema_fail(err, "%s: cannot decode %s (%s)", what, crema_image_format_name(info.format),
                        stbi_failure_reason());
    /* stb mallocs with the C allocator (STBI_MALLOC default), so free() releases it. */
    if (w != (int)info.width || h != (int)info.height) {
      free(data);
      return crema_fail(err, "%s: corrupt %s (the decoder found %d x %d pixels, the header says %u x %u)",
                        what, crema_image_format_name(info.format), w, h, info.width, info.height);
    }
  }
  if (!data)
    return crema_fail(err, "%s: cannot decode a %u x %u image (out of memory or corrupt)", what, info.width,
                      info.height);
  out->width = (int)info.width;
  out->height = (int)info.height;
  out->channels = want;
  out->data = data;
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
