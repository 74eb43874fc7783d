/* plot.h -- line charts on a canvas: one chart with axes, ticks, labels and a legend
 * (crema_chart_draw), and the training-curve figure built from it (crema_plot_runs): one
 * panel per metric -- train loss, each test output, learning rate -- with every run overlaid
 * in its own colour, against iterations or seconds.
 *
 * Nothing here allocates what the caller must free except the canvas crema_plot_runs
 * initialises (free with crema_canvas_free). Series with no finite point are skipped;
 * a chart with no data says so in its box instead of failing. */
#ifndef CREMA_REPORT_PLOT_H
#define CREMA_REPORT_PLOT_H

#include <stdbool.h>
#include <stdint.h>

#include "report/canvas.h"
#include "report/runs.h"

typedef struct crema_series {
  const double *x, *y; /* n points; NAN breaks the line */
  int n;
  uint32_t color;
  bool dashed;
  const char *label; /* for the legend; NULL = not listed */
} crema_series;

typedef struct crema_chart {
  const char *title, *x_label, *y_label;
  bool log_x, log_y; /* logarithmic axes (non-positive values are skipped) */
  bool legend;       /* draw a legend box in the chart's top right corner */
  double mark_x;     /* a vertical marker line at this x (NAN = none), e.g. a suggested rate */
  const char *mark_label;
  bool fixed_y; /* y range [y_lo, y_hi] instead of the data's (points beyond are clipped) */
  double y_lo, y_hi;
} crema_chart;

/* Draws a chart into the box (x, y, w, h) of the canvas. */
void crema_chart_draw(crema_canvas *c, double x, double y, double w, double h, const crema_chart *chart,
                      const crema_series *series, int n_series);

/* The i-th colour of crema's palette (colour-blind friendly, cycles after 8). */
uint32_t crema_palette(int i);

typedef struct crema_plot_options {
  bool x_seconds;    /* x axis = seconds since the start instead of iterations */
  const char *title; /* NULL = "Training curves" */
  int max_panels;    /* 0 = 12 */
} crema_plot_options;

/* Draws the curves of n runs (n >= 1) into a new canvas of the given kind. Metrics whose
 * name has a "[k]" element index (per-class outputs) are left out to keep the figure
 * readable. Returns -1 when no run has any metric to draw. */
int crema_plot_runs(const crema_run *const *runs, int n, const crema_plot_options *opt,
                    crema_canvas_kind kind, crema_canvas *out, crema_error *err);

#endif
