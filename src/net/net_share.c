/* net_share.c -- a net using parameter blobs owned by another net (Caffe's
 * ShareTrainedLayersWith): the test nets of a solver read the train net's weights in place
 * instead of holding (and copying before every test) their own. */
#include "net/net.h"
#include "net/net_internal.h"

int crema_net_share_param_blob(crema_net *net, int li, int b, crema_blob *shared, crema_error *err) {
  if (li < 0 || li >= net->n_layers) return crema_fail(err, "no layer %d to share a blob with", li);
  crema_layer *l = net->layers[li].layer;
  if (b < 0 || b >= l->n_blobs)
    return crema_fail(err, "layer \"%s\" has no parameter blob %d", l->param->name, b);
  crema_blob *old = l->blobs[b];
  if (old == shared) return 0;
  if (!crema_blob_same_shape(old, shared)) {
    char a[128], c[128];
    return crema_fail(err, "cannot share parameter %d of layer \"%s\": its shape is %s, the shared blob's %s",
                      b, l->param->name, crema_blob_shape_string(old, a, sizeof a),
                      crema_blob_shape_string(shared, c, sizeof c));
  }
  /* Every user of the old blob in this net (ParamSpec sharing) follows; whichever of them
   * owned it, the blob is freed once. */
  bool owned = false;
  for (int i = 0; i < net->n_layers; i++) {
    crema_layer *o = net->layers[i].layer;
    for (int k = 0; o && k < o->n_blobs; k++)
      if (o->blobs[k] == old) {
        owned = owned || !o->blob_shared[k];
        o->blobs[k] = shared;
        o->blob_shared[k] = true;
      }
  }
  for (int p = 0; p < net->n_params; p++)
    if (net->params[p].blob == old) net->params[p].blob = shared;
  if (owned) crema_blob_free(old);
  return 0;
}
