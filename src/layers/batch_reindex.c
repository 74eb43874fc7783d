/* batch_reindex.c -- Caffe's "BatchReindex": gathers items (first-axis slices) by index.
 *   bottoms: data (N, ...) and indices (M) with values in [0, N)
 *   top (M, ...): top[j] = data[indices[j]]
 *   d data[i] = sum over j with indices[j] = i of d top[j]; the indices get no gradient */
#include <stdlib.h>
#include <string.h>

#include "layers/layer.h"
#include "tensor/math.h"

static int reindex_reshape(crema_layer *l, crema_blob *const *bottom, crema_blob *const *top,
                           crema_error *err) {
  (void)l;
  char a[256];
  if (bottom[1]->num_axes != 1)
    return crema_fail(err, "the indices (second bottom) must be 1-d, got shape %s",
                      crema_blob_shape_string(bottom[1], a, sizeof a));
  if (bottom[0]->num_axes < 1) return crema_fail(err, "the data (first bottom) needs a first axis");
  int shape[CREMA_MAX_AXES];
  memcpy(shape, bottom[0]->shape, sizeof shape);
  shape[0] = bottom[1]->shape[0];
  return crema_blob_reshape(top[0], bottom[0]->num_axes, shape, err);
}

static int reindex_forward(crema_layer *l, crema_blob *const *bottom, crema_blob *const *top,
                           crema_error *err) {
  (void)l;
  const int n = bottom[0]->shape[0], m = bottom[1]->shape[0];
  const size_t inner = n ? bottom[0]->count / (size_t)n : 0;
  for (int j = 0; j < m; j++) {
    const float v = bottom[1]->data[j];
    if (!(v >= 0.0f && v < (float)n))
      return crema_fail(err, "index %d is %g, outside the %d items of the data", j, (double)v, n);
    memcpy(top[0]->data + (size_t)j * inner, bottom[0]->data + (size_t)v * inner, inner * sizeof(float));
  }
  return 0;
}

static void reindex_backward(crema_layer *l, crema_blob *const *top, const bool *propagate_down,
                             crema_blob *const *bottom) {
  (void)l;
  if (!propagate_down[0]) return;
  const int n = bottom[0]->shape[0], m = bottom[1]->shape[0];
  const size_t inner = n ? bottom[0]->count / (size_t)n : 0;
  memset(bottom[0]->diff, 0, bottom[0]->count * sizeof(float));
  for (int j = 0; j < m; j++)
    crema_axpy(inner, 1.0f, top[0]->diff + (size_t)j * inner,
               bottom[0]->diff + (size_t)bottom[1]->data[j] * inner);
}

const crema_layer_ops crema_batch_reindex_ops = {
    .type = "BatchReindex",
    .min_bottoms = 2,
    .max_bottoms = 2,
    .min_tops = 1,
    .max_tops = 1,
    .reshape = reindex_reshape,
    .forward = reindex_forward,
    .backward = reindex_backward,
};
