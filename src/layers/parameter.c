/* parameter.c -- Caffe's "Parameter": a learnable blob of parameter_param.shape exposed as
 * the layer's only top (no bottoms).
 *   top = blob            d blob += d top
 * Caffe shares the memory of top and blob; crema copies (blobs never share memory). The
 * blob starts at zero, as in Caffe (its values come from a caffemodel or from training). */
#include <stdlib.h>

#include "layers/layer.h"
#include "tensor/math.h"

static int parameter_setup(crema_layer *l, crema_blob *const *bottom, crema_blob *const *top,
                           crema_error *err) {
  (void)bottom;
  (void)top;
  const Crema__ParameterParameter *p = l->param->parameter_param;
  if (!p || !p->shape) return crema_fail(err, "parameter_param { shape { dim: ... } } is required");
  if (p->shape->n_dim > CREMA_MAX_AXES)
    return crema_fail(err, "parameter_param shape has %zu axes, at most %d", p->shape->n_dim, CREMA_MAX_AXES);
  int shape[CREMA_MAX_AXES];
  for (size_t i = 0; i < p->shape->n_dim; i++) {
    if (p->shape->dim[i] < 0 || p->shape->dim[i] > 0x7fffffff)
      return crema_fail(err, "parameter_param shape dim %zu is %lld", i, (long long)p->shape->dim[i]);
    shape[i] = (int)p->shape->dim[i];
  }
  return crema_layer_add_blob(l, 0, (int)p->shape->n_dim, shape, NULL, err);
}

static int parameter_reshape(crema_layer *l, crema_blob *const *bottom, crema_blob *const *top,
                             crema_error *err) {
  (void)bottom;
  return crema_blob_reshape_like(top[0], l->blobs[0], err);
}

static int parameter_forward(crema_layer *l, crema_blob *const *bottom, crema_blob *const *top,
                             crema_error *err) {
  (void)bottom;
  (void)err;
  crema_copy(l->blobs[0]->count, l->blobs[0]->data, top[0]->data);
  return 0;
}

static void parameter_backward(crema_layer *l, crema_blob *const *top, const bool *propagate_down,
                               crema_blob *const *bottom) {
  (void)propagate_down;
  (void)bottom;
  if (l->param_propagate_down[0]) crema_axpy(l->blobs[0]->count, 1.0f, top[0]->diff, l->blobs[0]->diff);
}

const crema_layer_ops crema_parameter_ops = {
    .type = "Parameter",
    .min_bottoms = 0,
    .max_bottoms = 0,
    .min_tops = 1,
    .max_tops = 1,
    .setup = parameter_setup,
    .reshape = parameter_reshape,
    .forward = parameter_forward,
    .backward = parameter_backward,
};
