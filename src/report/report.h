/* report.h -- the report module: everything crema shows about a training run.
 *
 * What the module promises:
 *  - readers for what training leaves on disk (runs.h: metrics CSV, Caffe/crema logs);
 *  - drawings that need no fonts, browsers or network: SVG text and PNG rasters from one
 *    canvas (canvas.h, plot.h);
 *  - a cost model of a net from its message alone, no net built (summary.h);
 *  - collectors that follow training through the solver's hooks and cost nothing when not
 *    attached (diagnostics.h), and the learning-rate range test (lr_find.h);
 *  - one self-contained HTML page per run (this header): inline SVG, images as data: URIs,
 *    no script or style from elsewhere, written atomically.
 * Who owns what: every function that allocates says so and has a matching *_free; inputs
 * are borrowed and never changed. What it never does: exit, print to stdout, write anything
 * but the output it was asked for, or touch the network. */
#ifndef CREMA_REPORT_REPORT_H
#define CREMA_REPORT_REPORT_H

#include "base/error.h"

typedef struct crema_report_inputs {
  const char *run_dir; /* a `crema finetune` run folder, or any folder; may be NULL */
  /* Each NULL = looked up in run_dir (names in brackets):
   * metrics [*_metrics.csv], log [train.log, *.log], diagnostics [*_diagnostics.csv],
   * model [train_val.prototxt], weights [best.caffemodel, *_best.caffemodel, else the
   * *_iter_N.caffemodel with the largest N], solver [solver.prototxt], deploy
   * [deploy.prototxt], labels [labels.txt], preprocess [preprocess.prototxt]. */
  const char *metrics, *log, *diagnostics, *model, *weights, *solver, *deploy, *labels, *preprocess;
  int iterations; /* test batches for the confusion matrix; 0 = one pass over the val data */
  const char *title;
} crema_report_inputs;

/* What went into the page, for the tool to print. */
typedef struct crema_report_summary {
  int sections;
  long long samples; /* scored for the confusion matrix; 0 when not scored */
  double accuracy;
  int thumbnails;
  char notes[1024]; /* what was skipped and why, "; "-separated */
} crema_report_summary;

/* Writes the HTML page to out_html (atomically). Parts whose inputs are missing or cannot
 * be used (no caffemodel, a net that does not build with those weights, ...) are left out
 * with a note on the page and in summary->notes. It fails when there is nothing at all to
 * show, when the curves file it found is broken, or when out_html cannot be written. */
int crema_report_write(const crema_report_inputs *in, const char *out_html, crema_report_summary *summary,
                       crema_error *err);

#endif
