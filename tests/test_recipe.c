/* The finetuning recipe as pure net surgery: head detection on every zoo net (CaffeNet,
 * AlexNet, GoogLeNet's three heads, Flickr style, LeNet, CIFAR-10) and a SqueezeNet-style
 * conv head; clear errors when there is no head; deploy -> train_val; head renaming and
 * re-initialisation; freezing; train_val -> deploy (built and shaped); solvers; and the
 * --caffe stripping of crema's own fields. */
#include <check.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "net/net.h"
#include "proto/io.h"
#include "recipe/recipe.h"
#include "support/run.h"
#include "support/textproto.h"

static Crema__NetParameter *zoo(const char *rel) {
  char path[512];
  snprintf(path, sizeof path, "%s/zoo/%s", CREMA_TEST_DATA, rel);
  Crema__NetParameter *n;
  crema_error err;
  ck_assert_msg(crema_read_net_param(path, &n, &err) == 0, "%s", err.msg);
  return n;
}

/* Heads found in a zoo net, joined with ','. */
static void heads_of(const Crema__NetParameter *n, char *buf, size_t size) {
  char **names;
  int k;
  crema_error err;
  ck_assert_msg(crema_recipe_find_heads(n, &names, &k, &err) == 0, "%s", err.msg);
  buf[0] = '\0';
  for (int i = 0; i < k; i++) {
    strncat(buf, names[i], size - strlen(buf) - 2);
    if (i + 1 < k) strcat(buf, ",");
  }
  crema_recipe_free_names(names, k);
}

static void expect_heads(const char *rel, const char *want) {
  Crema__NetParameter *n = zoo(rel);
  char got[256];
  heads_of(n, got, sizeof got);
  ck_assert_msg(!strcmp(got, want), "%s: heads %s, expected %s", rel, got, want);
  crema_message_free(n);
}

START_TEST(test_heads_of_zoo_nets) {
  expect_heads("bvlc_reference_caffenet/deploy.prototxt", "fc8");
  expect_heads("bvlc_reference_caffenet/train_val.prototxt", "fc8");
  expect_heads("bvlc_alexnet/deploy.prototxt", "fc8");
  expect_heads("bvlc_alexnet/train_val.prototxt", "fc8");
  expect_heads("bvlc_googlenet/train_val.prototxt", "loss1/classifier,loss2/classifier,loss3/classifier");
  expect_heads("bvlc_googlenet/deploy.prototxt", "loss3/classifier");
  expect_heads("finetune_flickr_style/deploy.prototxt", "fc8_flickr");
  expect_heads("finetune_flickr_style/train_val.prototxt", "fc8_flickr");
  expect_heads("mnist/lenet.prototxt", "ip2");
  expect_heads("mnist/lenet_train_test.prototxt", "ip2");
  expect_heads("cifar10/cifar10_quick.prototxt", "ip2");
  expect_heads("cifar10/cifar10_quick_train_test.prototxt", "ip2");
  expect_heads("cifar10/cifar10_full.prototxt", "ip1");
  expect_heads("cifar10/cifar10_full_sigmoid_train_test_bn.prototxt", "ip1");
}
END_TEST

static const char SQUEEZE[] =
    "name: 'sq' layer { name: 'data' type: 'Input' top: 'data' input_param { shape { dim: 1 dim: 3 dim: 16 "
    "dim: 16 } } }"
    "layer { name: 'conv1' type: 'Convolution' bottom: 'data' top: 'conv1' convolution_param { num_output: 8 "
    "kernel_size: 3 } }"
    "layer { name: 'relu1' type: 'ReLU' bottom: 'conv1' top: 'conv1' }"
    "layer { name: 'drop9' type: 'Dropout' bottom: 'conv1' top: 'conv1' }"
    "layer { name: 'conv10' type: 'Convolution' bottom: 'conv1' top: 'conv10' convolution_param { "
    "num_output: "
    "1000 kernel_size: 1 } }"
    "layer { name: 'relu_conv10' type: 'ReLU' bottom: 'conv10' top: 'conv10' }"
    "layer { name: 'pool10' type: 'Pooling' bottom: 'conv10' top: 'pool10' pooling_param { pool: AVE "
    "global_pooling: true } }"
    "layer { name: 'prob' type: 'Softmax' bottom: 'pool10' top: 'prob' }";

