/* summary.c -- a net's shapes, parameters, multiply-adds and memory from its message (see
 * summary.h); the per-type rules are in shape_rules.c. */
#include "report/summary.h"

#include <inttypes.h>
#include <math.h>
#include <stdarg.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "report/shape_rules.h"

/* Blob names and their current shapes; in-place tops overwrite the entry. Nets have a few
 * hundred blobs at most, so a linear search is fine. `uses` counts consumers of the current
 * producer, for Caffe's Split accounting. */
typedef struct blob_table {
  int n, cap;
  const char **names;
  crema_blob_shape *shapes;
  int *uses;
} blob_table;

static int find(const blob_table *t, const char *name) {
  for (int i = t->n - 1; i >= 0; i--)
    if (!strcmp(t->names[i], name)) return i;
  return -1;
}

static int put(blob_table *t, const char *name, const crema_blob_shape *s) {
  int i = find(t, name);
  if (i < 0) {
    if (t->n == t->cap) {
      int cap = t->cap ? 2 * t->cap : 64;
      const char **nm = realloc(t->names, (size_t)cap * sizeof *nm);
      if (!nm) return -1;
      t->names = nm;
      crema_blob_shape *sh = realloc(t->shapes, (size_t)cap * sizeof *sh);
      if (!sh) return -1;
      t->shapes = sh;
      int *u = realloc(t->uses, (size_t)cap * sizeof *u);
      if (!u) return -1;
      t->uses = u;
      t->cap = cap;
    }
    i = t->n++;
    t->names[i] = name;
  }
  t->shapes[i] = *s;
  t->uses[i] = 0;
  return 0;
}

double crema_blob_shape_count(const crema_blob_shape *s) {
  double n = 1;
  for (int i = 0; i < s->num_axes; i++) n *= (double)s->dim[i];
  return n;
}

void crema_blob_shape_text(const crema_blob_shape *s, char *buf, size_t size) {
  size_t k = 0;
  buf[0] = '\0';
  for (int i = 0; i < s->num_axes && k < size; i++)
    k += (size_t)snprintf(buf + k, size - k, "%s%" PRId64, i ? "x" : "", s->dim[i]);
  if (!s->num_axes) snprintf(buf, size, "scalar");
}

void crema_format_count(double v, char *buf, size_t size) {
  const char *unit[] = {"", " k", " M", " G", " T"};
  int u = 0;
  while (fabs(v) >= 1000 && u < 4) v /= 1000, u++;
  if (u == 0)
    snprintf(buf, size, "%.0f", v);
  else
    snprintf(buf, size, "%.*f%s", v < 10 ? 2 : v < 100 ? 1 : 0, v, unit[u]);
}

void crema_format_bytes(double v, char *buf, size_t size) {
  const char *unit[] = {" B", " KB", " MB", " GB", " TB"};
  int u = 0;
  while (fabs(v) >= 1024 && u < 4) v /= 1024, u++;
  snprintf(buf, size, "%.*f%s", u == 0 ? 0 : v < 10 ? 2 : v < 100 ? 1 : 0, v, unit[u]);
}

/* Caffe's NetState rules, phase only (level 0, no stages). */
static bool included(const Crema__LayerParameter *l, Crema__Phase phase) {
  for (size_t i = 0; i < l->n_exclude; i++) {
    const Crema__NetStateRule *r = l->exclude[i];
    if ((!r->has_phase || r->phase == phase) && !r->n_stage && !r->has_min_level && !r->has_max_level)
      return false;
  }
  if (!l->n_include) return !l->has_phase || l->phase == phase;
  for (size_t i = 0; i < l->n_include; i++) {
    const Crema__NetStateRule *r = l->include[i];
    bool ok = !r->has_phase || r->phase == phase;
    ok = ok && !r->n_stage && (!r->has_min_level || r->min_level <= 0) &&
         (!r->has_max_level || r->max_level >= 0);
    if (ok) return true;
  }
  return false;
}

/* Shapes a summary trusts: dims in [0, 2^31) and fewer than 2^50 values, so no arithmetic
 * on them overflows. */
static bool sane(const crema_blob_shape *s) {
  if (s->num_axes < 0 || s->num_axes > CREMA_MAX_AXES) return false;
  for (int i = 0; i < s->num_axes; i++)
    if (s->dim[i] < 0 || s->dim[i] > INT32_MAX) return false;
  return crema_blob_shape_count(s) < 1125899906842624.0;
}

