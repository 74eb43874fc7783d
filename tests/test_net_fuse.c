/* test_net_fuse.c -- in-place layers run inside the Convolution or Eltwise before them
 * (crema_net_fuse).
 *
 * One net whose convolutions run on every engine (per image, Winograd, 1x1 per image,
 * oneDNN, the reference), each followed by another chain: ReLU; BatchNorm + Scale + ReLU;
 * BatchNorm + ReLU; BatchNorm + Scale (no bias) + leaky ReLU; a ReLU behind a layer that
 * does not fuse; an Eltwise sum and product, each with a ReLU; and after a pooling layer a
 * BatchNorm + frozen Scale + ReLU. Training fused gives the same bits as unfused (the
 * BatchNorm layers with stored statistics running their Scale and ReLU forward and
 * backward), with backward run whole, cut inside a chain, or layer by layer; inference
 * (BatchNorm and Scale folded) the same values to float rounding, blob by blob; a partial
 * forward that stops inside a chain, a layer-by-layer forward and a re-fold after the
 * weights change give what the unfused net gives. */
#include <check.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "engine/engine.h"
#include "layers/batch_norm_chain.h"
#include "net/net.h"
#include "support/textproto.h"

static const char *NET =
    "name: 'fuse' "
    "layer { name: 'data' type: 'DummyData' top: 'x' top: 'y' dummy_data_param { "
    "  shape { dim: 8 dim: 3 dim: 16 dim: 16 } shape { dim: 8 } "
    "  data_filler { type: 'gaussian' std: 1 } data_filler { type: 'uniform' min: 0 max: 2.99 } } } "
    /* 3 input channels: the per-image engine */
    "layer { name: 'conv1' type: 'Convolution' bottom: 'x' top: 'c1' "
    "  convolution_param { num_output: 16 kernel_size: 3 pad: 1 weight_filler { type: 'xavier' } "
    "  bias_filler { type: 'constant' value: 0.1 } } } "
    "layer { name: 'relu1' type: 'ReLU' bottom: 'c1' top: 'c1' } "
    /* 3x3, 16 channels, 128 tiles: Winograd; no bias of its own */
    "layer { name: 'conv2' type: 'Convolution' bottom: 'c1' top: 'c2' "
    "  convolution_param { num_output: 16 kernel_size: 3 pad: 1 bias_term: false "
    "  weight_filler { type: 'xavier' } } } "
    "layer { name: 'bn2' type: 'BatchNorm' bottom: 'c2' top: 'c2' } "
    "layer { name: 'sc2' type: 'Scale' bottom: 'c2' top: 'c2' scale_param { bias_term: true } } "
    "layer { name: 'relu2' type: 'ReLU' bottom: 'c2' top: 'c2' } "
    /* 1x1 on 256 pixels: the per-image 1x1 engine */
    "layer { name: 'conv3' type: 'Convolution' bottom: 'c2' top: 'c3' "
    "  convolution_param { num_output: 32 kernel_size: 1 weight_filler { type: 'xavier' } } } "
    /* stored statistics: run inside the BatchNorm in training as well */
    "layer { name: 'bn3' type: 'BatchNorm' bottom: 'c3' top: 'c3' batch_norm_param { use_global_stats: true "
    "} } "
    "layer { name: 'relu3' type: 'ReLU' bottom: 'c3' top: 'c3' } "
    /* 5x5, channels on oneDNN's blocks: oneDNN */
    "layer { name: 'conv4' type: 'Convolution' bottom: 'c3' top: 'c4' "
    "  convolution_param { num_output: 16 kernel_size: 5 pad: 2 weight_filler { type: 'xavier' } } } "
    "layer { name: 'bn4' type: 'BatchNorm' bottom: 'c4' top: 'c4' batch_norm_param { use_global_stats: true "
    "} } "
    "layer { name: 'sc4' type: 'Scale' bottom: 'c4' top: 'c4' } "
    "layer { name: 'relu4' type: 'ReLU' bottom: 'c4' top: 'c4' relu_param { negative_slope: 0.1 } } "
    /* two groups, forced onto the reference */
    "layer { name: 'conv5' type: 'Convolution' bottom: 'c4' top: 'c5' "
    "  convolution_param { num_output: 16 kernel_size: 3 pad: 1 group: 2 engine: CAFFE "
    "  weight_filler { type: 'xavier' } } } "
    "layer { name: 'relu5' type: 'ReLU' bottom: 'c5' top: 'c5' } "
    /* a layer crema does not fuse comes first: the ReLU after it stays separate */
    "layer { name: 'conv6' type: 'Convolution' bottom: 'c5' top: 'c6' "
    "  convolution_param { num_output: 16 kernel_size: 3 pad: 1 weight_filler { type: 'xavier' } } } "
    "layer { name: 'half6' type: 'Power' bottom: 'c6' top: 'c6' power_param { scale: 0.5 } } "
    "layer { name: 'relu6' type: 'ReLU' bottom: 'c6' top: 'c6' } "
    /* oneDNN again, its ReLU fused in training too (a post-op of its forward) */
    "layer { name: 'conv7' type: 'Convolution' bottom: 'c6' top: 'c7' "
    "  convolution_param { num_output: 16 kernel_size: 5 pad: 2 weight_filler { type: 'xavier' } "
    "  bias_filler { type: 'constant' value: -0.05 } } } "
    "layer { name: 'relu7' type: 'ReLU' bottom: 'c7' top: 'c7' } "
    /* a shortcut sum and a product, each with a ReLU run inside it */
    "layer { name: 'sum8' type: 'Eltwise' bottom: 'c6' bottom: 'c7' top: 's8' "
    "  eltwise_param { coeff: 1 coeff: -0.5 } } "
    "layer { name: 'relu8' type: 'ReLU' bottom: 's8' top: 's8' } "
    "layer { name: 'prod9' type: 'Eltwise' bottom: 's8' bottom: 'c7' top: 's9' "
    "  eltwise_param { operation: PROD } } "
    "layer { name: 'relu9' type: 'ReLU' bottom: 's9' top: 's9' relu_param { negative_slope: 0.2 } } "
    /* s8 feeds prod9 and this sum: sum8 makes its Split's backward sum */
    "layer { name: 'sum10' type: 'Eltwise' bottom: 's9' bottom: 's8' top: 's10' } "
    "layer { name: 'relu10' type: 'ReLU' bottom: 's10' top: 's10' } "
    "layer { name: 'pool' type: 'Pooling' bottom: 's10' top: 'p' "
    "  pooling_param { pool: AVE kernel_size: 2 stride: 2 } } "
    /* BatchNorm after a layer that folds nothing, with a frozen Scale: runs its chain itself */
    "layer { name: 'pbn' type: 'BatchNorm' bottom: 'p' top: 'p' batch_norm_param { use_global_stats: true } "
    "} "
    "layer { name: 'psc' type: 'Scale' bottom: 'p' top: 'p' param { lr_mult: 0 } param { lr_mult: 0 } "
    "  scale_param { bias_term: true } } "
    "layer { name: 'prelu' type: 'ReLU' bottom: 'p' top: 'p' } "
    "layer { name: 'ip' type: 'InnerProduct' bottom: 'p' top: 'ip' "
    "  inner_product_param { num_output: 3 weight_filler { type: 'xavier' } } } "
    "layer { name: 'loss' type: 'SoftmaxWithLoss' bottom: 'ip' bottom: 'y' top: 'loss' } ";

