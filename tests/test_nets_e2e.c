/* test_nets_e2e.c -- whole nets from the Caffe examples users bring, trained end to end:
 *  - a siamese net as Caffe's mnist_siamese example builds it (pair_data sliced into two
 *    LeNet towers that share every weight by ParamSpec name, ContrastiveLoss), trained on
 *    Fashion-MNIST pairs: the loss falls;
 *  - the FCN-style net of tests/data/fcn_tiny.prototxt (trunk, Deconvolution, Crop, Eltwise
 *    skip) trained on generated squares-on-noise segmentation: the loss falls and the pixels
 *    are labelled better than by the majority class.
 * Both read their data through HDF5Data (needs crema built with HDF5, as CI is). */
#include <check.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "support/run.h"
#include "base/rng.h"
#include "net/net.h"
#include "proto/hdf5_io.h"
#include "proto/io.h"
#include "solver/solver.h"
#include "support/textproto.h"

static char tmpdir[128];

static void setup(void) {
  snprintf(tmpdir, sizeof tmpdir, "/tmp/crema_test_e2e_XXXXXX");
  ck_assert_ptr_nonnull(mkdtemp(tmpdir));
}

static void teardown(void) {
  char cmd[256];
  snprintf(cmd, sizeof cmd, "rm -rf '%s'", tmpdir);
  if (system(cmd) != 0) fprintf(stderr, "could not remove %s\n", tmpdir);
}

/* Reads n records of `rec` bytes after a `header`-byte header from a gzipped IDX file. */
static unsigned char *read_idx(const char *path, size_t header, size_t rec, size_t n) {
  char cmd[512];
  snprintf(cmd, sizeof cmd, "gzip -dc '%s'", path);
  FILE *p = popen(cmd, "r");
  ck_assert_ptr_nonnull(p);
  unsigned char *buf = malloc(header + rec * n);
  const size_t got = fread(buf, 1, header + rec * n, p);
  pclose(p);
  ck_assert_msg(got == header + rec * n, "%s: read %zu bytes", path, got);
  return buf;
}

/* Writes datasets to a new .h5 file and a list file naming it; returns the list's path. */
static void write_h5(const char *name, int n_sets, const char **names, const int *ranks,
                     const int shapes[][4], float *const *data, char *list, size_t list_size) {
  char path[256];
  crema_error err;
  snprintf(path, sizeof path, "%s/%s.h5", tmpdir, name);
  snprintf(list, list_size, "%s/%s.txt", tmpdir, name);
  crema_hdf5_writer *w = NULL;
  ck_assert_msg(crema_hdf5_writer_open(path, &w, &err) == 0, "%s", err.msg);
  for (int i = 0; i < n_sets; i++)
    ck_assert_msg(crema_hdf5_writer_put(w, names[i], ranks[i], shapes[i], data[i], &err) == 0, "%s", err.msg);
  crema_hdf5_writer_close(w);
  FILE *f = fopen(list, "w");
  fprintf(f, "%s\n", path);
  fclose(f);
}

static crema_solver *make_solver(const char *text) {
  Crema__SolverParameter *p = test_solver_param(text);
  crema_solver_options opt;
  memset(&opt, 0, sizeof opt);
  crema_solver *s = NULL;
  crema_error err;
  ck_assert_msg(crema_solver_create(p, &opt, &s, &err) == 0, "%s", err.msg);
  crema_message_free(p);
  return s;
}

/* One LeNet tower of Caffe's mnist_siamese_train_test.prototxt; suffix "" or "_p", every
 * parameter named so both towers share it. */
