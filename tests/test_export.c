/* test_export.c -- src/export and `crema export`.
 *
 * "surgery": the message passes on their own (deploy extraction, BatchNorm folding with
 * Caffe's stored factor, the ONNX writer's errors), outputs compared through crema's forward
 * pass.
 * "oracle": whole exports checked by tools crema did not write. For each net, the exported
 * deploy pair runs in crema and in OpenCV's Caffe importer, and model.onnx passes onnx.checker
 * and runs in OpenCV's ONNX importer (tests/oracle/onnx_check.py); every output must agree
 * with crema's forward pass of the UNEXPORTED net within 1e-4 of its largest magnitude, and
 * the folded net with the unfolded one within 1e-5 relative. Nets: LeNet trained by Caffe
 * (exported from a train_val reading an LMDB), a small net with BatchNorm + Scale + PReLU
 * trained here for 30 iterations, CaffeNet with random weights, and GoogLeNet from its
 * train_val (auxiliary classifiers pruned) with random weights.
 * Without python3 + numpy + cv2 + onnx the oracle tests FAIL with what to install. */
#include <check.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "base/rng.h"
#include "common/npy.h"
#include "export/export.h"
#include "net/net.h"
#include "support/run.h"
#include "support/textproto.h"

/* ---------------------------------------------------------------- surgery (no subprocess) */

static const char TRAIN_VAL[] =
    "name: 'tv'\n"
    "layer { name: 'd' type: 'MemoryData' top: 'data' top: 'label' include { phase: TRAIN }\n"
    "        memory_data_param { batch_size: 8 channels: 3 height: 12 width: 12 } }\n"
    "layer { name: 'd' type: 'MemoryData' top: 'data' top: 'label' include { phase: TEST }\n"
    "        transform_param { crop_size: 10 }\n"
    "        memory_data_param { batch_size: 4 channels: 3 height: 12 width: 12 } }\n"
    "layer { name: 'c1' type: 'Convolution' bottom: 'data' top: 'c1' convolution_param { num_output: 4 "
    "kernel_size: 3 } }\n"
    "layer { name: 'r1' type: 'ReLU' bottom: 'c1' top: 'c1' }\n"
    "layer { name: 'drop' type: 'Dropout' bottom: 'c1' top: 'c1d' }\n"
    "layer { name: 'aux' type: 'InnerProduct' bottom: 'c1d' top: 'aux' inner_product_param { num_output: 3 } "
    "}\n"
    "layer { name: 'aux_loss' type: 'SoftmaxWithLoss' bottom: 'aux' bottom: 'label' top: 'aux_loss' "
    "loss_weight: 0.3 }\n"
    "layer { name: 'fc' type: 'InnerProduct' bottom: 'c1d' top: 'fc' inner_product_param { num_output: 5 } "
    "}\n"
    "layer { name: 'acc' type: 'Accuracy' bottom: 'fc' bottom: 'label' top: 'acc' include { phase: TEST } }\n"
    "layer { name: 'loss' type: 'SoftmaxWithLoss' bottom: 'fc' bottom: 'label' top: 'loss' }\n";

START_TEST(deploy_from_train_val) {
  Crema__NetParameter *tv = test_net_param(TRAIN_VAL), *dep = NULL;
  crema_deploy_options opt = {.batch = 2};
  crema_deploy_report rep;
  crema_error err;
  ck_assert_msg(crema_export_deploy(tv, &opt, &dep, &rep, &err) == 0, "%s", err.msg);
  /* Input, c1, r1, fc, prob: the TRAIN data layer, Dropout, Accuracy, both losses and the
   * auxiliary head are gone */
  const char *types[] = {"Input", "Convolution", "ReLU", "InnerProduct", "Softmax"};
  ck_assert_uint_eq(dep->n_layer, 5);
  for (size_t i = 0; i < 5; i++) ck_assert_str_eq(dep->layer[i]->type, types[i]);
  const Crema__BlobShape *s = dep->layer[0]->input_param->shape[0];
  ck_assert_uint_eq(s->n_dim, 4);
  ck_assert_int_eq(s->dim[0], 2);
  ck_assert_int_eq(s->dim[1], 3);
  ck_assert_int_eq(s->dim[2], 10); /* crop size */
  ck_assert_int_eq(s->dim[3], 10);
  ck_assert_uint_eq(dep->layer[0]->n_top, 1);
  ck_assert_str_eq(dep->layer[2]->top[0], "c1");    /* in place stays in place */
  ck_assert_str_eq(dep->layer[3]->bottom[0], "c1"); /* Dropout's top renamed to its bottom */
  ck_assert_str_eq(dep->layer[4]->top[0], "prob");
  ck_assert_str_eq(dep->layer[4]->bottom[0], "fc");
  for (size_t i = 0; i < dep->n_layer; i++) ck_assert_uint_eq(dep->layer[i]->n_include, 0);
  ck_assert_str_eq(rep.output, "prob");
  ck_assert_int_eq(rep.pruned, 1);  /* aux */
  ck_assert_int_eq(rep.removed, 4); /* TRAIN data, drop, aux_loss, acc (loss -> prob is a replacement) */
  ck_assert_int_eq(rep.input_shape[2], 10);
  ck_assert_ptr_nonnull(rep.transform);
  ck_assert_int_eq(rep.transform->crop_size, 10);
  crema_deploy_report_free(&rep);
  crema_message_free(dep);
  crema_message_free(tv);
}
END_TEST

