/* test_net.c -- the Net: state rules, Split insertion, in-place blobs, loss weights, parameter
 * sharing, need-backward analysis, weights by layer name, save/load, and a whole-net gradient
 * check. */
#include <check.h>
#include <fcntl.h>
#include <malloc.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "support/layer_run.h"
#include "support/run.h"
#include "engine/engine.h"
#include "net/net.h"
#include "proto/io.h"
#include "support/textproto.h"

static crema_net_options opts(Crema__Phase phase) {
  crema_net_options o = {
      .phase = phase, .level = 0, .n_stages = 0, .stages = NULL, .seed = 1701, .source = "t.prototxt"};
  return o;
}

/* Builds from text; fails the test with the build error. */
static crema_net *build_text(const char *text, const crema_net_options *o) {
  Crema__NetParameter *p = test_net_param(text);
  crema_net *net = NULL;
  crema_error err;
  int rc = crema_net_build(p, o, &net, &err);
  crema_message_free(p);
  ck_assert_msg(rc == 0, "build failed: %s", err.msg);
  return net;
}

/* Builds from text expecting failure; returns the message. */
static void build_fails(const char *text, const crema_net_options *o, crema_error *err) {
  Crema__NetParameter *p = test_net_param(text);
  crema_net *net = NULL;
  int rc = crema_net_build(p, o, &net, err);
  crema_message_free(p);
  ck_assert_msg(rc == -1, "build should have failed");
  ck_assert_ptr_null(net);
}

static void forward_ok(crema_net *net, float *loss) {
  crema_error err;
  ck_assert_msg(crema_net_forward(net, loss, &err) == 0, "forward: %s", err.msg);
}

/* ---- stderr capture, to check the log lines of weight copying */
static int saved_fd = -1;
static char capture_path[64];

static void capture_begin(void) {
  snprintf(capture_path, sizeof capture_path, "/tmp/crema_test_net_log_XXXXXX");
  int fd = mkstemp(capture_path);
  ck_assert_int_ge(fd, 0);
  fflush(stderr);
  saved_fd = dup(2);
  dup2(fd, 2);
  close(fd);
}

static char *capture_end(void) {
  fflush(stderr);
  dup2(saved_fd, 2);
  close(saved_fd);
  FILE *f = fopen(capture_path, "rb");
  ck_assert_ptr_nonnull(f);
  static char buf[16384];
  size_t n = fread(buf, 1, sizeof buf - 1, f);
  buf[n] = '\0';
  fclose(f);
  unlink(capture_path);
  return buf;
}

/* ---------------------------------------------------------------- state rules */

static const char *RULES_NET =
    "name: 'rules'\n"
    "layer { name: 'in' type: 'Input' top: 'x' input_param { shape { dim: 2 dim: 3 } } }\n"
    "layer { name: 'train_only' type: 'ReLU' bottom: 'x' top: 'a' include { phase: TRAIN } }\n"
    "layer { name: 'test_only' type: 'ReLU' bottom: 'x' top: 'b' include { phase: TEST } }\n"
    "layer { name: 'not_test' type: 'ReLU' bottom: 'x' top: 'c' exclude { phase: TEST } }\n"
    "layer { name: 'level1' type: 'ReLU' bottom: 'x' top: 'd' include { min_level: 1 } }\n"
    "layer { name: 'maxlevel0' type: 'ReLU' bottom: 'x' top: 'e' include { max_level: 0 } }\n"
    "layer { name: 'stage_a' type: 'ReLU' bottom: 'x' top: 'f' include { stage: 'a' } }\n"
    "layer { name: 'stage_ab' type: 'ReLU' bottom: 'x' top: 'g' include { stage: 'a' stage: 'b' } }\n"
    "layer { name: 'not_a' type: 'ReLU' bottom: 'x' top: 'h' include { not_stage: 'a' } }\n"
    "layer { name: 'a_or_b' type: 'ReLU' bottom: 'x' top: 'i' include { stage: 'a' } include { stage: 'b' } "
    "}\n"
    "layer { name: 'test_lvl2' type: 'ReLU' bottom: 'x' top: 'j' include { phase: TEST min_level: 2 } }\n";

static bool has_layer(const crema_net *net, const char *name) {
  return crema_net_layer_index(net, name) >= 0;
}

START_TEST(state_rules_phase_level_stage) {
  crema_net_options o = opts(CREMA__PHASE__TRAIN);
  crema_net *net = build_text(RULES_NET, &o);
  ck_assert(has_layer(net, "train_only") && !has_layer(net, "test_only") && has_layer(net, "not_test"));
  ck_assert(!has_layer(net, "level1") && has_layer(net, "maxlevel0"));
  ck_assert(!has_layer(net, "stage_a") && !has_layer(net, "stage_ab") && has_layer(net, "not_a"));
  ck_assert(!has_layer(net, "a_or_b") && !has_layer(net, "test_lvl2"));
  ck_assert_int_eq(crema_net_phase(net), CREMA__PHASE__TRAIN);
  crema_net_free(net);

  o = opts(CREMA__PHASE__TEST);
  o.level = 2;
  const char *stages[] = {"a"};
  o.stages = stages;
  o.n_stages = 1;
  net = build_text(RULES_NET, &o);
  ck_assert(!has_layer(net, "train_only") && has_layer(net, "test_only") && !has_layer(net, "not_test"));
  ck_assert(has_layer(net, "level1") && !has_layer(net, "maxlevel0"));
  ck_assert(has_layer(net, "stage_a") && !has_layer(net, "stage_ab") && !has_layer(net, "not_a"));
  ck_assert(has_layer(net, "a_or_b") && has_layer(net, "test_lvl2"));
  /* the layers carry the net's phase, like Caffe's */
  const Crema__NetParameter *m = crema_net_param_message(net);
  for (size_t i = 0; i < m->n_layer; i++)
    ck_assert(m->layer[i]->has_phase && m->layer[i]->phase == CREMA__PHASE__TEST);
  crema_net_free(net);

  const char *stages2[] = {"a", "b"};
  o = opts(CREMA__PHASE__TEST);
  o.stages = stages2;
  o.n_stages = 2;
  net = build_text(RULES_NET, &o);
  ck_assert(has_layer(net, "stage_ab") && has_layer(net, "a_or_b") && !has_layer(net, "test_lvl2"));
  crema_net_free(net);

  crema_error err;
  o = opts(CREMA__PHASE__TRAIN);
  build_fails("layer { name: 'in' type: 'Input' top: 'x' input_param { shape { dim: 1 } } "
              "include { phase: TRAIN } exclude { phase: TEST } }",
              &o, &err);
  ck_assert_msg(strstr(err.msg, "\"in\"") && strstr(err.msg, "not both"), "%s", err.msg);
}
END_TEST

/* ---------------------------------------------------------------- splits, in place, outputs */

static const char *CLASSIFIER =
    "name: 'tiny'\n"
    "layer { name: 'data' type: 'DummyData' top: 'data' top: 'label'\n"
    "  dummy_data_param { shape { dim: 4 dim: 6 } shape { dim: 4 }\n"
    "    data_filler { type: 'gaussian' std: 1 } data_filler { type: 'constant' value: 1 } } }\n"
    "layer { name: 'ip1' type: 'InnerProduct' bottom: 'data' top: 'ip1'\n"
    "  inner_product_param { num_output: 5 weight_filler { type: 'gaussian' std: 0.5 }\n"
    "    bias_filler { type: 'constant' value: 0.1 } } }\n"
    "layer { name: 'relu1' type: 'ReLU' bottom: 'ip1' top: 'ip1' }\n"
    "layer { name: 'ip2' type: 'InnerProduct' bottom: 'ip1' top: 'ip2'\n"
    "  inner_product_param { num_output: 3 weight_filler { type: 'gaussian' std: 0.5 } } }\n"
    "layer { name: 'accuracy' type: 'Accuracy' bottom: 'ip2' bottom: 'label' top: 'accuracy'\n"
    "  include { phase: TEST } }\n"
    "layer { name: 'loss' type: 'SoftmaxWithLoss' bottom: 'ip2' bottom: 'label' top: 'loss' }\n";

