/* pooling_stochastic.c -- Caffe's Pooling with pool: STOCHASTIC (Zeiler & Fergus 2013),
 * as Caffe's GPU kernels compute it (Caffe has no CPU version). For inputs >= 0 (after a
 * ReLU), over each window R (start o * stride, clipped at the input; padding is not used
 * inside the windows, as in Caffe's kernels):
 *   TRAIN: pick element i of R with probability x_i / sum_R x (u uniform in [0, 1): the first
 *          i whose running sum reaches u * sum_R x); top = x_i; d x_i += d top
 *   TEST:  top = sum_R x^2 / sum_R x (the probability-weighted average; 0 when the sum is 0);
 *          d x_i = d top * (2 x_i sum_R x - sum_R x^2) / (sum_R x)^2
 * The output size, and the checks of pooling_param, are those of MAX pooling (an inner MAX
 * Pooling layer is set up on the same bottom to provide them). pooling.c hands STOCHASTIC
 * layers to this file. */
#include <stdlib.h>
#include <string.h>

#include "layers/layer.h"
#include "tensor/math.h"

typedef struct stoch_state {
  Crema__LayerParameter lp; /* l->param with pool MAX, for the inner layer */
  Crema__PoolingParameter pp;
  crema_layer *inner;
  crema_blob *inner_top;
  int kh, kw, sh, sw;
  int *pick; /* TRAIN: the chosen input index of each output (within its plane) */
  size_t pick_cap;
} stoch_state;

static int stoch_setup(crema_layer *l, crema_blob *const *bottom, crema_blob *const *top, crema_error *err) {
  (void)top;
  stoch_state *s = calloc(1, sizeof *s);
  if (!s) return crema_fail(err, "out of memory");
  l->state = s;
  if (l->n_top > 1) return crema_fail(err, "STOCHASTIC pooling has one top (only MAX has a mask top)");
  if (!(s->inner_top = crema_blob_new())) return crema_fail(err, "out of memory");
  s->lp = *l->param;
  s->pp = *l->param->pooling_param;
  s->pp.pool = CREMA__POOLING_PARAMETER__POOL_METHOD__MAX;
  s->lp.pooling_param = &s->pp;
  if (crema_layer_create(&s->lp, l->phase, 0, &s->inner, err) ||
      crema_layer_setup(s->inner, 1, bottom, 1, &s->inner_top, err))
    return -1;
  const Crema__PoolingParameter *p = &s->pp;
  if (p->global_pooling) {
    s->kh = bottom[0]->shape[2];
    s->kw = bottom[0]->shape[3];
  } else {
    s->kh = (int)(p->has_kernel_size ? p->kernel_size : p->kernel_h);
    s->kw = (int)(p->has_kernel_size ? p->kernel_size : p->kernel_w);
  }
  s->sh = (int)(p->has_stride_h ? p->stride_h : p->stride);
  s->sw = (int)(p->has_stride_w ? p->stride_w : p->stride);
  return 0;
}

static int stoch_reshape(crema_layer *l, crema_blob *const *bottom, crema_blob *const *top,
                         crema_error *err) {
  stoch_state *s = l->state;
  if (crema_layer_reshape(s->inner, bottom, &s->inner_top, err)) return -1;
  if (s->pp.global_pooling) {
    s->kh = bottom[0]->shape[2];
    s->kw = bottom[0]->shape[3];
  }
  if (crema_blob_reshape_like(top[0], s->inner_top, err)) return -1;
  if (top[0]->count > s->pick_cap) {
    int *p = realloc(s->pick, top[0]->count * sizeof *p);
    if (!p) return crema_fail(err, "out of memory");
    s->pick = p;
    s->pick_cap = top[0]->count;
  }
  return 0;
}

/* The window of output o along one side: [lo, hi). */
static void window(int o, int stride, int k, int in, int *lo, int *hi) {
  const long start = (long)o * stride;
  *lo = start < in ? (int)start : in;
  *hi = start + k < in ? (int)(start + k) : in;
}

