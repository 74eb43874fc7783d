/* cmd_time.c -- `crema time`: Caffe's `caffe time`, per-layer forward/backward timings.
 *
 *   crema time --model NET.prototxt [--iterations N] [--phase TRAIN|TEST] [--weights W]
 *
 * The summary lines are Caffe's, word for word ("Average Forward pass: X ms." ...), so scripts
 * that parse `caffe time` output keep working. Input tops get seeded N(0, 1) values. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <time.h>

#include "base/log.h"
#include "base/rng.h"
#include "common/flags.h"
#include "common/tool.h"
#include "crema/commands.h"
#include "engine/engine.h"
#include "layers/layer.h"
#include "net/net.h"
#include "proto/io.h"

/* Layers with more bottoms or tops than this get no GFLOP/s figure. */
#define CREMA_TIME_MAX_BLOBS 64

static double now_ms(void) {
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return (double)ts.tv_sec * 1e3 + (double)ts.tv_nsec * 1e-6;
}

static void usage(FILE *out, const crema_flag *flags, int n_flags) {
  fprintf(out, "usage: crema time --model NET.prototxt [--iterations N] [--phase TRAIN|TEST] [--weights W]\n"
               "Times forward and backward, per layer and in total (like caffe time).\n");
  crema_flags_print(out, flags, n_flags);
}

