/* LRN: Caffe's local response normalisation, top = x * scale^-beta.
 *
 * ACROSS_CHANNELS: scale = k + alpha/n * (sum of x^2 over the n channels c-(n-1)/2 ..
 * c+(n-1)/2 that exist).
 * WITHIN_CHANNEL: scale = 1 + alpha/(n*n) * (sum of x^2 over the n x n spatial window with
 * zero padding (n-1)/2). Caffe builds this one from Split/Power/Pooling(AVE)/Power/Eltwise
 * layers with shift 1, so `k` is ignored in this mode -- we compute the same function
 * directly. local_size must be odd (as in Caffe).
 *
 * Caffe keeps the scale from forward for backward: a blob the size of the input. crema
 * recomputes it in backward instead, a block or a plane at a time in per-thread scratch (the
 * net's shared workspace), with the same operations in the same order, so the gradients are
 * the same bits. It costs one more sum of squares per backward and saves GoogLeNet's train net
 * 100 MB at batch 32. */
#include <limits.h>
#include <math.h>
#include <stdint.h>
#include <stdlib.h>

#include "base/clones.h"
#include "layers/layer.h"
#include "tensor/workspace.h"

#ifdef _OPENMP
#include <omp.h>
#else
static int omp_get_max_threads(void) { return 1; }
static int omp_get_thread_num(void) { return 0; }
#endif

/* Positions handled together in the across-channel loops, forward and backward. Each block
 * reads one run of that many floats from every channel (192 of them, 12.5 KB apart, in
 * GoogLeNet's norm2), and backward keeps two C x block arrays of scratch. With 256 positions
 * those arrays (384 KB for norm2) left L1 and L2 for every pass; smaller blocks mean shorter
 * runs. GoogLeNet's norm2 (10 x 192 x 56 x 56), one thread, best of five alternating runs:
 * forward 4.3-4.4 ms with 256, 2.8 with 128, 3.1-3.2 with 64, 3.0 with 32; backward
 * 10.7-10.9 with 256, 7.1-7.2 with 128, 6.4-6.5 with 64, 8.4 with 32. */
#define LRN_BLOCK_FWD 128
#define LRN_BLOCK_BWD 64

/* scale^-beta. Every net in Caffe's zoo uses beta 0.75, where two square roots replace powf
 * (several times faster, within 2 ulp); other betas take powf. */
static inline float pow_neg(float s, float beta) {
  if (beta == 0.75f) {
    const float r = sqrtf(s);
    return 1.0f / (r * sqrtf(r));
  }
  if (beta == 0.5f) return 1.0f / sqrtf(s);
  return powf(s, -beta);
}

/* scale^-beta again, given inv = 1 / scale: for beta 0.75, inv * scale^(1/4), one division
 * fewer than pow_neg (within 2 ulp of it; backward needs inv anyway). */
static inline float pow_neg_given_inverse(float s, float inv, float beta) {
  if (beta == 0.75f) return inv * sqrtf(sqrtf(s));
  if (beta == 0.5f) return inv * sqrtf(s);
  return powf(s, -beta);
}

typedef struct lrn_state {
  int size;
  float alpha, beta, k;
  bool within;
  int n, c, h, w;
  /* Backward's scratch: thread_floats per thread (one block's or one plane's scales), for
   * `threads` threads, in the net's shared workspace or, outside a net, the layer's own. */
  int threads;
  size_t thread_floats;
  crema_workspace own;
} lrn_state;

static crema_workspace *scratch(crema_layer *l) {
  lrn_state *s = l->state;
  return l->workspace ? l->workspace : &s->own;
}

static int lrn_setup(crema_layer *l, crema_blob *const *bottom, crema_blob *const *top, crema_error *err) {
  (void)bottom;
  (void)top;
  Crema__LRNParameter dflt = CREMA__LRNPARAMETER__INIT;
  const Crema__LRNParameter *p = l->param->lrn_param ? l->param->lrn_param : &dflt;
  lrn_state *s = calloc(1, sizeof *s);
  if (!s) return crema_fail(err, "out of memory");
  l->state = s;
  if (p->local_size % 2 != 1)
    return crema_fail(err, "lrn_param.local_size must be odd (got %u); LRN only supports odd window sizes",
                      p->local_size);
  /* Above INT_MAX the size would turn negative as an int (and an odd one passed the check
   * above), which sent the window loops far outside the input. */
  if (p->local_size > (uint32_t)INT_MAX)
    return crema_fail(err, "lrn_param.local_size %u is too large (at most %d)", p->local_size, INT_MAX);
  s->size = (int)p->local_size;
  s->alpha = p->alpha;
  s->beta = p->beta;
  s->k = p->k;
  if (p->norm_region != CREMA__LRNPARAMETER__NORM_REGION__ACROSS_CHANNELS &&
      p->norm_region != CREMA__LRNPARAMETER__NORM_REGION__WITHIN_CHANNEL)
    return crema_fail(err, "unknown lrn_param.norm_region %d", (int)p->norm_region);
  s->within = p->norm_region == CREMA__LRNPARAMETER__NORM_REGION__WITHIN_CHANNEL;
  return 0;
}

