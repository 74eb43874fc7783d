#include "data/preprocess.h"

#include <stdlib.h>
#include <string.h>

#include "data/transformer.h"
#include "proto/io.h"

struct crema_preprocess {
  Crema__TransformationParameter *param; /* as given, mean_file resolved */
  crema_transformer *full;               /* mean and scale at full size (crop done here) */
  int crop, resize_h, resize_w;
  int channels; /* 1 or 3 when forced, 0 = the image's own */
  bool rgb;     /* colour planes in RGB order instead of Caffe's BGR */
};

void crema_preprocess_free(crema_preprocess *pp) {
  if (!pp) return;
  crema_transformer_free(pp->full);
  crema_message_free(pp->param);
  free(pp);
}

const Crema__TransformationParameter *crema_preprocess_param(const crema_preprocess *pp) { return pp->param; }

crema_image_mode crema_preprocess_decode_mode(const crema_preprocess *pp) {
  return pp->channels == 3 ? CREMA_IMAGE_COLOR : pp->channels == 1 ? CREMA_IMAGE_GRAY : CREMA_IMAGE_NATIVE;
}

/* "dir/name" for a relative name and a non-empty dir, else a copy of name. NULL on OOM. */
static char *join_path(const char *dir, const char *name) {
  size_t nd = dir && *dir && name[0] != '/' ? strlen(dir) : 0, nn = strlen(name);
  char *s = malloc(nd + 1 + nn + 1);
  if (!s) return NULL;
  if (nd) {
    memcpy(s, dir, nd);
    s[nd] = '/';
    memcpy(s + nd + 1, name, nn + 1);
  } else {
    memcpy(s, name, nn + 1);
  }
  return s;
}

int crema_preprocess_create(const Crema__TransformationParameter *p, const char *base_dir,
                            crema_preprocess **out, crema_error *err) {
  *out = NULL;
  Crema__TransformationParameter blank = CREMA__TRANSFORMATION_PARAMETER__INIT;
  crema_preprocess *pp = calloc(1, sizeof *pp);
  if (!pp) return crema_fail(err, "out of memory");
  pp->param = crema_message_copy(&(p ? p : &blank)->base);
  if (!pp->param) {
    crema_preprocess_free(pp);
    return crema_fail(err, "out of memory");
  }
  Crema__TransformationParameter *q = pp->param;
  if (q->mean_file && *q->mean_file) {
    char *full = join_path(base_dir, q->mean_file);
    if (!full) {
      crema_preprocess_free(pp);
      return crema_fail(err, "out of memory");
    }
    free(q->mean_file);
    q->mean_file = full;
  }
  const unsigned rh = q->resize_height, rw = q->resize_width, cs = q->crop_size;
  const char *bad = NULL;
  if ((rh > 0) != (rw > 0))
    bad = "resize_height and resize_width must both be set or both be 0";
  else if (rh > 65536 || rw > 65536 || cs > 65536)
    bad = "resize or crop_size above 65536 pixels";
  else if (cs && rh && (cs > rh || cs > rw))
    bad = "crop_size is larger than the resized image; lower crop_size or raise the resize";
  if (bad) {
    crema_preprocess_free(pp);
    return crema_fail(err, "%s (resize %u x %u, crop_size %u)", bad, rh, rw, cs);
  }
  pp->crop = (int)q->crop_size;
  pp->resize_h = (int)q->resize_height;
  pp->resize_w = (int)q->resize_width;
  pp->channels = q->force_color ? 3 : q->force_gray ? 1 : 0;
  pp->rgb = q->channel_order == CREMA__TRANSFORMATION_PARAMETER__CHANNEL_ORDER__RGB;
  /* The transformer does the mean and scale on the whole (resized) image; crops are taken
   * here afterwards, which equals Caffe's crop-then-subtract because both are per pixel and
   * the mean is indexed at full size either way. */
  const uint32_t crop = q->crop_size;
  q->crop_size = 0;
  int rc = crema_transformer_create(q, CREMA__PHASE__TEST, 0, &pp->full, err);
  q->crop_size = crop;
  if (rc) {
    crema_preprocess_free(pp);
    return -1;
  }
  *out = pp;
  return 0;
}

