/* bench_struct -- forward/backward time of the softmax, loss, accuracy and structural layers
 * at the sizes they meet in practice (ImageNet-style classifier heads, a segmentation head,
 * feature-map concatenation), with 1 thread and with every OpenMP thread.
 *
 *   bench_struct            every case, ~0.3 s of timing per measurement
 *   bench_struct -quick     one repetition each (a smoke run)
 *
 * Times are the best of the repetitions; Melem/s counts the elements of bottom 0. */
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
  int num_axes, shape[4]; /* of every data bottom */
  bool labels;            /* bottom 1 = integer labels over axis 1 of bottom 0 */
} bench_case;

static const bench_case CASES[] = {
    {"Softmax", "type: 'Softmax'", 1, 1, 2, {256, 1000}, false},
    {"SoftmaxWithLoss", "type: 'SoftmaxWithLoss'", 2, 1, 2, {256, 1000}, true},
    {"SoftmaxWithLoss smooth",
     "type: 'SoftmaxWithLoss' loss_param { label_smoothing: 0.1 }",
     2,
     1,
     2,
     {256, 1000},
     true},
    {"SoftmaxWithLoss spatial", "type: 'SoftmaxWithLoss'", 2, 1, 4, {8, 21, 128, 128}, true},
    {"Accuracy top-5", "type: 'Accuracy' accuracy_param { top_k: 5 }", 2, 1, 2, {256, 1000}, true},
    {"ArgMax top-5", "type: 'ArgMax' argmax_param { top_k: 5 }", 1, 1, 2, {256, 1000}, false},
    {"SigmoidCrossEntropyLoss", "type: 'SigmoidCrossEntropyLoss'", 2, 1, 2, {256, 1000}, false},
    {"EuclideanLoss", "type: 'EuclideanLoss'", 2, 1, 4, {32, 64, 56, 56}, false},
    {"Concat x2 axis 1", "type: 'Concat'", 2, 1, 4, {32, 128, 28, 28}, false},
    {"Slice in 2 axis 1", "type: 'Slice'", 1, 2, 4, {32, 256, 28, 28}, false},
    {"Split in 2", "type: 'Split'", 1, 2, 4, {32, 64, 56, 56}, false},
    {"Eltwise SUM x2", "type: 'Eltwise'", 2, 1, 4, {32, 64, 56, 56}, false},
    {"Eltwise MAX x2", "type: 'Eltwise' eltwise_param { operation: MAX }", 2, 1, 4, {32, 64, 56, 56}, false},
    {"Eltwise PROD x2",
     "type: 'Eltwise' eltwise_param { operation: PROD }",
     2,
     1,
     4,
     {32, 64, 56, 56},
     false},
    {"Flatten", "type: 'Flatten'", 1, 1, 4, {32, 256, 14, 14}, false},
};

/* Best time of reps (seconds) of forward or backward. */
static double time_pass(crema_layer *l, crema_blob **bottom, crema_blob **top, const bool *prop,
                        bool backward, int reps) {
  crema_error err;
  double best = 1e30;
  for (int r = 0; r < reps; r++) {
    double t0 = bench_now();
    if (backward)
      crema_layer_backward(l, top, prop, bottom);
    else if (crema_layer_forward(l, bottom, top, &err))
      bench_die("forward", &err);
    double t = bench_now() - t0;
    if (t < best) best = t;
  }
  return best;
}

int main(int argc, char **argv) {
  crema_tool_init(argc, argv);
  bool quick = argc > 1 && !strcmp(argv[1], "-quick");
  const int max_threads = omp_get_max_threads();
  crema_error err;
  printf("crema bench_struct: BLAS kernel %s; OpenMP threads %d\n", crema_blas_corename(), max_threads);
  printf("%-26s %-20s %3s %10s %10s %10s %10s\n", "layer", "bottom 0", "thr", "fwd ms", "fwd Me/s", "bwd ms",
         "bwd Me/s");
  for (size_t k = 0; k < sizeof CASES / sizeof *CASES; k++) {
    const bench_case *c = &CASES[k];
    ProtobufCMessage *msg = NULL;
    char text[256];
    snprintf(text, sizeof text, "name: 'l' %s", c->text);
    if (crema_text_parse(&crema__layer_parameter__descriptor, text, strlen(text), "<bench>", &msg, &err))
      bench_die(c->label, &err);
    crema_blob *bottom[2] = {NULL, NULL}, *top[2] = {crema_blob_new(), crema_blob_new()};
    for (int i = 0; i < c->n_bottom; i++) {
      bottom[i] = crema_blob_new();
      if (!bottom[i] || crema_blob_reshape(bottom[i], c->num_axes, c->shape, &err))
        bench_die("allocating", &err);
      for (size_t j = 0; j < bottom[i]->count; j++)
        bottom[i]->data[j] = (float)(((j + 7 * i) * 2654435761u) % 2001) / 1000.0f - 1.0f;
    }
    if (c->labels) { /* labels (N, spatial...), values in [0, C) */
      int ls[4], n = 0;
      for (int a = 0; a < c->num_axes; a++)
        if (a != 1) ls[n++] = c->shape[a];
      if (crema_blob_reshape(bottom[1], n, ls, &err)) bench_die("allocating", &err);
      for (size_t j = 0; j < bottom[1]->count; j++) bottom[1]->data[j] = (float)((j * 40503u) % c->shape[1]);
    }
    const double elems = (double)bottom[0]->count;
    char shape[64];
    crema_blob_shape_string(bottom[0], shape, sizeof shape);
    *strchr(shape, '(') = '\0';
    bool prop[2] = {true, !c->labels};
    int thread_counts[2] = {1, max_threads};
    for (int t = 0; t < (max_threads > 1 ? 2 : 1); t++) {
      omp_set_num_threads(thread_counts[t]);
      crema_layer *l;
      if (crema_layer_create((Crema__LayerParameter *)msg, CREMA__PHASE__TRAIN, 1, &l, &err) ||
          crema_layer_setup(l, c->n_bottom, bottom, c->n_top, top, &err))
        bench_die(c->label, &err);
      for (int i = 0; i < c->n_top; i++) crema_set(top[i]->count, 0.5f, top[i]->diff);
      int reps = 1;
      if (!quick) { /* aim for ~0.3 s per measurement */
        double t1 = time_pass(l, bottom, top, prop, false, 1);
        reps = (int)(0.3 / (t1 > 1e-6 ? t1 : 1e-6));
        reps = reps < 3 ? 3 : reps > 200 ? 200 : reps;
      }
      double f = time_pass(l, bottom, top, prop, false, reps);
      if (l->ops->backward) {
        double b = time_pass(l, bottom, top, prop, true, reps);
        printf("%-26s %-20s %3d %10.3f %10.0f %10.3f %10.0f\n", c->label, shape, thread_counts[t], f * 1e3,
               elems / f / 1e6, b * 1e3, elems / b / 1e6);
      } else {
        printf("%-26s %-20s %3d %10.3f %10.0f %10s %10s\n", c->label, shape, thread_counts[t], f * 1e3,
               elems / f / 1e6, "-", "-");
      }
      crema_layer_free(l);
    }
    for (int i = 0; i < 2; i++) {
      crema_blob_free(bottom[i]);
      crema_blob_free(top[i]);
    }
    crema_message_free(msg);
  }
  omp_set_num_threads(max_threads);
  return 0;
}