START_TEST(deploy_errors_name_the_layer) {
  Crema__NetParameter *tv =
      test_net_param("layer { name: 'd' type: 'MemoryData' top: 'data' top: 'label'\n"
                     "        memory_data_param { batch_size: 4 channels: 1 height: 4 width: 4 } }\n"
                     "layer { name: 'weird' type: 'Concat' bottom: 'data' bottom: 'label' top: 'cat' }\n");
  Crema__NetParameter *dep = NULL;
  crema_error err;
  ck_assert_int_ne(crema_export_deploy(tv, NULL, &dep, NULL, &err), 0);
  ck_assert_ptr_null(dep);
  ck_assert_msg(strstr(err.msg, "\"weird\"") && strstr(err.msg, "labels"), "%s", err.msg);
  crema_message_free(tv);
  tv = test_net_param("layer { name: 'd' type: 'Data' top: 'data' top: 'label'\n"
                      "        data_param { source: '/nonexistent/lmdb' batch_size: 4 } }\n");
  ck_assert_int_ne(crema_export_deploy(tv, NULL, &dep, NULL, &err), 0);
  ck_assert_msg(strstr(err.msg, "data layer \"d\"") && strstr(err.msg, "/nonexistent/lmdb"), "%s", err.msg);
  crema_message_free(tv);
}
END_TEST

START_TEST(deploy_reads_lmdb_shape) {
  Crema__NetParameter *tv = test_net_param(
      "layer { name: 'd' type: 'Data' top: 'data' top: 'label' transform_param { scale: 0.5 }\n"
      "        data_param { source: '" CREMA_TEST_DATA
      "/export/fmnist100_lmdb' batch_size: 4 backend: LMDB } }\n"
      "layer { name: 'ip' type: 'InnerProduct' bottom: 'data' top: 'ip' inner_product_param { num_output: 2 "
      "} }\n"
      "layer { name: 'loss' type: 'EuclideanLoss' bottom: 'ip' bottom: 'label' top: 'loss' }\n");
  Crema__NetParameter *dep = NULL;
  crema_deploy_report rep;
  crema_error err;
  ck_assert_msg(crema_export_deploy(tv, NULL, &dep, &rep, &err) == 0, "%s", err.msg);
  ck_assert_int_eq(rep.input_shape[0], 1);
  ck_assert_int_eq(rep.input_shape[1], 1);
  ck_assert_int_eq(rep.input_shape[2], 28);
  ck_assert_int_eq(rep.input_shape[3], 28);
  ck_assert_uint_eq(dep->n_layer, 2); /* a Euclidean loss leaves its prediction as the output */
  ck_assert_str_eq(rep.output, "ip");
  crema_deploy_report_free(&rep);
  crema_message_free(dep);
  crema_message_free(tv);
}
END_TEST

/* A model (net + blobs) from a deploy text: seeded random weights, then BatchNorm factors set
 * to `factor` (the statistics scaled to match, as Caffe's moving sums are). */
static Crema__NetParameter *random_model(const char *text, float factor) {
  Crema__NetParameter *p = test_net_param(text);
  crema_net_options o = {.phase = CREMA__PHASE__TEST, .seed = 3};
  crema_net *net = NULL;
  crema_error err;
  ck_assert_msg(crema_net_build(p, &o, &net, &err) == 0, "%s", err.msg);
  crema_net_fill_random_weights(net, 11);
  for (int i = 0; i < crema_net_num_layers(net); i++) {
    crema_layer *l = crema_net_layer(net, i);
    if (strcmp(l->ops->type, "BatchNorm")) continue;
    for (size_t c = 0; c < l->blobs[0]->count; c++) {
      l->blobs[0]->data[c] *= factor;
      l->blobs[1]->data[c] *= factor;
    }
    l->blobs[2]->data[0] = factor;
  }
  Crema__NetParameter *m = NULL;
  ck_assert_msg(crema_net_to_proto(net, false, &m, &err) == 0, "%s", err.msg);
  crema_net_free(net);
  crema_message_free(p);
  return m;
}

static const char BN_NET[] =
    "layer { name: 'in' type: 'Input' top: 'data' input_param { shape { dim: 2 dim: 3 dim: 7 dim: 7 } } }\n"
    "layer { name: 'c1' type: 'Convolution' bottom: 'data' top: 'c1' convolution_param { num_output: 4 "
    "kernel_size: 3 group: 1 } }\n"
    "layer { name: 'bn1' type: 'BatchNorm' bottom: 'c1' top: 'c1' batch_norm_param { eps: 0.001 } }\n"
    "layer { name: 's1' type: 'Scale' bottom: 'c1' top: 'c1' scale_param { bias_term: true } }\n"
    "layer { name: 'c2' type: 'Convolution' bottom: 'c1' top: 'c2' convolution_param { num_output: 6 "
    "kernel_size: 3 bias_term: false } }\n"
    "layer { name: 'bn2' type: 'BatchNorm' bottom: 'c2' top: 'b2' }\n"
    "layer { name: 'ip' type: 'InnerProduct' bottom: 'b2' top: 'ip' inner_product_param { num_output: 5 "
    "transpose: true } }\n"
    "layer { name: 'bn3' type: 'BatchNorm' bottom: 'ip' top: 'ip' }\n"
    "layer { name: 's3' type: 'Scale' bottom: 'ip' top: 'ip' }\n";

