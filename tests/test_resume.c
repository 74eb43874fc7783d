/* test_resume.c -- snapshots and resuming: bit-identical exact resume (several solver types),
 * Caffe-style solverstates, relocated snapshot folders, wrong solver type, snapshots that
 * survive SIGKILL, signals, NaN detection, and the checks made before training starts. */
#include <check.h>
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <math.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "support/run.h"
#include "proto/hdf5_io.h"
#include "proto/io.h"
#include "solver/solver.h"
#include "support/textproto.h"

/* A net whose every iteration draws random numbers (DummyData refills, Dropout), so an
 * exact resume must restore the RNGs as well as the weights and the history. */
static const char *NET =
    "net_param {"
    "  name: 'rnd'"
    "  layer { name: 'data' type: 'DummyData' top: 'data' top: 'label'"
    "    dummy_data_param { shape { dim: 8 dim: 6 } shape { dim: 8 }"
    "      data_filler { type: 'gaussian' std: 1 } data_filler { type: 'uniform' min: 0 max: 2.99 } } }"
    "  layer { name: 'ip1' type: 'InnerProduct' bottom: 'data' top: 'ip1'"
    "    inner_product_param { num_output: 16 weight_filler { type: 'xavier' } } }"
    "  layer { name: 'relu1' type: 'ReLU' bottom: 'ip1' top: 'ip1' }"
    "  layer { name: 'drop1' type: 'Dropout' bottom: 'ip1' top: 'ip1' dropout_param { dropout_ratio: 0.3 } }"
    "  layer { name: 'ip2' type: 'InnerProduct' bottom: 'ip1' top: 'ip2'"
    "    param { lr_mult: 1 } param { lr_mult: 2 }"
    "    inner_product_param { num_output: 3 weight_filler { type: 'xavier' } } }"
    "  layer { name: 'loss' type: 'SoftmaxWithLoss' bottom: 'ip2' bottom: 'label' top: 'loss' }"
    "  layer { name: 'acc' type: 'Accuracy' bottom: 'ip2' bottom: 'label' top: 'accuracy'"
    "    include { phase: TEST } }"
    "}";

static char tmpdir[256];

static void make_tmpdir(void) {
  snprintf(tmpdir, sizeof tmpdir, "/tmp/crema_resume_XXXXXX");
  ck_assert_ptr_nonnull(mkdtemp(tmpdir));
}

static void remove_tmpdir(void) {
  char cmd[512];
  snprintf(cmd, sizeof cmd, "rm -rf '%s'", tmpdir);
  ck_assert_int_eq(system(cmd), 0);
}

/* A solver message: NET plus the given settings. */
static Crema__SolverParameter *solver_text(const char *extra) {
  char text[8192];
  snprintf(text, sizeof text, "%s %s", NET, extra);
  return test_solver_param(text);
}

static crema_solver *make_solver(const char *extra, int max_iter) {
  Crema__SolverParameter *p = solver_text(extra);
  crema_solver_options opt;
  memset(&opt, 0, sizeof opt);
  opt.max_iter = max_iter;
  crema_solver *s = NULL;
  crema_error err;
  ck_assert_msg(crema_solver_create(p, &opt, &s, &err) == 0, "%s", err.msg);
  crema_message_free(p);
  return s;
}

/* Copies every parameter of the train net into a malloc'd flat array. */
static float *weights_of(const crema_solver *s, size_t *n) {
  const crema_net *net = crema_solver_net(s);
  size_t total = 0;
  for (int i = 0; i < crema_net_num_params(net); i++) total += crema_net_param_at(net, i)->blob->count;
  float *w = malloc(total * sizeof *w), *p = w;
  for (int i = 0; i < crema_net_num_params(net); i++) {
    const crema_blob *b = crema_net_param_at(net, i)->blob;
    memcpy(p, b->data, b->count * sizeof *p);
    p += b->count;
  }
  *n = total;
  return w;
}

