/* shape_rules.c -- one shape rule per layer type: tops, parameter shapes and multiply-adds
 * from the bottoms' shapes and the layer's message (see shape_rules.h). */
#include "report/shape_rules.h"

#include <stdarg.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "data/datum.h"
#include "data/image.h"
#include "data/list_file.h"
#include "data/lmdb_db.h"

static int canon_axis(int axis, int num_axes) { return axis < 0 ? axis + num_axes : axis; }

int crema_shape_fail(crema_shape_ctx *c, const char *fmt, ...) {
  int n = snprintf(c->why, c->why_size, "layer \"%s\" (%s): ", c->l->name ? c->l->name : "",
                   c->l->type ? c->l->type : "?");
  if (n < 0 || (size_t)n >= c->why_size) return -1;
  va_list ap;
  va_start(ap, fmt);
  vsnprintf(c->why + n, c->why_size - (size_t)n, fmt, ap);
  va_end(ap);
  return -1;
}

/* Records a parameter blob of n dims and adds its size to the layer's count. */
static void add_param(crema_shape_ctx *c, int n, int64_t d0, int64_t d1, int64_t d2, int64_t d3) {
  if (c->ls->n_param_blobs >= 4) return;
  crema_blob_shape *s = &c->ls->param_shapes[c->ls->n_param_blobs++];
  const int64_t d[4] = {d0, d1, d2, d3};
  s->num_axes = n;
  for (int i = 0; i < n; i++) s->dim[i] = d[i];
  c->params += crema_blob_shape_count(s);
}

static int need_bottoms(crema_shape_ctx *c, int n) {
  if (c->n_bottom < n) return crema_shape_fail(c, "%s", "has fewer bottoms than its type needs");
  return 0;
}

static void set_shape(crema_blob_shape *s, int n, const int64_t *d) {
  s->num_axes = n;
  for (int i = 0; i < n; i++) s->dim[i] = d[i];
}

static int from_blob_shape(crema_shape_ctx *c, const Crema__BlobShape *bs, crema_blob_shape *out) {
  if (!bs || bs->n_dim > CREMA_MAX_AXES)
    return crema_shape_fail(c, "%s", "shape missing or with too many axes");
  out->num_axes = (int)bs->n_dim;
  for (size_t i = 0; i < bs->n_dim; i++) out->dim[i] = bs->dim[i];
  return 0;
}

static int rule_input(crema_shape_ctx *c) {
  const Crema__InputParameter *p = c->l->input_param;
  if (!p || !p->n_shape) return crema_shape_fail(c, "%s", "input_param has no shape");
  for (int t = 0; t < c->n_top; t++)
    if (from_blob_shape(c,
                        p->shape[p->n_shape == 1          ? 0
                                 : (size_t)t < p->n_shape ? (size_t)t
                                                          : p->n_shape - 1],
                        &c->top[t]))
      return -1;
  return 0;
}

static int rule_dummy(crema_shape_ctx *c) {
  const Crema__DummyDataParameter *p = c->l->dummy_data_param;
  if (!p) return crema_shape_fail(c, "%s", "no dummy_data_param");
  for (int t = 0; t < c->n_top; t++) {
    if (p->n_shape) {
      if (from_blob_shape(c, p->shape[(size_t)t < p->n_shape ? (size_t)t : 0], &c->top[t])) return -1;
    } else if (p->n_num) {
#define PICK(f) (int64_t)(p->n_##f > (size_t)t ? p->f[t] : p->f[0])
      int64_t d[4] = {PICK(num), p->n_channels ? PICK(channels) : 1, p->n_height ? PICK(height) : 1,
                      p->n_width ? PICK(width) : 1};
#undef PICK
      set_shape(&c->top[t], 4, d);
    } else
      return crema_shape_fail(c, "%s", "dummy_data_param has no shape");
  }
  return 0;
}

static void data_tops(crema_shape_ctx *c, int64_t batch, int64_t ch, int64_t h, int64_t w, uint32_t crop) {
  if (crop) h = w = crop;
  int64_t d[4] = {batch, ch, h, w};
  set_shape(&c->top[0], 4, d);
  if (c->n_top > 1) set_shape(&c->top[1], 1, d);
}

