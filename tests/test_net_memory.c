/* test_net_memory.c -- activations sharing storage. Gradients (crema_net_share_diffs):
 * training with shared diffs gives the same bits as without (losses, gradients, weights) on
 * a small net with a Split, in-place layers, Eltwise, Concat, Slice, frozen layers and an
 * Accuracy beside the loss, on a force_backward net with diffs read but never written, and
 * on zoo nets. Values (crema_net_share_activations): forward-only nets give the same outputs.
 * The shared buffers hold less; the blobs that must keep their own buffers do; a blob that
 * outgrows a borrowed buffer gets its own again; a solver shares in its train and test nets. */
#include <check.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "support/run.h"
#include "base/log.h"
#include "net/net.h"
#include "net/net_internal.h" /* the shared buffers, to poison them */
#include "proto/io.h"
#include "solver/solver.h"
#include "support/textproto.h"

/* x (4 images) -> frozen conv0 -> conv1 -> ReLU in place -> {conv2a, conv2b -> ReLU in place}
 * -> Eltwise SUM -> Concat with conv1's output (conv1's output feeds three layers: a Split)
 * -> pooling -> Slice (the second half unused: its diff is read but never written) -> frozen
 * fully connected layer (still propagates) -> ReLU, Dropout in place -> plus a constant (a
 * DummyData top filled once) -> classifier -> loss, and Accuracy on the classifier's output
 * (a Split top nobody back-propagates into). */
static const char *NET =
    "name: 'mem' "
    "layer { name: 'data' type: 'DummyData' top: 'x' top: 'y' top: 'k' dummy_data_param { "
    "  shape { dim: 4 dim: 3 dim: 8 dim: 8 } shape { dim: 4 } shape { dim: 4 dim: 16 } "
    "  data_filler { type: 'gaussian' std: 1 } data_filler { type: 'uniform' min: 0 max: 2.99 } "
    "  data_filler { type: 'constant' value: 0.5 } } } "
    "layer { name: 'conv0' type: 'Convolution' bottom: 'x' top: 'c0' param { lr_mult: 0 } param { lr_mult: 0 "
    "} "
    "  convolution_param { num_output: 4 kernel_size: 3 pad: 1 weight_filler { type: 'xavier' } } } "
    "layer { name: 'conv1' type: 'Convolution' bottom: 'c0' top: 'c1' "
    "  convolution_param { num_output: 8 kernel_size: 3 pad: 1 weight_filler { type: 'xavier' } "
    "  bias_filler { type: 'constant' value: 0.1 } } } "
    "layer { name: 'relu1' type: 'ReLU' bottom: 'c1' top: 'c1' } "
    "layer { name: 'conv2a' type: 'Convolution' bottom: 'c1' top: 'a' "
    "  convolution_param { num_output: 8 kernel_size: 1 weight_filler { type: 'xavier' } } } "
    "layer { name: 'conv2b' type: 'Convolution' bottom: 'c1' top: 'b' "
    "  convolution_param { num_output: 8 kernel_size: 3 pad: 1 weight_filler { type: 'xavier' } } } "
    "layer { name: 'relu2b' type: 'ReLU' bottom: 'b' top: 'b' } "
    "layer { name: 'sum' type: 'Eltwise' bottom: 'a' bottom: 'b' top: 'e' } "
    "layer { name: 'cat' type: 'Concat' bottom: 'e' bottom: 'c1' top: 'cat' } "
    "layer { name: 'pool' type: 'Pooling' bottom: 'cat' top: 'p' "
    "  pooling_param { pool: MAX kernel_size: 2 stride: 2 } } "
    "layer { name: 'slice' type: 'Slice' bottom: 'p' top: 'p1' top: 'p2' "
    "  slice_param { axis: 1 slice_point: 12 } } "
    "layer { name: 'ipf' type: 'InnerProduct' bottom: 'p1' top: 'f' param { lr_mult: 0 } param { lr_mult: 0 "
    "} "
    "  inner_product_param { num_output: 16 weight_filler { type: 'xavier' } } } "
    "layer { name: 'reluf' type: 'ReLU' bottom: 'f' top: 'f' } "
    "layer { name: 'drop' type: 'Dropout' bottom: 'f' top: 'f' dropout_param { dropout_ratio: 0.3 } } "
    "layer { name: 'addk' type: 'Eltwise' bottom: 'f' bottom: 'k' top: 'fk' } "
    "layer { name: 'ip' type: 'InnerProduct' bottom: 'fk' top: 'ip' "
    "  inner_product_param { num_output: 3 weight_filler { type: 'xavier' } } } "
    "layer { name: 'loss' type: 'SoftmaxWithLoss' bottom: 'ip' bottom: 'y' top: 'loss' } "
    "layer { name: 'acc' type: 'Accuracy' bottom: 'ip' bottom: 'y' top: 'accuracy' } ";

