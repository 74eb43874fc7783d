/* lstm_unit.c -- Caffe's "LSTMUnit": one LSTM step for N streams of H cells.
 *   bottoms: c_prev (1, N, H), x = gate inputs (1, N, 4H) in Caffe's order i, f, o, g,
 *            cont (1, N)
 *   i = sigmoid(x_i), f = cont ? sigmoid(x_f) : 0, o = sigmoid(x_o), g = tanh(x_g)
 *   tops:    c = f c_prev + i g, h = o tanh(c)
 * Backward (Caffe's): with e = d c + d h * o * (1 - tanh(c)^2):
 *   d c_prev = e f, d x_i = e g i (1 - i), d x_f = e c_prev f (1 - f),
 *   d x_o = d h tanh(c) o (1 - o), d x_g = e i (1 - g^2); cont gets no gradient. */
#include <math.h>
#include <string.h>

#include "layers/layer.h"
#include "layers/recurrent_common.h"

static int unit_reshape(crema_layer *l, crema_blob *const *bottom, crema_blob *const *top, crema_error *err) {
  (void)l;
  char a[256], b[256], c[256];
  const crema_blob *cp = bottom[0], *x = bottom[1], *cont = bottom[2];
  if (cp->num_axes != 3 || cp->shape[0] != 1 || x->num_axes != 3 || x->shape[0] != 1 ||
      x->shape[1] != cp->shape[1] || x->shape[2] != 4 * cp->shape[2] || cont->count != (size_t)cp->shape[1])
    return crema_fail(err,
                      "needs c_prev (1, N, H), gate inputs (1, N, 4H) and cont (1, N); got %s, %s and %s",
                      crema_blob_shape_string(cp, a, sizeof a), crema_blob_shape_string(x, b, sizeof b),
                      crema_blob_shape_string(cont, c, sizeof c));
  if (crema_blob_reshape_like(top[0], cp, err)) return -1;
  return crema_blob_reshape_like(top[1], cp, err);
}

static int unit_forward(crema_layer *l, crema_blob *const *bottom, crema_blob *const *top, crema_error *err) {
  (void)l;
  (void)err;
  const int N = bottom[0]->shape[1], H = bottom[0]->shape[2];
  for (int n = 0; n < N; n++) {
    const float *cp = bottom[0]->data + (size_t)n * H, *x = bottom[1]->data + (size_t)n * 4 * H;
    const float cont = bottom[2]->data[n];
    float *c = top[0]->data + (size_t)n * H, *h = top[1]->data + (size_t)n * H;
    for (int d = 0; d < H; d++) {
      const float i = crema_rec_sigmoid(x[d]), f = cont == 0.0f ? 0.0f : cont * crema_rec_sigmoid(x[H + d]),
                  o = crema_rec_sigmoid(x[2 * H + d]), g = tanhf(x[3 * H + d]);
      c[d] = f * cp[d] + i * g;
      h[d] = o * tanhf(c[d]);
    }
  }
  return 0;
}

static void unit_backward(crema_layer *l, crema_blob *const *top, const bool *propagate_down,
                          crema_blob *const *bottom) {
  (void)l;
  if (!propagate_down[0] && !propagate_down[1]) return;
  const int N = bottom[0]->shape[1], H = bottom[0]->shape[2];
  for (int n = 0; n < N; n++) {
    const float *cp = bottom[0]->data + (size_t)n * H, *x = bottom[1]->data + (size_t)n * 4 * H;
    const float cont = bottom[2]->data[n];
    const float *c = top[0]->data + (size_t)n * H, *dc = top[0]->diff + (size_t)n * H,
                *dh = top[1]->diff + (size_t)n * H;
    float *dcp = bottom[0]->diff + (size_t)n * H, *dx = bottom[1]->diff + (size_t)n * 4 * H;
    for (int d = 0; d < H; d++) {
      const float i = crema_rec_sigmoid(x[d]), f = cont == 0.0f ? 0.0f : cont * crema_rec_sigmoid(x[H + d]),
                  o = crema_rec_sigmoid(x[2 * H + d]), g = tanhf(x[3 * H + d]);
      const float tc = tanhf(c[d]);
      const float e = dc[d] + dh[d] * o * (1.0f - tc * tc);
      if (propagate_down[0]) dcp[d] = e * f;
      if (propagate_down[1]) {
        dx[d] = e * g * i * (1.0f - i);
        dx[H + d] = e * cp[d] * f * (1.0f - f);
        dx[2 * H + d] = dh[d] * tc * o * (1.0f - o);
        dx[3 * H + d] = e * i * (1.0f - g * g);
      }
    }
  }
}

const crema_layer_ops crema_lstm_unit_ops = {
    .type = "LSTMUnit",
    .min_bottoms = 3,
    .max_bottoms = 3,
    .min_tops = 2,
    .max_tops = 2,
    .reshape = unit_reshape,
    .forward = unit_forward,
    .backward = unit_backward,
};
