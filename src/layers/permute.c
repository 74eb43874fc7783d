/* permute.c -- SSD's "Permute" (weiliu89/caffe): reorders the axes of a blob.
 *   permute_param.order: the new order (e.g. 0 2 3 1 turns N C H W into N H W C); axes left
 *   out follow in their original order.
 *   top[i_order[0], ..., i_order[k]] = bottom[i_0, ..., i_k];  d bottom = the inverse permute */
#include <stdlib.h>
#include <string.h>

#include "layers/layer.h"

typedef struct permute_state {
  int n_axes;
  int order[CREMA_MAX_AXES];
  size_t in_stride[CREMA_MAX_AXES]; /* bottom stride of the axis that top axis k reads */
} permute_state;

static int permute_setup(crema_layer *l, crema_blob *const *bottom, crema_blob *const *top,
                         crema_error *err) {
  (void)top;
  permute_state *s = calloc(1, sizeof *s);
  if (!s) return crema_fail(err, "out of memory");
  l->state = s;
  const Crema__PermuteParameter *p = l->param->permute_param;
  const int na = bottom[0]->num_axes;
  bool used[CREMA_MAX_AXES] = {false};
  int k = 0;
  for (size_t i = 0; p && i < p->n_order; i++) {
    if (p->order[i] >= (uint32_t)na)
      return crema_fail(err, "permute_param order %u is not an axis of the %d-axis bottom", p->order[i], na);
    if (used[p->order[i]]) return crema_fail(err, "permute_param order names axis %u twice", p->order[i]);
    used[p->order[i]] = true;
    s->order[k++] = (int)p->order[i];
  }
  for (int a = 0; a < na; a++)
    if (!used[a]) s->order[k++] = a;
  s->n_axes = na;
  return 0;
}

static int permute_reshape(crema_layer *l, crema_blob *const *bottom, crema_blob *const *top,
                           crema_error *err) {
  permute_state *s = l->state;
  if (bottom[0]->num_axes != s->n_axes)
    return crema_fail(err, "the bottom's number of axes changed from %d to %d", s->n_axes,
                      bottom[0]->num_axes);
  int shape[CREMA_MAX_AXES];
  size_t stride[CREMA_MAX_AXES];
  size_t st = 1;
  for (int a = s->n_axes - 1; a >= 0; a--) {
    stride[a] = st;
    st *= (size_t)bottom[0]->shape[a];
  }
  for (int k = 0; k < s->n_axes; k++) {
    shape[k] = bottom[0]->shape[s->order[k]];
    s->in_stride[k] = stride[s->order[k]];
  }
  return crema_blob_reshape(top[0], s->n_axes, shape, err);
}

/* Walks the top in order; to_top copies bottom -> top, else top -> bottom. */
static void permute_copy(const permute_state *s, const crema_blob *top, const float *src, float *dst,
                         bool to_top) {
  const size_t n = top->count;
  if (!n) return;
  int idx[CREMA_MAX_AXES] = {0};
  size_t in = 0;
  for (size_t o = 0; o < n; o++) {
    if (to_top)
      dst[o] = src[in];
    else
      dst[in] = src[o];
    for (int k = s->n_axes - 1; k >= 0; k--) {
      in += s->in_stride[k];
      if (++idx[k] < top->shape[k]) break;
      in -= s->in_stride[k] * (size_t)top->shape[k];
      idx[k] = 0;
    }
  }
}

static int permute_forward(crema_layer *l, crema_blob *const *bottom, crema_blob *const *top,
                           crema_error *err) {
  (void)err;
  permute_copy(l->state, top[0], bottom[0]->data, top[0]->data, true);
  return 0;
}

static void permute_backward(crema_layer *l, crema_blob *const *top, const bool *propagate_down,
                             crema_blob *const *bottom) {
  if (!propagate_down[0]) return;
  permute_copy(l->state, top[0], top[0]->diff, bottom[0]->diff, false);
}

static void permute_free(crema_layer *l) { free(l->state); }

const crema_layer_ops crema_permute_ops = {
    .type = "Permute",
    .min_bottoms = 1,
    .max_bottoms = 1,
    .min_tops = 1,
    .max_tops = 1,
    .setup = permute_setup,
    .reshape = permute_reshape,
    .forward = permute_forward,
    .backward = permute_backward,
    .free_state = permute_free,
};
