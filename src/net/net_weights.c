/* net_weights.c -- weights in and out of a Net: copy trained layers by name (Caffe's
 * CopyTrainedLayersFrom), export to a NetParameter with blobs (Caffe's ToProto) and save a
 * caffemodel atomically. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "base/log.h"
#include "net/net.h"
#include "net/net_internal.h"
#include "proto/io.h"
#include "proto/upgrade.h"
#include "tensor/blob_proto.h"

/* "10 500" for a BlobProto: its `shape`, else the legacy num/channels/height/width. */
static void proto_shape_string(const Crema__BlobProto *p, char *buf, size_t size) {
  size_t used = 0;
  buf[0] = '\0';
  if (p->shape) {
    for (size_t i = 0; i < p->shape->n_dim && used < size; i++)
      used += (size_t)snprintf(buf + used, size - used, "%s%lld", i ? " " : "", (long long)p->shape->dim[i]);
  } else {
    snprintf(buf, size, "%d %d %d %d", p->num, p->channels, p->height, p->width);
  }
}

static void blob_shape_string(const crema_blob *b, char *buf, size_t size) {
  size_t used = 0;
  buf[0] = '\0';
  for (int i = 0; i < b->num_axes && used < size; i++)
    used += (size_t)snprintf(buf + used, size - used, "%s%d", i ? " " : "", b->shape[i]);
}

static bool is_legacy(const Crema__BlobProto *p) {
  return p->has_num || p->has_channels || p->has_height || p->has_width;
}

/* Caffe's Blob::ShapeEquals: a legacy 4-d proto matches a blob of at most 4 axes whose
 * shape, padded with 1s in front, equals (num, channels, height, width). */
static bool shape_matches(const crema_blob *b, const Crema__BlobProto *p) {
  if (is_legacy(p)) {
    if (b->num_axes > 4) return false;
    int want[4] = {p->num, p->channels, p->height, p->width};
    for (int k = 0; k < 4; k++) {
      int axis = b->num_axes - 4 + k;
      int dim = axis >= 0 ? b->shape[axis] : 1;
      if (dim != want[k]) return false;
    }
    return true;
  }
  size_t n = p->shape ? p->shape->n_dim : 0;
  if ((int)n != b->num_axes) return false;
  for (size_t i = 0; i < n; i++)
    if (p->shape->dim[i] != b->shape[i]) return false;
  return true;
}

static int check_layer_blobs(const crema_net *net, int li, const Crema__LayerParameter *src,
                             crema_error *err) {
  const crema_layer *l = crema_net_layer(net, li);
  const char *name = crema_net_layer_name(net, li);
  if ((int)src->n_blobs != l->n_blobs)
    return crema_fail(err,
                      "cannot copy weights of layer \"%s\": the weights hold %zu blob(s), the layer has %d "
                      "(is bias_term the same?). Rename the layer to learn it from scratch.",
                      name, src->n_blobs, l->n_blobs);
  for (int j = 0; j < l->n_blobs; j++) {
    const Crema__BlobProto *p = src->blobs[j];
    const crema_blob *b = l->blobs[j];
    if (!shape_matches(b, p)) {
      char s1[160], s2[160], which[32] = "";
      proto_shape_string(p, s1, sizeof s1);
      blob_shape_string(b, s2, sizeof s2);
      if (j > 0) snprintf(which, sizeof which, " (blob %d)", j);
      return crema_fail(err,
                        "cannot copy weights of layer \"%s\"%s: source shape %s, target shape %s. Rename "
                        "the layer to learn it from scratch.",
                        name, which, s1, s2);
    }
    size_t n = p->n_data ? p->n_data : p->n_double_data;
    if (n != b->count)
      return crema_fail(
          err,
          "weights of layer \"%s\" blob %d hold %zu values but their shape says %zu; the file is damaged",
          name, j, n, b->count);
  }
  return 0;
}

static void copy_blobs(crema_net *net, int li, const Crema__LayerParameter *src) {
  crema_layer *l = crema_net_layer(net, li);
  for (int j = 0; j < l->n_blobs; j++) {
    const Crema__BlobProto *p = src->blobs[j];
    crema_blob *b = l->blobs[j];
    if (p->n_data) {
      memcpy(b->data, p->data, b->count * sizeof(float));
    } else {
      for (size_t i = 0; i < b->count; i++) b->data[i] = (float)p->double_data[i];
    }
  }
}