static crema_net *build(Crema__Phase phase) {
  Crema__NetParameter *m = test_net_param(NET);
  crema_net_options o = {.phase = phase, .seed = 5, .source = "fuse"};
  crema_net *net = NULL;
  crema_error err;
  ck_assert_msg(crema_net_build(m, &o, &net, &err) == 0, "%s", err.msg);
  crema_message_free(m);
  return net;
}

static void fuse(crema_net *net, bool inference) {
  crema_error err;
  ck_assert_msg(crema_net_fuse(net, inference, &err) == 0, "%s", err.msg);
}

static void forward(crema_net *net) {
  crema_error err;
  ck_assert_msg(crema_net_forward(net, NULL, &err) == 0, "%s", err.msg);
}

/* The index of layer `name`, checked. */
static int layer(const crema_net *net, const char *name) {
  const int i = crema_net_layer_index(net, name);
  ck_assert_msg(i >= 0, "no layer %s", name);
  return i;
}

static void expect_fused(const crema_net *net, const char *member, const char *head) {
  const int got = crema_net_fused_into(net, layer(net, member));
  const int want = head ? layer(net, head) : -1;
  ck_assert_msg(got == want, "%s is fused into %s, expected %s", member,
                got >= 0 ? crema_net_layer_name(net, got) : "nothing", head ? head : "nothing");
}