int crema_preprocess_load(const char *path, crema_preprocess **out, crema_error *err) {
  *out = NULL;
  ProtobufCMessage *m;
  if (crema_read_text_message(path, &crema__transformation_parameter__descriptor, &m, err)) return -1;
  /* the folder of the file, for a relative mean_file */
  const char *slash = strrchr(path, '/');
  char *dir = NULL;
  if (slash) {
    size_t n = (size_t)(slash - path);
    dir = malloc(n + 2);
    if (!dir) {
      crema_message_free(m);
      return crema_fail(err, "out of memory");
    }
    memcpy(dir, path, n);
    dir[n] = '\0';
    if (n == 0) strcpy(dir, "/");
  }
  int rc = crema_preprocess_create((const Crema__TransformationParameter *)m, dir, out, err);
  free(dir);
  crema_message_free(m);
  if (rc) return crema_error_prefix(err, "%s", path);
  return 0;
}

int crema_preprocess_write(const char *path, const Crema__TransformationParameter *p, crema_error *err) {
  return crema_write_text_message(path, &p->base, err);
}

/* Channels of the image that goes into the transformer. */
static int out_channels(const crema_preprocess *pp, int img_channels) {
  return pp->channels ? pp->channels : img_channels == 1 ? 1 : 3;
}

int crema_preprocess_shape(const crema_preprocess *pp, int img_channels, int img_h, int img_w, int *c, int *h,
                           int *w, crema_error *err) {
  const int ih = pp->resize_h ? pp->resize_h : img_h, iw = pp->resize_w ? pp->resize_w : img_w;
  const int ic = out_channels(pp, img_channels);
  if (crema_transformer_shape(pp->full, ic, ih, iw, c, h, w, err)) return -1;
  if (pp->crop) {
    if (pp->crop > ih || pp->crop > iw)
      return crema_fail(
          err,
          "crop_size %d is larger than the %d x %d image; lower crop_size or set resize_height/resize_width",
          pp->crop, ih, iw);
    *h = *w = pp->crop;
  }
  return 0;
}

/* Grey level of an RGB pixel with stb_image's weights, so a colour buffer converted here
 * matches the same picture decoded from a file with force_gray. */
static uint8_t grey_of(int r, int g, int b) { return (uint8_t)((r * 77 + g * 150 + b * 29) >> 8); }

/* Copies one crop (y0, x0, size ch x cw) of the c planes of src (h x w), mirrored or not. */
static void take_crop(const float *src, int c, int h, int w, int y0, int x0, int ch, int cw, bool mirror,
                      float *dst) {
  for (int k = 0; k < c; k++)
    for (int y = 0; y < ch; y++) {
      const float *s = src + ((size_t)k * h + y0 + y) * w + x0;
      float *d = dst + ((size_t)k * ch + y) * cw;
      if (mirror)
        for (int x = 0; x < cw; x++) d[x] = s[cw - 1 - x];
      else
        memcpy(d, s, sizeof(float) * (size_t)cw);
    }
}

/* The common path for an image already in the right channel count (1 or 3, RGB order). */
static int apply_converted(const crema_preprocess *pp, const crema_image *img, bool oversample, float *out,
                           size_t out_floats, crema_error *err) {
  if (oversample && !pp->crop)
    return crema_fail(err, "oversampling takes 10 crops and needs crop_size in the preprocessing");
  int c, h, w;
  if (crema_preprocess_shape(pp, img->channels, img->height, img->width, &c, &h, &w, err)) return -1;
  const size_t per = (size_t)c * h * w, need = oversample ? per * CREMA_OVERSAMPLE_CROPS : per;
  if (out_floats < need)
    return crema_fail(err,
                      "output buffer holds %zu floats but the preprocessed input needs %zu (%d x %d x %d%s)",
                      out_floats, need, c, h, w, oversample ? ", 10 crops" : "");
  crema_image resized = {0};
  const crema_image *src = img;
  if (pp->resize_h && (img->height != pp->resize_h || img->width != pp->resize_w)) {
    if (crema_image_resize(img, pp->resize_w, pp->resize_h, &resized, err)) return -1;
    src = &resized;
  }
  const int ih = src->height, iw = src->width;
  const size_t plane = (size_t)ih * iw, full_n = (size_t)c * plane;
  uint8_t *chw = malloc(full_n);
  float *full = malloc(sizeof(float) * full_n);
  crema_transform_work work = {0};
  int rc = -1;
  if (!chw || !full) {
    crema_fail(err, "out of memory preprocessing a %d x %d image", iw, ih);
    goto done;
  }
  for (int k = 0; k < c; k++) {
    const int sk = c == 3 && !pp->rgb ? 2 - k : k; /* crema_image is RGB; Caffe wants BGR */
    uint8_t *o = chw + (size_t)k * plane;
    const uint8_t *s = src->data + sk;
    for (size_t i = 0; i < plane; i++) o[i] = s[i * c];
  }
  if (crema_transformer_apply(pp->full, chw, NULL, c, ih, iw, 0, &work, full, err)) goto done;
  if (!pp->crop) {
    memcpy(out, full, sizeof(float) * full_n);
  } else if (!oversample) {
    take_crop(full, c, ih, iw, (ih - h) / 2, (iw - w) / 2, h, w, false, out);
  } else {
    /* classifier.py's order: (0,0), (0,W-c), (H-c,0), (H-c,W-c), centre; then mirrored */
    const int ys[5] = {0, 0, ih - h, ih - h, (ih - h) / 2}, xs[5] = {0, iw - w, 0, iw - w, (iw - w) / 2};
    for (int i = 0; i < CREMA_OVERSAMPLE_CROPS; i++)
      take_crop(full, c, ih, iw, ys[i % 5], xs[i % 5], h, w, i >= 5, out + (size_t)i * per);
  }
  rc = 0;
done:
  crema_transform_work_free(&work);
  free(chw);
  free(full);
  crema_image_free(&resized);
  return rc;
}

