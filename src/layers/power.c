/* power.c -- Caffe's "Power": top = (shift + scale * x) ^ power.
 *
 * Caffe's special cases, kept so results match it bit for bit where it matters:
 *  - power * scale == 0: the output is constant (1 when power == 0, else shift ^ power)
 *    and the gradient is 0;
 *  - power == 1: dy/dx = scale;   power == 2: dy/dx = 2 scale (shift + scale x);
 *  - otherwise dy/dx = power * scale * y / (shift + scale x), which for shift == 0 Caffe
 *    writes as power * y / x (so x == 0 gives inf/nan there, as in Caffe).
 * In-place allowed: backward needs both x and y, so an in-place layer keeps a copy of x. */
#include <math.h>
#include <stdlib.h>

#include "layers/layer.h"
#include "tensor/math.h"

typedef struct power_state {
  float power, scale, shift;
  float diff_scale;       /* power * scale */
  crema_input_copy saved; /* copy of the input, only for in-place use */
} power_state;

static int power_setup(crema_layer *l, crema_blob *const *bottom, crema_blob *const *top, crema_error *err) {
  (void)bottom;
  (void)top;
  const Crema__PowerParameter def = CREMA__POWER_PARAMETER__INIT;
  const Crema__PowerParameter *p = l->param->power_param ? l->param->power_param : &def;
  power_state *s = calloc(1, sizeof *s);
  if (!s) return crema_fail(err, "out of memory");
  l->state = s;
  s->power = p->power;
  s->scale = p->scale;
  s->shift = p->shift;
  s->diff_scale = p->power * p->scale;
  return 0;
}

static int power_reshape(crema_layer *l, crema_blob *const *bottom, crema_blob *const *top,
                         crema_error *err) {
  power_state *s = l->state;
  if (crema_blob_reshape_like(top[0], bottom[0], err)) return -1;
  return crema_input_copy_reshape(&s->saved, crema_layer_keeps_input(l, bottom, top), bottom[0], err);
}

/* y = (shift + scale x)^power, with saved: x copied there in the same loop (x may be y: each
 * element is read before it is written). */
static inline __attribute__((always_inline)) void power_loop(size_t n, float power, float scale, float shift,
                                                             const float *x, float *y, float *saved) {
  if (power == 1.0f) {
#pragma omp parallel for if (n > CREMA_PAR_MIN_HEAVY) schedule(static)
    for (size_t i = 0; i < n; i++) {
      const float v = x[i];
      if (saved) saved[i] = v;
      y[i] = scale * v + shift;
    }
  } else if (power == 2.0f) {
#pragma omp parallel for if (n > CREMA_PAR_MIN_HEAVY) schedule(static)
    for (size_t i = 0; i < n; i++) {
      const float v = x[i], t = scale * v + shift;
      if (saved) saved[i] = v;
      y[i] = t * t;
    }
  } else {
#pragma omp parallel for if (n > CREMA_PAR_MIN_HEAVY) schedule(static)
    for (size_t i = 0; i < n; i++) {
      const float v = x[i];
      if (saved) saved[i] = v;
      y[i] = powf(scale * v + shift, power);
    }
  }
}

/* The loops without and with the copy, each free of the test inside. */
static void power_run(size_t n, float power, float scale, float shift, const float *x, float *y,
                      float *saved) {
  if (saved)
    power_loop(n, power, scale, shift, x, y, saved);
  else
    power_loop(n, power, scale, shift, x, y, NULL);
}

static int power_forward(crema_layer *l, crema_blob *const *bottom, crema_blob *const *top,
                         crema_error *err) {
  (void)err;
  power_state *s = l->state;
  const size_t n = bottom[0]->count;
  const float *x = bottom[0]->data;
  float *y = top[0]->data;
  if (s->diff_scale == 0.0f) {
    crema_set(n, s->power == 0.0f ? 1.0f : powf(s->shift, s->power), y);
    return 0;
  }
  /* in place, the input's copy for backward is written in the same pass as y */
  float *saved = crema_input_copy_target(&s->saved, crema_layer_keeps_input(l, bottom, top));
  power_run(n, s->power, s->scale, s->shift, x, y, saved);
  return 0;
}

static void power_backward(crema_layer *l, crema_blob *const *top, const bool *propagate_down,
                           crema_blob *const *bottom) {
  power_state *s = l->state;
  if (!propagate_down[0]) return;
  const size_t n = bottom[0]->count;
  float *dx = bottom[0]->diff;
  const float *dy = top[0]->diff, *y = top[0]->data;
  const float *x = crema_input_copy_data(&s->saved, crema_layer_keeps_input(l, bottom, top), bottom[0]);
  const float power = s->power, scale = s->scale, shift = s->shift, ds = s->diff_scale;
  if (ds == 0.0f) {
    crema_set(n, 0.0f, dx);
  } else if (power == 1.0f) {
#pragma omp parallel for if (n > CREMA_PAR_MIN_HEAVY) schedule(static)
    for (size_t i = 0; i < n; i++) dx[i] = dy[i] * scale;
  } else if (power == 2.0f) {
#pragma omp parallel for if (n > CREMA_PAR_MIN_HEAVY) schedule(static)
    for (size_t i = 0; i < n; i++) dx[i] = dy[i] * (ds * shift + ds * scale * x[i]);
  } else if (shift == 0.0f) {
#pragma omp parallel for if (n > CREMA_PAR_MIN_HEAVY) schedule(static)
    for (size_t i = 0; i < n; i++) dx[i] = dy[i] * (power * y[i] / x[i]);
  } else {
#pragma omp parallel for if (n > CREMA_PAR_MIN_HEAVY) schedule(static)
    for (size_t i = 0; i < n; i++) dx[i] = dy[i] * (ds * y[i] / (scale * x[i] + shift));
  }
}

static void power_free(crema_layer *l) {
  power_state *s = l->state;
  if (!s) return;
  crema_input_copy_free(&s->saved);
  free(s);
}

const crema_layer_ops crema_power_ops = {
    .type = "Power",
    .min_bottoms = 1,
    .max_bottoms = 1,
    .min_tops = 1,
    .max_tops = 1,
    .allow_inplace = true,
    .setup = power_setup,
    .reshape = power_reshape,
    .forward = power_forward,
    .backward = power_backward,
    .free_state = power_free,
};
