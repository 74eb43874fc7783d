/* `crema info` and `crema upgrade` end to end: the built binary run on the LeNet files from
 * real Caffe, on a binaryproto, a solverstate, a V1 net and bad input. Also the build error
 * of `crema time`. */
#include <check.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

#include "support/run.h"
#include "proto/io.h"
#include "support/textproto.h"
#include "tensor/blob_proto.h"

#define CREMA CREMA_BIN_DIR "/crema"
#define LENET_MODEL CREMA_TEST_DATA "/lenet/lenet_mnist_iter_10000.caffemodel"
#define LENET_DEPLOY CREMA_TEST_DATA "/lenet/lenet_mnist_deploy.prototxt"

static char tmpdir[256];

static void setup(void) {
  snprintf(tmpdir, sizeof tmpdir, "/tmp/crema_test_cli_info.XXXXXX");
  ck_assert_ptr_nonnull(mkdtemp(tmpdir));
}

static void teardown(void) {
  char cmd[512];
  snprintf(cmd, sizeof cmd, "rm -rf '%s'", tmpdir);
  ck_assert_int_eq(system(cmd), 0);
}

/* Runs `crema ARGS` (stderr merged into stdout) and returns the output (malloc'd); *status
 * gets the exit code. */
static char *run(const char *args, int *status) {
  char cmd[2048];
  snprintf(cmd, sizeof cmd, "'%s' %s 2>&1", CREMA, args);
  FILE *p = popen(cmd, "r");
  ck_assert_ptr_nonnull(p);
  size_t cap = 1 << 16, n = 0;
  char *out = malloc(cap);
  size_t got;
  while ((got = fread(out + n, 1, cap - n - 1, p)) > 0) {
    n += got;
    if (n + 1 == cap) out = realloc(out, cap *= 2);
  }
  out[n] = '\0';
  int st = pclose(p);
  *status = WIFEXITED(st) ? WEXITSTATUS(st) : -1;
  return out;
}

static void assert_has(const char *out, const char *word) {
  ck_assert_msg(strstr(out, word) != NULL, "output lacks \"%s\":\n%s", word, out);
}

START_TEST(test_info_caffemodel) {
  int st;
  char *out = run("info " LENET_MODEL, &st);
  ck_assert_msg(st == 0, "%s", out);
  assert_has(out, "binary (caffemodel) net");
  assert_has(out, "\"LeNet\", 9 layers");
  assert_has(out, "conv1");
  assert_has(out, "20x1x5x5 (500), 20 (20)");
  assert_has(out, "50x20x5x5 (25000), 50 (50)");
  assert_has(out, "500x800 (400000), 500 (500)");
  assert_has(out, "10x500 (5000), 10 (10)");
  assert_has(out, "SoftmaxWithLoss");
  assert_has(out, "total: 8 parameter blobs, 431080 parameters");
  free(out);
}
END_TEST

START_TEST(test_info_prototxts) {
  int st;
  char *out = run("info " LENET_DEPLOY, &st);
  ck_assert_msg(st == 0, "%s", out);
  assert_has(out, "text (prototxt) net");
  assert_has(out, "shape 64x1x28x28");
  assert_has(out, "out 20 k 5 s 1");
  /* Parameter shapes come from building the net. */
  assert_has(out, "out 500; 500x800 (400000), 500 (500)");
  assert_has(out, "total: 8 parameter blobs, 431080 parameters");
  free(out);
  /* A net whose data set is absent still gets its table, and the reason for no shapes. */
  out = run("info " CREMA_TEST_DATA "/zoo/mnist/lenet_train_test.prototxt", &st);
  ck_assert_msg(st == 0, "%s", out);
  assert_has(out, "parameter shapes not shown");
  assert_has(out, "mnist_test_lmdb");
  free(out);
  out = run("info " CREMA_TEST_DATA "/zoo/mnist/lenet_solver_adam.prototxt", &st);
  ck_assert_msg(st == 0, "%s", out);
  assert_has(out, ": solver");
  assert_has(out, "type:              Adam");
  assert_has(out, "base_lr:           0.001");
  assert_has(out, "max_iter:          10000");
  free(out);
  out = run("info --help", &st);
  ck_assert_int_eq(st, 0);
  assert_has(out, "usage: crema info FILE");
  free(out);
  out = run("info --verbose " LENET_DEPLOY, &st);
  ck_assert_int_eq(st, 2);
  assert_has(out, "unknown flag \"--verbose\"; valid flags: --type");
  free(out);
}
END_TEST

