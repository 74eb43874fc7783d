#include "data/transformer.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "base/rng.h"

#ifndef M_PI
#define M_PI 3.14159265358979323846
#endif

struct crema_transformer {
  bool train, mirror, force_color, force_gray;
  int crop;
  float scale;
  uint64_t seed;
  crema_mean mean; /* data == NULL when no mean file */
  char *mean_path;
  int n_mean_values;
  float *mean_values;
  /* augmentation (TRAIN only) */
  bool augment;
  float max_rotation, min_area, max_area, min_aspect, max_aspect, brightness, contrast, saturation;
};

void crema_transformer_free(crema_transformer *t) {
  if (!t) return;
  crema_mean_free(&t->mean);
  free(t->mean_path);
  free(t->mean_values);
  free(t);
}

void crema_transform_work_free(crema_transform_work *w) {
  if (!w) return;
  free(w->a);
  free(w->b);
  memset(w, 0, sizeof *w);
}

int crema_transformer_create(const Crema__TransformationParameter *p, Crema__Phase phase, uint64_t seed,
                             crema_transformer **out, crema_error *err) {
  *out = NULL;
  crema_transformer *t = calloc(1, sizeof *t);
  if (!t) return crema_fail(err, "out of memory");
  t->train = phase == CREMA__PHASE__TRAIN;
  t->seed = seed;
  t->scale = 1.0f;
  if (p) {
    t->scale = p->has_scale ? p->scale : 1.0f;
    t->mirror = p->mirror;
    t->crop = (int)p->crop_size;
    t->force_color = p->force_color;
    t->force_gray = p->force_gray;
    if (t->force_color && t->force_gray) {
      crema_transformer_free(t);
      return crema_fail(err, "transform_param: force_color and force_gray cannot both be set");
    }
    if (p->mean_file && *p->mean_file) {
      if (p->n_mean_value) {
        crema_transformer_free(t);
        return crema_fail(err, "transform_param: give mean_file or mean_value, not both");
      }
      if (crema_mean_read(p->mean_file, &t->mean, err)) {
        crema_transformer_free(t);
        return crema_error_prefix(err, "transform_param.mean_file");
      }
      size_t n = strlen(p->mean_file) + 1;
      t->mean_path = malloc(n);
      if (t->mean_path) memcpy(t->mean_path, p->mean_file, n);
    }
    if (p->n_mean_value) {
      t->n_mean_values = (int)p->n_mean_value;
      t->mean_values = malloc(sizeof(float) * p->n_mean_value);
      if (!t->mean_values) {
        crema_transformer_free(t);
        return crema_fail(err, "out of memory");
      }
      memcpy(t->mean_values, p->mean_value, sizeof(float) * p->n_mean_value);
    }
    const Crema__AugmentationParameter *a = p->augment;
    if (a) {
      t->max_rotation = a->max_rotation;
      t->min_area = a->has_min_area ? a->min_area : 0.08f;
      t->max_area = a->max_area;
      t->min_aspect = a->has_min_aspect ? a->min_aspect : 0.75f;
      t->max_aspect = a->has_max_aspect ? a->max_aspect : 4.0f / 3.0f;
      t->brightness = a->brightness;
      t->contrast = a->contrast;
      t->saturation = a->saturation;
      const char *bad = NULL;
      if (t->max_rotation < 0 || t->max_rotation > 180)
        bad = "max_rotation must be in [0, 180] degrees";
      else if (t->max_area < 0 || t->max_area > 1)
        bad = "max_area must be in [0, 1]";
      else if (t->max_area > 0 && (t->min_area <= 0 || t->min_area > t->max_area))
        bad = "min_area must be in (0, max_area]";
      else if (t->min_aspect <= 0 || t->min_aspect > t->max_aspect)
        bad = "need 0 < min_aspect <= max_aspect";
      else if (t->brightness < 0 || t->brightness > 1 || t->contrast < 0 || t->contrast > 1 ||
               t->saturation < 0 || t->saturation > 1)
        bad = "brightness, contrast and saturation must be in [0, 1]";
      if (bad) {
        crema_transformer_free(t);
        return crema_fail(err, "transform_param.augment: %s", bad);
      }
      t->augment =
          t->max_rotation > 0 || t->max_area > 0 || t->brightness > 0 || t->contrast > 0 || t->saturation > 0;
    }
  }
  *out = t;
  return 0;
}

crema_image_mode crema_transformer_decode_mode(const crema_transformer *t) {
  return t->force_color ? CREMA_IMAGE_COLOR : t->force_gray ? CREMA_IMAGE_GRAY : CREMA_IMAGE_NATIVE;
}