START_TEST(split_insertion_names) {
  crema_net_options o = opts(CREMA__PHASE__TEST);
  crema_net *net = build_text(CLASSIFIER, &o);
  ck_assert(has_layer(net, "ip2_ip2_0_split"));
  ck_assert(has_layer(net, "label_data_1_split"));
  int si = crema_net_layer_index(net, "ip2_ip2_0_split");
  ck_assert_str_eq(crema_net_layer(net, si)->ops->type, "Split");
  ck_assert_ptr_nonnull(crema_net_blob_by_name(net, "ip2_ip2_0_split_0"));
  ck_assert_ptr_nonnull(crema_net_blob_by_name(net, "ip2_ip2_0_split_1"));
  ck_assert_ptr_nonnull(crema_net_blob_by_name(net, "label_data_1_split_1"));
  /* the split comes right after its producer; the consumers read its outputs in order */
  ck_assert_int_eq(si, crema_net_layer_index(net, "ip2") + 1);
  const int *ids;
  int acc = crema_net_layer_index(net, "accuracy"), loss = crema_net_layer_index(net, "loss");
  ck_assert_int_eq(crema_net_layer_bottoms(net, acc, &ids), 2);
  ck_assert_str_eq(crema_net_blob_name(net, ids[0]), "ip2_ip2_0_split_0");
  ck_assert_str_eq(crema_net_blob_name(net, ids[1]), "label_data_1_split_0");
  crema_net_layer_bottoms(net, loss, &ids);
  ck_assert_str_eq(crema_net_blob_name(net, ids[0]), "ip2_ip2_0_split_1");
  /* outputs: unconsumed tops, by name */
  ck_assert_int_eq(crema_net_num_outputs(net), 2);
  ck_assert_str_eq(crema_net_output_name(net, 0), "accuracy");
  ck_assert_str_eq(crema_net_output_name(net, 1), "loss");
  ck_assert_float_eq(crema_net_output_loss_weight(net, 0), 0.0f);
  ck_assert_float_eq(crema_net_output_loss_weight(net, 1), 1.0f);
  float l = 0;
  forward_ok(net, &l);
  ck_assert(isfinite(l) && l > 0.0f);
  ck_assert_float_eq(l, crema_net_output(net, 1)->data[0]);
  float a = crema_net_output(net, 0)->data[0];
  ck_assert(a >= 0.0f && a <= 1.0f);
  crema_net_backward(net);
  /* the split summed both consumers' gradients into ip2: Accuracy gives none, so ip2's diff
   * equals the loss branch's */
  const crema_blob *ip2 = crema_net_blob_by_name(net, "ip2"),
                   *br = crema_net_blob_by_name(net, "ip2_ip2_0_split_1");
  for (size_t i = 0; i < ip2->count; i++) ck_assert_float_eq_tol(ip2->diff[i], br->diff[i], 1e-7f);
  ck_assert(crema_blob_asum_diff(ip2) > 0.0);
  /* the split's outputs are views of ip2's data (no copy), each with its own diff */
  ck_assert_ptr_eq(br->data, ip2->data);
  ck_assert_ptr_eq(crema_net_blob_by_name(net, "ip2_ip2_0_split_0")->data, ip2->data);
  ck_assert_ptr_ne(br->diff, ip2->diff);
  crema_net_free(net);

  /* TRAIN: no Accuracy, so no splits */
  o = opts(CREMA__PHASE__TRAIN);
  net = build_text(CLASSIFIER, &o);
  ck_assert(!has_layer(net, "ip2_ip2_0_split") && !has_layer(net, "label_data_1_split"));
  ck_assert_int_eq(crema_net_num_layers(net), 5);
  crema_net_free(net);
}
END_TEST

/* A Split written in the prototxt whose top a ReLU then runs on in place: the ReLU must not
 * change the other top's input (the bottom's values), and backward still sums both
 * branches. */
START_TEST(split_top_with_an_inplace_consumer) {
  static const char *NET =
      "name: 'sp'\n"
      "force_backward: true\n"
      "layer { name: 'in' type: 'Input' top: 'x' input_param { shape { dim: 2 dim: 3 } } }\n"
      "layer { name: 'sp' type: 'Split' bottom: 'x' top: 'a' top: 'b' }\n"
      "layer { name: 'r' type: 'ReLU' bottom: 'a' top: 'a' }\n"
      "layer { name: 'pa' type: 'Power' bottom: 'a' top: 'pa' }\n"
      "layer { name: 'pb' type: 'Power' bottom: 'b' top: 'pb' power_param { scale: 2 } }\n";
  crema_net_options o = opts(CREMA__PHASE__TRAIN);
  crema_net *net = build_text(NET, &o);
  crema_blob *x = crema_net_blob_by_name(net, "x"), *a = crema_net_blob_by_name(net, "a"),
             *b = crema_net_blob_by_name(net, "b");
  for (int i = 0; i < 6; i++) x->data[i] = (float)i - 2.5f;
  forward_ok(net, NULL);
  ck_assert_ptr_ne(a->data, x->data);
  const crema_blob *pb = crema_net_blob_by_name(net, "pb");
  for (int i = 0; i < 6; i++) {
    const float v = (float)i - 2.5f;
    ck_assert_float_eq(x->data[i], v);
    ck_assert_float_eq(b->data[i], v);
    ck_assert_float_eq(a->data[i], v > 0 ? v : 0.0f);
    ck_assert_float_eq(pb->data[i], 2.0f * v);
  }
  crema_blob *dpa = crema_net_blob_by_name(net, "pa"), *dpb = crema_net_blob_by_name(net, "pb");
  for (int i = 0; i < 6; i++) {
    dpa->diff[i] = 1.0f;
    dpb->diff[i] = 1.0f;
  }
  for (int li = crema_net_num_layers(net) - 1; li >= 0; li--) crema_net_backward_layer(net, li);
  for (int i = 0; i < 6; i++) ck_assert_float_eq(x->diff[i], ((float)i - 2.5f > 0 ? 1.0f : 0.0f) + 2.0f);
  crema_net_free(net);
}
END_TEST

/* Blob names are looked up through a hash index: with a linear search per lookup (and an
 * insertion sort of the outputs), a prototxt with 10^5 tops took minutes to build. */
START_TEST(many_tops_build_quickly) {
  enum { N = 100000 };
  size_t cap = (size_t)N * 24 + 256, used = 0;
  char *text = malloc(cap);
  ck_assert_ptr_nonnull(text);
  used += (size_t)snprintf(text + used, cap - used,
                           "layer { name: 'in' type: 'Input' top: 'd' input_param { shape { dim: 1 } } }\n"
                           "layer { name: 's' type: 'Split' bottom: 'd'");
  for (int i = N - 1; i >= 0; i--) used += (size_t)snprintf(text + used, cap - used, " top: 't%06d'", i);
  snprintf(text + used, cap - used, " }\n");
  struct timespec t0, t1;
  clock_gettime(CLOCK_MONOTONIC, &t0);
  crema_net_options o = opts(CREMA__PHASE__TEST);
  crema_net *net = build_text(text, &o);
  clock_gettime(CLOCK_MONOTONIC, &t1);
  const double seconds = (double)(t1.tv_sec - t0.tv_sec) + 1e-9 * (double)(t1.tv_nsec - t0.tv_nsec);
  ck_assert_msg(seconds < 20.0, "building a net with %d tops took %.1f s", N, seconds);
  ck_assert_int_eq(crema_net_num_outputs(net), N);
  /* outputs are listed by name, as Caffe does */
  ck_assert_str_eq(crema_net_output_name(net, 0), "t000000");
  for (int i = 1; i < N; i++)
    ck_assert_msg(strcmp(crema_net_output_name(net, i - 1), crema_net_output_name(net, i)) < 0,
                  "outputs %d and %d out of order", i - 1, i);
  ck_assert_ptr_nonnull(crema_net_blob_by_name(net, "t054321"));
  ck_assert_ptr_null(crema_net_blob_by_name(net, "t1000000"));
  crema_net_free(net);
  free(text);
}
END_TEST

START_TEST(in_place_blobs) {
  crema_net_options o = opts(CREMA__PHASE__TRAIN);
  crema_net *net = build_text(CLASSIFIER, &o);
  int r = crema_net_layer_index(net, "relu1");
  const int *b, *t;
  crema_net_layer_bottoms(net, r, &b);
  crema_net_layer_tops(net, r, &t);
  ck_assert_int_eq(b[0], t[0]);
  ck_assert_str_eq(crema_net_blob_name(net, b[0]), "ip1");
  /* data, label, ip1, ip2, loss */
  ck_assert_int_eq(crema_net_num_blobs(net), 5);
  forward_ok(net, NULL);
  const crema_blob *ip1 = crema_net_blob_by_name(net, "ip1");
  for (size_t i = 0; i < ip1->count; i++) ck_assert(ip1->data[i] >= 0.0f);
  crema_net_free(net);

  crema_error err;
  build_fails("layer { name: 'in' type: 'Input' top: 'x' input_param { shape { dim: 2 } } }\n"
              "layer { name: 'r1' type: 'ReLU' bottom: 'x' top: 'y' }\n"
              "layer { name: 'r2' type: 'ReLU' bottom: 'x' top: 'y' }\n",
              &o, &err);
  ck_assert_msg(strstr(err.msg, "\"r2\"") && strstr(err.msg, "\"y\"") && strstr(err.msg, "more than one"),
                "%s", err.msg);
}
END_TEST

START_TEST(unknown_bottom_lists_available) {
  crema_net_options o = opts(CREMA__PHASE__TRAIN);
  crema_error err;
  build_fails("layer { name: 'in' type: 'Input' top: 'x' top: 'y' input_param { shape { dim: 2 } } }\n"
              "layer { name: 'relu' type: 'ReLU' bottom: 'xx' top: 'z' }\n",
              &o, &err);
  ck_assert_msg(strstr(err.msg, "t.prototxt") && strstr(err.msg, "\"relu\"") && strstr(err.msg, "\"xx\"") &&
                    strstr(err.msg, "\"x\", \"y\""),
                "%s", err.msg);
  build_fails("layer { name: 'in' type: 'Input' top: 'x' input_param { shape { dim: 2 } } }\n"
              "layer { name: 'odd' type: 'NoSuchType' bottom: 'x' top: 'z' }\n",
              &o, &err);
  ck_assert_msg(strstr(err.msg, "NoSuchType") && strstr(err.msg, "\"odd\""), "%s", err.msg);
}
END_TEST

