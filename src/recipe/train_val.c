/* train_val.c -- base net -> train_val on new LMDBs, and train_val -> deploy. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "base/log.h"
#include "proto/io.h"
#include "proto/textformat.h"
#include "recipe/edit.h"
#include "recipe/recipe.h"

static bool is_type(const Crema__LayerParameter *l, const char *t) { return l->type && !strcmp(l->type, t); }

/* The data and label top names of the first data layer ("data" / "label" by default), as
 * malloc'd strings. */
static int data_tops(const Crema__NetParameter *m, char **data, char **label, crema_error *err) {
  const char *d = "data", *lb = "label";
  for (size_t i = 0; i < m->n_layer; i++)
    if (recipe_is_data_layer(m->layer[i])) {
      if (m->layer[i]->n_top >= 1) d = m->layer[i]->top[0];
      if (m->layer[i]->n_top >= 2) lb = m->layer[i]->top[1];
      break;
    }
  *data = strdup(d);
  *label = strdup(lb);
  if (!*data || !*label) {
    free(*data);
    free(*label);
    return crema_fail(err, "out of memory");
  }
  return 0;
}

static bool uses_bottom(const Crema__LayerParameter *l, const char *blob) {
  for (size_t b = 0; b < l->n_bottom; b++)
    if (!strcmp(l->bottom[b], blob)) return true;
  return false;
}

/* One Data layer as text: transform (printed), source, batch, phase. */
static Crema__LayerParameter *data_layer(const crema_recipe_data *d, bool train, const char *data_top,
                                         const char *label_top, crema_error *err) {
  Crema__TransformationParameter blank = CREMA__TRANSFORMATION_PARAMETER__INIT;
  Crema__TransformationParameter *t = crema_message_copy(&(d->transform ? d->transform : &blank)->base);
  if (!t) {
    crema_fail(err, "out of memory");
    return NULL;
  }
  t->has_mirror = train && d->mirror;
  t->mirror = train && d->mirror;
  t->has_resize_height = t->has_resize_width = t->has_channel_order = 0;
  t->resize_height = t->resize_width = 0;
  t->channel_order = CREMA__TRANSFORMATION_PARAMETER__CHANNEL_ORDER__BGR;
  if (!train && t->augment) {
    crema_message_free(t->augment);
    t->augment = NULL;
  }
  char *tp = NULL;
  int rc = crema_text_print(&t->base, &tp, err);
  crema_message_free(t);
  if (rc) return NULL;
  char src[2048], dt[512], lt[512];
  recipe_escape(train ? d->train_source : d->val_source, src, sizeof src);
  recipe_escape(data_top, dt, sizeof dt);
  recipe_escape(label_top, lt, sizeof lt);
  const size_t n = strlen(tp) + 4096;
  char *text = malloc(n);
  if (!text) {
    free(tp);
    crema_fail(err, "out of memory");
    return NULL;
  }
  snprintf(text, n,
           "name: \"%s\" type: \"Data\" top: \"%s\" top: \"%s\" include { phase: %s }\n"
           "transform_param {\n%s}\n"
           "data_param { source: \"%s\" batch_size: %d backend: LMDB }\n",
           dt, dt, lt, train ? "TRAIN" : "TEST", tp, src, train ? d->train_batch : d->val_batch);
  free(tp);
  Crema__LayerParameter *l = recipe_layer_from_text(text, err);
  free(text);
  return l;
}

int crema_recipe_train_val(const Crema__NetParameter *base, const crema_recipe_data *data, int num_classes,
                           Crema__NetParameter **out, crema_error *err) {
  *out = NULL;
  if (num_classes <= 0) return crema_fail(err, "need at least one class (got %d)", num_classes);
  if (!data->train_source || !data->val_source || data->train_batch <= 0 || data->val_batch <= 0)
    return crema_fail(err, "the train_val net needs train and val sources and positive batch sizes");
  Crema__NetParameter *m = recipe_copy_net(base);
  char *dtop = NULL, *ltop = NULL, *score = NULL, *prob = NULL;
  if (!m) return crema_fail(err, "out of memory");
  if (data_tops(m, &dtop, &ltop, err)) goto fail;
  for (size_t i = m->n_layer; i-- > 0;)
    if (recipe_is_data_layer(m->layer[i])) recipe_remove_layer(m, i);
  for (int k = 0; k < 2; k++) {
    Crema__LayerParameter *l = data_layer(data, k == 0, dtop, ltop, err);
    if (!l || recipe_insert_layer(m, (size_t)k, l, err)) goto fail;
  }
  bool has_loss = false;
  for (size_t i = 0; i < m->n_layer; i++) has_loss |= is_type(m->layer[i], "SoftmaxWithLoss");
  if (!has_loss) {
    int s = -1;
    for (int i = (int)m->n_layer - 1; i >= 0 && s < 0; i--)
      if (is_type(m->layer[i], "Softmax")) s = i;
    if (s < 0 || !m->layer[s]->n_bottom || !m->layer[s]->n_top) {
      crema_fail(err,
                 "the base net has no Softmax (deploy) or SoftmaxWithLoss (train_val) layer to train with");
      goto fail;
    }
    score = strdup(m->layer[s]->bottom[0]);
    prob = strdup(m->layer[s]->top[0]);
    if (!score || !prob) {
      crema_fail(err, "out of memory");
      goto fail;
    }
    recipe_remove_layer(m, (size_t)s);
    for (size_t i = m->n_layer; i-- > (size_t)s;)
      if (uses_bottom(m->layer[i], prob)) recipe_remove_layer(m, i);
    char sc[512], lt[512], text[2048];
    recipe_escape(score, sc, sizeof sc);
    recipe_escape(ltop, lt, sizeof lt);
    const char *fmt[3] = {
        "name: \"loss\" type: \"SoftmaxWithLoss\" bottom: \"%s\" bottom: \"%s\" top: \"loss\"",
        "name: \"accuracy\" type: \"Accuracy\" bottom: \"%s\" bottom: \"%s\" top: \"accuracy\" "
        "include { phase: TEST }",
        "name: \"accuracy_top5\" type: \"Accuracy\" bottom: \"%s\" bottom: \"%s\" top: \"accuracy_top5\" "
        "include { phase: TEST } accuracy_param { top_k: 5 }"};
    const int n_new = num_classes >= 10 ? 3 : 2;
    for (int k = 0; k < n_new; k++) {
      snprintf(text, sizeof text, fmt[k], sc, lt);
      Crema__LayerParameter *l = recipe_layer_from_text(text, err);
      if (!l || recipe_insert_layer(m, (size_t)s + (size_t)k, l, err)) goto fail;
    }
  } else {
    for (size_t i = m->n_layer; i-- > 0;) {
      const Crema__LayerParameter *l = m->layer[i];
      if (is_type(l, "Accuracy") && l->accuracy_param && l->accuracy_param->has_top_k &&
          l->accuracy_param->top_k > (uint32_t)num_classes) {
        CREMA_INFO("Dropping %s (top_k %u > %d classes)", l->name, l->accuracy_param->top_k, num_classes);
        recipe_remove_layer(m, i);
      }
    }
  }
  free(dtop);
  free(ltop);
  free(score);
  free(prob);
  *out = m;
  return 0;
fail:
  free(dtop);
  free(ltop);
  free(score);
  free(prob);
  crema_message_free(m);
  return -1;
}

