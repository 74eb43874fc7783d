/* bench_elementwise -- forward/backward throughput of the activation, per-element,
 * normalisation, Eltwise, Split and Pooling layers on a ResNet-sized activation
 * (32, 64, 56, 56) = 6.4 M floats, with 1 thread and with every OpenMP thread, out of place
 * and in place, against memcpy of the same blob measured in the same run.
 *
 *   bench_elementwise            every layer, ~0.3 s of timing per measurement
 *   bench_elementwise -quick     one repetition each (a smoke run)
 *   bench_elementwise WORD ...   only the layers whose label contains one of the words
 *
 * ms = best wall time of the repetitions. GB/s counts the bytes a pass must move at least
 * (read every input once, write every output once: for ReLU forward x and y, for backward x,
 * dy and dx; masks, saved copies and second bottoms or tops included), and "/copy" divides
 * that by memcpy's GB/s (read + write of the blob), timed at the same thread count just
 * before each pass of the layer (so both meet the same load on a shared machine; "copy GB/s"
 * is that memcpy's figure): 1.0 means the layer runs at the speed memory allows. Split's
 * forward here is the layer's own copy; in a net its tops borrow the bottom's data and the
 * forward is skipped.
 * cpu = mean CPU milliseconds of the process per pass (all threads: with 1 thread, a steadier
 * figure than wall time on a busy machine, where the process waits for a core). */
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
  int n_bottom, n_top;
  /* Floats moved per element of one bottom (fb) and of one top (ft), forward and backward;
   * fwd_inplace_extra: bottom-sized arrays more in place (a saved copy of the input). */
  float fwd_b, fwd_t, bwd_b, bwd_t, fwd_inplace_extra;
  bool inplace; /* also time with top 0 = bottom 0 */
} bench_case;

static const bench_case CASES[] = {
    {"ReLU", "type: 'ReLU'", 1, 1, 1, 1, 2, 1, 0, true},
    {"ReLU leaky 0.1", "type: 'ReLU' relu_param { negative_slope: 0.1 }", 1, 1, 1, 1, 2, 1, 0, true},
    {"PReLU", "type: 'PReLU'", 1, 1, 1, 1, 2, 1, 1, true},
    {"ELU", "type: 'ELU'", 1, 1, 1, 1, 2, 1, 1, true},
    {"Sigmoid", "type: 'Sigmoid'", 1, 1, 1, 1, 1, 2, 0, true},
    {"Swish", "type: 'Swish'", 1, 1, 1, 2, 1, 3, 0, true},
    {"TanH", "type: 'TanH'", 1, 1, 1, 1, 1, 2, 0, true},
    {"AbsVal", "type: 'AbsVal'", 1, 1, 1, 1, 2, 1, 0, true},
    {"Power 2", "type: 'Power' power_param { power: 2 scale: 0.5 shift: 1 }", 1, 1, 1, 1, 2, 1, 0, true},
    /* Dropout's mask: one byte an element; RReLU's slopes: a float */
    {"Dropout", "type: 'Dropout'", 1, 1, 1, 1.25f, 1, 1.25f, 0, true},
    {"RReLU", "type: 'RReLU'", 1, 1, 1, 2, 2, 2, 0, true},
    {"BatchNorm batch stats", "type: 'BatchNorm' batch_norm_param { use_global_stats: false }", 1, 1, 1, 2, 1,
     2, 0, true},
    {"BatchNorm global stats", "type: 'BatchNorm' batch_norm_param { use_global_stats: true }", 1, 1, 1, 1, 1,
     1, 0, true},
    {"Scale per channel + bias", "type: 'Scale' scale_param { bias_term: true }", 1, 1, 1, 1, 2, 1, 1, true},
    {"Bias per channel", "type: 'Bias'", 1, 1, 1, 1, 1, 1, 0, true},
    {"Eltwise SUM", "type: 'Eltwise'", 2, 1, 2, 1, 2, 1, 0, false},
    {"Eltwise MAX", "type: 'Eltwise' eltwise_param { operation: MAX }", 2, 1, 2, 2, 2, 2, 0, false},
    /* a net skips Split's copy; backward reads every top's diff */
    {"Split 2 tops", "type: 'Split'", 1, 2, 1, 2, 1, 2, 0, false},
    {"Split 4 tops", "type: 'Split'", 1, 4, 1, 4, 1, 4, 0, false}, /* GoogLeNet's inception inputs */
    {"Pooling MAX 3x3 s2", "type: 'Pooling' pooling_param { pool: MAX kernel_size: 3 stride: 2 }", 1, 1, 1, 2,
     1, 2, 0, false},
    {"Pooling MAX 2x2 s2", "type: 'Pooling' pooling_param { pool: MAX kernel_size: 2 stride: 2 }", 1, 1, 1, 2,
     1, 2, 0, false},
    {"Pooling AVE 3x3 s2 p1", "type: 'Pooling' pooling_param { pool: AVE kernel_size: 3 stride: 2 pad: 1 }",
     1, 1, 1, 1, 1, 1, 0, false},
    {"Pooling MAX 3x3 s1 p1", "type: 'Pooling' pooling_param { pool: MAX kernel_size: 3 stride: 1 pad: 1 }",
     1, 1, 1, 2, 1, 2, 0, false},
};