static void check_fold(float factor) {
  Crema__NetParameter *m = random_model(BN_NET, factor), *f = NULL;
  crema_fold_report rep;
  crema_error err;
  ck_assert_msg(crema_export_fold_batchnorm(m, &f, &rep, &err) == 0, "%s", err.msg);
  ck_assert_int_eq(rep.n_folded, 3);
  ck_assert_int_eq(rep.n_scale, 2);
  ck_assert_int_eq(rep.n_kept, 0);
  ck_assert_str_eq(rep.folded, "bn1+s1 into c1, bn2 into c2, bn3+s3 into ip");
  ck_assert_uint_eq(f->n_layer, 4);
  ck_assert_str_eq(f->layer[2]->top[0], "b2"); /* c2 now writes what bn2 wrote */
  ck_assert_uint_eq(f->layer[2]->n_blobs, 2);  /* and got a bias */
  ck_assert(f->layer[2]->convolution_param->bias_term);
  double rel = 1.0;
  ck_assert_msg(crema_export_compare(m, f, 5, &rel, &err) == 0, "%s", err.msg);
  ck_assert_msg(rel < 1e-5, "folded vs unfolded (factor %g): relative difference %g", (double)factor, rel);
  fprintf(stderr, "fold, factor %g: max relative difference %.2g\n", (double)factor, rel);
  crema_message_free(f);
  crema_message_free(m);
}

START_TEST(fold_matches_unfolded) {
  check_fold(1.0f);
  check_fold(37.5f); /* statistics stored as sums: divided by the factor */
}
END_TEST

START_TEST(fold_factor_zero_and_kept) {
  /* factor 0: Caffe uses scale 0, so mean = var = 0 and y = x / sqrt(eps) */
  Crema__NetParameter *m = random_model(BN_NET, 0.0f), *f = NULL;
  crema_error err;
  ck_assert_msg(crema_export_fold_batchnorm(m, &f, NULL, &err) == 0, "%s", err.msg);
  double rel = 1.0;
  ck_assert_msg(crema_export_compare(m, f, 5, &rel, &err) == 0, "%s", err.msg);
  ck_assert_msg(rel < 1e-5, "factor 0: relative difference %g", rel);
  crema_message_free(f);
  crema_message_free(m);
  /* the convolution also feeds a pooling layer: folding would change what the pooling sees */
  m = random_model(
      "layer { name: 'in' type: 'Input' top: 'data' input_param { shape { dim: 1 dim: 2 dim: 6 "
      "dim: 6 } } }\n"
      "layer { name: 'c' type: 'Convolution' bottom: 'data' top: 'c' convolution_param { "
      "num_output: 3 kernel_size: 1 } }\n"
      "layer { name: 'p' type: 'Pooling' bottom: 'c' top: 'p' pooling_param { kernel_size: 2 } }\n"
      "layer { name: 'bn' type: 'BatchNorm' bottom: 'c' top: 'bn' }\n"
      "layer { name: 'bn_b' type: 'BatchNorm' bottom: 'p' top: 'p' batch_norm_param { "
      "use_global_stats: false } }\n",
      2.0f);
  crema_fold_report rep;
  ck_assert_msg(crema_export_fold_batchnorm(m, &f, &rep, &err) == 0, "%s", err.msg);
  ck_assert_int_eq(rep.n_folded, 0);
  ck_assert_int_eq(rep.n_kept, 2);
  ck_assert_msg(strstr(rep.kept, "bn: the layer before it also feeds other layers") &&
                    strstr(rep.kept, "bn_b: it uses batch statistics"),
                "%s", rep.kept);
  ck_assert_uint_eq(f->n_layer, m->n_layer);
  crema_message_free(f);
  crema_message_free(m);
}
END_TEST

static char tmpdir[128];

START_TEST(onnx_refuses_what_it_cannot_express) {
  Crema__NetParameter *m = random_model(
      "layer { name: 'in' type: 'Input' top: 'data' input_param { shape { dim: 1 dim: 4 dim: 5 dim: 5 } } }\n"
      "layer { name: 'norm' type: 'LRN' bottom: 'data' top: 'n' lrn_param { norm_region: WITHIN_CHANNEL } "
      "}\n",
      1.0f);
  char path[256];
  snprintf(path, sizeof path, "%s/x.onnx", tmpdir);
  crema_error err;
  ck_assert_int_ne(crema_export_write_onnx(m, NULL, path, NULL, &err), 0);
  ck_assert_msg(strstr(err.msg, "layer \"norm\" (LRN) cannot be written as ONNX") &&
                    strstr(err.msg, "WITHIN"),
                "%s", err.msg);
  ck_assert_int_ne(access(path, F_OK), 0); /* nothing written */
  crema_message_free(m);
  m = random_model("layer { name: 'in' type: 'Input' top: 'data' input_param { shape { dim: 1 dim: 4 } } }\n"
                   "layer { name: 'am' type: 'ArgMax' bottom: 'data' top: 'a' }\n",
                   1.0f);
  ck_assert_int_ne(crema_export_write_onnx(m, NULL, path, NULL, &err), 0);
  ck_assert_msg(strstr(err.msg, "layer \"am\" (ArgMax)") && strstr(err.msg, "covers"), "%s", err.msg);
  crema_onnx_options o = {.opset = 11};
  crema_message_free(m);
  m = random_model(
      "layer { name: 'in' type: 'Input' top: 'data' input_param { shape { dim: 1 dim: 4 dim: 2 dim: 2 } } }\n"
      "layer { name: 'sm' type: 'Softmax' bottom: 'data' top: 'prob' }\n",
      1.0f);
  ck_assert_int_ne(crema_export_write_onnx(m, &o, path, NULL, &err), 0);
  ck_assert_msg(strstr(err.msg, "\"sm\"") && strstr(err.msg, "opset 13"), "%s", err.msg);
  o.opset = 13;
  int nodes = 0;
  ck_assert_msg(crema_export_write_onnx(m, &o, path, &nodes, &err) == 0, "%s", err.msg);
  ck_assert_int_eq(nodes, 1);
  crema_message_free(m);
}
END_TEST

