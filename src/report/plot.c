/* plot.c -- charts with nice ticks, and the training-curve figure. */
#include "report/plot.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

uint32_t crema_palette(int i) {
  /* Okabe-Ito, reordered so the first colours are the most distinct. */
  static const uint32_t P[8] = {0x0072b2, 0xd55e00, 0x009e73, 0xcc79a7,
                                0xe69f00, 0x56b4e9, 0x000000, 0xf0e442};
  return P[(i % 8 + 8) % 8];
}

#define GRID 0xe6e6e6
#define AXIS 0x444444
#define TEXT 0x222222

/* "Nice" tick step for a range: 1, 2 or 5 times a power of ten, about `want` ticks. */
static double nice_step(double range, int want) {
  if (!(range > 0)) return 1;
  double raw = range / want, mag = pow(10, floor(log10(raw))), f = raw / mag;
  return (f < 1.5 ? 1 : f < 3.5 ? 2 : f < 7.5 ? 5 : 10) * mag;
}

/* A tick label with just the digits that tell neighbouring ticks apart: 250, 0.5, 0.00995. */
static void format_tick(double v, double step, char *buf, size_t size) {
  if (fabs(v) < step * 1e-6) v = 0;
  const double a = fabs(v);
  if (step >= 1 && a < 1e6) {
    snprintf(buf, size, "%.0f", v);
    return;
  }
  int digits = a > 0 ? (int)ceil(log10(a / step) + 1e-9) + 1 : 1;
  digits = digits < 1 ? 1 : digits > 6 ? 6 : digits;
  snprintf(buf, size, "%.*g", digits, v);
}

typedef struct axis {
  double lo, hi;
  bool log;
} axis;

static double map(const axis *a, double v, double p0, double p1) {
  double t = a->log ? (log10(v) - a->lo) / (a->hi - a->lo) : (v - a->lo) / (a->hi - a->lo);
  return p0 + t * (p1 - p0);
}

/* Range of the finite (and, for log axes, positive) values over every series. */
static bool data_range(const crema_series *s, int n, bool use_x, bool log, double *lo, double *hi) {
  *lo = INFINITY, *hi = -INFINITY;
  for (int i = 0; i < n; i++)
    for (int k = 0; k < s[i].n; k++) {
      double v = use_x ? s[i].x[k] : s[i].y[k];
      double other = use_x ? s[i].y[k] : s[i].x[k];
      if (!isfinite(v) || !isfinite(other) || (log && v <= 0)) continue;
      if (log) v = log10(v);
      *lo = fmin(*lo, v), *hi = fmax(*hi, v);
    }
  if (!(*lo <= *hi)) return false;
  if (*hi - *lo < 1e-12) {
    double pad = log ? 0.5 : (fabs(*lo) > 0 ? fabs(*lo) * 0.1 : 1);
    *lo -= pad, *hi += pad;
  }
  return true;
}

