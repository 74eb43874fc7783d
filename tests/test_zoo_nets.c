/* test_zoo_nets.c -- every net prototxt of Caffe's model zoo (tests/data/zoo) builds in TRAIN
 * and in TEST and runs forward and backward with finite outputs and gradients.
 *
 * The data sets are not here, so each data layer (Data, ImageData, HDF5Data, WindowData) is
 * swapped, in the parsed message, for a DummyData layer with the same name, tops and rules:
 * images of the shape the net expects (crop_size, or the data set's size) and labels 0.
 * Batches shrink to 2 (deploy inputs to 1) and fully connected layers to at most 256 outputs
 * to keep AlexNet and GoogLeNet fast. Deploy nets have no loss, so their last layer before the
 * Softmax gets loss_weight 1 to make backward do real work. */
#include <check.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "support/run.h"
#include "net/net.h"
#include "proto/io.h"
#include "support/textproto.h"

static const char *const ZOO[] = {
    "bvlc_alexnet/deploy.prototxt",
    "bvlc_alexnet/train_val.prototxt",
    "bvlc_googlenet/deploy.prototxt",
    "bvlc_googlenet/train_val.prototxt",
    "bvlc_reference_caffenet/deploy.prototxt",
    "bvlc_reference_caffenet/train_val.prototxt",
    "cifar10/cifar10_full.prototxt",
    "cifar10/cifar10_full_sigmoid_train_test.prototxt",
    "cifar10/cifar10_full_sigmoid_train_test_bn.prototxt",
    "cifar10/cifar10_full_train_test.prototxt",
    "cifar10/cifar10_quick.prototxt",
    "cifar10/cifar10_quick_train_test.prototxt",
    "finetune_flickr_style/deploy.prototxt",
    "finetune_flickr_style/train_val.prototxt",
    "mnist/lenet.prototxt",
    "mnist/lenet_train_test.prototxt",
    "mnist/mnist_autoencoder.prototxt",
};
#define N_ZOO ((int)(sizeof ZOO / sizeof ZOO[0]))

static bool is_data_layer(const char *type) {
  return !strcmp(type, "Data") || !strcmp(type, "ImageData") || !strcmp(type, "HDF5Data") ||
         !strcmp(type, "WindowData");
}

/* The image shape a data layer delivers: crop_size when cropping, else the data set's own. */
static void image_shape(const Crema__LayerParameter *lp, int *c, int *h, int *w) {
  const char *src = lp->data_param && lp->data_param->source ? lp->data_param->source : "";
  if (lp->image_data_param && lp->image_data_param->source) src = lp->image_data_param->source;
  *c = 3;
  *h = *w = 32; /* CIFAR-10 */
  if (strstr(src, "mnist")) {
    *c = 1;
    *h = *w = 28;
  } else if (lp->image_data_param && lp->image_data_param->new_height) {
    *h = (int)lp->image_data_param->new_height;
    *w = (int)lp->image_data_param->new_width;
  } else if (strstr(src, "ilsvrc") || strstr(src, "imagenet")) {
    *h = *w = 256;
  }
  if (lp->transform_param && lp->transform_param->crop_size) *h = *w = (int)lp->transform_param->crop_size;
}

static void replace_string(char **field, const char *value) {
  free(*field);
  *field = strdup(value);
  ck_assert_ptr_nonnull(*field);
}

/* Data layers -> DummyData (uniform [0, 1) images, labels 0), batch 2; Input batch 1. */
static void swap_data_layers(Crema__NetParameter *m) {
  for (size_t i = 0; i < m->n_layer; i++) {
    Crema__LayerParameter *lp = m->layer[i];
    if (!strcmp(lp->type, "Input") && lp->input_param)
      for (size_t s = 0; s < lp->input_param->n_shape; s++) lp->input_param->shape[s]->dim[0] = 1;
    if (!is_data_layer(lp->type)) continue;
    int c, h, w;
    image_shape(lp, &c, &h, &w);
    char text[512];
    size_t used = (size_t)snprintf(text, sizeof text, "shape { dim: 2 dim: %d dim: %d dim: %d } ", c, h, w);
    used +=
        (size_t)snprintf(text + used, sizeof text - used, "data_filler { type: 'uniform' min: 0 max: 1 } ");
    if (lp->n_top > 1)
      snprintf(text + used, sizeof text - used, "shape { dim: 2 } data_filler { type: 'constant' value: 0 }");
    crema_message_free(lp->dummy_data_param);
    lp->dummy_data_param =
        (Crema__DummyDataParameter *)test_message(&crema__dummy_data_parameter__descriptor, text);
    crema_message_free(lp->data_param);
    lp->data_param = NULL;
    crema_message_free(lp->image_data_param);
    lp->image_data_param = NULL;
    crema_message_free(lp->transform_param);
    lp->transform_param = NULL;
    replace_string(&lp->type, "DummyData");
  }
}