static int tower(char *out, size_t size, const char *in, const char *sfx) {
  return snprintf(out, size,
                  "layer { name: 'conv1%s' type: 'Convolution' bottom: '%s' top: 'conv1%s' param { name: "
                  "'conv1_w' lr_mult: 1 } "
                  "param { name: 'conv1_b' lr_mult: 2 } convolution_param { num_output: 20 kernel_size: 5 "
                  "weight_filler { type: 'xavier' } } }"
                  "layer { name: 'pool1%s' type: 'Pooling' bottom: 'conv1%s' top: 'pool1%s' pooling_param { "
                  "pool: MAX kernel_size: 2 "
                  "stride: 2 } }"
                  "layer { name: 'conv2%s' type: 'Convolution' bottom: 'pool1%s' top: 'conv2%s' param { "
                  "name: 'conv2_w' lr_mult: 1 } "
                  "param { name: 'conv2_b' lr_mult: 2 } convolution_param { num_output: 50 kernel_size: 5 "
                  "weight_filler { type: 'xavier' } } }"
                  "layer { name: 'pool2%s' type: 'Pooling' bottom: 'conv2%s' top: 'pool2%s' pooling_param { "
                  "pool: MAX kernel_size: 2 "
                  "stride: 2 } }"
                  "layer { name: 'ip1%s' type: 'InnerProduct' bottom: 'pool2%s' top: 'ip1%s' param { name: "
                  "'ip1_w' lr_mult: 1 } "
                  "param { name: 'ip1_b' lr_mult: 2 } inner_product_param { num_output: 500 weight_filler { "
                  "type: 'xavier' } } }"
                  "layer { name: 'relu1%s' type: 'ReLU' bottom: 'ip1%s' top: 'ip1%s' }"
                  "layer { name: 'ip2%s' type: 'InnerProduct' bottom: 'ip1%s' top: 'ip2%s' param { name: "
                  "'ip2_w' lr_mult: 1 } "
                  "param { name: 'ip2_b' lr_mult: 2 } inner_product_param { num_output: 10 weight_filler { "
                  "type: 'xavier' } } }"
                  "layer { name: 'feat%s' type: 'InnerProduct' bottom: 'ip2%s' top: 'feat%s' param { name: "
                  "'feat_w' lr_mult: 1 } "
                  "param { name: 'feat_b' lr_mult: 2 } inner_product_param { num_output: 2 weight_filler { "
                  "type: 'xavier' } } }",
                  sfx, in, sfx, sfx, sfx, sfx, sfx, sfx, sfx, sfx, sfx, sfx, sfx, sfx, sfx, sfx, sfx, sfx,
                  sfx, sfx, sfx, sfx, sfx, sfx);
}