static size_t first_difference(const float *a, const float *b, size_t n) {
  size_t i = 0;
  while (i < n && !memcmp(&a[i], &b[i], sizeof(float))) i++;
  return i;
}

/* Every blob's data of b within float rounding of a's (same net, same blob order). */
static void close_blobs(const crema_net *a, const crema_net *b, const char *what) {
  for (int k = 0; k < crema_net_num_blobs(a); k++) {
    const crema_blob *x = crema_net_blob(a, k), *y = crema_net_blob(b, k);
    ck_assert_uint_eq(x->count, y->count);
    double scale = 0.0;
    for (size_t i = 0; i < x->count; i++) scale = fmax(scale, fabs(x->data[i]));
    for (size_t i = 0; i < x->count; i++)
      if (!(fabs((double)x->data[i] - y->data[i]) <= 1e-5 * (1.0 + scale)))
        ck_abort_msg("%s: blob %s[%zu] is %.9g fused, %.9g not", what, crema_net_blob_name(a, k), i,
                     (double)y->data[i], (double)x->data[i]);
  }
}

/* The ways a training net's backward can run: whole, in two ranges (the cut between bn4 and
 * sc4, inside a chain), or layer by layer as `crema time` runs it. */
enum { WHOLE, CUT, LAYERWISE, SHARED };

static void backward(crema_net *net, int how) {
  const int n = crema_net_num_layers(net);
  if (how == WHOLE || how == SHARED) {
    crema_net_backward(net);
  } else if (how == CUT) {
    const int cut = layer(net, "sc4");
    crema_net_backward_from_to(net, n - 1, cut);
    crema_net_backward_from_to(net, cut - 1, 0);
  } else {
    crema_net_seed_loss_diffs(net);
    for (int i = n - 1; i >= 0; i--) crema_net_backward_layer(net, i);
  }
}

/* Training: losses, weights and gradients bit for bit, fused or not, however backward runs.
 * The ReLUs right after a convolution fuse; BatchNorm, with stored or batch statistics, runs
 * the Scale and ReLU after it, forward and backward. */