/* Diffs that backward reads without writing, which must stay zero: with force_backward an
 * in-place ReLU runs backward on an output nobody consumes (it reads its top's diff, then
 * writes it), and Crop never computes a gradient for its reference input, which a learned
 * layer produces. */
static const char *EDGE =
    "name: 'edge' force_backward: true "
    "layer { name: 'data' type: 'DummyData' top: 'x' top: 'y' dummy_data_param { "
    "  shape { dim: 4 dim: 3 dim: 8 dim: 8 } shape { dim: 4 } "
    "  data_filler { type: 'gaussian' std: 1 } data_filler { type: 'uniform' min: 0 max: 2.99 } } } "
    "layer { name: 'conv1' type: 'Convolution' bottom: 'x' top: 'c1' "
    "  convolution_param { num_output: 8 kernel_size: 3 pad: 1 weight_filler { type: 'xavier' } } } "
    "layer { name: 'ref' type: 'Convolution' bottom: 'c1' top: 'r' "
    "  convolution_param { num_output: 2 kernel_size: 3 weight_filler { type: 'xavier' } } } "
    "layer { name: 'crop' type: 'Crop' bottom: 'c1' bottom: 'r' top: 'cr' crop_param { axis: 2 offset: 1 } } "
    "layer { name: 'side' type: 'Convolution' bottom: 'c1' top: 'u' "
    "  convolution_param { num_output: 2 kernel_size: 1 weight_filler { type: 'xavier' } } } "
    "layer { name: 'reluu' type: 'ReLU' bottom: 'u' top: 'u' } "
    "layer { name: 'ip' type: 'InnerProduct' bottom: 'cr' top: 'ip' "
    "  inner_product_param { num_output: 3 weight_filler { type: 'xavier' } } } "
    "layer { name: 'loss' type: 'SoftmaxWithLoss' bottom: 'ip' bottom: 'y' top: 'loss' } ";

#define ITERS 4

/* The autoencoder's TEST data layer needs a stage; the other nets ignore it. */
static const char *const STAGES[] = {"test-on-test"};

static crema_net *build_phase(Crema__NetParameter *m, Crema__Phase phase) {
  crema_net_options o = {.phase = phase, .seed = 11, .source = "mem", .stages = STAGES, .n_stages = 1};
  crema_net *net = NULL;
  crema_error err;
  ck_assert_msg(crema_net_build(m, &o, &net, &err) == 0, "%s", err.msg);
  return net;
}

static crema_net *build(Crema__NetParameter *m, bool share) {
  crema_net *net = build_phase(m, CREMA__PHASE__TRAIN);
  crema_error err;
  if (share) ck_assert_msg(crema_net_share_diffs(net, &err) == 0, "%s", err.msg);
  return net;
}

/* NaN all over the shared storage: a value read before the pass wrote it poisons the
 * results, and the comparison with the unshared run fails. */
static void poison(net_arena *arena) {
  for (size_t i = 0; i < arena->count; i++) arena->buf[i] = NAN;
}

/* The first index where a and b (n floats) differ in bits, or n. One assertion per array:
 * Check records every ck_assert call, far too slow per element. */
static size_t first_difference(const float *a, const float *b, size_t n) {
  size_t i = 0;
  while (i < n && !memcmp(&a[i], &b[i], sizeof(float))) i++;
  return i;
}

/* What a run leaves: its losses, and every parameter's data and last gradient, in order. */
typedef struct run_result {
  float loss[ITERS];
  size_t n;
  float *w, *g;
} run_result;