/* One memcpy of n floats, split in one contiguous range per thread; seconds. */
static double copy_once(const float *src, float *dst, size_t n) {
  double t0 = bench_now();
#pragma omp parallel
  {
    const size_t nt = (size_t)omp_get_num_threads(), t = (size_t)omp_get_thread_num();
    const size_t lo = n * t / nt, hi = n * (t + 1) / nt;
    memcpy(dst + lo, src + lo, (hi - lo) * sizeof(float));
  }
  return bench_now() - t0;
}

/* Best wall time (seconds) of reps forward or backward passes, each right after a memcpy of
 * the blob whose best time goes to *copy: the two share the machine's state of the moment,
 * so their ratio holds on a busy machine better than either time does. */
static double cpu_now(void) {
  struct timespec ts;
  clock_gettime(CLOCK_PROCESS_CPUTIME_ID, &ts);
  return (double)ts.tv_sec + 1e-9 * (double)ts.tv_nsec;
}

static double time_pass(crema_layer *l, crema_blob **x, crema_blob **y, bool backward, int reps,
                        const crema_blob *csrc, crema_blob *cdst, double *copy, double *cpu) {
  crema_error err;
  bool prop[2] = {true, true};
  double best = 1e30, cbest = 1e30, cpu_sum = 0.0;
  for (int r = 0; r < reps; r++) {
    double c = copy_once(csrc->data, cdst->data, csrc->count);
    if (c < cbest) cbest = c;
    double t0 = bench_now(), c0 = cpu_now();
    if (backward)
      crema_layer_backward(l, y, prop, x);
    else if (crema_layer_forward(l, x, y, &err))
      bench_die("forward", &err);
    double t = bench_now() - t0;
    cpu_sum += cpu_now() - c0;
    if (t < best) best = t;
  }
  if (copy) *copy = cbest;
  if (cpu) *cpu = cpu_sum / reps;
  return best;
}

static void cpu_name(char *buf, size_t size) {
  snprintf(buf, size, "unknown CPU");
  FILE *f = fopen("/proc/cpuinfo", "r");
  if (!f) return;
  char line[512];
  while (fgets(line, sizeof line, f))
    if (!strncmp(line, "model name", 10)) {
      const char *c = strchr(line, ':');
      if (c) {
        c++;
        while (*c == ' ') c++;
        snprintf(buf, size, "%s", c);
        buf[strcspn(buf, "\n")] = '\0';
      }
      break;
    }
  fclose(f);
}

static bool selected(const char *label, int argc, char **argv) {
  bool any = false;
  for (int i = 1; i < argc; i++) {
    if (argv[i][0] == '-') continue;
    any = true;
    if (strstr(label, argv[i])) return true;
  }
  return !any;
}

