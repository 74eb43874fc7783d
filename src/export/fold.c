/* fold.c -- BatchNorm (+ Scale) folded into the Convolution or InnerProduct before it.
 *
 * Caffe's BatchNorm in TEST keeps three blobs: m, v and a factor f; with s = 1/f (0 when
 * f == 0), y = (x - s*m) / sqrt(s*v + eps). A Scale right after it gives gamma*y (+ beta).
 * For a layer z = W x + b feeding only that chain, per output channel o:
 *   a_o = gamma_o / sqrt(s*v_o + eps),  W'_o = a_o * W_o,  b'_o = a_o * (b_o - s*m_o) + beta_o.
 * Arithmetic is in double; the folded net matches the unfolded one to float rounding. */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "export/edit.h"
#include "export/export.h"
#include "proto/io.h"

/* Appends "sep a<mid>b" to a report list, truncating silently at the buffer's end. */
static void append(char *buf, const char *a, const char *mid, const char *b) {
  const char *parts[4] = {buf[0] ? ", " : "", a, mid, b};
  size_t used = strlen(buf);
  for (int i = 0; i < 4; i++)
    for (const char *c = parts[i]; *c && used + 1 < CREMA_EXPORT_MAX_REPORT; c++) buf[used++] = *c;
  buf[used] = '\0';
}

/* Whether the version of blob `name` written by layer `from` is read only by layer `only`
 * (scanning on until `name` is written again). */
static bool read_only_by(const Crema__NetParameter *m, size_t from, size_t only, const char *name) {
  for (size_t k = from + 1; k < m->n_layer; k++) {
    const Crema__LayerParameter *lp = m->layer[k];
    if (k == only) {
      if (crema_edit_writes(lp, name)) return true;
      continue;
    }
    if (crema_edit_reads(lp, name)) return false;
    if (crema_edit_writes(lp, name)) return true;
  }
  return true;
}

/* The last layer before i writing name, or -1. */
static int producer(const Crema__NetParameter *m, size_t i, const char *name) {
  for (size_t k = i; k-- > 0;)
    if (crema_edit_writes(m->layer[k], name)) return (int)k;
  return -1;
}

/* The first layer after i reading name, or -1. */
static int consumer(const Crema__NetParameter *m, size_t i, const char *name) {
  for (size_t k = i + 1; k < m->n_layer; k++)
    if (crema_edit_reads(m->layer[k], name)) return (int)k;
  return -1;
}

/* Why layer `prod` (with BatchNorm `bn` after it) cannot take the fold, or NULL. */
static const char *cannot_fold(const Crema__NetParameter *m, int prod, size_t bn) {
  const Crema__LayerParameter *b = m->layer[bn];
  if (b->batch_norm_param && b->batch_norm_param->has_use_global_stats &&
      !b->batch_norm_param->use_global_stats)
    return "it uses batch statistics at test time (use_global_stats: false)";
  if (b->n_blobs != 3 || b->n_bottom != 1 || b->n_top != 1) return "it does not hold Caffe's three blobs";
  if (prod < 0) return "no layer before it writes its input";
  const Crema__LayerParameter *p = m->layer[prod];
  bool conv = !strcmp(p->type, "Convolution"), ip = !strcmp(p->type, "InnerProduct");
  if (!conv && !ip) return "the layer before it is not a Convolution or InnerProduct";
  if (p->n_top != 1 || p->n_blobs < 1) return "the layer before it has several tops or no weights";
  if (ip && p->inner_product_param && p->inner_product_param->axis != 1)
    return "the InnerProduct before it has an axis other than 1";
  if (conv && p->convolution_param && p->convolution_param->axis != 1)
    return "the Convolution before it has an axis other than 1";
  if (!read_only_by(m, (size_t)prod, bn, b->bottom[0])) return "the layer before it also feeds other layers";
  return NULL;
}