/* ---------------------------------------------------------------- oracle (subprocesses) */

static const char *python;

static const char *find_python(void) {
  static const char *candidates[3] = {NULL, "/usr/bin/python3", "python3"};
  candidates[0] = getenv("CREMA_PYTHON");
  for (int i = 0; i < 3; i++) {
    char cmd[512];
    if (!candidates[i]) continue;
    snprintf(cmd, sizeof cmd, "%s -c 'import numpy, cv2, onnx' >/dev/null 2>&1", candidates[i]);
    if (system(cmd) == 0) return candidates[i];
  }
  return NULL;
}

static void setup(void) {
  snprintf(tmpdir, sizeof tmpdir, "/tmp/crema_test_export_XXXXXX");
  ck_assert_ptr_nonnull(mkdtemp(tmpdir));
}

static void setup_oracle(void) {
  setup();
  python = find_python();
  ck_assert_msg(python != NULL, "the export checks need python3 with numpy, cv2 and onnx: apt-get install "
                                "python3-opencv python3-numpy python3-onnx (or set CREMA_PYTHON)");
}

static void teardown(void) {
  char cmd[256];
  snprintf(cmd, sizeof cmd, "rm -rf '%s'", tmpdir);
  if (system(cmd) != 0) fprintf(stderr, "could not remove %s\n", tmpdir);
}

static void tail_of(const char *path, char *tail, size_t size) {
  tail[0] = '\0';
  FILE *f = fopen(path, "rb");
  if (!f) return;
  fseek(f, 0, SEEK_END);
  long n = ftell(f);
  fseek(f, n > (long)size - 1 ? n - (long)size + 1 : 0, SEEK_SET);
  size_t got = fread(tail, 1, size - 1, f);
  tail[got] = '\0';
  fclose(f);
}

/* Runs cmd in tmpdir, stdout to <what>.out, stderr to <what>.log; returns the exit status. */
static int run_in_tmp(const char *what, const char *cmd) {
  char full[8192];
  snprintf(full, sizeof full, "cd '%s' && %s >'%s.out' 2>'%s.log'", tmpdir, cmd, what, what);
  return system(full);
}

static void run_ok(const char *what, const char *cmd) {
  int rc = run_in_tmp(what, cmd);
  if (rc == 0) return;
  char log[256], tail[2048];
  snprintf(log, sizeof log, "%s/%s.log", tmpdir, what);
  tail_of(log, tail, sizeof tail);
  ck_abort_msg("%s failed (status %d): %s\n%s", what, rc, cmd, tail);
}

static char *slurp(const char *what, const char *ext) {
  static char buf[1 << 16];
  char path[256];
  snprintf(path, sizeof path, "%s/%s.%s", tmpdir, what, ext);
  FILE *f = fopen(path, "rb");
  ck_assert_ptr_nonnull(f);
  size_t n = fread(buf, 1, sizeof buf - 1, f);
  buf[n] = '\0';
  fclose(f);
  return buf;
}

static void make_input(const char *name, int c, int h, int w, float lo, float hi, uint64_t seed) {
  crema_blob *b = crema_blob_new();
  crema_error err;
  char path[256];
  snprintf(path, sizeof path, "%s/%s", tmpdir, name);
  ck_assert_int_eq(crema_blob_reshape4(b, 1, c, h, w, &err), 0);
  crema_rng r;
  crema_rng_seed(&r, seed, 9);
  for (size_t i = 0; i < b->count; i++) b->data[i] = crema_rng_uniform(&r, lo, hi);
  ck_assert_msg(crema_npy_write(path, b, &err) == 0, "%s", err.msg);
  crema_blob_free(b);
}

