/* Legacy nets and solvers upgrade to exactly what Caffe's upgrade_proto produces: each case
 * compares the upgraded message with the expected current-format text (packed bytes). */
#include <check.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "support/run.h"
#include "proto/io.h"
#include "proto/textformat.h"
#include "proto/upgrade.h"
#include "support/textproto.h"

static bool same_message(const ProtobufCMessage *a, const ProtobufCMessage *b) {
  size_t na = protobuf_c_message_get_packed_size(a), nb = protobuf_c_message_get_packed_size(b);
  uint8_t *pa = malloc(na + 1), *pb = malloc(nb + 1);
  protobuf_c_message_pack(a, pa);
  protobuf_c_message_pack(b, pb);
  bool same = na == nb && !memcmp(pa, pb, na);
  free(pa);
  free(pb);
  return same;
}

/* Fails with both texts when the messages differ. */
static void assert_same(const ProtobufCMessage *got, const ProtobufCMessage *want) {
  if (same_message(got, want)) return;
  char *g = NULL, *w = NULL;
  crema_error err = {{0}};
  crema_text_print(got, &g, &err);
  crema_text_print(want, &w, &err);
  ck_abort_msg("upgraded message differs.\n--- got:\n%s\n--- want:\n%s", g, w);
}

static const char *V1_NET =
    "name: 'v1'\n"
    "input: 'data'\n"
    "input_dim: 10 input_dim: 1 input_dim: 28 input_dim: 28\n"
    "layers {\n"
    "  name: 'conv1' type: CONVOLUTION bottom: 'data' top: 'conv1'\n"
    "  blobs_lr: 1 blobs_lr: 2 weight_decay: 1 weight_decay: 0\n"
    "  convolution_param { num_output: 20 kernel_size: 5 stride: 1\n"
    "    weight_filler { type: 'xavier' } bias_filler { type: 'constant' } }\n"
    "}\n"
    "layers { name: 'pool1' type: POOLING bottom: 'conv1' top: 'pool1'\n"
    "  pooling_param { pool: MAX kernel_size: 2 stride: 2 } }\n"
    "layers { name: 'ip1' type: INNER_PRODUCT bottom: 'pool1' top: 'ip1'\n"
    "  param: 'shared_w' param: 'shared_b' blob_share_mode: PERMISSIVE blobs_lr: 3\n"
    "  inner_product_param { num_output: 10 } }\n"
    "layers { name: 'relu1' type: RELU bottom: 'ip1' top: 'ip1' relu_param { negative_slope: 0.1 } }\n"
    "layers { name: 'drop' type: DROPOUT bottom: 'ip1' top: 'ip1' dropout_param { dropout_ratio: 0.4 }\n"
    "  exclude { phase: TEST } }\n"
    "layers { name: 'prob' type: SOFTMAX_LOSS bottom: 'ip1' bottom: 'label' top: 'loss' loss_weight: 2\n"
    "  include { phase: TRAIN } loss_param { ignore_label: 255 } }\n"
    "layers { name: 'acc' type: ACCURACY bottom: 'ip1' bottom: 'label' top: 'acc'\n"
    "  accuracy_param { top_k: 5 } include { phase: TEST stage: 'val' } }\n"
    "layers { name: 'n' type: NONE }\n";

static const char *V1_NET_UPGRADED =
    "name: 'v1'\n"
    "layer { name: 'input' type: 'Input' top: 'data'\n"
    "  input_param { shape { dim: 10 dim: 1 dim: 28 dim: 28 } } }\n"
    "layer {\n"
    "  name: 'conv1' type: 'Convolution' bottom: 'data' top: 'conv1'\n"
    "  param { lr_mult: 1 decay_mult: 1 } param { lr_mult: 2 decay_mult: 0 }\n"
    "  convolution_param { num_output: 20 kernel_size: 5 stride: 1\n"
    "    weight_filler { type: 'xavier' } bias_filler { type: 'constant' } }\n"
    "}\n"
    "layer { name: 'pool1' type: 'Pooling' bottom: 'conv1' top: 'pool1'\n"
    "  pooling_param { pool: MAX kernel_size: 2 stride: 2 } }\n"
    "layer { name: 'ip1' type: 'InnerProduct' bottom: 'pool1' top: 'ip1'\n"
    "  param { name: 'shared_w' share_mode: PERMISSIVE lr_mult: 3 } param { name: 'shared_b' }\n"
    "  inner_product_param { num_output: 10 } }\n"
    "layer { name: 'relu1' type: 'ReLU' bottom: 'ip1' top: 'ip1' relu_param { negative_slope: 0.1 } }\n"
    "layer { name: 'drop' type: 'Dropout' bottom: 'ip1' top: 'ip1' dropout_param { dropout_ratio: 0.4 }\n"
    "  exclude { phase: TEST } }\n"
    "layer { name: 'prob' type: 'SoftmaxWithLoss' bottom: 'ip1' bottom: 'label' top: 'loss' loss_weight: 2\n"
    "  include { phase: TRAIN } loss_param { ignore_label: 255 } }\n"
    "layer { name: 'acc' type: 'Accuracy' bottom: 'ip1' bottom: 'label' top: 'acc'\n"
    "  accuracy_param { top_k: 5 } include { phase: TEST stage: 'val' } }\n"
    "layer { name: 'n' type: '' }\n";

