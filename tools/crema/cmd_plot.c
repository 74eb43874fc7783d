/* cmd_plot.c -- `crema plot RUN...`: training curves from metrics CSVs and training logs
 * (crema's or Caffe's), several runs overlaid, as SVG or PNG. Replaces Caffe's
 * tools/extra/plot_training_log.py. */
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "common/flags.h"
#include "crema/commands.h"
#include "report/plot.h"
#include "report/runs.h"

#define MAX_RUNS 16

static const char USAGE[] =
    "usage: crema plot (METRICS.csv | TRAIN.log)... [--out curves.svg|curves.png] [--x "
    "iterations|seconds]\n\n"
    "Draws the train loss, every test output and the learning rate against iterations (or\n"
    "seconds), one panel per metric, every run overlaid in its own colour. Reads crema's\n"
    "<prefix>_metrics.csv and training logs written by crema or by Caffe.\n\n";

static bool ends_with(const char *s, const char *suffix) {
  size_t n = strlen(s), m = strlen(suffix);
  return n >= m && !strcmp(s + n - m, suffix);
}

/* Legend names: --labels when given; else the file names, with the parent folder prepended
 * when two runs would otherwise share a name (finetune/x_metrics vs scratch/x_metrics). */
static void name_runs(crema_run **runs, char **paths, int n, const char *labels) {
  char buf[4096];
  snprintf(buf, sizeof buf, "%s", labels ? labels : "");
  char *save = NULL, *tok = labels ? strtok_r(buf, ",", &save) : NULL;
  for (int i = 0; i < n && tok; i++, tok = strtok_r(NULL, ",", &save)) {
    char *d = strdup(tok);
    if (d) free(runs[i]->name), runs[i]->name = d;
  }
  if (labels) return;
  bool dup = false;
  for (int i = 0; i < n; i++)
    for (int j = i + 1; j < n; j++) dup = dup || !strcmp(runs[i]->name, runs[j]->name);
  if (!dup) return;
  for (int i = 0; i < n; i++) {
    char dir[1024];
    snprintf(dir, sizeof dir, "%s", paths[i]);
    char *slash = strrchr(dir, '/');
    if (!slash) continue;
    *slash = '\0';
    const char *parent = strrchr(dir, '/') ? strrchr(dir, '/') + 1 : dir;
    size_t len = strlen(parent) + strlen(runs[i]->name) + 2;
    char *name = malloc(len);
    if (!name) continue;
    snprintf(name, len, "%s/%s", parent, runs[i]->name);
    free(runs[i]->name);
    runs[i]->name = name;
  }
}

int crema_cmd_plot(int argc, char **argv) {
  const char *out = "curves.svg", *x = "iterations", *title = NULL, *labels = NULL;
  crema_flag flags[] = {
      {"out", CREMA_FLAG_STRING, &out, "output file: .svg or .png", 0},
      {"x", CREMA_FLAG_STRING, &x, "x axis: iterations or seconds", 0},
      {"title", CREMA_FLAG_STRING, &title, "figure title (default: \"Training curves\")", 0},
      {"labels", CREMA_FLAG_STRING, &labels,
       "legend names, comma-separated, one per run (default: file names; folder/name when those repeat)", 0},
  };
  char *pos[MAX_RUNS];
  int n_pos = 0;
  int rc = crema_flags_command(argc, argv, USAGE, flags, 4, pos, 1, MAX_RUNS, &n_pos);
  if (rc >= 0) return rc;
  if (strcmp(x, "iterations") && strcmp(x, "seconds")) {
    fprintf(stderr, "error: --x must be iterations or seconds (got \"%s\")\n", x);
    return 2;
  }
  const bool png = ends_with(out, ".png") || ends_with(out, ".PNG");
  if (!png && !ends_with(out, ".svg") && !ends_with(out, ".SVG")) {
    fprintf(stderr, "error: --out=%s: the file name must end in .svg or .png\n", out);
    return 2;
  }
  crema_error err = {{0}};
  crema_run *runs[MAX_RUNS] = {0};
  int status = 0;
  for (int i = 0; i < n_pos && !status; i++)
    if (crema_run_read(pos[i], &runs[i], &err)) status = 1;
  if (!status) name_runs(runs, pos, n_pos, labels);
  crema_canvas canvas;
  crema_plot_options opt = {.x_seconds = !strcmp(x, "seconds"), .title = title};
  if (!status && crema_plot_runs((const crema_run *const *)runs, n_pos, &opt,
                                 png ? CREMA_CANVAS_RASTER : CREMA_CANVAS_SVG, &canvas, &err))
    status = 1;
  if (!status) {
    if (crema_canvas_save(&canvas, out, &err)) status = 1;
    crema_canvas_free(&canvas);
  }
  if (status)
    fprintf(stderr, "error: %s\n", err.msg);
  else {
    printf("%s: ", out);
    for (int i = 0; i < n_pos; i++)
      printf("%s%s (%d rows, %d columns)", i ? ", " : "", runs[i]->name, runs[i]->n_rows, runs[i]->n_cols);
    printf("\n");
  }
  for (int i = 0; i < n_pos; i++) crema_run_free(runs[i]);
  return status;
}