void crema_net_summary_free(crema_net_summary *s) {
  for (int i = 0; s->layers && i < s->n_layers; i++) free(s->layers[i].tops);
  free(s->layers);
  memset(s, 0, sizeof *s);
}

int crema_net_summarize(const Crema__NetParameter *param, Crema__Phase phase, crema_net_summary *out,
                        crema_error *err) {
  memset(out, 0, sizeof *out);
  out->complete = true;
  blob_table bt = {0};
  out->layers = calloc(param->n_layer ? param->n_layer : 1, sizeof *out->layers);
  const crema_blob_shape **bottoms = calloc(64, sizeof *bottoms);
  int rc = 0;
  if (!out->layers || !bottoms) rc = crema_fail(err, "out of memory");
  for (size_t li = 0; li < param->n_layer && !rc && out->complete; li++) {
    const Crema__LayerParameter *l = param->layer[li];
    if (!included(l, phase)) continue;
    crema_layer_summary *ls = &out->layers[out->n_layers];
    ls->param = l;
    crema_shape_ctx c = {.l = l,
                         .ls = ls,
                         .bottom = bottoms,
                         .n_bottom = (int)l->n_bottom,
                         .n_top = (int)l->n_top,
                         .why = out->why,
                         .why_size = sizeof out->why};
    if (l->n_bottom > 64) {
      crema_shape_fail(&c, "%s", "more than 64 bottoms");
      out->complete = false;
      break;
    }
    bool missing = false;
    for (size_t b = 0; b < l->n_bottom; b++) {
      int i = find(&bt, l->bottom[b]);
      if (i < 0) {
        crema_shape_fail(&c, "bottom \"%s\" is not produced by any earlier layer", l->bottom[b]);
        missing = true;
        break;
      }
      bottoms[b] = &bt.shapes[i];
      bt.uses[i]++;
    }
    if (missing) {
      out->complete = false;
      break;
    }
    ls->tops = calloc(l->n_top ? l->n_top : 1, sizeof *ls->tops);
    if (!ls->tops) {
      rc = crema_fail(err, "out of memory");
      break;
    }
    ls->n_tops = (int)l->n_top;
    c.top = ls->tops;
    crema_shape_rule rule = crema_shape_rule_lookup(l->type);
    if (!rule) {
      crema_shape_fail(&c, "%s", "no shape rule for this layer type");
      out->complete = false;
      out->n_layers++;
      break;
    }
    if (rule(&c)) {
      out->complete = false;
      out->n_layers++;
      break;
    }
    bool ok = true;
    for (int t = 0; t < ls->n_tops; t++) ok = ok && sane(&ls->tops[t]);
    if (!ok) {
      crema_shape_fail(&c, "%s",
                       "a top shape is out of range (a dimension negative or above 2^31, or 2^50 values)");
      out->complete = false;
      out->n_layers++;
      break;
    }
    ls->params = c.params;
    ls->macs = c.macs;
    ls->in_place = l->n_top && l->n_bottom && !strcmp(l->top[0], l->bottom[0]);
    for (size_t t = 0; t < l->n_top; t++) {
      const double bytes = crema_blob_shape_count(&ls->tops[t]) * 4;
      bool inplace = false;
      for (size_t b = 0; b < l->n_bottom; b++) inplace = inplace || !strcmp(l->top[t], l->bottom[b]);
      /* Split accounting: the blob being replaced fed `uses` layers; Caffe's Split gave each a copy. */
      int old = find(&bt, l->top[t]);
      if (old >= 0 && bt.uses[old] > 1)
        out->caffe_bytes += bt.uses[old] * crema_blob_shape_count(&bt.shapes[old]) * 4;
      if (!inplace) ls->top_bytes += bytes;
      out->caffe_bytes += bytes;
      if (put(&bt, l->top[t], &ls->tops[t])) {
        rc = crema_fail(err, "out of memory");
        break;
      }
    }
    out->params += ls->params;
    out->macs += ls->macs;
    out->activation_bytes += ls->top_bytes;
    out->n_layers++;
  }
  for (int i = 0; i < bt.n && !rc; i++)
    if (bt.uses[i] > 1) out->caffe_bytes += bt.uses[i] * crema_blob_shape_count(&bt.shapes[i]) * 4;
  free(bt.names);
  free(bt.shapes);
  free(bt.uses);
  free(bottoms);
  if (rc) crema_net_summary_free(out);
  return rc;
}