START_TEST(test_info_blob_and_state) {
  crema_error err = {{0}};
  /* A 1x3x2x2 mean file: channel means 1.5, 10, -2. */
  crema_blob *b = crema_blob_new();
  ck_assert_int_eq(crema_blob_reshape4(b, 1, 3, 2, 2, &err), 0);
  const float v[12] = {1, 2, 1, 2, 10, 10, 10, 10, -1, -3, -2, -2};
  memcpy(b->data, v, sizeof v);
  Crema__BlobProto *p = NULL;
  ck_assert_int_eq(crema_blob_to_proto(b, false, &p, &err), 0);
  char path[512], args[1024];
  snprintf(path, sizeof path, "%s/mean.binaryproto", tmpdir);
  ck_assert_int_eq(crema_write_binary_message(path, &p->base, &err), 0);
  crema_message_free(p);
  crema_blob_free(b);
  int st;
  snprintf(args, sizeof args, "info '%s'", path);
  char *out = run(args, &st);
  ck_assert_msg(st == 0, "%s", out);
  assert_has(out, "binaryproto blob, shape 1x3x2x2 (12 values)");
  assert_has(out, "per-channel mean");
  assert_has(out, "1.5000 10.0000 -2.0000");
  free(out);

  Crema__SolverState *s = (Crema__SolverState *)test_message(
      &crema__solver_state__descriptor, "iter: 1200 learned_net: 'snap_iter_1200.caffemodel'\n"
                                        "history { shape { dim: 20 dim: 1 dim: 5 dim: 5 } data: [0] }\n"
                                        "history { shape { dim: 20 } } reader_position: [640, 100]\n"
                                        "solver_type: 'SGD' best_metric: 0.75 best_iter: 1000");
  snprintf(path, sizeof path, "%s/snap_iter_1200.solverstate", tmpdir);
  ck_assert_int_eq(crema_write_binary_message(path, &s->base, &err), 0);
  crema_message_free(s);
  snprintf(args, sizeof args, "info '%s'", path);
  out = run(args, &st);
  ck_assert_msg(st == 0, "%s", out);
  assert_has(out, "solverstate, iteration 1200");
  assert_has(out, "snap_iter_1200.caffemodel");
  assert_has(out, "2 blobs: 20x1x5x5, 20 (520 values)");
  assert_has(out, "640 100");
  assert_has(out, "best 0.75 at iteration 1000");
  free(out);

  /* Errors name the file. */
  snprintf(path, sizeof path, "%s/junk.caffemodel", tmpdir);
  FILE *f = fopen(path, "wb");
  fwrite("\xff\xff\xff\xff\x07", 1, 5, f);
  fclose(f);
  snprintf(args, sizeof args, "info '%s'", path);
  out = run(args, &st);
  ck_assert_int_eq(st, 1);
  assert_has(out, "error: ");
  assert_has(out, "junk.caffemodel: not a valid NetParameter");
  free(out);
  /* A net prototxt with a typo: the parser's file:line:col message, not a solver error. */
  snprintf(path, sizeof path, "%s/typo.prototxt", tmpdir);
  f = fopen(path, "w");
  fputs("name: 'n'\nlayer {\n  name: 'c' type: 'Convolution'\n  convolution_param { num_ouput: 3 }\n}\n", f);
  fclose(f);
  snprintf(args, sizeof args, "info '%s'", path);
  out = run(args, &st);
  ck_assert_int_eq(st, 1);
  assert_has(
      out,
      "typo.prototxt:4:23: unknown field \"num_ouput\" in convolution_param (did you mean \"num_output\"?)");
  free(out);
  out = run("info /nonexistent/x.prototxt", &st);
  ck_assert_int_eq(st, 1);
  assert_has(out, "error: /nonexistent/x.prototxt: no such file");
  free(out);
}
END_TEST

