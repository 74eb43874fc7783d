/* test_lr_policy.c -- every learning-rate policy against its formula at chosen iterations. */
#include <check.h>
#include <math.h>
#include <string.h>

#include "support/run.h"
#include "proto/crema.pb-c.h"
#include "solver/lr_policy.h"

static Crema__SolverParameter base(const char *policy) {
  Crema__SolverParameter s;
  crema__solver_parameter__init(&s);
  s.lr_policy = (char *)policy;
  s.base_lr = 0.01f;
  s.gamma = 0.5f;
  s.power = 0.75f;
  s.stepsize = 100;
  s.max_iter = 1000;
  return s;
}

static float rate_at(const Crema__SolverParameter *s, int iter) {
  crema_lr_policy p;
  crema_error err;
  ck_assert_msg(crema_lr_policy_init(&p, s, &err) == 0, "%s", err.msg);
  int step = 0;
  return crema_lr_rate(&p, iter, &step);
}

#define ck_assert_rel(a, b)                                                                                  \
  ck_assert_msg(fabs((double)(a) - (double)(b)) <= 1e-6 * fmax(1e-12, fabs((double)(b))), "%.9g != %.9g",    \
                (double)(a), (double)(b))

START_TEST(test_fixed) {
  Crema__SolverParameter s = base("fixed");
  ck_assert_rel(rate_at(&s, 0), 0.01f);
  ck_assert_rel(rate_at(&s, 12345), 0.01f);
}
END_TEST

START_TEST(test_step) {
  Crema__SolverParameter s = base("step");
  crema_lr_policy p;
  crema_error err;
  ck_assert_int_eq(crema_lr_policy_init(&p, &s, &err), 0);
  int step = 0;
  ck_assert_rel(crema_lr_rate(&p, 99, &step), 0.01);
  ck_assert_int_eq(step, 0);
  ck_assert_rel(crema_lr_rate(&p, 100, &step), 0.005);
  ck_assert_int_eq(step, 1);
  ck_assert_rel(crema_lr_rate(&p, 350, &step), 0.01 * 0.125);
  ck_assert_int_eq(step, 3);
}
END_TEST

START_TEST(test_exp_inv_poly_sigmoid) {
  Crema__SolverParameter s = base("exp");
  ck_assert_rel(rate_at(&s, 3), 0.01 * 0.125);
  s = base("inv");
  s.gamma = 0.0001f;
  ck_assert_rel(rate_at(&s, 0), 0.01);
  ck_assert_rel(rate_at(&s, 5000), 0.01 * pow(1.0 + (double)0.0001f * 5000, -0.75));
  s = base("poly");
  s.power = 2.0f;
  ck_assert_rel(rate_at(&s, 250), 0.01 * 0.75 * 0.75);
  ck_assert_rel(rate_at(&s, 1000), 0.0);
  s = base("sigmoid");
  s.gamma = -0.05f;
  ck_assert_rel(rate_at(&s, 100), 0.005);
  ck_assert_rel(rate_at(&s, 140), 0.01 / (1.0 + exp((double)0.05f * 40)));
}
END_TEST

START_TEST(test_multistep) {
  Crema__SolverParameter s = base("multistep");
  int values[] = {10, 20, 40};
  s.stepvalue = values;
  s.n_stepvalue = 3;
  crema_lr_policy p;
  crema_error err;
  ck_assert_int_eq(crema_lr_policy_init(&p, &s, &err), 0);
  int step = 0;
  float r[50];
  for (int it = 0; it < 50; it++) r[it] = crema_lr_rate(&p, it, &step);
  ck_assert_rel(r[9], 0.01);
  ck_assert_rel(r[10], 0.005);
  ck_assert_rel(r[19], 0.005);
  ck_assert_rel(r[20], 0.0025);
  ck_assert_rel(r[40], 0.00125);
  ck_assert_rel(r[49], 0.00125);
  ck_assert_int_eq(step, 3);
  /* Resuming from a saved current_step continues the schedule. */
  step = 2;
  ck_assert_rel(crema_lr_rate(&p, 30, &step), 0.0025);
  ck_assert_int_eq(step, 2);
}
END_TEST

START_TEST(test_cosine_and_warmup) {
  Crema__SolverParameter s = base("cosine");
  s.min_lr = 0.001f;
  ck_assert_rel(rate_at(&s, 0), 0.01);
  ck_assert_rel(rate_at(&s, 500), (double)0.001f + ((double)0.01f - (double)0.001f) * 0.5);
  ck_assert_rel(rate_at(&s, 1000), 0.001);
  ck_assert_rel(rate_at(&s, 250), (double)0.001f + ((double)0.01f - (double)0.001f) * 0.5 *
                                                       (1 + cos(3.14159265358979323846 / 4)));
  s = base("fixed");
  s.warmup_iter = 10;
  s.warmup_start_factor = 0.1f;
  ck_assert_rel(rate_at(&s, 0), 0.001);
  ck_assert_rel(rate_at(&s, 5), 0.01 * (0.1 + 0.9 * 0.5));
  ck_assert_rel(rate_at(&s, 10), 0.01);
}
END_TEST

START_TEST(test_errors) {
  crema_lr_policy p;
  crema_error err;
  Crema__SolverParameter s = base("stepp");
  ck_assert_int_eq(crema_lr_policy_init(&p, &s, &err), -1);
  ck_assert_ptr_nonnull(strstr(err.msg, "unknown lr_policy \"stepp\""));
  s = base("step");
  s.stepsize = 0;
  ck_assert_int_eq(crema_lr_policy_init(&p, &s, &err), -1);
  ck_assert_ptr_nonnull(strstr(err.msg, "stepsize"));
  s = base(NULL);
  ck_assert_int_eq(crema_lr_policy_init(&p, &s, &err), -1);
  ck_assert_ptr_nonnull(strstr(err.msg, "lr_policy is missing"));
  s = base("multistep");
  int bad[] = {20, 10};
  s.stepvalue = bad;
  s.n_stepvalue = 2;
  ck_assert_int_eq(crema_lr_policy_init(&p, &s, &err), -1);
  ck_assert_ptr_nonnull(strstr(err.msg, "stepvalue must increase"));
}
END_TEST

int main(void) {
  Suite *s = suite_create("lr_policy");
  TCase *tc = tcase_create("core");
  tcase_add_test(tc, test_fixed);
  tcase_add_test(tc, test_step);
  tcase_add_test(tc, test_exp_inv_poly_sigmoid);
  tcase_add_test(tc, test_multistep);
  tcase_add_test(tc, test_cosine_and_warmup);
  tcase_add_test(tc, test_errors);
  suite_add_tcase(s, tc);
  return test_run_suite(s);
}
