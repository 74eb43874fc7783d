/* batch_norm_chain.c -- BatchNorm + Scale + ReLU in one pass each way.
 *
 * Every element goes through exactly the operations the three layers apply one after the
 * other, each rounded to float as they round it:
 *   forward   x_hat = (x - mean) * inv       (batch_norm.c; inv = 1 / stddev, in float)
 *             t = x_hat * gamma + beta        (scale.c's scale_shift_run: two roundings)
 *             y = t > 0 ? t : slope * t       (relu.c)
 *   backward  g = y > 0 ? dy : slope * dy     (relu.c, reading its in-place output)
 *             d beta  += per row: sum8(g)           d gamma += per row: dot8(g, x_hat)
 *             stored statistics: dx = (g * gamma) * inv    (scale.c's rows, then batch_norm.c)
 *             batch statistics:  t = g * gamma, per row sum8(t) and dot8(t, x_hat) summed
 *                                into the channel's means, then in a second pass
 *                                dx = (t - mean(t) - x_hat * mean(t x_hat)) * inv
 * The per-row sums are axis_common.c's sum8 and dot8 written out (eight float lanes, the tail
 * in double, then the lanes), added in row order per channel, so the gradients are the same
 * bits. The file is built without contraction (C11): a * b + c stays two roundings. */
#include "layers/batch_norm_chain.h"

#include <string.h>

#include "base/clones.h"
#include "base/v8.h"
#include "tensor/math.h"

#define INLINE static inline __attribute__((always_inline))

/* Runs ROW(K) for the constant K equal to kind (0-15, one bit per flag): each combination of
 * flags gets its own copy of the loop, without branches inside. */
#define DISPATCH16(kind)                                                                                     \
  switch (kind) {                                                                                            \
  case 0: ROW(0); break;                                                                                     \
  case 1: ROW(1); break;                                                                                     \
  case 2: ROW(2); break;                                                                                     \
  case 3: ROW(3); break;                                                                                     \
  case 4: ROW(4); break;                                                                                     \
  case 5: ROW(5); break;                                                                                     \
  case 6: ROW(6); break;                                                                                     \
  case 7: ROW(7); break;                                                                                     \
  case 8: ROW(8); break;                                                                                     \
  case 9: ROW(9); break;                                                                                     \
  case 10: ROW(10); break;                                                                                   \
  case 11: ROW(11); break;                                                                                   \
  case 12: ROW(12); break;                                                                                   \
  case 13: ROW(13); break;                                                                                   \
  case 14: ROW(14); break;                                                                                   \
  default: ROW(15); break;                                                                                   \
  }

/* The same for kind 0-3. */
#define DISPATCH4(kind)                                                                                      \
  switch (kind) {                                                                                            \
  case 0: ROW(0); break;                                                                                     \
  case 1: ROW(1); break;                                                                                     \
  case 2: ROW(2); break;                                                                                     \
  default: ROW(3); break;                                                                                    \
  }

/* One row of `n` elements of channel parameters (m, inv, a, b). The flags are constants in
 * every call, so each combination compiles to its own loop without branches. */
INLINE void forward_row(bool scale, bool bias, bool relu, bool keep, size_t n, const float *x, float *y,
                        float *kept, float m, float inv, float a, float b, float slope) {
  for (size_t i = 0; i < n; i++) {
    const float v = (x[i] - m) * inv;
    if (keep) kept[i] = v;
    float t = v;
    if (scale) t = bias ? v * a + b : v * a;
    if (relu) {
      const float neg = slope * t;
      t = t > 0.0f ? t : neg;
    }
    y[i] = t;
  }
}

/* Row r (image r / channels, channel r % channels). x_hat goes to kept, or to x_norm when
 * nothing is kept; with both, it is copied on while the row is in cache. */
INLINE void forward_one_row(const crema_bn_chain *c, size_t r, const float *x, float *y) {
  const size_t n = c->inner, k = r % c->channels, off = r * n;
  const bool scale = c->gamma != NULL, bias = c->beta != NULL, relu = c->relu;
  float *keep = c->kept ? c->kept + off : c->x_norm ? c->x_norm + off : NULL;
  const int kind = (scale ? 8 : 0) | (bias ? 4 : 0) | (relu ? 2 : 0) | (keep ? 1 : 0);
  const float m = c->mean[k], inv = 1.0f / c->stddev[k];
  const float a = scale ? c->gamma[k] : 1.0f, b = bias ? c->beta[k] : 0.0f;
#define ROW(K) forward_row((K)&8, (K)&4, (K)&2, (K)&1, n, x + off, y + off, keep, m, inv, a, b, c->slope)
  DISPATCH16(kind)
#undef ROW
  if (c->kept && c->x_norm && c->kept != c->x_norm) memcpy(c->x_norm + off, keep, n * sizeof(float));
}