/* iters steps of plain SGD (w -= 0.01 * lr_mult * grad) on the net built from m. */
static run_result train(Crema__NetParameter *m, bool share, int iters) {
  crema_net *net = build(m, share);
  run_result r = {{0}, 0, NULL, NULL};
  crema_error err;
  for (int it = 0; it < iters; it++) {
    crema_net_clear_param_diffs(net);
    ck_assert_msg(crema_net_forward(net, &r.loss[it], &err) == 0, "%s", err.msg);
    if (share) poison(&net->diffs);
    crema_net_backward(net);
    for (int p = 0; p < crema_net_num_params(net); p++) {
      const crema_net_param *np = crema_net_param_at(net, p);
      const float rate = 0.01f * np->lr_mult;
      for (size_t i = 0; i < np->blob->count; i++) np->blob->data[i] -= rate * np->blob->diff[i];
    }
  }
  for (int p = 0; p < crema_net_num_params(net); p++) r.n += crema_net_param_at(net, p)->blob->count;
  r.w = malloc((r.n + 1) * sizeof *r.w);
  r.g = malloc((r.n + 1) * sizeof *r.g);
  ck_assert(r.w && r.g);
  size_t at = 0;
  for (int p = 0; p < crema_net_num_params(net); p++) {
    const crema_blob *b = crema_net_param_at(net, p)->blob;
    memcpy(r.w + at, b->data, b->count * sizeof(float));
    memcpy(r.g + at, b->diff, b->count * sizeof(float));
    at += b->count;
  }
  crema_net_free(net);
  return r;
}

static void same_bits(Crema__NetParameter *m, int iters, const char *name) {
  run_result a = train(m, false, iters), b = train(m, true, iters);
  for (int it = 0; it < iters; it++)
    ck_assert_msg(!memcmp(&a.loss[it], &b.loss[it], sizeof(float)),
                  "%s: iteration %d loss %.9g shared, %.9g not", name, it, (double)b.loss[it],
                  (double)a.loss[it]);
  ck_assert_uint_eq(a.n, b.n);
  const size_t w = first_difference(a.w, b.w, a.n), g = first_difference(a.g, b.g, a.n);
  ck_assert_msg(w == a.n, "%s: weight %zu is %.9g shared, %.9g not", name, w, w < a.n ? (double)b.w[w] : 0.0,
                w < a.n ? (double)a.w[w] : 0.0);
  ck_assert_msg(g == a.n, "%s: gradient %zu is %.9g shared, %.9g not", name, g,
                g < a.n ? (double)b.g[g] : 0.0, g < a.n ? (double)a.g[g] : 0.0);
  free(a.w);
  free(a.g);
  free(b.w);
  free(b.g);
}

START_TEST(small_net_same_bits) {
  Crema__NetParameter *m = test_net_param(NET);
  same_bits(m, ITERS, "small net");
  crema_message_free(m);
}
END_TEST

static bool borrowed(const crema_net *net, const char *blob) {
  const crema_blob *b = crema_net_blob_by_name(net, blob);
  ck_assert_msg(b != NULL, "no blob %s", blob);
  return b->diff_borrowed;
}

START_TEST(edge_net_same_bits) {
  Crema__NetParameter *m = test_net_param(EDGE);
  same_bits(m, ITERS, "edge net");
  crema_net *net = build(m, true);
  ck_assert(!borrowed(net, "u") && !borrowed(net, "r"));
  ck_assert(borrowed(net, "cr") && borrowed(net, "x")); /* force_backward: conv1 writes x */
  crema_net_free(net);
  crema_message_free(m);
}
END_TEST

/* Which blobs share, and what that saves (the accounting of held bytes follows). */
START_TEST(small_net_plan) {
  Crema__NetParameter *m = test_net_param(NET);
  crema_net *net = build(m, false);
  const size_t own = crema_net_diff_bytes(net), held = crema_blob_memory_held();
  crema_error err;
  ck_assert_msg(crema_net_share_diffs(net, &err) == 0, "%s", err.msg);
  ck_assert_msg(crema_net_share_diffs(net, &err) == 0, "%s", err.msg); /* again: nothing */
  const size_t shared = crema_net_diff_bytes(net);
  ck_assert_msg(shared < own, "diffs hold %zu bytes shared, %zu not", shared, own);
  ck_assert_uint_eq(held - crema_blob_memory_held(), own - shared);
  /* Written by backward before it is read: shared. */
  const char *yes[] = {
      "c1", "a", "b", "e", "cat", "p", "p1", "f", "fk", "c1_relu1_0_split_0", "ip_ip_0_split_0"};
  for (size_t i = 0; i < sizeof yes / sizeof *yes; i++) ck_assert_msg(borrowed(net, yes[i]), "%s", yes[i]);
  /* Data and labels, and c0 (the frozen conv0 on the data needs no backward, so conv1 does
   * not propagate to its output): nobody writes them. The loss: seeded before backward. p2
   * (read by Slice) and Accuracy's Split top (read by the Split): read, never written. */
  const char *no[] = {"x", "y", "k", "c0", "loss", "p2", "ip_ip_0_split_1", "accuracy"};
  for (size_t i = 0; i < sizeof no / sizeof *no; i++) ck_assert_msg(!borrowed(net, no[i]), "%s", no[i]);
  crema_net_free(net);
  crema_message_free(m);
}
END_TEST