int crema_transformer_shape(const crema_transformer *t, int c, int h, int w, int *oc, int *oh, int *ow,
                            crema_error *err) {
  if (c <= 0 || h <= 0 || w <= 0)
    return crema_fail(err, "image of shape %d x %d x %d has no pixels", c, h, w);
  if (t->crop && (t->crop > h || t->crop > w))
    return crema_fail(err,
                      "crop_size %d is larger than the %d x %d images; lower crop_size or resize the images",
                      t->crop, h, w);
  if (t->mean.data) {
    if (t->mean.channels != c)
      return crema_fail(err, "mean file \"%s\" has %d channel(s) but the images have %d", t->mean_path,
                        t->mean.channels, c);
    if (t->mean.height < h || t->mean.width < w)
      return crema_fail(
          err,
          "mean file \"%s\" is %d x %d but the images are %d x %d; the mean must be at least as large "
          "(compute it with compute_image_mean on this data set)",
          t->mean_path, t->mean.height, t->mean.width, h, w);
  }
  if (t->n_mean_values > 1 && t->n_mean_values != c)
    return crema_fail(err, "transform_param has %d mean_value entries for %d-channel images; give 1 or %d",
                      t->n_mean_values, c, c);
  *oc = c;
  *oh = t->crop ? t->crop : h;
  *ow = t->crop ? t->crop : w;
  return 0;
}

/* Subtracts the mean (file, centre-cropped to h x w, or values) in place from a full-size image. */
static void subtract_mean(const crema_transformer *t, float *img, int c, int h, int w) {
  if (t->mean.data) {
    const int mh0 = (t->mean.height - h) / 2, mw0 = (t->mean.width - w) / 2;
    for (int k = 0; k < c; k++)
      for (int y = 0; y < h; y++) {
        const float *m = t->mean.data + ((size_t)k * t->mean.height + y + mh0) * t->mean.width + mw0;
        float *row = img + ((size_t)k * h + y) * w;
        for (int x = 0; x < w; x++) row[x] -= m[x];
      }
  } else if (t->n_mean_values) {
    for (int k = 0; k < c; k++) {
      const float m = t->mean_values[t->n_mean_values == 1 ? 0 : k];
      float *p = img + (size_t)k * h * w;
      for (size_t i = 0; i < (size_t)h * w; i++) p[i] -= m;
    }
  }
}

static float clamp255(float v) { return v < 0 ? 0 : v > 255 ? 255 : v; }

/* Brightness, contrast, saturation on raw pixel values (BGR planes), clamped to [0, 255]. */
static void colour_jitter(const crema_transformer *t, crema_rng *r, float *img, int c, int h, int w) {
  const size_t plane = (size_t)h * w, n = plane * c;
  const float fb = t->brightness > 0 ? crema_rng_uniform(r, 1 - t->brightness, 1 + t->brightness) : 1;
  const float fc = t->contrast > 0 ? crema_rng_uniform(r, 1 - t->contrast, 1 + t->contrast) : 1;
  const float fs = t->saturation > 0 ? crema_rng_uniform(r, 1 - t->saturation, 1 + t->saturation) : 1;
  if (fb != 1)
    for (size_t i = 0; i < n; i++) img[i] = clamp255(img[i] * fb);
  if (fc != 1) {
    double m = 0; /* mean grey level of the image */
    for (size_t i = 0; i < plane; i++)
      m += c == 3 ? 0.114 * img[i] + 0.587 * img[plane + i] + 0.299 * img[2 * plane + i] : img[i];
    const float mf = (float)(m / (double)plane);
    for (size_t i = 0; i < n; i++) img[i] = clamp255((img[i] - mf) * fc + mf);
  }
  if (fs != 1 && c == 3)
    for (size_t i = 0; i < plane; i++) {
      const float g = 0.114f * img[i] + 0.587f * img[plane + i] + 0.299f * img[2 * plane + i];
      for (int k = 0; k < 3; k++) img[k * plane + i] = clamp255(g + (img[k * plane + i] - g) * fs);
    }
}

/* Rotates each plane by `deg` about the image centre: bilinear, zero outside. */
static void rotate(const float *src, float *dst, int c, int h, int w, float deg) {
  const double th = deg * M_PI / 180.0, cs = cos(th), sn = sin(th);
  const double cx = (w - 1) * 0.5, cy = (h - 1) * 0.5;
  for (int y = 0; y < h; y++)
    for (int x = 0; x < w; x++) {
      /* inverse map: where in the source does this output pixel come from */
      const double dx = x - cx, dy = y - cy;
      const double sx = cs * dx + sn * dy + cx, sy = -sn * dx + cs * dy + cy;
      const int x0 = (int)floor(sx), y0 = (int)floor(sy);
      const float ax = (float)(sx - x0), ay = (float)(sy - y0);
      for (int k = 0; k < c; k++) {
        const float *p = src + (size_t)k * h * w;
        float v = 0;
        for (int j = 0; j < 2; j++)
          for (int i = 0; i < 2; i++) {
            const int xx = x0 + i, yy = y0 + j;
            if (xx < 0 || yy < 0 || xx >= w || yy >= h) continue;
            v += p[yy * w + xx] * (i ? ax : 1 - ax) * (j ? ay : 1 - ay);
          }
        dst[((size_t)k * h + y) * w + x] = v;
      }
    }
}

