/* test_solver.c -- the update rules against hand computations on a tiny problem.
 *
 * Two parameters (3 and 2 elements) with lr_mult/decay_mult, gradients from a fixed
 * quadratic loss 0.5 * sum (w - t)^2 (g = w - t), several steps of each rule; the expected
 * values come from a plain double-precision transcription of the formulas, and the first
 * SGD steps also from numbers worked out by hand. */
#include <check.h>
#include <math.h>
#include <omp.h>
#include <stdlib.h>
#include <string.h>

#include "support/run.h"
#include "solver/update.h"

#define N0 3
#define N1 2

static const float T0[N0] = {0.5f, -1.0f, 2.0f};
static const float T1[N1] = {0.0f, 3.0f};

typedef struct problem {
  float w0[N0], w1[N1], d0[N0], d1[N1];
  float h[2][N0 + N1];
  crema_update_param p[2];
} problem;

static void problem_init(problem *pb, float lr_mult1, float decay_mult1) {
  memset(pb, 0, sizeof *pb);
  const float w0[N0] = {1.0f, -2.0f, 0.0f}, w1[N1] = {0.25f, -0.5f};
  memcpy(pb->w0, w0, sizeof w0);
  memcpy(pb->w1, w1, sizeof w1);
  pb->p[0] = (crema_update_param){pb->w0, pb->d0, N0, 1.0f, 1.0f, {pb->h[0], pb->h[1]}};
  pb->p[1] = (crema_update_param){pb->w1, pb->d1, N1, lr_mult1, decay_mult1, {pb->h[0] + N0, pb->h[1] + N0}};
}

/* Gradient accumulated over iter_size passes (the net sums; the solver divides). */
static void problem_grad(problem *pb, int iter_size) {
  for (int i = 0; i < N0; i++) pb->d0[i] = (float)iter_size * (pb->w0[i] - T0[i]);
  for (int i = 0; i < N1; i++) pb->d1[i] = (float)iter_size * (pb->w1[i] - T1[i]);
}

/* The same in double, written straight from the formulas. */
typedef struct ref {
  double w[N0 + N1], h1[N0 + N1], h2[N0 + N1];
  double lr_mult[N0 + N1], decay_mult[N0 + N1];
} ref;

static void ref_init(ref *r, double lr_mult1, double decay_mult1) {
  memset(r, 0, sizeof *r);
  const double w[] = {1.0, -2.0, 0.0, 0.25, -0.5};
  for (int i = 0; i < N0 + N1; i++) {
    r->w[i] = w[i];
    r->lr_mult[i] = i < N0 ? 1.0 : lr_mult1;
    r->decay_mult[i] = i < N0 ? 1.0 : decay_mult1;
  }
}

static void ref_step(ref *r, const char *type, double rate, const crema_update_hparams *hp, double wd, int l1,
                     double clip, int iter) {
  double g[N0 + N1], ss = 0;
  for (int i = 0; i < N0 + N1; i++) {
    g[i] = r->w[i] - (i < N0 ? T0[i] : T1[i - N0]);
    ss += g[i] * g[i];
  }
  const double scale = (clip >= 0 && sqrt(ss) > clip) ? clip / sqrt(ss) : 1.0;
  const double m = hp->momentum, m2 = hp->momentum2, eps = hp->delta;
  for (int i = 0; i < N0 + N1; i++) {
    if (r->lr_mult[i] == 0) continue;
    double d = g[i] * scale;
    const double decay = wd * r->decay_mult[i];
    d += l1 ? decay * ((r->w[i] > 0) - (r->w[i] < 0)) : decay * r->w[i];
    const double lr = rate * r->lr_mult[i];
    double u;
    if (!strcmp(type, "SGD")) {
      r->h1[i] = m * r->h1[i] + lr * d;
      u = r->h1[i];
    } else if (!strcmp(type, "Nesterov")) {
      const double old = r->h1[i];
      r->h1[i] = m * r->h1[i] + lr * d;
      u = (1 + m) * r->h1[i] - m * old;
    } else if (!strcmp(type, "AdaGrad")) {
      r->h1[i] += d * d;
      u = lr * d / (sqrt(r->h1[i]) + eps);
    } else if (!strcmp(type, "RMSProp")) {
      r->h1[i] = hp->rms_decay * r->h1[i] + (1 - hp->rms_decay) * d * d;
      u = lr * d / (sqrt(r->h1[i]) + eps);
    } else if (!strcmp(type, "AdaDelta")) {
      r->h1[i] = m * r->h1[i] + (1 - m) * d * d;
      const double v = d * sqrt((r->h2[i] + eps) / (r->h1[i] + eps));
      r->h2[i] = m * r->h2[i] + (1 - m) * v * v;
      u = lr * v;
    } else { /* Adam */
      r->h1[i] = m * r->h1[i] + (1 - m) * d;
      r->h2[i] = m2 * r->h2[i] + (1 - m2) * d * d;
      const int t = iter + 1;
      u = lr * sqrt(1 - pow(m2, t)) / (1 - pow(m, t)) * r->h1[i] / (sqrt(r->h2[i]) + eps);
    }
    r->w[i] -= u;
  }
}