static int rule_data(crema_shape_ctx *c) {
  const Crema__DataParameter *p = c->l->data_param;
  if (!p || !p->source) return crema_shape_fail(c, "%s", "no data_param source");
  crema_lmdb *db = NULL;
  crema_error e;
  if (crema_lmdb_open(p->source, &db, &e))
    return crema_shape_fail(c, "cannot read its data set here: %s", e.msg);
  const void *key, *val;
  size_t kl, vl;
  crema_lmdb_current(db, &key, &kl, &val, &vl);
  crema_datum_view v;
  crema_bytes scratch = {0};
  int ch = 0, h = 0, w = 0;
  const uint8_t *px = NULL;
  int rc = crema_datum_parse(val, vl, "the first record", &v, &e);
  if (!rc && v.encoded)
    rc = crema_datum_pixels(&v, CREMA_IMAGE_NATIVE, "the first record", &scratch, &ch, &h, &w, &px, &e);
  if (!rc && !v.encoded) ch = v.channels, h = v.height, w = v.width;
  crema_bytes_free(&scratch);
  crema_lmdb_close(db);
  if (rc) return crema_shape_fail(c, "cannot read its first record: %s", e.msg);
  const Crema__TransformationParameter *tp = c->l->transform_param;
  if (tp && tp->force_color) ch = 3;
  if (tp && tp->force_gray) ch = 1;
  data_tops(c, p->batch_size, ch, h, w, tp ? tp->crop_size : 0);
  return 0;
}

static int rule_image_data(crema_shape_ctx *c) {
  const Crema__ImageDataParameter *p = c->l->image_data_param;
  if (!p || !p->source) return crema_shape_fail(c, "%s", "no image_data_param source");
  const Crema__TransformationParameter *tp = c->l->transform_param;
  const int64_t ch = p->is_color ? 3 : 1;
  if (p->new_height && p->new_width) {
    data_tops(c, p->batch_size, ch, p->new_height, p->new_width, tp ? tp->crop_size : 0);
    return 0;
  }
  /* The size comes from the first image (as in Caffe's ImageDataLayer setup). */
  crema_image_list list;
  crema_error e;
  if (crema_image_list_read(p->source, &list, &e))
    return crema_shape_fail(c, "cannot read its image list here: %s", e.msg);
  size_t n = strlen(p->root_folder ? p->root_folder : "") + strlen(list.entries[0].path) + 1;
  char *path = malloc(n);
  crema_image img = {0};
  int rc = path ? 0 : -1;
  if (path) {
    snprintf(path, n, "%s%s", p->root_folder ? p->root_folder : "", list.entries[0].path);
    rc = crema_image_decode_file(path, p->is_color ? CREMA_IMAGE_COLOR : CREMA_IMAGE_GRAY, &img, &e);
  }
  crema_image_list_free(&list);
  if (rc) {
    int r = crema_shape_fail(c, "cannot read its first image %s: %s", path ? path : "",
                             path ? e.msg : "out of memory");
    free(path);
    return r;
  }
  free(path);
  const int64_t h = p->new_height ? (int64_t)p->new_height : img.height;
  const int64_t w = p->new_width ? (int64_t)p->new_width : img.width;
  crema_image_free(&img);
  data_tops(c, p->batch_size, ch, h, w, tp ? tp->crop_size : 0);
  return 0;
}