static void training_same_bits(int how) {
  crema_net *a = build(CREMA__PHASE__TRAIN), *b = build(CREMA__PHASE__TRAIN);
  crema_net_fill_random_weights(a, 79); /* statistics for the BatchNorm layers that use them */
  crema_net_fill_random_weights(b, 79);
  fuse(b, false);
  crema_error err;
  if (how == SHARED) /* as the solver plans a training net, after fusing */
    ck_assert_msg(crema_net_share_diffs(b, &err) == 0, "%s", err.msg);
  expect_fused(b, "relu1", "conv1");
  expect_fused(b, "relu5", "conv5");
  expect_fused(b, "relu7", "conv7");
  expect_fused(b, "relu8", "sum8");
  expect_fused(b, "relu9", "prod9");
  expect_fused(b, "bn2", NULL); /* batch statistics: runs its Scale and ReLU as well */
  expect_fused(b, "sc2", "bn2");
  expect_fused(b, "relu2", "bn2");
  { /* and the Scale reads its input from the BatchNorm's x_hat: one copy, not two */
    crema_blob *c2 = crema_net_blob_by_name(b, "c2");
    crema_layer *sc2 = crema_net_layer(b, layer(b, "sc2")), *bn2 = crema_net_layer(b, layer(b, "bn2"));
    ck_assert_ptr_eq(crema_scale_kept_input(sc2, c2), crema_batch_norm_x_norm(bn2)->data);
    ck_assert_ptr_ne(
        crema_scale_kept_input(crema_net_layer(a, layer(a, "sc2")), crema_net_blob_by_name(a, "c2")),
        crema_batch_norm_x_norm(crema_net_layer(a, layer(a, "bn2")))->data);
  }
  expect_fused(b, "relu6", NULL);
  expect_fused(b, "bn3", NULL);
  expect_fused(b, "relu3", "bn3");
  expect_fused(b, "bn4", NULL);
  expect_fused(b, "sc4", "bn4");
  expect_fused(b, "relu4", "bn4");
  expect_fused(b, "psc", "pbn");
  expect_fused(b, "prelu", "pbn");
  expect_fused(b, "relu10", "sum10");
  const int split8 = crema_net_layer_index(b, "s8_relu8_0_split");
  ck_assert_msg(split8 >= 0 && crema_net_backward_fused_into(b, split8) == layer(b, "sum8"),
                "sum8 does not make its Split's sum");
  /* whose backward runs where: a Convolution's ReLU runs its own */
  ck_assert_int_eq(crema_net_backward_fused_into(b, split8), layer(b, "sum8"));
  ck_assert_int_eq(crema_net_backward_fused_into(b, layer(b, "relu8")), layer(b, "sum8"));
  ck_assert_int_eq(crema_net_backward_fused_into(b, layer(b, "sc4")), layer(b, "bn4"));
  ck_assert_int_eq(crema_net_backward_fused_into(b, layer(b, "relu1")), -1);
  ck_assert_int_eq(crema_net_backward_fused_into(b, layer(b, "bn4")), -1);
  for (int it = 0; it < 3; it++) {
    float la, lb;
    crema_net *nets[2] = {a, b};
    float *loss[2] = {&la, &lb};
    for (int k = 0; k < 2; k++) {
      if (k == 0)
        crema_net_clear_param_diffs(nets[k]);
      else /* as the solver does: the fused chain zeroes the skipped Scale's diffs itself */
        crema_net_clear_param_diffs_lazily(nets[k]);
      ck_assert_msg(crema_net_forward(nets[k], loss[k], &err) == 0, "%s", err.msg);
      backward(nets[k], k == 0 ? WHOLE : how);
      for (int p = 0; p < crema_net_num_params(nets[k]); p++) {
        const crema_net_param *np = crema_net_param_at(nets[k], p);
        for (size_t i = 0; i < np->blob->count; i++) np->blob->data[i] -= 0.05f * np->blob->diff[i];
      }
    }
    ck_assert_msg(!memcmp(&la, &lb, sizeof la), "iteration %d: loss %.9g fused, %.9g not", it, (double)lb,
                  (double)la);
  }
  for (int p = 0; p < crema_net_num_params(a); p++) {
    const crema_blob *x = crema_net_param_at(a, p)->blob, *y = crema_net_param_at(b, p)->blob;
    ck_assert_uint_eq(first_difference(x->data, y->data, x->count), x->count);
    ck_assert_uint_eq(first_difference(x->diff, y->diff, x->count), x->count);
  }
  /* and the gradients reaching the inputs of the chains (shared diffs are reused) */
  static const char *const blobs[] = {"c2", "c3", "c4", "s9"};
  for (size_t k = 0; how != SHARED && k < 4; k++) {
    const crema_blob *x = crema_net_blob_by_name(a, blobs[k]), *y = crema_net_blob_by_name(b, blobs[k]);
    const size_t d = first_difference(x->diff, y->diff, x->count);
    ck_assert_msg(d == x->count, "%s's gradient differs at %zu of %zu: %.9g fused, %.9g not", blobs[k], d,
                  x->count, d < x->count ? (double)y->diff[d] : 0.0, d < x->count ? (double)x->diff[d] : 0.0);
  }
  crema_net_free(a);
  crema_net_free(b);
}

START_TEST(training_same_bits_whole) { training_same_bits(WHOLE); }
END_TEST

/* What the backward callback saw: each layer once, from the last, and sc4's gradient
 * (written inside bn4) already final when sc4 is reported. */
typedef struct heard {
  const crema_net *net;
  int order[64], n;
  double sc4_sum;
} heard;

static double diff_sum(const crema_blob *b) {
  double s = 0.0;
  for (size_t i = 0; i < b->count; i++) s += b->diff[i];
  return s;
}

static void on_backward(void *ctx, int li) {
  heard *h = ctx;
  ck_assert_int_lt(h->n, 64);
  h->order[h->n++] = li;
  if (li == layer(h->net, "sc4")) h->sc4_sum = diff_sum(crema_net_layer(h->net, li)->blobs[0]);
}

