/* heads.c -- finding the classifier head(s) of a net, and replacing them for new classes. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "base/log.h"
#include "proto/io.h"
#include "proto/textformat.h"
#include "recipe/edit.h"
#include "recipe/recipe.h"

void crema_recipe_free_names(char **names, int n) {
  if (!names) return;
  for (int i = 0; i < n; i++) free(names[i]);
  free(names);
}

static bool is_type(const Crema__LayerParameter *l, const char *t) { return l->type && !strcmp(l->type, t); }

bool crema_recipe_is_deploy(const Crema__NetParameter *net) {
  for (size_t i = 0; i < net->n_layer; i++) {
    const Crema__LayerParameter *l = net->layer[i];
    if (is_type(l, "SoftmaxWithLoss") || (recipe_is_data_layer(l) && !is_type(l, "Input"))) return false;
  }
  return true;
}

int crema_recipe_input_shape(const Crema__NetParameter *net, int *c, int *h, int *w, crema_error *err) {
  for (size_t i = 0; i < net->n_layer; i++) {
    const Crema__LayerParameter *l = net->layer[i];
    if (!is_type(l, "Input")) continue;
    if (!l->input_param || !l->input_param->n_shape || l->input_param->shape[0]->n_dim != 4)
      return crema_fail(err, "Input layer \"%s\" has no 4-d shape (N, C, H, W)", l->name ? l->name : "");
    const int64_t *d = l->input_param->shape[0]->dim;
    if (d[1] <= 0 || d[2] <= 0 || d[3] <= 0 || d[1] > 65536 || d[2] > 65536 || d[3] > 65536)
      return crema_fail(err, "Input layer \"%s\" has shape %lld x %lld x %lld x %lld; need positive sizes",
                        l->name ? l->name : "", (long long)d[0], (long long)d[1], (long long)d[2],
                        (long long)d[3]);
    *c = (int)d[1];
    *h = (int)d[2];
    *w = (int)d[3];
    return 0;
  }
  return crema_fail(err, "the net has no Input layer, so its input size is unknown");
}

/* The last layer before index `before` with `blob` among its tops, or -1. */
static int producer(const Crema__NetParameter *net, const char *blob, int before) {
  for (int j = before - 1; j >= 0; j--)
    for (size_t t = 0; t < net->layer[j]->n_top; t++)
      if (!strcmp(net->layer[j]->top[t], blob)) return j;
  return -1;
}

static bool conv_is_1x1(const Crema__LayerParameter *l) {
  const Crema__ConvolutionParameter *p = l->convolution_param;
  if (!p) return false;
  if (p->has_kernel_h || p->has_kernel_w) return p->kernel_h == 1 && p->kernel_w == 1;
  for (size_t i = 0; i < p->n_kernel_size; i++)
    if (p->kernel_size[i] != 1) return false;
  return p->n_kernel_size > 0;
}

/* Walks back from final layer f to its head; fills *head with its index. */
static int head_of(const Crema__NetParameter *net, int f, int *head, crema_error *err) {
  const Crema__LayerParameter *fl = net->layer[f];
  if (!fl->n_bottom) return crema_fail(err, "layer \"%s\" has no input", fl->name);
  const char *blob = fl->bottom[0];
  int idx = f;
  bool global_pool = false;
  for (;;) {
    const int p = producer(net, blob, idx);
    if (p < 0)
      return crema_fail(err,
                        "no InnerProduct or Convolution layer on the path to \"%s\"; name the classifier "
                        "layer with --head",
                        fl->name);
    const Crema__LayerParameter *l = net->layer[p];
    if (is_type(l, "InnerProduct")) {
      *head = p;
      return 0;
    }
    if (is_type(l, "Convolution")) {
      if (conv_is_1x1(l) && global_pool) {
        *head = p;
        return 0;
      }
      return crema_fail(err,
                        "the last layer with parameters before \"%s\" is Convolution \"%s\", which is not a "
                        "1x1 convolution followed by global pooling; name the classifier layer with --head",
                        fl->name, l->name);
    }
    if (recipe_is_data_layer(l))
      return crema_fail(
          err, "no layer with parameters between the input and \"%s\"; name the classifier with --head",
          fl->name);
    if (recipe_layer_num_blobs(l) > 0)
      return crema_fail(err,
                        "the last layer with parameters before \"%s\" is %s \"%s\", not an InnerProduct or a "
                        "1x1 Convolution; name the classifier layer with --head",
                        fl->name, l->type, l->name);
    if (l->n_bottom != 1)
      return crema_fail(err,
                        "the path back from \"%s\" reaches %s \"%s\", which has %zu inputs, before any "
                        "classifier layer; name the classifier layer with --head",
                        fl->name, l->type, l->name, l->n_bottom);
    if (is_type(l, "Pooling") && l->pooling_param && l->pooling_param->global_pooling) global_pool = true;
    blob = l->bottom[0];
    idx = p;
  }
}

