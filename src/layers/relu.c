/* relu.c -- ReLU and Leaky ReLU (Caffe's "ReLU"):
 *   top = max(x, 0) + negative_slope * min(x, 0)
 *   d bottom = d top * (x > 0 ? 1 : negative_slope)
 * In-place allowed. Backward tests x > 0 as Caffe does; in place it reads top data instead,
 * which has the same sign as x whenever negative_slope >= 0. A negative slope flips signs,
 * so then (and only then) an in-place layer keeps a copy of its input. */
#include <stdlib.h>

#include "layers/layer.h"
#include "tensor/math.h"

typedef struct relu_state {
  float negative_slope;
  crema_input_copy saved; /* copy of the input, only for in-place use with a negative slope */
} relu_state;

static int relu_setup(crema_layer *l, crema_blob *const *bottom, crema_blob *const *top, crema_error *err) {
  (void)bottom;
  (void)top;
  const Crema__ReLUParameter def = CREMA__RE_LUPARAMETER__INIT;
  const Crema__ReLUParameter *p = l->param->relu_param ? l->param->relu_param : &def;
  relu_state *s = calloc(1, sizeof *s);
  if (!s) return crema_fail(err, "out of memory");
  l->state = s;
  s->negative_slope = p->negative_slope;
  return 0;
}

static bool relu_keeps_input(const crema_layer *l, crema_blob *const *bottom, crema_blob *const *top) {
  const relu_state *s = l->state;
  return s->negative_slope < 0.0f && crema_layer_keeps_input(l, bottom, top);
}

static int relu_reshape(crema_layer *l, crema_blob *const *bottom, crema_blob *const *top, crema_error *err) {
  relu_state *s = l->state;
  if (crema_blob_reshape_like(top[0], bottom[0], err)) return -1;
  return crema_input_copy_reshape(&s->saved, relu_keeps_input(l, bottom, top), bottom[0], err);
}

static int relu_forward(crema_layer *l, crema_blob *const *bottom, crema_blob *const *top, crema_error *err) {
  (void)err;
  relu_state *s = l->state;
  const size_t n = bottom[0]->count;
  const float *x = bottom[0]->data;
  float *y = top[0]->data;
  const float ns = s->negative_slope;
  crema_input_copy_save(&s->saved, relu_keeps_input(l, bottom, top), bottom[0]);
#pragma omp parallel for if (n > CREMA_PAR_MIN) schedule(static)
  for (size_t i = 0; i < n; i++) {
    const float v = x[i], neg = ns * v;
    y[i] = v > 0.0f ? v : neg; /* both sides computed: a select, not a branch, so it vectorises */
  }
  return 0;
}

static void relu_backward(crema_layer *l, crema_blob *const *top, const bool *propagate_down,
                          crema_blob *const *bottom) {
  relu_state *s = l->state;
  if (!propagate_down[0]) return;
  const size_t n = bottom[0]->count;
  /* In place, bottom data already holds the output: same sign as x for slopes >= 0. */
  const float *x = crema_input_copy_data(&s->saved, relu_keeps_input(l, bottom, top), bottom[0]);
  const float *dy = top[0]->diff;
  float *dx = bottom[0]->diff;
  const float ns = s->negative_slope;
#pragma omp parallel for if (n > CREMA_PAR_MIN) schedule(static)
  for (size_t i = 0; i < n; i++) {
    const float g = dy[i], neg = ns * g;
    dx[i] = x[i] > 0.0f ? g : neg;
  }
}

static void relu_free(crema_layer *l) {
  relu_state *s = l->state;
  if (!s) return;
  crema_input_copy_free(&s->saved);
  free(s);
}

const crema_layer_ops crema_relu_ops = {
    .type = "ReLU",
    .min_bottoms = 1,
    .max_bottoms = 1,
    .min_tops = 1,
    .max_tops = 1,
    .allow_inplace = true,
    .setup = relu_setup,
    .reshape = relu_reshape,
    .forward = relu_forward,
    .backward = relu_backward,
    .free_state = relu_free,
};
