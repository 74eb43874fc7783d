/* runs.h -- training curves read back from disk: crema's <prefix>_metrics.csv and the glog
 * lines of a Caffe (or crema) training log, as Caffe's tools/extra/parse_log.py reads them.
 *
 * A run is a table: one row per iteration that displayed or tested something, columns
 * "iteration", "seconds", "lr", "loss" (the smoothed train loss), then every test output by
 * the name crema's metrics CSV uses ("accuracy", "test_loss" for a test output called loss,
 * "test1/accuracy" for the second test net). Cells not measured at a row are NAN.
 * The table owns everything; free with crema_run_free. */
#ifndef CREMA_REPORT_RUNS_H
#define CREMA_REPORT_RUNS_H

#include "base/error.h"

typedef struct crema_run {
  char *name; /* label for legends: the file name without folder and extension */
  int n_cols;
  char **cols; /* cols[0] "iteration", cols[1] "seconds", cols[2] "lr", cols[3] "loss" */
  int n_rows, cap_rows;
  double *v; /* row-major n_rows x n_cols; NAN = not measured */
} crema_run;

enum { CREMA_RUN_ITER = 0, CREMA_RUN_SECONDS = 1, CREMA_RUN_LR = 2, CREMA_RUN_LOSS = 3 };

/* Reads a metrics CSV (first line starting "iteration,") or else a training log. A file with
 * no iteration in it is an error that names the file and says which formats are read. */
int crema_run_read(const char *path, crema_run **out, crema_error *err);
/* The two readers on text already in memory; `name` labels the run. */
int crema_run_parse_csv(const char *text, const char *name, crema_run **out, crema_error *err);
int crema_run_parse_log(const char *text, const char *name, crema_run **out, crema_error *err);
void crema_run_free(crema_run *r);

/* Column index of `name`, or -1. */
int crema_run_column(const crema_run *r, const char *name);
/* Value at (row, col); NAN when absent. */
double crema_run_at(const crema_run *r, int row, int col);

#endif
