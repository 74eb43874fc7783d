/* cmd_report.c -- `crema report RUN_DIR`: one self-contained HTML page about a training run:
 * curves, confusion matrix, per-class accuracy, most confidently wrong images, diagnostics,
 * the net's costs and the run's settings. */
#include <stdio.h>
#include <string.h>

#include "common/flags.h"
#include "common/tool.h"
#include "crema/commands.h"
#include "report/report.h"

static const char USAGE[] =
    "usage: crema report [RUN_DIR] [--out report.html] [--metrics M.csv] [--log train.log]\n"
    "                    [--model train_val.prototxt --weights W.caffemodel] [--labels labels.txt] ...\n\n"
    "Writes one HTML page (no network, no external files) with the training curves, the\n"
    "confusion matrix and per-class accuracy on the validation data (the TEST phase of the\n"
    "train_val net with the weights), the validation images the model gets most confidently\n"
    "wrong, the diagnostics (crema train --diagnostics), the net's parameters, multiply-adds\n"
    "and activation memory, and the run's settings. Files not given are looked up in RUN_DIR\n"
    "(the layout of a `crema finetune` run: train_val.prototxt, solver.prototxt,\n"
    "deploy.prototxt, labels.txt, *_metrics.csv, best.caffemodel, train.log, snapshots).\n\n";

int crema_cmd_report(int argc, char **argv) {
  crema_tool_init(argc + 1, argv - 1);
  const char *out = "report.html", *metrics = NULL, *log = NULL, *model = NULL, *weights = NULL,
             *labels = NULL, *solver = NULL, *deploy = NULL, *diagnostics = NULL, *title = NULL;
  long iterations = 0;
  crema_flag flags[] = {
      {"out", CREMA_FLAG_STRING, &out, "the HTML file to write", 0},
      {"metrics", CREMA_FLAG_STRING, &metrics, "metrics CSV (default: RUN_DIR/*_metrics.csv)", 0},
      {"log", CREMA_FLAG_STRING, &log,
       "training log, used when there is no metrics CSV (default: RUN_DIR/train.log)", 0},
      {"model", CREMA_FLAG_STRING, &model, "train_val net to score (default: RUN_DIR/train_val.prototxt)", 0},
      {"weights", CREMA_FLAG_STRING, &weights,
       "caffemodel to score (default: RUN_DIR/best.caffemodel, *_best.caffemodel, else the latest snapshot)",
       0},
      {"labels", CREMA_FLAG_STRING, &labels, "class names, one per line (default: RUN_DIR/labels.txt)", 0},
      {"solver", CREMA_FLAG_STRING, &solver, "solver shown under settings (default: RUN_DIR/solver.prototxt)",
       0},
      {"deploy", CREMA_FLAG_STRING, &deploy,
       "net for the cost table (default: RUN_DIR/deploy.prototxt, else model)", 0},
      {"diagnostics", CREMA_FLAG_STRING, &diagnostics, "diagnostics CSV (default: RUN_DIR/*_diagnostics.csv)",
       0},
      {"iterations", CREMA_FLAG_INT, &iterations, "test batches to score (0 = one pass over the val data)",
       0},
      {"title", CREMA_FLAG_STRING, &title, "page title (default: \"crema training report\")", 0},
  };
  const int n_flags = (int)(sizeof flags / sizeof flags[0]);
  char *pos[1];
  int n_pos = 0;
  int rc = crema_flags_command(argc, argv, USAGE, flags, n_flags, pos, 0, 1, &n_pos);
  if (rc >= 0) return rc;
  if (iterations < 0 || iterations > 100000) {
    fprintf(stderr, "error: --iterations=%ld is out of range (0..100000)\n", iterations);
    return 2;
  }
  if (!n_pos && !metrics && !log && !(model && weights))
    return crema_flags_missing("RUN_DIR (or --metrics, --log, or --model with --weights)", USAGE, flags,
                               n_flags);
  crema_report_inputs in = {.run_dir = n_pos ? pos[0] : NULL,
                            .metrics = metrics,
                            .log = log,
                            .diagnostics = diagnostics,
                            .model = model,
                            .weights = weights,
                            .solver = solver,
                            .deploy = deploy,
                            .labels = labels,
                            .iterations = (int)iterations,
                            .title = title};
  crema_report_summary sum;
  crema_error err = {{0}};
  if (crema_report_write(&in, out, &sum, &err)) {
    fprintf(stderr, "error: %s\n", err.msg);
    return 1;
  }
  printf("%s: %d sections", out, sum.sections);
  if (sum.samples) printf(", %lld validation samples scored (accuracy %.4f)", sum.samples, sum.accuracy);
  if (sum.thumbnails) printf(", %d thumbnails", sum.thumbnails);
  printf("\n");
  if (sum.notes[0]) printf("not shown: %s\n", sum.notes);
  return 0;
}