static int stoch_forward(crema_layer *l, crema_blob *const *bottom, crema_blob *const *top,
                         crema_error *err) {
  (void)err;
  stoch_state *s = l->state;
  const int H = bottom[0]->shape[2], W = bottom[0]->shape[3], PH = top[0]->shape[2], PW = top[0]->shape[3];
  const int planes = bottom[0]->shape[0] * bottom[0]->shape[1];
  const size_t pin = (size_t)H * W, pout = (size_t)PH * PW;
  const bool train = l->phase == CREMA__PHASE__TRAIN;
  const uint64_t key = train ? crema_rng_u64(&l->rng) : 0;
#pragma omp parallel for schedule(static) if ((size_t)planes * pin > 32768)
  for (int pl = 0; pl < planes; pl++) {
    const float *x = bottom[0]->data + (size_t)pl * pin;
    float *y = top[0]->data + (size_t)pl * pout;
    int *pick = s->pick + (size_t)pl * pout;
    crema_rng r;
    crema_rng_seed(&r, key, (uint64_t)pl);
    for (int oh = 0; oh < PH; oh++)
      for (int ow = 0; ow < PW; ow++) {
        int hs, he, ws, we;
        window(oh, s->sh, s->kh, H, &hs, &he);
        window(ow, s->sw, s->kw, W, &ws, &we);
        const size_t o = (size_t)oh * PW + ow;
        float sum = 0.0f, sq = 0.0f;
        for (int h = hs; h < he; h++)
          for (int w = ws; w < we; w++) {
            sum += x[h * W + w];
            sq += x[h * W + w] * x[h * W + w];
          }
        if (!train) {
          y[o] = sum > 0.0f ? sq / sum : 0.0f;
          continue;
        }
        const float thres = crema_rng_uniform(&r, 0.0f, 1.0f) * sum;
        float run = 0.0f;
        int at = -1;
        for (int h = hs; h < he && at < 0; h++)
          for (int w = ws; w < we; w++) {
            run += x[h * W + w];
            if (run >= thres) {
              at = h * W + w;
              break;
            }
          }
        if (at < 0 && he > hs && we > ws) at = (he - 1) * W + we - 1; /* rounding left the sum short */
        pick[o] = at;
        y[o] = at >= 0 ? x[at] : 0.0f;
      }
  }
  return 0;
}

static void stoch_backward(crema_layer *l, crema_blob *const *top, const bool *propagate_down,
                           crema_blob *const *bottom) {
  if (!propagate_down[0]) return;
  stoch_state *s = l->state;
  const int H = bottom[0]->shape[2], W = bottom[0]->shape[3], PH = top[0]->shape[2], PW = top[0]->shape[3];
  const int planes = bottom[0]->shape[0] * bottom[0]->shape[1];
  const size_t pin = (size_t)H * W, pout = (size_t)PH * PW;
  const bool train = l->phase == CREMA__PHASE__TRAIN;
#pragma omp parallel for schedule(static) if ((size_t)planes * pin > 32768)
  for (int pl = 0; pl < planes; pl++) {
    const float *x = bottom[0]->data + (size_t)pl * pin, *dy = top[0]->diff + (size_t)pl * pout;
    float *dx = bottom[0]->diff + (size_t)pl * pin;
    memset(dx, 0, pin * sizeof *dx);
    if (train) {
      const int *pick = s->pick + (size_t)pl * pout;
      for (size_t o = 0; o < pout; o++)
        if (pick[o] >= 0) dx[pick[o]] += dy[o];
      continue;
    }
    for (int oh = 0; oh < PH; oh++)
      for (int ow = 0; ow < PW; ow++) {
        int hs, he, ws, we;
        window(oh, s->sh, s->kh, H, &hs, &he);
        window(ow, s->sw, s->kw, W, &ws, &we);
        float sum = 0.0f, sq = 0.0f;
        for (int h = hs; h < he; h++)
          for (int w = ws; w < we; w++) {
            sum += x[h * W + w];
            sq += x[h * W + w] * x[h * W + w];
          }
        if (!(sum > 0.0f)) continue;
        const float g = dy[(size_t)oh * PW + ow] / (sum * sum);
        for (int h = hs; h < he; h++)
          for (int w = ws; w < we; w++) dx[h * W + w] += g * (2.0f * x[h * W + w] * sum - sq);
      }
  }
}

static void stoch_free(crema_layer *l) {
  stoch_state *s = l->state;
  if (!s) return;
  crema_layer_free(s->inner);
  crema_blob_free(s->inner_top);
  free(s->pick);
  free(s);
}

const crema_layer_ops crema_pooling_stochastic_ops = {
    .type = "Pooling",
    .min_bottoms = 1,
    .max_bottoms = 1,
    .min_tops = 1,
    .max_tops = 2,
    .setup = stoch_setup,
    .reshape = stoch_reshape,
    .forward = stoch_forward,
    .backward = stoch_backward,
    .free_state = stoch_free,
};