/* max |a - b| / max |b| over two .npy files in tmpdir (b is the reference). */
static double rel_diff(const char *what, const char *a_name, const char *b_name) {
  crema_blob *a = crema_blob_new(), *b = crema_blob_new();
  crema_error err;
  char pa[256], pb[256];
  snprintf(pa, sizeof pa, "%s/%s", tmpdir, a_name);
  snprintf(pb, sizeof pb, "%s/%s", tmpdir, b_name);
  ck_assert_msg(crema_npy_read(pa, a, &err) == 0, "%s", err.msg);
  ck_assert_msg(crema_npy_read(pb, b, &err) == 0, "%s", err.msg);
  ck_assert_msg(a->count == b->count, "%s: %zu values against %zu", what, a->count, b->count);
  double big = 0.0, worst = 0.0;
  for (size_t i = 0; i < b->count; i++) {
    ck_assert_msg(isfinite(a->data[i]), "%s: value %zu is not finite", what, i);
    big = fmax(big, fabs(b->data[i]));
    worst = fmax(worst, fabs((double)a->data[i] - (double)b->data[i]));
  }
  ck_assert_msg(big > 0.0, "%s: the reference is all zeros, the check would prove nothing", what);
  crema_blob_free(a);
  crema_blob_free(b);
  fprintf(stderr, "export: %-40s max |diff| = %.3g of %.3g (%.2g relative)\n", what, worst, big, worst / big);
  return worst / big;
}

/* The exported pair in OUT, crema vs the unexported net (ref.npy), vs OpenCV's Caffe importer,
 * and model.onnx vs the same. `out` is a folder in tmpdir. */
static void check_exported(const char *out, const char *input, const char *ref_blob, const char *ref_npy,
                           double crema_tol) {
  char cmd[4096], what[128], mine[64], cv[64], onnx[64];
  snprintf(mine, sizeof mine, "%s_crema.npy", out);
  snprintf(cv, sizeof cv, "%s_cv.npy", out);
  snprintf(onnx, sizeof onnx, "%s_onnx.npy", out);
  snprintf(cmd, sizeof cmd,
           "'%s/crema' forward --model %s/deploy.prototxt --weights %s/weights.caffemodel --input data=%s "
           "--output %s=%s",
           CREMA_BIN_DIR, out, out, input, ref_blob, mine);
  run_ok("crema forward exported", cmd);
  snprintf(what, sizeof what, "%s: crema, exported vs not", out);
  ck_assert_msg(rel_diff(what, mine, ref_npy) <= crema_tol, "%s beyond %g", what, crema_tol);
  snprintf(cmd, sizeof cmd,
           "%s '%s/tests/oracle/cv_forward.py' %s/deploy.prototxt %s/weights.caffemodel "
           "--in data=%s --out %s=%s",
           python, CREMA_SOURCE_DIR, out, out, input, ref_blob, cv);
  run_ok("OpenCV Caffe importer", cmd);
  snprintf(what, sizeof what, "%s: OpenCV readNetFromCaffe", out);
  ck_assert_msg(rel_diff(what, cv, ref_npy) <= 1e-4, "%s beyond 1e-4", what);
  snprintf(cmd, sizeof cmd, "%s '%s/tests/oracle/onnx_check.py' %s/model.onnx %s %s", python,
           CREMA_SOURCE_DIR, out, input, onnx);
  run_ok("onnx checker + OpenCV ONNX importer", cmd);
  snprintf(what, sizeof what, "%s: onnx.checker + readNetFromONNX", out);
  ck_assert_msg(rel_diff(what, onnx, ref_npy) <= 1e-4, "%s beyond 1e-4", what);
}

/* crema's forward pass of the unexported net: ref.npy */
static void reference(const char *model, const char *weights, const char *input, const char *blob,
                      const char *out) {
  char cmd[4096];
  snprintf(cmd, sizeof cmd, "'%s/crema' forward --model '%s' --weights '%s' --input data=%s --output %s=%s",
           CREMA_BIN_DIR, model, weights, input, blob, out);
  run_ok("crema forward unexported", cmd);
}

START_TEST(lenet_trained_by_caffe_from_train_val) {
  char cmd[4096];
  /* the train_val Caffe trained with reads fmnist100_lmdb relative to the working folder */
  snprintf(cmd, sizeof cmd, "ln -s '%s/export/fmnist100_lmdb' fmnist100_lmdb", CREMA_TEST_DATA);
  run_ok("link", cmd);
  snprintf(cmd, sizeof cmd,
           "'%s/crema' export --model '%s/export/lenet_train_val.prototxt' --weights "
           "'%s/lenet/lenet_mnist_iter_10000.caffemodel' --out lenet --onnx --labels '%s/export/labels.txt'",
           CREMA_BIN_DIR, CREMA_TEST_DATA, CREMA_TEST_DATA, CREMA_TEST_DATA);
  run_ok("export", cmd);
  const char *out = slurp("export", "out");
  ck_assert_msg(strstr(out, "input \"mnist\" 1 x 1 x 28 x 28, output \"prob\"") &&
                    strstr(out, "folded: 0 BatchNorm") && strstr(out, "onnx: ") &&
                    strstr(out, "wrote lenet/labels.txt") && strstr(out, "wrote lenet/preprocess.prototxt"),
                "%s", out);
  ck_assert_str_eq(slurp("lenet/preprocess", "prototxt"), "scale: 0.00390625\n");
  ck_assert_msg(!strncmp(slurp("lenet/labels", "txt"), "T-shirt/top\n", 12), "labels.txt not copied");
  make_input("in.npy", 1, 28, 28, 0.0f, 1.0f, 1);
  reference(CREMA_TEST_DATA "/lenet/lenet_mnist_deploy.prototxt",
            CREMA_TEST_DATA "/lenet/lenet_mnist_iter_10000.caffemodel", "in.npy", "prob", "ref.npy");
  check_exported("lenet", "in.npy", "prob", "ref.npy", 1e-6);
}
END_TEST

