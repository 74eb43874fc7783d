/* deploy.c -- a deploy net from a train_val net (see crema_export_deploy in export.h).
 *
 * Passes over a copy of the message, in order: TEST-phase filter; data layer -> Input;
 * Accuracy / Silence / Dropout removed; the main loss -> Softmax (or Sigmoid) `prob` and the
 * other losses removed; layers no longer leading to the output pruned; label readers refused. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "export/data_shape.h"
#include "export/edit.h"
#include "export/export.h"
#include "proto/io.h"

#define OOM(err) crema_fail(err, "out of memory")

void crema_deploy_report_free(crema_deploy_report *r) {
  if (!r) return;
  crema_message_free(r->transform);
  r->transform = NULL;
}

static bool has_stage(const Crema__NetState *s, const char *stage) {
  for (size_t i = 0; s && i < s->n_stage; i++)
    if (!strcmp(s->stage[i], stage)) return true;
  return false;
}

/* Caffe's StateMeetsRule for the TEST phase at level 0 with the net's own stages. */
static bool test_meets_rule(const Crema__NetState *s, const Crema__NetStateRule *r) {
  if (r->has_phase && r->phase != CREMA__PHASE__TEST) return false;
  if (r->has_min_level && 0 < r->min_level) return false;
  if (r->has_max_level && 0 > r->max_level) return false;
  for (size_t i = 0; i < r->n_stage; i++)
    if (!has_stage(s, r->stage[i])) return false;
  for (size_t i = 0; i < r->n_not_stage; i++)
    if (has_stage(s, r->not_stage[i])) return false;
  return true;
}

static int filter_test_phase(Crema__NetParameter *m, int *removed, crema_error *err) {
  for (size_t i = 0; i < m->n_layer;) {
    Crema__LayerParameter *lp = m->layer[i];
    if (lp->n_include && lp->n_exclude)
      return crema_fail(err, "layer \"%s\" has both include and exclude rules; keep one kind", lp->name);
    bool in = lp->n_include == 0;
    for (size_t r = 0; r < lp->n_exclude; r++)
      if (test_meets_rule(m->state, lp->exclude[r])) in = false;
    for (size_t r = 0; r < lp->n_include; r++)
      if (test_meets_rule(m->state, lp->include[r])) in = true;
    if (lp->has_phase && lp->phase != CREMA__PHASE__TEST) in = false;
    if (!in) {
      crema_edit_remove_layer(m, i);
      (*removed)++;
      continue;
    }
    crema_edit_clear_rules(lp);
    crema_edit_free_blobs(lp);
    i++;
  }
  if (m->state) {
    protobuf_c_message_free_unpacked(&m->state->base, NULL);
    m->state = NULL;
  }
  return 0;
}

static bool is_data_type(const char *t) {
  static const char *const types[] = {"Data",     "ImageData",  "MemoryData", "DummyData",
                                      "HDF5Data", "WindowData", "Python"};
  for (size_t i = 0; i < sizeof types / sizeof types[0]; i++)
    if (!strcmp(t, types[i])) return true;
  return false;
}

static bool is_loss_type(const char *t) {
  size_t n = strlen(t);
  return n >= 4 && !strcmp(t + n - 4, "Loss");
}

/* An Input layer named name, top `top`, shape dims. */
static Crema__LayerParameter *new_input(const char *name, const char *top, const int shape[4]) {
  Crema__LayerParameter *lp = crema_edit_new_layer(name, "Input");
  if (!lp) return NULL;
  Crema__InputParameter *ip = malloc(sizeof *ip);
  Crema__BlobShape **shapes = malloc(sizeof *shapes);
  Crema__BlobShape *s = malloc(sizeof *s);
  int64_t *dims = malloc(4 * sizeof *dims);
  if (!ip || !shapes || !s || !dims || crema_edit_append_string(&lp->top, &lp->n_top, top)) {
    free(ip);
    free(shapes);
    free(s);
    free(dims);
    protobuf_c_message_free_unpacked(&lp->base, NULL);
    return NULL;
  }
  crema__input_parameter__init(ip);
  crema__blob_shape__init(s);
  for (int i = 0; i < 4; i++) dims[i] = shape[i];
  s->dim = dims;
  s->n_dim = 4;
  shapes[0] = s;
  ip->shape = shapes;
  ip->n_shape = 1;
  lp->input_param = ip;
  return lp;
}