START_TEST(backward_callback_after_chain) {
  crema_net *b = build(CREMA__PHASE__TRAIN);
  crema_net_fill_random_weights(b, 80);
  fuse(b, false);
  heard h = {.net = b};
  crema_net_set_backward_callback(b, on_backward, &h);
  crema_error err;
  crema_net_clear_param_diffs_lazily(b);
  ck_assert_msg(crema_net_forward(b, NULL, &err) == 0, "%s", err.msg);
  crema_net_backward(b);
  ck_assert_int_eq(h.n, crema_net_num_layers(b));
  for (int k = 0; k < h.n; k++) ck_assert_int_eq(h.order[k], h.n - 1 - k);
  const double final_sum = diff_sum(crema_net_layer(b, layer(b, "sc4"))->blobs[0]);
  ck_assert_msg(final_sum != 0.0 && h.sc4_sum == final_sum,
                "sc4's gradient was %.9g when reported, %.9g at the end", h.sc4_sum, final_sum);
  crema_net_free(b);
}
END_TEST

START_TEST(training_same_bits_cut) { training_same_bits(CUT); }
END_TEST

/* Gradient storage planned before fusing does not know the Split's top gradients are read at
 * the Eltwise's turn: the Split then keeps its own backward. */
START_TEST(split_kept_when_diffs_planned_first) {
  crema_net *b = build(CREMA__PHASE__TRAIN);
  crema_error err;
  ck_assert_msg(crema_net_share_diffs(b, &err) == 0, "%s", err.msg);
  fuse(b, false);
  expect_fused(b, "relu8", "sum8");
  const int split8 = crema_net_layer_index(b, "s8_relu8_0_split");
  ck_assert_int_ge(split8, 0);
  ck_assert_int_eq(crema_net_backward_fused_into(b, split8), -1);
  crema_net_free(b);
}
END_TEST

START_TEST(training_same_bits_shared_diffs) { training_same_bits(SHARED); }
END_TEST

START_TEST(training_same_bits_layerwise) { training_same_bits(LAYERWISE); }
END_TEST

/* Two TEST-phase nets with the same random weights (BatchNorm statistics included). */
static void inference_pair(crema_net **a, crema_net **b) {
  *a = build(CREMA__PHASE__TEST);
  *b = build(CREMA__PHASE__TEST);
  crema_net_fill_random_weights(*a, 77);
  crema_net_fill_random_weights(*b, 77);
  crema_error err;
  ck_assert_msg(crema_net_share_activations(*b, NULL, &err) == 0, "%s", err.msg);
  fuse(*b, true);
}

START_TEST(inference_same_values) {
  crema_net *a, *b;
  inference_pair(&a, &b);
  static const char *const chains[][2] = {
      {"relu1", "conv1"}, {"bn2", "conv2"}, {"sc2", "conv2"},   {"relu2", "conv2"}, {"bn3", "conv3"},
      {"relu3", "conv3"}, {"bn4", "conv4"}, {"sc4", "conv4"},   {"relu4", "conv4"}, {"relu5", "conv5"},
      {"relu6", NULL},    {"half6", NULL},  {"relu7", "conv7"}, {"relu8", "sum8"},  {"relu9", "prod9"},
      {"psc", "pbn"},     {"prelu", "pbn"}};
  for (size_t k = 0; k < sizeof chains / sizeof chains[0]; k++) expect_fused(b, chains[k][0], chains[k][1]);
  if (crema_engine_have_onednn()) { /* every engine takes a fused chain */
    static const char *const engines[][2] = {
        {"conv1", CREMA_ENGINE_PER_IMAGE}, {"conv2", CREMA_ENGINE_WINOGRAD},
        {"conv3", CREMA_ENGINE_POINTWISE}, {"conv4", CREMA_ENGINE_ONEDNN},
        {"conv5", CREMA_ENGINE_REFERENCE}, {"conv7", CREMA_ENGINE_ONEDNN}};
    for (size_t k = 0; k < 6; k++) {
      const char *got = crema_layer_engine_name(crema_net_layer(b, layer(b, engines[k][0])));
      ck_assert_msg(!strncmp(got, engines[k][1], strlen(engines[k][1])), "%s runs on %s, expected %s",
                    engines[k][0], got, engines[k][1]);
    }
  }
  for (int pass = 0; pass < 2; pass++) {
    forward(a);
    forward(b);
    /* the outputs: a forward-only net keeps only those */
    const crema_blob *x = crema_net_blob_by_name(a, "ip"), *y = crema_net_blob_by_name(b, "ip");
    for (size_t i = 0; i < x->count; i++)
      ck_assert_msg(fabsf(x->data[i] - y->data[i]) <= 1e-4f * (1.0f + fabsf(x->data[i])),
                    "ip[%zu] is %.9g fused, %.9g not", i, (double)y->data[i], (double)x->data[i]);
  }
  crema_net_free(a);
  crema_net_free(b);
}
END_TEST