static void check_exact_resume_as(const char *type_settings, bool stop_by_max_iter, bool hdf5) {
  make_tmpdir();
  char extra[2048];
  crema_error err;
  /* One run of 24 iterations. */
  snprintf(extra, sizeof extra,
           "%s test_iter: 2 test_interval: 8 display: 4 average_loss: 5 random_seed: 7 snapshot: 0 "
           "snapshot_prefix: '%s/one'",
           type_settings, tmpdir);
  crema_solver *a = make_solver(extra, 24);
  ck_assert_msg(crema_solver_solve(a, &err) == 0, "%s", err.msg);
  size_t na, nb;
  float *wa = weights_of(a, &na);
  crema_solver_free(a);
  /* 10 iterations, stop (snapshot after train), then resume for 14 more in a new solver. */
  snprintf(extra, sizeof extra,
           "%s test_iter: 2 test_interval: 8 display: 4 average_loss: 5 random_seed: 7 snapshot: 0 "
           "snapshot_prefix: '%s/two' %s",
           type_settings, tmpdir, hdf5 ? "snapshot_format: HDF5" : "");
  crema_solver *b = make_solver(extra, stop_by_max_iter ? 10 : 24);
  if (stop_by_max_iter) {
    /* --iterations=10: the run ends and snapshots after training. */
    ck_assert_msg(crema_solver_solve(b, &err) == 0, "%s", err.msg);
  } else {
    /* Stopped at 10 of 24 (as by a signal): schedules that depend on max_iter are unchanged. */
    ck_assert_msg(crema_solver_step(b, 10, &err) == 0, "%s", err.msg);
    ck_assert_msg(crema_solver_snapshot(b, &err) == 0, "%s", err.msg);
  }
  crema_solver_free(b);
  b = make_solver(extra, 24);
  char state[512];
  snprintf(state, sizeof state, "%s/two_iter_10.solverstate%s", tmpdir, hdf5 ? ".h5" : "");
  ck_assert_msg(crema_solver_restore(b, state, &err) == 0, "%s", err.msg);
  ck_assert_int_eq(crema_solver_iter(b), 10);
  ck_assert_msg(crema_solver_solve(b, &err) == 0, "%s", err.msg);
  ck_assert_int_eq(crema_solver_iter(b), 24);
  float *wb = weights_of(b, &nb);
  ck_assert_uint_eq(na, nb);
  ck_assert_msg(!memcmp(wa, wb, na * sizeof *wa), "%s: resumed weights differ from the uninterrupted run",
                type_settings);
  /* And the uninterrupted run really moved the weights away from a fresh start. */
  crema_solver *fresh = make_solver(extra, 24);
  size_t nf;
  float *wf = weights_of(fresh, &nf);
  ck_assert_msg(memcmp(wa, wf, na * sizeof *wa) != 0, "training did not change the weights");
  free(wf);
  crema_solver_free(fresh);
  free(wa);
  free(wb);
  crema_solver_free(b);
  remove_tmpdir();
}

static void check_exact_resume(const char *type_settings, bool stop_by_max_iter) {
  check_exact_resume_as(type_settings, stop_by_max_iter, false);
}

START_TEST(test_exact_resume_sgd) {
  check_exact_resume("type: 'SGD' base_lr: 0.05 momentum: 0.9 weight_decay: 0.001 lr_policy: 'multistep' "
                     "stepvalue: 5 stepvalue: 12 gamma: 0.5 iter_size: 2",
                     true);
}
END_TEST

START_TEST(test_exact_resume_adam) {
  check_exact_resume("type: 'Adam' base_lr: 0.01 momentum: 0.9 momentum2: 0.999 lr_policy: 'cosine' "
                     "warmup_iter: 4 weight_decay: 0.0005 regularization_type: 'L1' clip_gradients: 2",
                     false);
}
END_TEST

/* snapshot_format HDF5 (.caffemodel.h5 + .solverstate.h5 in Caffe's layout, plus crema's
 * resume fields): the resumed run is bit-identical to the uninterrupted one, exactly as with
 * binaryproto snapshots. */
START_TEST(test_exact_resume_hdf5) {
  if (!crema_hdf5_available()) {
    fprintf(stderr, "test_exact_resume_hdf5: crema built without HDF5, checking the error only\n");
    return;
  }
  check_exact_resume_as("type: 'SGD' base_lr: 0.05 momentum: 0.9 weight_decay: 0.001 lr_policy: 'multistep' "
                        "stepvalue: 5 stepvalue: 12 gamma: 0.5",
                        true, true);
  check_exact_resume_as("type: 'Adam' base_lr: 0.01 lr_policy: 'fixed'", false, true);
}
END_TEST

START_TEST(test_exact_resume_adadelta) {
  check_exact_resume("type: 'AdaDelta' base_lr: 1 momentum: 0.95 delta: 1e-6 lr_policy: 'fixed'", false);
}
END_TEST

