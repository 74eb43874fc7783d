/* test_setup_cost.c -- what keeps a net's set-up cheap: fillers skipped for blobs the caller
 * overwrites, test nets reading the train net's weights in place, fast seeded fillers. */
#include <check.h>
#include <math.h>
#include <omp.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "net/net.h"
#include "solver/solver.h"
#include "support/run.h"
#include "support/textproto.h"
#include "tensor/filler.h"

static const char *NET =
    "name: 'n' "
    "layer { name: 'data' type: 'DummyData' top: 'x' top: 'y' dummy_data_param { "
    "  shape { dim: 4 dim: 3 dim: 6 dim: 6 } shape { dim: 4 } "
    "  data_filler { type: 'gaussian' std: 1 } data_filler { type: 'constant' value: 1 } } } "
    "layer { name: 'conv' type: 'Convolution' bottom: 'x' top: 'c' convolution_param { num_output: 4 "
    "  kernel_size: 3 weight_filler { type: 'gaussian' std: 0.1 } bias_filler { type: 'constant' value: 0.5 "
    "} } } "
    "layer { name: 'ip' type: 'InnerProduct' bottom: 'c' top: 'ip' inner_product_param { num_output: 3 "
    "  weight_filler { type: 'xavier' } } } "
    "layer { name: 'loss' type: 'SoftmaxWithLoss' bottom: 'ip' bottom: 'y' top: 'loss' }";

static bool skip_ip(void *ctx, const char *layer, int blob) {
  int *calls = ctx;
  (*calls)++;
  return !strcmp(layer, "ip") && blob == 0;
}

static bool all_zero(const crema_blob *b) {
  for (size_t i = 0; i < b->count; i++)
    if (b->data[i] != 0.0f) return false;
  return true;
}

/* skip_fill leaves exactly the blobs it names zero; the others get their fillers. */
START_TEST(test_skip_fill) {
  Crema__NetParameter *np = test_net_param(NET);
  int calls = 0;
  crema_net_options o = {
      .phase = CREMA__PHASE__TRAIN, .seed = 5, .skip_fill = skip_ip, .skip_fill_ctx = &calls};
  crema_net *net;
  crema_error err;
  ck_assert_msg(crema_net_build(np, &o, &net, &err) == 0, "%s", err.msg);
  const crema_layer *ip = crema_net_layer(net, crema_net_layer_index(net, "ip"));
  const crema_layer *conv = crema_net_layer(net, crema_net_layer_index(net, "conv"));
  ck_assert(all_zero(ip->blobs[0]));
  ck_assert(!all_zero(conv->blobs[0]));
  ck_assert(conv->blobs[1]->data[0] == 0.5f);
  ck_assert_int_ge(calls, 4); /* asked for every parameter blob */
  crema_net_free(net);
  crema_message_free(np);
}
END_TEST

/* A skipped blob is not filled, but its filler is still checked: a bad one fails the build
 * with or without --weights, as in Caffe (which fills, then copies). So is a DummyData top's,
 * though a random top is drawn only by forward. */
START_TEST(test_skipped_filler_still_checked) {
  const char *const bad[][3] = {
      {"type: 'xavier'", "type: 'xaviir'", "unknown filler type \"xaviir\""},
      {"type: 'gaussian' std: 1", "type: 'uniform' min: 2 max: 1", "max 1 < min 2"},
  };
  for (size_t k = 0; k < sizeof bad / sizeof *bad; k++) {
    char text[2048];
    const char *at = strstr(NET, bad[k][0]);
    ck_assert_ptr_nonnull(at);
    snprintf(text, sizeof text, "%.*s%s%s", (int)(at - NET), NET, bad[k][1], at + strlen(bad[k][0]));
    Crema__NetParameter *np = test_net_param(text);
    int calls = 0;
    crema_net_options o = {
        .phase = CREMA__PHASE__TRAIN, .seed = 5, .skip_fill = skip_ip, .skip_fill_ctx = &calls};
    crema_net *net = NULL;
    crema_error err;
    ck_assert_int_ne(crema_net_build(np, &o, &net, &err), 0);
    ck_assert_msg(strstr(err.msg, bad[k][2]), "%s", err.msg);
    crema_message_free(np);
  }
}
END_TEST