/* A chain of equal layers needs room for two activations whatever its depth (a layer's top
 * and bottom). */
START_TEST(chain_needs_two_buffers) {
  char text[8192];
  size_t n = (size_t)snprintf(text, sizeof text,
                              "name: 'chain' "
                              "layer { name: 'data' type: 'DummyData' top: 'x' top: 'y' dummy_data_param { "
                              "  shape { dim: 2 dim: 4 dim: 16 dim: 16 } shape { dim: 2 } } } "
                              "layer { name: 'c0' type: 'Convolution' bottom: 'x' top: 'h0' "
                              "  convolution_param { num_output: 4 kernel_size: 3 pad: 1 } } ");
  for (int i = 1; i <= 8; i++)
    n += (size_t)snprintf(text + n, sizeof text - n,
                          "layer { name: 'c%d' type: 'Convolution' bottom: 'h%d' top: 'h%d' "
                          "  convolution_param { num_output: 4 kernel_size: 3 pad: 1 } } "
                          "layer { name: 'r%d' type: 'ReLU' bottom: 'h%d' top: 'h%d' } ",
                          i, i - 1, i, i, i, i);
  snprintf(text + n, sizeof text - n,
           "layer { name: 'ip' type: 'InnerProduct' bottom: 'h8' top: 'ip' inner_product_param { num_output: "
           "2 } } "
           "layer { name: 'loss' type: 'SoftmaxWithLoss' bottom: 'ip' bottom: 'y' top: 'loss' } ");
  Crema__NetParameter *m = test_net_param(text);
  crema_net *net = build(m, true);
  const size_t act = 2 * 4 * 16 * 16 * sizeof(float);
  ck_assert_uint_eq(net->diffs.count * sizeof(float), 2 * act);
  /* h0..h8 and ip share; x, y and the loss keep their own. */
  ck_assert_uint_eq(crema_net_diff_bytes(net), 2 * act + act + 2 * sizeof(float) + sizeof(float));
  crema_net_free(net);
  crema_message_free(m);
}
END_TEST

/* A borrowed diff stays while the count fits; past the buffer the blob gets its own (zero). */
START_TEST(blob_outgrows_borrowed_diff) {
  crema_error err;
  crema_blob *b = crema_blob_new();
  ck_assert_int_eq(crema_blob_reshape4(b, 2, 3, -1, -1, &err), 0);
  float *buf = crema_blob_buffer_alloc(10, &err);
  ck_assert_ptr_nonnull(buf);
  const size_t held = crema_blob_memory_held();
  ck_assert_int_eq(crema_blob_borrow_diff(b, buf, 10, &err), 0);
  ck_assert_ptr_eq(b->diff, buf);
  ck_assert_uint_eq(held - crema_blob_memory_held(), 6 * sizeof(float));
  ck_assert_int_eq(crema_blob_reshape4(b, 2, 5, -1, -1, &err), 0); /* 10: fits */
  ck_assert_ptr_eq(b->diff, buf);
  buf[0] = 7.0f;
  ck_assert_int_eq(crema_blob_reshape4(b, 1, 6, -1, -1, &err), 0); /* 6 <= capacity 10: fits */
  ck_assert_ptr_eq(b->diff, buf);
  ck_assert_int_eq(crema_blob_reshape4(b, 3, 4, -1, -1, &err), 0); /* 12: its own again */
  ck_assert(!b->diff_borrowed);
  ck_assert_ptr_ne(b->diff, buf);
  for (size_t i = 0; i < b->count; i++) ck_assert(b->diff[i] == 0.0f);
  ck_assert_uint_eq(crema_blob_memory_held() - held, (2 * 12 - 2 * 6) * sizeof(float));
  ck_assert(buf[0] == 7.0f);                                     /* untouched */
  ck_assert_int_ne(crema_blob_borrow_diff(b, buf, 10, &err), 0); /* 12 does not fit in 10 */
  crema_blob_free(b);
  crema_blob_buffer_free(buf, 10);
  ck_assert_uint_eq(crema_blob_memory_held(), held - 2 * 6 * sizeof(float) - 10 * sizeof(float));
}
END_TEST