START_TEST(siamese_contrastive_fashion_mnist) {
  if (!crema_hdf5_available()) return;
  const char *fm = getenv("CREMA_FASHION_DIR");
  if (!fm) fm = "/usr/share/datasets/fashion-mnist";
  char ipath[256], lpath[256];
  snprintf(ipath, sizeof ipath, "%s/train-images-idx3-ubyte.gz", fm);
  snprintf(lpath, sizeof lpath, "%s/train-labels-idx1-ubyte.gz", fm);
  ck_assert_msg(access(ipath, R_OK) == 0, "Fashion-MNIST not found in %s (package dataset-fashion-mnist)",
                fm);
  enum { IMAGES = 2000, PAIRS = 2048, PIX = 784 };
  unsigned char *img = read_idx(ipath, 16, PIX, IMAGES), *lab = read_idx(lpath, 8, 1, IMAGES);
  float *pairs = malloc((size_t)PAIRS * 2 * PIX * sizeof(float)), *sim = malloc(PAIRS * sizeof(float));
  crema_rng r;
  crema_rng_seed(&r, 17, 0);
  for (int i = 0; i < PAIRS; i++) {
    const int a = (int)crema_rng_below(&r, IMAGES);
    int b = (int)crema_rng_below(&r, IMAGES);
    if (crema_rng_bernoulli(&r, 0.5f)) /* half the pairs from the same class */
      while (lab[8 + b] != lab[8 + a]) b = (int)crema_rng_below(&r, IMAGES);
    sim[i] = lab[8 + a] == lab[8 + b] ? 1.0f : 0.0f;
    for (int k = 0; k < PIX; k++) {
      pairs[(size_t)i * 2 * PIX + k] = img[16 + (size_t)a * PIX + k] * 0.00390625f;
      pairs[(size_t)i * 2 * PIX + PIX + k] = img[16 + (size_t)b * PIX + k] * 0.00390625f;
    }
  }
  char list[256];
  const char *names[] = {"pair_data", "sim"};
  const int ranks[] = {4, 1}, shapes[][4] = {{PAIRS, 2, 28, 28}, {PAIRS}};
  float *data[] = {pairs, sim};
  write_h5("pairs", 2, names, ranks, shapes, data, list, sizeof list);
  free(pairs);
  free(sim);
  free(img);
  free(lab);
  static char text[16384];
  size_t n = (size_t)snprintf(
      text, sizeof text,
      "net_param { name: 'mnist_siamese_train_test'"
      " layer { name: 'pair_data' type: 'HDF5Data' top: 'pair_data' top: 'sim' hdf5_data_param { source: "
      "'%s' "
      "batch_size: 64 shuffle: true } }"
      " layer { name: 'slice_pair' type: 'Slice' bottom: 'pair_data' top: 'data' top: 'data_p' slice_param { "
      "slice_dim: 1 slice_point: 1 } }",
      list);
  n += (size_t)tower(text + n, sizeof text - n, "data", "");
  n += (size_t)tower(text + n, sizeof text - n, "data_p", "_p");
  snprintf(
      text + n, sizeof text - n,
      " layer { name: 'loss' type: 'ContrastiveLoss' bottom: 'feat' bottom: 'feat_p' bottom: 'sim' top: "
      "'loss' "
      "contrastive_loss_param { margin: 1 } } }"
      " base_lr: 0.01 momentum: 0.9 weight_decay: 0 lr_policy: 'inv' gamma: 0.0001 power: 0.75 max_iter: %d "
      "display: 0 average_loss: 20 random_seed: 3 snapshot_after_train: false snapshot_prefix: '%s/siamese'",
      getenv("CREMA_SANITIZED") ? 100 : 200, tmpdir); /* shorter under the sanitizers */
  crema_solver *s = make_solver(text);
  crema_net *net = crema_solver_net(s);
  /* The towers share every weight: one blob, owned by the first tower. */
  const char *shared[][2] = {
      {"conv1", "conv1_p"}, {"conv2", "conv2_p"}, {"ip1", "ip1_p"}, {"feat", "feat_p"}};
  for (int i = 0; i < 4; i++) {
    const crema_layer *a = crema_net_layer(net, crema_net_layer_index(net, shared[i][0])),
                      *b = crema_net_layer(net, crema_net_layer_index(net, shared[i][1]));
    ck_assert_ptr_eq(a->blobs[0], b->blobs[0]);
    ck_assert_ptr_eq(a->blobs[1], b->blobs[1]);
  }
  ck_assert_int_eq(crema_net_num_params(net), 10);
  crema_error err;
  ck_assert_msg(crema_solver_step(s, 20, &err) == 0, "%s", err.msg);
  const float first = crema_solver_smoothed_loss(s);
  ck_assert_msg(crema_solver_solve(s, &err) == 0, "%s", err.msg);
  const float last = crema_solver_smoothed_loss(s);
  fprintf(stderr,
          "siamese (ContrastiveLoss, shared towers): loss over 20 iterations %.4f at start, %.4f after 200\n",
          (double)first, (double)last);
  ck_assert_msg(last < (getenv("CREMA_SANITIZED") ? 0.8f : 0.6f) * first,
                "siamese loss did not fall: %g -> %g", (double)first, (double)last);
  crema_solver_free(s);
}
END_TEST