/* ---------------------------------------------------------------- loss weights */

START_TEST(loss_weights) {
  const char *text =
      "layer { name: 'data' type: 'DummyData' top: 'a' top: 'b' dummy_data_param {\n"
      "  shape { dim: 3 dim: 4 } data_filler { type: 'gaussian' std: 1 } } }\n"
      "layer { name: 'l1' type: 'EuclideanLoss' bottom: 'a' bottom: 'b' top: 'l1' }\n"
      "layer { name: 'l2' type: 'EuclideanLoss' bottom: 'a' bottom: 'b' top: 'l2' loss_weight: 0.25 }\n"
      "layer { name: 'ip' type: 'InnerProduct' bottom: 'a' top: 's' loss_weight: 2\n"
      "  inner_product_param { num_output: 2 weight_filler { type: 'gaussian' } } }\n";
  crema_net_options o = opts(CREMA__PHASE__TRAIN);
  crema_net *net = build_text(text, &o);
  float loss = 0;
  forward_ok(net, &loss);
  float l1 = crema_net_blob_by_name(net, "l1")->data[0], l2 = crema_net_blob_by_name(net, "l2")->data[0];
  const crema_blob *s = crema_net_blob_by_name(net, "s");
  double ssum = 0;
  for (size_t i = 0; i < s->count; i++) ssum += s->data[i];
  ck_assert_float_eq_tol(l1, l2, 1e-6f);
  ck_assert(l1 > 0.0f);
  ck_assert_float_eq_tol(loss, l1 + 0.25f * l2 + 2.0f * (float)ssum, 1e-4f);
  for (int i = 0; i < crema_net_num_blobs(net); i++)
    if (!strcmp(crema_net_blob_name(net, i), "s"))
      ck_assert_float_eq(crema_net_blob_loss_weight(net, i), 2.0f);
  crema_net_backward(net);
  /* backward seeds each loss top with its weight */
  ck_assert_float_eq(crema_net_blob_by_name(net, "l2")->diff[0], 0.25f);
  ck_assert_float_eq(crema_net_blob_by_name(net, "s")->diff[0], 2.0f);
  crema_net_free(net);

  crema_error err;
  build_fails(
      "layer { name: 'data' type: 'DummyData' top: 'a' top: 'b' dummy_data_param { shape { dim: 3 } } }\n"
      "layer { name: 'l' type: 'EuclideanLoss' bottom: 'a' bottom: 'b' top: 'l' loss_weight: 1 loss_weight: "
      "2 }\n",
      &o, &err);
  ck_assert_msg(strstr(err.msg, "\"l\"") && strstr(err.msg, "loss_weight"), "%s", err.msg);
}
END_TEST

/* ---------------------------------------------------------------- numerical gradients */

/* d(loss)/d(p[i]) by central differences; the net's stochastic layers must be absent. */
static double numeric_grad(crema_net *net, float *p, double h) {
  float keep = *p, lp = 0, lm = 0;
  *p = keep + (float)h;
  forward_ok(net, &lp);
  *p = keep - (float)h;
  forward_ok(net, &lm);
  *p = keep;
  return ((double)lp - (double)lm) / (2.0 * h);
}

static void expect_grad(double analytic, double numeric, const char *what, size_t i) {
  double scale = fmax(1.0, fmax(fabs(analytic), fabs(numeric)));
  ck_assert_msg(fabs(analytic - numeric) / scale < 2e-2, "%s[%zu]: backward %g, numerical %g", what, i,
                analytic, numeric);
}

/* ---------------------------------------------------------------- parameter sharing */

START_TEST(parameter_sharing_accumulates) {
  /* Inputs come from Input layers so that finite differences see the same data. */
  const char *fixed = "force_backward: true\n"
                      "layer { name: 'in' type: 'Input' top: 'x1' top: 'x2' top: 't' input_param {\n"
                      "  shape { dim: 2 dim: 3 } shape { dim: 2 dim: 3 } shape { dim: 2 dim: 4 } } }\n"
                      "layer { name: 'ipA' type: 'InnerProduct' bottom: 'x1' top: 'yA'\n"
                      "  param { name: 'w' } param { name: 'b' }\n"
                      "  inner_product_param { num_output: 4 weight_filler { type: 'gaussian' } bias_filler "
                      "{ type: 'gaussian' } } }\n"
                      "layer { name: 'ipB' type: 'InnerProduct' bottom: 'x2' top: 'yB'\n"
                      "  param { name: 'w' } param { name: 'b' }\n"
                      "  inner_product_param { num_output: 4 weight_filler { type: 'gaussian' } bias_filler "
                      "{ type: 'gaussian' } } }\n"
                      "layer { name: 'sum' type: 'Eltwise' bottom: 'yA' bottom: 'yB' top: 'y' eltwise_param "
                      "{ coeff: 1 coeff: -3 } }\n"
                      "layer { name: 'loss' type: 'EuclideanLoss' bottom: 'y' bottom: 't' top: 'loss' }\n";
  crema_net_options o = opts(CREMA__PHASE__TRAIN);
  crema_net *net = build_text(fixed, &o);
  crema_layer *a = crema_net_layer(net, crema_net_layer_index(net, "ipA"));
  crema_layer *b = crema_net_layer(net, crema_net_layer_index(net, "ipB"));
  ck_assert_ptr_eq(a->blobs[0], b->blobs[0]);
  ck_assert_ptr_eq(a->blobs[1], b->blobs[1]);
  ck_assert(!a->blob_shared[0] && b->blob_shared[0]);
  ck_assert_int_eq(crema_net_num_params(net), 2); /* each shared blob once */
  ck_assert_int_eq(crema_net_param_at(net, 0)->layer, crema_net_layer_index(net, "ipA"));
  for (int k = 0; k < crema_net_num_inputs(net); k++) {
    crema_blob *in = crema_net_input(net, k);
    for (size_t i = 0; i < in->count; i++) in->data[i] = sinf((float)(i * 7 + (size_t)k * 3)) * 0.8f;
  }
  crema_net_clear_param_diffs(net);
  forward_ok(net, NULL);
  crema_net_backward(net);
  const crema_net_param *w = crema_net_param_at(net, 0), *bias = crema_net_param_at(net, 1);
  /* Shared use: the gradient is the sum over both layers (yB enters with coefficient -3). */
  for (size_t i = 0; i < w->blob->count; i++)
    expect_grad(w->blob->diff[i], numeric_grad(net, &w->blob->data[i], 1e-2), "shared w", i);
  for (size_t i = 0; i < bias->blob->count; i++)
    expect_grad(bias->blob->diff[i], numeric_grad(net, &bias->blob->data[i], 1e-2), "shared b", i);
  crema_net_free(net);

  /* shapes must match (STRICT) */
  crema_error err;
  build_fails("layer { name: 'in' type: 'Input' top: 'x' input_param { shape { dim: 2 dim: 3 } } }\n"
              "layer { name: 'p' type: 'InnerProduct' bottom: 'x' top: 'p' param { name: 'w' }\n"
              "  inner_product_param { num_output: 4 } }\n"
              "layer { name: 'q' type: 'InnerProduct' bottom: 'x' top: 'q' param { name: 'w' }\n"
              "  inner_product_param { num_output: 2 } }\n",
              &o, &err);
  ck_assert_msg(strstr(err.msg, "\"w\"") && strstr(err.msg, "\"p\"") && strstr(err.msg, "\"q\"") &&
                    strstr(err.msg, "shape mismatch") && strstr(err.msg, "4 3") && strstr(err.msg, "2 3"),
                "%s", err.msg);
  /* PERMISSIVE: equal counts are enough, unequal ones fail */
  net =
      build_text("layer { name: 'in' type: 'Input' top: 'x' top: 'z' input_param { shape { dim: 2 dim: 6 }\n"
                 "  shape { dim: 2 dim: 4 } } }\n"
                 "layer { name: 'p' type: 'InnerProduct' bottom: 'x' top: 'p' param { name: 'w' }\n"
                 "  inner_product_param { num_output: 4 bias_term: false } }\n"
                 "layer { name: 'q' type: 'InnerProduct' bottom: 'z' top: 'q'\n"
                 "  param { name: 'w' share_mode: PERMISSIVE }\n"
                 "  inner_product_param { num_output: 6 bias_term: false } }\n",
                 &o);
  ck_assert_int_eq(crema_net_num_params(net), 1);
  crema_net_free(net);
  build_fails("layer { name: 'in' type: 'Input' top: 'x' input_param { shape { dim: 2 dim: 6 } } }\n"
              "layer { name: 'p' type: 'InnerProduct' bottom: 'x' top: 'p' param { name: 'w' }\n"
              "  inner_product_param { num_output: 4 bias_term: false } }\n"
              "layer { name: 'q' type: 'InnerProduct' bottom: 'x' top: 'q'\n"
              "  param { name: 'w' share_mode: PERMISSIVE } inner_product_param { num_output: 3 bias_term: "
              "false } }\n",
              &o, &err);
  ck_assert_msg(strstr(err.msg, "count mismatch"), "%s", err.msg);
  /* explicit, different lr_mult on a shared parameter */
  build_fails("layer { name: 'in' type: 'Input' top: 'x' input_param { shape { dim: 2 dim: 6 } } }\n"
              "layer { name: 'p' type: 'InnerProduct' bottom: 'x' top: 'p' param { name: 'w' lr_mult: 1 }\n"
              "  inner_product_param { num_output: 4 bias_term: false } }\n"
              "layer { name: 'q' type: 'InnerProduct' bottom: 'x' top: 'q' param { name: 'w' lr_mult: 2 }\n"
              "  inner_product_param { num_output: 4 bias_term: false } }\n",
              &o, &err);
  ck_assert_msg(strstr(err.msg, "lr_mult"), "%s", err.msg);
}
END_TEST

