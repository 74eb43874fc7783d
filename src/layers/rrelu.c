/* rrelu.c -- crema's "RReLU", randomized leaky ReLU (Xu et al. 2015), rrelu_param {lower upper}.
 *   TRAIN: top = x > 0 ? x : a x, with a fresh a ~ U(lower, upper) per element and pass;
 *   TEST:  the same with the fixed slope a = (lower + upper) / 2.
 *   d bottom = d top * (x > 0 ? 1 : a), with the slopes drawn in forward.
 * A slope is drawn for every element, not only the negative ones, so the draws do not depend
 * on the data; they come from lane generators keyed from l->rng (rng16.h), so they do not
 * depend on the thread count or the CPU either.
 * 0 <= lower <= upper is required: slopes are then non-negative, the output keeps the sign
 * of x, and in-place use works with backward testing the sign of bottom data (= the output). */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "base/clones.h"
#include "base/rng16.h"
#include "base/v16.h"
#include "layers/drawing_rows.h"
#include "layers/layer.h"
#include "tensor/math.h"

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

/* The last partial group of a run: its draws d (the first lanes), element by element. The
 * slope is uniform in [lower, upper) as crema_rng_uniform makes it from the same draw. */
static void rrelu_tail(const rrelu_pass *p, const uint32_t d[16], size_t at, size_t count) {
  const float lower = p->lower, range = p->upper - p->lower;
  for (size_t j = 0; j < count; j++) {
    const float a = lower + range * ((float)(d[j] >> 8) * (1.0f / 16777216.0f)), v = p->x[at + j];
    p->slope[at + j] = a;
    p->y[at + j] = v > 0.0f ? v : a * v;
  }
}

/* A run's elements [begin, begin + count) with their lane generators (rng16.h), sixteen at a
 * time, the draws made in the loop that reads x and writes y and the slopes (as Dropout's):
 * a copy on sixteen lanes for AVX-512, one on two halves of eight for AVX2 and less, the same
 * operations as rrelu_tail's lane by lane, so the same bits (the draw's top 24 bits convert
 * to float exactly, signed or not). */
#if CREMA_V16
CREMA_V16_TARGET static void rrelu_run16(void *ctx, crema_rng16 *g, size_t begin, size_t count) {
  const rrelu_pass *p = ctx;
  const v16 lower = v16_splat(p->lower), range = v16_splat(p->upper - p->lower);
  const v16 unit = v16_splat(1.0f / 16777216.0f), zero = {0};
  crema_rng16 s = *g; /* a local copy: the state stays in registers */
  const size_t end = begin + (count & ~(size_t)15);
  for (size_t i = begin; i < end; i += 16) {
    const i16 top = (i16)(crema_rng16_next(&s) >> 8);
    const v16 a = lower + range * (__builtin_convertvector(top, v16) * unit), v = load16(p->x + i);
    store16(p->slope + i, a);
    store16(p->y + i, v16_select(v > zero, v, a * v));
  }
  if (end < begin + count) {
    uint32_t d[16];
    crema_rng16_next_array(&s, d);
    rrelu_tail(p, d, end, begin + count - end);
  }
}
#define RRELU_RUN16 rrelu_run16
#else
#define RRELU_RUN16 NULL
#endif

CREMA_CLONES static void rrelu_run8(void *ctx, crema_rng16 *g, size_t begin, size_t count) {
  const rrelu_pass *p = ctx;
  const v8 lower = v8_splat(p->lower), range = v8_splat(p->upper - p->lower);
  const v8 unit = v8_splat(1.0f / 16777216.0f), zero = {0};
  crema_rng8 h[2];
  crema_rng16_halves(g, h);
  const size_t end = begin + (count & ~(size_t)15);
  for (size_t i = begin; i < end; i += 16)
    for (int half = 0; half < 2; half++) {
      const i8 top = (i8)(crema_rng8_next(&h[half]) >> 8);
      const size_t at = i + 8 * (size_t)half;
      const v8 a = lower + range * (__builtin_convertvector(top, v8) * unit), v = load8(p->x + at);
      store8(p->slope + at, a);
      store8(p->y + at, v8_select(v > zero, v, a * v));
    }
  if (end < begin + count) {
    uint32_t d[16];
    crema_rng8_next_array(h, d);
    rrelu_tail(p, d, end, begin + count - end);
  }
}

void crema_rrelu_train_rows(size_t n, const float *x, float *y, float *slope, uint64_t key, float lower,
                            float upper, bool wide) {
  rrelu_pass pass = {x, y, slope, lower, upper};
  crema_rng16_runs(key, n, n > CREMA_PAR_MIN, rrelu_run8, RRELU_RUN16, wide, &pass);
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
   * l->rng, then run c's sixteen lane generators seeded (key, 16 c + j) (rng16.h). */
  crema_rrelu_train_rows(n, x, y, s->slope->data, crema_rng_u64(&l->rng), s->lower, s->upper, true);
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
