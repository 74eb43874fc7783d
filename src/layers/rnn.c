/* rnn.c -- Caffe's "RNN" (recurrent_param; bottoms and tops as in recurrent_common.h), with
 * hidden and output size both num_output = H, as in Caffe.
 * Parameters, in Caffe's order: W_xh (H, D), b_h (H), [W_xh_static (H, Ds)], W_hh (H, H),
 * W_ho (H, H), b_o (H). For t = 1 .. T (h_0 = 0 or the exposed bottom):
 *   h_t = tanh(W_xh x_t + b_h [+ W_xh_static x_static] + W_hh (cont_t * h_{t-1}))
 *   o_t = tanh(W_ho h_t + b_o)
 * Top: o_1 .. o_T as (T, N, H); with expose_hidden also h_T (1, N, H). Backward through
 * time; every timestep's gradient accumulates into the one set of weights. */
#include <stdlib.h>
#include <string.h>

#include "layers/layer.h"
#include "layers/recurrent_common.h"
#include "layers/smooth_rows.h"
#include "tensor/math.h"

typedef struct rnn_state {
  crema_rec_dims d;
  int w_hh, w_ho, b_o; /* blob indices */
  float *pre, *hs, *hcont, *dpre, *dho, *dh, *tmp, *sw;
  size_t pre_cap, hs_cap, hcont_cap, dpre_cap, dho_cap, dh_cap, tmp_cap, sw_cap;
} rnn_state;

static int rnn_setup(crema_layer *l, crema_blob *const *bottom, crema_blob *const *top, crema_error *err) {
  (void)top;
  if (crema_rec_check_arity(l, 1, err)) return -1;
  rnn_state *s = calloc(1, sizeof *s);
  if (!s) return crema_fail(err, "out of memory");
  l->state = s;
  if (crema_rec_dims_read(l, bottom, 1, &s->d, err)) return -1;
  const Crema__RecurrentParameter *p = l->param->recurrent_param;
  const int H = s->d.H;
  if (crema_layer_add_blob(l, 0, 2, (int[]){H, s->d.D}, p->weight_filler, err) ||
      crema_layer_add_blob(l, 1, 1, &H, p->bias_filler, err))
    return -1;
  int k = 2;
  if (s->d.has_static && crema_layer_add_blob(l, k++, 2, (int[]){H, s->d.Ds}, p->weight_filler, err))
    return -1;
  s->w_hh = k;
  s->w_ho = k + 1;
  s->b_o = k + 2;
  if (crema_layer_add_blob(l, s->w_hh, 2, (int[]){H, H}, p->weight_filler, err) ||
      crema_layer_add_blob(l, s->w_ho, 2, (int[]){H, H}, p->weight_filler, err))
    return -1;
  return crema_layer_add_blob(l, s->b_o, 1, &H, p->bias_filler, err);
}

static int rnn_reshape(crema_layer *l, crema_blob *const *bottom, crema_blob *const *top, crema_error *err) {
  rnn_state *s = l->state;
  crema_rec_dims d;
  if (crema_rec_dims_read(l, bottom, 1, &d, err)) return -1;
  if (d.D != s->d.D || d.Ds != s->d.Ds)
    return crema_fail(err, "the input size changed from %d to %d values per step; the weights are fixed",
                      s->d.D, d.D);
  s->d = d;
  const size_t TNH = (size_t)d.T * d.N * d.H, NH = (size_t)d.N * d.H;
  if (crema_rec_grow(&s->pre, &s->pre_cap, TNH, err) || crema_rec_grow(&s->hs, &s->hs_cap, TNH + NH, err) ||
      crema_rec_grow(&s->hcont, &s->hcont_cap, TNH, err) ||
      crema_rec_grow(&s->dpre, &s->dpre_cap, TNH, err) || crema_rec_grow(&s->dho, &s->dho_cap, TNH, err) ||
      crema_rec_grow(&s->dh, &s->dh_cap, NH, err) || crema_rec_grow(&s->tmp, &s->tmp_cap, TNH, err) ||
      crema_rec_grow(&s->sw, &s->sw_cap, NH, err))
    return -1;
  if (crema_blob_reshape(top[0], 3, (int[]){d.T, d.N, d.H}, err)) return -1;
  return d.expose ? crema_blob_reshape(top[1], 3, (int[]){1, d.N, d.H}, err) : 0;
}

static int rnn_forward(crema_layer *l, crema_blob *const *bottom, crema_blob *const *top, crema_error *err) {
  (void)err;
  rnn_state *s = l->state;
  const crema_rec_dims *d = &s->d;
  const int T = d->T, N = d->N, H = d->H;
  const size_t NH = (size_t)N * H, TN = (size_t)T * N;
  const float *cont = bottom[1]->data;
  crema_rec_gemm(false, true, T * N, H, d->D, 1.0f, bottom[0]->data, l->blobs[0]->data, 0.0f, s->pre);
  for (size_t r = 0; r < TN; r++) crema_axpy((size_t)H, 1.0f, l->blobs[1]->data, s->pre + r * H);
  if (d->has_static) {
    crema_rec_gemm(false, true, N, H, d->Ds, 1.0f, bottom[2]->data, l->blobs[2]->data, 0.0f, s->sw);
    for (int t = 0; t < T; t++) crema_axpy(NH, 1.0f, s->sw, s->pre + (size_t)t * NH);
  }
  if (d->expose)
    crema_copy(NH, bottom[2 + (d->has_static ? 1 : 0)]->data, s->hs);
  else
    crema_set(NH, 0.0f, s->hs);
  for (int t = 0; t < T; t++) {
    float *hc = s->hcont + (size_t)t * NH, *p = s->pre + (size_t)t * NH, *h = s->hs + (size_t)(t + 1) * NH;
    const float *hp = s->hs + (size_t)t * NH;
    for (int n = 0; n < N; n++)
      for (int k = 0; k < H; k++) hc[(size_t)n * H + k] = cont[(size_t)t * N + n] * hp[(size_t)n * H + k];
    crema_rec_gemm(false, true, N, H, H, 1.0f, hc, l->blobs[s->w_hh]->data, 1.0f, p);
    crema_smooth_rows(CREMA_SMOOTH_TANH, NH, p, 0.0f, 0.0f, h, NULL);
  }
  float *o = top[0]->data;
  crema_rec_gemm(false, true, T * N, H, H, 1.0f, s->hs + NH, l->blobs[s->w_ho]->data, 0.0f, o);
  for (size_t r = 0; r < TN; r++) crema_axpy((size_t)H, 1.0f, l->blobs[s->b_o]->data, o + r * H);
  crema_smooth_rows(CREMA_SMOOTH_TANH, TN * H, o, 0.0f, 0.0f, o, NULL);
  if (d->expose) crema_copy(NH, s->hs + (size_t)T * NH, top[1]->data);
  return 0;
}

