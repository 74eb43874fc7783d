/* test_hdf5.c -- Caffe's HDF5 formats: the .caffemodel.h5 and .solverstate.h5 real Caffe
 * wrote (tests/data/caffe_written) against the binaryproto files of the same run; crema's own
 * HDF5 snapshots round-tripping; `crema upgrade` between .caffemodel and .caffemodel.h5;
 * HDF5Output -> HDF5Data (order, looping, shuffle, exact repositioning); and a regression net
 * that learns from HDF5Data. Built without HDF5, only the error messages are checked. */
#include <check.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "support/run.h"
#include "layers/layer.h"
#include "proto/hdf5_io.h"
#include "proto/io.h"
#include "solver/solver.h"
#include "support/gradcheck.h"
#include "support/layer_run.h"
#include "support/textproto.h"

#define CW CREMA_TEST_DATA "/caffe_written"

static char tmpdir[128];

static void setup(void) {
  snprintf(tmpdir, sizeof tmpdir, "/tmp/crema_test_hdf5_XXXXXX");
  ck_assert_ptr_nonnull(mkdtemp(tmpdir));
}

static void teardown(void) {
  char cmd[256];
  snprintf(cmd, sizeof cmd, "rm -rf '%s'", tmpdir);
  if (system(cmd) != 0) fprintf(stderr, "could not remove %s\n", tmpdir);
}

static const float *blob_values(const Crema__BlobProto *b, size_t *n) {
  *n = b->n_data;
  return b->data;
}

/* Every layer of a with blobs appears in b with equal blobs (shape counts and values). */
static void assert_same_weights(const Crema__NetParameter *a, const Crema__NetParameter *b) {
  int compared = 0;
  for (size_t i = 0; i < a->n_layer; i++) {
    const Crema__LayerParameter *la = a->layer[i];
    if (!la->n_blobs) continue;
    const Crema__LayerParameter *lb = NULL;
    for (size_t j = 0; j < b->n_layer && !lb; j++)
      if (!strcmp(b->layer[j]->name, la->name)) lb = b->layer[j];
    ck_assert_msg(lb != NULL, "layer %s missing", la->name);
    ck_assert_uint_eq(la->n_blobs, lb->n_blobs);
    for (size_t k = 0; k < la->n_blobs; k++) {
      size_t na, nb;
      const float *va = blob_values(la->blobs[k], &na), *vb = blob_values(lb->blobs[k], &nb);
      ck_assert_uint_eq(na, nb);
      ck_assert_msg(!memcmp(va, vb, na * sizeof *va), "layer %s blob %zu differs", la->name, k);
      compared++;
    }
  }
  ck_assert_int_gt(compared, 0);
}

START_TEST(caffe_written_snapshots) {
  crema_error err;
  Crema__NetParameter *h5 = NULL, *bin = NULL;
  if (!crema_hdf5_available()) {
    ck_assert_int_eq(crema_read_net_param(CW "/lenet_h5_iter_50.caffemodel.h5", &h5, &err), -1);
    ck_assert_msg(strstr(err.msg, "libhdf5-dev"), "%s", err.msg);
    return;
  }
  /* Same run, same seed: Caffe's HDF5 and binaryproto snapshots hold the same weights. */
  ck_assert_msg(crema_read_net_param(CW "/lenet_h5_iter_50.caffemodel.h5", &h5, &err) == 0, "%s", err.msg);
  ck_assert_msg(crema_read_net_param(CW "/lenet_iter_50.caffemodel", &bin, &err) == 0, "%s", err.msg);
  assert_same_weights(bin, h5);
  assert_same_weights(h5, bin);
  /* Caffe writes a group for every layer, blobs or not, with the blobs' N-d shapes. */
  ck_assert_uint_eq(h5->n_layer, 9);
  for (size_t i = 0; i < h5->n_layer; i++)
    if (!strcmp(h5->layer[i]->name, "conv2")) {
      ck_assert_uint_eq(h5->layer[i]->blobs[0]->shape->n_dim, 4);
      ck_assert_int_eq(h5->layer[i]->blobs[0]->shape->dim[1], 20);
    }
  /* The solverstate: iteration, learned_net and the momentum history of the binary one. */
  Crema__SolverState *sh = NULL, *sb = NULL;
  ck_assert_msg(crema_hdf5_read_solverstate(CW "/lenet_h5_iter_50.solverstate.h5", &sh, &err) == 0, "%s",
                err.msg);
  ck_assert_msg(crema_read_binary_message(CW "/lenet_iter_50.solverstate", &crema__solver_state__descriptor,
                                          (ProtobufCMessage **)&sb, &err) == 0,
                "%s", err.msg);
  ck_assert_int_eq(sh->iter, 50);
  ck_assert_int_eq(sh->current_step, 0);
  ck_assert_str_eq(sh->learned_net, "lenet_h5_iter_50.caffemodel.h5");
  ck_assert_uint_eq(sh->n_history, sb->n_history);
  for (size_t k = 0; k < sh->n_history; k++) {
    ck_assert_uint_eq(sh->history[k]->n_data, sb->history[k]->n_data);
    ck_assert(!memcmp(sh->history[k]->data, sb->history[k]->data, sb->history[k]->n_data * sizeof(float)));
  }
  crema_message_free(sh);
  crema_message_free(sb);
  crema_message_free(h5);
  crema_message_free(bin);
}
END_TEST