/* A solver's test net holds no weights of its own: its layers use the train net's blobs
 * (also in its parameter list), and testing still works after training changed them. It
 * also has no scratch of its own: its layers borrow the train net's workspace. */
START_TEST(test_test_net_shares_train_weights) {
  char dir[] = "/tmp/crema_test_setup_XXXXXX";
  ck_assert_ptr_nonnull(mkdtemp(dir));
  char text[4096];
  snprintf(text, sizeof text,
           "net_param { %s } test_iter: 2 test_interval: 2 max_iter: 4 base_lr: 0.1 lr_policy: 'fixed' "
           "snapshot_prefix: '%s/s' random_seed: 3",
           NET, dir);
  Crema__SolverParameter *sp = test_solver_param(text);
  crema_solver_options opt;
  memset(&opt, 0, sizeof opt);
  crema_solver *s;
  crema_error err;
  ck_assert_msg(crema_solver_create(sp, &opt, &s, &err) == 0, "%s", err.msg);
  crema_net *train = crema_solver_net(s), *test = crema_solver_test_net(s, 0);
  ck_assert_ptr_nonnull(crema_net_workspace(train));
  ck_assert_ptr_eq(crema_net_workspace(test), crema_net_workspace(train));
  ck_assert_ptr_eq(crema_net_layer(test, crema_net_layer_index(test, "conv"))->workspace,
                   crema_net_workspace(train));
  const char *names[] = {"conv", "ip"};
  for (int k = 0; k < 2; k++) {
    const crema_layer *a = crema_net_layer(train, crema_net_layer_index(train, names[k]));
    const crema_layer *b = crema_net_layer(test, crema_net_layer_index(test, names[k]));
    for (int i = 0; i < a->n_blobs; i++) {
      ck_assert_ptr_eq(a->blobs[i], b->blobs[i]);
      ck_assert(b->blob_shared[i]);
    }
  }
  for (int i = 0; i < crema_net_num_params(test); i++) {
    const crema_blob *blob = crema_net_param_at(test, i)->blob;
    bool found = false;
    for (int j = 0; j < crema_net_num_params(train); j++)
      found = found || crema_net_param_at(train, j)->blob == blob;
    ck_assert_msg(found, "test net parameter %d is not one of the train net's", i);
  }
  float before = crema_net_layer(train, crema_net_layer_index(train, "ip"))->blobs[0]->data[0];
  ck_assert_msg(crema_solver_solve(s, &err) == 0, "%s", err.msg);
  const crema_layer *tip = crema_net_layer(test, crema_net_layer_index(test, "ip"));
  ck_assert(tip->blobs[0]->data[0] != before); /* training moved the shared weights */
  crema_solver_free(s);
  crema_message_free(sp);
  snprintf(text, sizeof text, "rm -rf '%s'", dir);
  ck_assert_int_eq(system(text), 0);
}
END_TEST

/* crema_solver_options.weights: copied by name right after the build, into the train net
 * and so into the test net that shares its blobs. */
START_TEST(test_solver_weights_option) {
  char dir[] = "/tmp/crema_test_setup_XXXXXX";
  ck_assert_ptr_nonnull(mkdtemp(dir));
  char path[128], text[4096];
  snprintf(path, sizeof path, "%s/w.caffemodel", dir);
  Crema__NetParameter *np = test_net_param(NET);
  crema_net_options o = {.phase = CREMA__PHASE__TRAIN, .seed = 99};
  crema_net *src;
  crema_error err;
  ck_assert_msg(crema_net_build(np, &o, &src, &err) == 0, "%s", err.msg);
  ck_assert_msg(crema_net_save_weights(src, path, &err) == 0, "%s", err.msg);
  snprintf(text, sizeof text,
           "net_param { %s } test_iter: 1 test_interval: 100 max_iter: 1 base_lr: 0.1 lr_policy: 'fixed' "
           "snapshot_prefix: '%s/s' random_seed: 3",
           NET, dir);
  Crema__SolverParameter *sp = test_solver_param(text);
  crema_solver_options opt;
  memset(&opt, 0, sizeof opt);
  const char *weights[1] = {path};
  opt.weights = weights;
  opt.n_weights = 1;
  crema_solver *s;
  ck_assert_msg(crema_solver_create(sp, &opt, &s, &err) == 0, "%s", err.msg);
  const char *names[] = {"conv", "ip"};
  for (int k = 0; k < 2; k++) {
    const crema_layer *want = crema_net_layer(src, crema_net_layer_index(src, names[k]));
    crema_net *nets[2] = {crema_solver_net(s), crema_solver_test_net(s, 0)};
    for (int n = 0; n < 2; n++) {
      const crema_layer *got = crema_net_layer(nets[n], crema_net_layer_index(nets[n], names[k]));
      for (int b = 0; b < want->n_blobs; b++)
        ck_assert(memcmp(got->blobs[b]->data, want->blobs[b]->data, want->blobs[b]->count * sizeof(float)) ==
                  0);
    }
  }
  crema_solver_free(s);
  /* a missing file fails create, naming it */
  const char *missing[1] = {"/nonexistent/w.caffemodel"};
  opt.weights = missing;
  ck_assert(crema_solver_create(sp, &opt, &s, &err) != 0);
  ck_assert_msg(strstr(err.msg, "/nonexistent/w.caffemodel") != NULL, "%s", err.msg);
  crema_net_free(src);
  crema_message_free(np);
  crema_message_free(sp);
  snprintf(text, sizeof text, "rm -rf '%s'", dir);
  ck_assert_int_eq(system(text), 0);
}
END_TEST