/* ---------------------------------------------------------------- need-backward */

/* crema_net_clear_param_diffs_lazily only marks diffs zero. InnerProduct then writes its
 * gradient (the reference GEMM, the small-batch stream engine, the transposed layout, shared
 * weights); every other layer's diffs are zeroed before its backward; frozen layers' and
 * skipped layers' are zeroed by the end. Stale diffs are NaN here, so any read of one shows:
 * the result must equal an eager clear's bit for bit, after each layer's turn as well. */
static const char *LAZY_NET =
    "force_backward: true\n"
    "layer { name: 'in' type: 'Input' top: 'x' top: 't' input_param {\n"
    "  shape { dim: 6 dim: 300 } shape { dim: 6 dim: 5 } } }\n"
    /* 300 x 256 weights at batch 6: the stream engine */
    "layer { name: 'big' type: 'InnerProduct' bottom: 'x' top: 'h1' inner_product_param {\n"
    "  num_output: 256 weight_filler { type: 'gaussian' std: 0.05 } bias_filler { type: 'gaussian' } } }\n"
    "layer { name: 'sc' type: 'Scale' bottom: 'h1' top: 'h2' scale_param { bias_term: true\n"
    "  filler { type: 'uniform' min: 0.5 max: 1.5 } bias_filler { type: 'gaussian' } } }\n"
    "layer { name: 'frozen' type: 'InnerProduct' bottom: 'h2' top: 'h3' param { lr_mult: 0 }\n"
    "  param { lr_mult: 0 } inner_product_param { num_output: 12 weight_filler { type: 'gaussian' } } }\n"
    "layer { name: 'tr' type: 'InnerProduct' bottom: 'h3' top: 'h4' inner_product_param {\n"
    "  num_output: 9 transpose: true weight_filler { type: 'gaussian' } } }\n"
    "layer { name: 'sa' type: 'InnerProduct' bottom: 'h4' top: 'ya' param { name: 'w' } param { name: 'b' }\n"
    "  inner_product_param { num_output: 5 weight_filler { type: 'gaussian' } bias_filler { type: 'gaussian' "
    "} } }\n"
    "layer { name: 'sb' type: 'InnerProduct' bottom: 'h4' top: 'yb' param { name: 'w' } param { name: 'b' }\n"
    "  inner_product_param { num_output: 5 weight_filler { type: 'gaussian' } bias_filler { type: 'gaussian' "
    "} } }\n"
    "layer { name: 'sum' type: 'Eltwise' bottom: 'ya' bottom: 'yb' top: 'y' eltwise_param { coeff: 1 coeff: "
    "-2 } }\n"
    "layer { name: 'loss' type: 'EuclideanLoss' bottom: 'y' bottom: 't' top: 'loss' }\n";

static void poison_param_diffs(crema_net *net) {
  for (int i = 0; i < crema_net_num_params(net); i++) {
    crema_blob *b = crema_net_param_at(net, i)->blob;
    for (size_t k = 0; k < b->count; k++) b->diff[k] = NAN;
  }
}

typedef struct lazy_check {
  crema_net *net;
  int calls;
} lazy_check;

/* The backward callback's view: layer i's parameters are settled when its turn ends. */
static void lazy_settled(void *ctx, int li) {
  lazy_check *c = ctx;
  crema_layer *l = crema_net_layer(c->net, li);
  for (int j = 0; j < l->n_blobs; j++) {
    ck_assert_msg(!l->blobs[j]->diff_zero_pending, "layer %d blob %d still pending", li, j);
    for (size_t k = 0; k < l->blobs[j]->count; k++)
      ck_assert_msg(!isnan(l->blobs[j]->diff[k]), "layer %d blob %d: stale diff read", li, j);
  }
  c->calls++;
}

START_TEST(lazily_cleared_diffs_match_eager_ones) {
  crema_net_options o = opts(CREMA__PHASE__TRAIN);
  crema_net *net = build_text(LAZY_NET, &o);
  ck_assert_str_eq(crema_layer_engine_name(crema_net_layer(net, crema_net_layer_index(net, "big"))),
                   CREMA_ENGINE_FC_STREAM " (small batch)");
  for (int k = 0; k < crema_net_num_inputs(net); k++) {
    crema_blob *in = crema_net_input(net, k);
    for (size_t i = 0; i < in->count; i++) in->data[i] = sinf((float)(i * 5 + (size_t)k * 11)) * 0.7f;
  }
  const int np = crema_net_num_params(net);
  float *want[16];
  ck_assert_int_le(np, 16);
  for (int rep = 0; rep < 2; rep++) { /* twice: the second pass starts from written diffs */
    crema_net_clear_param_diffs(net);
    forward_ok(net, NULL);
    crema_net_backward(net);
    for (int i = 0; i < np; i++) {
      const crema_blob *b = crema_net_param_at(net, i)->blob;
      if (!rep) want[i] = malloc(b->count * sizeof(float));
      memcpy(want[i], b->diff, b->count * sizeof(float));
    }
    poison_param_diffs(net);
    crema_net_clear_param_diffs_lazily(net);
    lazy_check c = {net, 0};
    crema_net_set_backward_callback(net, lazy_settled, &c);
    forward_ok(net, NULL);
    crema_net_backward(net);
    crema_net_set_backward_callback(net, NULL, NULL);
    ck_assert_int_eq(c.calls, crema_net_num_layers(net));
    for (int i = 0; i < np; i++) {
      const crema_blob *b = crema_net_param_at(net, i)->blob;
      ck_assert_msg(!b->diff_zero_pending, "param %d still pending", i);
      ck_assert_msg(!memcmp(want[i], b->diff, b->count * sizeof(float)),
                    "param %d differs from an eager clear", i);
    }
  }
  /* the frozen layer's diffs stay zero */
  const crema_layer *fz = crema_net_layer(net, crema_net_layer_index(net, "frozen"));
  for (size_t k = 0; k < fz->blobs[0]->count; k++) ck_assert(fz->blobs[0]->diff[k] == 0.0f);
  /* a partial backward settles the layers it did not reach too */
  poison_param_diffs(net);
  crema_net_clear_param_diffs_lazily(net);
  forward_ok(net, NULL);
  crema_net_backward_from_to(net, crema_net_num_layers(net) - 1, crema_net_layer_index(net, "sa"));
  for (int i = 0; i < np; i++) {
    const crema_blob *b = crema_net_param_at(net, i)->blob;
    ck_assert(!b->diff_zero_pending);
    for (size_t k = 0; k < b->count; k++) ck_assert_msg(!isnan(b->diff[k]), "param %d: stale diff", i);
  }
  for (int i = 0; i < np; i++) free(want[i]);
  crema_net_free(net);
}
END_TEST

static const char *CHAIN_FMT =
    "%s\n"
    "layer { name: 'in' type: 'Input' top: 'x' top: 't' input_param { shape { dim: 2 dim: 3 } shape { dim: 2 "
    "dim: 2 } } }\n"
    "layer { name: 'ip0' type: 'InnerProduct' bottom: 'x' top: 'h0' %s\n"
    "  inner_product_param { num_output: 4 weight_filler { type: 'gaussian' } bias_filler { type: 'gaussian' "
    "} } }\n"
    "layer { name: 'ip1' type: 'InnerProduct' bottom: 'h0' top: 'h1' %s\n"
    "  inner_product_param { num_output: 3 weight_filler { type: 'gaussian' } bias_filler { type: 'gaussian' "
    "} } }\n"
    "layer { name: 'ip2' type: 'InnerProduct' bottom: 'h1' top: 'y' %s\n"
    "  inner_product_param { num_output: 2 weight_filler { type: 'gaussian' } } }\n"
    "layer { name: 'loss' type: 'EuclideanLoss' bottom: 'y' bottom: 't' top: 'loss' }\n";