CREMA_CLONES static void forward_rows(const crema_bn_chain *c, const float *x, float *y) {
  const size_t rows = c->outer * c->channels;
#pragma omp parallel for if (rows * c->inner > CREMA_PAR_MIN) schedule(static)
  for (size_t r = 0; r < rows; r++) forward_one_row(c, r, x, y);
}

CREMA_CLONES static void forward_channel(const crema_bn_chain *c, size_t k, const float *x, float *y) {
  for (size_t o = 0; o < c->outer; o++) forward_one_row(c, o * c->channels + k, x, y);
}

void crema_bn_chain_forward(const crema_bn_chain *c, const float *x, float *y) {
  if (c->outer && c->channels && c->inner) forward_rows(c, x, y);
}

void crema_bn_chain_forward_channel(const crema_bn_chain *c, size_t k, const float *x, float *y) {
  if (c->inner) forward_channel(c, k, x, y);
}

/* The ReLU's gradient (relu.c's select, lane by lane): g where the ReLU's output is positive,
 * slope * g elsewhere. `t` is the output, or what decides its sign (x_hat * gamma + beta). */
INLINE v8 relu_grad8(v8 g, v8 t, float slope) {
  const v8 zero = {0}, neg = slope * g;
  const i8 pos = t > zero;
  return v8_select(pos, g, neg);
}

/* One row: the ReLU's gradient, its sum and its dot with x_hat (sum8 and dot8 of
 * axis_common.c, added to *sb and *sg), and dx. Written with vectors of eight lanes, lane j
 * holding sum8's partial sum p[j] (gcc left the scalar form unvectorised). */
INLINE void backward_row(bool relu, bool scale, bool want_g, bool want_dx, size_t n, const float *y,
                         const float *dy, const float *xh, float *dx, float a, float b, float inv,
                         float slope, double *sb, double *sg) {
  v8 p = {0}, q = {0};
  /* With x_hat at hand, the ReLU's test y > 0 is t > 0 for t = x_hat * gamma + beta
   * recomputed as the forward made it (t <= 0 gives y = slope * t <= 0, as slope >= 0 in
   * training; b is 0 without a bias, which moves no value across 0): y is not read, one
   * stream less. */
  const bool t_from_xh = relu && scale && want_g;
  size_t i = 0;
  for (; i + 8 <= n; i += 8) {
    v8 g = load8(dy + i), x = {0};
    if (want_g) x = load8(xh + i);
    if (relu) g = relu_grad8(g, t_from_xh ? x * a + b : load8(y + i), slope);
    p += g; /* d beta's sum, wanted or not: one add in a pass bound by memory */
    if (want_g) q += g * x;
    if (want_dx) {
      const v8 d = scale ? (g * a) * inv : g * inv;
      memcpy(dx + i, &d, sizeof d);
    }
  }
  double s = 0.0, d = 0.0;
  for (; i < n; i++) {
    float g = dy[i];
    if (relu) g = crema_relu_grad(g, y[i], slope);
    s += g;
    if (want_g) d += (double)g * xh[i];
    if (want_dx) dx[i] = scale ? (g * a) * inv : g * inv;
  }
  for (int j = 0; j < 8; j++) {
    s += p[j];
    d += q[j];
  }
  *sb += s;
  *sg += d;
}

CREMA_CLONES static void backward_channels(const crema_bn_chain *c, const float *y, const float *dy,
                                           float *dgamma, float *dbeta, float *dx) {
  const size_t channels = c->channels, outer = c->outer, n = c->inner;
  const bool relu = c->relu, scale = c->gamma != NULL;
  const bool want_b = dbeta != NULL, want_g = dgamma != NULL, want_dx = dx != NULL;
  const int kind = (relu ? 8 : 0) | (scale ? 4 : 0) | (want_g ? 2 : 0) | (want_dx ? 1 : 0);
#pragma omp parallel for if (outer * channels * n > CREMA_PAR_MIN) schedule(static)
  for (size_t k = 0; k < channels; k++) {
    const float a = scale ? c->gamma[k] : 1.0f, b = c->beta ? c->beta[k] : 0.0f, inv = 1.0f / c->stddev[k];
    double sb = 0.0, sg = 0.0;
    for (size_t o = 0; o < outer; o++) {
      const size_t off = (o * channels + k) * n;
      const float *xh = want_g ? c->kept + off : NULL;
      float *dxr = want_dx ? dx + off : NULL;
#define ROW(K)                                                                                               \
  backward_row((K)&8, (K)&4, (K)&2, (K)&1, n, y + off, dy + off, xh, dxr, a, b, inv, c->slope, &sb, &sg)
      DISPATCH16(kind)
#undef ROW
    }
    /* accumulated, as Scale accumulates a learned parameter's gradient */
    if (want_b) dbeta[k] += (float)sb;
    if (want_g) dgamma[k] += (float)sg;
  }
}

void crema_bn_chain_backward(const crema_bn_chain *c, const float *y, float *dy, float *dgamma, float *dbeta,
                             float *dx) {
  if (!c->gamma) dgamma = dbeta = NULL; /* no Scale: no parameters */
  if (!c->kept) dgamma = NULL;
  if (!(c->outer && c->channels && c->inner) || (!dgamma && !dbeta && !dx)) return;
  backward_channels(c, y, dy, dgamma, dbeta, dx);
}