/* Spatial settings shared by Convolution and Deconvolution. */
static int conv_geometry(crema_shape_ctx *c, const Crema__ConvolutionParameter *p, int n_spatial, int64_t *k,
                         int64_t *s, int64_t *pd, int64_t *dl) {
  for (int i = 0; i < n_spatial; i++) {
    k[i] = p->n_kernel_size ? p->kernel_size[(size_t)i < p->n_kernel_size ? (size_t)i : 0] : 0;
    s[i] = p->n_stride ? p->stride[(size_t)i < p->n_stride ? (size_t)i : 0] : 1;
    pd[i] = p->n_pad ? p->pad[(size_t)i < p->n_pad ? (size_t)i : 0] : 0;
    dl[i] = p->n_dilation ? p->dilation[(size_t)i < p->n_dilation ? (size_t)i : 0] : 1;
  }
  if (n_spatial == 2) {
    if (p->has_kernel_h) k[0] = p->kernel_h, k[1] = p->kernel_w;
    if (p->has_stride_h) s[0] = p->stride_h, s[1] = p->stride_w;
    if (p->has_pad_h) pd[0] = p->pad_h, pd[1] = p->pad_w;
  }
  for (int i = 0; i < n_spatial; i++) {
    if (k[i] <= 0 || s[i] <= 0) return crema_shape_fail(c, "%s", "kernel or stride is 0");
    if (k[i] > INT32_MAX || s[i] > INT32_MAX || pd[i] > INT32_MAX || dl[i] > INT32_MAX)
      return crema_shape_fail(c, "%s", "kernel, stride, pad or dilation is too large");
  }
  return 0;
}

static int rule_conv(crema_shape_ctx *c, bool deconv) {
  const Crema__ConvolutionParameter *p = c->l->convolution_param;
  if (!p || need_bottoms(c, 1)) return p ? -1 : crema_shape_fail(c, "%s", "no convolution_param");
  const crema_blob_shape *b = c->bottom[0];
  const int axis = canon_axis(p->axis, b->num_axes), ns = b->num_axes - axis - 1;
  if (axis < 0 || ns < 1 || ns > 3) return crema_shape_fail(c, "%s", "unsupported axes");
  int64_t k[3], s[3], pd[3], dl[3];
  if (conv_geometry(c, p, ns, k, s, pd, dl)) return -1;
  const int64_t cin = b->dim[axis], g = p->group ? p->group : 1, cout = p->num_output;
  if (cin % g || cout % g) return crema_shape_fail(c, "%s", "channels not divisible by group");
  crema_blob_shape *t = &c->top[0];
  *t = *b;
  t->dim[axis] = cout;
  double kvol = 1, in_sp = 1, out_sp = 1;
  for (int i = 0; i < ns; i++) {
    const int64_t in = b->dim[axis + 1 + i], ext = dl[i] * (k[i] - 1) + 1;
    const int64_t out = deconv ? s[i] * (in - 1) + ext - 2 * pd[i] : (in + 2 * pd[i] - ext) / s[i] + 1;
    if (out <= 0) return crema_shape_fail(c, "%s", "the kernel is larger than the padded input");
    t->dim[axis + 1 + i] = out;
    kvol *= (double)k[i], in_sp *= (double)in, out_sp *= (double)out;
  }
  double outer = 1;
  for (int i = 0; i < axis; i++) outer *= (double)b->dim[i];
  crema_blob_shape *w = &c->ls->param_shapes[0];
  c->ls->n_param_blobs = 1;
  w->num_axes = 2 + ns;
  w->dim[0] = deconv ? cin : cout;
  w->dim[1] = deconv ? cout / g : cin / g;
  for (int i = 0; i < ns; i++) w->dim[2 + i] = k[i];
  c->params = crema_blob_shape_count(w);
  if (p->bias_term) add_param(c, 1, cout, 0, 0, 0);
  c->macs = deconv ? outer * (double)cin * in_sp * (double)(cout / g) * kvol
                   : outer * (double)cout * out_sp * (double)(cin / g) * kvol;
  for (int t2 = 1; t2 < c->n_top && t2 < c->n_bottom; t2++) c->top[t2] = c->top[0];
  return 0;
}