/* Dead blobs: tops of data layers other than the first (labels). */
typedef struct dead_set {
  char *names[16];
  int n;
} dead_set;

static bool is_dead(const dead_set *d, const char *name) {
  for (int i = 0; i < d->n; i++)
    if (!strcmp(d->names[i], name)) return true;
  return false;
}

/* The deploy-time preprocessing of data layer lp: its transform_param without the
 * training-only fields, with an ImageData layer's resize as resize_height/resize_width. */
static int preprocess_of(const Crema__LayerParameter *lp, crema_deploy_report *rep) {
  const Crema__ImageDataParameter *ip = lp->image_data_param;
  bool resize = ip && ip->new_height > 0 && ip->new_width > 0;
  if (!lp->transform_param && !resize) return 0;
  Crema__TransformationParameter *t;
  if (lp->transform_param) {
    t = crema_message_copy(&lp->transform_param->base);
  } else if ((t = malloc(sizeof *t))) {
    crema__transformation_parameter__init(t);
  }
  if (!t) return -1;
  t->has_mirror = 0;
  t->mirror = 0;
  if (t->augment) {
    protobuf_c_message_free_unpacked(&t->augment->base, NULL);
    t->augment = NULL;
  }
  if (resize) {
    t->has_resize_height = t->has_resize_width = 1;
    t->resize_height = ip->new_height;
    t->resize_width = ip->new_width;
  }
  if (ip && ip->has_is_color && !ip->is_color) {
    t->has_force_gray = 1;
    t->force_gray = 1;
  }
  rep->had_transform = true;
  rep->transform = t;
  return 0;
}

static int convert_data_layers(Crema__NetParameter *m, const crema_deploy_options *opt, dead_set *dead,
                               crema_deploy_report *rep, crema_error *err) {
  int found = 0;
  for (size_t i = 0; i < m->n_layer; i++) {
    Crema__LayerParameter *lp = m->layer[i];
    const char *type = lp->type ? lp->type : "";
    if (!strcmp(type, "Input")) {
      if (lp->input_param && lp->input_param->n_shape > 0) {
        Crema__BlobShape *s = lp->input_param->shape[0];
        if (opt && opt->batch > 0 && s->n_dim > 0) s->dim[0] = opt->batch;
        if (!found) {
          for (size_t k = 0; k < 4; k++) rep->input_shape[k] = k < s->n_dim ? (int)s->dim[k] : 0;
          snprintf(rep->input_layer, sizeof rep->input_layer, "%s", lp->name ? lp->name : "");
        }
      }
      found++;
      continue;
    }
    if (!is_data_type(type)) continue;
    if (lp->n_top == 0) return crema_fail(err, "data layer \"%s\" has no top", lp->name);
    int shape[4];
    if (crema_data_layer_shape(lp, opt ? opt->batch : 0, shape, err)) return -1;
    Crema__LayerParameter *in = new_input(lp->name ? lp->name : "data", lp->top[0], shape);
    if (!in) return OOM(err);
    for (size_t k = 1; k < lp->n_top && dead->n < 16; k++) dead->names[dead->n++] = strdup(lp->top[k]);
    if (!found) {
      memcpy(rep->input_shape, shape, sizeof shape);
      snprintf(rep->input_layer, sizeof rep->input_layer, "%s", in->name);
      if (preprocess_of(lp, rep)) {
        protobuf_c_message_free_unpacked(&in->base, NULL);
        return OOM(err);
      }
    }
    found++;
    protobuf_c_message_free_unpacked(&lp->base, NULL);
    m->layer[i] = in;
  }
  if (!found) return crema_fail(err, "the net has no data or Input layer in the TEST phase: nothing to feed");
  return 0;
}

/* Renames blob `from` to `to` in the bottoms and tops of layers [start, n). */
static int rename_after(Crema__NetParameter *m, size_t start, const char *from, const char *to) {
  for (size_t j = start; j < m->n_layer; j++) {
    Crema__LayerParameter *lp = m->layer[j];
    for (size_t k = 0; k < lp->n_bottom; k++)
      if (!strcmp(lp->bottom[k], from) && crema_edit_set_string(&lp->bottom[k], to)) return -1;
    for (size_t k = 0; k < lp->n_top; k++)
      if (!strcmp(lp->top[k], from) && crema_edit_set_string(&lp->top[k], to)) return -1;
  }
  return 0;
}

