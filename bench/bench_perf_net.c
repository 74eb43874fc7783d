/* bench_perf_net -- one net, one engine, one thread count: set-up time, forward and
 * forward + full backward times and the process's peak memory, as one RESULT line that
 * bench/perf.py collects into its tables (peak memory is per process, hence one process per
 * configuration).
 *
 *   bench_perf_net --model NET.prototxt [--batch 10] [--iterations 5] [--threads 2]
 *                  [--engine default|onednn|caffe|inference|both|all] [--save-weights OUT.caffemodel]
 *
 * Engines: default (every fast engine: Winograd for 3x3 stride-1 convolutions, oneDNN for the
 * others; ReLUs fused into the convolutions, as `crema train` runs a net), onednn (oneDNN
 * alone: crema's previous default engine) and caffe (the reference im2col+OpenBLAS path).
 * both = default and caffe, all = the three plus `inference`: the default engines on the net
 * as a deployment runs it (TEST phase, forward only, activations shared, BatchNorm and Scale
 * folded into the convolutions: crema_net_fuse), forward time only. Several engines build the
 * net once each in one process and alternate their iterations (the fairest time ratio on a
 * shared machine); peak memory is then not reported, since it belongs to the process.
 *
 * The net gets seeded random weights (crema_net_fill_random_weights) and N(0,1) inputs and is
 * timed as a training step runs it (force_backward: every layer's backward); the fastest of
 * the iterations is reported (on a shared machine the minimum is what the code costs).
 * --save-weights writes those weights (so OpenCV can run the same net) and exits without timing:
 * the message it builds would otherwise count in the peak memory. */
#include <omp.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>

#include "bench_common.h"
#include "common/tool.h"
#include "engine/engine.h"
#include "net/net.h"
#include "proto/io.h"
#include "tensor/math.h"

static const char *arg(int argc, char **argv, const char *name, const char *dflt) {
  for (int i = 1; i + 1 < argc; i++)
    if (!strcmp(argv[i], name)) return argv[i + 1];
  return dflt;
}

typedef struct timed_net {
  crema_net *net;
  double setup_ms, best_f, best_fb;
  const char *engine;
  bool inference; /* forward only */
} timed_net;

/* Builds the net (batch from --batch) on the engine chosen now, fills weights and inputs,
 * runs one untimed pass. */
static void build(Crema__NetParameter *m, const char *model, const char *engine, timed_net *t) {
  crema_error err;
  const bool inference = !strcmp(engine, "inference");
  crema_engine_set_default(strcmp(engine, "caffe") != 0);
  crema_engine_set_winograd(strcmp(engine, "onednn") != 0);
  crema_net_options o = {
      .phase = inference ? CREMA__PHASE__TEST : CREMA__PHASE__TRAIN, .seed = 1, .source = model};
  m->force_backward = !inference;
  double t0 = bench_now();
  if (crema_net_build(m, &o, &t->net, &err)) bench_die("build", &err);
  if (inference && crema_net_share_activations(t->net, NULL, &err)) bench_die("share", &err);
  if (strcmp(engine, "default") == 0 || inference) {
    if (crema_net_fuse(t->net, inference, &err)) bench_die("fuse", &err);
  }
  t->setup_ms = 1e3 * (bench_now() - t0);
  t->inference = inference;
  t->best_f = t->best_fb = 1e30;
  t->engine = engine;
  crema_net_fill_random_weights(t->net, 1);
  for (int i = 0; i < crema_net_num_inputs(t->net); i++) {
    crema_blob *b = crema_net_input(t->net, i);
    crema_rng r;
    crema_rng_seed(&r, 7, (uint64_t)i);
    for (size_t j = 0; j < b->count; j++) b->data[j] = crema_rng_gaussian(&r, 0.0f, 1.0f);
  }
  /* warm-up: first-touch of every buffer */
  if (crema_net_forward(t->net, NULL, &err)) bench_die("forward", &err);
  if (!inference) crema_net_backward(t->net);
}

static void step(timed_net *t) {
  crema_error err;
  double a = bench_now();
  if (crema_net_forward(t->net, NULL, &err)) bench_die("forward", &err);
  double b = bench_now();
  if (b - a < t->best_f) t->best_f = b - a;
  if (t->inference) return;
  crema_net_clear_param_diffs_lazily(t->net); /* as the solver's training step does */
  crema_net_backward(t->net);
  double c = bench_now();
  if (c - a < t->best_fb) t->best_fb = c - a;
}