static int rule_pool(crema_shape_ctx *c) {
  const Crema__PoolingParameter *p = c->l->pooling_param;
  if (!p) return crema_shape_fail(c, "%s", "no pooling_param");
  if (need_bottoms(c, 1)) return -1;
  const crema_blob_shape *b = c->bottom[0];
  if (b->num_axes != 4) return crema_shape_fail(c, "%s", "pooling needs a 4-axis bottom");
  int64_t k[2] = {p->kernel_size, p->kernel_size}, s[2] = {p->stride, p->stride}, pd[2] = {p->pad, p->pad};
  if (p->has_kernel_h) k[0] = p->kernel_h, k[1] = p->kernel_w;
  if (p->has_stride_h) s[0] = p->stride_h, s[1] = p->stride_w;
  if (p->has_pad_h) pd[0] = p->pad_h, pd[1] = p->pad_w;
  crema_blob_shape *t = &c->top[0];
  *t = *b;
  if (p->global_pooling) {
    t->dim[2] = t->dim[3] = 1;
  } else {
    for (int i = 0; i < 2; i++) {
      if (k[i] <= 0 || s[i] <= 0) return crema_shape_fail(c, "%s", "kernel or stride is 0");
      const int64_t in = b->dim[2 + i], num = in + 2 * pd[i] - k[i];
      int64_t out = (p->round_mode == CREMA__POOLING_PARAMETER__ROUND_MODE__FLOOR ? num / s[i]
                                                                                  : (num + s[i] - 1) / s[i]) +
                    1;
      if (pd[i] && (out - 1) * s[i] >= in + pd[i]) out--; /* Caffe: the last window starts inside the image */
      if (out <= 0) return crema_shape_fail(c, "%s", "the kernel is larger than the padded input");
      t->dim[2 + i] = out;
    }
  }
  if (c->n_top > 1) c->top[1] = *t;
  return 0;
}

static int rule_ip(crema_shape_ctx *c) {
  const Crema__InnerProductParameter *p = c->l->inner_product_param;
  if (!p) return crema_shape_fail(c, "%s", "no inner_product_param");
  if (need_bottoms(c, 1)) return -1;
  const crema_blob_shape *b = c->bottom[0];
  const int axis = canon_axis(p->axis, b->num_axes);
  if (axis < 0 || axis > b->num_axes) return crema_shape_fail(c, "%s", "axis out of range");
  double m = 1, kd = 1;
  for (int i = 0; i < axis; i++) m *= (double)b->dim[i];
  for (int i = axis; i < b->num_axes; i++) kd *= (double)b->dim[i];
  if (kd > 9e18) return crema_shape_fail(c, "%s", "the input is too large");
  const int64_t k = (int64_t)kd;
  crema_blob_shape *t = &c->top[0];
  t->num_axes = axis + 1;
  for (int i = 0; i < axis; i++) t->dim[i] = b->dim[i];
  t->dim[axis] = p->num_output;
  if (p->transpose)
    add_param(c, 2, k, p->num_output, 0, 0);
  else
    add_param(c, 2, p->num_output, k, 0, 0);
  if (p->bias_term) add_param(c, 1, p->num_output, 0, 0, 0);
  c->macs = m * (double)p->num_output * kd;
  return 0;
}

/* The parameter of Scale and Bias with one bottom: the bottom's axes [axis, axis+num_axes). */
static void channel_param(crema_shape_ctx *c, const crema_blob_shape *b, int axis, int num_axes) {
  axis = canon_axis(axis, b->num_axes);
  int end = num_axes < 0 ? b->num_axes : axis + num_axes;
  if (c->ls->n_param_blobs >= 4 || axis < 0) return;
  crema_blob_shape *s = &c->ls->param_shapes[c->ls->n_param_blobs++];
  s->num_axes = 0;
  for (int i = axis; i < end && i < b->num_axes; i++) s->dim[s->num_axes++] = b->dim[i];
  c->params += crema_blob_shape_count(s);
}

static int rule_same(crema_shape_ctx *c) {
  if (need_bottoms(c, 1)) return -1;
  for (int t = 0; t < c->n_top; t++) c->top[t] = *c->bottom[t < c->n_bottom ? t : 0];
  const char *type = c->l->type;
  const crema_blob_shape *b = c->bottom[0];
  const int64_t ch = b->num_axes > 1 ? b->dim[1] : 1;
  if (!strcmp(type, "BatchNorm"))
    add_param(c, 1, ch, 0, 0, 0), add_param(c, 1, ch, 0, 0, 0), add_param(c, 1, 1, 0, 0, 0);
  if (!strcmp(type, "PReLU"))
    add_param(c, 1, c->l->prelu_param && c->l->prelu_param->channel_shared ? 1 : ch, 0, 0, 0);
  if (!strcmp(type, "Scale") && c->n_bottom == 1) {
    const Crema__ScaleParameter *p = c->l->scale_param;
    channel_param(c, b, p ? p->axis : 1, p ? p->num_axes : 1);
    if (p && p->bias_term) channel_param(c, b, p->axis, p->num_axes);
  }
  if (!strcmp(type, "Scale") && c->n_bottom == 2 && c->l->scale_param && c->l->scale_param->bias_term)
    add_param(c, 1, crema_blob_shape_count(c->bottom[1]), 0, 0, 0);
  if (!strcmp(type, "Bias") && c->n_bottom == 1) {
    const Crema__BiasParameter *p = c->l->bias_param;
    channel_param(c, b, p ? p->axis : 1, p ? p->num_axes : 1);
  }
  return 0;
}

