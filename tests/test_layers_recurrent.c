/* test_layers_recurrent.c -- LSTMUnit, LSTM and RNN with Caffe's recurrent_param: forward
 * values against a hand-written loop over timesteps (in double), numerical gradient checks
 * (plain, with x_static, with expose_hidden, with sequence starts), one weight set for every
 * timestep, gradients that flow through time where cont is 1 and stop where it is 0, and an
 * LSTM net that learns to echo its input two steps later. */
#include <check.h>
#include <math.h>
#include <omp.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "support/run.h"
#include "layers/layer.h"
#include "net/net.h"
#include "support/gradcheck.h"
#include "support/layer_run.h"
#include "support/textproto.h"

enum { T = 4, N = 3, D = 5, H = 4, DS = 3 };

static const float CONT[T * N] = {0, 0, 0, 1, 1, 0,
                                  1, 1, 1, 0, 1, 1}; /* stream 2 restarts at t = 1, 0 at t = 3 */

static double sig(double x) { return 1.0 / (1.0 + exp(-x)); }

/* out (rows, cols) = W (rows, k) . v (k) */
static void matvec(const float *w, const double *v, int rows, int k, double *out) {
  for (int r = 0; r < rows; r++) {
    out[r] = 0;
    for (int j = 0; j < k; j++) out[r] += (double)w[r * k + j] * v[j];
  }
}

/* The LSTM of Caffe's unrolled net, step by step for each stream. blobs: W_xc, b_c,
 * [W_s], W_hc. Writes h (T, N, H) and the final h, c. */
static void ref_lstm(crema_layer *l, const float *x, const float *cont, const float *xs, const float *h0,
                     const float *c0, double *out, double *hT, double *cT) {
  const int ws = xs ? 2 : -1, whc = xs ? 3 : 2;
  for (int n = 0; n < N; n++) {
    double h[H], c[H];
    for (int k = 0; k < H; k++) {
      h[k] = h0 ? h0[n * H + k] : 0;
      c[k] = c0 ? c0[n * H + k] : 0;
    }
    for (int t = 0; t < T; t++) {
      const double ct = cont[t * N + n];
      double xv[D], hc[H], g[4 * H], a[4 * H];
      for (int j = 0; j < D; j++) xv[j] = x[(t * N + n) * D + j];
      for (int k = 0; k < H; k++) hc[k] = ct * h[k];
      matvec(l->blobs[0]->data, xv, 4 * H, D, g);
      matvec(l->blobs[whc]->data, hc, 4 * H, H, a);
      for (int k = 0; k < 4 * H; k++) g[k] += a[k] + l->blobs[1]->data[k];
      if (xs) {
        double sv[DS];
        for (int j = 0; j < DS; j++) sv[j] = xs[n * DS + j];
        matvec(l->blobs[ws]->data, sv, 4 * H, DS, a);
        for (int k = 0; k < 4 * H; k++) g[k] += a[k];
      }
      for (int k = 0; k < H; k++) {
        const double i = sig(g[k]), f = ct * sig(g[H + k]), o = sig(g[2 * H + k]), gg = tanh(g[3 * H + k]);
        c[k] = f * c[k] + i * gg;
        h[k] = o * tanh(c[k]);
        out[(t * N + n) * H + k] = h[k];
      }
    }
    for (int k = 0; k < H; k++) {
      if (hT) hT[n * H + k] = h[k];
      if (cT) cT[n * H + k] = c[k];
    }
  }
}