static int lrn_reshape(crema_layer *l, crema_blob *const *bottom, crema_blob *const *top, crema_error *err) {
  lrn_state *s = l->state;
  const crema_blob *b = bottom[0];
  char buf[128];
  if (b->num_axes != 4)
    return crema_fail(err, "the bottom must have 4 axes (N, C, H, W); it is %s",
                      crema_blob_shape_string(b, buf, sizeof buf));
  s->n = b->shape[0];
  s->c = b->shape[1];
  s->h = b->shape[2];
  s->w = b->shape[3];
  if (crema_blob_reshape_like(top[0], b, err)) return -1;
  s->threads = omp_get_max_threads();
  /* whole 64-byte lines per thread: no two threads write one line; across channels, a block's
   * scales and its ratios dy y / scale */
  const size_t per = s->within ? (size_t)s->h * s->w : 2 * (size_t)s->c * LRN_BLOCK_BWD;
  s->thread_floats = (per + 15) & ~(size_t)15;
  if (crema_workspace_reserve(scratch(l), s->thread_floats * (size_t)s->threads, err))
    return crema_error_prefix(err, "LRN scratch");
  return 0;
}

/* ---- ACROSS_CHANNELS: per (image, block of positions), a running window over channels. */

/* The channels a window reaches before (after = false) or after a channel, clamped to the
 * channel count: a wider window covers every channel either way, and the clamp keeps a
 * hostile local_size from overflowing the channel arithmetic. */
static int half_window(int size, int extent, bool after) {
  const int pre = (size - 1) / 2, half = after ? size - 1 - pre : pre;
  return half < extent ? half : extent;
}

/* One image's block of len positions (xb, rows hw apart): the running window over channels
 * gives scale_c = k + a * (sum of x^2 over the window). With yb, writes y = x * scale^-beta
 * there (forward); else the scales to sb, rows LRN_BLOCK_BWD apart (backward). Both get every
 * scale by the same operations, so backward sees the bits forward used. Always inlined, so
 * that it runs in the AVX2 copy of its callers (CREMA_CLONES): left a call, gcc built it
 * once, for the baseline's SSE2, and GoogLeNet's norm2 forward took 10.5-11 ms, 7-7.6 inlined. */
static inline __attribute__((always_inline)) void across_block(const float *xb, float *yb, float *sb,
                                                               size_t hw, size_t len, int C, int pre,
                                                               int post, float a, float k, float beta) {
  float acc[LRN_BLOCK_FWD]; /* the longer of the two blocks */
  for (size_t q = 0; q < len; q++) acc[q] = 0.0f;
  for (int c = 0; c < post && c < C; c++)
    for (size_t q = 0; q < len; q++) acc[q] += xb[(size_t)c * hw + q] * xb[(size_t)c * hw + q];
  for (int c = 0; c < C; c++) {
    const int64_t head = (int64_t)c + post;
    const int tail = c - pre;
    if (head < C)
      for (size_t q = 0; q < len; q++) acc[q] += xb[(size_t)head * hw + q] * xb[(size_t)head * hw + q];
    if (yb)
      for (size_t q = 0; q < len; q++)
        yb[(size_t)c * hw + q] = xb[(size_t)c * hw + q] * pow_neg(k + a * acc[q], beta);
    else
      for (size_t q = 0; q < len; q++) sb[(size_t)c * LRN_BLOCK_BWD + q] = k + a * acc[q];
    if (tail >= 0)
      for (size_t q = 0; q < len; q++) acc[q] -= xb[(size_t)tail * hw + q] * xb[(size_t)tail * hw + q];
  }
}

CREMA_CLONES static void across_forward(const lrn_state *s, const float *x, float *y) {
  const int C = s->c, pre = half_window(s->size, C, false), post = half_window(s->size, C, true);
  const size_t hw = (size_t)s->h * s->w, nblk = (hw + LRN_BLOCK_FWD - 1) / LRN_BLOCK_FWD;
  /* k and beta in locals: read through s, gcc must assume the stores to y may change them,
   * and would not vectorise the loops (nor hoist pow_neg's test of beta) */
  const float a = s->alpha / (float)s->size, k = s->k, beta = s->beta;
#pragma omp parallel for collapse(2) schedule(static)
  for (int b = 0; b < s->n; b++)
    for (size_t blk = 0; blk < nblk; blk++) {
      const size_t p0 = blk * LRN_BLOCK_FWD, len = hw - p0 < LRN_BLOCK_FWD ? hw - p0 : LRN_BLOCK_FWD;
      const size_t base = (size_t)b * C * hw + p0;
      across_block(x + base, y + base, NULL, hw, len, C, pre, post, a, k, beta);
    }
}

