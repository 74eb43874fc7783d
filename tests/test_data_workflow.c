/* Caffe's data workflow end to end, unchanged Caffe files: convert_imageset and
 * compute_image_mean build examples/cifar10/{cifar10_train_lmdb, cifar10_test_lmdb,
 * mean.binaryproto} from generated images, then the zoo's cifar10_quick_train_test.prototxt
 * (relative paths, as in Caffe's examples) trains forward and tests on them. The net's data
 * blob must equal pixel - mean computed here. */
#include <check.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "support/run.h"
#include "data_test_util.h"
#include "net/net.h"

enum { N = 12, S = 32 };
static char dir[256];
static uint8_t chw[N][3 * S * S];

static void setup(void) {
  tmp_dir(dir);
  char p[512], list[1024] = "";
  snprintf(p, sizeof p, "%s/images", dir);
  ck_assert_int_eq(mkdir(p, 0775), 0);
  snprintf(p, sizeof p, "%s/examples", dir);
  ck_assert_int_eq(mkdir(p, 0775), 0);
  snprintf(p, sizeof p, "%s/examples/cifar10", dir);
  ck_assert_int_eq(mkdir(p, 0775), 0);
  for (int i = 0; i < N; i++) {
    uint8_t *px = random_pixels(S, S, 3, (uint64_t)i + 77);
    for (int k = 0; k < 3; k++)
      for (int j = 0; j < S * S; j++) chw[i][k * S * S + j] = px[j * 3 + 2 - k];
    snprintf(p, sizeof p, "%s/images/%02d.png", dir, i);
    write_png(p, S, S, 3, px);
    free(px);
    snprintf(list + strlen(list), sizeof list - strlen(list), "%02d.png %d\n", i, i % 10);
  }
  snprintf(p, sizeof p, "%s/list.txt", dir);
  write_text(p, list);
}

static void teardown(void) { remove_tree(dir); }

START_TEST(test_cifar10_quick_on_converted_data) {
  char args[2048], *out;
  const char *dbs[2] = {"cifar10_train_lmdb", "cifar10_test_lmdb"};
  for (int i = 0; i < 2; i++) {
    snprintf(args, sizeof args, "convert_imageset '%s/images/' '%s/list.txt' '%s/examples/cifar10/%s'", dir,
             dir, dir, dbs[i]);
    ck_assert_msg(run_tool(dir, args, &out) == 0, "%.500s", out);
    free(out);
  }
  snprintf(args, sizeof args,
           "compute_image_mean -backend=lmdb '%s/examples/cifar10/cifar10_train_lmdb' "
           "'%s/examples/cifar10/mean.binaryproto'",
           dir, dir);
  ck_assert_msg(run_tool(dir, args, &out) == 0, "%.500s", out);
  free(out);

  char cwd[4096];
  ck_assert_ptr_nonnull(getcwd(cwd, sizeof cwd));
  ck_assert_int_eq(chdir(dir), 0); /* the prototxt's paths are relative, as in Caffe's examples */
  const Crema__Phase phases[2] = {CREMA__PHASE__TRAIN, CREMA__PHASE__TEST};
  for (int ph = 0; ph < 2; ph++) {
    crema_net_options opt = {0};
    opt.phase = phases[ph];
    opt.seed = 5;
    crema_net *net;
    crema_error err;
    ck_assert_msg(crema_net_load(CREMA_TEST_DATA "/zoo/cifar10/cifar10_quick_train_test.prototxt", &opt, &net,
                                 &err) == 0,
                  "%s", err.msg);
    float loss = -1;
    ck_assert_msg(crema_net_forward(net, &loss, &err) == 0, "%s", err.msg);
    ck_assert(isfinite(loss) && loss > 0);
    const crema_blob *data = crema_net_blob_by_name(net, "data"),
                     *label = crema_net_blob_by_name(net, "label");
    ck_assert_int_eq(data->shape[0], 100);
    ck_assert_int_eq(data->shape[1], 3);
    ck_assert_int_eq(data->shape[2], S);
    /* Batch item 13 is record 13 % 12 = 1: pixel - mean (mean over the 12 images). */
    for (int j = 0; j < 3 * S * S; j += 7) {
      double s = 0;
      for (int i = 0; i < N; i++) s += chw[i][j];
      const float mean = (float)(s / N);
      ck_assert_float_eq_tol(data->data[13 * 3 * S * S + j], (float)chw[1][j] - mean, 1e-4f);
    }
    ck_assert_float_eq(label->data[13], 1.0f);
    if (phases[ph] == CREMA__PHASE__TEST) {
      const crema_blob *acc = crema_net_blob_by_name(net, "accuracy");
      ck_assert_ptr_nonnull(acc);
      ck_assert(acc->data[0] >= 0.0f && acc->data[0] <= 1.0f);
    }
    crema_net_free(net);
  }
  ck_assert_int_eq(chdir(cwd), 0);
}
END_TEST

int main(void) {
  Suite *s = suite_create("data_workflow");
  TCase *tc = tcase_create("core");
  tcase_add_checked_fixture(tc, setup, teardown);
  tcase_add_test(tc, test_cifar10_quick_on_converted_data);
  suite_add_tcase(s, tc);
  return test_run_suite(s);
}