static void rnn_backward(crema_layer *l, crema_blob *const *top, const bool *propagate_down,
                         crema_blob *const *bottom) {
  rnn_state *s = l->state;
  const crema_rec_dims *d = &s->d;
  const int T = d->T, N = d->N, H = d->H, TN = T * N;
  const size_t NH = (size_t)N * H, TNH = (size_t)TN * H;
  const float *cont = bottom[1]->data, *o = top[0]->data, *dout = top[0]->diff;
  /* Output layer: d(W_ho h + b_o) = d o * (1 - o^2), for every timestep at once. */
  for (size_t k = 0; k < TNH; k++) s->dho[k] = dout[k] * (1.0f - o[k] * o[k]);
  if (l->param_propagate_down[s->w_ho])
    crema_rec_gemm(true, false, H, H, TN, 1.0f, s->dho, s->hs + NH, 1.0f, l->blobs[s->w_ho]->diff);
  if (l->param_propagate_down[s->b_o])
    for (int r = 0; r < TN; r++) crema_axpy((size_t)H, 1.0f, s->dho + (size_t)r * H, l->blobs[s->b_o]->diff);
  /* d h from o */
  crema_rec_gemm(false, false, TN, H, H, 1.0f, s->dho, l->blobs[s->w_ho]->data, 0.0f, s->tmp);
  if (d->expose)
    crema_copy(NH, top[1]->diff, s->dh);
  else
    crema_set(NH, 0.0f, s->dh);
  for (int t = T - 1; t >= 0; t--) {
    const float *h = s->hs + (size_t)(t + 1) * NH, *dho = s->tmp + (size_t)t * NH;
    float *dp = s->dpre + (size_t)t * NH;
    for (size_t k = 0; k < NH; k++) dp[k] = (dho[k] + s->dh[k]) * (1.0f - h[k] * h[k]);
    if (l->param_propagate_down[s->w_hh])
      crema_rec_gemm(true, false, H, H, N, 1.0f, dp, s->hcont + (size_t)t * NH, 1.0f,
                     l->blobs[s->w_hh]->diff);
    crema_rec_gemm(false, false, N, H, H, 1.0f, dp, l->blobs[s->w_hh]->data, 0.0f, s->dh);
    for (int n = 0; n < N; n++)
      for (int k = 0; k < H; k++) s->dh[(size_t)n * H + k] *= cont[(size_t)t * N + n];
  }
  if (l->param_propagate_down[0])
    crema_rec_gemm(true, false, H, d->D, TN, 1.0f, s->dpre, bottom[0]->data, 1.0f, l->blobs[0]->diff);
  if (l->param_propagate_down[1])
    for (int r = 0; r < TN; r++) crema_axpy((size_t)H, 1.0f, s->dpre + (size_t)r * H, l->blobs[1]->diff);
  if (propagate_down[0])
    crema_rec_gemm(false, false, TN, d->D, H, 1.0f, s->dpre, l->blobs[0]->data, 0.0f, bottom[0]->diff);
  int b = 2;
  if (d->has_static) {
    for (int t = 0; t < T; t++) {
      const float *dp = s->dpre + (size_t)t * NH;
      if (l->param_propagate_down[2])
        crema_rec_gemm(true, false, H, d->Ds, N, 1.0f, dp, bottom[2]->data, 1.0f, l->blobs[2]->diff);
      if (propagate_down[2])
        crema_rec_gemm(false, false, N, d->Ds, H, 1.0f, dp, l->blobs[2]->data, t ? 1.0f : 0.0f,
                       bottom[2]->diff);
    }
    b = 3;
  }
  if (d->expose && propagate_down[b]) crema_copy(NH, s->dh, bottom[b]->diff);
}

static void rnn_free(crema_layer *l) {
  rnn_state *s = l->state;
  if (!s) return;
  free(s->pre);
  free(s->hs);
  free(s->hcont);
  free(s->dpre);
  free(s->dho);
  free(s->dh);
  free(s->tmp);
  free(s->sw);
  free(s);
}

const crema_layer_ops crema_rnn_ops = {
    .type = "RNN",
    .min_bottoms = 2,
    .max_bottoms = 4,
    .min_tops = 1,
    .max_tops = 2,
    .setup = rnn_setup,
    .reshape = rnn_reshape,
    .forward = rnn_forward,
    .backward = rnn_backward,
    .free_state = rnn_free,
};
