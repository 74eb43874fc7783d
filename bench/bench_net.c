/* bench_net.c -- whole-net and per-layer forward/backward times of LeNet (batch 64), CaffeNet
 * (batch 10) and GoogLeNet (batch 10), deploy nets with seeded random weights, timed as a
 * training step would run them (force_backward: every layer's backward). Prints which BLAS
 * kernel ran.
 *
 *   bench_net [--iterations N] [--per-layer] [--zoo DIR]
 *
 * Default: a few iterations per net (under ~2 minutes on 2 cores). Per-layer tables only with
 * --per-layer. The zoo defaults to tests/data/zoo of this source tree. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "base/log.h"
#include "base/rng.h"
#include "common/tool.h"
#include "net/net.h"
#include "proto/io.h"
#include "tensor/math.h"

static double now_ms(void) {
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return (double)ts.tv_sec * 1e3 + (double)ts.tv_nsec * 1e-6;
}

typedef struct bench_case {
  const char *name, *file;
  int batch, iterations;
} bench_case;

static int bench(const char *zoo, const bench_case *bc, int iter_override, bool per_layer) {
  char path[1024];
  snprintf(path, sizeof path, "%s/%s", zoo, bc->file);
  crema_error err;
  Crema__NetParameter *m = NULL;
  if (crema_read_net_param(path, &m, &err)) {
    fprintf(stderr, "error: %s\n", err.msg);
    return -1;
  }
  m->has_force_backward = 1;
  m->force_backward = 1;
  crema_net_options o = {.phase = CREMA__PHASE__TRAIN, .seed = 1, .source = path};
  crema_net *net = NULL;
  int rc = crema_net_build(m, &o, &net, &err);
  crema_message_free(m);
  if (rc) {
    fprintf(stderr, "error: %s\n", err.msg);
    return -1;
  }
  crema_net_fill_random_weights(net, 1);
  for (int i = 0; i < crema_net_num_inputs(net); i++) {
    crema_blob *b = crema_net_input(net, i);
    int shape[CREMA_MAX_AXES];
    memcpy(shape, b->shape, sizeof shape);
    shape[0] = bc->batch;
    if (crema_blob_reshape(b, b->num_axes, shape, &err)) {
      fprintf(stderr, "error: %s\n", err.msg);
      crema_net_free(net);
      return -1;
    }
    crema_rng r;
    crema_rng_seed(&r, 7, (uint64_t)i);
    for (size_t j = 0; j < b->count; j++) b->data[j] = crema_rng_gaussian(&r, 0.0f, 1.0f);
  }
  if (crema_net_reshape(net, &err)) {
    fprintf(stderr, "error: %s\n", err.msg);
    crema_net_free(net);
    return -1;
  }
  const int n = crema_net_num_layers(net);
  double *fwd = calloc((size_t)n, sizeof *fwd), *bwd = calloc((size_t)n, sizeof *bwd);
  if (!fwd || !bwd) {
    free(fwd);
    free(bwd);
    crema_net_free(net);
    return -1;
  }
  /* warm-up pass: buffers grow and pages are touched here, not in the timed passes */
  if (crema_net_forward(net, NULL, &err)) {
    fprintf(stderr, "error: %s\n", err.msg);
    crema_net_free(net);
    return -1;
  }
  crema_net_backward(net);
  const int iters = iter_override > 0 ? iter_override : bc->iterations;
  double f_total = 0, b_total = 0;
  for (int it = 0; it < iters; it++) {
    double t0 = now_ms();
    for (int i = 0; i < n; i++) {
      double t = now_ms();
      if (crema_net_forward_layer(net, i, &err)) {
        fprintf(stderr, "error: %s\n", err.msg);
        break;
      }
      fwd[i] += now_ms() - t;
    }
    double t1 = now_ms();
    crema_net_seed_loss_diffs(net);
    for (int i = n - 1; i >= 0; i--) {
      double t = now_ms();
      crema_net_backward_layer(net, i);
      bwd[i] += now_ms() - t;
    }
    double t2 = now_ms();
    f_total += t1 - t0;
    b_total += t2 - t1;
  }
  if (per_layer) {
    printf("\n%s, batch %d, %d iterations: per layer (ms)\n", bc->name, bc->batch, iters);
    printf("| %-32s | %-14s | %10s | %10s |\n", "layer", "type", "forward", "backward");
    printf("|%s|%s|%s|%s|\n", "----------------------------------", "----------------", "------------",
           "------------");
    for (int i = 0; i < n; i++)
      printf("| %-32s | %-14s | %10.3f | %10.3f |\n", crema_net_layer_name(net, i),
             crema_net_layer(net, i)->ops->type, fwd[i] / iters, bwd[i] / iters);
  }
  double per_image = (f_total + b_total) / iters / bc->batch;
  printf("| %-10s | %5d | %5d | %12.2f | %12.2f | %12.2f | %10.2f |\n", bc->name, bc->batch, iters,
         f_total / iters, b_total / iters, (f_total + b_total) / iters, per_image);
  fflush(stdout);
  free(fwd);
  free(bwd);
  crema_net_free(net);
  return 0;
}

int main(int argc, char **argv) {
  crema_tool_init(argc, argv);
  int iters = 0;
  bool per_layer = false;
  char zoo[1024];
  /* default: tests/data/zoo next to this file's folder */
  snprintf(zoo, sizeof zoo, "%s", __FILE__);
  char *slash = strrchr(zoo, '/');
  if (slash) *slash = '\0';
  slash = strrchr(zoo, '/');
  if (slash) *slash = '\0';
  strncat(zoo, "/tests/data/zoo", sizeof zoo - strlen(zoo) - 1);
  for (int i = 1; i < argc; i++) {
    if (!strcmp(argv[i], "--iterations") && i + 1 < argc)
      iters = atoi(argv[++i]);
    else if (!strcmp(argv[i], "--per-layer"))
      per_layer = true;
    else if (!strcmp(argv[i], "--zoo") && i + 1 < argc)
      snprintf(zoo, sizeof zoo, "%s", argv[++i]);
    else {
      fprintf(stderr, "usage: bench_net [--iterations N] [--per-layer] [--zoo DIR]\n");
      return 2;
    }
  }
  crema_log_set_min_level(CREMA_LOG_WARNING);
  const bench_case cases[] = {
      {"LeNet", "mnist/lenet.prototxt", 64, 20},
      {"CaffeNet", "bvlc_reference_caffenet/deploy.prototxt", 10, 3},
      {"GoogLeNet", "bvlc_googlenet/deploy.prototxt", 10, 2},
  };
  printf("bench_net: OpenBLAS kernel %s, %d BLAS threads; times per iteration in ms (forward + backward "
         "with every layer's backward, random weights)\n\n",
         crema_blas_corename(), crema_blas_threads());
  printf("| %-10s | %5s | %5s | %12s | %12s | %12s | %10s |\n", "net", "batch", "iters", "forward",
         "backward", "fwd+bwd", "ms/image");
  printf("|------------|-------|-------|--------------|--------------|--------------|------------|\n");
  int rc = 0;
  for (size_t c = 0; c < sizeof cases / sizeof cases[0]; c++) rc |= bench(zoo, &cases[c], iters, per_layer);
  return rc ? 1 : 0;
}
