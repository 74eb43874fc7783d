/* metrics.h -- <prefix>_metrics.csv: one row per displayed or tested iteration, with
 * columns iteration,seconds,lr,loss,<test outputs...>; empty cells where a value was not
 * measured at that iteration. Rows are flushed as they are written, so the file can be
 * watched (or plotted) during training. A resumed run appends to the existing file. */
#ifndef CREMA_SOLVER_METRICS_H
#define CREMA_SOLVER_METRICS_H

#include <stdbool.h>
#include <stdio.h>

#include "base/error.h"

typedef struct crema_metrics {
  char *path;
  FILE *f;
  int n_columns; /* test columns */
  char **columns;
} crema_metrics;

/* Remembers the path and the test column names (copied). Nothing is opened yet. */
int crema_metrics_init(crema_metrics *m, const char *path, int n_columns, const char *const *columns,
                       crema_error *err);
/* Opens the file: appends when `append` and it exists with the same header, else writes a
 * new one with the header. *last_seconds (may be NULL) gets the seconds column of the last
 * row kept (0 when none), so a resumed run's clock continues. */
int crema_metrics_open(crema_metrics *m, bool append, double *last_seconds, crema_error *err);
/* One row; values[i] is used when has[i] (i < n_columns). loss/lr when has_loss/has_lr. */
int crema_metrics_row(crema_metrics *m, int iter, double seconds, bool has_lr, float lr, bool has_loss,
                      float loss, const float *values, const bool *has, crema_error *err);
void crema_metrics_close(crema_metrics *m);

#endif
