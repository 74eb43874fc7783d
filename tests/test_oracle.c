/* test_oracle.c -- crema's forward pass against an independent implementation: OpenCV's Caffe
 * importer (cv2.dnn.readNetFromCaffe), run by tests/oracle/cv_forward.py on the same prototxt,
 * caffemodel and input. Outputs must agree within 1e-4 of their largest magnitude.
 *
 * Nets: the real LeNet trained by Caffe; CaffeNet and GoogLeNet deploy nets with seeded random
 * weights (`crema forward --random-weights --save-weights`, batch 1); and a small net of our
 * own with BatchNorm, Scale, PReLU, grouped and depthwise convolution, Eltwise and Concat.
 * Without python3 + numpy + cv2 the test FAILS with what to install (CI installs them). */
#include <check.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "support/python.h"
#include "support/run.h"
#include "base/rng.h"
#include "common/npy.h"

static char tmpdir[128];
static const char *python;

/* $CREMA_PYTHON, else Debian's /usr/bin/python3 (a python3 earlier on PATH, e.g. pyenv's,
 * often lacks the Debian packages), else python3: the first that imports numpy and cv2. */
static void setup(void) {
  snprintf(tmpdir, sizeof tmpdir, "/tmp/crema_test_oracle_XXXXXX");
  ck_assert_ptr_nonnull(mkdtemp(tmpdir));
  python = test_find_python("numpy, cv2");
  ck_assert_msg(python != NULL, "the OpenCV cross-check needs python3 with numpy and cv2: apt-get install "
                                "python3-opencv python3-numpy (or set CREMA_PYTHON to such an interpreter)");
}

static void teardown(void) {
  char cmd[256];
  snprintf(cmd, sizeof cmd, "rm -rf '%s'", tmpdir);
  if (system(cmd) != 0) fprintf(stderr, "could not remove %s\n", tmpdir);
}

/* Runs cmd with stderr to a log; on failure, fails the test showing the log's tail. */
static void run_ok(const char *what, const char *cmd) {
  char full[8192], log[256];
  snprintf(log, sizeof log, "%s/%s.log", tmpdir, what);
  snprintf(full, sizeof full, "%s 2>'%s'", cmd, log);
  int rc = system(full);
  if (rc == 0) return;
  char tail[2048] = "";
  FILE *f = fopen(log, "rb");
  if (f) {
    fseek(f, 0, SEEK_END);
    long n = ftell(f);
    fseek(f, n > (long)sizeof tail - 1 ? n - (long)sizeof tail + 1 : 0, SEEK_SET);
    size_t got = fread(tail, 1, sizeof tail - 1, f);
    tail[got] = '\0';
    fclose(f);
  }
  ck_abort_msg("%s failed (status %d): %s\n%s", what, rc, cmd, tail);
}

/* Writes a seeded input: uniform [lo, hi). */
static void make_input(const char *path, int n, int c, int h, int w, float lo, float hi, uint64_t seed) {
  crema_blob *b = crema_blob_new();
  crema_error err;
  ck_assert_int_eq(crema_blob_reshape4(b, n, c, h, w, &err), 0);
  crema_rng r;
  crema_rng_seed(&r, seed, 7);
  for (size_t i = 0; i < b->count; i++) b->data[i] = crema_rng_uniform(&r, lo, hi);
  ck_assert_msg(crema_npy_write(path, b, &err) == 0, "%s", err.msg);
  crema_blob_free(b);
}

/* Detection rows [image, label, score, box] in (image, label, best score first) order:
 * Caffe's SSD writes them label by label, OpenCV by score, the rows themselves agree. */
static const char *detection_blob;

static int row_cmp(const void *x, const void *y) {
  const float *a = x, *b = y;
  for (int k = 0; k < 3; k++) {
    const float va = k == 2 ? -a[k] : a[k], vb = k == 2 ? -b[k] : b[k];
    if (va != vb) return va < vb ? -1 : 1;
  }
  return 0;
}