static void run_rule(const char *type, float rate, crema_update_hparams hp, float wd, int l1, float clip,
                     int iter_size, float lr_mult1, float decay_mult1) {
  const crema_update_rule *rule = crema_update_rule_lookup(type);
  ck_assert_ptr_nonnull(rule);
  crema_update_config c = {rule, hp, wd, l1 ? CREMA_REG_L1 : CREMA_REG_L2, clip, iter_size};
  problem pb;
  ref r;
  problem_init(&pb, lr_mult1, decay_mult1);
  ref_init(&r, lr_mult1, decay_mult1);
  for (int it = 0; it < 6; it++) {
    problem_grad(&pb, iter_size);
    const double ss = crema_update_grad_sumsq(pb.p, 2);
    crema_update_step(&c, pb.p, 2, ss, rate, it, NULL);
    ref_step(&r, type, rate, &hp, wd, l1, clip < 0 ? -1.0 : (double)clip / iter_size, it);
    const float *w[2] = {pb.w0, pb.w1};
    for (int i = 0; i < N0 + N1; i++) {
      const float got = i < N0 ? w[0][i] : w[1][i - N0];
      ck_assert_msg(fabs(got - r.w[i]) <= 2e-5 * fmax(1.0, fabs(r.w[i])),
                    "%s step %d element %d: got %.8g expected %.8g", type, it, i, (double)got, r.w[i]);
    }
  }
}

static const crema_update_hparams HP = {
    .momentum = 0.9f, .momentum2 = 0.999f, .delta = 1e-8f, .rms_decay = 0.98f};

START_TEST(test_sgd_by_hand) {
  /* w = 1, t = 0.5: g = 0.5; lr 0.1, momentum 0.9, L2 decay 0.01.
   * step 0: d = 0.5 + 0.01 * 1 = 0.51, h = 0.051, w = 0.949
   * step 1: g = 0.449, d = 0.449 + 0.00949 = 0.45849, h = 0.9 * 0.051 + 0.045849 = 0.091749,
   *         w = 0.949 - 0.091749 = 0.857251 */
  problem pb;
  problem_init(&pb, 1.0f, 1.0f);
  crema_update_config c = {&crema_update_sgd, HP, 0.01f, CREMA_REG_L2, -1.0f, 1};
  problem_grad(&pb, 1);
  crema_update_step(&c, pb.p, 1, crema_update_grad_sumsq(pb.p, 1), 0.1f, 0, NULL);
  ck_assert_float_eq_tol(pb.w0[0], 0.949f, 1e-6f);
  ck_assert_float_eq_tol(pb.h[0][0], 0.051f, 1e-6f);
  problem_grad(&pb, 1);
  crema_update_step(&c, pb.p, 1, crema_update_grad_sumsq(pb.p, 1), 0.1f, 1, NULL);
  ck_assert_float_eq_tol(pb.w0[0], 0.857251f, 1e-6f);
  /* w = 0 with L1: sign(0) = 0, so only the gradient moves it: g = -2, h = -0.2, w = 0.2. */
  problem_init(&pb, 1.0f, 1.0f);
  c.regularization = CREMA_REG_L1;
  problem_grad(&pb, 1);
  crema_update_step(&c, pb.p, 1, crema_update_grad_sumsq(pb.p, 1), 0.1f, 0, NULL);
  ck_assert_float_eq_tol(pb.w0[2], 0.2f, 1e-6f);
  /* w = -2, t = -1: g = -1, L1 adds 0.01 * -1: d = -1.01, w = -2 + 0.101 = -1.899 */
  ck_assert_float_eq_tol(pb.w0[1], -1.899f, 1e-6f);
}
END_TEST