START_TEST(test_caffe_state_relocated_and_wrong_type) {
  make_tmpdir();
  crema_error err;
  char extra[1024], path[1024], moved[512];
  snprintf(extra, sizeof extra,
           "type: 'Nesterov' base_lr: 0.05 momentum: 0.9 lr_policy: 'fixed' random_seed: 3 "
           "snapshot_prefix: '%s/sub/net'",
           tmpdir);
  snprintf(path, sizeof path, "%s/sub", tmpdir);
  ck_assert_int_eq(mkdir(path, 0755), 0);
  crema_solver *s = make_solver(extra, 6);
  ck_assert_msg(crema_solver_solve(s, &err) == 0, "%s", err.msg);
  crema_solver_free(s);
  /* Move the folder: learned_net inside the solverstate no longer exists. */
  snprintf(moved, sizeof moved, "%s/moved", tmpdir);
  ck_assert_int_eq(rename(path, moved), 0);
  ck_assert_int_eq(mkdir(path, 0755), 0); /* the resumed run writes its snapshots there again */
  /* Strip crema's extension fields: what a solverstate written by Caffe holds. */
  snprintf(path, sizeof path, "%s/net_iter_6.solverstate", moved);
  Crema__SolverState *st = NULL;
  ck_assert_msg(
      crema_read_binary_message(path, &crema__solver_state__descriptor, (ProtobufCMessage **)&st, &err) == 0,
      "%s", err.msg);
  ck_assert_int_eq(st->iter, 6);
  ck_assert_ptr_nonnull(st->solver_type);
  ck_assert_str_eq(st->solver_type, "Nesterov");
  ck_assert_uint_eq(st->n_history, 4); /* 2 InnerProduct layers x (weights, bias) */
  ck_assert_uint_gt(st->n_rng_state, 0);
  free(st->solver_type);
  st->solver_type = NULL;
  const size_t n_rng = st->n_rng_state, n_pos = st->n_reader_position, n_win = st->n_loss_window;
  st->n_rng_state = 0;
  st->n_reader_position = 0;
  st->n_loss_window = 0;
  char caffe_path[1024];
  snprintf(caffe_path, sizeof caffe_path, "%s/caffe_style.solverstate", moved);
  ck_assert_int_eq(crema_write_binary_message(caffe_path, &st->base, &err), 0);
  /* Counts back, so the free releases everything the reader allocated. */
  st->n_rng_state = n_rng;
  st->n_reader_position = n_pos;
  st->n_loss_window = n_win;
  crema_message_free(st);
  s = make_solver(extra, 9);
  ck_assert_msg(crema_solver_restore(s, caffe_path, &err) == 0, "%s", err.msg);
  ck_assert_int_eq(crema_solver_iter(s), 6);
  ck_assert_msg(crema_solver_solve(s, &err) == 0, "%s", err.msg);
  ck_assert_int_eq(crema_solver_iter(s), 9);
  crema_solver_free(s);
  /* Another solver type refuses the crema solverstate, naming both types. */
  snprintf(extra, sizeof extra,
           "type: 'Adam' base_lr: 0.01 lr_policy: 'fixed' snapshot_prefix: '%s/moved/adam'", tmpdir);
  s = make_solver(extra, 9);
  ck_assert_int_eq(crema_solver_restore(s, path, &err), -1);
  ck_assert_msg(strstr(err.msg, "Nesterov") && strstr(err.msg, "Adam"), "%s", err.msg);
  /* And the Caffe-style one (no type recorded) by its history count. */
  ck_assert_int_eq(crema_solver_restore(s, caffe_path, &err), -1);
  ck_assert_msg(strstr(err.msg, "history"), "%s", err.msg);
  crema_solver_free(s);
  remove_tmpdir();
}
END_TEST

START_TEST(test_unwritable_and_bad_settings) {
  crema_error err;
  crema_solver *s = NULL;
  crema_solver_options opt;
  memset(&opt, 0, sizeof opt);
  Crema__SolverParameter *p =
      solver_text("base_lr: 0.1 lr_policy: 'fixed' max_iter: 5 snapshot_prefix: '/nonexistent-crema-dir/x'");
  ck_assert_int_eq(crema_solver_create(p, &opt, &s, &err), -1);
  ck_assert_ptr_null(s);
  ck_assert_msg(strstr(err.msg, "/nonexistent-crema-dir/x") && strstr(err.msg, "writable"), "%s", err.msg);
  crema_message_free(p);
  p = solver_text(
      "base_lr: 0.1 lr_policy: 'fixed' max_iter: 5 snapshot_format: HDF5 snapshot_prefix: '/tmp/x'");
  if (crema_hdf5_available()) {
    ck_assert_msg(crema_solver_create(p, &opt, &s, &err) == 0, "%s", err.msg);
    crema_solver_free(s);
    s = NULL;
  } else {
    ck_assert_int_eq(crema_solver_create(p, &opt, &s, &err), -1);
    ck_assert_msg(strstr(err.msg, "HDF5") && strstr(err.msg, "libhdf5-dev"), "%s", err.msg);
  }
  crema_message_free(p);
  p = solver_text("base_lr: 0.1 lr_policy: 'fixed' type: 'Adamax' snapshot_prefix: '/tmp/x'");
  ck_assert_int_eq(crema_solver_create(p, &opt, &s, &err), -1);
  ck_assert_msg(strstr(err.msg, "Adamax") && strstr(err.msg, "RMSProp"), "%s", err.msg);
  crema_message_free(p);
  p = solver_text("base_lr: 0.1 lr_policy: 'fixed' test_iter: 1 test_interval: 5 snapshot_prefix: '/tmp/x' "
                  "early_stopping { metric: 'acuracy' }");
  ck_assert_int_eq(crema_solver_create(p, &opt, &s, &err), -1);
  ck_assert_msg(strstr(err.msg, "acuracy") && strstr(err.msg, "accuracy"), "%s", err.msg);
  crema_message_free(p);
  const char *freeze[] = {"ip9*"};
  opt.freeze = freeze;
  opt.n_freeze = 1;
  p = solver_text("base_lr: 0.1 lr_policy: 'fixed' snapshot_prefix: '/tmp/x'");
  ck_assert_int_eq(crema_solver_create(p, &opt, &s, &err), -1);
  ck_assert_msg(strstr(err.msg, "ip9*"), "%s", err.msg);
  crema_message_free(p);
}
END_TEST