static int rule_concat(crema_shape_ctx *c) {
  if (need_bottoms(c, 1)) return -1;
  const Crema__ConcatParameter *p = c->l->concat_param;
  const crema_blob_shape *b = c->bottom[0];
  int axis = p ? (p->has_concat_dim ? (int)p->concat_dim : p->axis) : 1;
  axis = canon_axis(axis, b->num_axes);
  if (axis < 0 || axis >= b->num_axes) return crema_shape_fail(c, "%s", "axis out of range");
  c->top[0] = *b;
  for (int i = 1; i < c->n_bottom; i++) c->top[0].dim[axis] += c->bottom[i]->dim[axis];
  return 0;
}

static int rule_slice(crema_shape_ctx *c) {
  if (need_bottoms(c, 1)) return -1;
  const Crema__SliceParameter *p = c->l->slice_param;
  const crema_blob_shape *b = c->bottom[0];
  int axis = p ? (p->has_slice_dim ? (int)p->slice_dim : p->axis) : 1;
  axis = canon_axis(axis, b->num_axes);
  if (axis < 0 || axis >= b->num_axes) return crema_shape_fail(c, "%s", "axis out of range");
  int64_t prev = 0;
  for (int t = 0; t < c->n_top; t++) {
    c->top[t] = *b;
    if (p && p->n_slice_point) {
      int64_t end = (size_t)t < p->n_slice_point ? (int64_t)p->slice_point[t] : b->dim[axis];
      c->top[t].dim[axis] = end - prev;
      prev = end;
    } else
      c->top[t].dim[axis] = b->dim[axis] / c->n_top;
  }
  return 0;
}

static int rule_flatten(crema_shape_ctx *c) {
  if (need_bottoms(c, 1)) return -1;
  const crema_blob_shape *b = c->bottom[0];
  const Crema__FlattenParameter *p = c->l->flatten_param;
  int a = canon_axis(p ? p->axis : 1, b->num_axes), e = canon_axis(p ? p->end_axis : -1, b->num_axes);
  if (a < 0 || e >= b->num_axes || a > e) return crema_shape_fail(c, "%s", "axes out of range");
  crema_blob_shape *t = &c->top[0];
  t->num_axes = 0;
  for (int i = 0; i < a; i++) t->dim[t->num_axes++] = b->dim[i];
  double n = 1;
  for (int i = a; i <= e; i++) n *= (double)b->dim[i];
  t->dim[t->num_axes++] = (int64_t)n; /* bottoms are checked to hold fewer than 2^50 values */
  for (int i = e + 1; i < b->num_axes; i++) t->dim[t->num_axes++] = b->dim[i];
  return 0;
}

