/* Split: copies its one bottom to every top (the net inserts these where one blob feeds
 * several layers, as Caffe does). Backward: bottom diff = sum of the top diffs. Not in place.
 * In a net the tops usually borrow the bottom's data instead and this forward is skipped
 * (share_split_data in net.c). */
#include <string.h>

#include "layers/layer.h"
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
  for (int t = 0; t < l->n_top; t++) crema_copy(n, bottom[0]->data, top[t]->data); /* no-op when shared */
  return 0;
}

static void split_backward(crema_layer *l, crema_blob *const *top, const bool *propagate_down,
                           crema_blob *const *bottom) {
  if (!propagate_down[0]) return;
  const size_t n = bottom[0]->count;
  const int n_top = l->n_top;
  float *g = bottom[0]->diff;
  if (n_top == 1) {
    crema_copy(n, top[0]->diff, g);
    return;
  }
  /* The tops' diffs summed in top order, up to four per pass over memory (GoogLeNet's inception
   * inputs have four readers): each element gets ((a + b) + c) + d, then + e ... in later
   * passes, the same additions in the same order as one sum over t, so the same bits, with
   * fewer reads and writes of g. */
  const float *a = top[0]->diff, *b = top[1]->diff;
  if (n_top == 2) {
#pragma omp parallel for if (n > CREMA_PAR_MIN) schedule(static)
    for (size_t i = 0; i < n; i++) g[i] = a[i] + b[i];
  } else if (n_top == 3) {
    const float *c = top[2]->diff;
#pragma omp parallel for if (n > CREMA_PAR_MIN) schedule(static)
    for (size_t i = 0; i < n; i++) g[i] = a[i] + b[i] + c[i];
  } else {
    const float *c = top[2]->diff, *d = top[3]->diff;
#pragma omp parallel for if (n > CREMA_PAR_MIN) schedule(static)
    for (size_t i = 0; i < n; i++) g[i] = a[i] + b[i] + c[i] + d[i];
  }
  for (int t = 4; t < n_top; t++) {
    const float *c = top[t]->diff;
#pragma omp parallel for if (n > CREMA_PAR_MIN) schedule(static)
    for (size_t i = 0; i < n; i++) g[i] += c[i];
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