/* Caffe's RNN: h_t = tanh(W_xh x + b_h [+ W_s xs] + W_hh cont h), o_t = tanh(W_ho h_t + b_o). */
static void ref_rnn(crema_layer *l, const float *x, const float *cont, const float *xs, const float *h0,
                    double *out) {
  const int k0 = xs ? 3 : 2;
  for (int n = 0; n < N; n++) {
    double h[H];
    for (int k = 0; k < H; k++) h[k] = h0 ? h0[n * H + k] : 0;
    for (int t = 0; t < T; t++) {
      double xv[D], hc[H], p[H], a[H], o[H];
      for (int j = 0; j < D; j++) xv[j] = x[(t * N + n) * D + j];
      for (int k = 0; k < H; k++) hc[k] = cont[t * N + n] * h[k];
      matvec(l->blobs[0]->data, xv, H, D, p);
      matvec(l->blobs[k0]->data, hc, H, H, a);
      for (int k = 0; k < H; k++) p[k] += a[k] + l->blobs[1]->data[k];
      if (xs) {
        double sv[DS];
        for (int j = 0; j < DS; j++) sv[j] = xs[n * DS + j];
        matvec(l->blobs[2]->data, sv, H, DS, a);
        for (int k = 0; k < H; k++) p[k] += a[k];
      }
      for (int k = 0; k < H; k++) h[k] = tanh(p[k]);
      matvec(l->blobs[k0 + 1]->data, h, H, H, o);
      for (int k = 0; k < H; k++) out[(t * N + n) * H + k] = tanh(o[k] + l->blobs[k0 + 2]->data[k]);
    }
  }
}

#define LSTM_P                                                                                               \
  "recurrent_param { num_output: 4 weight_filler { type: 'uniform' min: -0.5 max: 0.5 } "                    \
  "bias_filler { type: 'uniform' min: -0.5 max: 0.5 } "

typedef struct bottoms {
  crema_blob *b[5];
  int n;
} bottoms;

static bottoms make_bottoms(bool with_static, bool expose, int n_state) {
  bottoms r = {{0}, 0};
  r.b[r.n++] = blob_of(3, (int[]){T, N, D});
  gradcheck_fill_gaussian(r.b[0], 1.0f, 1);
  r.b[r.n++] = blob_vals(2, (int[]){T, N}, CONT);
  if (with_static) {
    r.b[r.n] = blob_of(2, (int[]){N, DS});
    gradcheck_fill_gaussian(r.b[r.n++], 1.0f, 2);
  }
  if (expose)
    for (int k = 0; k < n_state; k++) {
      r.b[r.n] = blob_of(3, (int[]){1, N, H});
      gradcheck_fill_gaussian(r.b[r.n++], 0.5f, 3 + (uint64_t)k);
    }
  return r;
}

static void check_close(const float *got, const double *want, int n, const char *what) {
  for (int i = 0; i < n; i++)
    ck_assert_msg(fabs(got[i] - want[i]) <= 1e-5, "%s[%d]: %g, reference %g", what, i, (double)got[i],
                  want[i]);
}

START_TEST(lstm_forward_matches_loop) {
  for (int cfg = 0; cfg < 3; cfg++) {
    const bool st = cfg == 1, ex = cfg == 2;
    bottoms b = make_bottoms(st, ex, 2);
    char text[512];
    snprintf(text, sizeof text, "name: 'lstm' type: 'LSTM' " LSTM_P "%s }", ex ? "expose_hidden: true" : "");
    run r;
    run_setup(&r, text, b.n, b.b, ex ? 3 : 1);
    ck_assert_int_eq(r.l->n_blobs, st ? 4 : 3);
    run_forward(&r);
    double want[T * N * H], hT[N * H], cT[N * H];
    ref_lstm(r.l, b.b[0]->data, CONT, st ? b.b[2]->data : NULL, ex ? b.b[2]->data : NULL,
             ex ? b.b[3]->data : NULL, want, hT, cT);
    check_close(r.top[0]->data, want, T * N * H, "h");
    if (ex) {
      check_close(r.top[1]->data, hT, N * H, "h_T");
      check_close(r.top[2]->data, cT, N * H, "c_T");
    }
    run_free(&r);
    free_blobs(b.n, b.b);
  }
}
END_TEST

