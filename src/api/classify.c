/* classify.c -- the classification helpers: a stored preprocessing (preprocess.prototxt),
 * labels, 8-bit images (buffers or files) into the first input, top-k of an output.
 *
 * An image becomes input item `item` as:
 *   pixels (grey/RGB/BGR, any size) -> the input's channel count (grey = stb's luma rule,
 *   as files decoded in grey) -> bilinear resize to the stored size (else the mean file's
 *   size when cropping, else the input's size) -> channels-first BGR bytes -> Caffe's
 *   DataTransformer in TEST phase (centre crop, mean, scale). */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "api/api_internal.h"
#include "data/image.h"
#include "data/mean.h"
#include "proto/io.h"

/* Joins dir and a relative path into a malloc'd string; absolute paths are copied. */
static char *join_path(const char *dir, const char *rel) {
  size_t nd = strlen(dir), nr = strlen(rel);
  char *s = malloc(nd + nr + 2);
  if (!s) return NULL;
  if (rel[0] == '/' || !nd) {
    memcpy(s, rel, nr + 1);
  } else {
    memcpy(s, dir, nd);
    s[nd] = '/';
    memcpy(s + nd + 1, rel, nr + 1);
  }
  return s;
}

/* The folder part of path ("." when there is none), malloc'd. */
static char *dir_of(const char *path) {
  const char *slash = strrchr(path, '/');
  if (!slash) return strdup(".");
  size_t n = slash == path ? 1 : (size_t)(slash - path);
  char *d = malloc(n + 1);
  if (d) {
    memcpy(d, path, n);
    d[n] = '\0';
  }
  return d;
}

/* Reads a preprocess.prototxt (a TransformationParameter in text format). A relative
 * mean_file is taken relative to the file's folder. Replaces any earlier preprocessing. */
crema_status crema_model_load_preprocess(crema_model *m, const char *preprocess_path) {
  if (!m || !preprocess_path)
    return api_failf(CREMA_ERR_ARGUMENT, "crema_model_load_preprocess: NULL argument");
  if (access(preprocess_path, R_OK) != 0)
    return api_failf(CREMA_ERR_IO, "cannot read preprocessing \"%s\": %s; check the path", preprocess_path,
                     strerror(errno));
  crema_error err;
  crema_error_clear(&err);
  ProtobufCMessage *msg = NULL;
  if (crema_read_text_message(preprocess_path, &crema__transformation_parameter__descriptor, &msg, &err))
    return api_fail(CREMA_ERR_FORMAT, &err);
  Crema__TransformationParameter *p = (Crema__TransformationParameter *)msg;
  if (p->mean_file && *p->mean_file && p->mean_file[0] != '/') {
    char *dir = dir_of(preprocess_path);
    char *full = dir ? join_path(dir, p->mean_file) : NULL;
    free(dir);
    if (!full) {
      crema_message_free(p);
      return api_failf(CREMA_ERR_MEMORY, "out of memory reading %s", preprocess_path);
    }
    free(p->mean_file);
    p->mean_file = full;
  }
  crema_transformer *tf = NULL;
  if (crema_transformer_create(p, CREMA__PHASE__TEST, 0, &tf, &err)) {
    crema_error_prefix(&err, "%s", preprocess_path);
    crema_message_free(p);
    return api_fail(CREMA_ERR_FORMAT, &err);
  }
  int rh = 0, rw = 0;
  if (p->crop_size > 0 && p->mean_file && *p->mean_file) {
    /* Caffe's classifier resizes to the mean image's size, then centre-crops. */
    crema_mean mean = {0};
    if (crema_mean_read(p->mean_file, &mean, &err)) {
      crema_transformer_free(tf);
      crema_message_free(p);
      return api_fail(CREMA_ERR_FORMAT, &err);
    }
    rh = mean.height;
    rw = mean.width;
    crema_mean_free(&mean);
  }
  if (m->pre) crema_message_free(m->pre);
  crema_transformer_free(m->tf);
  m->pre = p;
  m->tf = tf;
  m->resize_h = rh;
  m->resize_w = rw;
  return CREMA_OK;
}

