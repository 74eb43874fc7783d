/* lstm.c -- Caffe's "LSTM" (recurrent_param; bottoms and tops as in recurrent_common.h).
 * Parameters, in Caffe's order: W_xc (4H, D), b_c (4H), [W_xc_static (4H, Ds)], W_hc (4H, H).
 * For t = 1 .. T (c_0, h_0 = 0 or the exposed bottoms):
 *   gates_t = W_xc x_t + b_c [+ W_xc_static x_static] + W_hc (cont_t * h_{t-1})
 *   (c_t, h_t) = LSTMUnit(c_{t-1}, gates_t, cont_t)      (i, f, o, g; see lstm_unit.c)
 * Top: h_1 .. h_T as (T, N, H); with expose_hidden also h_T and c_T (1, N, H).
 * Backward runs the recurrence in reverse (backpropagation through time); the gradients of
 * every timestep accumulate into the one set of weights. */
#include <stdlib.h>
#include <string.h>

#include "layers/layer.h"
#include "layers/recurrent_common.h"
#include "tensor/math.h"

typedef struct lstm_state {
  crema_rec_dims d;
  int w_hc; /* index of W_hc among the blobs */
  float *gates, *cs, *hs, *hcont, *dgates, *dh, *dc, *tmp, *sw;
  float *tcs; /* tanh(c_t) for t = 1 .. T, kept by the forward pass for the backward one */
  size_t gates_cap, cs_cap, hs_cap, hcont_cap, dgates_cap, dh_cap, dc_cap, tmp_cap, sw_cap, tcs_cap;
} lstm_state;

static int lstm_setup(crema_layer *l, crema_blob *const *bottom, crema_blob *const *top, crema_error *err) {
  (void)top;
  if (crema_rec_check_arity(l, 2, err)) return -1;
  lstm_state *s = calloc(1, sizeof *s);
  if (!s) return crema_fail(err, "out of memory");
  l->state = s;
  if (crema_rec_dims_read(l, bottom, 2, &s->d, err)) return -1;
  const Crema__RecurrentParameter *p = l->param->recurrent_param;
  const int G = 4 * s->d.H;
  if (crema_layer_add_blob(l, 0, 2, (int[]){G, s->d.D}, p->weight_filler, err) ||
      crema_layer_add_blob(l, 1, 1, &G, p->bias_filler, err))
    return -1;
  int k = 2;
  if (s->d.has_static && crema_layer_add_blob(l, k++, 2, (int[]){G, s->d.Ds}, p->weight_filler, err))
    return -1;
  s->w_hc = k;
  return crema_layer_add_blob(l, k, 2, (int[]){G, s->d.H}, p->weight_filler, err);
}

static int lstm_reshape(crema_layer *l, crema_blob *const *bottom, crema_blob *const *top, crema_error *err) {
  lstm_state *s = l->state;
  crema_rec_dims d;
  if (crema_rec_dims_read(l, bottom, 2, &d, err)) return -1;
  if (d.D != s->d.D || d.Ds != s->d.Ds)
    return crema_fail(err, "the input size changed from %d to %d values per step; the weights are fixed",
                      s->d.D, d.D);
  s->d = d;
  const size_t TN = (size_t)d.T * d.N, NH = (size_t)d.N * d.H;
  if (crema_rec_grow(&s->gates, &s->gates_cap, TN * 4 * d.H, err) ||
      crema_rec_grow(&s->dgates, &s->dgates_cap, TN * 4 * d.H, err) ||
      crema_rec_grow(&s->cs, &s->cs_cap, (size_t)(d.T + 1) * NH, err) ||
      crema_rec_grow(&s->hs, &s->hs_cap, (size_t)(d.T + 1) * NH, err) ||
      crema_rec_grow(&s->hcont, &s->hcont_cap, TN * d.H, err) ||
      crema_rec_grow(&s->tcs, &s->tcs_cap, TN * d.H, err) || crema_rec_grow(&s->dh, &s->dh_cap, NH, err) ||
      crema_rec_grow(&s->dc, &s->dc_cap, NH, err) || crema_rec_grow(&s->tmp, &s->tmp_cap, NH, err) ||
      crema_rec_grow(&s->sw, &s->sw_cap, (size_t)d.N * 4 * d.H, err))
    return -1;
  if (crema_blob_reshape(top[0], 3, (int[]){d.T, d.N, d.H}, err)) return -1;
  if (d.expose)
    for (int k = 1; k <= 2; k++)
      if (crema_blob_reshape(top[k], 3, (int[]){1, d.N, d.H}, err)) return -1;
  return 0;
}