START_TEST(test_conv_head_and_errors) {
  Crema__NetParameter *n = test_net_param(SQUEEZE);
  char got[256];
  heads_of(n, got, sizeof got);
  ck_assert_str_eq(got, "conv10");
  /* replaced: renamed, 4 outputs; the deploy built from it gives prob of shape 1 x 4 x 1 x 1 */
  char *h[1] = {"conv10"};
  crema_recipe_head_options o = {4, "_ft", 10};
  Crema__NetParameter *r;
  crema_error err;
  ck_assert_int_eq(crema_recipe_replace_heads(n, h, 1, &o, &r, &err), 0);
  crema_net_options no = {.phase = CREMA__PHASE__TEST, .seed = 1};
  crema_net *net;
  ck_assert_msg(crema_net_build(r, &no, &net, &err) == 0, "%s", err.msg);
  ck_assert_int_eq(crema_net_layer_index(net, "conv10_ft") >= 0, 1);
  ck_assert_int_eq(crema_net_blob_by_name(net, "prob")->count, 4);
  crema_net_free(net);
  crema_message_free(r);
  crema_message_free(n);

  /* a 3x3 convolution before global pooling is not a head */
  n = test_net_param(
      "layer { name: 'data' type: 'Input' top: 'data' input_param { shape { dim: 1 dim: 3 dim: 8 dim: 8 } } }"
      "layer { name: 'c' type: 'Convolution' bottom: 'data' top: 'c' convolution_param { num_output: 4 "
      "kernel_size: 3 } }"
      "layer { name: 'p' type: 'Pooling' bottom: 'c' top: 'p' pooling_param { pool: AVE global_pooling: true "
      "} }"
      "layer { name: 'prob' type: 'Softmax' bottom: 'p' top: 'prob' }");
  char **names;
  int k;
  ck_assert_int_eq(crema_recipe_find_heads(n, &names, &k, &err), -1);
  ck_assert_msg(strstr(err.msg, "\"c\"") && strstr(err.msg, "--head"), "%s", err.msg);
  crema_message_free(n);
  /* no softmax at all */
  n = zoo("mnist/mnist_autoencoder.prototxt");
  ck_assert_int_eq(crema_recipe_find_heads(n, &names, &k, &err), -1);
  ck_assert_msg(strstr(err.msg, "Softmax") && strstr(err.msg, "--head"), "%s", err.msg);
  crema_message_free(n);
}
END_TEST

static const Crema__LayerParameter *layer(const Crema__NetParameter *n, const char *name) {
  for (size_t i = 0; i < n->n_layer; i++)
    if (!strcmp(n->layer[i]->name, name)) return n->layer[i];
  return NULL;
}