START_TEST(test_freeze) {
  make_tmpdir();
  crema_error err;
  char extra[512];
  snprintf(extra, sizeof extra,
           "base_lr: 0.1 momentum: 0.9 lr_policy: 'fixed' snapshot_after_train: false "
           "metrics_csv: false random_seed: 1 snapshot_prefix: '%s/f'",
           tmpdir);
  Crema__SolverParameter *p = solver_text(extra);
  const char *freeze[] = {"ip1"};
  crema_solver_options opt;
  memset(&opt, 0, sizeof opt);
  opt.freeze = freeze;
  opt.n_freeze = 1;
  opt.max_iter = 5;
  crema_solver *s = NULL;
  ck_assert_msg(crema_solver_create(p, &opt, &s, &err) == 0, "%s", err.msg);
  crema_net *net = crema_solver_net(s);
  const crema_layer *ip1 = crema_net_layer(net, crema_net_layer_index(net, "ip1"));
  const crema_layer *ip2 = crema_net_layer(net, crema_net_layer_index(net, "ip2"));
  const size_t n1 = ip1->blobs[0]->count, n2 = ip2->blobs[0]->count;
  float *w1 = malloc(n1 * sizeof *w1), *w2 = malloc(n2 * sizeof *w2);
  memcpy(w1, ip1->blobs[0]->data, n1 * sizeof *w1);
  memcpy(w2, ip2->blobs[0]->data, n2 * sizeof *w2);
  ck_assert_msg(crema_solver_solve(s, &err) == 0, "%s", err.msg);
  ck_assert_msg(!memcmp(w1, ip1->blobs[0]->data, n1 * sizeof *w1), "frozen ip1 changed");
  ck_assert_msg(memcmp(w2, ip2->blobs[0]->data, n2 * sizeof *w2) != 0, "ip2 did not train");
  free(w1);
  free(w2);
  crema_solver_free(s);
  crema_message_free(p);
  remove_tmpdir();
}
END_TEST

START_TEST(test_early_stopping) {
  make_tmpdir();
  crema_error err;
  char extra[1024];
  /* min_delta 2 on an accuracy: no round can improve on the first, so with patience 2 and a
   * test every 3 iterations the run stops at iteration 6 of 100. */
  snprintf(extra, sizeof extra,
           "base_lr: 0.01 lr_policy: 'fixed' test_iter: 1 test_interval: 3 random_seed: 1 display: 1 "
           "early_stopping { metric: 'accuracy' mode: MAXIMIZE patience: 2 min_delta: 2 } "
           "snapshot_prefix: '%s/es'",
           tmpdir);
  crema_solver *s = make_solver(extra, 100);
  ck_assert_msg(crema_solver_solve(s, &err) == 0, "%s", err.msg);
  ck_assert_int_eq(crema_solver_iter(s), 6);
  ck_assert(crema_solver_stopped_early(s));
  float acc = -1;
  ck_assert_int_eq(crema_solver_test_value(s, 0, "accuracy", &acc), 0);
  ck_assert(acc >= 0.0f && acc <= 1.0f);
  crema_solver_free(s);
  char path[512];
  snprintf(path, sizeof path, "%s/es_best.caffemodel", tmpdir);
  ck_assert_int_eq(access(path, R_OK), 0);
  snprintf(path, sizeof path, "%s/es_iter_6.solverstate", tmpdir);
  Crema__SolverState *st = NULL;
  ck_assert_msg(
      crema_read_binary_message(path, &crema__solver_state__descriptor, (ProtobufCMessage **)&st, &err) == 0,
      "%s", err.msg);
  ck_assert(st->has_best_iter && st->best_iter == 0);
  ck_assert_int_eq(st->rounds_without_improvement, 2);
  crema_message_free(st);
  /* The metrics CSV: header, and one row per displayed iteration 0..5 with test values at 0 and 3. */
  snprintf(path, sizeof path, "%s/es_metrics.csv", tmpdir);
  FILE *f = fopen(path, "r");
  ck_assert_ptr_nonnull(f);
  char line[1024];
  ck_assert_ptr_nonnull(fgets(line, sizeof line, f));
  ck_assert_str_eq(line, "iteration,seconds,lr,loss,accuracy,test_loss\n");
  int rows = 0, tested = 0;
  while (fgets(line, sizeof line, f)) {
    rows++;
    tested += line[strlen(line) - 2] != ',';
  }
  fclose(f);
  ck_assert_int_eq(rows, 6);
  ck_assert_int_eq(tested, 2);
  remove_tmpdir();
}
END_TEST