START_TEST(rnn_forward_matches_loop) {
  for (int cfg = 0; cfg < 3; cfg++) {
    const bool st = cfg == 1, ex = cfg == 2;
    bottoms b = make_bottoms(st, ex, 1);
    char text[512];
    snprintf(text, sizeof text, "name: 'rnn' type: 'RNN' " LSTM_P "%s }", ex ? "expose_hidden: true" : "");
    run r;
    run_setup(&r, text, b.n, b.b, ex ? 2 : 1);
    ck_assert_int_eq(r.l->n_blobs, st ? 6 : 5);
    run_forward(&r);
    double want[T * N * H];
    ref_rnn(r.l, b.b[0]->data, CONT, st ? b.b[2]->data : NULL, ex ? b.b[2]->data : NULL, want);
    check_close(r.top[0]->data, want, T * N * H, "o");
    run_free(&r);
    free_blobs(b.n, b.b);
  }
}
END_TEST

static void grad_recurrent(const char *type, int n_state) {
  for (int cfg = 0; cfg < 3; cfg++) {
    const bool st = cfg == 1, ex = cfg == 2;
    bottoms b = make_bottoms(st, ex, n_state);
    char text[512];
    snprintf(text, sizeof text, "name: 'r' type: '%s' " LSTM_P "%s }", type, ex ? "expose_hidden: true" : "");
    bool check[5] = {true, false, true, true, true}; /* never cont */
    Crema__LayerParameter *p = test_layer_param(text);
    gradcheck_opts o = gradcheck_defaults();
    o.threshold = 2e-3f;
    gradcheck_layer(p, b.n, b.b, ex ? 1 + n_state : 1, check, &o);
    crema_message_free(p);
    free_blobs(b.n, b.b);
  }
}

START_TEST(lstm_gradient) { grad_recurrent("LSTM", 2); }
END_TEST

START_TEST(rnn_gradient) { grad_recurrent("RNN", 1); }
END_TEST

START_TEST(lstm_unit_values_and_gradient) {
  crema_blob *b[] = {blob_of(3, (int[]){1, N, H}), blob_of(3, (int[]){1, N, 4 * H}),
                     blob_vals(2, (int[]){1, N}, (const float[]){1, 0, 0.5f})}; /* cont scales f */
  gradcheck_fill_gaussian(b[0], 1.0f, 5);
  gradcheck_fill_gaussian(b[1], 1.0f, 6);
  run r;
  run_setup(&r, "name: 'u' type: 'LSTMUnit'", 3, b, 2);
  run_forward(&r);
  for (int n = 0; n < N; n++)
    for (int k = 0; k < H; k++) {
      const float *x = b[1]->data + n * 4 * H;
      const double i = sig(x[k]), f = b[2]->data[n] * sig(x[H + k]), o = sig(x[2 * H + k]),
                   g = tanh(x[3 * H + k]);
      const double c = f * b[0]->data[n * H + k] + i * g;
      ck_assert_double_eq_tol(r.top[0]->data[n * H + k], c, 1e-6);
      ck_assert_double_eq_tol(r.top[1]->data[n * H + k], o * tanh(c), 1e-6);
    }
  run_free(&r);
  /* Caffe's backward takes f (1 - f) for the sigmoid's slope, right only where cont is 0 or 1 */
  b[2]->data[2] = 1.0f;
  Crema__LayerParameter *p = test_layer_param("name: 'u' type: 'LSTMUnit'");
  gradcheck_layer(p, 3, b, 2, (const bool[]){true, true, false}, NULL);
  crema_message_free(p);
  free_blobs(3, b);
}
END_TEST

/* Longer sequences use the same weights (the parameter blobs do not depend on T); the
 * gradient of the last output reaches the first input through time when cont stays 1, and
 * is exactly 0 for inputs before a sequence start (cont 0). */