int main(int argc, char **argv) {
  crema_tool_init(argc, argv);
  bool quick = false;
  for (int i = 1; i < argc; i++) quick = quick || !strcmp(argv[i], "-quick");
  const int N = 32, C = 64, H = 56, W = 56;
  const int max_threads = omp_get_max_threads();
  crema_error err;
  enum { MAX_TOPS = 4 }; /* bottoms: 2 at most */
  crema_blob *x[2], *y[MAX_TOPS], *x0 = crema_blob_new(), *cbuf = crema_blob_new();
  for (int i = 0; i < MAX_TOPS; i++) {
    if (i < 2) x[i] = crema_blob_new();
    y[i] = crema_blob_new();
    if ((i < 2 && (!x[i] || crema_blob_reshape4(x[i], N, C, H, W, &err))) || !y[i] ||
        crema_blob_reshape4(y[i], N, C, H, W, &err))
      bench_die("allocating blobs", &err);
  }
  if (!x0 || !cbuf || crema_blob_reshape4(x0, N, C, H, W, &err) ||
      crema_blob_reshape4(cbuf, N, C, H, W, &err))
    bench_die("allocating blobs", &err);
  crema_set(cbuf->count, 0.0f, cbuf->data); /* touched: no page faults in the first copy */
  for (size_t i = 0; i < x0->count; i++) x0->data[i] = (float)((i * 2654435761u) % 2001) / 1000.0f - 1.0f;
  const size_t n = x0->count;
  char cpu[256];
  cpu_name(cpu, sizeof cpu);

  printf(
      "crema bench_elementwise: bottom (%d, %d, %d, %d) = %.1f M floats (%.1f MB); CPU %s; BLAS kernel %s; "
      "OpenMP threads %d\n",
      N, C, H, W, (double)n / 1e6, (double)n * 4 / 1e6, cpu, crema_blas_corename(), max_threads);
  int thread_counts[2] = {1, max_threads};
  const int n_counts = max_threads > 1 ? 2 : 1;
  printf("| %-26s | %-7s | %3s | %8s | %7s | %5s | %8s | %7s | %5s | %6s | %7s | %7s |\n", "layer", "mode",
         "thr", "fwd ms", "fwd GB/s", "/copy", "bwd ms", "bwd GB/s", "/copy", "copy GB/s", "fwd cpu",
         "bwd cpu");
  printf("| --- | --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: |\n");
  for (size_t k = 0; k < sizeof CASES / sizeof *CASES; k++) {
    const bench_case *bc = &CASES[k];
    if (!selected(bc->label, argc, argv)) continue;
    ProtobufCMessage *msg = NULL;
    char text[320];
    snprintf(text, sizeof text, "name: 'l' bottom: 'x' %s top: 'y' %s %s %s %s",
             bc->n_bottom > 1 ? "bottom: 'x1'" : "", bc->n_top > 1 ? "top: 'y1'" : "",
             bc->n_top > 2 ? "top: 'y2'" : "", bc->n_top > 3 ? "top: 'y3'" : "", bc->text);
    if (crema_text_parse(&crema__layer_parameter__descriptor, text, strlen(text), "<bench>", &msg, &err))
      bench_die(bc->label, &err);
    for (int inplace = 0; inplace < (bc->inplace ? 2 : 1); inplace++) {
      for (int t = 0; t < n_counts; t++) {
        omp_set_num_threads(thread_counts[t]);
        crema_layer *l;
        crema_blob *top[MAX_TOPS] = {inplace ? x[0] : y[0], y[1], y[2], y[3]};
        for (int b = 0; b < bc->n_bottom; b++) {
          if (crema_blob_reshape4(x[b], N, C, H, W, &err)) bench_die("reshape", &err);
          crema_copy(n, x0->data, x[b]->data);
          if (b) crema_scal(n, -0.5f, x[b]->data);
        }
        if (crema_layer_create((Crema__LayerParameter *)msg, CREMA__PHASE__TRAIN, 1, &l, &err) ||
            crema_layer_setup(l, bc->n_bottom, x, bc->n_top, top, &err))
          bench_die(bc->label, &err);
        for (int o = 0; o < bc->n_top; o++) crema_set(top[o]->count, 0.5f, top[o]->diff);
        int reps = 1;
        if (!quick) { /* aim for ~0.3 s per measurement */
          double t1 = time_pass(l, x, top, false, 1, x0, cbuf, NULL, NULL);
          reps = (int)(0.3 / (t1 > 1e-5 ? t1 : 1e-5));
          reps = reps < 8 ? 8 : reps > 200 ? 200 : reps;
        }
        double fc, bcopy, fcpu, bcpu;
        double f = time_pass(l, x, top, false, reps, x0, cbuf, &fc, &fcpu);
        double b = time_pass(l, x, top, true, reps, x0, cbuf, &bcopy, &bcpu);
        const double copy_bytes = 2.0 * (double)n * 4;
        const double nb = (double)x[0]->count, nt = (double)top[0]->count;
        const double fwd_bytes =
            4 * ((bc->fwd_b + (inplace ? bc->fwd_inplace_extra : 0)) * nb + bc->fwd_t * nt);
        const double bwd_bytes = 4 * (bc->bwd_b * nb + bc->bwd_t * nt);
        const double fg = fwd_bytes / f / 1e9, bg = bwd_bytes / b / 1e9;
        const double fcg = copy_bytes / fc / 1e9, bcg = copy_bytes / bcopy / 1e9;
        char fs[16] = "-", fr[16] = "-";
        if (fwd_bytes > 0) {
          snprintf(fs, sizeof fs, "%.1f", fg);
          snprintf(fr, sizeof fr, "%.2f", fg / fcg);
        }
        printf("| %-26s | %-7s | %3d | %8.2f | %7s | %5s | %8.2f | %7.1f | %5.2f | %6.1f | %7.2f | %7.2f |\n",
               bc->label, inplace ? "inplace" : "out", thread_counts[t], f * 1e3, fs, fr, b * 1e3, bg,
               bg / bcg, (fcg + bcg) / 2, fcpu * 1e3, bcpu * 1e3);
        crema_layer_free(l);
      }
    }
    crema_message_free(msg);
  }
  omp_set_num_threads(max_threads);
  for (int i = 0; i < MAX_TOPS; i++) {
    if (i < 2) crema_blob_free(x[i]);
    crema_blob_free(y[i]);
  }
  crema_blob_free(x0);
  crema_blob_free(cbuf);
  return 0;
}
