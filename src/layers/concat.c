/* Concat: joins its bottoms along concat_param.axis (default 1; negative counts from the end;
 * the legacy concat_dim is accepted, not both). Every other dimension must match; a mismatch
 * names both shapes. Backward copies each slice of the top diff back to its bottom. */
#include <stdlib.h>
#include <string.h>

#include "layers/layer.h"
#include "layers/loss_common.h"
#include "tensor/math.h"

typedef struct concat_state {
  int axis_param;
  bool legacy; /* axis came from concat_dim: no negative values */
  int axis;
  size_t outer, inner; /* count before and after the axis */
} concat_state;

static int concat_setup(crema_layer *l, crema_blob *const *bottom, crema_blob *const *top, crema_error *err) {
  (void)bottom;
  (void)top;
  concat_state *s = calloc(1, sizeof *s);
  if (!s) return crema_fail(err, "out of memory");
  l->state = s;
  const Crema__ConcatParameter *cp = l->param->concat_param;
  s->axis_param = 1;
  if (cp && cp->has_axis && cp->has_concat_dim)
    return crema_fail(err, "concat_param sets both axis and concat_dim; keep only axis");
  if (cp && cp->has_concat_dim) {
    if (cp->concat_dim >= CREMA_MAX_AXES)
      return crema_fail(err, "concat_param concat_dim %u is out of range", cp->concat_dim);
    s->axis_param = (int)cp->concat_dim;
    s->legacy = true;
  } else if (cp) {
    s->axis_param = cp->axis;
  }
  return 0;
}

static int concat_reshape(crema_layer *l, crema_blob *const *bottom, crema_blob *const *top,
                          crema_error *err) {
  concat_state *s = l->state;
  const crema_blob *b0 = bottom[0];
  char a[256], b[256];
  if (s->legacy && s->axis_param >= b0->num_axes)
    return crema_fail(err, "concat_param concat_dim %d is out of range for bottom shape %s", s->axis_param,
                      crema_blob_shape_string(b0, a, sizeof a));
  int axis = crema_layer_axis(b0, s->axis_param, "concat_param axis", err);
  if (axis < 0) return -1;
  int shape[CREMA_MAX_AXES];
  for (int i = 0; i < b0->num_axes; i++) shape[i] = b0->shape[i];
  for (int k = 1; k < l->n_bottom; k++) {
    const crema_blob *bk = bottom[k];
    bool same = bk->num_axes == b0->num_axes;
    for (int i = 0; same && i < b0->num_axes; i++) same = i == axis || bk->shape[i] == b0->shape[i];
    if (!same)
      return crema_fail(
          err,
          "bottom 0 has shape %s but bottom %d has shape %s: all inputs must have the same shape "
          "except along the concat axis %d",
          crema_blob_shape_string(b0, a, sizeof a), k, crema_blob_shape_string(bk, b, sizeof b), axis);
    shape[axis] += bk->shape[axis];
  }
  s->axis = axis;
  s->outer = crema_blob_count_range(b0, 0, axis);
  s->inner = crema_blob_count_range(b0, axis + 1, b0->num_axes);
  return crema_blob_reshape(top[0], b0->num_axes, shape, err);
}

/* Copies between bottom k's block and its place in the top, for every outer index:
 * to_top = forward (data), else backward (diff). */
static void concat_copy(const concat_state *s, crema_blob *bk, crema_blob *t, int offset, bool to_top) {
  const size_t len = (size_t)bk->shape[s->axis] * s->inner;
  const size_t top_len = (size_t)t->shape[s->axis] * s->inner;
  const size_t off = (size_t)offset * s->inner;
  if (len == 0) return;
#pragma omp parallel for if (s->outer > 1 && s->outer * len > CREMA_PAR_MIN) schedule(static)
  for (size_t n = 0; n < s->outer; n++) {
    if (to_top)
      memcpy(t->data + n * top_len + off, bk->data + n * len, len * sizeof(float));
    else
      memcpy(bk->diff + n * len, t->diff + n * top_len + off, len * sizeof(float));
  }
}

static int concat_forward(crema_layer *l, crema_blob *const *bottom, crema_blob *const *top,
                          crema_error *err) {
  (void)err;
  concat_state *s = l->state;
  int offset = 0;
  for (int k = 0; k < l->n_bottom; k++) {
    concat_copy(s, bottom[k], top[0], offset, true);
    offset += bottom[k]->shape[s->axis];
  }
  return 0;
}

static void concat_backward(crema_layer *l, crema_blob *const *top, const bool *propagate_down,
                            crema_blob *const *bottom) {
  concat_state *s = l->state;
  int offset = 0;
  for (int k = 0; k < l->n_bottom; k++) {
    if (propagate_down[k]) concat_copy(s, bottom[k], top[0], offset, false);
    offset += bottom[k]->shape[s->axis];
  }
}

static void concat_free(crema_layer *l) { free(l->state); }

const crema_layer_ops crema_concat_ops = {
    .type = "Concat",
    .min_bottoms = 1,
    .max_bottoms = -1,
    .min_tops = 1,
    .max_tops = 1,
    .setup = concat_setup,
    .reshape = concat_reshape,
    .forward = concat_forward,
    .backward = concat_backward,
    .free_state = concat_free,
};