void crema_chart_draw(crema_canvas *c, double x, double y, double w, double h, const crema_chart *ch,
                      const crema_series *s, int n) {
  const double left = x + 74, right = x + w - 14, top = y + 26, bottom = y + h - 40;
  if (ch->title) crema_canvas_text(c, x + w / 2, y + 16, ch->title, 13, CREMA_ANCHOR_MIDDLE, TEXT, false);
  axis ax = {0, 1, ch->log_x}, ay = {0, 1, ch->log_y};
  bool have =
      data_range(s, n, true, ch->log_x, &ax.lo, &ax.hi) && data_range(s, n, false, ch->log_y, &ay.lo, &ay.hi);
  crema_canvas_rect(c, left, top, right - left, bottom - top, CREMA_NO_COLOR, 0xbbbbbb);
  if (!have) {
    crema_canvas_text(c, (left + right) / 2, (top + bottom) / 2, "no data", 12, CREMA_ANCHOR_MIDDLE, 0x888888,
                      false);
    return;
  }
  if (ch->fixed_y && ch->y_hi > ch->y_lo) {
    ay.lo = ch->log_y ? log10(fmax(ch->y_lo, 1e-30)) : ch->y_lo;
    ay.hi = ch->log_y ? log10(fmax(ch->y_hi, 1e-30)) : ch->y_hi;
  } else if (!ch->log_y) { /* a little headroom above and below */
    double pad = (ay.hi - ay.lo) * 0.05;
    ay.lo -= pad, ay.hi += pad;
  }
  char buf[64];
  /* y ticks */
  if (ay.log) {
    for (double e = ceil(ay.lo); e <= ay.hi + 1e-9; e++) {
      double py = map(&ay, pow(10, e), bottom, top);
      crema_canvas_line(c, left, py, right, py, GRID, 1, false);
      snprintf(buf, sizeof buf, "1e%g", e);
      crema_canvas_text(c, left - 5, py + 4, buf, 11, CREMA_ANCHOR_END, TEXT, false);
    }
  } else {
    double st = nice_step(ay.hi - ay.lo, 5);
    for (double v = ceil(ay.lo / st) * st; v <= ay.hi + st * 1e-9; v += st) {
      double py = map(&ay, v, bottom, top);
      crema_canvas_line(c, left, py, right, py, GRID, 1, false);
      format_tick(v, st, buf, sizeof buf);
      crema_canvas_text(c, left - 5, py + 4, buf, 11, CREMA_ANCHOR_END, TEXT, false);
    }
  }
  /* x ticks */
  if (ax.log) {
    double span = ax.hi - ax.lo, every = span > 8 ? 2 : 1;
    for (double e = ceil(ax.lo); e <= ax.hi + 1e-9; e += every) {
      double px = left + (e - ax.lo) / (ax.hi - ax.lo) * (right - left);
      crema_canvas_line(c, px, top, px, bottom, GRID, 1, false);
      snprintf(buf, sizeof buf, "1e%g", e);
      crema_canvas_text(c, px, bottom + 15, buf, 11, CREMA_ANCHOR_MIDDLE, TEXT, false);
    }
  } else {
    double st = nice_step(ax.hi - ax.lo, 5);
    for (double v = ceil(ax.lo / st) * st; v <= ax.hi + st * 1e-9; v += st) {
      double px = map(&ax, v, left, right);
      crema_canvas_line(c, px, top, px, bottom, GRID, 1, false);
      format_tick(v, st, buf, sizeof buf);
      crema_canvas_text(c, px, bottom + 15, buf, 11, CREMA_ANCHOR_MIDDLE, TEXT, false);
    }
  }
  crema_canvas_line(c, left, bottom, right, bottom, AXIS, 1, false);
  crema_canvas_line(c, left, top, left, bottom, AXIS, 1, false);
  if (ch->x_label)
    crema_canvas_text(c, (left + right) / 2, bottom + 32, ch->x_label, 12, CREMA_ANCHOR_MIDDLE, TEXT, false);
  if (ch->y_label)
    crema_canvas_text(c, x + 14, (top + bottom) / 2, ch->y_label, 12, CREMA_ANCHOR_MIDDLE, TEXT, true);
  /* the series, clipped to the plot box */
  for (int i = 0; i < n; i++) {
    double *xy = malloc(sizeof(double) * 2 * (size_t)(s[i].n ? s[i].n : 1));
    if (!xy) return;
    for (int k = 0; k < s[i].n; k++) {
      double vx = s[i].x[k], vy = s[i].y[k];
      bool ok = isfinite(vx) && isfinite(vy) && (!ax.log || vx > 0) && (!ay.log || vy > 0);
      xy[2 * k] = ok ? map(&ax, vx, left, right) : NAN;
      xy[2 * k + 1] = ok ? fmin(fmax(map(&ay, vy, bottom, top), top), bottom) : NAN;
    }
    crema_canvas_polyline(c, xy, s[i].n, s[i].color, 1.8, s[i].dashed);
    free(xy);
  }
  if (isfinite(ch->mark_x) && (!ax.log || ch->mark_x > 0)) {
    double px = map(&ax, ch->mark_x, left, right);
    if (px >= left && px <= right) {
      crema_canvas_line(c, px, top, px, bottom, 0xc00000, 1.2, true);
      if (ch->mark_label)
        crema_canvas_text(c, px + 4, top + 14, ch->mark_label, 11, CREMA_ANCHOR_START, 0xc00000, false);
    }
  }
  if (ch->legend) {
    int rows = 0;
    double lw = 0;
    for (int i = 0; i < n; i++)
      if (s[i].label) rows++, lw = fmax(lw, crema_canvas_text_width(s[i].label, 11));
    if (!rows) return;
    double bx = right - lw - 40, by = top + 6;
    crema_canvas_rect(c, bx, by, lw + 34, rows * 16 + 6, 0xffffff, 0xcccccc);
    int r = 0;
    for (int i = 0; i < n; i++) {
      if (!s[i].label) continue;
      double ly = by + 12 + r++ * 16;
      crema_canvas_line(c, bx + 5, ly - 4, bx + 23, ly - 4, s[i].color, 2, s[i].dashed);
      crema_canvas_text(c, bx + 28, ly, s[i].label, 11, CREMA_ANCHOR_START, TEXT, false);
    }
  }
}

