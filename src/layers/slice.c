/* Slice: cuts bottom[0] along slice_param.axis (default 1; negative counts from the end; the
 * legacy slice_dim is accepted, not both) into the tops: at the increasing slice_point
 * positions (one fewer than the tops), or into equal parts when no slice_point is given.
 * Backward copies every top diff back into its part of the bottom diff. */
#include <stdlib.h>
#include <string.h>

#include "layers/layer.h"
#include "layers/loss_common.h"
#include "tensor/math.h"

typedef struct slice_state {
  int axis_param;
  bool legacy;
  int axis;
  size_t outer, inner;
} slice_state;

static int slice_setup(crema_layer *l, crema_blob *const *bottom, crema_blob *const *top, crema_error *err) {
  (void)bottom;
  (void)top;
  slice_state *s = calloc(1, sizeof *s);
  if (!s) return crema_fail(err, "out of memory");
  l->state = s;
  const Crema__SliceParameter *sp = l->param->slice_param;
  s->axis_param = 1;
  if (sp && sp->has_axis && sp->has_slice_dim)
    return crema_fail(err, "slice_param sets both axis and slice_dim; keep only axis");
  if (sp && sp->has_slice_dim) {
    if (sp->slice_dim >= CREMA_MAX_AXES)
      return crema_fail(err, "slice_param slice_dim %u is out of range", sp->slice_dim);
    s->axis_param = (int)sp->slice_dim;
    s->legacy = true;
  } else if (sp) {
    s->axis_param = sp->axis;
  }
  if (sp && sp->n_slice_point && sp->n_slice_point != (size_t)l->n_top - 1)
    return crema_fail(err, "slice_param has %zu slice_point values for %d tops; give exactly %d (tops - 1)",
                      sp->n_slice_point, l->n_top, l->n_top - 1);
  return 0;
}

static int slice_reshape(crema_layer *l, crema_blob *const *bottom, crema_blob *const *top,
                         crema_error *err) {
  slice_state *s = l->state;
  const crema_blob *b = bottom[0];
  const Crema__SliceParameter *sp = l->param->slice_param;
  char a[256];
  if (s->legacy && s->axis_param >= b->num_axes)
    return crema_fail(err, "slice_param slice_dim %d is out of range for bottom shape %s", s->axis_param,
                      crema_blob_shape_string(b, a, sizeof a));
  int axis = crema_layer_axis(b, s->axis_param, "slice_param axis", err);
  if (axis < 0) return -1;
  const int n = b->shape[axis], n_top = l->n_top;
  int shape[CREMA_MAX_AXES];
  for (int i = 0; i < b->num_axes; i++) shape[i] = b->shape[i];
  if (sp && sp->n_slice_point) {
    unsigned prev = 0;
    for (int t = 0; t < n_top; t++) {
      unsigned end = t < n_top - 1 ? sp->slice_point[t] : (unsigned)n;
      if (t < n_top - 1 && (end <= prev || end > (unsigned)n))
        return crema_fail(err,
                          "slice_point %u must be larger than the previous one (%u) and at most the size "
                          "%d of the sliced axis %d of bottom %s",
                          end, prev, n, axis, crema_blob_shape_string(b, a, sizeof a));
      shape[axis] = (int)(end - prev);
      if (crema_blob_reshape(top[t], b->num_axes, shape, err)) return -1;
      prev = end;
    }
  } else {
    if (n % n_top)
      return crema_fail(err,
                        "%d tops do not evenly divide the size %d of the sliced axis %d of bottom %s; give "
                        "slice_point values",
                        n_top, n, axis, crema_blob_shape_string(b, a, sizeof a));
    shape[axis] = n / n_top;
    for (int t = 0; t < n_top; t++)
      if (crema_blob_reshape(top[t], b->num_axes, shape, err)) return -1;
  }
  s->axis = axis;
  s->outer = crema_blob_count_range(b, 0, axis);
  s->inner = crema_blob_count_range(b, axis + 1, b->num_axes);
  return 0;
}

/* forward: bottom data -> top t data; backward: top t diff -> bottom diff. */
static void slice_copy(const slice_state *s, crema_blob *b, crema_blob *t, int offset, bool forward) {
  const size_t len = (size_t)t->shape[s->axis] * s->inner;
  const size_t b_len = (size_t)b->shape[s->axis] * s->inner;
  const size_t off = (size_t)offset * s->inner;
  if (len == 0) return;
#pragma omp parallel for if (s->outer > 1 && s->outer * len > CREMA_PAR_MIN) schedule(static)
  for (size_t n = 0; n < s->outer; n++) {
    if (forward)
      memcpy(t->data + n * len, b->data + n * b_len + off, len * sizeof(float));
    else
      memcpy(b->diff + n * b_len + off, t->diff + n * len, len * sizeof(float));
  }
}

static int slice_forward(crema_layer *l, crema_blob *const *bottom, crema_blob *const *top,
                         crema_error *err) {
  (void)err;
  slice_state *s = l->state;
  int offset = 0;
  for (int t = 0; t < l->n_top; t++) {
    slice_copy(s, bottom[0], top[t], offset, true);
    offset += top[t]->shape[s->axis];
  }
  return 0;
}

static void slice_backward(crema_layer *l, crema_blob *const *top, const bool *propagate_down,
                           crema_blob *const *bottom) {
  if (!propagate_down[0]) return;
  slice_state *s = l->state;
  int offset = 0;
  for (int t = 0; t < l->n_top; t++) {
    slice_copy(s, bottom[0], top[t], offset, false);
    offset += top[t]->shape[s->axis];
  }
}

static void slice_free(crema_layer *l) { free(l->state); }

const crema_layer_ops crema_slice_ops = {
    .type = "Slice",
    .min_bottoms = 1,
    .max_bottoms = 1,
    .min_tops = 1,
    .max_tops = -1,
    .setup = slice_setup,
    .reshape = slice_reshape,
    .forward = slice_forward,
    .backward = slice_backward,
    .free_state = slice_free,
};