static int augment_apply(const crema_transformer *t, crema_rng *r, bool mirror, const uint8_t *pixels,
                         const float *floats, int c, int h, int w, int oh, int ow, crema_transform_work *wk,
                         float *out) {
  const size_t n = (size_t)c * h * w;
  float *a = wk->a, *b = wk->b;
  for (size_t i = 0; i < n; i++) a[i] = pixels ? (float)pixels[i] : floats[i];
  colour_jitter(t, r, a, c, h, w);
  subtract_mean(t, a, c, h, w);
  if (t->max_rotation > 0) {
    rotate(a, b, c, h, w, crema_rng_uniform(r, -t->max_rotation, t->max_rotation));
    float *s = a;
    a = b;
    b = s;
  }
  /* Region of a to keep: (x0, y0, rw, rh), then resampled to oh x ow when it differs. */
  int x0 = 0, y0 = 0, rw = w, rh = h;
  if (t->max_area > 0) {
    const float area = crema_rng_uniform(r, t->min_area, t->max_area) * (float)h * (float)w;
    const float ratio = expf(crema_rng_uniform(r, logf(t->min_aspect), logf(t->max_aspect)));
    rw = (int)lrintf(sqrtf(area * ratio));
    rh = (int)lrintf(sqrtf(area / ratio));
    rw = rw < 1 ? 1 : rw > w ? w : rw;
    rh = rh < 1 ? 1 : rh > h ? h : rh;
    x0 = (int)crema_rng_below(r, (uint32_t)(w - rw + 1));
    y0 = (int)crema_rng_below(r, (uint32_t)(h - rh + 1));
  } else if (t->crop) {
    rw = rh = t->crop;
    y0 = (int)crema_rng_below(r, (uint32_t)(h - t->crop + 1));
    x0 = (int)crema_rng_below(r, (uint32_t)(w - t->crop + 1));
  }
  const float *src = a;
  int sw = w, sh = h;
  if (rw != ow || rh != oh) {
    for (int k = 0; k < c; k++)
      for (int y = 0; y < rh; y++)
        memcpy(b + ((size_t)k * rh + y) * rw, a + ((size_t)k * h + y + y0) * w + x0, sizeof(float) * rw);
    crema_resize_planes_f32(b, c, rh, rw, a, oh, ow);
    x0 = y0 = 0;
    sw = ow;
    sh = oh;
  }
  for (int k = 0; k < c; k++)
    for (int y = 0; y < oh; y++) {
      const float *row = src + ((size_t)k * sh + y + y0) * sw + x0;
      float *o = out + ((size_t)k * oh + y) * ow;
      for (int x = 0; x < ow; x++) o[mirror ? ow - 1 - x : x] = row[x] * t->scale;
    }
  return 0;
}

int crema_transformer_apply(const crema_transformer *t, const uint8_t *pixels, const float *floats, int c,
                            int h, int w, uint64_t record, crema_transform_work *wk, float *out,
                            crema_error *err) {
  int oc, oh, ow;
  if (crema_transformer_shape(t, c, h, w, &oc, &oh, &ow, err)) return -1;
  crema_rng r;
  crema_rng_seed(&r, t->seed, record);
  const bool mirror = t->mirror && t->train && (crema_rng_u32(&r) & 1u);
  if (t->augment && t->train) {
    const size_t n = (size_t)c * h * w;
    if (n > wk->cap) {
      float *a = realloc(wk->a, n * sizeof *a), *b = a ? realloc(wk->b, n * sizeof *b) : NULL;
      if (a) wk->a = a;
      if (!a || !b) return crema_fail(err, "out of memory for augmentation buffers");
      wk->b = b;
      wk->cap = n;
    }
    return augment_apply(t, &r, mirror, pixels, floats, c, h, w, oh, ow, wk, out);
  }
  int h_off = 0, w_off = 0;
  if (t->crop) {
    if (t->train) {
      h_off = (int)crema_rng_below(&r, (uint32_t)(h - t->crop + 1));
      w_off = (int)crema_rng_below(&r, (uint32_t)(w - t->crop + 1));
    } else {
      h_off = (h - t->crop) / 2;
      w_off = (w - t->crop) / 2;
    }
  }
  const float scale = t->scale;
  const int mh0 = t->mean.data ? (t->mean.height - h) / 2 : 0,
            mw0 = t->mean.data ? (t->mean.width - w) / 2 : 0;
  for (int k = 0; k < c; k++) {
    const float mv = t->n_mean_values ? t->mean_values[t->n_mean_values == 1 ? 0 : k] : 0.0f;
    for (int y = 0; y < oh; y++) {
      const size_t in_row = ((size_t)k * h + y + h_off) * w + w_off;
      float *o = out + ((size_t)k * oh + y) * ow;
      const float *m =
          t->mean.data
              ? t->mean.data + ((size_t)k * t->mean.height + y + h_off + mh0) * t->mean.width + w_off + mw0
              : NULL;
      for (int x = 0; x < ow; x++) {
        const float v = pixels ? (float)pixels[in_row + x] : floats[in_row + x];
        const float centred = m ? v - m[x] : v - mv;
        o[mirror ? ow - 1 - x : x] = centred * scale;
      }
    }
  }
  return 0;
}
