/* Input: the net's entry point for data fed by the caller (deploy nets, tools, tests). Its tops
 * get input_param.shape -- one shape for every top, or one per top, or none (the caller shapes
 * them) -- once at setup; afterwards the caller may reshape them and reshape the net.
 * Forward does nothing: the data are whatever the caller wrote. No backward. */
#include <stdint.h>

#include "layers/layer.h"

/* Converts a BlobShape message to dims; `what` names it in errors. */
static int shape_from_proto(const Crema__BlobShape *bs, int *n, int *dims, const char *what,
                            crema_error *err) {
  if (bs->n_dim > CREMA_MAX_AXES)
    return crema_fail(err, "%s has %zu dims; crema supports at most %d", what, bs->n_dim, CREMA_MAX_AXES);
  for (size_t i = 0; i < bs->n_dim; i++) {
    if (bs->dim[i] < 0 || bs->dim[i] > INT32_MAX)
      return crema_fail(err, "%s dim %zu is %lld; dims must be between 0 and 2^31-1", what, i,
                        (long long)bs->dim[i]);
    dims[i] = (int)bs->dim[i];
  }
  *n = (int)bs->n_dim;
  return 0;
}

static int input_setup(crema_layer *l, crema_blob *const *bottom, crema_blob *const *top, crema_error *err) {
  (void)bottom;
  const Crema__InputParameter *ip = l->param->input_param;
  size_t n_shape = ip ? ip->n_shape : 0;
  if (n_shape != 0 && n_shape != 1 && n_shape != (size_t)l->n_top)
    return crema_fail(err, "input_param has %zu shapes for %d tops; give one shape, one per top, or none",
                      n_shape, l->n_top);
  for (int t = 0; n_shape && t < l->n_top; t++) {
    int n = 0, dims[CREMA_MAX_AXES];
    if (shape_from_proto(ip->shape[n_shape == 1 ? 0 : t], &n, dims, "input_param shape", err) ||
        crema_blob_reshape(top[t], n, dims, err))
      return -1;
  }
  return 0;
}

static int input_forward(crema_layer *l, crema_blob *const *bottom, crema_blob *const *top,
                         crema_error *err) {
  (void)l;
  (void)bottom;
  (void)top;
  (void)err;
  return 0;
}

const crema_layer_ops crema_input_ops = {
    .type = "Input",
    .min_bottoms = 0,
    .max_bottoms = 0,
    .min_tops = 1,
    .max_tops = -1,
    .setup = input_setup,
    .forward = input_forward,
};