static bool is_loss_or_metric(const Crema__LayerParameter *l) {
  if (!l->type) return false;
  const size_t n = strlen(l->type);
  return is_type(l, "Accuracy") || (n >= 4 && !strcmp(l->type + n - 4, "Loss"));
}

static bool train_only_layer(const Crema__LayerParameter *l) {
  bool train = false, test = false;
  for (size_t r = 0; r < l->n_include; r++)
    if (l->include[r]->has_phase) {
      train |= l->include[r]->phase == CREMA__PHASE__TRAIN;
      test |= l->include[r]->phase == CREMA__PHASE__TEST;
    }
  return train && !test;
}

int crema_recipe_deploy(const Crema__NetParameter *tv, int c, int h, int w, Crema__NetParameter **out,
                        crema_error *err) {
  *out = NULL;
  if (c <= 0 || h <= 0 || w <= 0) return crema_fail(err, "deploy input %d x %d x %d has no pixels", c, h, w);
  int last = -1;
  for (size_t i = 0; i < tv->n_layer; i++)
    if (is_type(tv->layer[i], "SoftmaxWithLoss") && tv->layer[i]->n_bottom) last = (int)i;
  if (last < 0)
    return crema_fail(err, "the train_val net has no SoftmaxWithLoss layer to turn into \"prob\"");
  Crema__NetParameter *m = recipe_copy_net(tv);
  char *dtop = NULL, *ltop = NULL, *score = strdup(tv->layer[last]->bottom[0]);
  char **needed = NULL;
  size_t n_needed = 0;
  if (!m || !score) {
    crema_fail(err, "out of memory");
    goto fail;
  }
  if (data_tops(m, &dtop, &ltop, err)) goto fail;
  for (size_t i = m->n_layer; i-- > 0;) {
    const Crema__LayerParameter *l = m->layer[i];
    if (recipe_is_data_layer(l) || is_loss_or_metric(l) || uses_bottom(l, ltop) || train_only_layer(l))
      recipe_remove_layer(m, i);
  }
  char text[2048], a[512], b[512];
  recipe_escape(dtop, a, sizeof a);
  snprintf(
      text, sizeof text,
      "name: \"data\" type: \"Input\" top: \"%s\" input_param { shape { dim: 1 dim: %d dim: %d dim: %d } }",
      a, c, h, w);
  Crema__LayerParameter *in = recipe_layer_from_text(text, err);
  if (!in || recipe_insert_layer(m, 0, in, err)) goto fail;
  recipe_escape(score, b, sizeof b);
  snprintf(text, sizeof text, "name: \"prob\" type: \"Softmax\" bottom: \"%s\" top: \"prob\"", b);
  Crema__LayerParameter *sm = recipe_layer_from_text(text, err);
  if (!sm || recipe_insert_layer(m, m->n_layer, sm, err)) goto fail;
  /* keep only what leads to "prob": walk back, needing the bottoms of every kept layer */
  needed = malloc(sizeof *needed);
  if (!needed) {
    crema_fail(err, "out of memory");
    goto fail;
  }
  needed[n_needed++] = "prob";
  for (size_t i = m->n_layer; i-- > 0;) {
    const Crema__LayerParameter *l = m->layer[i];
    bool keep = false;
    for (size_t t = 0; t < l->n_top && !keep; t++)
      for (size_t k = 0; k < n_needed && !keep; k++) keep = !strcmp(l->top[t], needed[k]);
    if (!keep) {
      recipe_remove_layer(m, i);
      continue;
    }
    char **nn = realloc(needed, sizeof *needed * (n_needed + l->n_bottom));
    if (!nn) {
      crema_fail(err, "out of memory");
      goto fail;
    }
    needed = nn;
    for (size_t bb = 0; bb < l->n_bottom; bb++) needed[n_needed++] = l->bottom[bb];
  }
  free(needed);
  free(dtop);
  free(ltop);
  free(score);
  *out = m;
  return 0;
fail:
  free(needed);
  free(dtop);
  free(ltop);
  free(score);
  crema_message_free(m);
  return -1;
}