static crema_net *chain(const char *head, const char *p0, const char *p1, const char *p2) {
  char text[4096];
  snprintf(text, sizeof text, CHAIN_FMT, head, p0, p1, p2);
  crema_net_options o = opts(CREMA__PHASE__TRAIN);
  crema_net *net = build_text(text, &o);
  for (int k = 0; k < crema_net_num_inputs(net); k++) {
    crema_blob *in = crema_net_input(net, k);
    for (size_t i = 0; i < in->count; i++) in->data[i] = cosf((float)(i + 1) * (float)(k + 2));
  }
  crema_net_clear_param_diffs(net);
  forward_ok(net, NULL);
  crema_net_backward(net);
  return net;
}

static crema_layer *layer_named(crema_net *net, const char *name) {
  int i = crema_net_layer_index(net, name);
  ck_assert_int_ge(i, 0);
  return crema_net_layer(net, i);
}

START_TEST(propagate_down_false_stops_gradients) {
  crema_net *net = chain("", "", "", "propagate_down: false");
  ck_assert(!crema_net_layer_needs_backward(net, crema_net_layer_index(net, "ip0")));
  ck_assert(!crema_net_layer_needs_backward(net, crema_net_layer_index(net, "ip1")));
  ck_assert(crema_net_layer_needs_backward(net, crema_net_layer_index(net, "ip2")));
  ck_assert(!crema_net_bottom_needs_backward(net, crema_net_layer_index(net, "ip2"), 0));
  ck_assert(crema_blob_asum_diff(layer_named(net, "ip2")->blobs[0]) > 0.0);
  ck_assert(crema_blob_asum_diff(layer_named(net, "ip1")->blobs[0]) == 0.0);
  ck_assert(crema_blob_asum_diff(layer_named(net, "ip0")->blobs[0]) == 0.0);
  crema_net_free(net);

  crema_error err;
  crema_net_options o = opts(CREMA__PHASE__TRAIN);
  build_fails(
      "layer { name: 'in' type: 'Input' top: 'x' input_param { shape { dim: 2 } } }\n"
      "layer { name: 'r' type: 'ReLU' bottom: 'x' top: 'y' propagate_down: true propagate_down: false }\n",
      &o, &err);
  ck_assert_msg(strstr(err.msg, "propagate_down") && strstr(err.msg, "\"r\""), "%s", err.msg);
}
END_TEST

START_TEST(lr_mult_zero_gets_no_gradient) {
  /* a frozen middle layer still passes gradients down to ip0, but computes none for itself */
  crema_net *net = chain("", "", "param { lr_mult: 0 } param { lr_mult: 0 }", "");
  crema_layer *ip1 = layer_named(net, "ip1");
  ck_assert(!ip1->param_propagate_down[0] && !ip1->param_propagate_down[1]);
  ck_assert(crema_net_layer_needs_backward(net, crema_net_layer_index(net, "ip1")));
  ck_assert(crema_blob_asum_diff(ip1->blobs[0]) == 0.0 && crema_blob_asum_diff(ip1->blobs[1]) == 0.0);
  ck_assert(crema_blob_asum_diff(layer_named(net, "ip0")->blobs[0]) > 0.0);
  ck_assert_float_eq(crema_net_param_at(net, 2)->lr_mult, 0.0f);
  ck_assert_float_eq(crema_net_param_at(net, 0)->lr_mult, 1.0f);
  crema_net_free(net);

  /* frozen bottom layer: nothing below ip1 needs gradients, so ip0 skips backward */
  net = chain("", "param { lr_mult: 0 } param { lr_mult: 0 }", "", "");
  ck_assert(!crema_net_layer_needs_backward(net, crema_net_layer_index(net, "ip0")));
  ck_assert(!crema_net_bottom_needs_backward(net, crema_net_layer_index(net, "ip1"), 0));
  ck_assert(crema_blob_asum_diff(layer_named(net, "ip1")->blobs[0]) > 0.0);
  crema_net_free(net);
}
END_TEST

START_TEST(force_backward_reaches_inputs) {
  crema_net *net = chain("", "", "", "");
  ck_assert(!crema_net_blob_needs_backward(net, 0));
  ck_assert(crema_blob_asum_diff(crema_net_blob_by_name(net, "x")) == 0.0);
  crema_net_free(net);
  net = chain("force_backward: true", "", "", "");
  ck_assert(crema_blob_asum_diff(crema_net_blob_by_name(net, "x")) > 0.0);
  /* the loss's second input is a target here (EuclideanLoss allows it) */
  ck_assert(crema_net_bottom_needs_backward(net, crema_net_layer_index(net, "loss"), 1));
  crema_net_free(net);
  /* SoftmaxWithLoss never back-propagates into its labels, even when forced */
  char text[2048];
  snprintf(text, sizeof text, "force_backward: true\n%s", CLASSIFIER);
  crema_net_options o = opts(CREMA__PHASE__TRAIN);
  net = build_text(text, &o);
  ck_assert(!crema_net_bottom_needs_backward(net, crema_net_layer_index(net, "loss"), 1));
  ck_assert(crema_net_bottom_needs_backward(net, crema_net_layer_index(net, "loss"), 0));
  crema_net_free(net);
}
END_TEST

/* ---------------------------------------------------------------- whole-net gradient check */

START_TEST(whole_net_gradient_check) {
  const char *text =
      "force_backward: true\n"
      "layer { name: 'in' type: 'Input' top: 'data' top: 'label' input_param { shape { dim: 2 dim: 2 dim: 6 "
      "dim: 6 }\n"
      "  shape { dim: 2 } } }\n"
      "layer { name: 'conv' type: 'Convolution' bottom: 'data' top: 'conv' convolution_param { num_output: "
      "3\n"
      "  kernel_size: 3 pad: 1 weight_filler { type: 'gaussian' std: 0.3 } bias_filler { type: 'gaussian' "
      "std: 0.1 } } }\n"
      "layer { name: 'tanh' type: 'TanH' bottom: 'conv' top: 'conv' }\n"
      "layer { name: 'pool' type: 'Pooling' bottom: 'conv' top: 'pool' pooling_param { pool: AVE "
      "kernel_size: 2 stride: 2 } }\n"
      "layer { name: 'ip' type: 'InnerProduct' bottom: 'pool' top: 'ip' loss_weight: 0.2 inner_product_param "
      "{ num_output: 4\n"
      "  weight_filler { type: 'gaussian' std: 0.3 } bias_filler { type: 'gaussian' std: 0.1 } } }\n"
      "layer { name: 'sig' type: 'Sigmoid' bottom: 'ip' top: 'sig' }\n"
      "layer { name: 'loss' type: 'SoftmaxWithLoss' bottom: 'sig' bottom: 'label' top: 'loss' loss_weight: 3 "
      "}\n"
      "layer { name: 'l2' type: 'EuclideanLoss' bottom: 'ip' bottom: 'sig' top: 'l2' loss_weight: 0.5 }\n";
  crema_net_options o = opts(CREMA__PHASE__TRAIN);
  crema_net *net = build_text(text, &o);
  ck_assert(has_layer(net, "ip_ip_0_split"));
  /* ip's own loss weight moved to the split's first output (Caffe's insert_splits) */
  const int *tops;
  int ns = crema_net_layer_tops(net, crema_net_layer_index(net, "ip_ip_0_split"), &tops);
  ck_assert_int_eq(ns, 3);
  ck_assert_float_eq(crema_net_blob_loss_weight(net, tops[0]), 0.2f);
  ck_assert_float_eq(crema_net_blob_loss_weight(net, tops[1]), 0.0f);
  crema_net_layer_tops(net, crema_net_layer_index(net, "ip"), &tops);
  ck_assert_float_eq(crema_net_blob_loss_weight(net, tops[0]), 0.0f);
  crema_blob *data = crema_net_blob_by_name(net, "data"), *label = crema_net_blob_by_name(net, "label");
  for (size_t i = 0; i < data->count; i++) data->data[i] = sinf((float)i * 0.37f);
  label->data[0] = 1;
  label->data[1] = 3;
  crema_net_clear_param_diffs(net);
  float loss = 0;
  forward_ok(net, &loss);
  ck_assert(isfinite(loss) && loss > 0.0f);
  crema_net_backward(net);
  /* keep the analytic gradients: the finite differences below run more forward passes */
  for (int p = 0; p < crema_net_num_params(net); p++) {
    crema_blob *b = crema_net_param_at(net, p)->blob;
    size_t step = b->count / 7 + 1;
    for (size_t i = 0; i < b->count; i += step) {
      double g = b->diff[i];
      expect_grad(g, numeric_grad(net, &b->data[i], 1e-2),
                  crema_net_layer_name(net, crema_net_param_at(net, p)->layer), i);
    }
  }
  for (size_t i = 0; i < data->count; i += 5) {
    double g = data->diff[i];
    expect_grad(g, numeric_grad(net, &data->data[i], 1e-2), "data", i);
  }
  crema_net_free(net);
}
END_TEST

/* ---------------------------------------------------------------- weights */