/* The same for data, and a blob borrowing its data through another's (a Split top). */
START_TEST(blob_outgrows_borrowed_data) {
  crema_error err;
  crema_blob *b = crema_blob_new(), *top = crema_blob_new();
  ck_assert_int_eq(crema_blob_reshape4(b, 2, 3, -1, -1, &err), 0);
  float *buf = crema_blob_buffer_alloc(8, &err);
  ck_assert_ptr_nonnull(buf);
  const size_t held = crema_blob_memory_held();
  ck_assert_int_eq(crema_blob_borrow_data(b, buf, 8, &err), 0);
  ck_assert_ptr_eq(b->data, buf);
  ck_assert_uint_eq(held - crema_blob_memory_held(), 6 * sizeof(float));
  ck_assert_int_eq(crema_blob_share_data(top, b, &err), 0);
  ck_assert_ptr_eq(top->data, buf);
  ck_assert_int_eq(crema_blob_reshape4(top, 2, 4, -1, -1, &err), 0); /* 8: the buffer's size */
  ck_assert_int_ne(crema_blob_reshape4(top, 3, 3, -1, -1, &err), 0); /* 9: more than b may hold */
  ck_assert_int_ne(crema_blob_borrow_data(top, buf, 8, &err), 0);    /* top reads b's */
  buf[0] = 5.0f;
  ck_assert_int_eq(crema_blob_reshape4(b, 3, 3, -1, -1, &err), 0); /* 9: b's own again */
  ck_assert(!b->data_borrowed);
  ck_assert(b->data[0] == 0.0f && buf[0] == 5.0f);
  ck_assert_int_eq(crema_blob_share_data(top, b, &err), 0);
  ck_assert_ptr_eq(top->data, b->data);
  crema_blob_free(top);
  crema_blob_free(b);
  crema_blob_buffer_free(buf, 8);
  ck_assert_uint_eq(crema_blob_memory_held(), held - 2 * 6 * sizeof(float) - 8 * sizeof(float));
}
END_TEST

/* The solver's train net shares its diffs, its test net its activations. */
START_TEST(solver_shares) {
  char text[8192];
  snprintf(text, sizeof text,
           "net_param { %s } base_lr: 0.01 lr_policy: 'fixed' momentum: 0.9 max_iter: 3 test_iter: 1 "
           "test_interval: 3 random_seed: 3 snapshot_after_train: false metrics_csv: false",
           NET);
  Crema__SolverParameter *sp = test_solver_param(text);
  crema_solver_options opt;
  memset(&opt, 0, sizeof opt);
  crema_log_set_min_level(CREMA_LOG_WARNING); /* not every test output's value */
  crema_solver *s = NULL;
  crema_error err;
  ck_assert_msg(crema_solver_create(sp, &opt, &s, &err) == 0, "%s", err.msg);
  const crema_net *net = crema_solver_net(s);
  ck_assert(borrowed(net, "c1") && !crema_net_blob_by_name(net, "c1")->data_borrowed);
  ck_assert(crema_net_blob_by_name(crema_solver_test_net(s, 0), "c1")->data_borrowed);
  Crema__NetParameter *m = test_net_param(NET);
  crema_net *plain = build(m, false);
  ck_assert_uint_lt(crema_net_diff_bytes(net), crema_net_diff_bytes(plain));
  crema_net_free(plain);
  crema_message_free(m);
  ck_assert_msg(crema_solver_solve(s, &err) == 0, "%s", err.msg);
  crema_solver_free(s);
  crema_message_free(sp);
}
END_TEST

/* ---------------------------------------------------------------- forward only */

/* iters forward passes of the TEST net built from m; every output's values of every pass, in
 * a row (*n floats). With share, the activations share buffers, poisoned before each pass. */
static float *infer(Crema__NetParameter *m, bool share, int iters, size_t *n) {
  crema_net *net = build_phase(m, CREMA__PHASE__TEST);
  crema_error err;
  if (share) ck_assert_msg(crema_net_share_activations(net, NULL, &err) == 0, "%s", err.msg);
  size_t per = 0;
  for (int o = 0; o < crema_net_num_outputs(net); o++) per += crema_net_output(net, o)->count;
  float *out = malloc((per * (size_t)iters + 1) * sizeof *out), *at = out;
  ck_assert_ptr_nonnull(out);
  for (int it = 0; it < iters; it++) {
    if (share) poison(&net->activations);
    ck_assert_msg(crema_net_forward(net, NULL, &err) == 0, "%s", err.msg);
    for (int o = 0; o < crema_net_num_outputs(net); o++) {
      const crema_blob *b = crema_net_output(net, o);
      memcpy(at, b->data, b->count * sizeof(float));
      at += b->count;
    }
  }
  *n = per * (size_t)iters;
  crema_net_free(net);
  return out;
}

