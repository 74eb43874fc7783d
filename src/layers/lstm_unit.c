/* lstm_unit.c -- Caffe's "LSTMUnit": one LSTM step for N streams of H cells.
 *   bottoms: c_prev (1, N, H), x = gate inputs (1, N, 4H) in Caffe's order i, f, o, g,
 *            cont (1, N)
 *   i = sigmoid(x_i), f = cont ? sigmoid(x_f) : 0, o = sigmoid(x_o), g = tanh(x_g)
 *   tops:    c = f c_prev + i g, h = o tanh(c)
 * Backward (Caffe's): with e = d c + d h * o * (1 - tanh(c)^2):
 *   d c_prev = e f, d x_i = e g i (1 - i), d x_f = e c_prev f (1 - f),
 *   d x_o = d h tanh(c) o (1 - o), d x_g = e i (1 - g^2); cont gets no gradient. */
#include <stdlib.h>

#include "layers/layer.h"
#include "layers/recurrent_common.h"

/* The forward pass's squashed gates (N x 4H: i, f with cont, o, g) and tanh(c) (N x H), which
 * the backward pass reads instead of computing them again. */
typedef struct unit_state {
  float *act, *tc;
  size_t act_cap, tc_cap;
} unit_state;

static int unit_setup(crema_layer *l, crema_blob *const *bottom, crema_blob *const *top, crema_error *err) {
  (void)bottom;
  (void)top;
  if (!(l->state = calloc(1, sizeof(unit_state)))) return crema_fail(err, "out of memory");
  return 0;
}

static int unit_reshape(crema_layer *l, crema_blob *const *bottom, crema_blob *const *top, crema_error *err) {
  unit_state *s = l->state;
  char a[256], b[256], c[256];
  const crema_blob *cp = bottom[0], *x = bottom[1], *cont = bottom[2];
  if (cp->num_axes != 3 || cp->shape[0] != 1 || x->num_axes != 3 || x->shape[0] != 1 ||
      x->shape[1] != cp->shape[1] || x->shape[2] != 4 * cp->shape[2] || cont->count != (size_t)cp->shape[1])
    return crema_fail(err,
                      "needs c_prev (1, N, H), gate inputs (1, N, 4H) and cont (1, N); got %s, %s and %s",
                      crema_blob_shape_string(cp, a, sizeof a), crema_blob_shape_string(x, b, sizeof b),
                      crema_blob_shape_string(cont, c, sizeof c));
  if (crema_rec_grow(&s->act, &s->act_cap, x->count, err) ||
      crema_rec_grow(&s->tc, &s->tc_cap, cp->count, err))
    return -1;
  if (crema_blob_reshape_like(top[0], cp, err)) return -1;
  return crema_blob_reshape_like(top[1], cp, err);
}

static int unit_forward(crema_layer *l, crema_blob *const *bottom, crema_blob *const *top, crema_error *err) {
  (void)err;
  unit_state *s = l->state;
  const int N = bottom[0]->shape[1], H = bottom[0]->shape[2];
  for (int n = 0; n < N; n++) {
    const size_t at = (size_t)n * H, at4 = 4 * at;
    crema_lstm_cell(H, bottom[2]->data[n], bottom[1]->data + at4, s->act + at4, bottom[0]->data + at,
                    top[0]->data + at, s->tc + at, top[1]->data + at);
  }
  return 0;
}

static void unit_backward(crema_layer *l, crema_blob *const *top, const bool *propagate_down,
                          crema_blob *const *bottom) {
  const unit_state *s = l->state;
  if (!propagate_down[0] && !propagate_down[1]) return;
  const int N = bottom[0]->shape[1], H = bottom[0]->shape[2];
  for (int n = 0; n < N; n++) {
    const size_t at = (size_t)n * H, at4 = 4 * at;
    crema_lstm_cell_backward(H, s->act + at4, s->tc + at, bottom[0]->data + at, top[0]->diff + at,
                             top[1]->diff + at, NULL, propagate_down[0] ? bottom[0]->diff + at : NULL,
                             propagate_down[1] ? bottom[1]->diff + at4 : NULL);
  }
}

static void unit_free(crema_layer *l) {
  unit_state *s = l->state;
  if (!s) return;
  free(s->act);
  free(s->tc);
  free(s);
}

const crema_layer_ops crema_lstm_unit_ops = {
    .type = "LSTMUnit",
    .min_bottoms = 3,
    .max_bottoms = 3,
    .min_tops = 2,
    .max_tops = 2,
    .setup = unit_setup,
    .reshape = unit_reshape,
    .forward = unit_forward,
    .backward = unit_backward,
    .free_state = unit_free,
};