/* Hooks: after_backward sees every iteration's gradient before the update (zeroing it there
 * must freeze the weights), on_iteration counts iterations with their lr, on_test each round. */
typedef struct hook_counts {
  int backward, iterations, tests, last_iter;
  float last_lr;
} hook_counts;

static int count_backward(void *ctx, crema_solver *s, crema_error *err) {
  (void)err;
  ((hook_counts *)ctx)->backward++;
  const crema_net *net = crema_solver_net(s);
  for (int i = 0; i < crema_net_num_params(net); i++) crema_blob_zero_diff(crema_net_param_at(net, i)->blob);
  return 0;
}

static void count_iteration(void *ctx, const crema_solver *s, int iter, float loss, float lr) {
  (void)s;
  (void)loss;
  hook_counts *c = ctx;
  c->iterations++;
  c->last_iter = iter;
  c->last_lr = lr;
}

static void count_test(void *ctx, const crema_solver *s, int iter) {
  (void)iter;
  float acc = -1;
  ck_assert_int_eq(crema_solver_test_value(s, 0, "accuracy", &acc), 0);
  ((hook_counts *)ctx)->tests++;
}

static int fail_backward(void *ctx, crema_solver *s, crema_error *err) {
  (void)ctx;
  return crema_fail(err, "peer gone at iteration %d", crema_solver_iter(s));
}

START_TEST(test_hooks) {
  make_tmpdir();
  crema_error err;
  char extra[1024];
  snprintf(extra, sizeof extra,
           "base_lr: 0.05 lr_policy: 'fixed' momentum: 0.9 test_iter: 1 test_interval: 4 random_seed: 3 "
           "display: 0 metrics_csv: false snapshot: 0 snapshot_after_train: false snapshot_prefix: '%s/h'",
           tmpdir);
  crema_solver *s = make_solver(extra, 10);
  size_t n0 = 0, n1 = 0;
  float *before = weights_of(s, &n0);
  hook_counts c = {0};
  crema_solver_hooks h = {
      .ctx = &c, .after_backward = count_backward, .on_iteration = count_iteration, .on_test = count_test};
  ck_assert_int_eq(crema_solver_add_hooks(s, &h, &err), 0);
  ck_assert_msg(crema_solver_solve(s, &err) == 0, "%s", err.msg);
  float *after = weights_of(s, &n1);
  ck_assert_uint_eq(n0, n1);
  ck_assert_mem_eq(before, after, n0 * sizeof(float)); /* zeroed gradients: nothing moved */
  ck_assert_int_eq(c.backward, 10);
  ck_assert_int_eq(c.iterations, 10);
  ck_assert_int_eq(c.last_iter, 9);
  ck_assert_float_eq(c.last_lr, 0.05f);
  ck_assert_int_eq(c.tests, 3); /* iterations 4, 8 and the final test at 10 */
  free(before);
  free(after);
  crema_solver_free(s);

  s = make_solver(extra, 10);
  crema_solver_hooks f = {.after_backward = fail_backward};
  for (int i = 0; i < CREMA_SOLVER_MAX_HOOKS; i++) ck_assert_int_eq(crema_solver_add_hooks(s, &f, &err), 0);
  ck_assert_int_eq(crema_solver_add_hooks(s, &f, &err), -1);
  ck_assert_ptr_nonnull(strstr(err.msg, "too many solver hooks"));
  ck_assert_int_eq(crema_solver_solve(s, &err), -1);
  ck_assert_ptr_nonnull(strstr(err.msg, "peer gone at iteration 0"));
  crema_solver_free(s);
  remove_tmpdir();
}
END_TEST

