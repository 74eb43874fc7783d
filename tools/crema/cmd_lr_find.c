/* cmd_lr_find.c -- `crema lr-find`: the learning-rate range test, a plot of loss against
 * rate, and a suggested base_lr. Writes nothing but the plot. */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "common/flags.h"
#include "common/tool.h"
#include "crema/commands.h"
#include "proto/io.h"
#include "report/lr_find.h"
#include "report/plot.h"

#define MAX_WEIGHTS 16

static const char USAGE[] =
    "usage: crema lr-find --solver=SOLVER.prototxt [--weights=W.caffemodel[,...]] [--start=1e-6] [--end=1]\n"
    "                     [--iterations=100] [--out=lr_find.svg|.png]\n\n"
    "Trains a short run from the same starting weights while the learning rate rises\n"
    "exponentially from --start to --end, stops when the loss diverges, plots the loss against\n"
    "the rate and prints a suggested base_lr: where the smoothed loss falls fastest. Leaves no\n"
    "snapshot, metrics or other file behind except the plot.\n\n";

static bool ends_with(const char *s, const char *suffix) {
  size_t n = strlen(s), m = strlen(suffix);
  return n >= m && !strcmp(s + n - m, suffix);
}

static int plot(const crema_lr_find_result *r, const char *path, crema_error *err) {
  const bool png = ends_with(path, ".png") || ends_with(path, ".PNG");
  crema_canvas c;
  if (crema_canvas_init(&c, png ? CREMA_CANVAS_RASTER : CREMA_CANVAS_SVG, 720, 440, err)) return -1;
  char label[64];
  snprintf(label, sizeof label, "suggested %.3g", r->suggested);
  crema_series s[2] = {{r->lr, r->loss, r->n, 0xaaaaaa, false, "loss"},
                       {r->lr, r->smooth, r->n, crema_palette(0), false, "smoothed loss"}};
  crema_chart ch = {"learning-rate range test",
                    "learning rate",
                    "loss",
                    true,
                    false,
                    true,
                    r->suggested,
                    label,
                    false,
                    0,
                    0};
  /* Keep the blow-up from flattening the interesting part: y up to 1.5x the first loss. */
  double lo = INFINITY, first = r->n ? r->smooth[0] : 1;
  for (int i = 0; i < r->n; i++) lo = fmin(lo, fmin(r->loss[i], r->smooth[i]));
  if (isfinite(lo) && isfinite(first) && first > lo) {
    ch.fixed_y = true;
    ch.y_lo = lo - 0.05 * (first - lo);
    ch.y_hi = first + 0.5 * (first - lo);
  }
  crema_chart_draw(&c, 0, 0, 720, 440, &ch, s, 2);
  int rc = crema_canvas_save(&c, path, err);
  crema_canvas_free(&c);
  return rc;
}

int crema_cmd_lr_find(int argc, char **argv) {
  crema_tool_init(argc + 1, argv - 1);
  const char *solver = NULL, *weights = NULL, *out = "lr_find.svg";
  double start = 1e-6, end = 1;
  long iterations = 100;
  crema_flag flags[] = {
      {"solver", CREMA_FLAG_STRING, &solver, "the solver prototxt (required)", 0},
      {"weights", CREMA_FLAG_STRING, &weights,
       "caffemodel(s) to start from, comma-separated, copied by layer name", 0},
      {"start", CREMA_FLAG_FLOAT, &start, "first learning rate", 0},
      {"end", CREMA_FLAG_FLOAT, &end, "last learning rate", 0},
      {"iterations", CREMA_FLAG_INT, &iterations, "steps of the ramp (5..100000)", 0},
      {"out", CREMA_FLAG_STRING, &out, "the plot: .svg or .png", 0},
  };
  const int n_flags = (int)(sizeof flags / sizeof flags[0]);
  char *pos[1];
  int n_pos = 0;
  int rc = crema_flags_command(argc, argv, USAGE, flags, n_flags, pos, 0, 0, &n_pos);
  if (rc >= 0) return rc;
  if (!solver) return crema_flags_missing("--solver", USAGE, flags, n_flags);
  if (!(start > 0) || !(end > start) || !isfinite(end)) {
    fprintf(stderr, "error: --start (%g) and --end (%g) must be positive with start < end\n", start, end);
    return 2;
  }
  if (iterations < 5 || iterations > 100000) {
    fprintf(stderr, "error: --iterations=%ld is out of range (5..100000)\n", iterations);
    return 2;
  }
  if (!ends_with(out, ".svg") && !ends_with(out, ".png") && !ends_with(out, ".SVG") &&
      !ends_with(out, ".PNG")) {
    fprintf(stderr, "error: --out=%s: the file name must end in .svg or .png\n", out);
    return 2;
  }
  crema_tool_log_blas();
  crema_error err = {{0}};
  Crema__SolverParameter *param = NULL;
  if (crema_read_solver_param(solver, &param, &err)) {
    fprintf(stderr, "error: %s\n", err.msg);
    return 1;
  }
  char *wcopy = weights ? strdup(weights) : NULL;
  const char *items[MAX_WEIGHTS];
  int n_items = 0;
  for (char *tok = wcopy ? strtok(wcopy, ",") : NULL; tok && n_items < MAX_WEIGHTS; tok = strtok(NULL, ","))
    if (*tok) items[n_items++] = tok;
  crema_lr_find_options opt = {.start = start,
                               .end = end,
                               .iterations = (int)iterations,
                               .weights = items,
                               .n_weights = n_items,
                               .solver_path = solver};
  crema_lr_find_result r;
  int status = 0;
  if (crema_lr_find(param, &opt, &r, &err) || plot(&r, out, &err)) status = 1;
  if (status) {
    fprintf(stderr, "error: %s\n", err.msg);
  } else {
    printf("%12s %12s %12s\n", "lr", "loss", "smoothed");
    const int step = r.n > 20 ? r.n / 20 : 1;
    for (int i = 0; i < r.n; i += step) printf("%12.4g %12.4g %12.4g\n", r.lr[i], r.loss[i], r.smooth[i]);
    printf("%d iterations%s; lowest smoothed loss at lr %.3g\n", r.n,
           r.diverged ? " (stopped: the loss diverged)" : "", r.min_loss_lr);
    printf("suggested base_lr: %.3g (steepest descent of the smoothed loss); a tenth of the lowest point's "
           "rate: %.3g\n",
           r.suggested, r.min_loss_lr / 10);
    printf("plot: %s\n", out);
  }
  if (!status) crema_lr_find_result_free(&r);
  free(wcopy);
  crema_message_free(param);
  return status;
}