static const char *WNET_FMT =
    "name: 'w'\n"
    "layer { name: 'in' type: 'Input' top: 'x' input_param { shape { dim: 2 dim: 6 } } }\n"
    "layer { name: 'ip1' type: 'InnerProduct' bottom: 'x' top: 'h' inner_product_param { num_output: 5\n"
    "  weight_filler { type: 'gaussian' } bias_filler { type: 'gaussian' } } }\n"
    "layer { name: 'relu' type: 'ReLU' bottom: 'h' top: 'h' }\n"
    "layer { name: '%s' type: 'InnerProduct' bottom: 'h' top: 'y' inner_product_param { num_output: %d %s\n"
    "  weight_filler { type: 'gaussian' } bias_filler { type: 'gaussian' } } }\n"
    "layer { name: 'prob' type: 'Softmax' bottom: 'y' top: 'prob' }\n"
    "layer { name: 'amax' type: 'ArgMax' bottom: 'y' top: 'amax' }\n";

static crema_net *wnet(const char *ip2, int n, const char *extra, uint64_t seed) {
  char text[2048];
  snprintf(text, sizeof text, WNET_FMT, ip2, n, extra);
  crema_net_options o = opts(CREMA__PHASE__TEST);
  o.seed = seed;
  return build_text(text, &o);
}

static bool blobs_equal(const crema_blob *a, const crema_blob *b) {
  return crema_blob_same_shape(a, b) && !memcmp(a->data, b->data, a->count * sizeof(float));
}

START_TEST(seeds_are_reproducible) {
  crema_net *a = wnet("ip2", 10, "", 5), *b = wnet("ip2", 10, "", 5), *c = wnet("ip2", 10, "", 6);
  for (int p = 0; p < crema_net_num_params(a); p++) {
    ck_assert(blobs_equal(crema_net_param_at(a, p)->blob, crema_net_param_at(b, p)->blob));
    ck_assert(!blobs_equal(crema_net_param_at(a, p)->blob, crema_net_param_at(c, p)->blob));
  }
  /* ip1 and ip2 have the same filler and shape-independent seeds: they differ */
  ck_assert_float_ne(crema_net_param_at(a, 0)->blob->data[0], crema_net_param_at(a, 2)->blob->data[0]);
  crema_net_free(a);
  crema_net_free(b);
  crema_net_free(c);
}
END_TEST

START_TEST(copy_trained_layers_by_name) {
  crema_net *src = wnet("ip2", 10, "", 1);
  Crema__NetParameter *w = NULL;
  crema_error err;
  ck_assert_int_eq(crema_net_to_proto(src, false, &w, &err), 0);

  /* renamed final layer: copied, ignored and kept messages */
  crema_net *dst = wnet("ip2_fashion", 10, "", 2);
  float before = layer_named(dst, "ip2_fashion")->blobs[0]->data[0];
  capture_begin();
  int rc = crema_net_copy_trained_layers(dst, w, &err);
  char *log = capture_end();
  ck_assert_msg(rc == 0, "%s", err.msg);
  ck_assert_msg(strstr(log, "Copying source layer ip1"), "%s", log);
  ck_assert_msg(strstr(log, "Ignoring source layer ip2\n"), "%s", log);
  ck_assert_msg(strstr(log, "Layer ip2_fashion not in the weights: keeping its filler initialisation"), "%s",
                log);
  ck_assert(blobs_equal(layer_named(dst, "ip1")->blobs[0], layer_named(src, "ip1")->blobs[0]));
  ck_assert(blobs_equal(layer_named(dst, "ip1")->blobs[1], layer_named(src, "ip1")->blobs[1]));
  ck_assert_float_eq(layer_named(dst, "ip2_fashion")->blobs[0]->data[0], before);
  crema_net_free(dst);

  /* same name, other shape: the error names the layer and both shapes, and nothing is copied */
  dst = wnet("ip2", 5, "", 2);
  float ip1_before = layer_named(dst, "ip1")->blobs[0]->data[0];
  ck_assert_int_eq(crema_net_copy_trained_layers(dst, w, &err), -1);
  ck_assert_str_eq(err.msg,
                   "cannot copy weights of layer \"ip2\": source shape 10 5, target shape 5 5. Rename the "
                   "layer to learn it from scratch.");
  ck_assert_float_eq(layer_named(dst, "ip1")->blobs[0]->data[0], ip1_before);
  crema_net_free(dst);

  /* blob count mismatch (no bias) */
  dst = wnet("ip2", 10, "bias_term: false", 2);
  ck_assert_int_eq(crema_net_copy_trained_layers(dst, w, &err), -1);
  ck_assert_msg(strstr(err.msg, "\"ip2\"") && strstr(err.msg, "2 blob(s)") && strstr(err.msg, "has 1"), "%s",
                err.msg);
  crema_net_free(dst);

  /* legacy 4-d blobs (num, channels, height, width) as old caffemodels store them */
  Crema__LayerParameter *ip1 = NULL;
  for (size_t i = 0; i < w->n_layer; i++)
    if (!strcmp(w->layer[i]->name, "ip1")) ip1 = w->layer[i];
  ck_assert_ptr_nonnull(ip1);
  for (size_t j = 0; j < ip1->n_blobs; j++) {
    Crema__BlobProto *bp = ip1->blobs[j];
    int64_t d0 = bp->shape->dim[0], d1 = bp->shape->n_dim > 1 ? bp->shape->dim[1] : -1;
    crema_message_free(bp->shape);
    bp->shape = NULL;
    bp->has_num = bp->has_channels = bp->has_height = bp->has_width = 1;
    bp->num = 1;
    bp->channels = 1;
    bp->height = d1 >= 0 ? (int)d0 : 1;
    bp->width = d1 >= 0 ? (int)d1 : (int)d0;
  }
  dst = wnet("other", 10, "", 3);
  ck_assert_msg(crema_net_copy_trained_layers(dst, w, &err) == 0, "%s", err.msg);
  ck_assert(blobs_equal(layer_named(dst, "ip1")->blobs[0], layer_named(src, "ip1")->blobs[0]));
  ck_assert(blobs_equal(layer_named(dst, "ip1")->blobs[1], layer_named(src, "ip1")->blobs[1]));
  ip1->blobs[0]->height = 6; /* 1 1 6 6 does not match 5 6 */
  ck_assert_int_eq(crema_net_copy_trained_layers(dst, w, &err), -1);
  ck_assert_msg(strstr(err.msg, "source shape 1 1 6 6, target shape 5 6"), "%s", err.msg);
  crema_net_free(dst);

  crema_message_free(w);
  crema_net_free(src);
}
END_TEST

START_TEST(save_load_round_trip) {
  char dir[] = "/tmp/crema_test_net_XXXXXX";
  ck_assert_ptr_nonnull(mkdtemp(dir));
  char path[128];
  snprintf(path, sizeof path, "%s/w.caffemodel", dir);
  crema_error err;
  crema_net *a = wnet("ip2", 10, "", 11);
  ck_assert_msg(crema_net_save_weights(a, path, &err) == 0, "%s", err.msg);
  /* the file is a NetParameter without the inserted Split layers (this net has none; the
   * classifier below has one) */
  crema_net *b = wnet("ip2", 10, "", 12);
  ck_assert(!blobs_equal(crema_net_param_at(a, 0)->blob, crema_net_param_at(b, 0)->blob));
  capture_begin();
  int rc = crema_net_copy_trained_layers_from_file(b, path, &err);
  capture_end();
  ck_assert_msg(rc == 0, "%s", err.msg);
  ck_assert_int_eq(crema_net_num_params(a), 4);
  for (int p = 0; p < crema_net_num_params(a); p++)
    ck_assert(blobs_equal(crema_net_param_at(a, p)->blob, crema_net_param_at(b, p)->blob));
  /* same outputs */
  float la, lb;
  forward_ok(a, &la);
  forward_ok(b, &lb);
  ck_assert(blobs_equal(crema_net_blob_by_name(a, "prob"), crema_net_blob_by_name(b, "prob")));
  crema_net_free(a);
  crema_net_free(b);

  /* a net built from a message holding blobs starts from those blobs */
  crema_net_options o = opts(CREMA__PHASE__TEST);
  crema_net *c = build_text(CLASSIFIER, &o);
  ck_assert(has_layer(c, "ip2_ip2_0_split"));
  Crema__NetParameter *m = NULL;
  ck_assert_int_eq(crema_net_to_proto(c, false, &m, &err), 0);
  ck_assert_uint_eq(m->n_layer, 6);
  for (size_t i = 0; i < m->n_layer; i++) ck_assert_str_ne(m->layer[i]->type, "Split");
  ck_assert_str_eq(m->layer[1]->name, "ip1");
  ck_assert_uint_eq(m->layer[1]->n_blobs, 2);
  o.seed = 99;
  crema_net *d = NULL;
  ck_assert_msg(crema_net_build(m, &o, &d, &err) == 0, "%s", err.msg);
  for (int p = 0; p < crema_net_num_params(c); p++)
    ck_assert(blobs_equal(crema_net_param_at(c, p)->blob, crema_net_param_at(d, p)->blob));
  crema_message_free(m);
  crema_net_free(c);
  crema_net_free(d);

  crema_net *e = wnet("ip2", 10, "", 1);
  ck_assert_int_eq(crema_net_copy_trained_layers_from_file(e, "/nonexistent/x.caffemodel", &err), -1);
  ck_assert_msg(strstr(err.msg, "/nonexistent/x.caffemodel"), "%s", err.msg);
  crema_net_free(e);
  char cmd[160];
  snprintf(cmd, sizeof cmd, "rm -rf '%s'", dir);
  ck_assert_int_eq(system(cmd), 0);
}
END_TEST