START_TEST(test_v1_net) {
  Crema__NetParameter *net = test_net_param(V1_NET);
  Crema__NetParameter *want = test_net_param(V1_NET_UPGRADED);
  bool changed = false;
  crema_error err = {{0}};
  ck_assert_msg(crema_upgrade_net(net, "v1.prototxt", &changed, &err) == 0, "%s", err.msg);
  ck_assert(changed);
  ck_assert_uint_eq(net->n_layers, 0);
  ck_assert_uint_eq(net->n_input, 0);
  ck_assert_uint_eq(net->n_input_dim, 0);
  assert_same(&net->base, &want->base);
  /* Upgrading an up-to-date net changes nothing. */
  ck_assert_int_eq(crema_upgrade_net(net, "v1.prototxt", &changed, &err), 0);
  ck_assert(!changed);
  assert_same(&net->base, &want->base);
  crema_message_free(net);
  crema_message_free(want);
}
END_TEST

START_TEST(test_v1_data_layers) {
  /* Caffe's UpgradeNetDataTransformation gives every V1 data layer a transform_param (and
   * its data parameter), even when it had nothing to move, once any data layer needs it. */
  Crema__NetParameter *net = test_net_param(
      "layers { name: 'mnist' type: DATA top: 'data' top: 'label'\n"
      "  data_param { source: 'train_lmdb' backend: LMDB batch_size: 64 scale: 0.00390625\n"
      "    mean_file: 'mean.binaryproto' mirror: true crop_size: 24 }\n"
      "  include { phase: TRAIN } }\n"
      "layers { name: 'img' type: IMAGE_DATA top: 'd2' top: 'l2' image_data_param { source: 'list.txt' } }\n"
      "layers { name: 'win' type: WINDOW_DATA top: 'd3' top: 'l3' window_data_param { scale: 2 } }\n"
      "layers { name: 'plain' type: DATA top: 'd4' top: 'l4' }\n");
  Crema__NetParameter *want = test_net_param(
      "layer { name: 'mnist' type: 'Data' top: 'data' top: 'label' include { phase: TRAIN }\n"
      "  transform_param { scale: 0.00390625 mean_file: 'mean.binaryproto' mirror: true crop_size: 24 }\n"
      "  data_param { source: 'train_lmdb' backend: LMDB batch_size: 64 } }\n"
      "layer { name: 'img' type: 'ImageData' top: 'd2' top: 'l2' transform_param {}\n"
      "  image_data_param { source: 'list.txt' } }\n"
      "layer { name: 'win' type: 'WindowData' top: 'd3' top: 'l3' transform_param { scale: 2 }\n"
      "  window_data_param {} }\n"
      "layer { name: 'plain' type: 'Data' top: 'd4' top: 'l4' transform_param {} data_param {} }\n");
  bool changed = false;
  crema_error err = {{0}};
  ck_assert_msg(crema_upgrade_net(net, NULL, &changed, &err) == 0, "%s", err.msg);
  ck_assert(changed);
  assert_same(&net->base, &want->base);
  ck_assert_float_eq(net->layer[0]->transform_param->scale, 0.00390625f);
  ck_assert(!net->layer[0]->data_param->has_scale);
  crema_message_free(net);
  crema_message_free(want);
}
END_TEST