static void compare(const char *blob, const char *mine, const char *theirs) {
  crema_blob *a = crema_blob_new(), *b = crema_blob_new();
  crema_error err;
  ck_assert_msg(crema_npy_read(mine, a, &err) == 0, "%s", err.msg);
  ck_assert_msg(crema_npy_read(theirs, b, &err) == 0, "%s", err.msg);
  if (detection_blob && !strcmp(blob, detection_blob) && a->count == b->count && a->count % 7 == 0) {
    qsort(a->data, a->count / 7, 7 * sizeof(float), row_cmp);
    qsort(b->data, b->count / 7, 7 * sizeof(float), row_cmp);
  }
  ck_assert_msg(a->count == b->count, "blob %s: crema has %zu values, OpenCV %zu", blob, a->count, b->count);
  double big = 0.0, worst = 0.0;
  size_t at = 0;
  for (size_t i = 0; i < b->count; i++) {
    if (!isfinite(a->data[i])) ck_abort_msg("blob %s[%zu] is not finite in crema", blob, i);
    big = fmax(big, fabs(b->data[i]));
    double d = fabs((double)a->data[i] - (double)b->data[i]);
    if (d > worst) {
      worst = d;
      at = i;
    }
  }
  ck_assert_msg(big > 0.0, "blob %s is all zeros in OpenCV's output: the check would prove nothing", blob);
  ck_assert_msg(worst <= 1e-4 * big, "blob %s differs from OpenCV: |%g - %g| at [%zu] > 1e-4 * %g", blob,
                (double)a->data[at], (double)b->data[at], at, big);
  fprintf(stderr, "oracle: %-18s %zu values, max |crema - OpenCV| = %.3g (largest magnitude %.3g)\n", blob,
          a->count, worst, big);
  crema_blob_free(a);
  crema_blob_free(b);
}

/* Runs crema and OpenCV on model + input and compares the listed blobs. weights NULL: crema
 * draws random weights and saves them for OpenCV. */
static void cross_check(const char *model, const char *weights, const char *input_name, const char *input,
                        const char *const *blobs, int n_blobs) {
  char cmd[4096], w[256];
  size_t used;
  if (weights) {
    snprintf(w, sizeof w, "%s", weights);
    used = (size_t)snprintf(cmd, sizeof cmd, "'%s/crema' forward --model '%s' --weights '%s'", CREMA_BIN_DIR,
                            model, weights);
  } else {
    snprintf(w, sizeof w, "%s/random.caffemodel", tmpdir);
    used = (size_t)snprintf(cmd, sizeof cmd,
                            "'%s/crema' forward --model '%s' --random-weights --seed 3 --save-weights '%s'",
                            CREMA_BIN_DIR, model, w);
  }
  used += (size_t)snprintf(cmd + used, sizeof cmd - used, " --input '%s=%s'", input_name, input);
  for (int i = 0; i < n_blobs; i++)
    used += (size_t)snprintf(cmd + used, sizeof cmd - used, " --output '%s=%s/crema_%d.npy'", blobs[i],
                             tmpdir, i);
  run_ok("crema forward", cmd);

  used = (size_t)snprintf(cmd, sizeof cmd, "%s '%s/tests/oracle/cv_forward.py' '%s' '%s' --in '%s=%s'",
                          python, CREMA_SOURCE_DIR, model, w, input_name, input);
  for (int i = 0; i < n_blobs; i++)
    used += (size_t)snprintf(cmd + used, sizeof cmd - used, " --out '%s=%s/cv_%d.npy'", blobs[i], tmpdir, i);
  run_ok("OpenCV forward", cmd);

  for (int i = 0; i < n_blobs; i++) {
    char mine[256], theirs[256];
    snprintf(mine, sizeof mine, "%s/crema_%d.npy", tmpdir, i);
    snprintf(theirs, sizeof theirs, "%s/cv_%d.npy", tmpdir, i);
    compare(blobs[i], mine, theirs);
  }
}

START_TEST(lenet_trained_by_caffe) {
  char in[256];
  snprintf(in, sizeof in, "%s/in.npy", tmpdir);
  make_input(in, 2, 1, 28, 28, 0.0f, 1.0f, 1);
  const char *blobs[] = {"ip2", "prob", "pool2"};
  cross_check(CREMA_TEST_DATA "/lenet/lenet_mnist_deploy.prototxt",
              CREMA_TEST_DATA "/lenet/lenet_mnist_iter_10000.caffemodel", "data", in, blobs, 3);
}
END_TEST

START_TEST(caffenet_random_weights) {
  char in[256];
  snprintf(in, sizeof in, "%s/in.npy", tmpdir);
  make_input(in, 1, 3, 227, 227, -10.0f, 10.0f, 2);
  const char *blobs[] = {"fc8", "prob", "pool5"};
  cross_check(CREMA_TEST_DATA "/zoo/bvlc_reference_caffenet/deploy.prototxt", NULL, "data", in, blobs, 3);
}
END_TEST

START_TEST(googlenet_random_weights) {
  char in[256];
  snprintf(in, sizeof in, "%s/in.npy", tmpdir);
  make_input(in, 1, 3, 224, 224, -2.0f, 2.0f, 3);
  const char *blobs[] = {"loss3/classifier", "prob", "inception_4e/output"};
  cross_check(CREMA_TEST_DATA "/zoo/bvlc_googlenet/deploy.prototxt", NULL, "data", in, blobs, 3);
}
END_TEST

