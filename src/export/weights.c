/* weights.c -- a deploy net plus its trained blobs (a "model"), and back to a bare net. */
#include <stdlib.h>
#include <string.h>

#include "export/edit.h"
#include "export/export.h"
#include "net/net.h"
#include "proto/io.h"

int crema_export_attach_weights(const Crema__NetParameter *deploy, const Crema__NetParameter *weights,
                                Crema__NetParameter **out, crema_error *err) {
  *out = NULL;
  crema_net_options o = {.phase = CREMA__PHASE__TEST, .seed = 1, .source = "deploy net"};
  crema_net *net = NULL;
  if (crema_net_build(deploy, &o, &net, err)) return crema_error_prefix(err, "cannot build the deploy net");
  for (int i = 0; i < crema_net_num_layers(net); i++) {
    const crema_layer *l = crema_net_layer(net, i);
    if (l->n_blobs == 0) continue;
    const char *name = crema_net_layer_name(net, i);
    int w = crema_edit_find_layer(weights, name);
    if (w < 0 || weights->layer[w]->n_blobs == 0) {
      crema_fail(err,
                 "layer \"%s\" (%s) has parameters but the weights file has none for it; an export "
                 "never ships untrained values: give the caffemodel the net was trained into",
                 name, l->ops->type);
      crema_net_free(net);
      return -1;
    }
  }
  int rc = crema_net_copy_trained_layers(net, weights, err);
  if (!rc) rc = crema_net_to_proto(net, false, out, err);
  crema_net_free(net);
  return rc;
}

int crema_export_strip_blobs(const Crema__NetParameter *model, Crema__NetParameter **out, crema_error *err) {
  Crema__NetParameter *m = crema_message_copy(&model->base);
  if (!m) return crema_fail(err, "out of memory");
  for (size_t i = 0; i < m->n_layer; i++) {
    crema_edit_free_blobs(m->layer[i]);
    m->layer[i]->has_phase = 0;
  }
  *out = m;
  return 0;
}

size_t crema_export_count_params(const Crema__NetParameter *model) {
  size_t n = 0;
  for (size_t i = 0; i < model->n_layer; i++)
    for (size_t k = 0; k < model->layer[i]->n_blobs; k++)
      n += crema_edit_blob_count(model->layer[i]->blobs[k]);
  return n;
}