int crema_recipe_find_heads(const Crema__NetParameter *net, char ***names, int *n, crema_error *err) {
  *names = NULL;
  *n = 0;
  int *finals = malloc(sizeof(int) * (net->n_layer + 1)), nf = 0;
  if (!finals) return crema_fail(err, "out of memory");
  for (size_t i = 0; i < net->n_layer; i++)
    if (is_type(net->layer[i], "SoftmaxWithLoss")) finals[nf++] = (int)i;
  for (int i = (int)net->n_layer - 1; !nf && i >= 0; i--)
    if (is_type(net->layer[i], "Softmax")) finals[nf++] = i;
  if (!nf) {
    free(finals);
    return crema_fail(err, "the net has no Softmax or SoftmaxWithLoss layer, so its classifier cannot be "
                           "found; name the classifier layer with --head");
  }
  char **out = calloc((size_t)nf, sizeof *out);
  int count = 0;
  if (!out) {
    free(finals);
    return crema_fail(err, "out of memory");
  }
  for (int k = 0; k < nf; k++) {
    int h = -1;
    if (head_of(net, finals[k], &h, err)) {
      free(finals);
      crema_recipe_free_names(out, count);
      return -1;
    }
    bool dup = false;
    for (int j = 0; j < count; j++) dup |= !strcmp(out[j], net->layer[h]->name);
    if (dup) continue;
    if (!(out[count] = strdup(net->layer[h]->name))) {
      free(finals);
      crema_recipe_free_names(out, count);
      return crema_fail(err, "out of memory");
    }
    count++;
  }
  free(finals);
  *names = out;
  *n = count;
  return 0;
}

static Crema__FillerParameter *filler(const char *text, crema_error *err) {
  ProtobufCMessage *m = NULL;
  if (crema_text_parse(&crema__filler_parameter__descriptor, text, strlen(text), "(recipe filler)", &m, err))
    return NULL;
  return (Crema__FillerParameter *)m;
}

/* Renames and re-initialises one head in place. */
static int replace_head(Crema__LayerParameter *l, const crema_recipe_head_options *o, crema_error *err) {
  Crema__FillerParameter **wf, **bf;
  if (is_type(l, "InnerProduct") && l->inner_product_param) {
    l->inner_product_param->has_num_output = 1;
    l->inner_product_param->num_output = (uint32_t)o->num_classes;
    wf = &l->inner_product_param->weight_filler;
    bf = &l->inner_product_param->bias_filler;
  } else if (is_type(l, "Convolution") && l->convolution_param) {
    l->convolution_param->has_num_output = 1;
    l->convolution_param->num_output = (uint32_t)o->num_classes;
    wf = &l->convolution_param->weight_filler;
    bf = &l->convolution_param->bias_filler;
  } else {
    return crema_fail(err, "head \"%s\" is a %s layer; a head must be an InnerProduct or a Convolution",
                      l->name, l->type ? l->type : "(untyped)");
  }
  crema_message_free(*wf);
  crema_message_free(*bf);
  *wf = filler("type: 'xavier'", err);
  *bf = filler("type: 'constant' value: 0", err);
  if (!*wf || !*bf) return -1;
  for (size_t i = 0; i < l->n_blobs; i++) crema_message_free(l->blobs[i]);
  l->n_blobs = 0;
  const int nb = recipe_layer_num_blobs(l);
  if (recipe_ensure_params(l, nb, err)) return -1;
  for (int i = 0; i < nb; i++) {
    Crema__ParamSpec *p = l->param[i];
    const float own = p->has_lr_mult && p->lr_mult > 0 ? p->lr_mult : (i == 0 ? 1.0f : 2.0f);
    p->has_lr_mult = 1;
    p->lr_mult = own * o->lr_boost;
    if (!p->has_decay_mult) {
      p->has_decay_mult = 1;
      p->decay_mult = i == 0 ? 1.0f : 0.0f;
    }
    free(p->name);
    p->name = NULL;
  }
  const size_t n = strlen(l->name) + strlen(o->suffix) + 1;
  char *name = malloc(n);
  if (!name) return crema_fail(err, "out of memory");
  snprintf(name, n, "%s%s", l->name, o->suffix);
  CREMA_INFO("Head %s -> %s: num_output %d, fresh xavier filler, lr_mult %g/%g", l->name, name,
             o->num_classes, l->param[0]->lr_mult, nb > 1 ? l->param[1]->lr_mult : 0.0);
  free(l->name);
  l->name = name;
  return 0;
}