static int lstm_forward(crema_layer *l, crema_blob *const *bottom, crema_blob *const *top, crema_error *err) {
  (void)err;
  lstm_state *s = l->state;
  const crema_rec_dims *d = &s->d;
  const int T = d->T, N = d->N, H = d->H, G = 4 * H;
  const size_t NH = (size_t)N * H, NG = (size_t)N * G;
  const float *cont = bottom[1]->data;
  /* Input contributions of every timestep at once. */
  crema_rec_gemm(false, true, T * N, G, d->D, 1.0f, bottom[0]->data, l->blobs[0]->data, 0.0f, s->gates);
  for (size_t r = 0; r < (size_t)T * N; r++) crema_axpy((size_t)G, 1.0f, l->blobs[1]->data, s->gates + r * G);
  if (d->has_static) {
    crema_rec_gemm(false, true, N, G, d->Ds, 1.0f, bottom[2]->data, l->blobs[2]->data, 0.0f, s->sw);
    for (int t = 0; t < T; t++) crema_axpy(NG, 1.0f, s->sw, s->gates + (size_t)t * NG);
  }
  const int first_state = 2 + (d->has_static ? 1 : 0);
  if (d->expose) {
    crema_copy(NH, bottom[first_state]->data, s->hs);
    crema_copy(NH, bottom[first_state + 1]->data, s->cs);
  } else {
    crema_set(NH, 0.0f, s->hs);
    crema_set(NH, 0.0f, s->cs);
  }
  const float *whc = l->blobs[s->w_hc]->data;
  for (int t = 0; t < T; t++) {
    float *hc = s->hcont + (size_t)t * NH, *g = s->gates + (size_t)t * NG;
    const float *hp = s->hs + (size_t)t * NH, *cp = s->cs + (size_t)t * NH;
    for (int n = 0; n < N; n++)
      for (int k = 0; k < H; k++) hc[(size_t)n * H + k] = cont[(size_t)t * N + n] * hp[(size_t)n * H + k];
    crema_rec_gemm(false, true, N, G, H, 1.0f, hc, whc, 1.0f, g);
    float *c = s->cs + (size_t)(t + 1) * NH, *h = s->hs + (size_t)(t + 1) * NH, *tc = s->tcs + (size_t)t * NH;
#pragma omp parallel for if (NG > CREMA_PAR_MIN_HEAVY) schedule(static)
    for (int n = 0; n < N; n++) {
      const size_t at = (size_t)n * H;
      float *x = g + (size_t)n * G;
      crema_lstm_cell(H, cont[(size_t)t * N + n], x, x, cp + at, c + at, tc + at, h + at);
    }
  }
  crema_copy((size_t)T * NH, s->hs + NH, top[0]->data);
  if (d->expose) {
    crema_copy(NH, s->hs + (size_t)T * NH, top[1]->data);
    crema_copy(NH, s->cs + (size_t)T * NH, top[2]->data);
  }
  return 0;
}

