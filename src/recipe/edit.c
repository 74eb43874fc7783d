#include "recipe/edit.h"

#include <stdlib.h>
#include <string.h>

#include "proto/io.h"
#include "proto/textformat.h"

Crema__NetParameter *recipe_copy_net(const Crema__NetParameter *net) {
  return crema_message_copy(&net->base);
}

Crema__LayerParameter *recipe_layer_from_text(const char *text, crema_error *err) {
  ProtobufCMessage *m = NULL;
  if (crema_text_parse(&crema__layer_parameter__descriptor, text, strlen(text), "(recipe layer)", &m, err))
    return NULL;
  return (Crema__LayerParameter *)m;
}

int recipe_insert_layer(Crema__NetParameter *net, size_t at, Crema__LayerParameter *l, crema_error *err) {
  Crema__LayerParameter **a = realloc(net->layer, sizeof *a * (net->n_layer + 1));
  if (!a) {
    crema_message_free(l);
    return crema_fail(err, "out of memory");
  }
  if (at > net->n_layer) at = net->n_layer;
  memmove(a + at + 1, a + at, sizeof *a * (net->n_layer - at));
  a[at] = l;
  net->layer = a;
  net->n_layer++;
  return 0;
}

void recipe_remove_layer(Crema__NetParameter *net, size_t at) {
  crema_message_free(net->layer[at]);
  memmove(net->layer + at, net->layer + at + 1, sizeof *net->layer * (net->n_layer - at - 1));
  net->n_layer--;
}

int recipe_set_string(char **field, const char *v, crema_error *err) {
  char *s = strdup(v);
  if (!s) return crema_fail(err, "out of memory");
  free(*field);
  *field = s;
  return 0;
}

void recipe_escape(const char *s, char *buf, size_t size) {
  size_t j = 0;
  for (; *s && j + 3 < size; s++) {
    if (*s == '"' || *s == '\\') buf[j++] = '\\';
    buf[j++] = *s;
  }
  buf[j] = '\0';
}

int recipe_layer_num_blobs(const Crema__LayerParameter *l) {
  const char *t = l->type ? l->type : "";
  if (!strcmp(t, "Convolution") || !strcmp(t, "Deconvolution"))
    return 1 +
           (!l->convolution_param || !l->convolution_param->has_bias_term || l->convolution_param->bias_term);
  if (!strcmp(t, "InnerProduct"))
    return 1 + (!l->inner_product_param || !l->inner_product_param->has_bias_term ||
                l->inner_product_param->bias_term);
  if (!strcmp(t, "Embed"))
    return 1 + (!l->embed_param || !l->embed_param->has_bias_term || l->embed_param->bias_term);
  if (!strcmp(t, "Scale")) return 1 + (l->scale_param && l->scale_param->bias_term);
  if (!strcmp(t, "BatchNorm")) return 3;
  if (!strcmp(t, "Bias") || !strcmp(t, "PReLU")) return 1;
  return 0;
}

int recipe_ensure_params(Crema__LayerParameter *l, int n, crema_error *err) {
  if ((int)l->n_param >= n) return 0;
  Crema__ParamSpec **a = realloc(l->param, sizeof *a * (size_t)n);
  if (!a) return crema_fail(err, "out of memory");
  l->param = a;
  while ((int)l->n_param < n) {
    Crema__ParamSpec *p = malloc(sizeof *p);
    if (!p) return crema_fail(err, "out of memory");
    crema__param_spec__init(p);
    a[l->n_param++] = p;
  }
  return 0;
}

int recipe_freeze_layer(Crema__LayerParameter *l, crema_error *err) {
  const int nb = recipe_layer_num_blobs(l);
  if (!nb) return 0;
  if (recipe_ensure_params(l, nb, err)) return -1;
  for (size_t i = 0; i < l->n_param; i++) {
    l->param[i]->has_lr_mult = 1;
    l->param[i]->lr_mult = 0;
  }
  if (!strcmp(l->type, "BatchNorm")) {
    if (!l->batch_norm_param) {
      l->batch_norm_param = malloc(sizeof *l->batch_norm_param);
      if (!l->batch_norm_param) return crema_fail(err, "out of memory");
      crema__batch_norm_parameter__init(l->batch_norm_param);
    }
    l->batch_norm_param->has_use_global_stats = 1;
    l->batch_norm_param->use_global_stats = 1;
  }
  return 0;
}

bool recipe_is_data_layer(const Crema__LayerParameter *l) {
  static const char *const TYPES[] = {"Input",      "Data",       "ImageData", "HDF5Data",
                                      "MemoryData", "WindowData", "DummyData"};
  for (size_t i = 0; i < sizeof TYPES / sizeof TYPES[0]; i++)
    if (l->type && !strcmp(l->type, TYPES[i])) return true;
  return false;
}

int recipe_layer_index(const Crema__NetParameter *net, const char *name) {
  for (size_t i = 0; i < net->n_layer; i++)
    if (net->layer[i]->name && !strcmp(net->layer[i]->name, name)) return (int)i;
  return -1;
}