START_TEST(small_net_bn_scale_prelu_group_depthwise) {
  char in[256];
  snprintf(in, sizeof in, "%s/in.npy", tmpdir);
  make_input(in, 2, 3, 16, 16, -2.0f, 2.0f, 4);
  const char *blobs[] = {"ip", "prob", "pool", "sum"};
  cross_check(CREMA_TEST_DATA "/oracle_small.prototxt", NULL, "data", in, blobs, 4);
}
END_TEST

START_TEST(catalogue_exp_log_bnll_swish_mvn_crop) {
  char in[256];
  snprintf(in, sizeof in, "%s/in.npy", tmpdir);
  make_input(in, 2, 3, 10, 10, -2.0f, 2.0f, 5);
  const char *blobs[] = {"e", "lg", "sw", "mvn1", "mvn2", "mvn3", "crop", "crop1"};
  cross_check(CREMA_TEST_DATA "/oracle_catalogue.prototxt", NULL, "data", in, blobs, 8);
}
END_TEST

START_TEST(fork_fields_ceil_mode_scale_train) {
  char in[256];
  snprintf(in, sizeof in, "%s/in.npy", tmpdir);
  make_input(in, 2, 3, 9, 9, -2.0f, 2.0f, 6);
  const char *blobs[] = {"floor", "ceil", "drop"};
  cross_check(CREMA_TEST_DATA "/oracle_forks.prototxt", NULL, "data", in, blobs, 3);
}
END_TEST

/* An FCN-style net: VGG-like trunk, Deconvolution upsampling, Crop, an Eltwise skip. */
START_TEST(fcn_style_net) {
  char in[256];
  snprintf(in, sizeof in, "%s/in.npy", tmpdir);
  make_input(in, 2, 3, 32, 32, -1.0f, 1.0f, 8);
  const char *blobs[] = {"score", "fuse_pool1", "upscore2"};
  cross_check(CREMA_TEST_DATA "/fcn_tiny.prototxt", NULL, "data", in, blobs, 3);
}
END_TEST

/* SSD's inference layers on a MobileNet-SSD-shaped net: Normalize, Permute, PriorBox and
 * DetectionOutput (decoding, NMS, keep_top_k) give OpenCV's outputs. */
START_TEST(ssd_mobilenet_shaped_net) {
  char in[256];
  snprintf(in, sizeof in, "%s/in.npy", tmpdir);
  make_input(in, 2, 3, 64, 64, -2.0f, 2.0f, 9);
  const char *blobs[] = {"conv2_norm", "mbox_loc", "mbox_priorbox", "mbox_conf_flatten", "detection_out"};
  detection_blob = "detection_out";
  cross_check(CREMA_TEST_DATA "/ssd_tiny.prototxt", NULL, "data", in, blobs, 5);
  detection_blob = NULL;
}
END_TEST

/* NVIDIA Caffe's half-precision blobs: `crema upgrade --fp16` writes raw_data FLOAT16, and
 * crema and OpenCV read the same half-precision weights. */
START_TEST(lenet_fp16_caffemodel) {
  char in[256], fp16[256], cmd[1024];
  snprintf(in, sizeof in, "%s/in.npy", tmpdir);
  snprintf(fp16, sizeof fp16, "%s/lenet_fp16.caffemodel", tmpdir);
  snprintf(cmd, sizeof cmd,
           "'%s/crema' upgrade '%s/lenet/lenet_mnist_iter_10000.caffemodel' '%s' --fp16 >/dev/null",
           CREMA_BIN_DIR, CREMA_TEST_DATA, fp16);
  run_ok("crema upgrade --fp16", cmd);
  make_input(in, 2, 1, 28, 28, 0.0f, 1.0f, 7);
  const char *blobs[] = {"ip2", "prob"};
  cross_check(CREMA_TEST_DATA "/lenet/lenet_mnist_deploy.prototxt", fp16, "data", in, blobs, 2);
}
END_TEST

/* ---- the tools themselves, no OpenCV needed */

static char *slurp(const char *path) {
  FILE *f = fopen(path, "rb");
  ck_assert_ptr_nonnull(f);
  static char buf[1 << 16];
  size_t n = fread(buf, 1, sizeof buf - 1, f);
  buf[n] = '\0';
  fclose(f);
  return buf;
}