/* A damaged caffemodel whose blob dims multiply past 2^64: the count once wrapped around and
 * info printed a wrong element count (and total). */
START_TEST(test_info_blob_count_overflow) {
  char text[512], model[512], args[1200];
  snprintf(text, sizeof text, "%s/big.prototxt", tmpdir);
  snprintf(model, sizeof model, "%s/big.caffemodel", tmpdir);
  FILE *f = fopen(text, "w");
  ck_assert_ptr_nonnull(f);
  fputs("name: 'big' layer { name: 'ip' type: 'InnerProduct' blobs { shape { dim: 2147483647 dim: 2147483647 "
        "dim: 2147483647 dim: 2147483647 dim: 2147483647 } } }\n",
        f);
  fclose(f);
  int st;
  snprintf(args, sizeof args, "upgrade '%s' '%s' --type=net", text, model);
  char *out = run(args, &st);
  ck_assert_msg(st == 0, "%s", out);
  free(out);
  snprintf(args, sizeof args, "info '%s'", model);
  out = run(args, &st);
  ck_assert_msg(st == 0, "%s", out);
  assert_has(out, "(bad shape: too many elements)");
  assert_has(out, "total: 1 parameter blobs, 0 parameters");
  free(out);
}
END_TEST

/* A net without data layers that fails to build: the error names the layer and the field,
 * without the hint about data sources (which pointed away from the real error). */
START_TEST(test_time_build_error) {
  char path[512], args[1024];
  snprintf(path, sizeof path, "%s/bad.prototxt", tmpdir);
  FILE *f = fopen(path, "w");
  ck_assert_ptr_nonnull(f);
  fputs("layer { name: 'data' type: 'Input' top: 'data' input_param { shape { dim: 1 dim: 1 dim: 4 dim: 4 } "
        "} }\n"
        "layer { name: 'pool' type: 'Pooling' bottom: 'data' top: 'pool' pooling_param { kernel_size: "
        "4000000000 } }\n",
        f);
  fclose(f);
  snprintf(args, sizeof args, "time --model '%s' --iterations 1", path);
  int status;
  char *out = run(args, &status);
  ck_assert_int_eq(status, 1);
  assert_has(out, "error: cannot build the net to time: ");
  assert_has(out, "layer \"pool\" (Pooling): pooling_param.kernel_size 4000000000 is too large");
  ck_assert_msg(!strstr(out, "data layers need their sources"), "misleading hint:\n%s", out);
  free(out);
}
END_TEST