static void same_outputs(Crema__NetParameter *m, int iters, const char *name) {
  size_t na, nb;
  float *a = infer(m, false, iters, &na), *b = infer(m, true, iters, &nb);
  ck_assert_uint_eq(na, nb);
  const size_t i = first_difference(a, b, na);
  ck_assert_msg(i == na, "%s: output value %zu is %.9g shared, %.9g not", name, i,
                i < na ? (double)b[i] : 0.0, i < na ? (double)a[i] : 0.0);
  free(a);
  free(b);
}

START_TEST(small_net_same_outputs) {
  Crema__NetParameter *m = test_net_param(NET);
  same_outputs(m, 3, "small net");
  crema_message_free(m);
}
END_TEST

/* A ResNet-style block, BatchNorm and Scale in place: in a forward-only net the in-place Scale
 * skips the copy of its input that only its backward reads, and the outputs stay the same. */
START_TEST(scale_in_place_same_outputs) {
  Crema__NetParameter *m = test_net_param(
      "name: 'bn' "
      "layer { name: 'data' type: 'DummyData' top: 'x' dummy_data_param { "
      "  shape { dim: 2 dim: 3 dim: 6 dim: 6 } data_filler { type: 'gaussian' std: 1 } } } "
      "layer { name: 'conv' type: 'Convolution' bottom: 'x' top: 'c' "
      "  convolution_param { num_output: 8 kernel_size: 3 weight_filler { type: 'xavier' } } } "
      "layer { name: 'bn' type: 'BatchNorm' bottom: 'c' top: 'c' } "
      "layer { name: 'scale' type: 'Scale' bottom: 'c' top: 'c' scale_param { bias_term: true "
      "  filler { type: 'uniform' min: 0.5 max: 1.5 } bias_filler { type: 'uniform' min: -1 max: 1 } } } "
      "layer { name: 'relu' type: 'ReLU' bottom: 'c' top: 'c' } "
      "layer { name: 'ip' type: 'InnerProduct' bottom: 'c' top: 'ip' "
      "  inner_product_param { num_output: 3 weight_filler { type: 'xavier' } } } ");
  same_outputs(m, 2, "BatchNorm + Scale net");
  crema_message_free(m);
}
END_TEST

/* Bytes the blobs hold after one in-place layer of `param` is set up and run forward on 120
 * floats, forward_only or not. */
static size_t in_place_bytes(const char *param, bool forward_only) {
  Crema__LayerParameter *p = test_layer_param(param);
  crema_layer *l;
  crema_error err;
  ck_assert_msg(crema_layer_create(p, CREMA__PHASE__TEST, 1, &l, &err) == 0, "%s", err.msg);
  l->forward_only = forward_only;
  crema_blob *x = crema_blob_new();
  ck_assert_msg(crema_blob_reshape4(x, 2, 3, 4, 5, &err) == 0, "%s", err.msg);
  for (size_t i = 0; i < x->count; i++) x->data[i] = (float)i / 60.0f - 0.9f;
  const size_t before = crema_blob_memory_held();
  ck_assert_msg(crema_layer_setup(l, 1, &x, 1, &x, &err) == 0, "%s: %s", param, err.msg);
  ck_assert_msg(crema_layer_forward(l, &x, &x, &err) == 0, "%s: %s", param, err.msg);
  const size_t held = crema_blob_memory_held() - before;
  crema_layer_free(l);
  crema_blob_free(x);
  crema_message_free(p);
  return held;
}

/* Layers run in place whose backward reads their input keep a copy of it (120 floats here),
 * except in a net that never runs backward. */
START_TEST(in_place_input_copy_only_for_backward) {
  const char *params[] = {
      "name: 'a' type: 'AbsVal'",
      "name: 'b' type: 'BNLL'",
      "name: 'c' type: 'Clip' clip_param { min: -0.5 max: 0.5 }",
      "name: 'e' type: 'ELU' elu_param { alpha: -0.5 }",
      "name: 'l' type: 'Log' log_param { shift: 1 }",
      "name: 'w' type: 'Power' power_param { power: 2 }",
      "name: 'p' type: 'PReLU'",
      "name: 'r' type: 'ReLU' relu_param { negative_slope: -0.1 }",
  };
  for (size_t i = 0; i < sizeof params / sizeof *params; i++) {
    const size_t kept = in_place_bytes(params[i], false), skipped = in_place_bytes(params[i], true);
    ck_assert_msg(kept == skipped + 120 * sizeof(float),
                  "%s: %zu bytes held for backward, %zu for forward only", params[i], kept, skipped);
  }
  /* Not in place, or where the output tells the gradient enough (ReLU's usual slopes): no copy. */
  ck_assert_uint_eq(in_place_bytes("name: 'r' type: 'ReLU' relu_param { negative_slope: 0.1 }", false),
                    in_place_bytes("name: 'r' type: 'ReLU' relu_param { negative_slope: 0.1 }", true));
}
END_TEST