/* Reads class names, one per line (a trailing '\r' is dropped). */
crema_status crema_model_load_labels(crema_model *m, const char *labels_path) {
  if (!m || !labels_path) return api_failf(CREMA_ERR_ARGUMENT, "crema_model_load_labels: NULL argument");
  crema_error err;
  crema_error_clear(&err);
  char *text = NULL;
  size_t len = 0;
  if (crema_read_file(labels_path, &text, &len, &err)) return api_fail(CREMA_ERR_IO, &err);
  int n = 0;
  for (size_t i = 0; i < len; i++) n += text[i] == '\n';
  char **labels = calloc((size_t)n + 2, sizeof *labels);
  if (!labels) {
    free(text);
    return api_failf(CREMA_ERR_MEMORY, "out of memory reading %s", labels_path);
  }
  int k = 0;
  for (char *line = text; line < text + len;) {
    char *nl = memchr(line, '\n', (size_t)(text + len - line));
    size_t ll = nl ? (size_t)(nl - line) : (size_t)(text + len - line);
    if (ll && line[ll - 1] == '\r') ll--;
    if (!(labels[k] = malloc(ll + 1))) {
      for (int i = 0; i < k; i++) free(labels[i]);
      free(labels);
      free(text);
      return api_failf(CREMA_ERR_MEMORY, "out of memory reading %s", labels_path);
    }
    memcpy(labels[k], line, ll);
    labels[k++][ll] = '\0';
    line = nl ? nl + 1 : text + len;
  }
  free(text);
  for (int i = 0; i < m->n_labels; i++) free(m->labels[i]);
  free(m->labels);
  m->labels = labels;
  m->n_labels = k;
  return CREMA_OK;
}

int crema_model_num_labels(const crema_model *m) { return m ? m->n_labels : 0; }
const char *crema_model_label(const crema_model *m, int i) {
  return m && i >= 0 && i < m->n_labels ? m->labels[i] : NULL;
}

/* Converts a caller's buffer into an interleaved image of `channels` channels in stb's RGB
 * order (img->data malloc'd). */
static crema_status to_image(const uint8_t *px, int w, int h, size_t stride, crema_pixel_format f,
                             int channels, crema_image *img) {
  const int in_c = f == CREMA_PIXELS_GRAY ? 1 : 3;
  if (!stride) stride = (size_t)w * (size_t)in_c;
  if (stride < (size_t)w * (size_t)in_c)
    return api_failf(CREMA_ERR_ARGUMENT, "image stride %zu is less than width %d x %d bytes per pixel",
                     stride, w, in_c);
  img->width = w;
  img->height = h;
  img->channels = channels;
  img->data = malloc((size_t)w * (size_t)h * (size_t)channels);
  if (!img->data) return api_failf(CREMA_ERR_MEMORY, "out of memory for a %dx%d image", w, h);
  for (int y = 0; y < h; y++) {
    const uint8_t *row = px + (size_t)y * stride;
    uint8_t *o = img->data + (size_t)y * (size_t)w * (size_t)channels;
    for (int x = 0; x < w; x++) {
      int r, g, b;
      if (in_c == 1) {
        r = g = b = row[x];
      } else if (f == CREMA_PIXELS_RGB) {
        r = row[3 * x], g = row[3 * x + 1], b = row[3 * x + 2];
      } else {
        b = row[3 * x], g = row[3 * x + 1], r = row[3 * x + 2];
      }
      if (channels == 1) {
        /* stb_image's luma rule, so a buffer and a file decoded as grey agree. */
        o[x] = in_c == 1 ? (uint8_t)r : (uint8_t)((r * 77 + g * 150 + b * 29) >> 8);
      } else {
        o[3 * x] = (uint8_t)r, o[3 * x + 1] = (uint8_t)g, o[3 * x + 2] = (uint8_t)b;
      }
    }
  }
  return CREMA_OK;
}

