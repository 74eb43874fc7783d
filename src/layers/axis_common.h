/* axis_common.h -- the broadcasting shared by Scale and Bias.
 *
 * Both layers combine bottom[0] with a parameter p (learned, or a second bottom) whose shape
 * equals a run of bottom[0]'s axes, shape[axis .. axis + p.num_axes). Viewed that way
 * bottom[0] is (outer, dim, inner): outer = product of the axes before `axis`, dim = p's
 * count, inner = product of the axes after the run; element (o, d, i) pairs with p[d].
 * A scalar p (0 axes) pairs with everything (axis 0, dim 1). */
#ifndef CREMA_LAYERS_AXIS_COMMON_H
#define CREMA_LAYERS_AXIS_COMMON_H

#include <stdbool.h>
#include <stddef.h>

#include "base/error.h"
#include "tensor/blob.h"

typedef struct crema_axis_dims {
  int axis; /* canonical first axis of the run in bottom[0] */
  size_t outer, dim, inner;
} crema_axis_dims;

/* Shape of a learned parameter for bottom, axis and num_axes as in Caffe's scale_param /
 * bias_param (axis may be negative; num_axes -1 = up to the last axis, 0 = a scalar).
 * Writes *n_axes and shape[0 .. *n_axes). `what` names the parameter message in errors. */
int crema_axis_param_shape(const crema_blob *bottom, int axis, int num_axes, const char *what, int *n_axes,
                           int shape[CREMA_MAX_AXES], crema_error *err);

/* Checks that p's shape matches bottom's axes from `axis` on (axis ignored for a scalar p)
 * and fills d. Errors name both shapes. */
int crema_axis_dims_compute(const crema_blob *bottom, const crema_blob *p, int axis, const char *what,
                            crema_axis_dims *d, crema_error *err);

/* y[o, d, i] = x[o, d, i] * s[d] + b[d] in one pass (s NULL: no multiply; b NULL: no add),
 * copying x into saved first when saved is not NULL. y may equal x. The same results as
 * crema_axis_mul followed by crema_axis_add. Parallel over elements, whatever the shape. */
void crema_axis_scale_shift(const crema_axis_dims *d, const float *x, const float *s, const float *b,
                            float *y, float *saved);
/* y[o, d, i] = x[o, d, i] * s[d]. y may equal x. */
void crema_axis_mul(const crema_axis_dims *d, const float *x, const float *s, float *y);
/* y[o, d, i] += b[d]. */
void crema_axis_add(const crema_axis_dims *d, const float *b, float *y);
/* out[d] (+)= sum over o, i of a[o, d, i] * (m ? m[o, d, i] : 1); accumulates when
 * `accumulate`, else overwrites. Sums in double, so long reductions stay accurate. */
void crema_axis_reduce(const crema_axis_dims *d, const float *a, const float *m, float *out, bool accumulate);
/* Scale's backward, in one pass over dy where there are enough channels to share among the
 * threads: db[d] (+)= sum of dy, ds[d] (+)= sum of dy * x (as crema_axis_reduce, with the same
 * results), dx = dy * s[d], or dx = dy without s (Bias's backward). Any of ds, db, dx may be
 * NULL (then x may be too); dx may be dy. */
void crema_axis_scale_backward(const crema_axis_dims *d, const float *dy, const float *x, const float *s,
                               float *ds, bool ds_accumulate, float *db, bool db_accumulate, float *dx);

/* sum a[i] and sum a[i] * b[i] over n elements: eight independent float partial sums (so the
 * loop is not bound by the latency of one long chain of dependent adds), combined in double.
 * Used by the reductions of Scale, Bias, BatchNorm and PReLU. */
double crema_sum_floats(const float *a, size_t n);
double crema_dot_floats(const float *a, const float *b, size_t n);

#endif