START_TEST(test_adam_by_hand) {
  /* First Adam step: m = 0.1 g, v = 0.001 g^2, correction sqrt(0.001)/0.1, so the update is
   * lr * sign(g) (up to eps): w = 1 - 0.01 = 0.99 for g = 0.5. */
  problem pb;
  problem_init(&pb, 1.0f, 1.0f);
  crema_update_config c = {&crema_update_adam, HP, 0.0f, CREMA_REG_L2, -1.0f, 1};
  problem_grad(&pb, 1);
  crema_update_step(&c, pb.p, 1, crema_update_grad_sumsq(pb.p, 1), 0.01f, 0, NULL);
  ck_assert_float_eq_tol(pb.w0[0], 0.99f, 1e-6f);
  ck_assert_float_eq_tol(pb.w0[1], -1.99f, 1e-6f);
  ck_assert_float_eq_tol(pb.h[0][0], 0.05f, 1e-7f);
  ck_assert_float_eq_tol(pb.h[1][0], 0.00025f, 1e-8f);
}
END_TEST

START_TEST(test_rules_plain) {
  const char *types[] = {"SGD", "Nesterov", "AdaGrad", "RMSProp", "AdaDelta", "Adam"};
  for (int k = 0; k < 6; k++)
    run_rule(types[k], !strcmp(types[k], "AdaDelta") ? 1.0f : 0.05f, HP, 0, 0, -1, 1, 1, 1);
}
END_TEST

START_TEST(test_rules_decay_mults) {
  const char *types[] = {"SGD", "Nesterov", "AdaGrad", "RMSProp", "AdaDelta", "Adam"};
  for (int k = 0; k < 6; k++) {
    const float rate = !strcmp(types[k], "AdaDelta") ? 1.0f : 0.05f;
    run_rule(types[k], rate, HP, 0.01f, 0, -1, 1, 2.0f, 0.5f); /* L2, lr_mult 2, decay_mult 0.5 */
    run_rule(types[k], rate, HP, 0.02f, 1, -1, 1, 1.0f, 0.0f); /* L1, no decay on the second */
  }
}
END_TEST

START_TEST(test_rules_clip_iter_size) {
  const char *types[] = {"SGD", "Nesterov", "AdaGrad", "RMSProp", "AdaDelta", "Adam"};
  for (int k = 0; k < 6; k++) {
    const float rate = !strcmp(types[k], "AdaDelta") ? 1.0f : 0.05f;
    /* Gradients norm ~3.7 at the start: clipping to 1 is active for several steps. The
     * accumulated diffs are 3x the gradient: clipping sees the sum, then /iter_size. */
    run_rule(types[k], rate, HP, 0.01f, 0, 1.0f, 3, 1.0f, 1.0f);
    run_rule(types[k], rate, HP, 0.0f, 0, -1.0f, 4, 1.0f, 1.0f);
  }
}
END_TEST

START_TEST(test_frozen_and_clip_scale) {
  problem pb;
  problem_init(&pb, 0.0f, 1.0f); /* second parameter frozen */
  crema_update_config c = {&crema_update_sgd, HP, 0.1f, CREMA_REG_L2, -1.0f, 1};
  problem_grad(&pb, 1);
  float scale = 0;
  crema_update_step(&c, pb.p, 2, crema_update_grad_sumsq(pb.p, 2), 0.1f, 0, &scale);
  ck_assert_float_eq(scale, 1.0f);
  ck_assert_float_eq(pb.w1[0], 0.25f);
  ck_assert_float_eq(pb.w1[1], -0.5f);
  ck_assert_float_ne(pb.w0[0], 1.0f);
  ck_assert_float_eq(crema_update_clip_scale(25.0, 2.5f), 0.5f);
  ck_assert_float_eq(crema_update_clip_scale(25.0, 10.0f), 1.0f);
  ck_assert_float_eq(crema_update_clip_scale(25.0, -1.0f), 1.0f);
  /* Huge but finite gradients stay finite in the sum (double accumulation), and the sum is
   * exact on a long array (blocked, many lanes). */
  pb.d0[1] = 1e20f;
  ck_assert(isfinite(crema_update_grad_sumsq(pb.p, 2)));
  enum { LONG = 100003 };
  static float ones[LONG];
  for (int i = 0; i < LONG; i++) ones[i] = (i % 2) ? 2.0f : 1.0f;
  crema_update_param big = {ones, ones, LONG, 1, 1, {NULL, NULL}};
  ck_assert(crema_update_grad_sumsq(&big, 1) == 50002.0 + 4.0 * 50001.0);
  /* A non-finite gradient shows in the sum of squares. */
  pb.d0[1] = NAN;
  ck_assert(!isfinite(crema_update_grad_sumsq(pb.p, 2)));
}
END_TEST

