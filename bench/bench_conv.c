/* bench_conv -- forward/backward time of real nets' convolutions through crema's
 * Convolution layer on its default engine (oneDNN when crema has it) and on the reference
 * im2col+OpenBLAS path (`engine: CAFFE`), timed alternately in the same run, beside raw
 * OpenBLAS sgemm on the same GEMM shapes.
 *
 *   bench_conv            all cases, best of ~0.25 s of calls per measurement
 *   bench_conv -quick     best of 3 calls each (a smoke run)
 *   bench_conv [-quick] NET   only the cases of NET (LeNet, CaffeNet, GoogLeNet, ResNet-50...)
 *
 * GFLOP/s counts 2*M*N*K multiply-adds of the convolution proper: forward 1x, backward 2x
 * (weights + bottom) or 1x for a first layer (its bottom is data, no gradient needed). */
#include <omp.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <time.h>

#include "bench_common.h"
#include "base/mem.h"
#include "common/tool.h"
#include "engine/engine.h"
#include "layers/layer.h"
#include "proto/io.h"
#include "proto/textformat.h"
#include "tensor/math.h"

typedef struct conv_case {
  const char *net, *name;
  int n, c, h, w, m, k, stride, pad, group;
  bool first; /* bottom is data: no bottom gradient */
} conv_case;

static const conv_case CASES[] = {
    {"LeNet", "conv1", 64, 1, 28, 28, 20, 5, 1, 0, 1, true},
    {"LeNet", "conv2", 64, 20, 12, 12, 50, 5, 1, 0, 1, false},
    {"CaffeNet", "conv1", 10, 3, 227, 227, 96, 11, 4, 0, 1, true},
    {"CaffeNet", "conv1 +dx", 10, 3, 227, 227, 96, 11, 4, 0, 1, false},
    {"CaffeNet", "conv2 g2", 10, 96, 27, 27, 256, 5, 1, 2, 2, false},
    {"CaffeNet", "conv3", 10, 256, 13, 13, 384, 3, 1, 1, 1, false},
    {"CaffeNet", "conv4 g2", 10, 384, 13, 13, 384, 3, 1, 1, 2, false},
    {"CaffeNet", "conv5 g2", 10, 384, 13, 13, 256, 3, 1, 1, 2, false},
    {"GoogLeNet", "conv1/7x7_s2", 10, 3, 224, 224, 64, 7, 2, 3, 1, true},
    /* the same with its data gradient, as force_backward (and `crema time` on a deploy net) asks */
    {"GoogLeNet", "conv1/7x7_s2 +dx", 10, 3, 224, 224, 64, 7, 2, 3, 1, false},
    {"GoogLeNet", "conv2/3x3_reduce 1x1", 10, 64, 56, 56, 64, 1, 1, 0, 1, false},
    {"GoogLeNet", "conv2/3x3", 10, 64, 56, 56, 192, 3, 1, 1, 1, false},
    {"GoogLeNet", "3a/1x1", 10, 192, 28, 28, 64, 1, 1, 0, 1, false},
    {"GoogLeNet", "3a/5x5", 10, 16, 28, 28, 32, 5, 1, 2, 1, false},
    {"GoogLeNet", "3a/5x5_reduce 1x1", 10, 192, 28, 28, 16, 1, 1, 0, 1, false},
    {"GoogLeNet", "3a/pool_proj 1x1", 10, 192, 28, 28, 32, 1, 1, 0, 1, false},
    {"GoogLeNet", "4a/1x1", 10, 480, 14, 14, 192, 1, 1, 0, 1, false},
    {"GoogLeNet", "4a/5x5_reduce 1x1", 10, 480, 14, 14, 16, 1, 1, 0, 1, false},
    {"GoogLeNet", "5b/1x1", 10, 832, 7, 7, 384, 1, 1, 0, 1, false},
    {"ResNet-50", "res2a_branch2b 3x3", 10, 64, 56, 56, 64, 3, 1, 1, 1, false},
    {"ResNet-50", "res2a_branch2c 1x1", 10, 64, 56, 56, 256, 1, 1, 0, 1, false},
    {"ResNet-50", "res3a_branch2b 3x3", 10, 128, 28, 28, 128, 3, 1, 1, 1, false},
    {"ResNet-50", "res4a_branch2b 3x3", 10, 256, 14, 14, 256, 3, 1, 1, 1, false},
    {"ResNet-50", "res5a_branch2b 3x3", 10, 512, 7, 7, 512, 3, 1, 1, 1, false},
    {"MobileNet", "dw 3x3 g32", 10, 32, 112, 112, 32, 3, 1, 1, 32, false},
};

