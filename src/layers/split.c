/* Split: copies its one bottom to every top (the net inserts these where one blob feeds
 * several layers, as Caffe does). Backward: bottom diff = sum of the top diffs. Not in place. */
#include <string.h>

#include "layers/layer.h"
#include "layers/loss_common.h"
#include "tensor/math.h"

static int split_reshape(crema_layer *l, crema_blob *const *bottom, crema_blob *const *top,
                         crema_error *err) {
  for (int t = 0; t < l->n_top; t++)
    if (crema_blob_reshape_like(top[t], bottom[0], err)) return -1;
  return 0;
}

static int split_forward(crema_layer *l, crema_blob *const *bottom, crema_blob *const *top,
                         crema_error *err) {
  (void)err;
  const size_t n = bottom[0]->count;
  if (n == 0) return 0;
  for (int t = 0; t < l->n_top; t++) memcpy(top[t]->data, bottom[0]->data, n * sizeof(float));
  return 0;
}

static void split_backward(crema_layer *l, crema_blob *const *top, const bool *propagate_down,
                           crema_blob *const *bottom) {
  if (!propagate_down[0]) return;
  const size_t n = bottom[0]->count;
  const int n_top = l->n_top;
  float *g = bottom[0]->diff;
#pragma omp parallel for if (n * (size_t)n_top > CREMA_PAR_MIN) schedule(static)
  for (size_t i = 0; i < n; i++) {
    float sum = top[0]->diff[i];
    for (int t = 1; t < n_top; t++) sum += top[t]->diff[i];
    g[i] = sum;
  }
}

const crema_layer_ops crema_split_ops = {
    .type = "Split",
    .min_bottoms = 1,
    .max_bottoms = 1,
    .min_tops = 1,
    .max_tops = -1,
    .reshape = split_reshape,
    .forward = split_forward,
    .backward = split_backward,
};