static int fold_one(Crema__NetParameter *m, int prod, size_t bn, int scale, crema_error *err) {
  Crema__LayerParameter *p = m->layer[prod], *b = m->layer[bn];
  Crema__LayerParameter *s = scale >= 0 ? m->layer[scale] : NULL;
  bool ip = !strcmp(p->type, "InnerProduct");
  bool transpose = ip && p->inner_product_param && p->inner_product_param->transpose;
  size_t channels = crema_edit_blob_count(b->blobs[0]);
  Crema__BlobProto *W = p->blobs[0];
  size_t wcount = W->n_data;
  if (!wcount || wcount % channels || b->blobs[0]->n_data != channels || b->blobs[1]->n_data != channels ||
      b->blobs[2]->n_data != 1)
    return crema_fail(err, "cannot fold BatchNorm \"%s\" into \"%s\": %zu channels against %zu weights",
                      b->name, p->name, channels, wcount);
  if (s && (s->blobs[0]->n_data != channels || (s->n_blobs > 1 && s->blobs[1]->n_data != channels)))
    return crema_fail(err, "cannot fold Scale \"%s\": its blobs do not have %zu values", s->name, channels);
  /* the bias: the existing one, or a new zero blob */
  if (p->n_blobs < 2) {
    Crema__BlobProto **g = realloc(p->blobs, 2 * sizeof *g);
    if (!g) return crema_fail(err, "out of memory");
    p->blobs = g;
    float *zeros = calloc(channels, sizeof *zeros);
    int dims[1] = {(int)channels};
    p->blobs[1] = zeros ? crema_edit_new_blob(dims, 1, zeros, channels) : NULL;
    free(zeros);
    if (!p->blobs[1]) return crema_fail(err, "out of memory");
    p->n_blobs = 2;
    if (ip) {
      p->inner_product_param->has_bias_term = 1;
      p->inner_product_param->bias_term = 1;
    } else {
      p->convolution_param->has_bias_term = 1;
      p->convolution_param->bias_term = 1;
    }
  }
  if (p->blobs[1]->n_data != channels)
    return crema_fail(err, "cannot fold into \"%s\": its bias has %zu values, not %zu", p->name,
                      (size_t)p->blobs[1]->n_data, channels);
  double f = b->blobs[2]->data[0], sf = f == 0.0 ? 0.0 : 1.0 / f;
  double eps = b->batch_norm_param ? b->batch_norm_param->eps : 1e-5;
  float *w = W->data, *bias = p->blobs[1]->data;
  size_t per = wcount / channels;
  for (size_t o = 0; o < channels; o++) {
    double mean = sf * b->blobs[0]->data[o], var = sf * b->blobs[1]->data[o];
    double gamma = s ? s->blobs[0]->data[o] : 1.0;
    double beta = (s && s->n_blobs > 1) ? s->blobs[1]->data[o] : 0.0;
    double a = gamma / sqrt(var + eps);
    if (transpose) /* W is (K, N): column o */
      for (size_t k = 0; k < per; k++) w[k * channels + o] = (float)(a * w[k * channels + o]);
    else
      for (size_t k = 0; k < per; k++) w[o * per + k] = (float)(a * w[o * per + k]);
    bias[o] = (float)(a * ((double)bias[o] - mean) + beta);
  }
  const char *final_top = s ? s->top[0] : b->top[0];
  if (strcmp(p->top[0], final_top) && crema_edit_set_string(&p->top[0], final_top))
    return crema_fail(err, "out of memory");
  if (s) crema_edit_remove_layer(m, (size_t)scale);
  crema_edit_remove_layer(m, bn);
  return 0;
}

int crema_export_fold_batchnorm(const Crema__NetParameter *model, Crema__NetParameter **out,
                                crema_fold_report *report, crema_error *err) {
  crema_fold_report local;
  crema_fold_report *rep = report ? report : &local;
  memset(rep, 0, sizeof *rep);
  *out = NULL;
  Crema__NetParameter *m = crema_message_copy(&model->base);
  if (!m) return crema_fail(err, "out of memory");
  for (size_t i = 0; i < m->n_layer;) {
    Crema__LayerParameter *b = m->layer[i];
    if (!b->type || strcmp(b->type, "BatchNorm") || b->n_bottom != 1) {
      i++;
      continue;
    }
    int prod = producer(m, i, b->bottom[0]);
    const char *why = cannot_fold(m, prod, i);
    if (why) {
      append(rep->kept, b->name, ": ", why);
      rep->n_kept++;
      i++;
      continue;
    }
    int sc = b->n_top == 1 ? consumer(m, i, b->top[0]) : -1;
    if (sc >= 0) {
      const Crema__LayerParameter *s = m->layer[sc];
      const Crema__ScaleParameter *sp = s->scale_param;
      bool ok = !strcmp(s->type, "Scale") && s->n_bottom == 1 && s->n_top == 1 && s->n_blobs >= 1 &&
                (!sp || (sp->axis == 1 && sp->num_axes == 1)) && read_only_by(m, i, (size_t)sc, b->top[0]);
      if (!ok) sc = -1;
    }
    char pname[128], sname[128];
    snprintf(pname, sizeof pname, "%s", m->layer[prod]->name);
    snprintf(sname, sizeof sname, "%s", sc >= 0 ? m->layer[sc]->name : "");
    char bname[128];
    snprintf(bname, sizeof bname, "%s", b->name);
    if (fold_one(m, prod, i, sc, err)) {
      crema_message_free(m);
      return -1;
    }
    if (sc >= 0) {
      char with[300];
      snprintf(with, sizeof with, "%.140s+%.140s", bname, sname);
      append(rep->folded, with, " into ", pname);
      rep->n_scale++;
    } else {
      append(rep->folded, bname, " into ", pname);
    }
    rep->n_folded++;
  }
  *out = m;
  return 0;
}