START_TEST(fcn_trains_on_generated_segmentation) {
  if (!crema_hdf5_available()) return;
  enum { IMGS = 48, S = 32 };
  float *x = malloc((size_t)IMGS * 3 * S * S * sizeof(float)),
        *y = malloc((size_t)IMGS * S * S * sizeof(float));
  crema_rng r;
  crema_rng_seed(&r, 23, 0);
  long fg = 0;
  for (int i = 0; i < IMGS; i++) {
    const int side = 8 + (int)crema_rng_below(&r, 10), top = (int)crema_rng_below(&r, S - side),
              left = (int)crema_rng_below(&r, S - side);
    for (int h = 0; h < S; h++)
      for (int w = 0; w < S; w++) {
        const bool in = h >= top && h < top + side && w >= left && w < left + side;
        y[((size_t)i * S + h) * S + w] = in ? 1.0f : 0.0f;
        fg += in;
        for (int c = 0; c < 3; c++)
          x[(((size_t)i * 3 + c) * S + h) * S + w] = crema_rng_gaussian(&r, 0.0f, 0.3f) + (in ? 1.0f : 0.0f);
      }
  }
  char list[256];
  const char *names[] = {"data", "label"};
  const int ranks[] = {4, 4}, shapes[][4] = {{IMGS, 3, S, S}, {IMGS, 1, S, S}};
  float *data[] = {x, y};
  write_h5("seg", 2, names, ranks, shapes, data, list, sizeof list);
  free(x);
  free(y);
  /* The deploy net of the oracle test, with HDF5Data for its input and a loss on top. */
  char *deploy = NULL;
  size_t len = 0;
  crema_error err;
  ck_assert_int_eq(crema_read_file(CREMA_TEST_DATA "/fcn_tiny.prototxt", &deploy, &len, &err), 0);
  const char *input = strstr(deploy, "layer { name: \"data\" type: \"Input\"");
  ck_assert_ptr_nonnull(input);
  const char *after = strchr(strstr(input, "} } }"), '\n');
  static char text[16384];
  snprintf(text, sizeof text,
           "net_param { layer { name: 'data' type: 'HDF5Data' top: 'data' top: 'label' hdf5_data_param { "
           "source: '%s' "
           "batch_size: 8 shuffle: true } }"
           " %s"
           " layer { name: 'loss' type: 'SoftmaxWithLoss' bottom: 'score' bottom: 'label' top: 'loss' }"
           " layer { name: 'acc' type: 'Accuracy' bottom: 'score' bottom: 'label' top: 'accuracy' } }"
           " base_lr: 0.01 momentum: 0.9 lr_policy: 'fixed' max_iter: 60 display: 0 average_loss: 10 "
           "random_seed: 5 "
           "snapshot_after_train: false snapshot_prefix: '%s/fcn'",
           list, after, tmpdir);
  free(deploy);
  crema_solver *s = make_solver(text);
  ck_assert_msg(crema_solver_step(s, 10, &err) == 0, "%s", err.msg);
  const float first = crema_solver_smoothed_loss(s);
  ck_assert_msg(crema_solver_solve(s, &err) == 0, "%s", err.msg);
  const float last = crema_solver_smoothed_loss(s);
  const crema_blob *acc = crema_net_blob_by_name(crema_solver_net(s), "accuracy");
  const double majority = 1.0 - (double)fg / ((double)IMGS * S * S);
  fprintf(stderr, "FCN: loss %.4f -> %.4f over 60 iterations, pixel accuracy %.3f (majority class %.3f)\n",
          (double)first, (double)last, (double)acc->data[0], majority);
  ck_assert_msg(last < 0.6f * first, "FCN loss did not fall: %g -> %g", (double)first, (double)last);
  ck_assert_msg(acc->data[0] > majority + 0.5 * (1.0 - majority), "pixel accuracy %g vs majority %g",
                (double)acc->data[0], majority);
  crema_solver_free(s);
}
END_TEST

int main(void) {
  Suite *s = suite_create("nets_e2e");
  TCase *tc = tcase_create("core");
  tcase_add_checked_fixture(tc, setup, teardown);
  tcase_set_timeout(tc, 600);
  tcase_add_test(tc, siamese_contrastive_fashion_mnist);
  tcase_add_test(tc, fcn_trains_on_generated_segmentation);
  suite_add_tcase(s, tc);
  return test_run_suite(s);
}
