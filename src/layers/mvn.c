/* mvn.c -- Caffe's "MVN" (mean-variance normalisation) over groups of dim values: each
 * (n, c) plane, or each item n when across_channels.
 *   y = (x - mean) / (std + eps)   with std = sqrt(mean((x - mean)^2))  (normalize_variance)
 *   y = x - mean                                                        (otherwise)
 *   d x = (d y - mean(d y) - y * mean(y * d y)) / (std + eps)           (normalize_variance)
 *   d x = d y - mean(d y)                                               (otherwise)
 * eps is added to the standard deviation, not the variance, as in Caffe. In-place allowed:
 * backward reads only the top and the kept standard deviations. */
#include <math.h>
#include <stdlib.h>

#include "layers/layer.h"
#include "tensor/math.h"

typedef struct mvn_state {
  bool normalize_variance, across_channels;
  float eps;
  size_t groups, dim;
  float *std; /* std + eps per group */
  size_t std_cap;
} mvn_state;

static int mvn_setup(crema_layer *l, crema_blob *const *bottom, crema_blob *const *top, crema_error *err) {
  (void)bottom;
  (void)top;
  const Crema__MVNParameter def = CREMA__MVNPARAMETER__INIT;
  const Crema__MVNParameter *p = l->param->mvn_param ? l->param->mvn_param : &def;
  mvn_state *s = calloc(1, sizeof *s);
  if (!s) return crema_fail(err, "out of memory");
  l->state = s;
  s->normalize_variance = p->normalize_variance;
  s->across_channels = p->across_channels;
  s->eps = p->eps;
  return 0;
}

static int mvn_reshape(crema_layer *l, crema_blob *const *bottom, crema_blob *const *top, crema_error *err) {
  mvn_state *s = l->state;
  if (crema_blob_reshape_like(top[0], bottom[0], err)) return -1;
  const int num = crema_blob_legacy_dim(bottom[0], 0);
  s->groups = s->across_channels ? (size_t)num : (size_t)num * (size_t)crema_blob_legacy_dim(bottom[0], 1);
  s->dim = s->groups ? bottom[0]->count / s->groups : 0;
  if (s->groups > s->std_cap) {
    float *p = realloc(s->std, s->groups * sizeof *p);
    if (!p) return crema_fail(err, "out of memory");
    s->std = p;
    s->std_cap = s->groups;
  }
  return 0;
}

static int mvn_forward(crema_layer *l, crema_blob *const *bottom, crema_blob *const *top, crema_error *err) {
  (void)err;
  mvn_state *s = l->state;
  const size_t dim = s->dim;
  const ptrdiff_t groups = (ptrdiff_t)s->groups;
#pragma omp parallel for if (s->groups * dim > CREMA_PAR_MIN) schedule(static)
  for (ptrdiff_t g = 0; g < groups; g++) {
    const float *x = bottom[0]->data + (size_t)g * dim;
    float *y = top[0]->data + (size_t)g * dim;
    double sum = 0.0;
    for (size_t k = 0; k < dim; k++) sum += x[k];
    const float mean = dim ? (float)(sum / (double)dim) : 0.0f;
    for (size_t k = 0; k < dim; k++) y[k] = x[k] - mean;
    if (!s->normalize_variance) continue;
    double sq = 0.0;
    for (size_t k = 0; k < dim; k++) sq += (double)y[k] * y[k];
    const float sd = (float)sqrt(dim ? sq / (double)dim : 0.0) + s->eps;
    s->std[g] = sd;
    const float inv = 1.0f / sd;
    for (size_t k = 0; k < dim; k++) y[k] *= inv;
  }
  return 0;
}

static void mvn_backward(crema_layer *l, crema_blob *const *top, const bool *propagate_down,
                         crema_blob *const *bottom) {
  mvn_state *s = l->state;
  if (!propagate_down[0]) return;
  const size_t dim = s->dim;
  const ptrdiff_t groups = (ptrdiff_t)s->groups;
#pragma omp parallel for if (s->groups * dim > CREMA_PAR_MIN) schedule(static)
  for (ptrdiff_t g = 0; g < groups; g++) {
    const float *y = top[0]->data + (size_t)g * dim, *dy = top[0]->diff + (size_t)g * dim;
    float *dx = bottom[0]->diff + (size_t)g * dim;
    double sdy = 0.0, sydy = 0.0;
    for (size_t k = 0; k < dim; k++) {
      sdy += dy[k];
      sydy += (double)y[k] * dy[k];
    }
    const float mdy = dim ? (float)(sdy / (double)dim) : 0.0f,
                mydy = dim ? (float)(sydy / (double)dim) : 0.0f;
    if (s->normalize_variance) {
      const float inv = 1.0f / s->std[g];
      for (size_t k = 0; k < dim; k++) dx[k] = (dy[k] - mdy - y[k] * mydy) * inv;
    } else {
      for (size_t k = 0; k < dim; k++) dx[k] = dy[k] - mdy;
    }
  }
}

static void mvn_free(crema_layer *l) {
  mvn_state *s = l->state;
  if (!s) return;
  free(s->std);
  free(s);
}

const crema_layer_ops crema_mvn_ops = {
    .type = "MVN",
    .min_bottoms = 1,
    .max_bottoms = 1,
    .min_tops = 1,
    .max_tops = 1,
    .allow_inplace = true,
    .setup = mvn_setup,
    .reshape = mvn_reshape,
    .forward = mvn_forward,
    .backward = mvn_backward,
    .free_state = mvn_free,
};
