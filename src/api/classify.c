/* classify.c -- the classification helpers: a stored preprocessing (preprocess.prototxt,
 * applied by data/preprocess.h), labels, 8-bit images (buffers or files) into the first
 * input, top-k of an output. An image of any size becomes input item `item` through the
 * stored preprocessing, with the channel count forced to the input's and, when the file
 * stores no resize, a resize to the mean file's size (when cropping) or to the input's. */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "api/api_internal.h"
#include "data/mean.h"
#include "proto/io.h"

/* Reads a preprocess.prototxt (data/preprocess.h checks it and resolves a relative
 * mean_file against the file's folder). Replaces any earlier preprocessing. */
crema_status crema_model_load_preprocess(crema_model *m, const char *preprocess_path) {
  if (!m || !preprocess_path)
    return api_failf(CREMA_ERR_ARGUMENT, "crema_model_load_preprocess: NULL argument");
  if (access(preprocess_path, R_OK) != 0)
    return api_failf(CREMA_ERR_IO, "cannot read preprocessing \"%s\": %s; check the path", preprocess_path,
                     strerror(errno));
  crema_error err;
  crema_error_clear(&err);
  crema_preprocess *pp = NULL;
  if (crema_preprocess_load(preprocess_path, &pp, &err)) return api_fail(CREMA_ERR_FORMAT, &err);
  crema_preprocess_free(m->stored);
  crema_preprocess_free(m->pp);
  m->stored = pp;
  m->pp = NULL;
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

/* The preprocessing for the first input's current shape (C, H, W): the stored one with the
 * channel count forced to C and, when it stores no resize, a resize to the mean file's size
 * (when cropping) or to (H, W). Rebuilt only when the shape changed. */
static crema_status derived_preprocess(crema_model *m, int C, int H, int W) {
  if (m->pp && m->pp_c == C && m->pp_h == H && m->pp_w == W) return CREMA_OK;
  crema_preprocess_free(m->pp);
  m->pp = NULL;
  crema_error err;
  crema_error_clear(&err);
  Crema__TransformationParameter *p = NULL;
  if (m->stored) {
    p = crema_message_copy(&crema_preprocess_param(m->stored)->base);
  } else if ((p = malloc(sizeof *p))) {
    crema__transformation_parameter__init(p);
  }
  if (!p) return api_failf(CREMA_ERR_MEMORY, "out of memory preparing the preprocessing");
  p->has_force_gray = p->has_force_color = 1;
  p->force_gray = C == 1;
  p->force_color = C == 3;
  if (!p->resize_height || !p->resize_width) {
    int rh = H, rw = W;
    if (p->crop_size > 0 && p->mean_file && *p->mean_file) {
      /* Caffe's classifier: resize to the mean image's size, then centre-crop. */
      crema_mean mean = {0};
      if (crema_mean_read(p->mean_file, &mean, &err)) {
        crema_message_free(p);
        return api_fail(CREMA_ERR_FORMAT, &err);
      }
      rh = mean.height, rw = mean.width;
      crema_mean_free(&mean);
    }
    p->has_resize_height = p->has_resize_width = 1;
    p->resize_height = (uint32_t)rh;
    p->resize_width = (uint32_t)rw;
  }
  crema_preprocess *pp = NULL;
  int rc = crema_preprocess_create(p, NULL, &pp, &err);
  int oc = 0, oh = 0, ow = 0;
  if (!rc)
    rc = crema_preprocess_shape(pp, C, (int)p->resize_height, (int)p->resize_width, &oc, &oh, &ow, &err);
  crema_message_free(p);
  if (rc) {
    crema_preprocess_free(pp);
    return api_fail(CREMA_ERR_SHAPE, &err);
  }
  if (oc != C || oh != H || ow != W) {
    crema_preprocess_free(pp);
    return api_failf(CREMA_ERR_SHAPE,
                     "the preprocessing makes %dx%dx%d inputs but input %s takes %dx%dx%d; fix crop_size or "
                     "the resize in the preprocess file, or reshape the input",
                     oc, oh, ow, crema_net_input_name(m->net, 0), C, H, W);
  }
  m->pp = pp;
  m->pp_c = C, m->pp_h = H, m->pp_w = W;
  return CREMA_OK;
}

/* Where item `item` of input blob `in` starts, and how many floats it holds. */
static float *item_data(const crema_blob *in, int item, size_t *floats) {
  *floats = (size_t)in->shape[1] * (size_t)in->shape[2] * (size_t)in->shape[3];
  return in->data + (size_t)item * *floats;
}

crema_status crema_model_set_input_image(crema_model *m, int item, const uint8_t *pixels, int width,
                                         int height, size_t stride, crema_pixel_format format) {
  if (!m || !pixels) return api_failf(CREMA_ERR_ARGUMENT, "crema_model_set_input_image: NULL argument");
  if (width <= 0 || height <= 0)
    return api_failf(CREMA_ERR_ARGUMENT, "crema_model_set_input_image: image size %dx%d", width, height);
  static const crema_pixel_order ORDER[] = {
      0, CREMA_PIXELS_GRAY, CREMA_PIXELS_RGB, CREMA_PIXELS_BGR, CREMA_PIXELS_RGBA, CREMA_PIXELS_BGRA};
  if ((int)format < CREMA_PIXEL_FORMAT_GRAY || (int)format > CREMA_PIXEL_FORMAT_BGRA)
    return api_failf(CREMA_ERR_ARGUMENT, "crema_model_set_input_image: unknown pixel format %d", (int)format);
  const size_t bpp = format == CREMA_PIXEL_FORMAT_GRAY ? 1 : format <= CREMA_PIXEL_FORMAT_BGR ? 3 : 4;
  if (stride && stride < (size_t)width * bpp)
    return api_failf(CREMA_ERR_ARGUMENT, "image stride %zu is less than width %d x %zu bytes per pixel",
                     stride, width, bpp);
  crema_blob *in = NULL;
  crema_status s = image_input(m, item, &in);
  if (!s) s = derived_preprocess(m, in->shape[1], in->shape[2], in->shape[3]);
  if (s) return s;
  crema_error err;
  crema_error_clear(&err);
  size_t floats;
  float *out = item_data(in, item, &floats);
  if (crema_preprocess_pixels(m->pp, pixels, width, height, stride, ORDER[format], false, out, floats, &err))
    return api_fail(CREMA_ERR_SHAPE, &err);
  return CREMA_OK;
}

crema_status crema_model_set_input_image_file(crema_model *m, int item, const char *path) {
  if (!m || !path) return api_failf(CREMA_ERR_ARGUMENT, "crema_model_set_input_image_file: NULL argument");
  crema_blob *in = NULL;
  crema_status s = image_input(m, item, &in);
  if (!s) s = derived_preprocess(m, in->shape[1], in->shape[2], in->shape[3]);
  if (s) return s;
  if (access(path, R_OK) != 0)
    return api_failf(CREMA_ERR_IO, "cannot read image \"%s\": %s; check the path", path, strerror(errno));
  crema_error err;
  crema_error_clear(&err);
  size_t floats;
  float *out = item_data(in, item, &floats);
  if (crema_preprocess_file(m->pp, path, false, out, floats, &err)) return api_fail(CREMA_ERR_FORMAT, &err);
  return CREMA_OK;
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

/* The output to rank: `output`, else "prob" when the net has it, else the first output. */
static const crema_blob *class_output(const crema_model *m, const char *output, const char **name) {
  *name = output;
  if (!*name) *name = crema_net_blob_by_name(m->net, "prob") ? "prob" : crema_net_output_name(m->net, 0);
  const crema_blob *b = *name ? crema_net_blob_by_name(m->net, *name) : NULL;
  if (!b) api_failf(CREMA_ERR_NOT_FOUND, "the net has no output \"%s\"", *name ? *name : "");
  return b;
}

/* The k best of classes values, ties to the lower index (as a stable sort on -value). */
static crema_status best_of(const crema_model *m, const float *v, size_t classes, int k, crema_class *out,
                            int *n) {
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

crema_status crema_model_top_k(const crema_model *m, const char *output, int item, int k, crema_class *out,
                               int *n) {
  if (!m || !out || !n) return api_failf(CREMA_ERR_ARGUMENT, "crema_model_top_k: NULL argument");
  *n = 0;
  if (k < 0) return api_failf(CREMA_ERR_ARGUMENT, "crema_model_top_k: k = %d", k);
  const char *name;
  const crema_blob *b = class_output(m, output, &name);
  if (!b) return CREMA_ERR_NOT_FOUND;
  const int N = b->num_axes > 0 ? b->shape[0] : 1;
  if (item < 0 || item >= N)
    return api_failf(CREMA_ERR_ARGUMENT, "crema_model_top_k: item %d out of range (%s holds %d)", item, name,
                     N);
  const size_t classes = N ? b->count / (size_t)N : 0;
  return best_of(m, b->data + (size_t)item * classes, classes, k, out, n);
}

/* Sets the first input's batch size to n (other dims kept). */
static crema_status set_batch(crema_model *m, crema_blob *in, int n) {
  if (in->shape[0] == n) return CREMA_OK;
  int dims[4] = {n, in->shape[1], in->shape[2], in->shape[3]};
  return crema_model_reshape_input(m, crema_net_input_name(m->net, 0), 4, dims);
}

crema_status crema_model_classify_file(crema_model *m, const char *image_path, int k, crema_class *out,
                                       int *n) {
  if (!m || !image_path || !out || !n)
    return api_failf(CREMA_ERR_ARGUMENT, "crema_model_classify_file: NULL argument");
  *n = 0;
  crema_blob *in = NULL;
  crema_status s = image_input(m, 0, &in);
  if (!s) s = set_batch(m, in, 1);
  if (!s) s = crema_model_set_input_image_file(m, 0, image_path);
  if (!s) s = crema_model_forward(m);
  if (!s) s = crema_model_top_k(m, NULL, 0, k, out, n);
  return s;
}

/* Caffe's classifier.py oversample: ten crops (four corners, centre, and the same mirrored)
 * as one batch of 10, the output averaged over them. */
crema_status crema_model_classify_file_oversample(crema_model *m, const char *image_path, int k,
                                                  crema_class *out, int *n) {
  if (!m || !image_path || !out || !n)
    return api_failf(CREMA_ERR_ARGUMENT, "crema_model_classify_file_oversample: NULL argument");
  *n = 0;
  if (!m->stored || !crema_preprocess_param(m->stored)->crop_size)
    return api_failf(CREMA_ERR_ARGUMENT,
                     "oversampling takes crops: load a preprocess file with a crop_size first");
  crema_blob *in = NULL;
  crema_status s = image_input(m, 0, &in);
  if (!s) s = set_batch(m, in, CREMA_OVERSAMPLE_CROPS);
  if (!s) s = derived_preprocess(m, in->shape[1], in->shape[2], in->shape[3]);
  if (s) return s;
  if (access(image_path, R_OK) != 0)
    return api_failf(CREMA_ERR_IO, "cannot read image \"%s\": %s; check the path", image_path,
                     strerror(errno));
  crema_error err;
  crema_error_clear(&err);
  if (crema_preprocess_file(m->pp, image_path, true, in->data, in->count, &err))
    return api_fail(CREMA_ERR_FORMAT, &err);
  if ((s = crema_model_forward(m))) return s;
  const char *name;
  const crema_blob *b = class_output(m, NULL, &name);
  if (!b) return CREMA_ERR_NOT_FOUND;
  const size_t classes = b->count / CREMA_OVERSAMPLE_CROPS;
  float *mean = malloc((classes ? classes : 1) * sizeof *mean);
  if (!mean) return api_failf(CREMA_ERR_MEMORY, "out of memory averaging %zu classes", classes);
  for (size_t c = 0; c < classes; c++) {
    double sum = 0;
    for (int i = 0; i < CREMA_OVERSAMPLE_CROPS; i++) sum += b->data[(size_t)i * classes + c];
    mean[c] = (float)(sum / CREMA_OVERSAMPLE_CROPS);
  }
  s = best_of(m, mean, classes, k, out, n);
  free(mean);
  return s;
}