/* ---- batch statistics ---- */

/* Pass one over a row: the ReLU's gradient g and t = g * gamma, with four sums (sum8 and
 * dot8 of axis_common.c written out): g and g * x_hat (the Scale's d beta and d gamma), t
 * and t * x_hat (the BatchNorm's means). x_hat serves for the ReLU's test as above. */
INLINE void batch_sums_row(bool relu, bool scale, size_t n, const float *y, const float *dy, const float *xh,
                           float a, float b, float slope, double sums[4]) {
  v8 pg = {0}, pgx = {0}, pt = {0}, ptx = {0};
  size_t i = 0;
  for (; i + 8 <= n; i += 8) {
    v8 g = load8(dy + i);
    const v8 x = load8(xh + i);
    if (relu) g = relu_grad8(g, scale ? x * a + b : x, slope);
    const v8 t = scale ? g * a : g;
    pg += g;
    pgx += g * x;
    pt += t;
    ptx += t * x;
  }
  double s[4] = {0.0, 0.0, 0.0, 0.0};
  for (; i < n; i++) {
    float g = dy[i];
    if (relu) g = crema_relu_grad(g, y[i], slope);
    const float t = scale ? g * a : g;
    s[0] += g;
    s[1] += (double)g * xh[i];
    s[2] += t;
    s[3] += (double)t * xh[i];
  }
  for (int j = 0; j < 8; j++) {
    s[0] += pg[j];
    s[1] += pgx[j];
    s[2] += pt[j];
    s[3] += ptx[j];
  }
  for (int j = 0; j < 4; j++) sums[j] += s[j];
}

/* Pass two: dx = (t - mt - x_hat * mtx) * inv, t recomputed as pass one made it. */
INLINE void batch_dx_row(bool relu, bool scale, size_t n, const float *y, const float *dy, const float *xh,
                         float *dx, float a, float b, float slope, float mt, float mtx, float inv) {
  size_t i = 0;
  for (; i + 8 <= n; i += 8) {
    v8 g = load8(dy + i);
    const v8 x = load8(xh + i);
    if (relu) g = relu_grad8(g, scale ? x * a + b : x, slope);
    const v8 t = scale ? g * a : g, d = (t - mt - x * mtx) * inv;
    memcpy(dx + i, &d, sizeof d);
  }
  for (; i < n; i++) {
    float g = dy[i];
    if (relu) g = crema_relu_grad(g, y[i], slope);
    const float t = scale ? g * a : g;
    dx[i] = (t - mt - xh[i] * mtx) * inv;
  }
}

CREMA_CLONES static void backward_channels_batch(const crema_bn_chain *c, const float *y, const float *dy,
                                                 float *dgamma, float *dbeta, float *dx) {
  const size_t channels = c->channels, outer = c->outer, n = c->inner;
  const bool relu = c->relu, scale = c->gamma != NULL;
  const int kind = (relu ? 2 : 0) | (scale ? 1 : 0);
  const double m = (double)(outer * n);
#pragma omp parallel for if (outer * channels * n > CREMA_PAR_MIN) schedule(static)
  for (size_t k = 0; k < channels; k++) {
    const float a = scale ? c->gamma[k] : 1.0f, b = c->beta ? c->beta[k] : 0.0f, inv = 1.0f / c->stddev[k];
    double sums[4] = {0.0, 0.0, 0.0, 0.0};
    for (size_t o = 0; o < outer; o++) {
      const size_t off = (o * channels + k) * n;
#define ROW(K) batch_sums_row((K)&2, (K)&1, n, y + off, dy + off, c->x_norm + off, a, b, c->slope, sums)
      DISPATCH4(kind)
#undef ROW
    }
    /* accumulated, as Scale accumulates a learned parameter's gradient */
    if (dbeta) dbeta[k] += (float)sums[0];
    if (dgamma) dgamma[k] += (float)sums[1];
    if (!dx) continue;
    const float mt = (float)(sums[2] / m), mtx = (float)(sums[3] / m);
    for (size_t o = 0; o < outer; o++) {
      const size_t off = (o * channels + k) * n;
#define ROW(K)                                                                                               \
  batch_dx_row((K)&2, (K)&1, n, y + off, dy + off, c->x_norm + off, dx + off, a, b, c->slope, mt, mtx, inv)
      DISPATCH4(kind)
#undef ROW
    }
  }
}

void crema_bn_chain_backward_batch(const crema_bn_chain *c, const float *y, float *dy, float *dgamma,
                                   float *dbeta, float *dx) {
  if (!c->gamma) dgamma = dbeta = NULL;
  if (!(c->outer && c->channels && c->inner) || (!dgamma && !dbeta && !dx)) return;
  backward_channels_batch(c, y, dy, dgamma, dbeta, dx);
}