START_TEST(test_freeze_batchnorm_prefix) {
  /* --freeze=conv*,bn1: lr_mult 0 on both convolution params (weights and bias, though the
   * prototxt gives at most one param spec), use_global_stats on the BatchNorm -- by editing
   * the NetParameter, as the built net shows. */
  make_tmpdir();
  char text[4096];
  snprintf(text, sizeof text,
           "net_param { name: 'bn'"
           "  layer { name: 'data' type: 'DummyData' top: 'data' top: 'label'"
           "    dummy_data_param { shape { dim: 4 dim: 2 dim: 6 dim: 6 } shape { dim: 4 }"
           "      data_filler { type: 'gaussian' std: 1 } data_filler { type: 'constant' value: 1 } } }"
           "  layer { name: 'conv1' type: 'Convolution' bottom: 'data' top: 'c1'"
           "    convolution_param { num_output: 3 kernel_size: 3 weight_filler { type: 'xavier' } } }"
           "  layer { name: 'conv2' type: 'Convolution' bottom: 'c1' top: 'c2' param { lr_mult: 1 }"
           "    convolution_param { num_output: 3 kernel_size: 3 weight_filler { type: 'xavier' } } }"
           "  layer { name: 'bn1' type: 'BatchNorm' bottom: 'c2' top: 'c2' }"
           "  layer { name: 'ip' type: 'InnerProduct' bottom: 'c2' top: 'ip'"
           "    inner_product_param { num_output: 2 weight_filler { type: 'xavier' } } }"
           "  layer { name: 'loss' type: 'SoftmaxWithLoss' bottom: 'ip' bottom: 'label' top: 'loss' } }"
           "base_lr: 0.1 lr_policy: 'fixed' random_seed: 1 snapshot_after_train: false metrics_csv: false "
           "snapshot_prefix: '%s/bn'",
           tmpdir);
  Crema__SolverParameter *p = test_solver_param(text);
  const char *freeze[] = {"conv*", "bn1"};
  crema_solver_options opt;
  memset(&opt, 0, sizeof opt);
  opt.freeze = freeze;
  opt.n_freeze = 2;
  opt.max_iter = 3;
  crema_solver *s = NULL;
  crema_error err;
  ck_assert_msg(crema_solver_create(p, &opt, &s, &err) == 0, "%s", err.msg);
  crema_net *net = crema_solver_net(s);
  const Crema__NetParameter *np = crema_net_param_message(net);
  int seen = 0;
  for (size_t i = 0; i < np->n_layer; i++) {
    const Crema__LayerParameter *l = np->layer[i];
    if (!strncmp(l->name, "conv", 4)) {
      ck_assert_uint_eq(l->n_param, 2);
      ck_assert_float_eq(l->param[0]->lr_mult, 0.0f);
      ck_assert_float_eq(l->param[1]->lr_mult, 0.0f);
      seen++;
    } else if (!strcmp(l->name, "bn1")) {
      ck_assert_ptr_nonnull(l->batch_norm_param);
      ck_assert(l->batch_norm_param->use_global_stats);
      seen++;
    } else if (!strcmp(l->name, "ip")) {
      ck_assert(l->n_param == 0 || l->param[0]->lr_mult != 0.0f);
    }
  }
  ck_assert_int_eq(seen, 3);
  const crema_layer *c1 = crema_net_layer(net, crema_net_layer_index(net, "conv1"));
  ck_assert(!c1->param_propagate_down[0] && !c1->param_propagate_down[1]);
  const size_t n = c1->blobs[0]->count;
  float *w = malloc(n * sizeof *w);
  memcpy(w, c1->blobs[0]->data, n * sizeof *w);
  ck_assert_msg(crema_solver_solve(s, &err) == 0, "%s", err.msg);
  ck_assert(!memcmp(w, c1->blobs[0]->data, n * sizeof *w));
  free(w);
  crema_solver_free(s);
  crema_message_free(p);
  remove_tmpdir();
}
END_TEST

START_TEST(test_nan_detection) {
  make_tmpdir();
  crema_error err;
  char extra[512];
  /* A learning rate this large blows the weights up within a few iterations. */
  snprintf(extra, sizeof extra,
           "base_lr: 1e20 lr_policy: 'fixed' momentum: 0.9 snapshot: 1 random_seed: 1 "
           "snapshot_prefix: '%s/nan'",
           tmpdir);
  crema_solver *s = make_solver(extra, 50);
  ck_assert_int_eq(crema_solver_solve(s, &err), -1);
  ck_assert_msg(strstr(err.msg, "iteration ") && strstr(err.msg, "non-finite") && strstr(err.msg, "layer \""),
                "%s", err.msg);
  /* The message names a real layer of the net. */
  ck_assert_msg(strstr(err.msg, "\"ip1\"") || strstr(err.msg, "\"ip2\"") || strstr(err.msg, "\"loss\"") ||
                    strstr(err.msg, "\"relu1\"") || strstr(err.msg, "\"drop1\""),
                "%s", err.msg);
  const int stopped = crema_solver_iter(s);
  ck_assert_int_lt(stopped, 50);
  crema_solver_free(s);
  /* The last snapshot stays. */
  if (stopped > 0) {
    char path[512];
    snprintf(path, sizeof path, "%s/nan_iter_%d.caffemodel", tmpdir, stopped);
    ck_assert_int_eq(access(path, R_OK), 0);
  }
  remove_tmpdir();
}
END_TEST