static void report(const timed_net *t, int threads, bool with_peak) {
  /* the engine of the first convolution, as a sample of what ran */
  const char *conv_engine = "-";
  for (int i = 0; i < crema_net_num_layers(t->net); i++)
    if (!strcmp(crema_net_layer(t->net, i)->ops->type, "Convolution")) {
      conv_engine = crema_layer_engine_name(crema_net_layer(t->net, i));
      break;
    }
  struct rusage ru;
  getrusage(RUSAGE_SELF, &ru);
  printf("RESULT engine=%s setup_ms=%.1f fwd_ms=%.2f", t->engine, t->setup_ms, 1e3 * t->best_f);
  if (!t->inference) printf(" fwdbwd_ms=%.2f", 1e3 * t->best_fb);
  if (with_peak) printf(" peak_mb=%.1f", (double)ru.ru_maxrss / 1024.0);
  printf(" threads=%d blas=%s conv_engine=\"%s\"\n", threads, crema_blas_corename(), conv_engine);
}

int main(int argc, char **argv) {
  crema_tool_init(argc, argv);
  const char *model = arg(argc, argv, "--model", NULL), *engine = arg(argc, argv, "--engine", "default");
  const char *save = arg(argc, argv, "--save-weights", NULL);
  const int batch = atoi(arg(argc, argv, "--batch", "10")),
            iters = atoi(arg(argc, argv, "--iterations", "5"));
  const int threads = atoi(arg(argc, argv, "--threads", "2"));
  if (!model || batch < 1 || iters < 1 || threads < 1) {
    fprintf(stderr, "usage: bench_perf_net --model NET.prototxt [--batch 10] [--iterations 5] [--threads 2] "
                    "[--engine default|onednn|caffe|inference|both|all] [--save-weights OUT.caffemodel]\n");
    return 2;
  }
  omp_set_num_threads(threads);
  crema_blas_set_threads(threads);
  crema_error err;
  Crema__NetParameter *m = NULL;
  if (crema_read_net_param(model, &m, &err)) bench_die("read", &err);
  m->has_force_backward = 1;
  m->force_backward = 1;
  /* The batch goes into the Input layers' shapes before the build, so every layer is set
   * up once at its real size. */
  for (size_t i = 0; i < m->n_layer; i++) {
    Crema__InputParameter *ip = m->layer[i]->input_param;
    for (size_t s = 0; ip && s < ip->n_shape; s++)
      if (ip->shape[s]->n_dim) ip->shape[s]->dim[0] = batch;
  }
  static const char *const ALL[] = {"default", "onednn", "caffe", "inference"}, *const BOTH[] = {"default",
                                                                                                 "caffe"};
  const char *const *names = &engine;
  int n_eng = 1;
  if (!strcmp(engine, "all")) {
    names = ALL;
    n_eng = 4;
  } else if (!strcmp(engine, "both")) {
    names = BOTH;
    n_eng = 2;
  } else if (strcmp(engine, "default") && strcmp(engine, "onednn") && strcmp(engine, "caffe") &&
             strcmp(engine, "inference")) {
    fprintf(stderr, "bench_perf_net: unknown --engine %s (default, onednn, caffe, inference, both or all)\n",
            engine);
    return 2;
  }
  timed_net nets[4];
  for (int e = 0; e < n_eng; e++) build(m, model, names[e], &nets[e]);
  if (save) {
    if (crema_net_save_weights(nets[0].net, save, &err)) bench_die("save", &err);
    for (int e = 0; e < n_eng; e++) crema_net_free(nets[e].net);
    crema_message_free(m);
    return 0;
  }
  crema_message_free(m);
  /* Several engines: iterations alternate, so all see the same neighbours on a shared machine. */
  for (int it = 0; it < iters; it++)
    for (int e = 0; e < n_eng; e++) step(&nets[e]);
  for (int e = 0; e < n_eng; e++) report(&nets[e], threads, n_eng == 1);
  for (int e = 0; e < n_eng; e++) crema_net_free(nets[e].net);
  return 0;
}
