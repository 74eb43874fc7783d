/* bench_caffe_memory -- what BVLC Caffe (1.0, CPU) would hold at its peak for a net, counted from
 * the net's shapes: an estimate of Caffe's memory where no Caffe is installed, to set beside
 * crema's measured peak (bench/mem_train.sh).
 *
 *   bench_caffe_memory NET.prototxt [--time] [--prefetch N]
 *
 * Without --time: `caffe train` on a train_val net: the TRAIN net runs forward and backward
 * and the solver keeps one history blob per parameter (SGD's momentum), then the TEST net runs
 * forward; both nets are built from NET as written (their data layers set the batches).
 * With --time: `caffe time` on a net (TRAIN phase; forward and backward, no solver).
 *
 * What Caffe allocates, and when (SyncedMemory allocates a blob's data or diff on first
 * use, so only what a pass touches counts):
 *  - every blob's data; a Split's tops share their bottom's data (SplitLayer::Reshape);
 *  - the diff of every blob backward writes (bottom_need_backward), a Split's tops each
 *    their own, loss tops' (seeded with their weights);
 *  - every parameter's data and diff (ClearParamDiffs zeroes them all), and in training one
 *    history blob each (SGDSolver::PreSolve; its update_ and temp_ stay unallocated for L2);
 *  - a column buffer per convolution layer for one image, C_in kh kw x out_h out_w floats,
 *    except 1x1 stride-1 unpadded layers, which skip im2col (is_1x1_);
 *  - MAX pooling's argmax (max_idx_, one int per output; with one top), Eltwise MAX's too;
 *  - LRN's scale_ (one float per input element; across channels);
 *  - Dropout's mask in TRAIN (one uint per element);
 *  - SoftmaxWithLoss's probabilities (one float per input element);
 *  - BatchNorm's x_norm_ and temp_ (two floats per element); Scale's copy of its input when in
 *    place (temp_);
 *  - with --prefetch N, N batches more of each data layer's tops (Data and ImageData prefetch
 *    DataParameter.prefetch batches, 4 by default, for the train and the test net each).
 * The TEST net's parameters are the TRAIN net's from its first test on
 * (ShareTrainedLayersWith); the copies it filled at set-up are freed by then.
 * Not counted: the process itself (binary, libraries, OpenBLAS's buffers), which the
 * calibration below measures; small blobs (bias multipliers, per-channel sums). */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "bench_common.h"
#include "layers/layer.h"
#include "net/net.h"

typedef struct tally {
  double data, diff, params, history, col, masks, norm, prefetch;
} tally;

static double mb(double floats) { return floats * 4.0 / (1024.0 * 1024.0); }

static size_t blob_count(const crema_net *net, int id) { return crema_net_blob(net, id)->count; }

/* The layer-internal buffers of layer i (floats; ints and uints count as floats). */
static void layer_buffers(const crema_net *net, int i, bool train, tally *t) {
  const crema_layer *l = crema_net_layer(net, i);
  const Crema__LayerParameter *p = crema_net_layer_param(net, i);
  const char *type = l->ops->type;
  const int *b, *top;
  const int nb = crema_net_layer_bottoms(net, i, &b), nt = crema_net_layer_tops(net, i, &top);
  if (!strcmp(type, "Convolution") && nb > 0 && nt > 0) {
    const crema_blob *x = crema_net_blob(net, b[0]), *y = crema_net_blob(net, top[0]), *w = l->blobs[0];
    if (x->num_axes != 4 || y->num_axes != 4 || w->num_axes != 4) return;
    const int kh = w->shape[2], kw = w->shape[3];
    /* 1x1 with the output as large as the input: stride 1, no padding */
    const bool one = kh == 1 && kw == 1 && x->shape[2] == y->shape[2] && x->shape[3] == y->shape[3];
    if (!one) t->col += (double)x->shape[1] * kh * kw * y->shape[2] * y->shape[3];
  } else if (!strcmp(type, "Pooling") && nt == 1) {
    const Crema__PoolingParameter *pp = p->pooling_param;
    if (!pp || pp->pool == CREMA__POOLING_PARAMETER__POOL_METHOD__MAX)
      t->masks += (double)blob_count(net, top[0]);
  } else if (!strcmp(type, "Eltwise") && nt == 1) {
    const Crema__EltwiseParameter *ep = p->eltwise_param;
    if (ep && ep->operation == CREMA__ELTWISE_PARAMETER__ELTWISE_OP__MAX)
      t->masks += (double)blob_count(net, top[0]);
  } else if (!strcmp(type, "LRN") && nb > 0) {
    t->norm += (double)blob_count(net, b[0]);
  } else if (!strcmp(type, "Dropout") && nb > 0 && train) {
    t->masks += (double)blob_count(net, b[0]);
  } else if (!strcmp(type, "SoftmaxWithLoss") && nb > 0) {
    t->norm += (double)blob_count(net, b[0]);
  } else if (!strcmp(type, "BatchNorm") && nb > 0) {
    t->norm += 2.0 * (double)blob_count(net, b[0]);
  } else if (!strcmp(type, "Scale") && nb > 0 && nt > 0 && b[0] == top[0]) {
    t->norm += (double)blob_count(net, b[0]);
  }
}