START_TEST(weights_shared_and_gradient_through_cont) {
  const char *text = "name: 'lstm' type: 'LSTM' " LSTM_P "}";
  for (int restart = 0; restart < 2; restart++) {
    crema_blob *b[] = {blob_of(3, (int[]){6, 1, 2}), blob_of(2, (int[]){6, 1})};
    gradcheck_fill_gaussian(b[0], 1.0f, 9);
    for (int t = 0; t < 6; t++) b[1]->data[t] = t == 0 || (restart && t == 3) ? 0.0f : 1.0f;
    run r;
    run_setup(&r, text, 2, b, 1);
    ck_assert_int_eq(r.l->n_blobs, 3);
    ck_assert_int_eq(r.l->blobs[0]->shape[0], 16);
    ck_assert_int_eq(r.l->blobs[0]->shape[1], 2);
    ck_assert_int_eq(r.l->blobs[2]->shape[1], 4);
    run_forward(&r);
    memset(r.top[0]->diff, 0, r.top[0]->count * sizeof(float));
    for (int k = 0; k < H; k++) r.top[0]->diff[5 * H + k] = 1.0f; /* only the last output */
    for (int i = 0; i < r.l->n_blobs; i++) crema_blob_zero_diff(r.l->blobs[i]);
    crema_layer_backward(r.l, r.top, (const bool[]){true, false}, b);
    double before = 0, after = 0;
    for (int t = 0; t < 6; t++)
      for (int j = 0; j < 2; j++) {
        if (t < 3)
          before += fabs(b[0]->diff[t * 2 + j]);
        else
          after += fabs(b[0]->diff[t * 2 + j]);
      }
    ck_assert_msg(after > 0, "no gradient at the last steps");
    if (restart)
      ck_assert_msg(before == 0.0, "gradient %g crossed a sequence start (cont 0)", before);
    else
      ck_assert_msg(before > 1e-6, "gradient did not flow back through time (%g)", before);
    /* W_hc's gradient sums contributions of several timesteps: not zero. */
    ck_assert_double_gt(crema_blob_asum_diff(r.l->blobs[2]), 0.0);
    run_free(&r);
    free_blobs(2, b);
  }
}
END_TEST

/* An LSTM net learns to echo a random +-1 input two steps later (a task no feed-forward net
 * can do: the target is not a function of the current input). */
