/* cmd_test.c -- `crema test`: Caffe's `caffe test` (averaged outputs over N batches), plus
 * a confusion matrix and per-class accuracy for classification nets (nets with an Accuracy
 * layer: its first bottom holds the scores, its second the labels).
 *
 *   crema test --model=NET.prototxt --weights=W.caffemodel[,...] [--iterations=50] */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "base/log.h"
#include "common/flags.h"
#include "common/tool.h"
#include "crema/commands.h"
#include "net/net.h"

/* The Accuracy layer's score and label blobs, when the net has one. */
static int find_classifier(const crema_net *net, const crema_blob **scores, const crema_blob **labels) {
  for (int i = 0; i < crema_net_num_layers(net); i++) {
    const crema_layer *l = crema_net_layer(net, i);
    const int *ids;
    if (strcmp(l->ops->type, "Accuracy") || crema_net_layer_bottoms(net, i, &ids) < 2) continue;
    *scores = crema_net_blob(net, ids[0]);
    *labels = crema_net_blob(net, ids[1]);
    return 0;
  }
  return -1;
}

static void print_confusion(const long *m, int c, FILE *out) {
  fprintf(out, "\nConfusion matrix (rows: true class, columns: predicted class)\n      ");
  for (int j = 0; j < c; j++) fprintf(out, " %6d", j);
  fprintf(out, "\n");
  long total = 0, right = 0;
  for (int i = 0; i < c; i++) {
    fprintf(out, "%6d", i);
    for (int j = 0; j < c; j++) fprintf(out, " %6ld", m[i * c + j]);
    fprintf(out, "\n");
  }
  fprintf(out, "\nclass  samples  accuracy\n");
  for (int i = 0; i < c; i++) {
    long n = 0;
    for (int j = 0; j < c; j++) n += m[i * c + j];
    total += n;
    right += m[i * c + i];
    if (n)
      fprintf(out, "%5d  %7ld  %8.4f\n", i, n, (double)m[i * c + i] / n);
    else
      fprintf(out, "%5d  %7ld  %8s\n", i, n, "-");
  }
  if (total) fprintf(out, "all    %7ld  %8.4f\n", total, (double)right / total);
}

int crema_cmd_test(int argc, char **argv) {
  crema_tool_init(argc + 1, argv - 1); /* argv is main's argv + 1 */
  const char *model = NULL, *weights = NULL, *gpu = NULL;
  long iterations = 50;
  crema_flag flags[] = {
      {"model", CREMA_FLAG_STRING, &model, "the net prototxt (TEST phase) (required)", 0},
      {"weights", CREMA_FLAG_STRING, &weights, "caffemodel(s), comma-separated (required)", 0},
      {"iterations", CREMA_FLAG_INT, &iterations, "batches to run", 0},
      {"gpu", CREMA_FLAG_STRING, &gpu, "accepted for Caffe scripts; crema runs on the CPU", 0},
  };
  const int n_flags = (int)(sizeof flags / sizeof flags[0]);
  static const char usage[] =
      "usage: crema test --model=NET.prototxt --weights=W.caffemodel [--iterations=50]\n\n";
  char *pos[1];
  int n_pos = 0;
  int rc = crema_flags_command(argc, argv, usage, flags, n_flags, pos, 0, 0, &n_pos);
  if (rc >= 0) return rc;
  if (!model || !weights) return crema_flags_missing("--model and --weights", usage, flags, n_flags);
  if (iterations < 1) {
    fprintf(stderr, "error: --iterations must be >= 1\n");
    return 2;
  }
  if (gpu) CREMA_WARN("--gpu=%s: crema runs on the CPU only", gpu);
  crema_tool_log_blas();
  crema_error err = {{0}};
  crema_net_options opt;
  memset(&opt, 0, sizeof opt);
  opt.phase = CREMA__PHASE__TEST;
  opt.source = model;
  crema_net *net = NULL;
  if (crema_net_load(model, &opt, &net, &err)) {
    fprintf(stderr, "error: %s\n", err.msg);
    return 1;
  }
  char *list = strdup(weights);
  int status = list ? 0 : 1;
  for (char *w = list ? strtok(list, ",") : NULL; w && !status; w = strtok(NULL, ","))
    if (crema_net_copy_trained_layers_from_file(net, w, &err)) status = 1;
  free(list);
  /* forward only: BatchNorm, Scale and ReLUs run inside the convolutions */
  if (!status && crema_net_fuse(net, true, &err)) status = 1;
  const crema_blob *scores = NULL, *labels = NULL;
  const bool classify = !status && find_classifier(net, &scores, &labels) == 0;
  long *confusion = NULL;
  int n_classes = 0;
  const int n_out = crema_net_num_outputs(net);
  size_t total = 0;
  for (int o = 0; o < n_out; o++) total += crema_net_output(net, o)->count;
  double *sums = calloc(total ? total : 1, sizeof *sums);
  double loss = 0.0;
  if (!sums) status = 1;
  CREMA_INFO("Running for %ld iterations.", iterations);
  for (long it = 0; it < iterations && !status; it++) {
    float iter_loss = 0.0f;
    if (crema_net_forward(net, &iter_loss, &err)) {
      status = 1;
      break;
    }
    loss += iter_loss;
    size_t off = 0;
    for (int o = 0; o < n_out; o++) {
      const crema_blob *b = crema_net_output(net, o);
      for (size_t k = 0; k < b->count; k++, off++) {
        sums[off] += b->data[k];
        CREMA_INFO("Batch %ld, %s = %g", it, crema_net_output_name(net, o), (double)b->data[k]);
      }
    }
    if (classify) {
      const int n = scores->num_axes > 0 ? scores->shape[0] : 1;
      const int c = n > 0 ? (int)(scores->count / (size_t)n) : 0;
      if (!confusion && c > 0) {
        n_classes = c;
        confusion = calloc((size_t)c * c, sizeof *confusion);
        if (!confusion) status = 1;
      }
      for (int i = 0; confusion && i < n && c == n_classes && (size_t)i < labels->count; i++) {
        const float *row = scores->data + (size_t)i * c;
        int best = 0;
        for (int j = 1; j < c; j++)
          if (row[j] > row[best]) best = j;
        const int y = (int)labels->data[i];
        if (y >= 0 && y < c) confusion[y * c + best]++;
      }
    }
  }
  if (status) {
    fprintf(stderr, "error: %s\n", err.msg);
  } else {
    CREMA_INFO("Loss: %g", loss / iterations);
    size_t off = 0;
    for (int o = 0; o < n_out; o++) {
      const crema_blob *b = crema_net_output(net, o);
      const float w = crema_net_output_loss_weight(net, o);
      for (size_t k = 0; k < b->count; k++, off++) {
        const double mean = sums[off] / iterations;
        if (w != 0.0f)
          CREMA_INFO("%s = %g (* %g = %g loss)", crema_net_output_name(net, o), mean, (double)w, w * mean);
        else
          CREMA_INFO("%s = %g", crema_net_output_name(net, o), mean);
        printf("%s = %g\n", crema_net_output_name(net, o), mean);
      }
    }
    if (confusion) print_confusion(confusion, n_classes, stdout);
  }
  free(confusion);
  free(sums);
  crema_net_free(net);
  return status;
}
