/* sigmoid.c -- Caffe's "Sigmoid": top = 1 / (1 + exp(-x)), d bottom = d top * y (1 - y).
 * In-place allowed: backward needs only the output.
 * Caffe evaluates 0.5 tanh(0.5 x) + 0.5; crema evaluates 1 / (1 + exp(-x)) directly, eight
 * or sixteen lanes at a time (smooth_rows.c, base/vec_math.h): more accurate for very
 * negative x (1.6e-7 relative error at worst over every float, against 4e-5 for the tanh
 * form). exp overflowing to inf gives exactly 0; NaN stays NaN. */
#include "layers/layer.h"
#include "layers/smooth_rows.h"
#include "tensor/math.h"

static int sigmoid_forward(crema_layer *l, crema_blob *const *bottom, crema_blob *const *top,
                           crema_error *err) {
  (void)l;
  (void)err;
  const size_t n = bottom[0]->count;
  const float *x = bottom[0]->data;
  float *y = top[0]->data;
  crema_smooth_rows(CREMA_SMOOTH_SIGMOID, n, x, 0.0f, 0.0f, y, NULL);
  return 0;
}

static void sigmoid_backward(crema_layer *l, crema_blob *const *top, const bool *propagate_down,
                             crema_blob *const *bottom) {
  (void)l;
  if (!propagate_down[0]) return;
  const size_t n = bottom[0]->count;
  const float *y = top[0]->data, *dy = top[0]->diff;
  float *dx = bottom[0]->diff;
#pragma omp parallel for if (n > CREMA_PAR_MIN_HEAVY) schedule(static)
  for (size_t i = 0; i < n; i++) dx[i] = dy[i] * y[i] * (1.0f - y[i]);
}

const crema_layer_ops crema_sigmoid_ops = {
    .type = "Sigmoid",
    .min_bottoms = 1,
    .max_bottoms = 1,
    .min_tops = 1,
    .max_tops = 1,
    .allow_inplace = true,
    .reshape = crema_reshape_like_bottom,
    .forward = sigmoid_forward,
    .backward = sigmoid_backward,
};