int crema_net_copy_layer_blobs(crema_net *net, int li, const Crema__LayerParameter *src, crema_error *err) {
  if (li < 0) return 0;
  if (check_layer_blobs(net, li, src, err)) return -1;
  copy_blobs(net, li, src);
  return 0;
}

int crema_net_copy_trained_layers(crema_net *net, const Crema__NetParameter *weights, crema_error *err) {
  Crema__NetParameter *upgraded = NULL;
  if (weights->n_layers) { /* V1 caffemodel: upgrade a copy */
    bool changed = false;
    upgraded = crema_message_copy(&weights->base);
    if (!upgraded) return crema_fail(err, "out of memory copying weights");
    if (crema_upgrade_net(upgraded, NULL, &changed, err)) {
      crema_message_free(upgraded);
      return -1;
    }
    weights = upgraded;
  }
  /* Check everything before copying anything, so an error leaves the net as it was. */
  for (size_t i = 0; i < weights->n_layer; i++) {
    const Crema__LayerParameter *src = weights->layer[i];
    int li = src->name ? crema_net_layer_index(net, src->name) : -1;
    if (li >= 0 && check_layer_blobs(net, li, src, err)) {
      crema_message_free(upgraded);
      return -1;
    }
  }
  for (size_t i = 0; i < weights->n_layer; i++) {
    const Crema__LayerParameter *src = weights->layer[i];
    int li = src->name ? crema_net_layer_index(net, src->name) : -1;
    if (li < 0) {
      CREMA_INFO("Ignoring source layer %s", src->name ? src->name : "(unnamed)");
      continue;
    }
    CREMA_INFO("Copying source layer %s", src->name);
    copy_blobs(net, li, src);
  }
  for (int li = 0; li < crema_net_num_layers(net); li++) {
    if (crema_net_layer(net, li)->n_blobs == 0) continue;
    const char *name = crema_net_layer_name(net, li);
    bool found = false;
    for (size_t i = 0; i < weights->n_layer && !found; i++)
      found = weights->layer[i]->name && !strcmp(weights->layer[i]->name, name);
    if (!found) CREMA_INFO("Layer %s not in the weights: keeping its filler initialisation", name);
  }
  crema_message_free(upgraded);
  return 0;
}

int crema_net_copy_trained_layers_from_file(crema_net *net, const char *caffemodel, crema_error *err) {
  Crema__NetParameter *w = NULL;
  if (crema_read_net_param(caffemodel, &w, err)) return -1;
  int rc = crema_net_copy_trained_layers(net, w, err);
  crema_message_free(w);
  if (rc) return crema_error_prefix(err, "%s", caffemodel);
  return 0;
}

int crema_net_to_proto(const crema_net *net, bool with_diff, Crema__NetParameter **out, crema_error *err) {
  *out = NULL;
  Crema__NetParameter *m = malloc(sizeof *m);
  if (!m) return crema_fail(err, "out of memory");
  crema__net_parameter__init(m);
  const Crema__NetParameter *src = net->param;
  if (src->name && !(m->name = strdup(src->name))) goto oom;
  if (!(m->layer = calloc(src->n_layer + 1, sizeof *m->layer))) goto oom;
  for (int li = 0; li < net->n_layers; li++) {
    const net_layer *L = &net->layers[li];
    if (L->orig < 0) continue; /* inserted Split layers are not part of the net as written */
    Crema__LayerParameter *lp = crema_message_copy(&src->layer[L->orig]->base);
    if (!lp) goto oom;
    m->layer[m->n_layer++] = lp;
    const crema_layer *l = L->layer;
    if (!l->n_blobs) continue;
    if (!(lp->blobs = calloc((size_t)l->n_blobs, sizeof *lp->blobs))) goto oom;
    for (int j = 0; j < l->n_blobs; j++) {
      if (crema_blob_to_proto(l->blobs[j], with_diff, &lp->blobs[j], err)) {
        crema_message_free(m);
        return -1;
      }
      lp->n_blobs = (size_t)j + 1;
    }
  }
  *out = m;
  return 0;
oom:
  crema_message_free(m);
  return crema_fail(err, "out of memory exporting the net's weights");
}

int crema_net_save_weights(const crema_net *net, const char *path, crema_error *err) {
  Crema__NetParameter *m = NULL;
  if (crema_net_to_proto(net, false, &m, err)) return -1;
  int rc = crema_write_binary_message(path, &m->base, err);
  crema_message_free(m);
  return rc;
}