static void lstm_backward(crema_layer *l, crema_blob *const *top, const bool *propagate_down,
                          crema_blob *const *bottom) {
  lstm_state *s = l->state;
  const crema_rec_dims *d = &s->d;
  const int T = d->T, N = d->N, H = d->H, G = 4 * H;
  const size_t NH = (size_t)N * H, NG = (size_t)N * G;
  const float *cont = bottom[1]->data, *whc = l->blobs[s->w_hc]->data;
  if (d->expose) {
    crema_copy(NH, top[1]->diff, s->dh);
    crema_copy(NH, top[2]->diff, s->dc);
  } else {
    crema_set(NH, 0.0f, s->dh);
    crema_set(NH, 0.0f, s->dc);
  }
  for (int t = T - 1; t >= 0; t--) {
    const float *g = s->gates + (size_t)t * NG, *tcs = s->tcs + (size_t)t * NH, *cp = s->cs + (size_t)t * NH;
    const float *dtop = top[0]->diff + (size_t)t * NH;
    float *dg = s->dgates + (size_t)t * NG;
    for (int n = 0; n < N; n++) {
      const size_t at = (size_t)n * H;
      crema_lstm_cell_backward(H, g + (size_t)n * G, tcs + at, cp + at, s->dc + at, dtop + at, s->dh + at,
                               s->dc + at, dg + (size_t)n * G);
    }
    if (l->param_propagate_down[s->w_hc])
      crema_rec_gemm(true, false, G, H, N, 1.0f, dg, s->hcont + (size_t)t * NH, 1.0f,
                     l->blobs[s->w_hc]->diff);
    crema_rec_gemm(false, false, N, H, G, 1.0f, dg, whc, 0.0f, s->tmp);
    for (int n = 0; n < N; n++)
      for (int k = 0; k < H; k++)
        s->dh[(size_t)n * H + k] = cont[(size_t)t * N + n] * s->tmp[(size_t)n * H + k];
  }
  const int TN = T * N;
  if (l->param_propagate_down[0])
    crema_rec_gemm(true, false, G, d->D, TN, 1.0f, s->dgates, bottom[0]->data, 1.0f, l->blobs[0]->diff);
  if (l->param_propagate_down[1])
    for (int r = 0; r < TN; r++) crema_axpy((size_t)G, 1.0f, s->dgates + (size_t)r * G, l->blobs[1]->diff);
  if (propagate_down[0])
    crema_rec_gemm(false, false, TN, d->D, G, 1.0f, s->dgates, l->blobs[0]->data, 0.0f, bottom[0]->diff);
  int b = 2;
  if (d->has_static) {
    for (int t = 0; t < T; t++) {
      const float *dg = s->dgates + (size_t)t * NG;
      if (l->param_propagate_down[2])
        crema_rec_gemm(true, false, G, d->Ds, N, 1.0f, dg, bottom[2]->data, 1.0f, l->blobs[2]->diff);
      if (propagate_down[2])
        crema_rec_gemm(false, false, N, d->Ds, G, 1.0f, dg, l->blobs[2]->data, t ? 1.0f : 0.0f,
                       bottom[2]->diff);
    }
    b = 3;
  }
  if (d->expose) {
    if (propagate_down[b]) crema_copy(NH, s->dh, bottom[b]->diff);
    if (propagate_down[b + 1]) crema_copy(NH, s->dc, bottom[b + 1]->diff);
  }
}

static void lstm_free(crema_layer *l) {
  lstm_state *s = l->state;
  if (!s) return;
  free(s->gates);
  free(s->cs);
  free(s->hs);
  free(s->hcont);
  free(s->dgates);
  free(s->dh);
  free(s->dc);
  free(s->tmp);
  free(s->sw);
  free(s->tcs);
  free(s);
}

const crema_layer_ops crema_lstm_ops = {
    .type = "LSTM",
    .min_bottoms = 2,
    .max_bottoms = 5,
    .min_tops = 1,
    .max_tops = 3,
    .setup = lstm_setup,
    .reshape = lstm_reshape,
    .forward = lstm_forward,
    .backward = lstm_backward,
    .free_state = lstm_free,
};
