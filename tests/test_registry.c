/* test_registry.c -- the layer registry and the generic checks every layer gets: the type
 * names crema knows, the error for an unknown type, arity, and in-place refusal. */
#include <check.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "support/run.h"
#include "layers/layer.h"
#include "support/textproto.h"

/* Every type the compute-core and data issues name, spelled as Caffe spells it. */
static const char *const EXPECTED[] = {
    "Input",
    "DummyData",
    "Data",
    "ImageData",
    "Convolution",
    "Deconvolution",
    "Pooling",
    "InnerProduct",
    "LRN",
    "ReLU",
    "PReLU",
    "RReLU",
    "ELU",
    "Sigmoid",
    "TanH",
    "AbsVal",
    "Power",
    "Dropout",
    "BatchNorm",
    "Scale",
    "Bias",
    "Softmax",
    "SoftmaxWithLoss",
    "EuclideanLoss",
    "SigmoidCrossEntropyLoss",
    "Accuracy",
    "Concat",
    "Slice",
    "Split",
    "Eltwise",
    "Flatten",
    "Reshape",
    "Silence",
    "ArgMax",
    "Exp",
    "Log",
    "BNLL",
    "Threshold",
    "Clip",
    "Swish",
    "Tile",
    "Reduction",
    "Parameter",
    "Filter",
    "BatchReindex",
    "Embed",
    "Crop",
    "MVN",
    "Im2col",
    "SPP",
    "HingeLoss",
    "InfogainLoss",
    "ContrastiveLoss",
    "MultinomialLogisticLoss",
    "HDF5Data",
    "HDF5Output",
    "RNN",
    "LSTM",
    "LSTMUnit",
    "Permute",
    "Normalize",
    "PriorBox",
    "DetectionOutput",
};

START_TEST(test_every_type_registered) {
  for (size_t i = 0; i < sizeof EXPECTED / sizeof EXPECTED[0]; i++) {
    const crema_layer_ops *ops = crema_layer_lookup(EXPECTED[i]);
    ck_assert_msg(ops != NULL, "layer type \"%s\" is not registered", EXPECTED[i]);
    ck_assert_str_eq(ops->type, EXPECTED[i]);
  }
  ck_assert_int_eq(crema_layer_type_count(), (int)(sizeof EXPECTED / sizeof EXPECTED[0]));
  /* Type names are unique and enumerable. */
  for (int i = 0; i < crema_layer_type_count(); i++)
    for (int j = i + 1; j < crema_layer_type_count(); j++)
      ck_assert_str_ne(crema_layer_type_at(i)->type, crema_layer_type_at(j)->type);
  ck_assert_ptr_null(crema_layer_type_at(crema_layer_type_count()));
  ck_assert_ptr_null(crema_layer_lookup("relu")); /* case matters, as in Caffe */
}
END_TEST

/* Every layer type of BVLC Caffe 1.0 is implemented, except the three that only exist inside
 * Caffe's own process, which are refused with a reason. */
START_TEST(test_every_bvlc_type) {
  static const char *const BVLC[] = {"AbsVal",
                                     "Accuracy",
                                     "ArgMax",
                                     "BNLL",
                                     "BatchNorm",
                                     "BatchReindex",
                                     "Bias",
                                     "Clip",
                                     "Concat",
                                     "ContrastiveLoss",
                                     "Convolution",
                                     "Crop",
                                     "Data",
                                     "Deconvolution",
                                     "Dropout",
                                     "DummyData",
                                     "ELU",
                                     "Eltwise",
                                     "Embed",
                                     "EuclideanLoss",
                                     "Exp",
                                     "Filter",
                                     "Flatten",
                                     "HDF5Data",
                                     "HDF5Output",
                                     "HingeLoss",
                                     "Im2col",
                                     "ImageData",
                                     "InfogainLoss",
                                     "InnerProduct",
                                     "Input",
                                     "LRN",
                                     "LSTM",
                                     "LSTMUnit",
                                     "Log",
                                     "MVN",
                                     "MultinomialLogisticLoss",
                                     "PReLU",
                                     "Parameter",
                                     "Pooling",
                                     "Power",
                                     "RNN",
                                     "ReLU",
                                     "Reduction",
                                     "Reshape",
                                     "SPP",
                                     "Scale",
                                     "Sigmoid",
                                     "SigmoidCrossEntropyLoss",
                                     "Silence",
                                     "Slice",
                                     "Softmax",
                                     "SoftmaxWithLoss",
                                     "Split",
                                     "Swish",
                                     "TanH",
                                     "Threshold",
                                     "Tile"};
  for (size_t i = 0; i < sizeof BVLC / sizeof BVLC[0]; i++)
    ck_assert_msg(crema_layer_lookup(BVLC[i]) != NULL, "BVLC type \"%s\" is not implemented", BVLC[i]);
  const char *refused[][2] = {{"Python", "Python"}, {"MemoryData", "Input"}, {"WindowData", "R-CNN"}};
  for (int i = 0; i < 3; i++) {
    ck_assert_ptr_null(crema_layer_lookup(refused[i][0]));
    char text[128];
    snprintf(text, sizeof text, "name: 'x' type: '%s'", refused[i][0]);
    Crema__LayerParameter *p = test_layer_param(text);
    crema_layer *l = NULL;
    crema_error err = {{0}};
    ck_assert_int_eq(crema_layer_create(p, CREMA__PHASE__TEST, 1, &l, &err), -1);
    ck_assert_msg(strstr(err.msg, "does not implement") && strstr(err.msg, refused[i][1]), "%s", err.msg);
    crema_message_free(p);
  }
}
END_TEST