START_TEST(test_input_shape_and_batchnorm) {
  Crema__NetParameter *net =
      test_net_param("input: 'a' input_shape { dim: 1 dim: 3 } input: 'b'\n"
                     "input_shape { dim: 2 }\n"
                     "layer { name: 'x' type: 'ReLU' bottom: 'a' top: 'x' }\n"
                     "layer { name: 'bn' type: 'BatchNorm' bottom: 'x' top: 'x'\n"
                     "  param { lr_mult: 0 } param { lr_mult: 1 name: 'keep' } param {} }\n"
                     "layer { name: 'bn2' type: 'BatchNorm' bottom: 'x' top: 'y' }\n");
  Crema__NetParameter *want =
      test_net_param("layer { name: 'input' type: 'Input' top: 'a' top: 'b'\n"
                     "  input_param { shape { dim: 1 dim: 3 } shape { dim: 2 } } }\n"
                     "layer { name: 'x' type: 'ReLU' bottom: 'a' top: 'x' }\n"
                     "layer { name: 'bn' type: 'BatchNorm' bottom: 'x' top: 'x'\n"
                     "  param { lr_mult: 0 decay_mult: 0 } param { name: 'keep' lr_mult: 0 decay_mult: 0 }\n"
                     "  param { lr_mult: 0 decay_mult: 0 } }\n"
                     "layer { name: 'bn2' type: 'BatchNorm' bottom: 'x' top: 'y' }\n");
  crema_error err = {{0}};
  ck_assert_msg(crema_upgrade_net(net, NULL, NULL, &err) == 0, "%s", err.msg);
  assert_same(&net->base, &want->base);
  crema_message_free(net);
  crema_message_free(want);

  /* A legacy caffemodel's bare `input` without shapes is simply dropped. */
  net = test_net_param("input: 'data' layer { name: 'x' type: 'ReLU' }");
  want = test_net_param("layer { name: 'x' type: 'ReLU' }");
  ck_assert_int_eq(crema_upgrade_net(net, NULL, NULL, &err), 0);
  assert_same(&net->base, &want->base);
  crema_message_free(net);
  crema_message_free(want);
}
END_TEST

START_TEST(test_v1_caffemodel) {
  /* A V1 caffemodel (legacy 4-d blobs) written in binary, read back through the net reader. */
  Crema__NetParameter *v1 = test_net_param(
      "name: 'old'\n"
      "layers { name: 'ip' type: INNER_PRODUCT bottom: 'data' top: 'ip' blobs_lr: 1 blobs_lr: 2\n"
      "  blobs { num: 1 channels: 1 height: 2 width: 3 data: [1, 2, 3, 4, 5, 6] }\n"
      "  blobs { num: 1 channels: 1 height: 1 width: 2 data: [0.5, -0.5] } }\n");
  char dir[] = "/tmp/crema_test_upgrade.XXXXXX";
  ck_assert_ptr_nonnull(mkdtemp(dir));
  char path[256];
  snprintf(path, sizeof path, "%s/old.caffemodel", dir);
  crema_error err = {{0}};
  ck_assert_int_eq(crema_write_binary_message(path, &v1->base, &err), 0);
  Crema__NetParameter *net = NULL;
  ck_assert_msg(crema_read_net_param(path, &net, &err) == 0, "%s", err.msg);
  Crema__NetParameter *want =
      test_net_param("name: 'old'\n"
                     "layer { name: 'ip' type: 'InnerProduct' bottom: 'data' top: 'ip' param { lr_mult: 1 } "
                     "param { lr_mult: 2 }\n"
                     "  blobs { num: 1 channels: 1 height: 2 width: 3 data: [1, 2, 3, 4, 5, 6] }\n"
                     "  blobs { num: 1 channels: 1 height: 1 width: 2 data: [0.5, -0.5] } }\n");
  assert_same(&net->base, &want->base);
  unlink(path);
  rmdir(dir);
  crema_message_free(v1);
  crema_message_free(net);
  crema_message_free(want);
}
END_TEST

START_TEST(test_net_errors) {
  crema_error err = {{0}};
  Crema__NetParameter *net = test_net_param("layers { layer: 'opaque v0 bytes' }");
  ck_assert_int_eq(crema_upgrade_net(net, "v0.prototxt", NULL, &err), -1);
  ck_assert_ptr_nonnull(strstr(err.msg, "v0.prototxt"));
  ck_assert_ptr_nonnull(strstr(err.msg, "V0 layer format"));
  ck_assert_ptr_nonnull(strstr(err.msg, "upgrade_net_proto_text"));
  crema_message_free(net);

  net = test_net_param("layer { name: 'a' } layers { name: 'b' }");
  ck_assert_int_eq(crema_upgrade_net(net, "mixed.prototxt", NULL, &err), -1);
  ck_assert_ptr_nonnull(strstr(err.msg, "both 'layer' and 'layers'"));
  crema_message_free(net);

  net = test_net_param("input: 'a' input: 'b' input_dim: [1, 2, 3, 4]");
  ck_assert_int_eq(crema_upgrade_net(net, "dims.prototxt", NULL, &err), -1);
  ck_assert_ptr_nonnull(strstr(err.msg, "4 dims per input"));
  crema_message_free(net);

  net = test_net_param("layers { name: 'bad' type: NONE }");
  net->layers[0]->type = (Crema__V1LayerParameter__LayerType)99; /* as an unknown number on the wire */
  ck_assert_int_eq(crema_upgrade_net(net, "t.prototxt", NULL, &err), -1);
  ck_assert_ptr_nonnull(strstr(err.msg, "\"bad\""));
  crema_message_free(net);
}
END_TEST