/* Whether any layer in [start, n) reads / writes name. */
static bool later_reads(const Crema__NetParameter *m, size_t start, const char *name) {
  for (size_t j = start; j < m->n_layer; j++)
    if (crema_edit_reads(m->layer[j], name)) return true;
  return false;
}
static bool later_writes(const Crema__NetParameter *m, size_t start, const char *name) {
  for (size_t j = start; j < m->n_layer; j++)
    if (crema_edit_writes(m->layer[j], name)) return true;
  return false;
}

/* Accuracy, Silence, Dropout. A Dropout that is not in place is removed when renaming its top
 * to its bottom changes nothing else; otherwise it stays (it is the identity at test time). */
static int remove_test_identities(Crema__NetParameter *m, int *removed, crema_error *err) {
  for (size_t i = 0; i < m->n_layer;) {
    Crema__LayerParameter *lp = m->layer[i];
    const char *type = lp->type ? lp->type : "";
    bool drop = !strcmp(type, "Accuracy") || !strcmp(type, "Silence");
    if (!strcmp(type, "Dropout") && lp->n_bottom == 1 && lp->n_top == 1) {
      const char *a = lp->bottom[0], *b = lp->top[0];
      if (!strcmp(a, b)) {
        drop = true;
      } else if (!later_writes(m, i + 1, a) && !(later_writes(m, i + 1, b) && later_reads(m, i + 1, a))) {
        char *from = strdup(b), *to = strdup(a);
        int rc = (!from || !to) ? -1 : rename_after(m, i + 1, from, to);
        free(from);
        free(to);
        if (rc) return OOM(err);
        drop = true;
      }
    }
    if (drop) {
      crema_edit_remove_layer(m, i);
      (*removed)++;
    } else {
      i++;
    }
  }
  return 0;
}

static float loss_weight_of(const Crema__LayerParameter *lp) {
  return lp->n_loss_weight > 0 ? lp->loss_weight[0] : 1.0f;
}

/* The main loss becomes the output; the others go. Returns the output blob in rep->output
 * (empty when the net has no loss). */
static int convert_losses(Crema__NetParameter *m, int *removed, crema_deploy_report *rep, crema_error *err) {
  int main_loss = -1;
  float best = 0.0f;
  for (size_t i = 0; i < m->n_layer; i++) {
    const Crema__LayerParameter *lp = m->layer[i];
    if (!lp->type || !is_loss_type(lp->type) || lp->n_bottom == 0) continue;
    float w = loss_weight_of(lp);
    if (main_loss < 0 || w >= best) {
      main_loss = (int)i;
      best = w;
    }
  }
  if (main_loss < 0) return 0;
  for (size_t i = 0; i < m->n_layer;) {
    Crema__LayerParameter *lp = m->layer[i];
    if ((int)i == main_loss) {
      const char *type = lp->type;
      const char *act = !strcmp(type, "SoftmaxWithLoss")           ? "Softmax"
                        : !strcmp(type, "SigmoidCrossEntropyLoss") ? "Sigmoid"
                                                                   : NULL;
      if (!act) { /* e.g. EuclideanLoss: the prediction itself is the output */
        snprintf(rep->output, sizeof rep->output, "%s", lp->bottom[0]);
        crema_edit_remove_layer(m, i);
        (*removed)++;
        main_loss = -2;
        continue;
      }
      Crema__LayerParameter *out = crema_edit_new_layer(act, act);
      if (!out || crema_edit_append_string(&out->bottom, &out->n_bottom, lp->bottom[0]) ||
          crema_edit_append_string(&out->top, &out->n_top, "prob") ||
          crema_edit_set_string(&out->name, "prob")) {
        if (out) protobuf_c_message_free_unpacked(&out->base, NULL);
        return OOM(err);
      }
      if (lp->softmax_param && !strcmp(act, "Softmax")) {
        out->softmax_param = lp->softmax_param;
        lp->softmax_param = NULL;
      }
      protobuf_c_message_free_unpacked(&lp->base, NULL);
      m->layer[i] = out;
      snprintf(rep->output, sizeof rep->output, "prob");
      main_loss = -2;
      i++;
      continue;
    }
    if (lp->type && is_loss_type(lp->type)) {
      crema_edit_remove_layer(m, i);
      if (main_loss >= 0 && (int)i < main_loss) main_loss--;
      (*removed)++;
      continue;
    }
    i++;
  }
  return 0;
}

