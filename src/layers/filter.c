/* filter.c -- Caffe's "Filter": keeps the items (first-axis slices) whose selector is not 0.
 *   bottoms: K data blobs and, last, the selector (N values, e.g. shape (N) or (N, 1))
 *   tops:    K blobs; top_k = the items i of bottom_k with selector[i] != 0, in order
 *   d bottom_k[i] = d top_k[j] for the j-th kept item i, 0 for dropped items
 * The number of kept items depends on the data, so forward reshapes the tops (within the
 * capacity reserved for a full batch: no allocation). The selector gets no gradient. */
#include <stdlib.h>
#include <string.h>

#include "layers/layer.h"

typedef struct filter_state {
  int *kept; /* indices of the kept items */
  int n_kept, num;
} filter_state;

static int filter_setup(crema_layer *l, crema_blob *const *bottom, crema_blob *const *top, crema_error *err) {
  (void)bottom;
  (void)top;
  if (l->n_top != l->n_bottom - 1)
    return crema_fail(err, "takes one top per data bottom (%d), got %d tops; the last bottom is the selector",
                      l->n_bottom - 1, l->n_top);
  filter_state *s = calloc(1, sizeof *s);
  if (!s) return crema_fail(err, "out of memory");
  l->state = s;
  return 0;
}

static int filter_select(crema_layer *l, crema_blob *const *bottom, crema_blob *const *top, int n_kept,
                         crema_error *err) {
  for (int k = 0; k < l->n_top; k++) {
    int shape[CREMA_MAX_AXES];
    memcpy(shape, bottom[k]->shape, sizeof shape);
    shape[0] = n_kept;
    if (crema_blob_reshape(top[k], bottom[k]->num_axes, shape, err)) return -1;
  }
  return 0;
}

static int filter_reshape(crema_layer *l, crema_blob *const *bottom, crema_blob *const *top,
                          crema_error *err) {
  filter_state *s = l->state;
  const crema_blob *sel = bottom[l->n_bottom - 1];
  char a[256], b[256];
  if (sel->num_axes < 1) return crema_fail(err, "the selector (last bottom) must have a first axis");
  s->num = sel->shape[0];
  if ((size_t)s->num != sel->count)
    return crema_fail(err, "the selector (last bottom) must hold one value per item, got shape %s",
                      crema_blob_shape_string(sel, a, sizeof a));
  for (int k = 0; k < l->n_top; k++)
    if (bottom[k]->num_axes < 1 || bottom[k]->shape[0] != s->num)
      return crema_fail(err,
                        "bottom %d has shape %s but the selector has %d items; their first axes must agree",
                        k, crema_blob_shape_string(bottom[k], b, sizeof b), s->num);
  const bool first = s->kept == NULL;
  int *kept = realloc(s->kept, (size_t)(s->num > 0 ? s->num : 1) * sizeof *kept);
  if (!kept) return crema_fail(err, "out of memory");
  s->kept = kept;
  /* Reserve a full batch; the first reshape (at setup, before any data) keeps it, as
   * Caffe's does, later ones shape for the current selection. */
  if (filter_select(l, bottom, top, s->num, err)) return -1;
  if (first) return 0;
  s->n_kept = 0;
  for (int i = 0; i < s->num; i++)
    if (sel->data[i] != 0.0f) s->kept[s->n_kept++] = i;
  return filter_select(l, bottom, top, s->n_kept, err);
}

static int filter_forward(crema_layer *l, crema_blob *const *bottom, crema_blob *const *top,
                          crema_error *err) {
  filter_state *s = l->state;
  const crema_blob *sel = bottom[l->n_bottom - 1];
  s->n_kept = 0;
  for (int i = 0; i < s->num; i++)
    if (sel->data[i] != 0.0f) s->kept[s->n_kept++] = i;
  if (filter_select(l, bottom, top, s->n_kept, err)) return -1;
  for (int k = 0; k < l->n_top; k++) {
    const size_t inner = s->num ? bottom[k]->count / (size_t)s->num : 0;
    for (int j = 0; j < s->n_kept; j++)
      memcpy(top[k]->data + (size_t)j * inner, bottom[k]->data + (size_t)s->kept[j] * inner,
             inner * sizeof(float));
  }
  return 0;
}

static void filter_backward(crema_layer *l, crema_blob *const *top, const bool *propagate_down,
                            crema_blob *const *bottom) {
  const filter_state *s = l->state;
  for (int k = 0; k < l->n_top; k++) {
    if (!propagate_down[k]) continue;
    const size_t inner = s->num ? bottom[k]->count / (size_t)s->num : 0;
    memset(bottom[k]->diff, 0, bottom[k]->count * sizeof(float));
    for (int j = 0; j < s->n_kept; j++)
      memcpy(bottom[k]->diff + (size_t)s->kept[j] * inner, top[k]->diff + (size_t)j * inner,
             inner * sizeof(float));
  }
}

static void filter_free(crema_layer *l) {
  filter_state *s = l->state;
  if (!s) return;
  free(s->kept);
  free(s);
}

const crema_layer_ops crema_filter_ops = {
    .type = "Filter",
    .min_bottoms = 2,
    .max_bottoms = -1,
    .min_tops = 1,
    .max_tops = -1,
    .setup = filter_setup,
    .reshape = filter_reshape,
    .forward = filter_forward,
    .backward = filter_backward,
    .free_state = filter_free,
};