/* The parallel fillers give the same values on 1 and 2 threads and the right moments. */
START_TEST(test_fast_fillers) {
  const char *fillers[] = {"type: 'gaussian' mean: 1 std: 2", "type: 'uniform' min: -3 max: 1",
                           "type: 'msra'", "type: 'xavier'"};
  const double want_mean[] = {1.0, -1.0, 0.0, 0.0};
  for (int k = 0; k < 4; k++) {
    char text[256];
    snprintf(text, sizeof text, "%s", fillers[k]);
    Crema__FillerParameter *f =
        (Crema__FillerParameter *)test_message(&crema__filler_parameter__descriptor, text);
    crema_blob *a = crema_blob_new(), *b = crema_blob_new();
    crema_error err;
    ck_assert(crema_blob_reshape4(a, 300, 1, 1, 1001, &err) == 0);
    ck_assert(crema_blob_reshape4(b, 300, 1, 1, 1001, &err) == 0);
    crema_rng r1, r2;
    crema_rng_seed(&r1, 11, 0);
    crema_rng_seed(&r2, 11, 0);
    omp_set_num_threads(1);
    ck_assert(crema_fill(a, f, &r1, &err) == 0);
    omp_set_num_threads(2);
    ck_assert(crema_fill(b, f, &r2, &err) == 0);
    ck_assert(memcmp(a->data, b->data, a->count * sizeof(float)) == 0);
    double sum = 0, sq = 0;
    for (size_t i = 0; i < a->count; i++) {
      ck_assert(isfinite(a->data[i]));
      sum += a->data[i];
      sq += (double)a->data[i] * a->data[i];
    }
    const double mean = sum / a->count, var = sq / a->count - mean * mean;
    ck_assert_msg(fabs(mean - want_mean[k]) < 0.02, "filler %s: mean %g", fillers[k], mean);
    double want_var = k == 0 ? 4.0 : k == 1 ? 16.0 / 12.0 : k == 2 ? 2.0 / 1001 : 1.0 / 1001;
    ck_assert_msg(fabs(var / want_var - 1.0) < 0.02, "filler %s: variance %g, want %g", fillers[k], var,
                  want_var);
    /* consecutive values are not paired copies (both Box-Muller outputs are used) */
    ck_assert(a->data[0] != a->data[1]);
    crema_blob_free(a);
    crema_blob_free(b);
    crema_message_free(f);
  }
}
END_TEST

static Suite *setup_suite(void) {
  Suite *s = suite_create("setup_cost");
  TCase *tc = tcase_create("core");
  tcase_add_test(tc, test_skip_fill);
  tcase_add_test(tc, test_skipped_filler_still_checked);
  tcase_add_test(tc, test_test_net_shares_train_weights);
  tcase_add_test(tc, test_solver_weights_option);
  tcase_add_test(tc, test_fast_fillers);
  suite_add_tcase(s, tc);
  return s;
}

int main(void) { return test_run_suite(setup_suite()); }