/* Keeps only the layers the output depends on (walking back from the last layer). */
static int prune_to_output(Crema__NetParameter *m, const char *output, int *pruned, crema_error *err) {
  size_t cap = 16, n = 1;
  char **need = malloc(cap * sizeof *need);
  if (!need || !(need[0] = strdup(output))) {
    free(need);
    return OOM(err);
  }
  int rc = 0;
  for (size_t i = m->n_layer; i-- > 0 && !rc;) {
    Crema__LayerParameter *lp = m->layer[i];
    bool needed = false;
    for (size_t k = 0; k < lp->n_top && !needed; k++)
      for (size_t j = 0; j < n && !needed; j++) needed = !strcmp(need[j], lp->top[k]);
    if (!needed) {
      crema_edit_remove_layer(m, i);
      (*pruned)++;
      continue;
    }
    /* tops produced here are no longer needed above, unless also bottoms (in place) */
    for (size_t k = 0; k < lp->n_top; k++)
      for (size_t j = 0; j < n; j++)
        if (!strcmp(need[j], lp->top[k])) {
          free(need[j]);
          need[j] = need[--n];
          break;
        }
    for (size_t k = 0; k < lp->n_bottom && !rc; k++) {
      bool have = false;
      for (size_t j = 0; j < n && !have; j++) have = !strcmp(need[j], lp->bottom[k]);
      if (have) continue;
      if (n == cap) {
        char **g = realloc(need, 2 * cap * sizeof *g);
        if (!g) {
          rc = OOM(err);
          break;
        }
        need = g;
        cap *= 2;
      }
      if (!(need[n] = strdup(lp->bottom[k])))
        rc = OOM(err);
      else
        n++;
    }
  }
  for (size_t j = 0; j < n; j++) free(need[j]);
  free(need);
  return rc;
}

int crema_export_deploy(const Crema__NetParameter *net, const crema_deploy_options *opt,
                        Crema__NetParameter **out, crema_deploy_report *report, crema_error *err) {
  crema_deploy_report local;
  crema_deploy_report *rep = report ? report : &local;
  memset(rep, 0, sizeof *rep);
  *out = NULL;
  Crema__NetParameter *m = crema_message_copy(&net->base);
  if (!m) return OOM(err);
  dead_set dead = {.n = 0};
  int rc = filter_test_phase(m, &rep->removed, err);
  if (!rc) rc = convert_data_layers(m, opt, &dead, rep, err);
  if (!rc) rc = remove_test_identities(m, &rep->removed, err);
  if (!rc) rc = convert_losses(m, &rep->removed, rep, err);
  if (!rc && rep->output[0]) rc = prune_to_output(m, rep->output, &rep->pruned, err);
  for (size_t i = 0; !rc && i < m->n_layer; i++)
    for (size_t k = 0; k < m->layer[i]->n_bottom; k++)
      if (is_dead(&dead, m->layer[i]->bottom[k])) {
        rc = crema_fail(err,
                        "layer \"%s\" (%s) reads \"%s\", which only the data layer provides (the labels); "
                        "a deploy net has no labels: remove the layer or make it TRAIN-only",
                        m->layer[i]->name, m->layer[i]->type, m->layer[i]->bottom[k]);
        break;
      }
  for (int i = 0; i < dead.n; i++) free(dead.names[i]);
  if (rc) {
    if (opt && opt->source) crema_error_prefix(err, "%s", opt->source);
    crema_message_free(m);
    if (!report) crema_deploy_report_free(&local);
    return -1;
  }
  if (!rep->output[0] && m->n_layer > 0) {
    const Crema__LayerParameter *last = m->layer[m->n_layer - 1];
    if (last->n_top > 0) snprintf(rep->output, sizeof rep->output, "%s", last->top[0]);
  }
  if (!report) crema_deploy_report_free(&local);
  *out = m;
  return 0;
}
