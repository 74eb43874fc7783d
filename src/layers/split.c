/* Split: hands its one bottom to every top (the net inserts these where one blob feeds
 * several layers, as Caffe does). Backward: bottom diff = sum of the top diffs. Not in place.
 *
 * Forward copies nothing: each top's data is a view of the bottom's (crema_blob_share_data,
 * Caffe's ShareData), unless the net marked the top for a copy because a consumer overwrites
 * it in place (split.h). Every top keeps its own diff. The view is renewed at every reshape
 * and forward, so it follows a bottom that was reallocated. */
#include <stdlib.h>
#include <string.h>

#include "layers/layer.h"
#include "layers/split.h"
#include "tensor/math.h"

typedef struct split_state {
  bool *copy; /* per top: own data, copied in forward */
} split_state;

static int split_setup(crema_layer *l, crema_blob *const *bottom, crema_blob *const *top, crema_error *err) {
  (void)bottom;
  (void)top;
  split_state *s = calloc(1, sizeof *s);
  if (!s || !(s->copy = calloc((size_t)l->n_top, sizeof *s->copy))) {
    free(s);
    return crema_fail(err, "out of memory");
  }
  l->state = s;
  return 0;
}

void crema_split_set_copy(crema_layer *l, int t, bool copy) {
  split_state *s = l->state;
  s->copy[t] = copy;
}

static int split_reshape(crema_layer *l, crema_blob *const *bottom, crema_blob *const *top,
                         crema_error *err) {
  const split_state *s = l->state;
  for (int t = 0; t < l->n_top; t++)
    if (s->copy[t] ? crema_blob_reshape_like(top[t], bottom[0], err)
                   : crema_blob_share_data(top[t], bottom[0], err))
      return -1;
  return 0;
}

static int split_forward(crema_layer *l, crema_blob *const *bottom, crema_blob *const *top,
                         crema_error *err) {
  const split_state *s = l->state;
  const size_t n = bottom[0]->count;
  for (int t = 0; t < l->n_top; t++) {
    if (!s->copy[t]) {
      if (crema_blob_share_data(top[t], bottom[0], err)) return -1;
    } else {
      crema_copy(n, bottom[0]->data, top[t]->data);
    }
  }
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
  /* Two tops (the common case) in one vectorised pass; more: add the rest one by one, in the
   * same order as a sum over t per element, so the result is the same. */
  const float *a = top[0]->diff, *b = top[1]->diff;
#pragma omp parallel for if (n > CREMA_PAR_MIN) schedule(static)
  for (size_t i = 0; i < n; i++) g[i] = a[i] + b[i];
  for (int t = 2; t < n_top; t++) {
    const float *c = top[t]->diff;
#pragma omp parallel for if (n > CREMA_PAR_MIN) schedule(static)
    for (size_t i = 0; i < n; i++) g[i] += c[i];
  }
}

static void split_free(crema_layer *l) {
  split_state *s = l->state;
  if (!s) return;
  free(s->copy);
  free(s);
}

const crema_layer_ops crema_split_ops = {
    .type = "Split",
    .min_bottoms = 1,
    .max_bottoms = 1,
    .min_tops = 1,
    .max_tops = -1,
    .setup = split_setup,
    .reshape = split_reshape,
    .forward = split_forward,
    .backward = split_backward,
    .free_state = split_free,
};