/* Which blobs share their data, and what that saves. */
START_TEST(small_net_activation_plan) {
  Crema__NetParameter *m = test_net_param(NET);
  crema_net *net = build_phase(m, CREMA__PHASE__TEST);
  const size_t own = crema_net_data_bytes(net), held = crema_blob_memory_held();
  crema_error err;
  ck_assert_msg(crema_net_share_activations(net, NULL, &err) == 0, "%s", err.msg);
  ck_assert_msg(crema_net_share_activations(net, NULL, &err) == 0, "%s", err.msg); /* again: nothing */
  const size_t shared = crema_net_data_bytes(net);
  ck_assert_msg(shared < own, "activations hold %zu bytes shared, %zu not", shared, own);
  ck_assert_uint_eq(held - crema_blob_memory_held(), own - shared);
  const char *yes[] = {"x", "y", "c0", "c1", "a", "b", "e", "cat", "p", "p1", "f", "fk", "ip"};
  for (size_t i = 0; i < sizeof yes / sizeof *yes; i++) {
    const crema_blob *b = crema_net_blob_by_name(net, yes[i]);
    ck_assert_msg(b->data_borrowed, "%s", yes[i]);
  }
  /* The data layer's constant top (k is filled once; x and y are drawn on every pass), and
   * the outputs (the loss, Accuracy's and Slice's unused half). */
  const char *no[] = {"k", "loss", "accuracy", "p2"};
  for (size_t i = 0; i < sizeof no / sizeof *no; i++)
    ck_assert_msg(!crema_net_blob_by_name(net, no[i])->data_borrowed, "%s", no[i]);
  /* Split tops read their bottom's buffer from the start. */
  ck_assert_ptr_eq(crema_net_blob_by_name(net, "c1_relu1_0_split_2")->data,
                   crema_net_blob_by_name(net, "c1")->data);
  crema_net_free(net);
  crema_message_free(m);
}
END_TEST

/* A train net and a test net taking turns, as a solver runs them, with the test net's
 * activations in the train net's gradient arena (lent), or every buffer its own: the same
 * gradients and the same outputs, bit for bit, though the arena is poisoned before each pass. */
static void turns(Crema__NetParameter *m, bool lend, float *grads, float *outs) {
  crema_net *tr = build_phase(m, CREMA__PHASE__TRAIN), *te = build_phase(m, CREMA__PHASE__TEST);
  crema_error err;
  if (lend) {
    ck_assert_msg(crema_net_share_diffs(tr, &err) == 0, "%s", err.msg);
    ck_assert_msg(crema_net_share_activations(te, tr, &err) == 0, "%s", err.msg);
    ck_assert(te->activations.lent && te->activations.buf == tr->diffs.buf);
    ck_assert_uint_ge(tr->diffs.count, 1);
  }
  for (int it = 0; it < 3; it++) {
    crema_net_clear_param_diffs(tr);
    ck_assert_msg(crema_net_forward(tr, NULL, &err) == 0, "%s", err.msg);
    if (lend) poison(&tr->diffs);
    crema_net_backward(tr);
    for (int p = 0; p < crema_net_num_params(tr); p++) {
      const crema_blob *b = crema_net_param_at(tr, p)->blob;
      memcpy(grads, b->diff, b->count * sizeof(float));
      grads += b->count;
    }
    if (lend) poison(&tr->diffs);
    ck_assert_msg(crema_net_forward(te, NULL, &err) == 0, "%s", err.msg);
    for (int o = 0; o < crema_net_num_outputs(te); o++) {
      const crema_blob *b = crema_net_output(te, o);
      memcpy(outs, b->data, b->count * sizeof(float));
      outs += b->count;
    }
  }
  crema_net_free(te); /* the borrower first */
  crema_net_free(tr);
}