/* ---------------------------------------------------------------- the command line */

static char *write_solver_file(const char *name, const char *extra) {
  static char path[512];
  snprintf(path, sizeof path, "%s/%s", tmpdir, name);
  FILE *f = fopen(path, "w");
  ck_assert_ptr_nonnull(f);
  fprintf(f, "%s\n%s\n", NET, extra);
  fclose(f);
  return path;
}

static int run(const char *cmd, char *out, size_t size) {
  FILE *p = popen(cmd, "r");
  ck_assert_ptr_nonnull(p);
  size_t n = fread(out, 1, size - 1, p);
  out[n] = '\0';
  int st = pclose(p);
  return WIFEXITED(st) ? WEXITSTATUS(st) : -1;
}

START_TEST(test_cli_flag_errors) {
  make_tmpdir();
  char extra[512], cmd[2048], out[8192];
  snprintf(extra, sizeof extra, "base_lr: 0.1 lr_policy: 'fixed' max_iter: 3 snapshot_prefix: '%s/c'",
           tmpdir);
  const char *solver = write_solver_file("s.prototxt", extra);
  snprintf(cmd, sizeof cmd, "%s/crema train --solver=%s --weights=a.caffemodel --snapshot=b.solverstate 2>&1",
           CREMA_BIN_DIR, solver);
  ck_assert_int_eq(run(cmd, out, sizeof out), 2);
  ck_assert_msg(strstr(out, "error:") && strstr(out, "not both"), "%s", out);
  snprintf(cmd, sizeof cmd, "%s/crema train --solver=%s --sigint_effect=explode 2>&1", CREMA_BIN_DIR, solver);
  ck_assert_int_eq(run(cmd, out, sizeof out), 2);
  ck_assert_msg(strstr(out, "sigint_effect"), "%s", out);
  snprintf(extra, sizeof extra,
           "base_lr: 0.1 lr_policy: 'fixed' max_iter: 3 snapshot_prefix: '%s/no/such/dir/c'", tmpdir);
  solver = write_solver_file("s2.prototxt", extra);
  snprintf(cmd, sizeof cmd, "%s/crema train --solver=%s 2>&1", CREMA_BIN_DIR, solver);
  ck_assert_int_eq(run(cmd, out, sizeof out), 1);
  ck_assert_msg(strstr(out, "error:") && strstr(out, "no/such/dir") && !strstr(out, "Iteration 0"), "%s",
                out);
  remove_tmpdir();
}
END_TEST

static bool parses_completely(const char *path) {
  crema_error err;
  ProtobufCMessage *m = NULL;
  const bool model = strstr(path, ".caffemodel") != NULL;
  if (crema_read_binary_message(
          path, model ? &crema__net_parameter__descriptor : &crema__solver_state__descriptor, &m, &err))
    return false;
  bool ok = true;
  if (model) {
    const Crema__NetParameter *np = (const Crema__NetParameter *)m;
    /* Every layer's blobs complete: ip1 16x6 + 16, ip2 3x16 + 3. */
    size_t values = 0;
    for (size_t i = 0; i < np->n_layer; i++)
      for (size_t b = 0; b < np->layer[i]->n_blobs; b++) values += np->layer[i]->blobs[b]->n_data;
    ok = values == 4000 * 16 + 16 + 3 * 16 + 3 || values == 16 * 6 + 16 + 3 * 16 + 3;
  } else {
    ok = ((const Crema__SolverState *)m)->n_history == 4;
  }
  crema_message_free(m);
  return ok;
}