START_TEST(lstm_learns_echo) {
  enum { ET = 12, EN = 16, DELAY = 2 };
  const char *text =
      "layer { name: 'x' type: 'Input' top: 'x' input_param { shape { dim: 12 dim: 16 dim: 1 } } }"
      "layer { name: 'cont' type: 'Input' top: 'cont' input_param { shape { dim: 12 dim: 16 } } }"
      "layer { name: 'y' type: 'Input' top: 'y' input_param { shape { dim: 12 dim: 16 dim: 1 } } }"
      "layer { name: 'lstm' type: 'LSTM' bottom: 'x' bottom: 'cont' top: 'h' recurrent_param { num_output: "
      "16 "
      "  weight_filler { type: 'uniform' min: -0.3 max: 0.3 } bias_filler { type: 'constant' value: 0 } } }"
      "layer { name: 'fc' type: 'InnerProduct' bottom: 'h' top: 'out' inner_product_param { num_output: 1 "
      "axis: 2 "
      "  weight_filler { type: 'gaussian' std: 0.1 } } }"
      "layer { name: 'loss' type: 'EuclideanLoss' bottom: 'out' bottom: 'y' top: 'loss' }";
  Crema__NetParameter *np = test_net_param(text);
  crema_net_options opt = {.phase = CREMA__PHASE__TRAIN, .seed = 5};
  crema_net *net;
  crema_error err;
  ck_assert_msg(crema_net_build(np, &opt, &net, &err) == 0, "%s", err.msg);
  crema_blob *x = crema_net_blob_by_name(net, "x"), *cont = crema_net_blob_by_name(net, "cont"),
             *y = crema_net_blob_by_name(net, "y");
  crema_rng rng;
  crema_rng_seed(&rng, 11, 0);
  /* Adam by hand on every parameter blob. */
  const int np_ = crema_net_num_params(net);
  float **m = calloc((size_t)np_, sizeof *m), **v = calloc((size_t)np_, sizeof *v);
  for (int i = 0; i < np_; i++) {
    m[i] = calloc(crema_net_param_at(net, i)->blob->count, sizeof(float));
    v[i] = calloc(crema_net_param_at(net, i)->blob->count, sizeof(float));
  }
  double first = 0, last = 0;
  const int iters = 400;
  for (int it = 1; it <= iters; it++) {
    for (int t = 0; t < ET; t++)
      for (int n = 0; n < EN; n++) {
        x->data[t * EN + n] = crema_rng_bernoulli(&rng, 0.5f) ? 1.0f : -1.0f;
        cont->data[t * EN + n] = t == 0 ? 0.0f : 1.0f;
        y->data[t * EN + n] = t >= DELAY ? x->data[(t - DELAY) * EN + n] : 0.0f;
      }
    float loss;
    ck_assert_msg(crema_net_forward(net, &loss, &err) == 0, "%s", err.msg);
    if (it <= 10) first += loss / 10;
    if (it > iters - 10) last += loss / 10;
    crema_net_clear_param_diffs(net);
    crema_net_backward(net);
    const float lr = 0.01f, b1 = 0.9f, b2 = 0.999f;
    const float corr = sqrtf(1.0f - powf(b2, (float)it)) / (1.0f - powf(b1, (float)it));
    for (int i = 0; i < np_; i++) {
      crema_blob *w = crema_net_param_at(net, i)->blob;
      for (size_t k = 0; k < w->count; k++) {
        m[i][k] = b1 * m[i][k] + (1 - b1) * w->diff[k];
        v[i][k] = b2 * v[i][k] + (1 - b2) * w->diff[k] * w->diff[k];
        w->data[k] -= lr * corr * m[i][k] / (sqrtf(v[i][k]) + 1e-8f);
      }
    }
  }
  fprintf(stderr, "LSTM echo (delay %d): loss %.4f -> %.4f\n", DELAY, first, last);
  /* Predicting 0 for every step costs 0.5 * (ET - DELAY) / ET * ... per sample: about 5 here. */
  ck_assert_msg(last < 0.05 * first, "LSTM did not learn to echo: loss %g -> %g", first, last);
  /* And the outputs have the right sign at the delayed steps. */
  const crema_blob *out = crema_net_blob_by_name(net, "out");
  int right = 0, total = 0;
  for (int t = DELAY; t < ET; t++)
    for (int n = 0; n < EN; n++, total++) right += (out->data[t * EN + n] > 0) == (y->data[t * EN + n] > 0);
  ck_assert_int_eq(right, total);
  for (int i = 0; i < np_; i++) {
    free(m[i]);
    free(v[i]);
  }
  free(m);
  free(v);
  crema_net_free(net);
  crema_message_free(np);
}
END_TEST

START_TEST(recurrent_errors) {
  bottoms b = make_bottoms(false, false, 2);
  run r;
  crema_error err;
  ck_assert_int_eq(run_try(&r, "name: 'l' type: 'LSTM'", b.n, b.b, 1, &err), -1);
  ck_assert_msg(strstr(err.msg, "num_output"), "%s", err.msg);
  run_free(&r);
  crema_blob *bad[] = {b.b[0], blob_of(2, (int[]){T, N + 1})};
  ck_assert_int_eq(run_try(&r, "name: 'l' type: 'LSTM' recurrent_param { num_output: 2 }", 2, bad, 1, &err),
                   -1);
  ck_assert_msg(strstr(err.msg, "cont must be (T, N) = (4, 3)"), "%s", err.msg);
  run_free(&r);
  ck_assert_int_eq(run_try(&r, "name: 'l' type: 'LSTM' recurrent_param { num_output: 2 expose_hidden: true }",
                           2, b.b, 3, &err),
                   -1);
  ck_assert_msg(strstr(err.msg, "h_0"), "%s", err.msg);
  run_free(&r);
  crema_blob_free(bad[1]);
  free_blobs(b.n, b.b);
}
END_TEST

