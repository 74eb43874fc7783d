/* Reshape: gives bottom[0] a new shape with the same count, following Caffe's reshape_param:
 * `shape` replaces the bottom axes [axis, axis + num_axes) (defaults: axis 0, num_axes -1 =
 * all the rest; a negative axis counts from the end, -1 meaning "after the last axis");
 * a 0 in `shape` copies the bottom dimension at that position, at most one -1 is inferred
 * from the count. The data are copied through; backward copies the diff back. Not in place. */
#include <stdint.h>
#include <stdlib.h>

#include "layers/layer.h"
#include "layers/loss_common.h"

typedef struct reshape_state {
  int n_dims; /* dims in reshape_param.shape */
  int dims[CREMA_MAX_AXES];
  int inferred;       /* index of the -1 dim, or -1 */
  int axis, num_axes; /* as written */
} reshape_state;

static int reshape_setup(crema_layer *l, crema_blob *const *bottom, crema_blob *const *top,
                         crema_error *err) {
  (void)bottom;
  (void)top;
  reshape_state *s = calloc(1, sizeof *s);
  if (!s) return crema_fail(err, "out of memory");
  l->state = s;
  const Crema__ReshapeParameter *rp = l->param->reshape_param;
  s->inferred = -1;
  s->axis = rp ? rp->axis : 0;
  s->num_axes = rp ? rp->num_axes : -1;
  if (s->num_axes < -1)
    return crema_fail(err, "reshape_param num_axes must be >= 0, or -1 for all, got %d", s->num_axes);
  const Crema__BlobShape *shape = rp ? rp->shape : NULL;
  size_t n = shape ? shape->n_dim : 0;
  if (n > CREMA_MAX_AXES)
    return crema_fail(err, "reshape_param shape has %zu dims; at most %d", n, CREMA_MAX_AXES);
  s->n_dims = (int)n;
  for (int i = 0; i < s->n_dims; i++) {
    int64_t d = shape->dim[i];
    if (d < -1 || d > INT32_MAX)
      return crema_fail(err,
                        "reshape_param shape dim %d is %lld; use a positive size, 0 (copy) or -1 (infer)", i,
                        (long long)d);
    if (d == -1) {
      if (s->inferred >= 0)
        return crema_fail(err, "reshape_param shape has more than one -1 dim; at most one can be inferred");
      s->inferred = i;
    }
    s->dims[i] = (int)d;
  }
  return 0;
}

static int reshape_reshape(crema_layer *l, crema_blob *const *bottom, crema_blob *const *top,
                           crema_error *err) {
  reshape_state *s = l->state;
  const crema_blob *b = bottom[0];
  char a[256];
  const int start = s->axis >= 0 ? s->axis : b->num_axes + s->axis + 1;
  if (start < 0 || start > b->num_axes)
    return crema_fail(err, "reshape_param axis %d is out of range for bottom shape %s", s->axis,
                      crema_blob_shape_string(b, a, sizeof a));
  /* num_axes > axes left rather than start + num_axes > axes: num_axes may be INT_MAX. */
  if (s->num_axes > b->num_axes - start)
    return crema_fail(err, "reshape_param axis + num_axes = %lld is out of range for bottom shape %s",
                      (long long)start + s->num_axes, crema_blob_shape_string(b, a, sizeof a));
  const int end = s->num_axes == -1 ? b->num_axes : start + s->num_axes;
  const int top_axes = b->num_axes - (end - start) + s->n_dims;
  if (top_axes > CREMA_MAX_AXES)
    return crema_fail(err, "reshape would give %d axes; crema supports at most %d", top_axes, CREMA_MAX_AXES);
  int shape[CREMA_MAX_AXES], n = 0;
  for (int i = 0; i < start; i++) shape[n++] = b->shape[i];
  for (int i = 0; i < s->n_dims; i++) {
    int d = s->dims[i];
    if (d == 0) {
      if (start + i >= b->num_axes)
        return crema_fail(
            err, "reshape_param shape dim %d is 0 (copy), but bottom %s has no axis %d to copy it from", i,
            crema_blob_shape_string(b, a, sizeof a), start + i);
      d = b->shape[start + i];
    }
    shape[n++] = d;
  }
  for (int i = end; i < b->num_axes; i++) shape[n++] = b->shape[i];
  if (s->inferred >= 0) {
    size_t known = 1;
    for (int i = 0; i < n; i++)
      if (i != start + s->inferred) known *= (size_t)shape[i];
    if (known == 0 || b->count % known)
      return crema_fail(err,
                        "bottom count %zu (shape %s) is not divisible by the product %zu of the specified "
                        "dimensions, so the -1 dim cannot be inferred",
                        b->count, crema_blob_shape_string(b, a, sizeof a), known);
    shape[start + s->inferred] = (int)(b->count / known);
  }
  if (crema_blob_reshape(top[0], n, shape, err)) return -1;
  if (top[0]->count != b->count) {
    char t[256];
    return crema_fail(err, "output shape %s has a different count than the input shape %s",
                      crema_blob_shape_string(top[0], t, sizeof t), crema_blob_shape_string(b, a, sizeof a));
  }
  return 0;
}

static void reshape_free(crema_layer *l) { free(l->state); }

const crema_layer_ops crema_reshape_ops = {
    .type = "Reshape",
    .min_bottoms = 1,
    .max_bottoms = 1,
    .min_tops = 1,
    .max_tops = 1,
    .setup = reshape_setup,
    .reshape = reshape_reshape,
    .forward = crema_copy_through_forward,
    .backward = crema_copy_through_backward,
    .free_state = reshape_free,
};
