#include "layers/axis_common.h"
#include "tensor/math.h"

#include <stdio.h>

int crema_axis_param_shape(const crema_blob *bottom, int axis, int num_axes, const char *what, int *n_axes,
                           int shape[CREMA_MAX_AXES], crema_error *err) {
  int a;
  if (num_axes < -1)
    return crema_fail(err, "%s.num_axes is %d; it must be >= 0, or -1 to extend to the last axis", what,
                      num_axes);
  if (num_axes == 0) { /* a scalar: the axis does not matter, as in Caffe */
    *n_axes = 0;
    return 0;
  }
  if (crema_blob_canonical_axis(bottom, axis, &a, err)) return crema_error_prefix(err, "%s.axis", what);
  /* Compared as num_axes > axes left, not a + num_axes > axes: num_axes may be INT_MAX. */
  if (num_axes > bottom->num_axes - a)
    return crema_fail(err, "%s: axis %d + num_axes %d needs a bottom with at least %lld axes, got %d", what,
                      axis, num_axes, (long long)a + num_axes, bottom->num_axes);
  int end = num_axes < 0 ? bottom->num_axes : a + num_axes;
  *n_axes = end - a;
  for (int i = a; i < end; i++) shape[i - a] = bottom->shape[i];
  return 0;
}

int crema_axis_dims_compute(const crema_blob *bottom, const crema_blob *p, int axis, const char *what,
                            crema_axis_dims *d, crema_error *err) {
  int a = 0;
  if (p->num_axes > 0 && crema_blob_canonical_axis(bottom, axis, &a, err))
    return crema_error_prefix(err, "%s.axis", what);
  bool ok = a + p->num_axes <= bottom->num_axes;
  for (int i = 0; ok && i < p->num_axes; i++) ok = bottom->shape[a + i] == p->shape[i];
  if (!ok) {
    char bs[256], ps[256];
    return crema_fail(err,
                      "%s shape %s does not match bottom shape %s from axis %d on; "
                      "fix the axis/num_axes or the shapes",
                      what, crema_blob_shape_string(p, ps, sizeof ps),
                      crema_blob_shape_string(bottom, bs, sizeof bs), a);
  }
  d->axis = a;
  d->outer = crema_blob_count_range(bottom, 0, a);
  d->dim = p->count;
  d->inner = crema_blob_count_range(bottom, a + p->num_axes, bottom->num_axes);
  return 0;
}

void crema_axis_mul(const crema_axis_dims *d, const float *x, const float *s, float *y) {
  const size_t rows = d->outer * d->dim, inner = d->inner, dim = d->dim;
#pragma omp parallel for if (rows * inner > CREMA_PAR_MIN) schedule(static)
  for (size_t r = 0; r < rows; r++) {
    const float v = s[r % dim];
    const float *xr = x + r * inner;
    float *yr = y + r * inner;
    for (size_t i = 0; i < inner; i++) yr[i] = xr[i] * v;
  }
}

void crema_axis_add(const crema_axis_dims *d, const float *b, float *y) {
  const size_t rows = d->outer * d->dim, inner = d->inner, dim = d->dim;
#pragma omp parallel for if (rows * inner > CREMA_PAR_MIN) schedule(static)
  for (size_t r = 0; r < rows; r++) {
    const float v = b[r % dim];
    float *yr = y + r * inner;
    for (size_t i = 0; i < inner; i++) yr[i] += v;
  }
}

double crema_sum_floats(const float *a, size_t n) {
  float p[8] = {0, 0, 0, 0, 0, 0, 0, 0};
  size_t i = 0;
  for (; i + 8 <= n; i += 8)
    for (int j = 0; j < 8; j++) p[j] += a[i + (size_t)j];
  double s = 0.0;
  for (; i < n; i++) s += a[i];
  for (int j = 0; j < 8; j++) s += p[j];
  return s;
}

double crema_dot_floats(const float *a, const float *b, size_t n) {
  float p[8] = {0, 0, 0, 0, 0, 0, 0, 0};
  size_t i = 0;
  for (; i + 8 <= n; i += 8)
    for (int j = 0; j < 8; j++) p[j] += a[i + (size_t)j] * b[i + (size_t)j];
  double s = 0.0;
  for (; i < n; i++) s += (double)a[i] * b[i];
  for (int j = 0; j < 8; j++) s += p[j];
  return s;
}

/* Sum over a range of inner elements of one (o, d) row. */
static double row_sum(const float *a, const float *m, size_t off, size_t n) {
  return m ? crema_dot_floats(a + off, m + off, n) : crema_sum_floats(a + off, n);
}

/* Sum over o, i for one d. */
static double reduce_one(const crema_axis_dims *d, size_t k, const float *a, const float *m) {
  double acc = 0.0;
  for (size_t o = 0; o < d->outer; o++) acc += row_sum(a, m, (o * d->dim + k) * d->inner, d->inner);
  return acc;
}

void crema_axis_reduce(const crema_axis_dims *d, const float *a, const float *m, float *out,
                       bool accumulate) {
  const size_t dim = d->dim, total = d->outer * d->dim * d->inner;
  if (dim >= 16 || total <= CREMA_PAR_MIN) {
    /* Enough independent sums to share among threads. */
#pragma omp parallel for if (total > CREMA_PAR_MIN) schedule(static)
    for (size_t k = 0; k < dim; k++) {
      float v = (float)reduce_one(d, k, a, m);
      out[k] = accumulate ? out[k] + v : v;
    }
    return;
  }
  /* Few long sums (a scalar, or a handful of channels): split each sum over threads, along
   * outer when it is long enough, else in chunks of inner. */
  const size_t outer = d->outer, inner = d->inner;
  const size_t chunk = 4096, n_chunks = (inner + chunk - 1) / chunk;
  for (size_t k = 0; k < dim; k++) {
    double acc = 0.0;
    if (outer >= 64) {
#pragma omp parallel for schedule(static) reduction(+ : acc)
      for (size_t o = 0; o < outer; o++) acc += row_sum(a, m, (o * dim + k) * inner, inner);
    } else {
      for (size_t o = 0; o < outer; o++) {
        const size_t off = (o * dim + k) * inner;
#pragma omp parallel for schedule(static) reduction(+ : acc)
        for (size_t c = 0; c < n_chunks; c++) {
          size_t len = c + 1 < n_chunks ? chunk : inner - c * chunk;
          acc += row_sum(a, m, off + c * chunk, len);
        }
      }
    }
    out[k] = accumulate ? out[k] + (float)acc : (float)acc;
  }
}