START_TEST(test_solver_type) {
  const char *in[] = {"SGD", "NESTEROV", "ADAGRAD", "RMSPROP", "ADADELTA", "ADAM"};
  const char *out[] = {"SGD", "Nesterov", "AdaGrad", "RMSProp", "AdaDelta", "Adam"};
  crema_error err = {{0}};
  for (int i = 0; i < 6; i++) {
    char text[128];
    snprintf(text, sizeof text, "base_lr: 0.01 solver_type: %s", in[i]);
    Crema__SolverParameter *s = test_solver_param(text);
    bool changed = false;
    ck_assert_int_eq(crema_upgrade_solver(s, &changed, &err), 0);
    ck_assert(changed);
    snprintf(text, sizeof text, "base_lr: 0.01 type: '%s'", out[i]);
    Crema__SolverParameter *want = test_solver_param(text);
    assert_same(&s->base, &want->base);
    ck_assert_str_eq(s->type, out[i]);
    ck_assert(!s->has_solver_type);
    crema_message_free(s);
    crema_message_free(want);
  }
  Crema__SolverParameter *s = test_solver_param("type: 'Adam'");
  bool changed = true;
  ck_assert_int_eq(crema_upgrade_solver(s, &changed, &err), 0);
  ck_assert(!changed);
  ck_assert_str_eq(s->type, "Adam");
  crema_message_free(s);
  s = test_solver_param("type: 'Adam' solver_type: SGD");
  ck_assert_int_eq(crema_upgrade_solver(s, &changed, &err), -1);
  ck_assert_ptr_nonnull(strstr(err.msg, "both"));
  crema_message_free(s);
  /* An untouched solver keeps the default type. */
  s = test_solver_param("base_lr: 1");
  ck_assert_int_eq(crema_upgrade_solver(s, &changed, &err), 0);
  ck_assert_str_eq(s->type, "SGD");
  crema_message_free(s);
}
END_TEST

START_TEST(test_v1_type_names) {
  ck_assert_str_eq(crema_v1_layer_type_name(CREMA__V1_LAYER_PARAMETER__LAYER_TYPE__SOFTMAX_LOSS),
                   "SoftmaxWithLoss");
  ck_assert_str_eq(crema_v1_layer_type_name(CREMA__V1_LAYER_PARAMETER__LAYER_TYPE__HDF5_DATA), "HDF5Data");
  ck_assert_str_eq(crema_v1_layer_type_name(CREMA__V1_LAYER_PARAMETER__LAYER_TYPE__TANH), "TanH");
  ck_assert_str_eq(crema_v1_layer_type_name(CREMA__V1_LAYER_PARAMETER__LAYER_TYPE__NONE), "");
  ck_assert_ptr_null(crema_v1_layer_type_name(12345));
  /* Every V1 enum value has a name. */
  const ProtobufCEnumDescriptor *ed = &crema__v1_layer_parameter__layer_type__descriptor;
  for (unsigned i = 0; i < ed->n_values; i++)
    ck_assert_msg(crema_v1_layer_type_name(ed->values[i].value) != NULL, "%s unmapped", ed->values[i].name);
}
END_TEST

int main(void) {
  Suite *s = suite_create("upgrade");
  TCase *tc = tcase_create("core");
  tcase_add_test(tc, test_v1_net);
  tcase_add_test(tc, test_v1_data_layers);
  tcase_add_test(tc, test_input_shape_and_batchnorm);
  tcase_add_test(tc, test_v1_caffemodel);
  tcase_add_test(tc, test_net_errors);
  tcase_add_test(tc, test_solver_type);
  tcase_add_test(tc, test_v1_type_names);
  suite_add_tcase(s, tc);
  return test_run_suite(s);
}
