/* rrelu.c -- crema's "RReLU", randomized leaky ReLU (Xu et al. 2015), rrelu_param {lower upper}.
 *   TRAIN: top = x > 0 ? x : a x, with a fresh a ~ U(lower, upper) per element and pass;
 *   TEST:  the same with the fixed slope a = (lower + upper) / 2.
 *   d bottom = d top * (x > 0 ? 1 : a), with the slopes drawn in forward.
 * A slope is drawn for every element, not only the negative ones, so the draws do not depend
 * on the data; they come from per-chunk streams keyed from l->rng, so they do not depend on
 * the thread count either.
 * 0 <= lower <= upper is required: slopes are then non-negative, the output keeps the sign
 * of x, and in-place use works with backward testing the sign of bottom data (= the output). */
#include <stdint.h>
#include <stdlib.h>

#include "base/clones.h"
#include "layers/layer.h"
#include "tensor/math.h"

/* Elements per random stream (see rrelu_forward). */
#define RNG_CHUNK 4096

typedef struct rrelu_state {
  float lower, upper;
  crema_blob *slope; /* TRAIN: the slope drawn for each element */
} rrelu_state;

static int rrelu_setup(crema_layer *l, crema_blob *const *bottom, crema_blob *const *top, crema_error *err) {
  (void)bottom;
  (void)top;
  const Crema__RReLUParameter def = CREMA__RRE_LUPARAMETER__INIT;
  const Crema__RReLUParameter *p = l->param->rrelu_param ? l->param->rrelu_param : &def;
  if (!(p->lower >= 0.0f && p->lower <= p->upper))
    return crema_fail(err, "rrelu_param has lower %g and upper %g; need 0 <= lower <= upper",
                      (double)p->lower, (double)p->upper);
  rrelu_state *s = calloc(1, sizeof *s);
  if (!s || !(s->slope = crema_blob_new())) {
    free(s);
    return crema_fail(err, "out of memory");
  }
  l->state = s;
  s->lower = p->lower;
  s->upper = p->upper;
  return 0;
}

static int rrelu_reshape(crema_layer *l, crema_blob *const *bottom, crema_blob *const *top,
                         crema_error *err) {
  rrelu_state *s = l->state;
  if (crema_blob_reshape_like(top[0], bottom[0], err)) return -1;
  if (l->phase == CREMA__PHASE__TRAIN) return crema_blob_reshape_like(s->slope, bottom[0], err);
  return 0;
}

typedef struct rrelu_pass {
  const float *x;
  float *y, *slope;
  float lower, upper;
} rrelu_pass;

/* Elements [begin, begin + count): slopes uniform in [lower, upper) as crema_rng_uniform
 * makes them from the same draws. */
CREMA_CLONES static void rrelu_piece(void *ctx, const uint32_t *draws, size_t begin, size_t count) {
  const rrelu_pass *p = ctx;
  /* locals and restrict: read through p, the fields might alias the stores, and the loop
   * would not vectorise */
  const float *restrict x = p->x + begin;
  float *restrict y = p->y + begin, *restrict slope = p->slope + begin;
  const float lower = p->lower, range = p->upper - p->lower;
  for (size_t i = 0; i < count; i++) {
    slope[i] = lower + range * ((float)(draws[i] >> 8) * (1.0f / 16777216.0f));
    y[i] = x[i] > 0.0f ? x[i] : slope[i] * x[i];
  }
}

static int rrelu_forward(crema_layer *l, crema_blob *const *bottom, crema_blob *const *top,
                         crema_error *err) {
  (void)err;
  rrelu_state *s = l->state;
  const size_t n = bottom[0]->count;
  const float *x = bottom[0]->data;
  float *y = top[0]->data;
  if (l->phase != CREMA__PHASE__TRAIN) {
    const float a = 0.5f * (s->lower + s->upper);
#pragma omp parallel for if (n > CREMA_PAR_MIN) schedule(static)
    for (size_t i = 0; i < n; i++) y[i] = x[i] > 0.0f ? x[i] : a * x[i];
    return 0;
  }
  /* Parallel draws that do not depend on the thread count: one 64-bit key per pass from
   * l->rng, then chunk j of RNG_CHUNK elements draws from its own generator seeded (key, j). */
  rrelu_pass pass = {x, y, s->slope->data, s->lower, s->upper};
  crema_rng_chunked(crema_rng_u64(&l->rng), n, RNG_CHUNK, n > CREMA_PAR_MIN, rrelu_piece, &pass);
  return 0;
}

/* dx = dy where x > 0, slope * dy elsewhere (x may be the output: the signs are the same). */
CREMA_CLONES static void slope_backward(size_t n, const float *x, const float *dy, const float *slope,
                                        float *dx) {
#pragma omp parallel for if (n > CREMA_PAR_MIN) schedule(static)
  for (size_t i = 0; i < n; i++) dx[i] = x[i] > 0.0f ? dy[i] : slope[i] * dy[i];
}

static void rrelu_backward(crema_layer *l, crema_blob *const *top, const bool *propagate_down,
                           crema_blob *const *bottom) {
  rrelu_state *s = l->state;
  if (!propagate_down[0]) return;
  const size_t n = bottom[0]->count;
  /* In place, bottom data holds the output: non-negative slopes keep the sign of x. */
  const float *x = bottom[0]->data, *dy = top[0]->diff;
  float *dx = bottom[0]->diff;
  if (l->phase != CREMA__PHASE__TRAIN) {
    const float a = 0.5f * (s->lower + s->upper);
#pragma omp parallel for if (n > CREMA_PAR_MIN) schedule(static)
    for (size_t i = 0; i < n; i++) dx[i] = x[i] > 0.0f ? dy[i] : a * dy[i];
    return;
  }
  slope_backward(n, x, dy, s->slope->data, dx);
}

static void rrelu_free(crema_layer *l) {
  rrelu_state *s = l->state;
  if (!s) return;
  crema_blob_free(s->slope);
  free(s);
}

const crema_layer_ops crema_rrelu_ops = {
    .type = "RReLU",
    .min_bottoms = 1,
    .max_bottoms = 1,
    .min_tops = 1,
    .max_tops = 1,
    .allow_inplace = true,
    .setup = rrelu_setup,
    .reshape = rrelu_reshape,
    .forward = rrelu_forward,
    .backward = rrelu_backward,
    .free_state = rrelu_free,
};