/* Checks the first input is (N, C, H, W) with C 1 or 3 and item < N. */
static crema_status image_input(const crema_model *m, int item, crema_blob **out) {
  if (crema_net_num_inputs(m->net) < 1)
    return api_failf(CREMA_ERR_NOT_FOUND, "the net has no Input layer to put an image into");
  crema_blob *b = crema_net_input(m->net, 0);
  if (b->num_axes != 4 || (b->shape[1] != 1 && b->shape[1] != 3)) {
    char s[128];
    return api_failf(CREMA_ERR_SHAPE, "input %s has shape %s: an image input must be (N, 1 or 3, H, W)",
                     crema_net_input_name(m->net, 0), crema_blob_shape_string(b, s, sizeof s));
  }
  if (item < 0 || item >= b->shape[0])
    return api_failf(CREMA_ERR_ARGUMENT, "batch item %d out of range: input %s holds %d images", item,
                     crema_net_input_name(m->net, 0), b->shape[0]);
  *out = b;
  return CREMA_OK;
}

/* Resizes (when needed), lays out as CHW BGR and transforms into the input's item. */
static crema_status place_image(crema_model *m, crema_blob *in, int item, const crema_image *img) {
  crema_error err;
  crema_error_clear(&err);
  if (!m->tf && crema_transformer_create(NULL, CREMA__PHASE__TEST, 0, &m->tf, &err))
    return api_fail(CREMA_ERR_MEMORY, &err);
  const int C = in->shape[1], H = in->shape[2], W = in->shape[3];
  int rh = m->resize_h > 0 ? m->resize_h : H, rw = m->resize_w > 0 ? m->resize_w : W;
  crema_image sized = {0};
  const crema_image *src = img;
  if (img->width != rw || img->height != rh) {
    if (crema_image_resize(img, rw, rh, &sized, &err)) return api_fail(CREMA_ERR_MEMORY, &err);
    src = &sized;
  }
  int oc, oh, ow;
  crema_status s = CREMA_OK;
  if (crema_transformer_shape(m->tf, C, rh, rw, &oc, &oh, &ow, &err)) {
    s = api_fail(CREMA_ERR_SHAPE, &err);
  } else if (oc != C || oh != H || ow != W) {
    s = api_failf(CREMA_ERR_SHAPE,
                  "the preprocessing makes %dx%dx%d images but input %s takes %dx%dx%d; fix crop_size or "
                  "reshape the input",
                  oc, oh, ow, crema_net_input_name(m->net, 0), C, H, W);
  } else {
    uint8_t *chw = malloc((size_t)C * (size_t)rh * (size_t)rw);
    if (!chw) {
      s = api_failf(CREMA_ERR_MEMORY, "out of memory for a %dx%d image", rw, rh);
    } else {
      crema_image_to_chw_bgr(src, chw);
      float *out = in->data + (size_t)item * (size_t)C * (size_t)H * (size_t)W;
      if (crema_transformer_apply(m->tf, chw, NULL, C, rh, rw, 0, &m->work, out, &err))
        s = api_fail(CREMA_ERR_RUNTIME, &err);
      free(chw);
    }
  }
  crema_image_free(&sized);
  return s;
}

crema_status crema_model_set_input_image(crema_model *m, int item, const uint8_t *pixels, int width,
                                         int height, size_t stride, crema_pixel_format format) {
  if (!m || !pixels) return api_failf(CREMA_ERR_ARGUMENT, "crema_model_set_input_image: NULL argument");
  if (width <= 0 || height <= 0)
    return api_failf(CREMA_ERR_ARGUMENT, "crema_model_set_input_image: image size %dx%d", width, height);
  if (format != CREMA_PIXELS_GRAY && format != CREMA_PIXELS_RGB && format != CREMA_PIXELS_BGR)
    return api_failf(CREMA_ERR_ARGUMENT, "crema_model_set_input_image: unknown pixel format %d", (int)format);
  crema_blob *in = NULL;
  crema_status s = image_input(m, item, &in);
  if (s) return s;
  crema_image img = {0};
  s = to_image(pixels, width, height, stride, format, in->shape[1], &img);
  if (!s) s = place_image(m, in, item, &img);
  crema_image_free(&img);
  return s;
}

