/* bench_elementwise -- forward/backward throughput of the activation, per-element and
 * normalisation layers on a ResNet-sized activation (32, 64, 56, 56) = 6.4 M floats, with 1
 * thread and with every OpenMP thread, out of place and in place.
 *
 *   bench_elementwise            every layer, ~0.3 s of timing per measurement
 *   bench_elementwise -quick     one repetition each (a smoke run)
 *
 * ms = best wall time of the repetitions; cpu = mean CPU milliseconds of the process per pass
 * (all threads: equal to ms on an idle machine with 1 thread, a steadier figure on a busy one);
 * Melem/s = elements of the bottom per second (wall); GB/s counts the bytes each forward must
 * touch at least (read x, write y, plus masks or copies). */
#include <omp.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "bench_common.h"
#include "common/tool.h"
#include "layers/layer.h"
#include "proto/io.h"
#include "proto/textformat.h"
#include "tensor/math.h"

typedef struct bench_case {
  const char *label, *text;
  int fwd_streams, bwd_streams; /* float arrays of the blob size read or written per pass */
} bench_case;

static const bench_case CASES[] = {
    {"ReLU", "type: 'ReLU'", 2, 3},
    {"ReLU leaky 0.1", "type: 'ReLU' relu_param { negative_slope: 0.1 }", 2, 3},
    {"PReLU", "type: 'PReLU'", 2, 3},
    {"RReLU", "type: 'RReLU'", 3, 4},
    {"ELU", "type: 'ELU'", 2, 4},
    {"Sigmoid", "type: 'Sigmoid'", 2, 3},
    {"TanH", "type: 'TanH'", 2, 3},
    {"AbsVal", "type: 'AbsVal'", 2, 3},
    {"Power 2", "type: 'Power' power_param { power: 2 scale: 0.5 shift: 1 }", 2, 3},
    {"Power 0.5", "type: 'Power' power_param { power: 0.5 shift: 10 }", 2, 4},
    {"Dropout", "type: 'Dropout'", 3, 3},
    {"BatchNorm batch stats", "type: 'BatchNorm' batch_norm_param { use_global_stats: false }", 3, 3},
    {"BatchNorm global stats", "type: 'BatchNorm' batch_norm_param { use_global_stats: true }", 2, 2},
    {"Scale per channel + bias", "type: 'Scale' scale_param { bias_term: true }", 2, 3},
    {"Bias per channel", "type: 'Bias'", 2, 2},
};

static double cpu_now(void) {
  struct timespec ts;
  clock_gettime(CLOCK_PROCESS_CPUTIME_ID, &ts);
  return (double)ts.tv_sec + 1e-9 * (double)ts.tv_nsec;
}

/* Best wall time of reps (seconds) of forward or backward; *cpu gets the mean CPU time of the
 * process per pass (all threads), which a busy machine disturbs much less than wall time. */
static double time_pass(crema_layer *l, crema_blob *x, crema_blob *y, bool backward, int reps, double *cpu) {
  crema_error err;
  bool prop = true;
  double best = 1e30, c0 = cpu_now();
  for (int r = 0; r < reps; r++) {
    double t0 = bench_now();
    if (backward)
      crema_layer_backward(l, &y, &prop, &x);
    else if (crema_layer_forward(l, &x, &y, &err))
      bench_die("forward", &err);
    double t = bench_now() - t0;
    if (t < best) best = t;
  }
  if (cpu) *cpu = (cpu_now() - c0) / reps;
  return best;
}

int main(int argc, char **argv) {
  crema_tool_init(argc, argv);
  bool quick = argc > 1 && !strcmp(argv[1], "-quick");
  const int N = 32, C = 64, H = 56, W = 56;
  const int max_threads = omp_get_max_threads();
  crema_error err;
  crema_blob *x = crema_blob_new(), *y = crema_blob_new(), *x0 = crema_blob_new();
  if (!x || !y || !x0 || crema_blob_reshape4(x, N, C, H, W, &err) ||
      crema_blob_reshape4(x0, N, C, H, W, &err))
    bench_die("allocating blobs", &err);
  for (size_t i = 0; i < x0->count; i++) x0->data[i] = (float)((i * 2654435761u) % 2001) / 1000.0f - 1.0f;
  const double elems = (double)x0->count;

  printf(
      "crema bench_elementwise: bottom (%d, %d, %d, %d) = %.1f M floats; BLAS kernel %s; OpenMP threads %d\n",
      N, C, H, W, elems / 1e6, crema_blas_corename(), max_threads);
  printf("%-26s %-7s %3s %9s %9s %9s %9s %9s %9s %8s\n", "layer", "mode", "thr", "fwd ms", "fwd cpu",
         "fwd Me/s", "bwd ms", "bwd cpu", "bwd Me/s", "fwd GB/s");
  for (size_t k = 0; k < sizeof CASES / sizeof *CASES; k++) {
    ProtobufCMessage *msg = NULL;
    char text[256];
    snprintf(text, sizeof text, "name: 'l' bottom: 'x' top: 'y' %s", CASES[k].text);
    if (crema_text_parse(&crema__layer_parameter__descriptor, text, strlen(text), "<bench>", &msg, &err))
      bench_die(CASES[k].label, &err);
    for (int inplace = 0; inplace < 2; inplace++) {
      int thread_counts[2] = {1, max_threads};
      for (int t = 0; t < (max_threads > 1 ? 2 : 1); t++) {
        omp_set_num_threads(thread_counts[t]);
        crema_layer *l;
        crema_blob *top = inplace ? x : y;
        crema_copy(x0->count, x0->data, x->data);
        if (crema_layer_create((Crema__LayerParameter *)msg, CREMA__PHASE__TRAIN, 1, &l, &err) ||
            crema_layer_setup(l, 1, &x, 1, &top, &err))
          bench_die(CASES[k].label, &err);
        crema_set(x->count, 0.5f, top->diff);
        int reps = 1;
        if (!quick) { /* aim for ~0.3 s per measurement */
          double t1 = time_pass(l, x, top, false, 1, NULL);
          reps = (int)(0.3 / (t1 > 1e-6 ? t1 : 1e-6));
          reps = reps < 8 ? 8 : reps > 200 ? 200 : reps;
        }
        double fc, bc;
        double f = time_pass(l, x, top, false, reps, &fc);
        double b = time_pass(l, x, top, true, reps, &bc);
        printf("%-26s %-7s %3d %9.2f %9.2f %9.0f %9.2f %9.2f %9.0f %8.1f\n", CASES[k].label,
               inplace ? "inplace" : "out", thread_counts[t], f * 1e3, fc * 1e3, elems / f / 1e6, b * 1e3,
               bc * 1e3, elems / b / 1e6, CASES[k].fwd_streams * elems * 4 / f / 1e9);
        crema_layer_free(l);
      }
    }
    crema_message_free(msg);
  }
  omp_set_num_threads(max_threads);
  crema_blob_free(x);
  crema_blob_free(y);
  crema_blob_free(x0);
  return 0;
}