START_TEST(test_deploy_to_train_val_and_back) {
  Crema__NetParameter *base = zoo("mnist/lenet.prototxt");
  ck_assert(crema_recipe_is_deploy(base));
  int c, h, w;
  crema_error err;
  ck_assert_int_eq(crema_recipe_input_shape(base, &c, &h, &w, &err), 0);
  ck_assert_int_eq(c * 1000 + h * 10 + w, 1000 + 280 + 28);
  Crema__TransformationParameter *t = (Crema__TransformationParameter *)test_message(
      &crema__transformation_parameter__descriptor, "scale: 0.00390625 resize_height: 28 resize_width: 28");
  crema_recipe_data d = {"train_lmdb", "val_lmdb", 16, 10, t, true};
  Crema__NetParameter *tv;
  ck_assert_int_eq(crema_recipe_train_val(base, &d, 12, &tv, &err), 0);
  ck_assert(!crema_recipe_is_deploy(tv));
  ck_assert_str_eq(tv->layer[0]->type, "Data");
  ck_assert_str_eq(tv->layer[0]->data_param->source, "train_lmdb");
  ck_assert_uint_eq(tv->layer[0]->data_param->batch_size, 16);
  ck_assert(tv->layer[0]->transform_param->mirror);
  ck_assert(!tv->layer[0]->transform_param->has_resize_height); /* deploy-only field kept out */
  ck_assert_str_eq(tv->layer[1]->data_param->source, "val_lmdb");
  ck_assert(!tv->layer[1]->transform_param->mirror);
  ck_assert_int_eq(tv->layer[1]->include[0]->phase, CREMA__PHASE__TEST);
  ck_assert_ptr_nonnull(layer(tv, "loss"));
  ck_assert_str_eq(layer(tv, "loss")->bottom[1], "label");
  ck_assert_ptr_nonnull(layer(tv, "accuracy"));
  ck_assert_uint_eq(layer(tv, "accuracy_top5")->accuracy_param->top_k, 5); /* 12 classes >= 10 */
  ck_assert_ptr_null(layer(tv, "prob"));

  /* heads replaced */
  char **names;
  int k;
  ck_assert_int_eq(crema_recipe_find_heads(tv, &names, &k, &err), 0);
  ck_assert_str_eq(names[0], "ip2");
  crema_recipe_head_options o = {12, "_ft", 10};
  Crema__NetParameter *ft;
  ck_assert_int_eq(crema_recipe_replace_heads(tv, names, k, &o, &ft, &err), 0);
  crema_recipe_free_names(names, k);
  const Crema__LayerParameter *hd = layer(ft, "ip2_ft");
  ck_assert_ptr_nonnull(hd);
  ck_assert_ptr_null(layer(ft, "ip2"));
  ck_assert_uint_eq(hd->inner_product_param->num_output, 12);
  ck_assert_str_eq(hd->inner_product_param->weight_filler->type, "xavier");
  ck_assert_float_eq(hd->param[0]->lr_mult, 10);
  ck_assert_float_eq(hd->param[1]->lr_mult, 20);
  ck_assert_ptr_nonnull(layer(tv, "ip2")); /* the input is untouched */

  /* freezing */
  Crema__NetParameter *fz;
  ck_assert_int_eq(crema_recipe_freeze_through(ft, "conv2", &fz, &err), 0);
  ck_assert_float_eq(layer(fz, "conv1")->param[0]->lr_mult, 0);
  ck_assert_float_eq(layer(fz, "conv2")->param[1]->lr_mult, 0);
  ck_assert_float_eq(layer(fz, "ip1")->param[0]->lr_mult, 1);
  crema_message_free(fz);
  ck_assert_int_eq(crema_recipe_freeze_through(ft, "conv9", &fz, &err), -1);
  ck_assert_msg(strstr(err.msg, "conv9"), "%s", err.msg);
  char *keep[1] = {"ip2_ft"};
  ck_assert_int_eq(crema_recipe_train_only(ft, keep, 1, &fz, &err), 0);
  ck_assert_float_eq(layer(fz, "ip1")->param[1]->lr_mult, 0);
  ck_assert_float_eq(layer(fz, "ip2_ft")->param[0]->lr_mult, 10);
  crema_message_free(fz);

  /* back to a deploy net that builds and outputs 12 probabilities */
  Crema__NetParameter *dep;
  ck_assert_int_eq(crema_recipe_deploy(ft, 1, 28, 28, &dep, &err), 0);
  ck_assert(crema_recipe_is_deploy(dep));
  crema_net_options no = {.phase = CREMA__PHASE__TEST, .seed = 1};
  crema_net *net;
  ck_assert_msg(crema_net_build(dep, &no, &net, &err) == 0, "%s", err.msg);
  ck_assert_int_eq(crema_net_blob_by_name(net, "prob")->count, 12);
  ck_assert_int_ge(crema_net_layer_index(net, "ip2_ft"), 0);
  crema_net_free(net);
  crema_message_free(dep);
  crema_message_free(ft);
  crema_message_free(tv);
  crema_message_free(t);
  crema_message_free(base);
}
END_TEST