START_TEST(bn_scale_prelu_trained_here) {
  char cmd[4096];
  snprintf(cmd, sizeof cmd,
           "ln -s '%s/export/fmnist100_lmdb' fmnist100_lmdb && cp '%s/export/bn_train_val.prototxt' "
           "'%s/export/bn_solver.prototxt' .",
           CREMA_TEST_DATA, CREMA_TEST_DATA, CREMA_TEST_DATA);
  run_ok("setup", cmd);
  /* a run folder as `crema finetune` leaves it: labels.txt and preprocess.prototxt beside the net */
  snprintf(cmd, sizeof cmd, "cp '%s/export/labels.txt' . && (echo 'mean_value: 33' >preprocess.prototxt)",
           CREMA_TEST_DATA);
  run_ok("run folder", cmd);
  snprintf(cmd, sizeof cmd, "'%s/crema' train --solver bn_solver.prototxt", CREMA_BIN_DIR);
  run_ok("train", cmd);
  snprintf(
      cmd, sizeof cmd,
      "'%s/crema' export --model bn_train_val.prototxt --weights bn_iter_30.caffemodel --out folded --onnx",
      CREMA_BIN_DIR);
  run_ok("export", cmd);
  const char *out = slurp("export", "out");
  ck_assert_msg(strstr(out,
                       "folded: 3 BatchNorm (2 with Scale): bn1+scale1 into conv1, bn2+scale2 into conv2, "
                       "bn3 into ip1") &&
                    strstr(out, "3 layer(s) removed") && strstr(out, "(26869 values) -> ") &&
                    strstr(out, "(26722 values)"),
                "%s", out);
  snprintf(
      cmd, sizeof cmd,
      "'%s/crema' export --model bn_train_val.prototxt --weights bn_iter_30.caffemodel --out kept --onnx "
      "--keep-bn",
      CREMA_BIN_DIR);
  run_ok("export --keep-bn", cmd);
  ck_assert_msg(strstr(slurp("export --keep-bn", "out"), "folded: 0 BatchNorm"), "--keep-bn folded");
  ck_assert_str_eq(slurp("folded/preprocess", "prototxt"), "mean_value: 33\n");
  ck_assert_msg(!strncmp(slurp("folded/labels", "txt"), "T-shirt/top\n", 12),
                "labels.txt not found beside the net");
  ck_assert_msg(strstr(slurp("export", "log"), "Folded vs unfolded outputs on a random input: max relative"),
                "%s", slurp("export", "log"));
  make_input("in.npy", 1, 28, 28, 0.0f, 1.0f, 2);
  char model[256];
  snprintf(model, sizeof model, "%s/export/bn_deploy.prototxt", CREMA_TEST_DATA);
  /* logits: the folded net must match the unfolded one within 1e-5 relative */
  reference(model, "bn_iter_30.caffemodel", "in.npy", "ip2", "ref_ip2.npy");
  snprintf(cmd, sizeof cmd,
           "'%s/crema' forward --model folded/deploy.prototxt --weights folded/weights.caffemodel --input "
           "data=in.npy --output ip2=folded_ip2.npy",
           CREMA_BIN_DIR);
  run_ok("crema forward folded", cmd);
  ck_assert(rel_diff("bn: folded vs unfolded logits", "folded_ip2.npy", "ref_ip2.npy") <= 1e-5);
  reference(model, "bn_iter_30.caffemodel", "in.npy", "prob", "ref.npy");
  check_exported("folded", "in.npy", "prob", "ref.npy", 1e-5);
  check_exported("kept", "in.npy", "prob", "ref.npy", 1e-6);
  /* the folded deploy has no BatchNorm or Scale left; the kept one has all of them */
  ck_assert_ptr_null(strstr(slurp("folded/deploy", "prototxt"), "BatchNorm"));
  ck_assert_ptr_nonnull(strstr(slurp("kept/deploy", "prototxt"), "\"Scale\""));
}
END_TEST

/* The data layer's preprocessing becomes preprocess.prototxt, without mirror and with the
 * ImageData resize; its mean file is copied beside it. Written by `crema export`. */