START_TEST(test_unknown_type_error) {
  Crema__LayerParameter *p = test_layer_param("name: 'fc9' type: 'InnerProducts'");
  crema_layer *l = NULL;
  crema_error err = {{0}};
  ck_assert_int_eq(crema_layer_create(p, CREMA__PHASE__TEST, 1, &l, &err), -1);
  ck_assert_ptr_null(l);
  ck_assert_msg(strstr(err.msg, "\"fc9\"") && strstr(err.msg, "\"InnerProducts\""), "%s", err.msg);
  ck_assert_msg(strstr(err.msg, "InnerProduct,") && strstr(err.msg, "Convolution"), "%s", err.msg);
  crema_message_free(p);
}
END_TEST

START_TEST(test_arity_and_inplace_checks) {
  crema_error err = {{0}};
  crema_blob *a = crema_blob_new(), *b = crema_blob_new(), *c = crema_blob_new();
  int shape[2] = {2, 3};
  ck_assert_int_eq(crema_blob_reshape(a, 2, shape, &err), 0);
  ck_assert_int_eq(crema_blob_reshape(b, 2, shape, &err), 0);

  /* EuclideanLoss takes exactly two bottoms. */
  Crema__LayerParameter *p = test_layer_param("name: 'l2' type: 'EuclideanLoss' bottom: 'a' top: 'loss'");
  crema_layer *l = NULL;
  ck_assert_int_eq(crema_layer_create(p, CREMA__PHASE__TRAIN, 1, &l, &err), 0);
  crema_blob *bottoms[1] = {a}, *tops[1] = {c};
  ck_assert_int_eq(crema_layer_setup(l, 1, bottoms, 1, tops, &err), -1);
  ck_assert_msg(strstr(err.msg, "\"l2\"") && strstr(err.msg, "2 bottom") && strstr(err.msg, "got 1"), "%s",
                err.msg);
  crema_layer_free(l);
  crema_message_free(p);

  /* Concat cannot run in place: a top that is also a bottom is refused. */
  p = test_layer_param("name: 'cat' type: 'Concat' bottom: 'a' bottom: 'b' top: 'a'");
  ck_assert_int_eq(crema_layer_create(p, CREMA__PHASE__TRAIN, 1, &l, &err), 0);
  crema_blob *two[2] = {a, b}, *same[1] = {a};
  ck_assert_int_eq(crema_layer_setup(l, 2, two, 1, same, &err), -1);
  ck_assert_msg(strstr(err.msg, "cannot run in place") && strstr(err.msg, "\"cat\""), "%s", err.msg);
  crema_layer_free(l);
  crema_message_free(p);

  /* ReLU may: top == bottom works and computes in place. */
  p = test_layer_param("name: 'r' type: 'ReLU' bottom: 'a' top: 'a'");
  ck_assert_int_eq(crema_layer_create(p, CREMA__PHASE__TRAIN, 1, &l, &err), 0);
  for (size_t i = 0; i < a->count; i++) a->data[i] = (float)i - 2.5f;
  ck_assert_int_eq(crema_layer_setup(l, 1, same, 1, same, &err), 0);
  ck_assert_int_eq(crema_layer_forward(l, same, same, &err), 0);
  ck_assert_float_eq(a->data[0], 0.0f);
  ck_assert_float_eq(a->data[5], 2.5f);
  crema_layer_free(l);
  crema_message_free(p);

  crema_blob_free(a);
  crema_blob_free(b);
  crema_blob_free(c);
}
END_TEST

int main(void) {
  Suite *s = suite_create("registry");
  TCase *tc = tcase_create("core");
  tcase_add_test(tc, test_every_type_registered);
  tcase_add_test(tc, test_every_bvlc_type);
  tcase_add_test(tc, test_unknown_type_error);
  tcase_add_test(tc, test_arity_and_inplace_checks);
  suite_add_tcase(s, tc);
  return test_run_suite(s);
}
