/* reduction.c -- Caffe's "Reduction": reduces every axis from `axis` on to one number.
 *   bottom (outer, dim), top (outer) = shape[0 .. axis)  (a scalar when axis is 0)
 *   SUM:   top[o] = coeff * sum_d x[o, d]           d x = coeff * d top
 *   ASUM:  top[o] = coeff * sum_d |x[o, d]|         d x = coeff * sign(x) * d top
 *   SUMSQ: top[o] = coeff * sum_d x[o, d]^2         d x = 2 coeff * x * d top
 *   MEAN:  top[o] = coeff / dim * sum_d x[o, d]     d x = coeff / dim * d top */
#include <math.h>
#include <stdlib.h>

#include "layers/layer.h"
#include "layers/loss_common.h"
#include "tensor/math.h"

typedef struct reduction_state {
  Crema__ReductionParameter__ReductionOp op;
  int axis;
  float coeff;
  size_t outer, dim;
} reduction_state;

static int reduction_setup(crema_layer *l, crema_blob *const *bottom, crema_blob *const *top,
                           crema_error *err) {
  (void)bottom;
  (void)top;
  const Crema__ReductionParameter def = CREMA__REDUCTION_PARAMETER__INIT;
  const Crema__ReductionParameter *p = l->param->reduction_param ? l->param->reduction_param : &def;
  if (p->operation < CREMA__REDUCTION_PARAMETER__REDUCTION_OP__SUM ||
      p->operation > CREMA__REDUCTION_PARAMETER__REDUCTION_OP__MEAN)
    return crema_fail(err, "unknown reduction_param operation %d", (int)p->operation);
  reduction_state *s = calloc(1, sizeof *s);
  if (!s) return crema_fail(err, "out of memory");
  l->state = s;
  s->op = p->operation;
  s->axis = p->axis;
  s->coeff = p->coeff;
  return 0;
}

static int reduction_reshape(crema_layer *l, crema_blob *const *bottom, crema_blob *const *top,
                             crema_error *err) {
  reduction_state *s = l->state;
  int axis = crema_layer_axis(bottom[0], s->axis, "reduction_param axis", err);
  if (axis < 0) return -1;
  s->outer = crema_blob_count_range(bottom[0], 0, axis);
  s->dim = crema_blob_count_range(bottom[0], axis, bottom[0]->num_axes);
  return crema_blob_reshape(top[0], axis, bottom[0]->shape, err);
}

static int reduction_forward(crema_layer *l, crema_blob *const *bottom, crema_blob *const *top,
                             crema_error *err) {
  (void)err;
  const reduction_state *s = l->state;
  const float *x = bottom[0]->data;
  float *y = top[0]->data;
  const size_t dim = s->dim;
  for (size_t o = 0; o < s->outer; o++) {
    const float *v = x + o * dim;
    double acc = 0.0;
    switch (s->op) {
    case CREMA__REDUCTION_PARAMETER__REDUCTION_OP__ASUM:
      for (size_t d = 0; d < dim; d++) acc += fabs((double)v[d]);
      break;
    case CREMA__REDUCTION_PARAMETER__REDUCTION_OP__SUMSQ:
      for (size_t d = 0; d < dim; d++) acc += (double)v[d] * v[d];
      break;
    default: /* SUM, MEAN */
      for (size_t d = 0; d < dim; d++) acc += v[d];
      if (s->op == CREMA__REDUCTION_PARAMETER__REDUCTION_OP__MEAN && dim > 0) acc /= (double)dim;
      break;
    }
    y[o] = (float)(acc * s->coeff);
  }
  return 0;
}

static void reduction_backward(crema_layer *l, crema_blob *const *top, const bool *propagate_down,
                               crema_blob *const *bottom) {
  const reduction_state *s = l->state;
  if (!propagate_down[0]) return;
  const float *x = bottom[0]->data, *dy = top[0]->diff;
  float *dx = bottom[0]->diff;
  const size_t dim = s->dim;
  for (size_t o = 0; o < s->outer; o++) {
    const float g = dy[o] * s->coeff;
    const float *v = x + o * dim;
    float *d = dx + o * dim;
    switch (s->op) {
    case CREMA__REDUCTION_PARAMETER__REDUCTION_OP__ASUM:
      for (size_t k = 0; k < dim; k++) d[k] = v[k] > 0.0f ? g : (v[k] < 0.0f ? -g : 0.0f);
      break;
    case CREMA__REDUCTION_PARAMETER__REDUCTION_OP__SUMSQ:
      for (size_t k = 0; k < dim; k++) d[k] = 2.0f * g * v[k];
      break;
    case CREMA__REDUCTION_PARAMETER__REDUCTION_OP__MEAN:
      crema_set(dim, dim > 0 ? g / (float)dim : 0.0f, d);
      break;
    default: crema_set(dim, g, d); break;
    }
  }
}

static void reduction_free(crema_layer *l) { free(l->state); }

const crema_layer_ops crema_reduction_ops = {
    .type = "Reduction",
    .min_bottoms = 1,
    .max_bottoms = 1,
    .min_tops = 1,
    .max_tops = 1,
    .setup = reduction_setup,
    .reshape = reduction_reshape,
    .forward = reduction_forward,
    .backward = reduction_backward,
    .free_state = reduction_free,
};