/* Without shared activations every blob can be compared; layer by layer runs as a whole
 * forward does; a partial forward stopping inside a chain runs it unfused. */
START_TEST(inference_blobs_partial_and_layerwise) {
  crema_net *a = build(CREMA__PHASE__TEST), *b = build(CREMA__PHASE__TEST);
  crema_net_fill_random_weights(a, 78);
  crema_net_fill_random_weights(b, 78);
  fuse(b, true);
  forward(a);
  forward(b);
  close_blobs(a, b, "whole forward");
  crema_error err;
  forward(a); /* DummyData draws new inputs on every pass: keep the nets in step */
  for (int i = 0; i < crema_net_num_layers(b); i++)
    ck_assert_msg(crema_net_forward_layer(b, i, &err) == 0, "%s", err.msg);
  close_blobs(a, b, "layer by layer");
  /* up to bn2 (after conv2, before sc2): c2 is normalised but not yet scaled */
  const int end = layer(a, "bn2");
  ck_assert_msg(crema_net_forward_from_to(a, 0, end, &err) == 0, "%s", err.msg);
  ck_assert_msg(crema_net_forward_from_to(b, 0, end, &err) == 0, "%s", err.msg);
  close_blobs(a, b, "forward to bn2");
  crema_net_free(a);
  crema_net_free(b);
}
END_TEST

/* The fold is a snapshot: after the weights change, fusing again re-reads them. */
START_TEST(refold_after_weights_change) {
  crema_net *a, *b;
  inference_pair(&a, &b);
  const char *layers[] = {"conv2", "bn2", "sc4"};
  for (int k = 0; k < 3; k++) {
    const crema_layer *la = crema_net_layer(a, layer(a, layers[k])),
                      *lb = crema_net_layer(b, layer(b, layers[k]));
    for (size_t i = 0; i < la->blobs[0]->count; i++) {
      la->blobs[0]->data[i] *= 1.5f;
      lb->blobs[0]->data[i] *= 1.5f;
    }
  }
  forward(a);
  forward(b);
  const crema_blob *x = crema_net_blob_by_name(a, "ip"), *y = crema_net_blob_by_name(b, "ip");
  bool stale = false;
  for (size_t i = 0; i < x->count; i++) stale |= fabsf(x->data[i] - y->data[i]) > 1e-3f;
  ck_assert_msg(stale, "the folded copy followed the weights without a re-fold");
  fuse(b, true);
  forward(a); /* DummyData draws new inputs on every pass: keep the nets in step */
  forward(b);
  for (size_t i = 0; i < x->count; i++)
    ck_assert_msg(fabsf(x->data[i] - y->data[i]) <= 1e-4f * (1.0f + fabsf(x->data[i])),
                  "after re-folding, ip[%zu] is %.9g fused, %.9g not", i, (double)y->data[i],
                  (double)x->data[i]);
  crema_error err;
  ck_assert_int_ne(crema_net_fuse(b, false, &err), 0); /* another kind of fusion: refused */
  ck_assert_msg(strstr(err.msg, "already fused for inference"), "%s", err.msg);
  crema_net_free(a);
  crema_net_free(b);
}
END_TEST

int main(void) {
  Suite *s = suite_create("net_fuse");
  TCase *tc = tcase_create("fuse");
  tcase_set_timeout(tc, 300);
  tcase_add_test(tc, training_same_bits_whole);
  tcase_add_test(tc, training_same_bits_cut);
  tcase_add_test(tc, training_same_bits_layerwise);
  tcase_add_test(tc, training_same_bits_shared_diffs);
  tcase_add_test(tc, backward_callback_after_chain);
  tcase_add_test(tc, split_kept_when_diffs_planned_first);
  tcase_add_test(tc, inference_same_values);
  tcase_add_test(tc, inference_blobs_partial_and_layerwise);
  tcase_add_test(tc, refold_after_weights_change);
  suite_add_tcase(s, tc);
  SRunner *r = srunner_create(s);
  srunner_run_all(r, CK_NORMAL);
  const int failed = srunner_ntests_failed(r);
  srunner_free(r);
  return failed ? EXIT_FAILURE : EXIT_SUCCESS;
}