/* A long parameter is updated in blocks over the threads: each element must end exactly as
 * if it were a parameter of its own (every step is element-wise), blocks and a partial last
 * block included, on 1 and 3 threads, with clipping, iter_size and both regularizations. */
START_TEST(test_rules_long_blocks) {
  enum { LEN = 2 * 8192 + 77 };
  const char *types[] = {"SGD", "Nesterov", "AdaGrad", "RMSProp", "AdaDelta", "Adam"};
  float *buf = calloc((size_t)10 * LEN, sizeof(float));
  crema_update_param *one = calloc(LEN, sizeof *one);
  ck_assert(buf && one);
  float *w = buf, *d = w + LEN, *h0 = d + LEN, *h1 = h0 + LEN, *t = h1 + LEN;
  float *w1 = t + LEN, *d1 = w1 + LEN, *g0 = d1 + LEN, *g1 = g0 + LEN;
  for (int k = 0; k < 6; k++)
    for (int threads = 1; threads <= 3; threads += 2) {
      const crema_update_rule *rule = crema_update_rule_lookup(types[k]);
      const crema_update_config c = {rule, HP, 0.01f, k % 2 ? CREMA_REG_L1 : CREMA_REG_L2, 40.0f, 2};
      memset(buf, 0, (size_t)10 * LEN * sizeof(float));
      for (int i = 0; i < LEN; i++) {
        w[i] = w1[i] = sinf(0.37f * (float)i);
        t[i] = cosf(0.11f * (float)i);
        one[i] = (crema_update_param){w1 + i, d1 + i, 1, 1.5f, 0.5f, {g0 + i, g1 + i}};
      }
      crema_update_param all = {w, d, LEN, 1.5f, 0.5f, {h0, h1}};
      omp_set_num_threads(threads);
      for (int it = 0; it < 3; it++) {
        for (int i = 0; i < LEN; i++) d[i] = d1[i] = 2.0f * (w[i] - t[i]);
        const double ss = crema_update_grad_sumsq(&all, 1);
        ck_assert(crema_update_clip_scale(ss, c.clip_gradients) < 1.0f); /* clipping is on */
        crema_update_step(&c, &all, 1, ss, 0.05f, it, NULL);
        crema_update_step(&c, one, LEN, ss, 0.05f, it, NULL);
      }
      ck_assert_msg(!memcmp(w, w1, LEN * sizeof(float)) && !memcmp(h0, g0, LEN * sizeof(float)) &&
                        !memcmp(h1, g1, LEN * sizeof(float)),
                    "%s on %d threads: the blocked update differs from element by element", types[k],
                    threads);
    }
  omp_set_num_threads(omp_get_num_procs());
  free(one);
  free(buf);
}
END_TEST

START_TEST(test_lookup) {
  ck_assert_ptr_eq(crema_update_rule_lookup("Adam"), &crema_update_adam);
  ck_assert_int_eq(crema_update_rule_lookup("AdaDelta")->n_history, 2);
  ck_assert_int_eq(crema_update_rule_lookup("Nesterov")->n_history, 1);
  ck_assert_ptr_null(crema_update_rule_lookup("adam"));
  ck_assert_ptr_null(crema_update_rule_lookup(NULL));
}
END_TEST

int main(void) {
  Suite *s = suite_create("solver");
  TCase *tc = tcase_create("update");
  tcase_add_test(tc, test_sgd_by_hand);
  tcase_add_test(tc, test_adam_by_hand);
  tcase_add_test(tc, test_rules_plain);
  tcase_add_test(tc, test_rules_long_blocks);
  tcase_add_test(tc, test_rules_decay_mults);
  tcase_add_test(tc, test_rules_clip_iter_size);
  tcase_add_test(tc, test_frozen_and_clip_scale);
  tcase_add_test(tc, test_lookup);
  suite_add_tcase(s, tc);
  return test_run_suite(s);
}
