/* recurrent_common.c -- see recurrent_common.h. */
#include "layers/recurrent_common.h"

#include <math.h>
#include <stdlib.h>

#include "engine/engine.h"
#include "layers/smooth_rows.h"

int crema_rec_check_arity(const crema_layer *l, int n_state, crema_error *err) {
  const Crema__RecurrentParameter *p = l->param->recurrent_param;
  if (!p || !p->num_output) return crema_fail(err, "recurrent_param { num_output: N } is required (N > 0)");
  if (p->num_output > 0x7fffffff) return crema_fail(err, "recurrent_param num_output is too large");
  const bool expose = p->expose_hidden;
  const int lo = 2 + (expose ? n_state : 0), hi = lo + 1;
  if (l->n_bottom < lo || l->n_bottom > hi)
    return crema_fail(err, "takes x, cont%s%s as bottoms (%d or %d), got %d",
                      expose ? ", [x_static], h_0" : " and optionally x_static",
                      expose ? (n_state == 2 ? ", c_0" : "") : "", lo, hi, l->n_bottom);
  const int tops = 1 + (expose ? n_state : 0);
  if (l->n_top != tops)
    return crema_fail(err, "takes %d top(s)%s, got %d", tops,
                      expose ? (n_state == 2 ? " (output, h_T, c_T with expose_hidden)"
                                             : " (output, h_T with expose_hidden)")
                             : "",
                      l->n_top);
  return 0;
}

int crema_rec_dims_read(const crema_layer *l, crema_blob *const *bottom, int n_state, crema_rec_dims *d,
                        crema_error *err) {
  const Crema__RecurrentParameter *p = l->param->recurrent_param;
  char a[256], b[256];
  d->H = (int)p->num_output;
  d->expose = p->expose_hidden;
  d->n_state = n_state;
  d->has_static = l->n_bottom > 2 + (d->expose ? n_state : 0);
  const crema_blob *x = bottom[0], *cont = bottom[1];
  if (x->num_axes < 2)
    return crema_fail(err, "x must be (T, N, ...), got %s", crema_blob_shape_string(x, a, sizeof a));
  d->T = x->shape[0];
  d->N = x->shape[1];
  const size_t D = crema_blob_count_range(x, 2, x->num_axes);
  if (D > 0x7fffffff) return crema_fail(err, "x has too many values per timestep");
  d->D = (int)D;
  if (cont->num_axes != 2 || cont->shape[0] != d->T || cont->shape[1] != d->N)
    return crema_fail(err, "cont must be (T, N) = (%d, %d) to match x %s, got %s", d->T, d->N,
                      crema_blob_shape_string(x, a, sizeof a), crema_blob_shape_string(cont, b, sizeof b));
  d->Ds = 0;
  if (d->has_static) {
    const crema_blob *s = bottom[2];
    if (s->num_axes < 1 || s->shape[0] != d->N)
      return crema_fail(err, "x_static must be (N, ...) with N = %d, got %s", d->N,
                        crema_blob_shape_string(s, a, sizeof a));
    d->Ds = (int)crema_blob_count_range(s, 1, s->num_axes);
  }
  if (d->expose)
    for (int k = 0; k < n_state; k++) {
      const crema_blob *h = bottom[2 + (d->has_static ? 1 : 0) + k];
      if (h->num_axes != 3 || h->shape[0] != 1 || h->shape[1] != d->N || h->shape[2] != d->H)
        return crema_fail(err, "the initial %s must be (1, %d, %d), got %s", k ? "c_0" : "h_0", d->N, d->H,
                          crema_blob_shape_string(h, a, sizeof a));
    }
  if (d->T < 1 || d->N < 1) return crema_fail(err, "x needs at least one timestep and one stream");
  return 0;
}

int crema_rec_grow(float **buf, size_t *cap, size_t n, crema_error *err) {
  if (n <= *cap) return 0;
  float *p = realloc(*buf, n * sizeof *p);
  if (!p) return crema_fail(err, "out of memory (%zu floats)", n);
  *buf = p;
  *cap = n;
  return 0;
}

void crema_rec_gemm(bool trans_a, bool trans_b, int M, int N, int K, float alpha, const float *A,
                    const float *B, float beta, float *C) {
  const int lda = trans_a ? M : K, ldb = trans_b ? K : N;
  if (crema_engine_winograd_wanted(0) && crema_gemm_prefers_onednn(trans_b, N))
    crema_gemm_cols_omp(trans_a, trans_b, M, N, K, alpha, A, lda, B, ldb, beta, C, N);
  else
    crema_gemm_ld(trans_a, trans_b, M, N, K, alpha, A, lda, B, ldb, beta, C, N);
}

void crema_lstm_cell(int H, float cont, const float *x, float *act, const float *c_prev, float *c, float *tc,
                     float *h) {
  const size_t n = (size_t)H;
  crema_smooth_rows(CREMA_SMOOTH_SIGMOID, 3 * n, x, 0.0f, 0.0f, act, NULL);
  crema_smooth_rows(CREMA_SMOOTH_TANH, n, x + 3 * n, 0.0f, 0.0f, act + 3 * n, NULL);
  const float *i = act, *o = act + 2 * n, *g = act + 3 * n;
  float *f = act + n;
  for (size_t k = 0; k < n; k++) {
    f[k] = cont == 0.0f ? 0.0f : cont * f[k];
    c[k] = f[k] * c_prev[k] + i[k] * g[k];
  }
  crema_smooth_rows(CREMA_SMOOTH_TANH, n, c, 0.0f, 0.0f, tc, NULL);
  for (size_t k = 0; k < n; k++) h[k] = o[k] * tc[k];
}

void crema_lstm_cell_backward(int H, const float *act, const float *tc, const float *c_prev, const float *dc,
                              const float *dh_top, const float *dh_rec, float *dc_prev, float *dx) {
  const size_t n = (size_t)H;
  for (size_t k = 0; k < n; k++) {
    const float i = act[k], f = act[n + k], o = act[2 * n + k], g = act[3 * n + k], t = tc[k];
    const float dh = dh_rec ? dh_top[k] + dh_rec[k] : dh_top[k];
    const float e = dc[k] + dh * o * (1.0f - t * t);
    if (dc_prev) dc_prev[k] = e * f; /* dc[k] read above: in place is fine */
    if (dx) {
      dx[k] = e * g * i * (1.0f - i);
      dx[n + k] = e * c_prev[k] * f * (1.0f - f);
      dx[2 * n + k] = dh * t * o * (1.0f - o);
      dx[3 * n + k] = e * i * (1.0f - g * g);
    }
  }
}