START_TEST(preprocess_and_mean_file) {
  char path[256], cmd[2048];
  crema_error err;
  /* weights for a 3 x 6 x 6 input and an InnerProduct of 2 */
  Crema__NetParameter *m = random_model(
      "layer { name: 'd' type: 'Input' top: 'data' input_param { shape { dim: 1 dim: 3 dim: 6 dim: 6 } } }\n"
      "layer { name: 'ip' type: 'InnerProduct' bottom: 'data' top: 'ip' inner_product_param { num_output: 2 "
      "} }\n",
      1.0f);
  snprintf(path, sizeof path, "%s/w.caffemodel", tmpdir);
  ck_assert_msg(crema_write_binary_message(path, &m->base, &err) == 0, "%s", err.msg);
  crema_message_free(m);
  Crema__BlobProto *mean = (Crema__BlobProto *)test_message(&crema__blob_proto__descriptor,
                                                            "shape { dim: 1 dim: 3 dim: 8 dim: 8 }");
  snprintf(path, sizeof path, "%s/m.binaryproto", tmpdir);
  ck_assert_msg(crema_write_binary_message(path, &mean->base, &err) == 0, "%s", err.msg);
  crema_message_free(mean);
  const char *tv =
      "layer { name: 'd' type: 'ImageData' top: 'data' top: 'label'\n"
      "  transform_param { mirror: true crop_size: 6 mean_file: 'm.binaryproto' scale: 0.5 }\n"
      "  image_data_param { source: 'list.txt' new_height: 8 new_width: 8 batch_size: 4 } }\n"
      "layer { name: 'ip' type: 'InnerProduct' bottom: 'data' top: 'ip' inner_product_param { "
      "num_output: 2 } }\n"
      "layer { name: 'loss' type: 'SoftmaxWithLoss' bottom: 'ip' bottom: 'label' top: 'loss' }\n";
  snprintf(path, sizeof path, "%s/tv.prototxt", tmpdir);
  FILE *f = fopen(path, "w");
  ck_assert_ptr_nonnull(f);
  fputs(tv, f);
  fclose(f);
  snprintf(cmd, sizeof cmd, "'%s/crema' export --model tv.prototxt --weights w.caffemodel --out out",
           CREMA_BIN_DIR);
  run_ok("export", cmd);
  ck_assert_msg(strstr(slurp("export", "out"), "wrote out/mean.binaryproto"), "%s", slurp("export", "out"));
  const char *pp = slurp("out/preprocess", "prototxt");
  ck_assert_msg(!strstr(pp, "mirror") && strstr(pp, "crop_size: 6") &&
                    strstr(pp, "mean_file: \"mean.binaryproto\"") && strstr(pp, "resize_height: 8") &&
                    strstr(pp, "resize_width: 8") && strstr(pp, "scale: 0.5"),
                "%s", pp);
  ck_assert_int_eq(run_in_tmp("cmp", "cmp m.binaryproto out/mean.binaryproto"), 0);
}
END_TEST

/* A deploy net with seeded random weights, exported at batch 1. */
static void random_weights(const char *model) {
  char cmd[4096];
  snprintf(cmd, sizeof cmd,
           "'%s/crema' forward --model '%s' --random-weights --seed 3 --save-weights rand.caffemodel",
           CREMA_BIN_DIR, model);
  run_ok("random weights", cmd);
}

START_TEST(caffenet_random_weights) {
  const char *model = CREMA_TEST_DATA "/zoo/bvlc_reference_caffenet/deploy.prototxt";
  random_weights(model);
  char cmd[4096];
  snprintf(cmd, sizeof cmd,
           "'%s/crema' export --model '%s' --weights rand.caffemodel --out caffenet --onnx --batch 1",
           CREMA_BIN_DIR, model);
  run_ok("export", cmd);
  ck_assert_msg(strstr(slurp("export", "out"), "input \"data\" 1 x 3 x 227 x 227"), "%s",
                slurp("export", "out"));
  make_input("in.npy", 3, 227, 227, -10.0f, 10.0f, 3);
  reference(model, "rand.caffemodel", "in.npy", "prob", "ref.npy");
  check_exported("caffenet", "in.npy", "prob", "ref.npy", 1e-6);
}
END_TEST

START_TEST(googlenet_from_train_val) {
  const char *deploy = CREMA_TEST_DATA "/zoo/bvlc_googlenet/deploy.prototxt";
  random_weights(deploy);
  char cmd[4096];
  /* the train_val's TEST data layer crops 224 with 3 mean values: no LMDB needed; its two
   * auxiliary classifiers are pruned, so the deploy's weights are all it needs */
  snprintf(cmd, sizeof cmd,
           "'%s/crema' export --model '%s/zoo/bvlc_googlenet/train_val.prototxt' --weights rand.caffemodel "
           "--out googlenet --onnx",
           CREMA_BIN_DIR, CREMA_TEST_DATA);
  run_ok("export", cmd);
  const char *out = slurp("export", "out");
  ck_assert_msg(strstr(out, "deploy: 142 layers, input \"data\" 1 x 3 x 224 x 224") &&
                    strstr(out, "12 pruned"),
                "%s", out);
  make_input("in.npy", 3, 224, 224, -2.0f, 2.0f, 4);
  reference(deploy, "rand.caffemodel", "in.npy", "prob", "ref.npy");
  check_exported("googlenet", "in.npy", "prob", "ref.npy", 1e-6);
}
END_TEST

/* Every layer type the ONNX writer covers (OpenCV's Caffe importer has no Bias layer, so only
 * the ONNX side is checked here); then LeNet at opset 11. */