/* Caffe's LeNet with the data layer swapped for DummyData: the same parameters. */
static const char *LENET =
    "net_param { name: 'LeNet'"
    " layer { name: 'mnist' type: 'DummyData' top: 'data' top: 'label' dummy_data_param {"
    "   shape { dim: 8 dim: 1 dim: 28 dim: 28 } shape { dim: 8 }"
    "   data_filler { type: 'uniform' } data_filler { type: 'constant' value: 3 } } }"
    " layer { name: 'conv1' type: 'Convolution' bottom: 'data' top: 'conv1'"
    "   convolution_param { num_output: 20 kernel_size: 5 weight_filler { type: 'xavier' } } }"
    " layer { name: 'pool1' type: 'Pooling' bottom: 'conv1' top: 'pool1' pooling_param { pool: MAX "
    "kernel_size: 2 "
    "stride: 2 } }"
    " layer { name: 'conv2' type: 'Convolution' bottom: 'pool1' top: 'conv2'"
    "   convolution_param { num_output: 50 kernel_size: 5 weight_filler { type: 'xavier' } } }"
    " layer { name: 'pool2' type: 'Pooling' bottom: 'conv2' top: 'pool2' pooling_param { pool: MAX "
    "kernel_size: 2 "
    "stride: 2 } }"
    " layer { name: 'ip1' type: 'InnerProduct' bottom: 'pool2' top: 'ip1' inner_product_param { num_output: "
    "500 "
    "weight_filler { type: 'xavier' } } }"
    " layer { name: 'relu1' type: 'ReLU' bottom: 'ip1' top: 'ip1' }"
    " layer { name: 'ip2' type: 'InnerProduct' bottom: 'ip1' top: 'ip2' inner_product_param { num_output: 10 "
    "weight_filler { type: 'xavier' } } }"
    " layer { name: 'loss' type: 'SoftmaxWithLoss' bottom: 'ip2' bottom: 'label' top: 'loss' } }"
    " base_lr: 0.01 momentum: 0.9 weight_decay: 0.0005 lr_policy: 'inv' gamma: 0.0001 power: 0.75 ";

/* Caffe's .solverstate.h5 resumes in crema (weights from the .caffemodel.h5 beside it), and
 * crema's binaryproto snapshot of that state equals the binaryproto state Caffe wrote. */