int crema_preprocess_image(const crema_preprocess *pp, const crema_image *img, bool oversample, float *out,
                           size_t out_floats, crema_error *err) {
  if (!img->data || img->width <= 0 || img->height <= 0 || (img->channels != 1 && img->channels != 3))
    return crema_fail(err, "an image needs pixels and 1 or 3 channels (got %d x %d x %d)", img->width,
                      img->height, img->channels);
  const int want = out_channels(pp, img->channels);
  if (want == img->channels) return apply_converted(pp, img, oversample, out, out_floats, err);
  /* convert grey <-> colour as the file decoder would */
  const size_t n = (size_t)img->width * img->height;
  crema_image conv = {img->width, img->height, want, malloc(n * (size_t)want)};
  if (!conv.data) return crema_fail(err, "out of memory");
  for (size_t i = 0; i < n; i++) {
    if (want == 1) {
      const uint8_t *s = img->data + 3 * i;
      conv.data[i] = grey_of(s[0], s[1], s[2]);
    } else {
      conv.data[3 * i] = conv.data[3 * i + 1] = conv.data[3 * i + 2] = img->data[i];
    }
  }
  int rc = apply_converted(pp, &conv, oversample, out, out_floats, err);
  crema_image_free(&conv);
  return rc;
}

int crema_preprocess_pixels(const crema_preprocess *pp, const uint8_t *pixels, int width, int height,
                            size_t stride, crema_pixel_order order, bool oversample, float *out,
                            size_t out_floats, crema_error *err) {
  static const int NCH[] = {1, 3, 3, 4, 4};
  if ((int)order < 0 || (int)order > CREMA_PIXELS_BGRA)
    return crema_fail(err, "unknown pixel order %d", (int)order);
  if (!pixels || width <= 0 || height <= 0 || width > 65536 || height > 65536)
    return crema_fail(err, "a pixel buffer of %d x %d has no pixels (or is above 65536 a side)", width,
                      height);
  const int in_c = NCH[order];
  if (stride == 0) stride = (size_t)width * in_c;
  if (stride < (size_t)width * in_c)
    return crema_fail(err, "row stride %zu is less than width x channels = %zu bytes", stride,
                      (size_t)width * in_c);
  const int c = in_c == 1 ? 1 : 3;
  const bool bgr = order == CREMA_PIXELS_BGR || order == CREMA_PIXELS_BGRA;
  crema_image img = {width, height, c, malloc((size_t)width * height * c)};
  if (!img.data) return crema_fail(err, "out of memory");
  for (int y = 0; y < height; y++) {
    const uint8_t *s = pixels + (size_t)y * stride;
    uint8_t *d = img.data + (size_t)y * width * c;
    for (int x = 0; x < width; x++) {
      if (c == 1) {
        d[x] = s[x];
      } else {
        const uint8_t *p = s + (size_t)x * in_c;
        d[3 * x] = bgr ? p[2] : p[0];
        d[3 * x + 1] = p[1];
        d[3 * x + 2] = bgr ? p[0] : p[2];
      }
    }
  }
  int rc = crema_preprocess_image(pp, &img, oversample, out, out_floats, err);
  crema_image_free(&img);
  return rc;
}

int crema_preprocess_file(const crema_preprocess *pp, const char *path, bool oversample, float *out,
                          size_t out_floats, crema_error *err) {
  crema_image img;
  if (crema_image_decode_file(path, crema_preprocess_decode_mode(pp), &img, err)) return -1;
  int rc = crema_preprocess_image(pp, &img, oversample, out, out_floats, err);
  crema_image_free(&img);
  if (rc) return crema_error_prefix(err, "%s", path);
  return 0;
}