/* dx_c = dy_c * scale_c^-beta - (2 alpha beta / n) x_c * sum over the channels c' whose
 * window holds c (c-post .. c+pre) of dy_c' y_c' / scale_c'. Each position's ratio and
 * scale^-beta are computed once, from one division, before the window slides over them, where
 * the ratio used to be recomputed as it entered and left the window: three divisions and two
 * square roots per position became one division and two roots. GoogLeNet's norm2 (10 x 192
 * x 56 x 56, one thread): 19-21.4 ms backward before, 18-21 with one division, 14.3-15.4 in
 * the AVX2 copy. */
CREMA_CLONES static void across_backward(const lrn_state *s, float *scratch, const float *x, const float *y,
                                         const float *dy, float *dx) {
  const int C = s->c, pre = half_window(s->size, C, false), post = half_window(s->size, C, true);
  const size_t hw = (size_t)s->h * s->w, nblk = (hw + LRN_BLOCK_BWD - 1) / LRN_BLOCK_BWD;
  const float a = s->alpha / (float)s->size, k = s->k; /* locals: see across_forward */
  const float ratio = 2.0f * s->alpha * s->beta / (float)s->size, beta = s->beta;
#pragma omp parallel for collapse(2) schedule(static) num_threads(s->threads)
  for (int b = 0; b < s->n; b++)
    for (size_t blk = 0; blk < nblk; blk++) {
      const size_t p0 = blk * LRN_BLOCK_BWD, len = hw - p0 < LRN_BLOCK_BWD ? hw - p0 : LRN_BLOCK_BWD;
      const size_t base = (size_t)b * C * hw + p0;
      const float *xb = x + base, *yb = y + base, *db = dy + base;
      float *gb = dx + base, *sb = scratch + s->thread_floats * (size_t)omp_get_thread_num();
      float *tb = sb + (size_t)C * LRN_BLOCK_BWD; /* dy y / scale, rows LRN_BLOCK_BWD apart like sb */
      across_block(xb, NULL, sb, hw, len, C, pre, post, a, k, beta);
      for (int c = 0; c < C; c++) {
        const float *dc = db + (size_t)c * hw, *yc = yb + (size_t)c * hw;
        float *sc = sb + (size_t)c * LRN_BLOCK_BWD, *tc = tb + (size_t)c * LRN_BLOCK_BWD;
        for (size_t q = 0; q < len; q++) {
          const float scale = sc[q], inv = 1.0f / scale;
          tc[q] = dc[q] * yc[q] * inv;
          sc[q] = pow_neg_given_inverse(scale, inv, beta);
        }
      }
      float acc[LRN_BLOCK_BWD];
      for (size_t q = 0; q < len; q++) acc[q] = 0.0f;
      for (int c = 0; c < pre && c < C; c++)
        for (size_t q = 0; q < len; q++) acc[q] += tb[(size_t)c * LRN_BLOCK_BWD + q];
      for (int c = 0; c < C; c++) {
        const int64_t head = (int64_t)c + pre;
        const int tail = c - post;
        if (head < C)
          for (size_t q = 0; q < len; q++) acc[q] += tb[(size_t)head * LRN_BLOCK_BWD + q];
        for (size_t q = 0; q < len; q++) {
          const size_t i = (size_t)c * hw + q;
          gb[i] = db[i] * sb[(size_t)c * LRN_BLOCK_BWD + q] - ratio * xb[i] * acc[q];
        }
        if (tail >= 0)
          for (size_t q = 0; q < len; q++) acc[q] -= tb[(size_t)tail * LRN_BLOCK_BWD + q];
      }
    }
}

/* ---- WITHIN_CHANNEL: n x n box sums on each plane (odd n, symmetric zero padding). */

/* [lo, hi) of the window of half-width pad around i, clipped to [0, n); in 64 bits so that
 * i + pad cannot overflow. */
static void box_range(int i, int pad, int n, int *lo, int *hi) {
  const int64_t a = (int64_t)i - pad, b = (int64_t)i + pad + 1;
  *lo = a < 0 ? 0 : (int)a;
  *hi = b > n ? n : (int)b;
}

