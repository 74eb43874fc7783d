#include "layers/axis_common.h"
#include "tensor/math.h"

#include <omp.h>
#include <stdio.h>

#include "base/clones.h"
#include "base/v8.h"

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

/* One contiguous run of a row: y = x * a + c (mul / add say which parts apply), and a copy of
 * x into saved when it is not NULL. Separate loops per case, so each vectorises and x * 1 or
 * x + 0 is never computed (x + 0 would turn -0 into +0). */
static void scale_shift_run(const float *x, float *y, float *saved, size_t n, bool mul, float a, bool add,
                            float c) {
  if (saved) {
    if (mul && add)
      for (size_t i = 0; i < n; i++) {
        const float v = x[i];
        saved[i] = v;
        y[i] = v * a + c;
      }
    else if (mul)
      for (size_t i = 0; i < n; i++) {
        const float v = x[i];
        saved[i] = v;
        y[i] = v * a;
      }
    else
      for (size_t i = 0; i < n; i++) {
        const float v = x[i];
        saved[i] = v;
        y[i] = v + c;
      }
    return;
  }
  if (mul && add)
    for (size_t i = 0; i < n; i++) y[i] = x[i] * a + c;
  else if (mul)
    for (size_t i = 0; i < n; i++) y[i] = x[i] * a;
  else if (add)
    for (size_t i = 0; i < n; i++) y[i] = x[i] + c;
}

/* Each thread takes one contiguous range of elements (cut at 16-float boundaries, so no two
 * threads write one cache line), whatever the shape: a scalar or a single row spreads over the
 * threads as well as many short rows do. */
CREMA_CLONES static void scale_shift_ranges(const crema_axis_dims *d, const float *x, const float *s,
                                            const float *b, float *y, float *saved) {
  const size_t inner = d->inner, dim = d->dim, total = d->outer * dim * inner;
  if (total == 0 || inner == 0) return;
#pragma omp parallel if (total > CREMA_PAR_MIN)
  {
    const size_t nt = (size_t)omp_get_num_threads(), t = (size_t)omp_get_thread_num();
    size_t lo = total / 16 * t / nt * 16, hi = t + 1 == nt ? total : total / 16 * (t + 1) / nt * 16;
    while (lo < hi) {
      const size_t r = lo / inner, i0 = lo - r * inner;
      const size_t len = inner - i0 < hi - lo ? inner - i0 : hi - lo;
      const size_t k = r % dim;
      scale_shift_run(x + lo, y + lo, saved ? saved + lo : NULL, len, s != NULL, s ? s[k] : 1.0f, b != NULL,
                      b ? b[k] : 0.0f);
      lo += len;
    }
  }
}

void crema_axis_scale_shift(const crema_axis_dims *d, const float *x, const float *s, const float *b,
                            float *y, float *saved) {
  scale_shift_ranges(d, x, s, b, y, saved);
}

void crema_axis_mul(const crema_axis_dims *d, const float *x, const float *s, float *y) {
  crema_axis_scale_shift(d, x, s, NULL, y, NULL);
}

void crema_axis_add(const crema_axis_dims *d, const float *b, float *y) {
  crema_axis_scale_shift(d, y, NULL, b, y, NULL);
}

double crema_sum_floats(const float *a, size_t n) { return sum8(a, n); }

double crema_dot_floats(const float *a, const float *b, size_t n) { return dot8(a, b, n); }

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

/* One row of Scale's backward in one loop: sum8(dy) into *sb, dot8(dy, x) into *ss (the same
 * partial sums, added in the same order, so the same bits) and dx = dy * v (dy itself when
 * copy). The two sums' chains of additions run side by side and the row is read once; one
 * after another, each waited on its own chain. dx may be dy: each element is read before it
 * is written. */
static inline __attribute__((always_inline)) void scale_row(const float *dy, const float *x, size_t n,
                                                            float v, bool copy, float *dx, bool want_b,
                                                            bool want_s, double *sb, double *ss) {
  v8 pb = {0}, ps = {0};
  size_t i = 0;
  for (; i + 8 <= n; i += 8) {
    const v8 g = load8(dy + i);
    if (want_b) pb += g;
    if (want_s) ps += g * load8(x + i);
    if (dx) store8(dx + i, copy ? g : g * v);
  }
  double b = 0.0, s = 0.0;
  for (; i < n; i++) {
    const float g = dy[i];
    if (want_b) b += g;
    if (want_s) s += (double)g * x[i];
    if (dx) dx[i] = copy ? g : g * v;
  }
  for (int j = 0; j < 8; j++) {
    b += pb[j];
    s += ps[j];
  }
  *sb += b;
  *ss += s;
}

/* One pass: each row is summed (the same sums, in the same order, as crema_axis_reduce) and
 * scaled into dx while it is in cache. */
CREMA_CLONES static void scale_backward_rows(const crema_axis_dims *d, const float *dy, const float *x,
                                             const float *s, float *ds, bool ds_accumulate, float *db,
                                             bool db_accumulate, float *dx) {
  const size_t dim = d->dim, outer = d->outer, inner = d->inner, total = outer * dim * inner;
#pragma omp parallel for if (total > CREMA_PAR_MIN) schedule(static)
  for (size_t k = 0; k < dim; k++) {
    double acc_s = 0.0, acc_b = 0.0;
    const float v = dx && s ? s[k] : 1.0f; /* no s: dx = dy (Bias) */
    for (size_t o = 0; o < outer; o++) {
      const size_t off = (o * dim + k) * inner;
      float *dxr = dx ? dx + off : NULL;
      if (db && ds)
        scale_row(dy + off, x + off, inner, v, !s, dxr, true, true, &acc_b, &acc_s);
      else if (db)
        scale_row(dy + off, NULL, inner, v, !s, dxr, true, false, &acc_b, &acc_s);
      else if (ds)
        scale_row(dy + off, x + off, inner, v, !s, dxr, false, true, &acc_b, &acc_s);
      else
        scale_row(dy + off, NULL, inner, v, !s, dxr, false, false, &acc_b, &acc_s);
    }
    if (db) db[k] = db_accumulate ? db[k] + (float)acc_b : (float)acc_b;
    if (ds) ds[k] = ds_accumulate ? ds[k] + (float)acc_s : (float)acc_s;
  }
}

void crema_axis_scale_backward(const crema_axis_dims *d, const float *dy, const float *x, const float *s,
                               float *ds, bool ds_accumulate, float *db, bool db_accumulate, float *dx) {
  const size_t dim = d->dim, total = d->outer * dim * d->inner;
  if (!(dim >= 16 || total <= CREMA_PAR_MIN)) {
    /* Few long sums: crema_axis_reduce splits each one over the threads; one pass each. */
    if (db) crema_axis_reduce(d, dy, NULL, db, db_accumulate);
    if (ds) crema_axis_reduce(d, dy, x, ds, ds_accumulate);
    if (dx && s) crema_axis_mul(d, dy, s, dx);
    if (dx && !s) crema_copy(total, dy, dx);
    return;
  }
  scale_backward_rows(d, dy, x, s, ds, ds_accumulate, db, db_accumulate, dx);
}