static bool is_data_layer(const char *type) {
  return !strcmp(type, "Data") || !strcmp(type, "ImageData") || !strcmp(type, "DummyData") ||
         !strcmp(type, "HDF5Data") || !strcmp(type, "WindowData");
}

/* One net's share. backward: the TRAIN net of a training run or a time run. */
static void count_net(const crema_net *net, bool train, bool backward, int prefetch, tally *t) {
  const int nl = crema_net_num_layers(net);
  bool *split_top = calloc((size_t)crema_net_num_blobs(net) + 1, 1);
  if (!split_top) exit(1);
  for (int i = 0; i < nl; i++) {
    const crema_layer *l = crema_net_layer(net, i);
    const int *top;
    const int nt = crema_net_layer_tops(net, i, &top);
    if (!strcmp(l->ops->type, "Split"))
      for (int k = 0; k < nt; k++) split_top[top[k]] = true;
    if (is_data_layer(l->ops->type))
      for (int k = 0; k < nt; k++) t->prefetch += (double)prefetch * (double)blob_count(net, top[k]);
    layer_buffers(net, i, train, t);
  }
  for (int id = 0; id < crema_net_num_blobs(net); id++) {
    const double n = (double)blob_count(net, id);
    if (!split_top[id]) t->data += n;
    if (backward && (crema_net_blob_needs_backward(net, id) || crema_net_blob_loss_weight(net, id) != 0.0f))
      t->diff += n;
  }
  free(split_top);
}

static void count_params(const crema_net *net, bool history, tally *t) {
  for (int i = 0; i < crema_net_num_params(net); i++) {
    const double n = (double)crema_net_param_at(net, i)->blob->count;
    t->params += 2.0 * n;
    if (history) t->history += n;
  }
}

static crema_net *build(const char *path, Crema__Phase phase) {
  crema_net_options o = {.phase = phase, .seed = 1, .source = path};
  crema_net *net;
  crema_error err;
  if (crema_net_load(path, &o, &net, &err)) bench_die(path, &err);
  return net;
}

static void row(const char *what, double floats) { printf("| %s | %.0f |\n", what, mb(floats)); }

int main(int argc, char **argv) {
  const char *path = NULL;
  int prefetch = 0;
  bool time_run = false;
  for (int i = 1; i < argc; i++) {
    if (!strcmp(argv[i], "--time"))
      time_run = true;
    else if (!strcmp(argv[i], "--prefetch") && i + 1 < argc)
      prefetch = atoi(argv[++i]);
    else if (argv[i][0] != '-' && !path)
      path = argv[i];
    else {
      fprintf(stderr, "usage: bench_caffe_memory NET.prototxt [--time] [--prefetch N]\n");
      return 2;
    }
  }
  if (!path) {
    fprintf(stderr, "usage: bench_caffe_memory NET.prototxt [--time] [--prefetch N]\n");
    return 2;
  }
  tally t = {0};
  crema_net *train = build(path, CREMA__PHASE__TRAIN);
  count_net(train, true, true, prefetch, &t);
  count_params(train, !time_run, &t);
  tally test = {0};
  if (!time_run) {
    crema_net *tn = build(path, CREMA__PHASE__TEST);
    count_net(tn, false, false, prefetch, &test);
    crema_net_free(tn);
  }
  crema_net_free(train);
  printf("Caffe's allocations for %s (%s), MB (2^20 bytes):\n\n", path,
         time_run ? "caffe time: forward + backward" : "caffe train: TRAIN net, solver, TEST net");
  printf("| what | MB |\n| --- | ---: |\n");
  row("TRAIN net: blob data", t.data);
  row("TRAIN net: blob diffs", t.diff);
  row("parameters: data and diff", t.params);
  if (!time_run) row("solver history (momentum)", t.history);
  row("TRAIN net: column buffers (one per convolution layer)", t.col);
  row("TRAIN net: argmax and dropout masks", t.masks);
  row("TRAIN net: LRN scale, softmax, BatchNorm and Scale buffers", t.norm);
  if (prefetch) row("TRAIN net: prefetched batches", t.prefetch);
  double total = t.data + t.diff + t.params + t.history + t.col + t.masks + t.norm + t.prefetch;
  if (!time_run) {
    row("TEST net: blob data", test.data);
    row("TEST net: column buffers, masks, LRN scale, softmax", test.col + test.masks + test.norm);
    if (prefetch) row("TEST net: prefetched batches", test.prefetch);
    total += test.data + test.col + test.masks + test.norm + test.prefetch;
  }
  printf("| **total, without the process itself** | **%.0f** |\n", mb(total));
  return 0;
}