/* Deploy nets: the last layer before the final Softmax gets a loss weight, so backward
 * reaches every layer (a loss on the Softmax output itself has zero gradient: its values
 * always sum to 1). */
static void add_loss_if_none(Crema__NetParameter *m) {
  for (size_t i = 0; i < m->n_layer; i++) {
    const char *t = m->layer[i]->type;
    if (strstr(t, "Loss") || m->layer[i]->n_loss_weight) return;
  }
  size_t k = m->n_layer - 1;
  while (k > 0 && !strcmp(m->layer[k]->type, "Softmax")) k--;
  Crema__LayerParameter *last = m->layer[k];
  last->loss_weight = calloc(last->n_top, sizeof(float));
  ck_assert_ptr_nonnull(last->loss_weight);
  last->n_loss_weight = last->n_top;
  for (size_t t = 0; t < last->n_top; t++) last->loss_weight[t] = 1.0f;
}

/* The 4096-wide fully connected layers of AlexNet-style nets hold 58M parameters whose
 * filling dominates the run time; 256 outputs exercise the same code. */
static void narrow_wide_layers(Crema__NetParameter *m) {
  for (size_t i = 0; i < m->n_layer; i++) {
    Crema__InnerProductParameter *ip = m->layer[i]->inner_product_param;
    if (ip && ip->num_output > 1024) ip->num_output = 256;
  }
}

/* One assertion per blob: Check records every ck_assert call, far too slow per element. */
static void check_finite(const crema_blob *b, bool diff, const char *net, const char *what) {
  const float *x = diff ? b->diff : b->data;
  size_t bad = b->count;
  for (size_t i = 0; i < b->count && bad == b->count; i++)
    if (!isfinite(x[i])) bad = i;
  ck_assert_msg(bad == b->count, "%s: %s %s[%zu] = %g is not finite", net, what, diff ? "diff" : "data", bad,
                bad < b->count ? (double)x[bad] : 0.0);
}

static void run_net(int which, Crema__Phase phase) {
  char path[512];
  snprintf(path, sizeof path, "%s/zoo/%s", CREMA_TEST_DATA, ZOO[which]);
  Crema__NetParameter *m = NULL;
  crema_error err;
  ck_assert_msg(crema_read_net_param(path, &m, &err) == 0, "%s", err.msg);
  swap_data_layers(m);
  add_loss_if_none(m);
  narrow_wide_layers(m);
  const char *stages[] = {"test-on-test"}; /* the autoencoder's TEST data layer needs a stage */
  crema_net_options o = {.phase = phase, .seed = 5, .source = path, .stages = stages, .n_stages = 1};
  crema_net *net = NULL;
  int rc = crema_net_build(m, &o, &net, &err);
  crema_message_free(m);
  ck_assert_msg(rc == 0, "%s (%s): %s", ZOO[which], phase == CREMA__PHASE__TRAIN ? "TRAIN" : "TEST", err.msg);
  ck_assert_int_gt(crema_net_num_outputs(net), 0);
  float loss = 0;
  ck_assert_msg(crema_net_forward(net, &loss, &err) == 0, "%s: %s", ZOO[which], err.msg);
  ck_assert_msg(isfinite(loss), "%s: loss %g", ZOO[which], (double)loss);
  crema_net_clear_param_diffs(net);
  crema_net_backward(net);
  for (int i = 0; i < crema_net_num_outputs(net); i++)
    check_finite(crema_net_output(net, i), false, ZOO[which], crema_net_output_name(net, i));
  double grad = 0.0;
  for (int p = 0; p < crema_net_num_params(net); p++) {
    const crema_net_param *np = crema_net_param_at(net, p);
    check_finite(np->blob, true, ZOO[which], crema_net_layer_name(net, np->layer));
    grad += crema_blob_asum_diff(np->blob);
  }
  ck_assert_msg(grad > 0.0, "%s: backward produced no parameter gradient at all", ZOO[which]);
  fprintf(stderr, "zoo: %-55s %-5s %3d layers, loss %g\n", ZOO[which],
          phase == CREMA__PHASE__TRAIN ? "TRAIN" : "TEST", crema_net_num_layers(net), (double)loss);
  crema_net_free(net);
}

START_TEST(zoo_net_train) { run_net(_i, CREMA__PHASE__TRAIN); }
END_TEST

START_TEST(zoo_net_test) { run_net(_i, CREMA__PHASE__TEST); }
END_TEST

int main(void) {
  Suite *s = suite_create("zoo_nets");
  TCase *tc = tcase_create("zoo");
  tcase_set_timeout(tc, 600);
  tcase_add_loop_test(tc, zoo_net_train, 0, N_ZOO);
  tcase_add_loop_test(tc, zoo_net_test, 0, N_ZOO);
  suite_add_tcase(s, tc);
  return test_run_suite(s);
}