int crema_recipe_replace_heads(const Crema__NetParameter *net, char *const *heads, int n,
                               const crema_recipe_head_options *opt, Crema__NetParameter **out,
                               crema_error *err) {
  *out = NULL;
  if (opt->num_classes <= 0) return crema_fail(err, "need at least one class (got %d)", opt->num_classes);
  if (!opt->suffix || !*opt->suffix)
    return crema_fail(err,
                      "the head suffix must not be empty: the renamed head must not match the base weights");
  if (!(opt->lr_boost > 0)) return crema_fail(err, "lr boost must be > 0 (got %g)", opt->lr_boost);
  Crema__NetParameter *m = recipe_copy_net(net);
  if (!m) return crema_fail(err, "out of memory");
  for (int k = 0; k < n; k++) {
    const int i = recipe_layer_index(m, heads[k]);
    if (i < 0) {
      crema_message_free(m);
      return crema_fail(err, "head \"%s\": no layer of that name in the net", heads[k]);
    }
    if (replace_head(m->layer[i], opt, err)) {
      crema_message_free(m);
      return -1;
    }
  }
  *out = m;
  return 0;
}

/* Whether layer i (named name) is frozen. */
typedef bool (*freeze_pred)(const void *ctx, int i, const char *name);

static int freeze_where(const Crema__NetParameter *net, freeze_pred pred, const void *ctx,
                        Crema__NetParameter **out, crema_error *err) {
  Crema__NetParameter *m = recipe_copy_net(net);
  if (!m) return crema_fail(err, "out of memory");
  int frozen = 0;
  for (size_t i = 0; i < m->n_layer; i++) {
    Crema__LayerParameter *l = m->layer[i];
    if (!recipe_layer_num_blobs(l) || !pred(ctx, (int)i, l->name ? l->name : "")) continue;
    if (recipe_freeze_layer(l, err)) {
      crema_message_free(m);
      return -1;
    }
    CREMA_INFO("Freezing layer %s (lr_mult 0)", l->name);
    frozen++;
  }
  CREMA_INFO("%d layer(s) with parameters frozen", frozen);
  *out = m;
  return 0;
}

static bool up_to(const void *ctx, int i, const char *name) {
  (void)name;
  return i <= *(const int *)ctx;
}

int crema_recipe_freeze_through(const Crema__NetParameter *net, const char *layer, Crema__NetParameter **out,
                                crema_error *err) {
  *out = NULL;
  const int k = recipe_layer_index(net, layer);
  if (k < 0) return crema_fail(err, "--freeze-through %s: no layer of that name in the net", layer);
  return freeze_where(net, up_to, &k, out, err);
}

typedef struct name_list {
  char *const *names;
  int n;
  bool prefixes; /* "PREFIX*" entries match by prefix */
} name_list;

static bool matches(const name_list *nl, const char *name) {
  for (int k = 0; k < nl->n; k++) {
    const char *p = nl->names[k];
    const size_t len = strlen(p);
    if (nl->prefixes && len && p[len - 1] == '*' ? !strncmp(name, p, len - 1) : !strcmp(name, p)) return true;
  }
  return false;
}

static bool not_kept(const void *ctx, int i, const char *name) {
  (void)i;
  return !matches(ctx, name);
}

static bool listed(const void *ctx, int i, const char *name) {
  (void)i;
  return matches(ctx, name);
}

int crema_recipe_train_only(const Crema__NetParameter *net, char *const *keep, int n_keep,
                            Crema__NetParameter **out, crema_error *err) {
  *out = NULL;
  for (int k = 0; k < n_keep; k++)
    if (recipe_layer_index(net, keep[k]) < 0)
      return crema_fail(err, "layer \"%s\" to train: no layer of that name in the net", keep[k]);
  const name_list nl = {keep, n_keep, false};
  return freeze_where(net, not_kept, &nl, out, err);
}

int crema_recipe_freeze_matching(const Crema__NetParameter *net, char *const *patterns, int n,
                                 Crema__NetParameter **out, crema_error *err) {
  *out = NULL;
  for (int k = 0; k < n; k++) {
    const name_list one = {patterns + k, 1, true};
    bool any = false;
    for (size_t i = 0; i < net->n_layer && !any; i++)
      any = net->layer[i]->name && matches(&one, net->layer[i]->name);
    if (!any) return crema_fail(err, "--freeze %s: no layer of the net matches", patterns[k]);
  }
  const name_list nl = {patterns, n, true};
  return freeze_where(net, listed, &nl, out, err);
}