static float box_sum(const float *plane, int H, int W, int h, int w, int pad, bool square) {
  int h0, h1, w0, w1;
  box_range(h, pad, H, &h0, &h1);
  box_range(w, pad, W, &w0, &w1);
  float sum = 0.0f;
  for (int i = h0; i < h1; i++)
    for (int j = w0; j < w1; j++) {
      const float v = plane[(size_t)i * W + j];
      sum += square ? v * v : v;
    }
  return sum;
}

/* One plane's scales, 1 + a * (box sum of x^2): forward and backward both call this. */
static inline float within_scale(const float *xp, int H, int W, int h, int w, int pad, float a) {
  return 1.0f + a * box_sum(xp, H, W, h, w, pad, true);
}

static void within_forward(const lrn_state *s, const float *x, float *y) {
  const int H = s->h, W = s->w, pad = (s->size - 1) / 2, planes = s->n * s->c;
  const size_t hw = (size_t)H * W;
  const float a = s->alpha / ((float)s->size * (float)s->size); /* size^2 can overflow int */
#pragma omp parallel for schedule(static)
  for (int pl = 0; pl < planes; pl++) {
    const float *xp = x + (size_t)pl * hw;
    float *yp = y + (size_t)pl * hw;
    for (int h = 0; h < H; h++)
      for (int w = 0; w < W; w++) {
        const size_t i = (size_t)h * W + w;
        yp[i] = xp[i] * pow_neg(within_scale(xp, H, W, h, w, pad, a), s->beta);
      }
  }
}

/* The window is symmetric, so the positions whose window holds (h, w) form the same n x n
 * box around it: dx = dy scale^-beta - (2 alpha beta / n^2) x * (box sum of dy y / scale).
 * The plane's scales are recomputed first; the ratio dy y / scale is recomputed per box. */
static void within_backward(const lrn_state *s, float *scratch, const float *x, const float *y,
                            const float *dy, float *dx) {
  const int H = s->h, W = s->w, pad = (s->size - 1) / 2, planes = s->n * s->c;
  const size_t hw = (size_t)H * W;
  const float a = s->alpha / ((float)s->size * (float)s->size);
  const float ratio = 2.0f * s->alpha * s->beta / ((float)s->size * (float)s->size);
#pragma omp parallel for schedule(static) num_threads(s->threads)
  for (int pl = 0; pl < planes; pl++) {
    const float *xp = x + (size_t)pl * hw, *yp = y + (size_t)pl * hw, *dp = dy + (size_t)pl * hw;
    float *sp = scratch + s->thread_floats * (size_t)omp_get_thread_num();
    float *gp = dx + (size_t)pl * hw;
    for (int h = 0; h < H; h++)
      for (int w = 0; w < W; w++) sp[(size_t)h * W + w] = within_scale(xp, H, W, h, w, pad, a);
    for (int h = 0; h < H; h++)
      for (int w = 0; w < W; w++) {
        int h0, h1, w0, w1;
        box_range(h, pad, H, &h0, &h1);
        box_range(w, pad, W, &w0, &w1);
        float acc = 0.0f;
        for (int i = h0; i < h1; i++)
          for (int j = w0; j < w1; j++) {
            const size_t k = (size_t)i * W + j;
            acc += dp[k] * yp[k] / sp[k];
          }
        const size_t i = (size_t)h * W + w;
        gp[i] = dp[i] * pow_neg(sp[i], s->beta) - ratio * xp[i] * acc;
      }
  }
}

static int lrn_forward(crema_layer *l, crema_blob *const *bottom, crema_blob *const *top, crema_error *err) {
  (void)err;
  const lrn_state *s = l->state;
  if (s->within)
    within_forward(s, bottom[0]->data, top[0]->data);
  else
    across_forward(s, bottom[0]->data, top[0]->data);
  return 0;
}

static void lrn_backward(crema_layer *l, crema_blob *const *top, const bool *propagate_down,
                         crema_blob *const *bottom) {
  if (!propagate_down[0]) return;
  const lrn_state *s = l->state;
  float *sc = crema_workspace_data(scratch(l));
  if (s->within)
    within_backward(s, sc, bottom[0]->data, top[0]->data, top[0]->diff, bottom[0]->diff);
  else
    across_backward(s, sc, bottom[0]->data, top[0]->data, top[0]->diff, bottom[0]->diff);
}

static void lrn_free(crema_layer *l) {
  lrn_state *s = l->state;
  if (!s) return;
  crema_workspace_release(&s->own);
  free(s);
  l->state = NULL;
}

const crema_layer_ops crema_lrn_ops = {
    .type = "LRN",
    .min_bottoms = 1,
    .max_bottoms = 1,
    .min_tops = 1,
    .max_tops = 1,
    .setup = lrn_setup,
    .reshape = lrn_reshape,
    .forward = lrn_forward,
    .backward = lrn_backward,
    .free_state = lrn_free,
};