/* GoogLeNet's train_val: three heads replaced; its deploy keeps only the loss3 path. */
START_TEST(test_googlenet_three_heads) {
  Crema__NetParameter *base = zoo("bvlc_googlenet/train_val.prototxt");
  crema_recipe_data d = {"t", "v", 8, 8, NULL, true};
  Crema__NetParameter *tv, *ft, *dep;
  crema_error err;
  ck_assert_int_eq(crema_recipe_train_val(base, &d, 3, &tv, &err), 0);
  /* top-5 accuracies do not fit 3 classes */
  ck_assert_ptr_null(layer(tv, "loss3/top-5"));
  ck_assert_ptr_nonnull(layer(tv, "loss3/top-1"));
  char **names;
  int k;
  ck_assert_int_eq(crema_recipe_find_heads(tv, &names, &k, &err), 0);
  ck_assert_int_eq(k, 3);
  crema_recipe_head_options o = {3, "_ft", 10};
  ck_assert_int_eq(crema_recipe_replace_heads(tv, names, k, &o, &ft, &err), 0);
  crema_recipe_free_names(names, k);
  for (int i = 1; i <= 3; i++) {
    char nm[64];
    snprintf(nm, sizeof nm, "loss%d/classifier_ft", i);
    ck_assert_msg(layer(ft, nm) != NULL, "%s missing", nm);
  }
  ck_assert_int_eq(crema_recipe_deploy(ft, 3, 224, 224, &dep, &err), 0);
  ck_assert_ptr_null(layer(dep, "loss1/classifier_ft"));
  ck_assert_ptr_null(layer(dep, "loss1/ave_pool"));
  ck_assert_ptr_nonnull(layer(dep, "loss3/classifier_ft"));
  ck_assert_str_eq(dep->layer[dep->n_layer - 1]->name, "prob");
  crema_net_options no = {.phase = CREMA__PHASE__TEST, .seed = 1};
  crema_net *net;
  ck_assert_msg(crema_net_build(dep, &no, &net, &err) == 0, "%s", err.msg);
  ck_assert_int_eq(crema_net_blob_by_name(net, "prob")->count, 3);
  ck_assert_int_eq(crema_net_num_outputs(net), 1);
  crema_net_free(net);
  crema_message_free(dep);
  crema_message_free(ft);
  crema_message_free(tv);
  crema_message_free(base);
}
END_TEST