static void fill(float *x, size_t n, unsigned seed) {
  for (size_t i = 0; i < n; i++) {
    seed = seed * 1103515245u + 12345u;
    x[i] = (float)((seed >> 9) & 0xffff) / 65536.0f - 0.5f;
  }
}

typedef struct timed {
  crema_layer *l;
  crema_blob **bottom, **top;
  bool prop;
  float *a, *b, *c;
  int M, N, K, G;
} timed;

static void do_forward(timed *t) {
  crema_error err;
  if (crema_layer_forward(t->l, t->bottom, t->top, &err)) bench_die("forward", &err);
}
static void do_backward(timed *t) {
  const bool prop[1] = {t->prop};
  crema_layer_backward(t->l, t->top, prop, t->bottom);
}
static void do_gemm(timed *t) {
  for (int g = 0; g < t->G; g++) crema_gemm(false, false, t->M, t->N, t->K, 1.0f, t->a, t->b, 0.0f, t->c);
}

/* The fastest of the calls made within `budget` seconds (at least 3), in ms: on a shared
 * machine the minimum is what the code costs, the mean mostly what the neighbours cost. */
static double time_ms(void (*fn)(timed *), timed *t, double budget) {
  fn(t); /* warm-up: first-touch of buffers, thread start */
  double best = 1e30, t0 = bench_now();
  for (int reps = 0; reps < 3 || bench_now() - t0 < budget; reps++) {
    const double a = bench_now();
    fn(t);
    const double el = bench_now() - a;
    if (el < best) best = el;
  }
  return 1e3 * best;
}

/* Two layers timed call by call in turn, so both see the same neighbours on a shared
 * machine; the fastest call of each, in ms. */
static void time_pair(void (*fn)(timed *), timed *a, timed *b, double budget, double *ms_a, double *ms_b) {
  fn(a);
  fn(b);
  double best_a = 1e30, best_b = 1e30, t0 = bench_now();
  for (int reps = 0; reps < 3 || bench_now() - t0 < budget; reps++) {
    double s = bench_now();
    fn(a);
    double e = bench_now() - s;
    if (e < best_a) best_a = e;
    s = bench_now();
    fn(b);
    e = bench_now() - s;
    if (e < best_b) best_b = e;
  }
  *ms_a = 1e3 * best_a;
  *ms_b = 1e3 * best_b;
}

static crema_layer *make_layer(const conv_case *cc, int n, bool reference, crema_blob **bottom,
                               crema_blob **top, Crema__LayerParameter **param) {
  char text[512];
  snprintf(text, sizeof text,
           "name: '%s' type: 'Convolution' convolution_param { num_output: %d kernel_size: %d stride: %d "
           "pad: %d group: %d weight_filler { type: 'gaussian' std: 0.01 } %s }",
           cc->name, cc->m, cc->k, cc->stride, cc->pad, cc->group, reference ? "engine: CAFFE" : "");
  crema_error err;
  ProtobufCMessage *msg;
  if (crema_text_parse(&crema__layer_parameter__descriptor, text, strlen(text), "bench", &msg, &err))
    bench_die("parse", &err);
  *param = (Crema__LayerParameter *)msg;
  crema_layer *l;
  if (crema_layer_create(*param, CREMA__PHASE__TRAIN, 1, &l, &err)) bench_die("create", &err);
  *bottom = crema_blob_new();
  *top = crema_blob_new();
  if (crema_blob_reshape4(*bottom, n, cc->c, cc->h, cc->w, &err)) bench_die("reshape", &err);
  fill((*bottom)->data, (*bottom)->count, 7);
  if (crema_layer_setup(l, 1, bottom, 1, top, &err)) bench_die("setup", &err);
  return l;
}