START_TEST(every_onnx_layer_type) {
  const char *model = CREMA_TEST_DATA "/export/layers_deploy.prototxt";
  random_weights(model);
  char cmd[4096];
  snprintf(cmd, sizeof cmd, "'%s/crema' export --model '%s' --weights rand.caffemodel --out layers --onnx",
           CREMA_BIN_DIR, model);
  run_ok("export", cmd);
  ck_assert_msg(strstr(slurp("export", "out"), "folded: 0 BatchNorm"), "%s", slurp("export", "out"));
  make_input("in.npy", 4, 13, 13, -2.0f, 2.0f, 5);
  reference(model, "rand.caffemodel", "in.npy", "prob", "ref.npy");
  snprintf(cmd, sizeof cmd, "%s '%s/tests/oracle/onnx_check.py' layers/model.onnx in.npy onnx.npy", python,
           CREMA_SOURCE_DIR);
  run_ok("onnx checker + OpenCV ONNX importer", cmd);
  const char *ops = slurp("onnx checker + OpenCV ONNX importer", "out");
  const char *want[] = {"ConvTranspose", "Abs",       "AveragePool", "BatchNormalization",
                        "Concat",        "Conv",      "Elu",         "GlobalAveragePool",
                        "LRN",           "LeakyRelu", "MatMul",      "Max",
                        "Mul",           "PRelu",     "Pow",         "Reshape",
                        "Sigmoid",       "Slice",     "Softmax",     "Sum",
                        "Tanh"};
  for (size_t i = 0; i < sizeof want / sizeof want[0]; i++)
    ck_assert_msg(strstr(ops, want[i]), "op %s missing from %s", want[i], ops);
  ck_assert(rel_diff("every layer type: readNetFromONNX", "onnx.npy", "ref.npy") <= 1e-4);
  snprintf(cmd, sizeof cmd,
           "'%s/crema' export --model '%s/lenet/lenet_mnist_deploy.prototxt' --weights "
           "'%s/lenet/lenet_mnist_iter_10000.caffemodel' --out lenet11 --onnx --opset 11 --batch 1",
           CREMA_BIN_DIR, CREMA_TEST_DATA, CREMA_TEST_DATA);
  run_ok("export opset 11", cmd);
  make_input("in28.npy", 1, 28, 28, 0.0f, 1.0f, 6);
  reference(CREMA_TEST_DATA "/lenet/lenet_mnist_deploy.prototxt",
            CREMA_TEST_DATA "/lenet/lenet_mnist_iter_10000.caffemodel", "in28.npy", "prob", "ref28.npy");
  snprintf(cmd, sizeof cmd, "%s '%s/tests/oracle/onnx_check.py' lenet11/model.onnx in28.npy onnx11.npy",
           python, CREMA_SOURCE_DIR);
  run_ok("onnx check opset 11", cmd);
  ck_assert_msg(strstr(slurp("onnx check opset 11", "out"), "opset 11,"), "%s",
                slurp("onnx check opset 11", "out"));
  ck_assert(rel_diff("LeNet opset 11: readNetFromONNX", "onnx11.npy", "ref28.npy") <= 1e-4);
}
END_TEST

START_TEST(failed_export_leaves_nothing) {
  char cmd[4096];
  /* LeNet's weights do not cover CaffeNet: the export fails after reading everything */
  snprintf(
      cmd, sizeof cmd,
      "mkdir out && '%s/crema' export --model '%s/zoo/bvlc_reference_caffenet/deploy.prototxt' --weights "
      "'%s/lenet/lenet_mnist_iter_10000.caffemodel' --out out --onnx",
      CREMA_BIN_DIR, CREMA_TEST_DATA, CREMA_TEST_DATA);
  ck_assert_int_ne(run_in_tmp("export", cmd), 0);
  const char *log = slurp("export", "log");
  ck_assert_msg(
      strstr(log, "error: layer \"conv3\" (Convolution) has parameters but the weights file has none"), "%s",
      log);
  snprintf(cmd, sizeof cmd, "test -z \"$(ls -A out)\"");
  ck_assert_msg(run_in_tmp("empty", cmd) == 0, "the failed export left files in its folder");
  snprintf(cmd, sizeof cmd, "'%s/crema' export --model x.prototxt --out out", CREMA_BIN_DIR);
  ck_assert_int_eq(run_in_tmp("usage", cmd), 2 << 8);
  ck_assert_msg(strstr(slurp("usage", "log"), "--weights"), "%s", slurp("usage", "log"));
}
END_TEST

int main(void) {
  Suite *s = suite_create("export");
  TCase *tc = tcase_create("surgery");
  tcase_set_timeout(tc, 300);
  tcase_add_checked_fixture(tc, setup, teardown);
  tcase_add_test(tc, deploy_from_train_val);
  tcase_add_test(tc, deploy_errors_name_the_layer);
  tcase_add_test(tc, deploy_reads_lmdb_shape);
  tcase_add_test(tc, fold_matches_unfolded);
  tcase_add_test(tc, fold_factor_zero_and_kept);
  tcase_add_test(tc, onnx_refuses_what_it_cannot_express);
  tcase_add_test(tc, failed_export_leaves_nothing);
  tcase_add_test(tc, preprocess_and_mean_file);
  suite_add_tcase(s, tc);
  TCase *oracle = tcase_create("oracle");
  tcase_add_checked_fixture(oracle, setup_oracle, teardown);
  tcase_set_timeout(oracle, 900);
  tcase_add_test(oracle, lenet_trained_by_caffe_from_train_val);
  tcase_add_test(oracle, bn_scale_prelu_trained_here);
  tcase_add_test(oracle, caffenet_random_weights);
  tcase_add_test(oracle, googlenet_from_train_val);
  suite_add_tcase(s, oracle);
  TCase *layers = tcase_create("onnx_layers");
  tcase_add_checked_fixture(layers, setup_oracle, teardown);
  tcase_set_timeout(layers, 600);
  tcase_add_test(layers, every_onnx_layer_type);
  suite_add_tcase(s, layers);
  return test_run_suite(s);
}