START_TEST(test_cli_sigkill_mid_snapshot) {
  make_tmpdir();
  /* A wider first layer makes each snapshot a few hundred KB, so kills land mid-write. */
  char extra[1024];
  snprintf(extra, sizeof extra,
           "base_lr: 0.01 lr_policy: 'fixed' momentum: 0.9 max_iter: 100000 snapshot: 1 random_seed: 2 "
           "display: 0 metrics_csv: false snapshot_prefix: '%s/k'",
           tmpdir);
  char text[8192];
  const char *at = strstr(NET, "dim: 8 dim: 6");
  snprintf(text, sizeof text, "%.*sdim: 8 dim: 4000%s", (int)(at - NET), NET, at + 13); /* data 8x4000 */
  char path[512];
  snprintf(path, sizeof path, "%s/k.prototxt", tmpdir);
  FILE *f = fopen(path, "w");
  ck_assert_ptr_nonnull(f);
  fprintf(f, "%s\n%s\n", text, extra);
  fclose(f);
  const char *sanitized = getenv("CREMA_SANITIZED");
  const int rounds = sanitized ? 4 : 8;
  int checked = 0;
  for (int r = 0; r < rounds; r++) {
    pid_t pid = fork();
    ck_assert_int_ge(pid, 0);
    if (pid == 0) {
      char bin[512];
      snprintf(bin, sizeof bin, "%s/crema", CREMA_BIN_DIR);
      char log[600];
      snprintf(log, sizeof log, "%s/log.txt", tmpdir);
      int fd = open(log, O_WRONLY | O_CREAT | O_TRUNC, 0644);
      dup2(fd, 2);
      execl(bin, bin, "train", "--solver", path, (char *)NULL);
      _exit(127);
    }
    /* Varied delays: the first snapshots land after start-up (more so under ASan). */
    struct timespec d = {0, (long)(150 + 97 * r) * 1000000L};
    if (sanitized) d.tv_sec += 1;
    nanosleep(&d, NULL);
    kill(pid, SIGKILL);
    int st;
    waitpid(pid, &st, 0);
    if (!WIFSIGNALED(st)) {
      char log[600], buf[4096] = "";
      snprintf(log, sizeof log, "%s/log.txt", tmpdir);
      FILE *lf = fopen(log, "r");
      if (lf) {
        size_t n = fread(buf, 1, sizeof buf - 1, lf);
        buf[n] = '\0';
        fclose(lf);
      }
      ck_abort_msg("round %d: crema train exited with status %d before the kill: %s", r,
                   WIFEXITED(st) ? WEXITSTATUS(st) : -1, buf);
    }
    DIR *dir = opendir(tmpdir);
    ck_assert_ptr_nonnull(dir);
    struct dirent *e;
    while ((e = readdir(dir))) {
      const size_t n = strlen(e->d_name);
      const bool model = n > 11 && !strcmp(e->d_name + n - 11, ".caffemodel");
      const bool state = n > 12 && !strcmp(e->d_name + n - 12, ".solverstate");
      if (!model && !state) continue;
      char file[1024];
      snprintf(file, sizeof file, "%s/%s", tmpdir, e->d_name);
      ck_assert_msg(parses_completely(file), "round %d: %s is incomplete", r, e->d_name);
      checked++;
      unlink(file); /* the next round starts clean */
    }
    closedir(dir);
  }
  ck_assert_msg(checked > 0, "no snapshot was written before the kills; nothing was checked");
  remove_tmpdir();
}
END_TEST

START_TEST(test_cli_sigint_stops_with_snapshot) {
  make_tmpdir();
  char extra[512], cmd[2048], out[1 << 16];
  snprintf(extra, sizeof extra,
           "base_lr: 0.01 lr_policy: 'fixed' max_iter: 100000000 display: 0 random_seed: 1 "
           "snapshot_prefix: '%s/int'",
           tmpdir);
  const char *solver = write_solver_file("int.prototxt", extra);
  /* The shell sends SIGHUP (default: snapshot and carry on), then SIGINT (default: stop);
   * the run must snapshot on each, stop, and exit 0. */
  snprintf(cmd, sizeof cmd,
           "%s/crema train --solver=%s 2>&1 & pid=$!; sleep %s; kill -HUP $pid; sleep 0.5; kill -INT $pid; "
           "wait $pid",
           CREMA_BIN_DIR, solver, getenv("CREMA_SANITIZED") ? "3" : "1");
  ck_assert_int_eq(run(cmd, out, sizeof out), 0);
  const char *hup = strstr(out, "SIGHUP received");
  ck_assert_msg(hup && strstr(hup, "Snapshotting solver state"), "%s", out);
  const char *intr = strstr(hup, "SIGINT received");
  ck_assert_msg(intr && strstr(intr, "Snapshotting solver state") &&
                    strstr(intr, "Optimization stopped early."),
                "%s", out);
  remove_tmpdir();
}
END_TEST

int main(void) {
  Suite *s = suite_create("resume");
  TCase *tc = tcase_create("core");
  tcase_set_timeout(tc, 300);
  tcase_add_test(tc, test_exact_resume_sgd);
  tcase_add_test(tc, test_exact_resume_adam);
  tcase_add_test(tc, test_exact_resume_adadelta);
  tcase_add_test(tc, test_exact_resume_hdf5);
  tcase_add_test(tc, test_caffe_state_relocated_and_wrong_type);
  tcase_add_test(tc, test_unwritable_and_bad_settings);
  tcase_add_test(tc, test_freeze);
  tcase_add_test(tc, test_early_stopping);
  tcase_add_test(tc, test_hooks);
  tcase_add_test(tc, test_freeze_batchnorm_prefix);
  tcase_add_test(tc, test_nan_detection);
  tcase_add_test(tc, test_cli_flag_errors);
  tcase_add_test(tc, test_cli_sigkill_mid_snapshot);
  tcase_add_test(tc, test_cli_sigint_stops_with_snapshot);
  suite_add_tcase(s, tc);
  return test_run_suite(s);
}