/* LSTM and RNN large enough for their parallel paths (each step's products split by columns
 * over two threads, 70 streams of 64 cells over the threads) give the one-thread values:
 * outputs, the input's gradient and the recurrent weights' gradient. */
START_TEST(recurrent_threads_agree) {
  enum { BT = 3, BN = 70, BD = 16, BH = 64 };
#define BIG_P                                                                                                \
  "recurrent_param { num_output: 64 weight_filler { type: 'uniform' min: -0.2 max: 0.2 } "                   \
  "bias_filler { type: 'uniform' min: -0.5 max: 0.5 } }"
  const char *texts[] = {"name: 'l' type: 'LSTM' " BIG_P, "name: 'r' type: 'RNN' " BIG_P};
  const int before = omp_get_max_threads();
  for (int layer = 0; layer < 2; layer++) {
    float *got[2][3] = {{NULL}};
    size_t counts[3] = {0};
    for (int pass = 0; pass < 2; pass++) {
      omp_set_num_threads(pass ? 2 : 1);
      crema_blob *b[2] = {blob_of(3, (int[]){BT, BN, BD}), blob_of(2, (int[]){BT, BN})};
      gradcheck_fill_gaussian(b[0], 1.0f, 9);
      for (int i = 0; i < BT * BN; i++) b[1]->data[i] = i < BN || i % 7 == 0 ? 0.0f : 1.0f;
      run r;
      run_setup(&r, texts[layer], 2, b, 1);
      run_forward(&r);
      for (size_t i = 0; i < r.top[0]->count; i++) r.top[0]->diff[i] = (float)(i % 5) * 0.25f - 0.5f;
      crema_layer_backward(r.l, r.top, (const bool[]){true, false}, b);
      const crema_blob *w = r.l->blobs[r.l->n_blobs - (layer ? 3 : 1)]; /* W_hc, W_hh */
      const float *src[3] = {r.top[0]->data, b[0]->diff, w->diff};
      const size_t n[3] = {r.top[0]->count, b[0]->count, w->count};
      for (int k = 0; k < 3; k++) {
        got[pass][k] = malloc(n[k] * sizeof(float));
        memcpy(got[pass][k], src[k], n[k] * sizeof(float));
        counts[k] = n[k];
      }
      run_free(&r);
      free_blobs(2, b);
    }
    omp_set_num_threads(before);
    const char *what[] = {"output", "input gradient", "recurrent weight gradient"};
    for (int k = 0; k < 3; k++) {
      for (size_t i = 0; i < counts[k]; i++)
        ck_assert_msg(fabsf(got[0][k][i] - got[1][k][i]) <= 1e-5f * (1.0f + fabsf(got[0][k][i])),
                      "%s: %s[%zu] %g on one thread, %g on two", texts[layer], what[k], i, got[0][k][i],
                      got[1][k][i]);
      free(got[0][k]);
      free(got[1][k]);
    }
  }
}
END_TEST

int main(void) {
  Suite *s = suite_create("layers_recurrent");
  TCase *tc = tcase_create("core");
  tcase_set_timeout(tc, 300);
  tcase_add_test(tc, lstm_forward_matches_loop);
  tcase_add_test(tc, rnn_forward_matches_loop);
  tcase_add_test(tc, lstm_gradient);
  tcase_add_test(tc, rnn_gradient);
  tcase_add_test(tc, lstm_unit_values_and_gradient);
  tcase_add_test(tc, weights_shared_and_gradient_through_cont);
  tcase_add_test(tc, lstm_learns_echo);
  tcase_add_test(tc, recurrent_errors);
  tcase_add_test(tc, recurrent_threads_agree);
  suite_add_tcase(s, tc);
  return test_run_suite(s);
}