START_TEST(test_net_in_train_gradients) {
  Crema__NetParameter *m = test_net_param(NET);
  enum { ROOM = 1 << 16 };
  float *g[2], *o[2];
  for (int k = 0; k < 2; k++) {
    g[k] = calloc(ROOM, sizeof(float));
    o[k] = calloc(ROOM, sizeof(float));
    ck_assert(g[k] && o[k]);
    turns(m, k == 1, g[k], o[k]);
  }
  size_t i = first_difference(g[0], g[1], ROOM);
  ck_assert_msg(i == ROOM, "gradient %zu: %.9g lent, %.9g not", i, (double)g[1][i], (double)g[0][i]);
  i = first_difference(o[0], o[1], ROOM);
  ck_assert_msg(i == ROOM, "test output %zu: %.9g lent, %.9g not", i, (double)o[1][i], (double)o[0][i]);
  for (int k = 0; k < 2; k++) {
    free(g[k]);
    free(o[k]);
  }
  crema_message_free(m);
}
END_TEST

/* ---------------------------------------------------------------- zoo nets */

static const char *const ZOO[] = {
    "bvlc_googlenet/train_val.prototxt",
    "cifar10/cifar10_full_sigmoid_train_test_bn.prototxt",
    "mnist/mnist_autoencoder.prototxt",
};

/* Data layers -> DummyData of 2 random images (and random labels below 10). */
static void swap_data_layers(Crema__NetParameter *m) {
  for (size_t i = 0; i < m->n_layer; i++) {
    Crema__LayerParameter *lp = m->layer[i];
    if (strcmp(lp->type, "Data")) continue;
    const char *src = lp->data_param && lp->data_param->source ? lp->data_param->source : "";
    int c = 3, side = 32;
    if (strstr(src, "mnist")) c = 1, side = 28;
    if (lp->transform_param && lp->transform_param->crop_size) side = (int)lp->transform_param->crop_size;
    char text[512];
    size_t used = (size_t)snprintf(text, sizeof text,
                                   "shape { dim: 2 dim: %d dim: %d dim: %d } "
                                   "data_filler { type: 'uniform' min: 0 max: 1 } ",
                                   c, side, side);
    if (lp->n_top > 1)
      snprintf(text + used, sizeof text - used,
               "shape { dim: 2 } data_filler { type: 'uniform' min: 0 max: 9.99 }");
    lp->dummy_data_param =
        (Crema__DummyDataParameter *)test_message(&crema__dummy_data_parameter__descriptor, text);
    crema_message_free(lp->data_param);
    lp->data_param = NULL;
    crema_message_free(lp->transform_param);
    lp->transform_param = NULL;
    free(lp->type);
    lp->type = strdup("DummyData");
    ck_assert_ptr_nonnull(lp->type);
  }
}

/* Zoo net i, its data layers swapped for DummyData. */
static Crema__NetParameter *zoo_net(int i) {
  char path[512];
  snprintf(path, sizeof path, "%s/zoo/%s", CREMA_TEST_DATA, ZOO[i]);
  Crema__NetParameter *m = NULL;
  crema_error err;
  ck_assert_msg(crema_read_net_param(path, &m, &err) == 0, "%s", err.msg);
  swap_data_layers(m);
  return m;
}

START_TEST(zoo_same_bits) {
  Crema__NetParameter *m = zoo_net(_i);
  same_bits(m, 2, ZOO[_i]);
  crema_message_free(m);
}
END_TEST

START_TEST(zoo_same_outputs) {
  Crema__NetParameter *m = zoo_net(_i);
  same_outputs(m, 2, ZOO[_i]);
  crema_message_free(m);
}
END_TEST

int main(void) {
  Suite *s = suite_create("net_memory");
  TCase *tc = tcase_create("share_diffs");
  tcase_set_timeout(tc, 600);
  tcase_add_test(tc, small_net_same_bits);
  tcase_add_test(tc, small_net_plan);
  tcase_add_test(tc, edge_net_same_bits);
  tcase_add_test(tc, chain_needs_two_buffers);
  tcase_add_test(tc, blob_outgrows_borrowed_diff);
  tcase_add_test(tc, blob_outgrows_borrowed_data);
  tcase_add_test(tc, small_net_same_outputs);
  tcase_add_test(tc, scale_in_place_same_outputs);
  tcase_add_test(tc, in_place_input_copy_only_for_backward);
  tcase_add_test(tc, small_net_activation_plan);
  tcase_add_test(tc, test_net_in_train_gradients);
  tcase_add_test(tc, solver_shares);
  suite_add_tcase(s, tc);
  TCase *zoo = tcase_create("zoo");
  tcase_set_timeout(zoo, 600);
  tcase_add_loop_test(zoo, zoo_same_bits, 0, (int)(sizeof ZOO / sizeof *ZOO));
  tcase_add_loop_test(zoo, zoo_same_outputs, 0, (int)(sizeof ZOO / sizeof *ZOO));
  suite_add_tcase(s, zoo);
  return test_run_suite(s);
}