START_TEST(v1_net_is_upgraded) {
  const char *v1 =
      "name: 'old'\ninput: 'data'\ninput_dim: 1 input_dim: 3 input_dim: 4 input_dim: 4\n"
      "layers { name: 'ip' type: INNER_PRODUCT bottom: 'data' top: 'ip' blobs_lr: 1 blobs_lr: 2\n"
      "  inner_product_param { num_output: 2 } }\n"
      "layers { name: 'prob' type: SOFTMAX bottom: 'ip' top: 'prob' }\n";
  crema_net_options o = opts(CREMA__PHASE__TEST);
  crema_net *net = build_text(v1, &o);
  ck_assert_int_eq(crema_net_num_layers(net), 3);
  ck_assert_int_eq(crema_net_num_inputs(net), 1);
  ck_assert_str_eq(crema_net_input_name(net, 0), "data");
  ck_assert_int_eq(crema_net_input(net, 0)->shape[1], 3);
  ck_assert_float_eq(crema_net_param_at(net, 1)->lr_mult, 2.0f);
  forward_ok(net, NULL);
  const crema_blob *p = crema_net_blob_by_name(net, "prob");
  ck_assert_float_eq_tol(p->data[0] + p->data[1], 1.0f, 1e-6f);
  crema_net_free(net);
}
END_TEST

/* After the first pass, forward/backward must not grow the heap (buffers are sized at
 * setup/reshape). mallinfo2 sees heap growth, not a malloc freed again within the pass;
 * under AddressSanitizer it reports nothing and the check is vacuous. */
START_TEST(no_heap_growth_after_first_pass) {
  crema_net_options o = opts(CREMA__PHASE__TEST);
  crema_net *net = build_text(CLASSIFIER, &o);
  forward_ok(net, NULL);
  crema_net_clear_param_diffs(net);
  crema_net_backward(net);
  struct mallinfo2 before = mallinfo2();
  for (int it = 0; it < 5; it++) {
    forward_ok(net, NULL);
    crema_net_clear_param_diffs(net);
    crema_net_backward(net);
  }
  struct mallinfo2 after = mallinfo2();
  ck_assert_uint_eq(after.uordblks, before.uordblks);
  crema_net_free(net);
}
END_TEST

/* A V1 caffemodel (`layers`, enum types, legacy 4-d blobs) is upgraded before copying. */
START_TEST(v1_caffemodel_weights) {
  char text[8192];
  size_t used =
      (size_t)snprintf(text, sizeof text,
                       "name: 'old' layers { name: 'ip1' type: INNER_PRODUCT blobs { num: 1 channels: 1 "
                       "height: 5 width: 6");
  for (int i = 0; i < 30; i++) used += (size_t)snprintf(text + used, sizeof text - used, " data: %d", i);
  used +=
      (size_t)snprintf(text + used, sizeof text - used, " } blobs { num: 1 channels: 1 height: 1 width: 5");
  for (int i = 0; i < 5; i++) used += (size_t)snprintf(text + used, sizeof text - used, " data: %d", -i);
  snprintf(text + used, sizeof text - used, " } } layers { name: 'gone' type: RELU }");
  Crema__NetParameter *w = test_net_param(text);
  ck_assert_uint_eq(w->n_layers, 2);
  crema_net *net = wnet("ip2", 10, "", 4);
  crema_error err;
  capture_begin();
  int rc = crema_net_copy_trained_layers(net, w, &err);
  char *log = capture_end();
  ck_assert_msg(rc == 0, "%s", err.msg);
  ck_assert_msg(strstr(log, "Copying source layer ip1") && strstr(log, "Ignoring source layer gone"), "%s",
                log);
  const crema_layer *ip1 = layer_named(net, "ip1");
  ck_assert_float_eq(ip1->blobs[0]->data[29], 29.0f);
  ck_assert_float_eq(ip1->blobs[1]->data[4], -4.0f);
  ck_assert_uint_eq(w->n_layers, 2); /* the caller's message is left as it was */
  crema_message_free(w);
  crema_net_free(net);
}
END_TEST

START_TEST(reshape_follows_inputs) {
  crema_net *net = wnet("ip2", 10, "", 1);
  crema_blob *x = crema_net_input(net, 0);
  crema_error err;
  ck_assert_int_eq(crema_blob_reshape4(x, 7, 6, -1, -1, &err), 0);
  ck_assert_msg(crema_net_reshape(net, &err) == 0, "%s", err.msg);
  forward_ok(net, NULL);
  ck_assert_int_eq(crema_net_blob_by_name(net, "prob")->shape[0], 7);
  ck_assert_int_eq(crema_net_blob_by_name(net, "amax")->shape[0], 7);
  crema_net_free(net);
}
END_TEST

/* Convolution scratch: every conv layer of a net uses the net's one workspace, sized for the
 * largest layer rather than the sum, and the results are bit for bit those of the same
 * layers run on their own buffers. Needs (batch 4, one chunk; col rounded up to 16 floats,
 * then the (Cy, 4 * plane) staging matrix):
 *   c1 3->8 5x5 pad 2 on 12x12: col 3*25 * 144 * 4 = 43200, tmp 8 * 144 * 4 = 4608  -> 47808
 *   c2 8->16 3x3 stride 2 -> 5x5: col 8*9 * 25 * 4 = 7200, tmp 16 * 25 * 4 = 1600  ->  8800
 *   d1 16->6 2x2 stride 2 -> 10x10 (the conv 6->16 back): col 6*4 * 25 * 4 = 2400,
 *      tmp 16 * 25 * 4 = 1600                                                        ->  4000
 *   c3 6->5 1x1 on 10x10 (a small plane: gathered): col 6 * 100 * 4 = 2400,
 *      tmp 5 * 100 * 4 = 2000                                                        ->  4400 */
static const char *CONV_NET =
    "name: 'ws' force_backward: true "
    "layer { name: 'in' type: 'Input' top: 'x' input_param { shape { dim: 4 dim: 3 dim: 12 dim: 12 } } } "
    "layer { name: 'c1' type: 'Convolution' bottom: 'x' top: 'c1' convolution_param { num_output: 8 "
    "  kernel_size: 5 pad: 2 weight_filler { type: 'gaussian' std: 0.1 } "
    "  bias_filler { type: 'constant' value: 0.1 } engine: CAFFE } } "
    "layer { name: 'c2' type: 'Convolution' bottom: 'c1' top: 'c2' convolution_param { num_output: 16 "
    "  kernel_size: 3 stride: 2 weight_filler { type: 'gaussian' std: 0.1 } } } "
    "layer { name: 'd1' type: 'Deconvolution' bottom: 'c2' top: 'd1' convolution_param { num_output: 6 "
    "  kernel_size: 2 stride: 2 weight_filler { type: 'gaussian' std: 0.1 } } } "
    "layer { name: 'c3' type: 'Convolution' bottom: 'd1' top: 'c3' convolution_param { num_output: 5 "
    "  kernel_size: 1 weight_filler { type: 'gaussian' std: 0.1 } engine: CAFFE } } ";

static bool floats_equal(const float *a, const float *b, size_t n) { return !memcmp(a, b, n * sizeof *a); }

START_TEST(conv_layers_share_one_workspace) {
  crema_net_options o = opts(CREMA__PHASE__TRAIN);
  crema_net *net = build_text(CONV_NET, &o);
  crema_workspace *ws = crema_net_workspace(net);
  ck_assert_ptr_nonnull(ws);
  const char *convs[] = {"c1", "c2", "d1", "c3"};
  for (int k = 0; k < 4; k++) ck_assert_ptr_eq(layer_named(net, convs[k])->workspace, ws);
  /* The largest need, not the sum (65008). With oneDNN some layers need no reference
   * scratch at all, but c1 and c3 (engine: CAFFE) always do. */
  ck_assert_uint_eq(crema_workspace_floats(ws), 47808);

  crema_blob *x = crema_net_input(net, 0);
  for (size_t i = 0; i < x->count; i++) x->data[i] = (float)((i * 7919) % 23) / 11.0f - 1.0f;
  forward_ok(net, NULL);
  crema_blob *out = crema_net_blob_by_name(net, "c3");
  for (size_t i = 0; i < out->count; i++) out->diff[i] = (float)((i * 104729) % 17) / 8.0f - 1.0f;
  crema_net_clear_param_diffs(net);
  crema_net_backward(net);

  /* Each layer again, outside any net (own scratch), on copies of its bottom and top diff. */
  for (int k = 0; k < 4; k++) {
    const int li = crema_net_layer_index(net, convs[k]);
    const crema_layer *nl = crema_net_layer(net, li);
    const int *bid, *tid;
    crema_net_layer_bottoms(net, li, &bid);
    crema_net_layer_tops(net, li, &tid);
    const crema_blob *nb = crema_net_blob(net, bid[0]), *nt = crema_net_blob(net, tid[0]);
    crema_blob *b = blob_vals(nb->num_axes, nb->shape, nb->data);
    crema_layer *l = NULL;
    crema_error err;
    ck_assert_int_eq(crema_layer_create(crema_net_layer_param(net, li), CREMA__PHASE__TRAIN, 1, &l, &err), 0);
    crema_blob *t = crema_blob_new();
    ck_assert_msg(crema_layer_setup(l, 1, &b, 1, &t, &err) == 0, "%s", err.msg);
    ck_assert_ptr_null(l->workspace);
    for (int i = 0; i < l->n_blobs; i++) {
      ck_assert_int_eq(crema_blob_copy_from(l->blobs[i], nl->blobs[i], false, &err), 0);
      crema_blob_zero_diff(l->blobs[i]);
      l->param_propagate_down[i] = true;
    }
    ck_assert_int_eq(crema_layer_forward(l, &b, &t, &err), 0);
    ck_assert_msg(floats_equal(t->data, nt->data, nt->count), "%s: forward differs", convs[k]);
    memcpy(t->diff, nt->diff, nt->count * sizeof(float));
    const bool down = true;
    crema_layer_backward(l, &t, &down, &b);
    ck_assert_msg(floats_equal(b->diff, nb->diff, nb->count), "%s: data gradient differs", convs[k]);
    for (int i = 0; i < l->n_blobs; i++)
      ck_assert_msg(floats_equal(l->blobs[i]->diff, nl->blobs[i]->diff, nl->blobs[i]->count),
                    "%s: gradient of parameter %d differs", convs[k], i);
    crema_layer_free(l);
    crema_blob_free(t);
    crema_blob_free(b);
  }
  crema_net_free(net);
}
END_TEST