START_TEST(test_solvers_and_caffe_fields) {
  crema_recipe_solver_options o = {.net = "train_val.prototxt",
                                   .max_iter = 100,
                                   .test_iter = 4,
                                   .test_interval = 10,
                                   .display = 5,
                                   .snapshot = 10,
                                   .snapshot_prefix = "snapshots/ft",
                                   .patience = 3,
                                   .has_seed = true,
                                   .seed = 7};
  Crema__SolverParameter *s;
  crema_error err;
  ck_assert_int_eq(crema_recipe_solver(&o, &s, &err), 0);
  ck_assert_float_eq_tol(s->base_lr, 0.001f, 1e-9);
  ck_assert_float_eq_tol(s->momentum, 0.9f, 1e-7);
  ck_assert_str_eq(s->lr_policy, "step");
  ck_assert_int_eq(s->stepsize, 75);
  ck_assert_int_eq(s->test_iter[0], 4);
  ck_assert_int_eq(s->early_stopping->patience, 3);
  ck_assert_int_eq(s->random_seed, 7);
  char where[128];
  ck_assert(crema_recipe_has_crema_fields(&s->base, where, sizeof where));
  ck_assert_msg(strstr(where, "early_stopping"), "%s", where);
  crema_message_free(s);
  o.caffe = true;
  ck_assert_int_eq(crema_recipe_solver(&o, &s, &err), 0);
  ck_assert(!crema_recipe_has_crema_fields(&s->base, NULL, 0));
  ck_assert_ptr_null(s->early_stopping);
  crema_message_free(s);
  o.schedule = "cosine";
  ck_assert_int_eq(crema_recipe_solver(&o, &s, &err), -1);
  ck_assert_msg(strstr(err.msg, "cosine"), "%s", err.msg);

  /* a base solver adapted: its rule kept, lr x 0.1, nets replaced */
  Crema__SolverParameter *base = test_solver_param(
      "net: 'x.prototxt' test_net: 'y' base_lr: 0.01 type: 'Adam' lr_policy: 'fixed' warmup_iter: 5");
  o.base = base;
  o.schedule = NULL;
  o.caffe = false;
  ck_assert_int_eq(crema_recipe_solver(&o, &s, &err), 0);
  ck_assert_float_eq_tol(s->base_lr, 0.001f, 1e-9);
  ck_assert_str_eq(s->type, "Adam");
  ck_assert_str_eq(s->lr_policy, "fixed");
  ck_assert_str_eq(s->net, "train_val.prototxt");
  ck_assert_uint_eq(s->n_test_net, 0);
  ck_assert_int_eq(s->warmup_iter, 5);
  crema_message_free(s);
  o.caffe = true;
  ck_assert_int_eq(crema_recipe_solver(&o, &s, &err), 0);
  ck_assert(!s->has_warmup_iter);
  crema_message_free(s);
  crema_message_free(base);

  /* nets: rrelu_param and augment stripped, Caffe's fields kept */
  Crema__NetParameter *n =
      test_net_param("layer { name: 'd' type: 'Data' top: 'd' transform_param { scale: 0.5 augment { "
                     "max_rotation: 5 } } } layer { name: 'r' type: 'RReLU' bottom: 'd' top: 'r' rrelu_param "
                     "{ lower: 0.1 } }");
  ck_assert(crema_recipe_has_crema_fields(&n->base, NULL, 0));
  crema_recipe_strip_crema_fields(&n->base);
  ck_assert(!crema_recipe_has_crema_fields(&n->base, NULL, 0));
  ck_assert_float_eq(n->layer[0]->transform_param->scale, 0.5f);
  ck_assert_ptr_null(n->layer[1]->rrelu_param);
  crema_message_free(n);
}
END_TEST

/* Frozen BatchNorm layers use their stored statistics; later ones keep learning them. */
START_TEST(test_freeze_batch_norm) {
  Crema__NetParameter *n = zoo("cifar10/cifar10_full_sigmoid_train_test_bn.prototxt"), *fz;
  crema_error err;
  ck_assert_int_eq(crema_recipe_freeze_through(n, "bn2", &fz, &err), 0);
  const Crema__LayerParameter *b1 = layer(fz, "bn1"), *b3 = layer(fz, "bn3");
  ck_assert(b1->batch_norm_param->has_use_global_stats && b1->batch_norm_param->use_global_stats);
  ck_assert_uint_eq(b1->n_param, 3);
  ck_assert(!b3->batch_norm_param || !b3->batch_norm_param->use_global_stats);
  ck_assert_float_eq(layer(fz, "conv2")->param[0]->lr_mult, 0);
  ck_assert_float_ne(layer(fz, "conv3")->param[0]->lr_mult, 0);
  crema_message_free(fz);
  crema_message_free(n);
}
END_TEST

int main(void) {
  Suite *s = suite_create("recipe");
  TCase *tc = tcase_create("core");
  tcase_add_test(tc, test_heads_of_zoo_nets);
  tcase_add_test(tc, test_conv_head_and_errors);
  tcase_add_test(tc, test_deploy_to_train_val_and_back);
  tcase_add_test(tc, test_googlenet_three_heads);
  tcase_add_test(tc, test_solvers_and_caffe_fields);
  tcase_add_test(tc, test_freeze_batch_norm);
  suite_add_tcase(s, tc);
  return test_run_suite(s);
}
