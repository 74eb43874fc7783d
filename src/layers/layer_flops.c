/* layer_flops.c -- the arithmetic a layer's forward pass does, for GFLOP/s reports. */
#include <string.h>

#include "layers/layer.h"

double crema_layer_forward_flops(const crema_layer *l, crema_blob *const *bottom, crema_blob *const *top) {
  const char *type = l->ops->type;
  if (l->n_blobs < 1 || !l->blobs[0] || l->blobs[0]->num_axes < 1 || l->blobs[0]->shape[0] <= 0) return 0.0;
  const crema_blob *w = l->blobs[0];
  double total = 0.0;
  if (!strcmp(type, "Convolution")) {
    /* Each output element is a dot product over C/group * kh * kw weights. */
    const double per_out = (double)w->count / w->shape[0];
    for (int t = 0; t < l->n_top; t++) total += 2.0 * (double)top[t]->count * per_out;
  } else if (!strcmp(type, "Deconvolution")) {
    /* Each input element is scattered through Cout/group * kh * kw weights. */
    const double per_in = (double)w->count / w->shape[0];
    for (int b = 0; b < l->n_bottom; b++) total += 2.0 * (double)bottom[b]->count * per_in;
  } else if (!strcmp(type, "InnerProduct")) {
    /* top (M, N) = bottom (M, K) * W^T: 2 * M * N * K = 2 * top count * (W count / N). */
    const crema_blob *y = top[0];
    const int n = y->num_axes ? y->shape[y->num_axes - 1] : 1;
    if (n > 0) total = 2.0 * (double)y->count * ((double)w->count / n);
  }
  return total;
}