START_TEST(time_prints_caffe_summary) {
  char dir[] = "/tmp/crema_test_time_XXXXXX", cmd[1024], log[128];
  ck_assert_ptr_nonnull(mkdtemp(dir));
  snprintf(log, sizeof log, "%s/log", dir);
  snprintf(cmd, sizeof cmd,
           "'%s/crema' time --model '%s/lenet/lenet_mnist_deploy.prototxt' --iterations 2 2>'%s'",
           CREMA_BIN_DIR, CREMA_TEST_DATA, log);
  ck_assert_int_eq(system(cmd), 0);
  const char *out = slurp(log);
  const char *want[] = {"Average Forward pass: ", "Average Backward pass: ", "Average Forward-Backward: ",
                        "Total Time: ",           "conv1\tforward: ",        "conv1\tbackward: ",
                        "BLAS: OpenBLAS kernel",  "*** Benchmark ends ***"};
  for (size_t i = 0; i < sizeof want / sizeof want[0]; i++)
    ck_assert_msg(strstr(out, want[i]) != NULL, "missing \"%s\" in:\n%s", want[i], out);
  /* idle OpenMP workers spin briefly unless the user chose a policy (tool.c); the tool
   * re-executes itself to apply it, and logs what ran */
  static const char *const spin[][2] = {
      {"env -u OMP_WAIT_POLICY -u GOMP_SPINCOUNT -u CREMA_NO_REEXEC",
       "idle workers: OMP_WAIT_POLICY=(unset), GOMP_SPINCOUNT=10000"},
      {"env -u GOMP_SPINCOUNT -u CREMA_NO_REEXEC OMP_WAIT_POLICY=ACTIVE",
       "idle workers: OMP_WAIT_POLICY=ACTIVE, GOMP_SPINCOUNT=(unset)"},
  };
  for (size_t i = 0; i < sizeof spin / sizeof spin[0]; i++) {
    snprintf(cmd, sizeof cmd,
             "%s '%s/crema' time --model '%s/lenet/lenet_mnist_deploy.prototxt' --iterations 1 2>'%s'",
             spin[i][0], CREMA_BIN_DIR, CREMA_TEST_DATA, log);
    ck_assert_int_eq(system(cmd), 0);
    out = slurp(log);
    ck_assert_msg(strstr(out, spin[i][1]), "missing \"%s\" in:\n%s", spin[i][1], out);
  }
  /* forward without --output prints each output's shape */
  snprintf(cmd, sizeof cmd,
           "'%s/crema' forward --model '%s/lenet/lenet_mnist_deploy.prototxt' 2>/dev/null >'%s'",
           CREMA_BIN_DIR, CREMA_TEST_DATA, log);
  ck_assert_int_eq(system(cmd), 0);
  out = slurp(log);
  ck_assert_msg(strstr(out, "prob: shape 64 10 (640):") != NULL, "%s", out);
  /* errors: exit status and message */
  snprintf(cmd, sizeof cmd,
           "'%s/crema' forward --model '%s/lenet/lenet_mnist_deploy.prototxt' --input nope=x.npy 2>'%s'",
           CREMA_BIN_DIR, CREMA_TEST_DATA, log);
  ck_assert_int_ne(system(cmd), 0);
  out = slurp(log);
  ck_assert_msg(strstr(out, "error: --input nope: the net has no input named \"nope\"") != NULL, "%s", out);
  snprintf(cmd, sizeof cmd, "'%s/crema' time --model '%s/zoo/mnist/lenet_train_test.prototxt' 2>'%s'",
           CREMA_BIN_DIR, CREMA_TEST_DATA, log);
  ck_assert_int_ne(system(cmd), 0);
  out = slurp(log);
  ck_assert_msg(strstr(out, "error: cannot build the net to time") && strstr(out, "mnist_train_lmdb"), "%s",
                out);
  snprintf(cmd, sizeof cmd, "rm -rf '%s'", dir);
  ck_assert_int_eq(system(cmd), 0);
}
END_TEST

int main(void) {
  Suite *s = suite_create("oracle");
  TCase *tc = tcase_create("opencv");
  tcase_add_checked_fixture(tc, setup, teardown);
  tcase_set_timeout(tc, 600);
  tcase_add_test(tc, lenet_trained_by_caffe);
  tcase_add_test(tc, caffenet_random_weights);
  tcase_add_test(tc, googlenet_random_weights);
  tcase_add_test(tc, small_net_bn_scale_prelu_group_depthwise);
  tcase_add_test(tc, catalogue_exp_log_bnll_swish_mvn_crop);
  tcase_add_test(tc, fork_fields_ceil_mode_scale_train);
  tcase_add_test(tc, lenet_fp16_caffemodel);
  tcase_add_test(tc, fcn_style_net);
  tcase_add_test(tc, ssd_mobilenet_shaped_net);
  suite_add_tcase(s, tc);
  TCase *cli = tcase_create("cli");
  tcase_set_timeout(cli, 600);
  tcase_add_test(cli, time_prints_caffe_summary);
  suite_add_tcase(s, cli);
  return test_run_suite(s);
}