int crema_cmd_time(int argc, char **argv) {
  crema_tool_init(argc + 1, argv - 1); /* argv is main's argv + 1 */
  const char *model = NULL, *weights = NULL, *phase_name = "TRAIN";
  long iterations = 50, seed = 1;
  crema_flag flags[] = {
      {"model", CREMA_FLAG_STRING, &model, "the net prototxt (required)", 0},
      {"iterations", CREMA_FLAG_INT, &iterations, "forward-backward passes to average over", 0},
      {"phase", CREMA_FLAG_STRING, &phase_name, "TRAIN or TEST", 0},
      {"weights", CREMA_FLAG_STRING, &weights, "caffemodel to copy weights from (default: fillers)", 0},
      {"seed", CREMA_FLAG_INT, &seed, "seed for fillers and input values", 0},
  };
  const int n_flags = (int)(sizeof flags / sizeof flags[0]);
  char *pos[4];
  int n_pos = 0;
  crema_error err;
  int rc = crema_flags_parse(argc, argv, 1, flags, n_flags, pos, 4, &n_pos, &err);
  if (rc == 1) {
    usage(stdout, flags, n_flags);
    return 0;
  }
  if (rc || n_pos || !model || iterations < 1) {
    if (rc)
      fprintf(stderr, "error: %s\n", err.msg);
    else if (n_pos)
      fprintf(stderr, "error: unexpected argument \"%s\"\n", pos[0]);
    else if (!model)
      fprintf(stderr, "error: --model is required\n");
    else
      fprintf(stderr, "error: --iterations must be at least 1, got %ld\n", iterations);
    usage(stderr, flags, n_flags);
    return 2;
  }
  crema_net_options opt = {0};
  if (!strcasecmp(phase_name, "TRAIN"))
    opt.phase = CREMA__PHASE__TRAIN;
  else if (!strcasecmp(phase_name, "TEST"))
    opt.phase = CREMA__PHASE__TEST;
  else {
    fprintf(stderr, "error: --phase must be TRAIN or TEST, got \"%s\"\n", phase_name);
    return 2;
  }
  opt.seed = (uint64_t)seed;
  opt.source = model;
  crema_tool_log_blas();

  crema_net *net = NULL;
  double *fwd = NULL, *bwd = NULL;
  int status = 1;
  Crema__NetParameter *msg = NULL;
  if (crema_read_net_param(model, &msg, &err)) goto fail;
  if (crema_net_build(msg, &opt, &net, &err)) {
    /* The hint about data sources only helps when the net reads any; otherwise it would
     * point away from the real error (a bad parameter, an unknown bottom...). */
    bool reads_data = false;
    for (size_t i = 0; i < msg->n_layer; i++)
      reads_data = reads_data || (msg->layer[i]->type && (!strcmp(msg->layer[i]->type, "Data") ||
                                                          !strcmp(msg->layer[i]->type, "ImageData")));
    crema_message_free(msg);
    if (reads_data)
      crema_error_prefix(&err,
                         "cannot build the net to time (data layers need their sources: a missing DB can be "
                         "swapped for an Input layer of the same shape)");
    else
      crema_error_prefix(&err, "cannot build the net to time");
    goto fail;
  }
  bool has_loss = false;
  for (int i = 0; i < crema_net_num_blobs(net); i++)
    has_loss = has_loss || crema_net_blob_loss_weight(net, i) != 0.0f;
  if (!has_loss) {
    /* A deploy net has no loss, so nothing would need backward: time it as if it were
     * trained (every layer's backward), which is what a finetuning user wants to know. */
    CREMA_INFO("The net has no loss: timing backward with force_backward");
    crema_net_free(net);
    net = NULL;
    msg->has_force_backward = 1;
    msg->force_backward = 1;
    if (crema_net_build(msg, &opt, &net, &err)) {
      crema_message_free(msg);
      goto fail;
    }
  }
  crema_message_free(msg);
  if (weights && crema_net_copy_trained_layers_from_file(net, weights, &err)) goto fail;
  /* as `crema train` runs it: ReLUs inside the convolutions before them */
  if (crema_net_fuse(net, false, &err)) goto fail;
  for (int i = 0; i < crema_net_num_inputs(net); i++) {
    crema_blob *b = crema_net_input(net, i);
    crema_rng r;
    crema_rng_seed(&r, (uint64_t)seed, 0x1a9u + (uint64_t)i);
    for (size_t j = 0; j < b->count; j++) b->data[j] = crema_rng_gaussian(&r, 0.0f, 1.0f);
  }
  const int n = crema_net_num_layers(net);
  fwd = calloc((size_t)n + 1, sizeof *fwd);
  bwd = calloc((size_t)n + 1, sizeof *bwd);
  if (!fwd || !bwd) {
    crema_fail(&err, "out of memory");
    goto fail;
  }
  /* One untimed pass: first-touch allocations and buffer growth happen here. */
  CREMA_INFO("Performing Forward");
  float loss = 0.0f;
  if (crema_net_forward(net, &loss, &err)) goto fail;
  CREMA_INFO("Initial loss: %g", (double)loss);
  CREMA_INFO("Performing Backward");
  crema_net_backward(net);
  CREMA_INFO("*** Benchmark begins ***");
  CREMA_INFO("Testing for %ld iterations.", iterations);
  double forward_total = 0.0, backward_total = 0.0, t_start = now_ms();
  for (long it = 0; it < iterations; it++) {
    double t_iter = now_ms(), t0 = t_iter;
    for (int i = 0; i < n; i++) {
      double t = now_ms();
      if (crema_net_forward_layer(net, i, &err)) goto fail;
      fwd[i] += now_ms() - t;
    }
    double t1 = now_ms();
    forward_total += t1 - t0;
    crema_net_seed_loss_diffs(net);
    for (int i = n - 1; i >= 0; i--) {
      double t = now_ms();
      crema_net_backward_layer(net, i);
      bwd[i] += now_ms() - t;
    }
    double t2 = now_ms();
    backward_total += t2 - t1;
    CREMA_INFO("Iteration: %ld forward-backward time: %g ms.", it + 1, t2 - t_iter);
  }
  double total = now_ms() - t_start;
  CREMA_INFO("Average time per layer: ");
  for (int i = 0; i < n; i++) {
    CREMA_INFO("%10s\tforward: %g ms.", crema_net_layer_name(net, i), fwd[i] / (double)iterations);
    CREMA_INFO("%10s\tbackward: %g ms.", crema_net_layer_name(net, i), bwd[i] / (double)iterations);
  }
  /* crema's own lines (Caffe's above are kept word for word for log parsers): which engine
   * ran each layer and, for matrix-product layers, the GFLOP/s it reached (backward counts
   * the gradients it computes: the data gradient when its bottom needs one, the weight
   * gradient when its weights learn, each the forward's arithmetic). */
  CREMA_INFO("Engines and throughput per layer (%s):", crema_engine_describe());
  for (int i = 0; i < n; i++) {
    crema_layer *layer = crema_net_layer(net, i);
    const int *bid, *tid;
    const int nb = crema_net_layer_bottoms(net, i, &bid), nt = crema_net_layer_tops(net, i, &tid);
    crema_blob *bl[CREMA_TIME_MAX_BLOBS], *tl[CREMA_TIME_MAX_BLOBS];
    for (int k = 0; k < nb && k < CREMA_TIME_MAX_BLOBS; k++) bl[k] = crema_net_blob(net, bid[k]);
    for (int k = 0; k < nt && k < CREMA_TIME_MAX_BLOBS; k++) tl[k] = crema_net_blob(net, tid[k]);
    const double flops = nb <= CREMA_TIME_MAX_BLOBS && nt <= CREMA_TIME_MAX_BLOBS
                             ? crema_layer_forward_flops(layer, bl, tl)
                             : 0.0;
    const double f = fwd[i] / (double)iterations, b = bwd[i] / (double)iterations;
    const double bflops = flops * ((crema_net_bottom_needs_backward(net, i, 0) ? 1.0 : 0.0) +
                                   (layer->n_blobs > 0 && layer->param_propagate_down[0] ? 1.0 : 0.0));
    char fused[160];
    const int into = crema_net_fused_into(net, i), bwd_into = crema_net_backward_fused_into(net, i);
    if (into >= 0)
      snprintf(fused, sizeof fused, "fused into %s", crema_net_layer_name(net, into));
    else if (bwd_into >= 0) /* a Split whose sum the layer before it makes */
      snprintf(fused, sizeof fused, "backward in %s", crema_net_layer_name(net, bwd_into));
    const char *engine = into >= 0 || bwd_into >= 0 ? fused : crema_layer_engine_name(layer);
    if (flops > 0.0 && f > 0.0)
      CREMA_INFO("%10s	%-12s engine: %-22s forward: %.3f ms, %.1f GFLOP/s; backward: %.3f ms, %.1f GFLOP/s",
                 crema_net_layer_name(net, i), layer->ops->type, engine, f, flops / f * 1e-6, b,
                 b > 0.0 ? bflops / b * 1e-6 : 0.0);
    else
      CREMA_INFO("%10s	%-12s engine: %-22s forward: %.3f ms; backward: %.3f ms",
                 crema_net_layer_name(net, i), layer->ops->type, engine, f, b);
  }
  CREMA_INFO("Average Forward pass: %g ms.", forward_total / (double)iterations);
  CREMA_INFO("Average Backward pass: %g ms.", backward_total / (double)iterations);
  CREMA_INFO("Average Forward-Backward: %g ms.", total / (double)iterations);
  CREMA_INFO("Total Time: %g ms.", total);
  CREMA_INFO("*** Benchmark ends ***");
  crema_tool_log_blas();
  status = 0;
fail:
  if (status) fprintf(stderr, "error: %s\n", err.msg);
  free(fwd);
  free(bwd);
  crema_net_free(net);
  return status;
}