int main(int argc, char **argv) {
  crema_tool_init(argc, argv);
  const double start = bench_now();
  const bool quick = argc > 1 && strstr(argv[1], "quick");
  const char *only = argc > 1 && argv[argc - 1][0] != '-' ? argv[argc - 1] : NULL;
  const double budget = quick ? 0.0 : 0.25;
  const char *wait = getenv("OMP_WAIT_POLICY"), *spin = getenv("GOMP_SPINCOUNT");
  printf("OpenBLAS kernel: %s, %d BLAS threads, %d OpenMP threads, OMP_WAIT_POLICY=%s, GOMP_SPINCOUNT=%s\n",
         crema_blas_corename(), crema_blas_threads(), omp_get_max_threads(), wait ? wait : "(unset)",
         spin ? spin : "(unset)");
  printf("Default engine: %s\n", crema_engine_describe());
  printf("GEMM shape per group: M = num_output/group, N = batch*Ho*Wo, K = C/group*k*k; ratio = "
         "reference time / engine time\n\n");
  printf("| net | layer | input | engine | fwd ms | fwd GFLOP/s | bwd ms | bwd GFLOP/s | reference fwd ms | "
         "reference bwd ms | fwd ratio | bwd ratio | sgemm GFLOP/s (M,N,K) |\n");
  printf("| --- | --- | --- | --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | --- |\n");
  for (size_t i = 0; i < sizeof CASES / sizeof CASES[0]; i++) {
    const conv_case *cc = &CASES[i];
    if (only && strcmp(only, cc->net)) continue;
    crema_blob *bottom, *top;
    Crema__LayerParameter *p;
    crema_layer *l = make_layer(cc, cc->n, false, &bottom, &top, &p);
    const int ho = top->shape[2], wo = top->shape[3];
    const int M = cc->m / cc->group, N = cc->n * ho * wo, K = cc->c / cc->group * cc->k * cc->k;
    const double flops = 2.0 * M * (double)N * K * cc->group;
    fill(top->diff, top->count, 3);
    timed t = {.l = l, .bottom = &bottom, .top = &top, .prop = !cc->first};
    /* The same layer on the reference path. */
    crema_blob *b1, *t1;
    Crema__LayerParameter *p1;
    crema_layer *l1 = make_layer(cc, cc->n, true, &b1, &t1, &p1);
    fill(t1->diff, t1->count, 3);
    timed t1s = {.l = l1, .bottom = &b1, .top = &t1, .prop = !cc->first};
    double fwd, bwd, ref_fwd, ref_bwd;
    time_pair(do_forward, &t, &t1s, budget, &fwd, &ref_fwd);
    time_pair(do_backward, &t, &t1s, budget, &bwd, &ref_bwd);

    /* the same allocator as the layers' blobs (huge pages from 2 MB on), so that sgemm's
     * figure does not include address-translation misses that the layers no longer pay */
    timed g = {.M = M, .N = N, .K = K, .G = cc->group};
    g.a = crema_aligned_alloc((size_t)M * K * sizeof(float));
    g.b = crema_aligned_alloc((size_t)K * N * sizeof(float));
    g.c = crema_aligned_alloc((size_t)M * N * sizeof(float));
    fill(g.a, (size_t)M * K, 1);
    fill(g.b, (size_t)K * N, 2);
    const double gemm = time_ms(do_gemm, &g, budget);

    char input[64];
    snprintf(input, sizeof input, "%dx%dx%dx%d", cc->n, cc->c, cc->h, cc->w);
    printf(
        "| %s | %s | %s | %s | %.2f | %.1f | %.2f | %.1f | %.2f | %.2f | %.2f | %.2f | %.1f (%d,%d,%d) |\n",
        cc->net, cc->name, input, crema_layer_engine_name(l), fwd, flops / fwd * 1e-6, bwd,
        flops * (cc->first ? 1 : 2) / bwd * 1e-6, ref_fwd, ref_bwd, ref_fwd / fwd, ref_bwd / bwd,
        flops / gemm * 1e-6, M, N, K);
    fflush(stdout);
    crema_aligned_free(g.a);
    crema_aligned_free(g.b);
    crema_aligned_free(g.c);
    crema_layer_free(l);
    crema_layer_free(l1);
    crema_blob_free(bottom);
    crema_blob_free(top);
    crema_blob_free(b1);
    crema_blob_free(t1);
    crema_message_free(p);
    crema_message_free(p1);
  }
  struct rusage ru;
  getrusage(RUSAGE_SELF, &ru);
  const double cpu = (double)ru.ru_utime.tv_sec + (double)ru.ru_stime.tv_sec +
                     1e-6 * (double)(ru.ru_utime.tv_usec + ru.ru_stime.tv_usec);
  /* On a shared machine the table means little when we did not get the cores. */
  printf("\nCPU time / wall time: %.2f (%d cores would give up to %d)\n", cpu / (bench_now() - start),
         omp_get_num_procs(), omp_get_num_procs());
  return 0;
}