START_TEST(caffe_h5_state_resumes) {
  if (!crema_hdf5_available()) return;
  crema_error err;
  char text[4096];
  snprintf(text, sizeof text, "%s snapshot_prefix: '%s/again'", LENET, tmpdir);
  Crema__SolverParameter *p = test_solver_param(text);
  crema_solver_options opt;
  memset(&opt, 0, sizeof opt);
  opt.max_iter = 52;
  crema_solver *s = NULL;
  ck_assert_msg(crema_solver_create(p, &opt, &s, &err) == 0, "%s", err.msg);
  ck_assert_msg(crema_solver_restore(s, CW "/lenet_h5_iter_50.solverstate.h5", &err) == 0, "%s", err.msg);
  ck_assert_int_eq(crema_solver_iter(s), 50);
  ck_assert_msg(crema_solver_snapshot(s, &err) == 0, "%s", err.msg);
  char path[256];
  snprintf(path, sizeof path, "%s/again_iter_50.solverstate", tmpdir);
  Crema__SolverState *mine = NULL, *caffe = NULL;
  ck_assert_int_eq(
      crema_read_binary_message(path, &crema__solver_state__descriptor, (ProtobufCMessage **)&mine, &err), 0);
  ck_assert_int_eq(crema_read_binary_message(CW "/lenet_iter_50.solverstate",
                                             &crema__solver_state__descriptor, (ProtobufCMessage **)&caffe,
                                             &err),
                   0);
  ck_assert_int_eq(mine->iter, caffe->iter);
  ck_assert_uint_eq(mine->n_history, caffe->n_history);
  for (size_t k = 0; k < mine->n_history; k++)
    ck_assert(
        !memcmp(mine->history[k]->data, caffe->history[k]->data, caffe->history[k]->n_data * sizeof(float)));
  Crema__NetParameter *w = NULL, *cw = NULL;
  snprintf(path, sizeof path, "%s/again_iter_50.caffemodel", tmpdir);
  ck_assert_int_eq(crema_read_net_param(path, &w, &err), 0);
  ck_assert_int_eq(crema_read_net_param(CW "/lenet_iter_50.caffemodel", &cw, &err), 0);
  assert_same_weights(cw, w);
  /* And it trains on. */
  ck_assert_msg(crema_solver_solve(s, &err) == 0, "%s", err.msg);
  ck_assert_int_eq(crema_solver_iter(s), 52);
  crema_message_free(w);
  crema_message_free(cw);
  crema_message_free(mine);
  crema_message_free(caffe);
  crema_solver_free(s);
  crema_message_free(p);
}
END_TEST

/* crema writes Caffe's layout; `crema upgrade` converts both ways. */
START_TEST(write_and_upgrade_round_trip) {
  if (!crema_hdf5_available()) return;
  crema_error err;
  char h5[256], back[256], cmd[1024];
  snprintf(h5, sizeof h5, "%s/lenet.caffemodel.h5", tmpdir);
  snprintf(back, sizeof back, "%s/lenet.caffemodel", tmpdir);
  snprintf(cmd, sizeof cmd,
           "'%s/crema' upgrade '%s/lenet_iter_50.caffemodel' '%s' >/dev/null && "
           "'%s/crema' upgrade '%s' '%s' >/dev/null",
           CREMA_BIN_DIR, CW, h5, CREMA_BIN_DIR, h5, back);
  ck_assert_int_eq(system(cmd), 0);
  Crema__NetParameter *a = NULL, *b = NULL, *c = NULL;
  ck_assert_int_eq(crema_read_net_param(CW "/lenet_iter_50.caffemodel", &a, &err), 0);
  ck_assert_msg(crema_read_net_param(h5, &b, &err) == 0, "%s", err.msg);
  ck_assert_msg(crema_read_net_param(back, &c, &err) == 0, "%s", err.msg);
  assert_same_weights(a, b);
  assert_same_weights(a, c);
  /* One group per layer, like Caffe's file. */
  Crema__NetParameter *caffe = NULL;
  ck_assert_int_eq(crema_read_net_param(CW "/lenet_h5_iter_50.caffemodel.h5", &caffe, &err), 0);
  ck_assert_uint_eq(b->n_layer, caffe->n_layer);
  for (size_t i = 0; i < b->n_layer; i++) ck_assert_str_eq(b->layer[i]->name, caffe->layer[i]->name);
  crema_message_free(caffe);
  crema_message_free(a);
  crema_message_free(b);
  crema_message_free(c);
}
END_TEST

/* Writes a file with `rows` rows: data (rows, 2, 3) = 100 * file + row, label (rows) = row. */
static void write_h5(const char *path, int file, int rows) {
  crema_blob *d = blob_of(3, (int[]){rows, 2, 3}), *lab = blob_of(1, (int[]){rows});
  for (int r = 0; r < rows; r++) {
    for (int k = 0; k < 6; k++) d->data[r * 6 + k] = (float)(100 * file + r);
    lab->data[r] = (float)r;
  }
  char text[512];
  snprintf(text, sizeof text, "name: 'out' type: 'HDF5Output' hdf5_output_param { file_name: '%s' }", path);
  crema_blob *b[] = {d, lab};
  run r;
  run_setup(&r, text, 2, b, 0);
  run_forward(&r);
  run_forward(&r); /* a second pass replaces the datasets (Caffe fails here) */
  run_free(&r);
  free_blobs(2, b);
}