static int rule_reshape(crema_shape_ctx *c) {
  if (need_bottoms(c, 1)) return -1;
  const crema_blob_shape *b = c->bottom[0];
  const Crema__ReshapeParameter *p = c->l->reshape_param;
  if (!p || !p->shape) return crema_shape_fail(c, "%s", "no reshape_param shape");
  const int start = canon_axis(p->axis < 0 ? p->axis + 1 : p->axis, b->num_axes);
  const int end = p->num_axes < 0 ? b->num_axes : start + p->num_axes;
  if (start < 0 || end > b->num_axes || (int)p->shape->n_dim + b->num_axes - (end - start) > CREMA_MAX_AXES)
    return crema_shape_fail(c, "%s", "axes out of range");
  crema_blob_shape *t = &c->top[0];
  t->num_axes = 0;
  for (int i = 0; i < start; i++) t->dim[t->num_axes++] = b->dim[i];
  int infer = -1;
  for (size_t i = 0; i < p->shape->n_dim; i++) {
    int64_t d = p->shape->dim[i];
    if (d == 0) d = b->dim[start + (int)i];
    if (d == -1) infer = t->num_axes, d = 1;
    t->dim[t->num_axes++] = d;
  }
  for (int i = end; i < b->num_axes; i++) t->dim[t->num_axes++] = b->dim[i];
  if (infer >= 0) {
    double known = crema_blob_shape_count(t);
    if (!(known > 0)) return crema_shape_fail(c, "%s", "cannot infer the -1 dimension");
    t->dim[infer] = (int64_t)(crema_blob_shape_count(b) / known);
  }
  return 0;
}

static int rule_scalar(crema_shape_ctx *c) {
  if (need_bottoms(c, 1)) return -1;
  c->top[0].num_axes = 0;
  const char *type = c->l->type;
  if (c->n_top > 1 && !strcmp(type, "SoftmaxWithLoss")) c->top[1] = *c->bottom[0];
  if (c->n_top > 1 && !strcmp(type, "Accuracy")) { /* per-class accuracies */
    const Crema__AccuracyParameter *p = c->l->accuracy_param;
    int axis = canon_axis(p ? p->axis : 1, c->bottom[0]->num_axes);
    c->top[1].num_axes = 1;
    c->top[1].dim[0] = axis >= 0 && axis < c->bottom[0]->num_axes ? c->bottom[0]->dim[axis] : 1;
  }
  return 0;
}

static int rule_argmax(crema_shape_ctx *c) {
  if (need_bottoms(c, 1)) return -1;
  const Crema__ArgMaxParameter *p = c->l->argmax_param;
  const crema_blob_shape *b = c->bottom[0];
  const int64_t k = p ? p->top_k : 1;
  crema_blob_shape *t = &c->top[0];
  if (p && p->has_axis) {
    *t = *b;
    t->dim[canon_axis(p->axis, b->num_axes)] = k;
  } else {
    int64_t d[3] = {b->num_axes ? b->dim[0] : 1, p && p->out_max_val ? 2 : 1, k};
    set_shape(t, 3, d);
  }
  return 0;
}

static int rule_conv_fwd(crema_shape_ctx *c) { return rule_conv(c, false); }
static int rule_deconv(crema_shape_ctx *c) { return rule_conv(c, true); }

static const struct {
  const char *type;
  crema_shape_rule rule;
} RULES[] = {
    {"Input", rule_input},
    {"DummyData", rule_dummy},
    {"Data", rule_data},
    {"ImageData", rule_image_data},
    {"Convolution", rule_conv_fwd},
    {"Deconvolution", rule_deconv},
    {"Pooling", rule_pool},
    {"InnerProduct", rule_ip},
    {"LRN", rule_same},
    {"ReLU", rule_same},
    {"PReLU", rule_same},
    {"RReLU", rule_same},
    {"ELU", rule_same},
    {"Sigmoid", rule_same},
    {"TanH", rule_same},
    {"AbsVal", rule_same},
    {"Power", rule_same},
    {"Dropout", rule_same},
    {"BatchNorm", rule_same},
    {"Scale", rule_same},
    {"Bias", rule_same},
    {"Softmax", rule_same},
    {"Split", rule_same},
    {"Eltwise", rule_same},
    {"SoftmaxWithLoss", rule_scalar},
    {"EuclideanLoss", rule_scalar},
    {"SigmoidCrossEntropyLoss", rule_scalar},
    {"Accuracy", rule_scalar},
    {"Concat", rule_concat},
    {"Slice", rule_slice},
    {"Flatten", rule_flatten},
    {"Reshape", rule_reshape},
    {"ArgMax", rule_argmax},
    {"Silence", rule_same},
};

crema_shape_rule crema_shape_rule_lookup(const char *type) {
  for (size_t i = 0; type && i < sizeof RULES / sizeof RULES[0]; i++)
    if (!strcmp(RULES[i].type, type)) return RULES[i].rule;
  return NULL;
}