/* Split tops borrow their bottom's data, as Caffe's SplitLayer does, except when a later
 * layer writes one of them in place (then the copy stays). Either way the net computes the
 * same values, bit for bit. */
static const char *SPLIT_FMT =
    "name: 'sp' "
    "layer { name: 'in' type: 'Input' top: 'x' top: 't' input_param { shape { dim: 4 dim: 5 } "
    "  shape { dim: 4 dim: 6 } } } "
    "layer { name: 'ip' type: 'InnerProduct' bottom: 'x' top: 'h' inner_product_param { num_output: 6 "
    "  weight_filler { type: 'gaussian' std: 0.5 } bias_filler { type: 'constant' value: 0.1 } } } "
    "layer { name: 'sp' type: 'Split' bottom: 'h' top: 'h1' top: 'h2' } "
    "layer { name: 'r' type: 'ReLU' bottom: 'h1' top: '%s' } "
    "layer { name: 's' type: 'Sigmoid' bottom: 'h2' top: 'b' } "
    "layer { name: 'e' type: 'Eltwise' bottom: '%s' bottom: 'b' top: 'y' } "
    "layer { name: 'loss' type: 'EuclideanLoss' bottom: 'y' bottom: 't' top: 'loss' } ";

static crema_net *split_net(const char *relu_top, float *loss) {
  char text[2048];
  snprintf(text, sizeof text, SPLIT_FMT, relu_top, relu_top);
  crema_net_options o = opts(CREMA__PHASE__TRAIN);
  crema_net *net = build_text(text, &o);
  crema_blob *x = crema_net_blob_by_name(net, "x"), *t = crema_net_blob_by_name(net, "t");
  for (size_t i = 0; i < x->count; i++) x->data[i] = (float)((i * 37) % 11) / 5.0f - 1.0f;
  for (size_t i = 0; i < t->count; i++) t->data[i] = (float)((i * 13) % 7) / 7.0f;
  forward_ok(net, loss);
  crema_net_clear_param_diffs(net);
  crema_net_backward(net);
  return net;
}

START_TEST(split_tops_share_bottom_data) {
  float loss_shared, loss_copied;
  crema_net *shared = split_net("a", &loss_shared), *copied = split_net("h1", &loss_copied);
  const crema_blob *h = crema_net_blob_by_name(shared, "h");
  const char *tops[] = {"h1", "h2"};
  for (int k = 0; k < 2; k++) {
    const crema_blob *t = crema_net_blob_by_name(shared, tops[k]);
    ck_assert_ptr_eq(t->data_of, h);
    ck_assert_ptr_eq(t->data, h->data);
    ck_assert_ptr_ne(t->diff, h->diff); /* each top keeps its own gradient */
    ck_assert_ptr_null(crema_net_blob_by_name(copied, tops[k])->data_of);
  }
  ck_assert_ptr_ne(crema_net_blob_by_name(copied, "h1")->data, crema_net_blob_by_name(copied, "h")->data);
  ck_assert_float_eq(loss_shared, loss_copied);
  const crema_layer *a = layer_named(shared, "ip"), *b = layer_named(copied, "ip");
  for (int i = 0; i < 2; i++)
    ck_assert(!memcmp(a->blobs[i]->diff, b->blobs[i]->diff, a->blobs[i]->count * sizeof(float)));
  const crema_blob *ha = crema_net_blob_by_name(shared, "h"), *hb = crema_net_blob_by_name(copied, "h");
  ck_assert(!memcmp(ha->diff, hb->diff, ha->count * sizeof(float)));
  /* A larger input: the bottom moves, the tops follow (reshape, then forward). */
  crema_blob *x = crema_net_blob_by_name(shared, "x"), *t = crema_net_blob_by_name(shared, "t");
  crema_error err;
  ck_assert_int_eq(crema_blob_reshape4(x, 64, 5, -1, -1, &err), 0);
  ck_assert_int_eq(crema_blob_reshape4(t, 64, 6, -1, -1, &err), 0);
  ck_assert_msg(crema_net_reshape(shared, &err) == 0, "%s", err.msg);
  forward_ok(shared, NULL);
  const crema_blob *h1 = crema_net_blob_by_name(shared, "h1");
  ck_assert_ptr_eq(h1->data, h->data);
  ck_assert_int_eq(h1->shape[0], 64);
  crema_net_free(shared);
  crema_net_free(copied);
}
END_TEST

/* crema_blob_share_data: the borrower holds (and the memory count charges it for) only its
 * diff, follows the source's shape, and never frees the source's data. */
START_TEST(blob_share_data) {
  crema_error err;
  crema_blob *src = crema_blob_new(), *b = crema_blob_new();
  ck_assert_int_eq(crema_blob_reshape4(src, 2, 3, -1, -1, &err), 0);
  ck_assert_int_eq(crema_blob_reshape4(b, 100, -1, -1, -1, &err), 0);
  const size_t held = crema_blob_memory_held();
  ck_assert_int_eq(crema_blob_share_data(b, src, &err), 0);
  ck_assert_uint_eq(crema_blob_memory_held(), held - 100 * sizeof(float)); /* its own data went */
  ck_assert_ptr_eq(b->data, src->data);
  ck_assert_int_eq(b->count, 6);
  src->data[5] = 3.0f;
  ck_assert_float_eq(b->data[5], 3.0f);
  ck_assert_int_eq(crema_blob_reshape4(src, 50, 3, -1, -1, &err), 0); /* src moves */
  ck_assert_int_eq(crema_blob_reshape4(b, 150, -1, -1, -1, &err), 0);
  ck_assert_ptr_eq(b->data, src->data);
  ck_assert_uint_eq(b->capacity, 150);
  ck_assert_int_eq(crema_blob_reshape4(b, 151, -1, -1, -1, &err), -1);
  ck_assert_msg(strstr(err.msg, "sharing the data"), "%s", err.msg);
  crema_blob_free(b);
  crema_blob_free(src);
}
END_TEST

int main(void) {
  Suite *s = suite_create("net");
  TCase *tc = tcase_create("net");
  tcase_add_test(tc, state_rules_phase_level_stage);
  tcase_add_test(tc, split_insertion_names);
  tcase_add_test(tc, split_top_with_an_inplace_consumer);
  tcase_add_test(tc, many_tops_build_quickly);
  tcase_add_test(tc, in_place_blobs);
  tcase_add_test(tc, unknown_bottom_lists_available);
  tcase_add_test(tc, loss_weights);
  tcase_add_test(tc, parameter_sharing_accumulates);
  tcase_add_test(tc, lazily_cleared_diffs_match_eager_ones);
  tcase_add_test(tc, propagate_down_false_stops_gradients);
  tcase_add_test(tc, lr_mult_zero_gets_no_gradient);
  tcase_add_test(tc, force_backward_reaches_inputs);
  tcase_add_test(tc, whole_net_gradient_check);
  tcase_add_test(tc, seeds_are_reproducible);
  tcase_add_test(tc, copy_trained_layers_by_name);
  tcase_add_test(tc, save_load_round_trip);
  tcase_add_test(tc, v1_net_is_upgraded);
  tcase_add_test(tc, v1_caffemodel_weights);
  tcase_add_test(tc, no_heap_growth_after_first_pass);
  tcase_add_test(tc, reshape_follows_inputs);
  tcase_add_test(tc, conv_layers_share_one_workspace);
  tcase_add_test(tc, split_tops_share_bottom_data);
  tcase_add_test(tc, blob_share_data);
  suite_add_tcase(s, tc);
  return test_run_suite(s);
}