START_TEST(test_upgrade_round_trips) {
  int st;
  char args[2048], txt[512], bin[512];
  /* caffemodel -> prototxt text -> caffemodel: byte-identical to Caffe's file. */
  snprintf(txt, sizeof txt, "%s/lenet.prototxt", tmpdir);
  snprintf(bin, sizeof bin, "%s/lenet.caffemodel", tmpdir);
  snprintf(args, sizeof args, "upgrade " LENET_MODEL " '%s'", txt);
  char *out = run(args, &st);
  ck_assert_msg(st == 0, "%s", out);
  assert_has(out, "already in the current format");
  assert_has(out, "(text)");
  free(out);
  snprintf(args, sizeof args, "upgrade '%s' '%s'", txt, bin);
  out = run(args, &st);
  ck_assert_msg(st == 0, "%s", out);
  assert_has(out, "(binary)");
  free(out);
  snprintf(args, sizeof args, "cmp -s '%s' '%s'", bin, LENET_MODEL);
  ck_assert_msg(system(args) == 0, "caffemodel changed after a text round trip");

  /* A V1 prototxt upgraded, then read by crema info. */
  char v1[512], v2[512];
  snprintf(v1, sizeof v1, "%s/old.prototxt", tmpdir);
  snprintf(v2, sizeof v2, "%s/new.prototxt", tmpdir);
  FILE *f = fopen(v1, "w");
  fputs("name: 'old'\ninput: 'data'\ninput_dim: 1 input_dim: 1 input_dim: 8 input_dim: 8\n"
        "layers { name: 'c' type: CONVOLUTION bottom: 'data' top: 'c' blobs_lr: 1 blobs_lr: 2\n"
        "  convolution_param { num_output: 4 kernel_size: 3 } }\n"
        "layers { name: 'p' type: SOFTMAX bottom: 'c' top: 'p' }\n",
        f);
  fclose(f);
  snprintf(args, sizeof args, "upgrade '%s' '%s'", v1, v2);
  out = run(args, &st);
  ck_assert_msg(st == 0, "%s", out);
  assert_has(out, "net upgraded to the current format");
  free(out);
  Crema__NetParameter *net = NULL;
  crema_error err = {{0}};
  ck_assert_int_eq(
      crema_read_text_message(v2, &crema__net_parameter__descriptor, (ProtobufCMessage **)&net, &err), 0);
  Crema__NetParameter *want = test_net_param("name: 'old' layer { name: 'input' type: 'Input' top: 'data' "
                                             "input_param { shape { dim: [1, 1, 8, 8] } } }\n"
                                             "layer { name: 'c' type: 'Convolution' bottom: 'data' top: 'c' "
                                             "param { lr_mult: 1 } param { lr_mult: 2 }\n"
                                             "  convolution_param { num_output: 4 kernel_size: 3 } }\n"
                                             "layer { name: 'p' type: 'Softmax' bottom: 'c' top: 'p' }\n");
  size_t na = protobuf_c_message_get_packed_size(&net->base),
         nb = protobuf_c_message_get_packed_size(&want->base);
  ck_assert_uint_eq(na, nb);
  uint8_t *pa = malloc(na), *pb = malloc(nb);
  protobuf_c_message_pack(&net->base, pa);
  protobuf_c_message_pack(&want->base, pb);
  ck_assert_int_eq(memcmp(pa, pb, na), 0);
  free(pa);
  free(pb);
  crema_message_free(net);
  crema_message_free(want);
  snprintf(args, sizeof args, "info '%s'", v1);
  out = run(args, &st);
  ck_assert_msg(st == 0, "%s", out);
  assert_has(out, "upgraded from a legacy format");
  assert_has(out, "Convolution");
  free(out);

  /* A solver with solver_type. */
  snprintf(v1, sizeof v1, "%s/old_solver.prototxt", tmpdir);
  snprintf(v2, sizeof v2, "%s/new_solver.prototxt", tmpdir);
  f = fopen(v1, "w");
  fputs("net: 'x.prototxt'\nbase_lr: 0.01\nsolver_type: NESTEROV\n", f);
  fclose(f);
  snprintf(args, sizeof args, "upgrade '%s' '%s'", v1, v2);
  out = run(args, &st);
  ck_assert_msg(st == 0, "%s", out);
  assert_has(out, "solver upgraded");
  free(out);
  Crema__SolverParameter *s = NULL;
  ck_assert_int_eq(crema_read_solver_param(v2, &s, &err), 0);
  ck_assert_str_eq(s->type, "Nesterov");
  ck_assert(!s->has_solver_type);
  crema_message_free(s);

  /* Usage errors. */
  out = run("upgrade only_one_arg", &st);
  ck_assert_int_eq(st, 2);
  assert_has(out, "usage: crema upgrade IN OUT");
  free(out);
  out = run("upgrade --help", &st);
  ck_assert_int_eq(st, 0);
  assert_has(out, "--format");
  free(out);
  snprintf(args, sizeof args, "upgrade " LENET_DEPLOY " '%s/no/such/dir/x.caffemodel'", tmpdir);
  out = run(args, &st);
  ck_assert_int_eq(st, 1);
  assert_has(out, "error: ");
  assert_has(out, "x.caffemodel");
  free(out);
}
END_TEST

int main(void) {
  Suite *s = suite_create("cli_info");
  TCase *tc = tcase_create("core");
  tcase_add_checked_fixture(tc, setup, teardown);
  tcase_add_test(tc, test_info_caffemodel);
  tcase_add_test(tc, test_info_prototxts);
  tcase_add_test(tc, test_info_blob_and_state);
  tcase_add_test(tc, test_upgrade_round_trips);
  tcase_add_test(tc, test_time_build_error);
  tcase_add_test(tc, test_info_blob_count_overflow);
  suite_add_tcase(s, tc);
  return test_run_suite(s);
}