START_TEST(hdf5_output_then_data) {
  if (!crema_hdf5_available()) {
    run r;
    crema_error err;
    ck_assert_int_eq(
        run_try(&r, "name: 'd' type: 'HDF5Data' top: 'data' hdf5_data_param { source: 'x' batch_size: 1 }", 0,
                NULL, 1, &err),
        -1);
    ck_assert_msg(strstr(err.msg, "libhdf5-dev"), "%s", err.msg);
    run_free(&r);
    return;
  }
  char a[256], b[256], list[256], text[512];
  snprintf(a, sizeof a, "%s/a.h5", tmpdir);
  snprintf(b, sizeof b, "%s/b.h5", tmpdir);
  snprintf(list, sizeof list, "%s/list.txt", tmpdir);
  write_h5(a, 1, 5);
  write_h5(b, 2, 3);
  FILE *f = fopen(list, "w");
  fprintf(f, "a.h5\n%s\n\n", b); /* relative (beside the list) and absolute */
  fclose(f);
  /* In order: 5 rows of a, 3 of b, loop. */
  snprintf(
      text, sizeof text,
      "name: 'd' type: 'HDF5Data' top: 'data' top: 'label' hdf5_data_param { source: '%s' batch_size: 4 }",
      list);
  run r;
  run_setup(&r, text, 0, NULL, 2);
  ck_assert_int_eq(r.top[0]->num_axes, 3);
  ck_assert_int_eq(r.top[0]->shape[0], 4);
  ck_assert_int_eq(r.top[0]->shape[2], 3);
  const float want[] = {100, 101, 102, 103, 104, 200, 201, 202, 100, 101, 102, 103};
  for (int batch = 0; batch < 3; batch++) {
    run_forward(&r);
    for (int i = 0; i < 4; i++) {
      ck_assert_float_eq(r.top[0]->data[i * 6 + 5], want[batch * 4 + i]);
      ck_assert_float_eq(r.top[1]->data[i], fmodf(want[batch * 4 + i], 100.0f));
    }
  }
  run_free(&r);
  /* Shuffled: each pass of 8 rows is a permutation of them; set_position(k) continues like a
   * layer that handed out k rows. */
  snprintf(text, sizeof text,
           "name: 'd' type: 'HDF5Data' top: 'data' top: 'label' hdf5_data_param { source: '%s' batch_size: 8 "
           "shuffle: true }",
           list);
  run_setup(&r, text, 0, NULL, 2);
  float seen[3][8];
  for (int pass = 0; pass < 3; pass++) {
    run_forward(&r);
    int count[2][5] = {{0}};
    for (int i = 0; i < 8; i++) {
      const int v = (int)r.top[0]->data[i * 6];
      seen[pass][i] = (float)v;
      count[v / 100 - 1][v % 100]++;
    }
    for (int i = 0; i < 5; i++) ck_assert_int_eq(count[0][i], 1);
    for (int i = 0; i < 3; i++) ck_assert_int_eq(count[1][i], 1);
  }
  ck_assert_msg(memcmp(seen[0], seen[1], sizeof seen[0]) || memcmp(seen[1], seen[2], sizeof seen[0]),
                "shuffle gave the same order three times");
  run r2;
  run_setup(&r2, text, 0, NULL, 2);
  crema_error err;
  ck_assert_int_eq(r2.l->ops->set_position(r2.l, 8, &err), 0);
  ck_assert_uint_eq(r2.l->ops->get_position(r2.l), 8);
  run_forward(&r2);
  for (int i = 0; i < 8; i++) ck_assert_float_eq(r2.top[0]->data[i * 6], seen[1][i]);
  run_free(&r2);
  run_free(&r);
  /* Errors: a top with no dataset of its name, a missing list. */
  snprintf(
      text, sizeof text,
      "name: 'd' type: 'HDF5Data' top: 'data' top: 'target' hdf5_data_param { source: '%s' batch_size: 2 }",
      list);
  ck_assert_int_eq(run_try(&r, text, 0, NULL, 2, &err), -1);
  ck_assert_msg(strstr(err.msg, "no dataset \"target\""), "%s", err.msg);
  run_free(&r);
  ck_assert_int_eq(
      run_try(&r,
              "name: 'd' type: 'HDF5Data' top: 'data' hdf5_data_param { source: '/nonexistent/l.txt' "
              "batch_size: 2 }",
              0, NULL, 1, &err),
      -1);
  ck_assert_msg(strstr(err.msg, "/nonexistent/l.txt"), "%s", err.msg);
  run_free(&r);
}
END_TEST