crema_status crema_model_set_input_image_file(crema_model *m, int item, const char *path) {
  if (!m || !path) return api_failf(CREMA_ERR_ARGUMENT, "crema_model_set_input_image_file: NULL argument");
  crema_blob *in = NULL;
  crema_status s = image_input(m, item, &in);
  if (s) return s;
  if (access(path, R_OK) != 0)
    return api_failf(CREMA_ERR_IO, "cannot read image \"%s\": %s; check the path", path, strerror(errno));
  crema_error err;
  crema_error_clear(&err);
  crema_image img = {0};
  crema_image_mode mode = in->shape[1] == 1 ? CREMA_IMAGE_GRAY : CREMA_IMAGE_COLOR;
  if (crema_image_decode_file(path, mode, &img, &err)) return api_fail(CREMA_ERR_FORMAT, &err);
  s = place_image(m, in, item, &img);
  crema_image_free(&img);
  return s;
}

typedef struct scored {
  float value;
  int index;
} scored;

/* Descending value, then ascending index; NaN last. */
static int by_score(const void *pa, const void *pb) {
  const scored *a = pa, *b = pb;
  if (a->value > b->value || (b->value != b->value && a->value == a->value)) return -1;
  if (a->value < b->value || (a->value != a->value && b->value == b->value)) return 1;
  return (a->index > b->index) - (a->index < b->index);
}

crema_status crema_model_top_k(const crema_model *m, const char *output, int item, int k, crema_class *out,
                               int *n) {
  if (!m || !out || !n) return api_failf(CREMA_ERR_ARGUMENT, "crema_model_top_k: NULL argument");
  *n = 0;
  if (k < 0) return api_failf(CREMA_ERR_ARGUMENT, "crema_model_top_k: k = %d", k);
  const char *name = output;
  if (!name) name = crema_net_blob_by_name(m->net, "prob") ? "prob" : crema_net_output_name(m->net, 0);
  const crema_blob *b = name ? crema_net_blob_by_name(m->net, name) : NULL;
  if (!b)
    return api_failf(CREMA_ERR_NOT_FOUND, "crema_model_top_k: the net has no output \"%s\"",
                     name ? name : "");
  const int N = b->num_axes > 0 ? b->shape[0] : 1;
  if (item < 0 || item >= N)
    return api_failf(CREMA_ERR_ARGUMENT, "crema_model_top_k: item %d out of range (%s holds %d)", item, name,
                     N);
  const size_t classes = N ? b->count / (size_t)N : 0;
  const float *v = b->data + (size_t)item * classes;
  /* The k best, ties to the lower index (as a stable sort on -value). */
  scored *all = malloc((classes ? classes : 1) * sizeof *all);
  if (!all) return api_failf(CREMA_ERR_MEMORY, "out of memory sorting %zu classes", classes);
  for (size_t c = 0; c < classes; c++) all[c] = (scored){v[c], (int)c};
  qsort(all, classes, sizeof *all, by_score);
  int got = 0;
  for (; got < k && (size_t)got < classes; got++) {
    out[got].index = all[got].index;
    out[got].prob = all[got].value;
    out[got].label = crema_model_label(m, all[got].index);
  }
  free(all);
  *n = got;
  return CREMA_OK;
}

crema_status crema_model_classify_file(crema_model *m, const char *image_path, int k, crema_class *out,
                                       int *n) {
  if (!m || !image_path || !out || !n)
    return api_failf(CREMA_ERR_ARGUMENT, "crema_model_classify_file: NULL argument");
  crema_blob *in = NULL;
  crema_status s = image_input(m, 0, &in);
  if (s) return s;
  if (in->shape[0] != 1) {
    int dims[4] = {1, in->shape[1], in->shape[2], in->shape[3]};
    s = crema_model_reshape_input(m, crema_net_input_name(m->net, 0), 4, dims);
    if (s) return s;
  }
  s = crema_model_set_input_image_file(m, 0, image_path);
  if (!s) s = crema_model_forward(m);
  if (!s) s = crema_model_top_k(m, NULL, 0, k, out, n);
  return s;
}