/* Metric names to draw, in order: loss, test outputs (as they appear), lr last. */
static int collect_metrics(const crema_run *const *runs, int n, int max, const char **names) {
  int k = 0;
  names[k++] = "loss";
  for (int r = 0; r < n; r++)
    for (int i = CREMA_RUN_LOSS + 1; i < runs[r]->n_cols && k < max - 1; i++) {
      const char *nm = runs[r]->cols[i];
      if (strchr(nm, '[')) continue;
      bool dup = false;
      for (int j = 0; j < k; j++) dup = dup || !strcmp(names[j], nm);
      if (!dup) names[k++] = nm;
    }
  names[k++] = "lr";
  return k;
}

int crema_plot_runs(const crema_run *const *runs, int n, const crema_plot_options *opt,
                    crema_canvas_kind kind, crema_canvas *out, crema_error *err) {
  const int max = opt && opt->max_panels > 0 ? opt->max_panels : 12;
  const bool secs = opt && opt->x_seconds;
  const char *names[64];
  int n_names = collect_metrics(runs, n, max < 64 ? max : 64, names);
  /* Keep the panels that have at least one value. */
  int keep = 0;
  for (int m = 0; m < n_names; m++) {
    bool any = false;
    for (int r = 0; r < n && !any; r++) {
      int col = crema_run_column(runs[r], names[m]);
      for (int i = 0; col >= 0 && i < runs[r]->n_rows && !any; i++)
        any = isfinite(crema_run_at(runs[r], i, col));
    }
    if (any) names[keep++] = names[m];
  }
  if (!keep)
    return crema_fail(err, "nothing to plot: the runs have no loss, learning rate or test output values");
  const int cols = keep == 1 ? 1 : 2, rows = (keep + cols - 1) / cols;
  const double pw = 460, ph = 270, head = 64;
  if (crema_canvas_init(out, kind, (int)(cols * pw + 20), (int)(head + rows * ph + 10), err)) return -1;
  crema_canvas_text(out, 16, 26, opt && opt->title ? opt->title : "Training curves", 16, CREMA_ANCHOR_START,
                    TEXT, false);
  /* The legend: one entry per run. */
  double lx = 16;
  for (int r = 0; r < n; r++) {
    crema_canvas_line(out, lx, 47, lx + 22, 47, crema_palette(r), 3, false);
    crema_canvas_text(out, lx + 28, 51, runs[r]->name, 12, CREMA_ANCHOR_START, TEXT, false);
    lx += 48 + crema_canvas_text_width(runs[r]->name, 12);
  }
  crema_series *series = calloc((size_t)n, sizeof *series);
  double **xs = calloc((size_t)n, sizeof *xs), **ys = calloc((size_t)n, sizeof *ys);
  int rc = 0;
  if (!series || !xs || !ys) rc = crema_fail(err, "out of memory");
  for (int r = 0; r < n && !rc; r++) {
    xs[r] = malloc(sizeof(double) * (size_t)(runs[r]->n_rows + 1));
    ys[r] = malloc(sizeof(double) * (size_t)(runs[r]->n_rows + 1));
    if (!xs[r] || !ys[r]) rc = crema_fail(err, "out of memory");
  }
  for (int m = 0; m < keep && !rc; m++) {
    int ns = 0;
    for (int r = 0; r < n; r++) {
      int col = crema_run_column(runs[r], names[m]);
      if (col < 0) continue;
      int k = 0;
      for (int i = 0; i < runs[r]->n_rows; i++) {
        double v = crema_run_at(runs[r], i, col);
        if (!isfinite(v)) continue; /* rows of other metrics: connect this metric's points */
        xs[r][k] = crema_run_at(runs[r], i, secs ? CREMA_RUN_SECONDS : CREMA_RUN_ITER);
        ys[r][k++] = v;
      }
      series[ns++] = (crema_series){xs[r], ys[r], k, crema_palette(r), false, NULL};
    }
    char title[256];
    snprintf(title, sizeof title, "%s",
             !strcmp(names[m], "loss") ? "train loss (smoothed)"
             : !strcmp(names[m], "lr") ? "learning rate"
                                       : names[m]);
    crema_chart ch = {
        title, secs ? "seconds" : "iteration", names[m], false, false, false, NAN, NULL, false, 0, 0};
    crema_chart_draw(out, 10 + (m % cols) * pw, head + (m / cols) * ph, pw, ph, &ch, series, ns);
  }
  for (int r = 0; r < n; r++) {
    if (xs) free(xs[r]);
    if (ys) free(ys[r]);
  }
  free(xs);
  free(ys);
  free(series);
  if (rc) crema_canvas_free(out);
  return rc;
}