/* A linear regression net learns y = w.x + b from HDF5Data (Caffe's HDF5 regression use). */
START_TEST(regression_from_hdf5) {
  if (!crema_hdf5_available()) return;
  char path[256], list[256], text[2048];
  snprintf(path, sizeof path, "%s/reg.h5", tmpdir);
  snprintf(list, sizeof list, "%s/reg.txt", tmpdir);
  const int n = 256;
  crema_blob *x = blob_of(2, (int[]){n, 4}), *y = blob_of(2, (int[]){n, 1});
  gradcheck_fill_gaussian(x, 1.0f, 3);
  const float w[4] = {0.5f, -1.0f, 2.0f, 0.25f};
  for (int i = 0; i < n; i++) {
    y->data[i] = 0.3f;
    for (int k = 0; k < 4; k++) y->data[i] += w[k] * x->data[i * 4 + k];
  }
  crema_error err;
  crema_hdf5_writer *wr = NULL;
  ck_assert_msg(crema_hdf5_writer_open(path, &wr, &err) == 0, "%s", err.msg);
  ck_assert_int_eq(crema_hdf5_writer_put(wr, "data", 2, x->shape, x->data, &err), 0);
  ck_assert_int_eq(crema_hdf5_writer_put(wr, "target", 2, y->shape, y->data, &err), 0);
  crema_hdf5_writer_close(wr);
  FILE *f = fopen(list, "w");
  fprintf(f, "%s\n", path);
  fclose(f);
  snprintf(
      text, sizeof text,
      "net_param { layer { name: 'in' type: 'HDF5Data' top: 'data' top: 'target' hdf5_data_param { source: "
      "'%s' "
      "batch_size: 32 shuffle: true } }"
      " layer { name: 'fc' type: 'InnerProduct' bottom: 'data' top: 'fc' inner_product_param { num_output: 1 "
      "weight_filler { type: 'gaussian' std: 0.1 } } }"
      " layer { name: 'loss' type: 'EuclideanLoss' bottom: 'fc' bottom: 'target' top: 'loss' } }"
      " base_lr: 0.05 momentum: 0.9 lr_policy: 'fixed' max_iter: 150 display: 0 snapshot_after_train: false "
      "snapshot_prefix: '%s/reg' average_loss: 10",
      list, tmpdir);
  Crema__SolverParameter *p = test_solver_param(text);
  crema_solver_options opt;
  memset(&opt, 0, sizeof opt);
  crema_solver *s = NULL;
  ck_assert_msg(crema_solver_create(p, &opt, &s, &err) == 0, "%s", err.msg);
  ck_assert_msg(crema_solver_step(s, 1, &err) == 0, "%s", err.msg);
  const float first = crema_solver_smoothed_loss(s);
  ck_assert_msg(crema_solver_solve(s, &err) == 0, "%s", err.msg);
  const float last = crema_solver_smoothed_loss(s);
  fprintf(stderr, "HDF5 regression: loss %g -> %g\n", (double)first, (double)last);
  ck_assert_msg(last < 1e-3f * first && last < 1e-3f, "loss %g -> %g", (double)first, (double)last);
  const crema_blob *wl = crema_net_param_at(crema_solver_net(s), 0)->blob;
  for (int k = 0; k < 4; k++) ck_assert_float_eq_tol(wl->data[k], w[k], 0.01f);
  crema_solver_free(s);
  crema_message_free(p);
  free_blobs(1, &x);
  free_blobs(1, &y);
}
END_TEST

int main(void) {
  Suite *s = suite_create("hdf5");
  TCase *tc = tcase_create("core");
  tcase_add_checked_fixture(tc, setup, teardown);
  tcase_set_timeout(tc, 300);
  tcase_add_test(tc, caffe_written_snapshots);
  tcase_add_test(tc, caffe_h5_state_resumes);
  tcase_add_test(tc, write_and_upgrade_round_trip);
  tcase_add_test(tc, hdf5_output_then_data);
  tcase_add_test(tc, regression_from_hdf5);
  suite_add_tcase(s, tc);
  return test_run_suite(s);
}
