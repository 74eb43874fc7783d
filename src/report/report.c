/* report.c -- the HTML report of a run (see report.h). */
#include "report/report.h"

#include <dirent.h>
#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "proto/io.h"
#include "report/canvas.h"
#include "report/evaluate.h"
#include "report/plot.h"
#include "report/runs.h"
#include "report/strbuf.h"
#include "report/report_sections.h"

#define PATHLEN 1024

typedef struct found {
  char metrics[PATHLEN], log[PATHLEN], diagnostics[PATHLEN], model[PATHLEN], weights[PATHLEN],
      solver[PATHLEN], deploy[PATHLEN], labels[PATHLEN], preprocess[PATHLEN];
} found;

static bool ends_with(const char *s, const char *suffix) {
  size_t n = strlen(s), m = strlen(suffix);
  return n >= m && !strcmp(s + n - m, suffix);
}

static void join_path(char *out, const char *dir, const char *name) {
  snprintf(out, PATHLEN, "%s%s%s", dir ? dir : "", dir && *dir ? "/" : "", name);
}

static void pick(char *slot, const char *given, const char *dir, const char *name) {
  if (given) {
    snprintf(slot, PATHLEN, "%s", given);
    return;
  }
  if (!slot[0] && dir && name) {
    char p[PATHLEN];
    join_path(p, dir, name);
    if (access(p, R_OK) == 0) snprintf(slot, PATHLEN, "%s", p);
  }
}

/* Looks the run folder over for the files the report uses. */
static void find_files(const crema_report_inputs *in, found *f) {
  memset(f, 0, sizeof *f);
  const char *d = in->run_dir;
  pick(f->log, in->log, d, "train.log");
  pick(f->model, in->model, d, "train_val.prototxt");
  pick(f->weights, in->weights, d, "best.caffemodel");
  pick(f->solver, in->solver, d, "solver.prototxt");
  pick(f->deploy, in->deploy, d, "deploy.prototxt");
  pick(f->labels, in->labels, d, "labels.txt");
  pick(f->preprocess, in->preprocess, d, "preprocess.prototxt");
  if (in->metrics) snprintf(f->metrics, PATHLEN, "%s", in->metrics);
  if (in->diagnostics) snprintf(f->diagnostics, PATHLEN, "%s", in->diagnostics);
  DIR *dir = d ? opendir(d) : NULL;
  if (!dir) return;
  /* Weights: best.caffemodel (picked above), else *_best.caffemodel, else the snapshot with the
   * largest iteration. */
  const bool have_weights = f->weights[0] != '\0';
  char best[PATHLEN] = "", latest[PATHLEN] = "";
  long latest_iter = -1;
  struct dirent *e;
  while ((e = readdir(dir))) {
    const char *n = e->d_name;
    char p[PATHLEN];
    join_path(p, d, n);
    if (!f->metrics[0] && ends_with(n, "_metrics.csv")) snprintf(f->metrics, PATHLEN, "%s", p);
    if (!f->diagnostics[0] && ends_with(n, "_diagnostics.csv")) snprintf(f->diagnostics, PATHLEN, "%s", p);
    if (!f->log[0] && ends_with(n, ".log")) snprintf(f->log, PATHLEN, "%s", p);
    if (!best[0] && ends_with(n, "_best.caffemodel")) snprintf(best, PATHLEN, "%s", p);
    const char *it = strstr(n, "_iter_");
    if (it && ends_with(n, ".caffemodel") && atol(it + 6) > latest_iter) {
      latest_iter = atol(it + 6);
      snprintf(latest, PATHLEN, "%s", p);
    }
  }
  if (!have_weights) snprintf(f->weights, PATHLEN, "%s", best[0] ? best : latest);
  closedir(dir);
}

void crema_report_note(crema_report_summary *s, const char *fmt, ...) {
  size_t n = strlen(s->notes);
  if (n + 4 >= sizeof s->notes) return;
  if (n) n += (size_t)snprintf(s->notes + n, sizeof s->notes - n, "; ");
  va_list ap;
  va_start(ap, fmt);
  vsnprintf(s->notes + n, sizeof s->notes - n, fmt, ap);
  va_end(ap);
}

/* ---------------------------------------------------------------- labels */

typedef struct labels {
  int n;
  char **name;
} labels;

static void labels_read(const char *path, labels *l) {
  memset(l, 0, sizeof *l);
  char *text = NULL;
  size_t len = 0;
  crema_error err;
  if (!path[0] || crema_read_file(path, &text, &len, &err)) return;
  int lines = 1;
  for (size_t i = 0; i < len; i++) lines += text[i] == '\n';
  l->name = calloc((size_t)lines, sizeof *l->name);
  for (char *line = strtok(text, "\r\n"); line && l->name && l->n < lines; line = strtok(NULL, "\r\n"))
    l->name[l->n++] = strdup(line);
  free(text);
}

static void labels_free(labels *l) {
  for (int i = 0; i < l->n; i++) free(l->name[i]);
  free(l->name);
}

static const char *label_name(const labels *l, int k, char *buf, size_t size) {
  if (k >= 0 && k < l->n && l->name[k]) return l->name[k];
  snprintf(buf, size, "%d", k);
  return buf;
}

/* ---------------------------------------------------------------- sections */

void crema_report_svg(crema_strbuf *b, crema_canvas *c) {
  const char *svg = crema_canvas_svg_text(c);
  if (svg) crema_strbuf_append(b, svg, strlen(svg));
}

static void section_curves(crema_strbuf *b, const found *f, crema_report_summary *sum, crema_error *err,
                           int *rc) {
  const char *path = f->metrics[0] ? f->metrics : f->log[0] ? f->log : NULL;
  if (!path) {
    crema_report_note(sum, "%s", "no curves: no *_metrics.csv or training log found");
    return;
  }
  crema_run *run = NULL;
  if (crema_run_read(path, &run, err)) {
    *rc = -1;
    return;
  }
  crema_canvas c;
  crema_plot_options opt = {.title = "Training curves"};
  const crema_run *runs[1] = {run};
  if (!crema_plot_runs(runs, 1, &opt, CREMA_CANVAS_SVG, &c, err)) {
    crema_strbuf_printf(b, "<section id=\"curves\"><h2>Training curves</h2><p class=\"src\">from ");
    crema_strbuf_escape(b, path);
    crema_strbuf_printf(b, " (%d rows)</p>\n", run->n_rows);
    crema_report_svg(b, &c);
    crema_strbuf_printf(b, "</section>\n");
    crema_canvas_free(&c);
    sum->sections++;
  } else
    crema_report_note(sum, "no curves: %s", err->msg);
  crema_run_free(run);
}

static uint32_t heat(double t) { /* white -> crema blue */
  t = t < 0 ? 0 : t > 1 ? 1 : t;
  const int r = (int)lround(255 + (0x10 - 255) * t), g = (int)lround(255 + (0x4e - 255) * t),
            bl = (int)lround(255 + (0x8b - 255) * t);
  return (uint32_t)(r << 16 | g << 8 | bl);
}

static void section_confusion(crema_strbuf *b, const crema_evaluation *e, const labels *lb,
                              crema_report_summary *sum) {
  const int k = e->classes;
  char name[32], shortname[24];
  const double cell = k <= 10 ? 44 : k <= 30 ? 22 : 10, left = 130, top = 40;
  crema_canvas c;
  crema_error err;
  if (crema_canvas_init(&c, CREMA_CANVAS_SVG, (int)(left + k * cell + 20), (int)(top + k * cell + 110), &err))
    return;
  crema_canvas_text(&c, left + k * cell / 2, 22, "predicted", 13, CREMA_ANCHOR_MIDDLE, 0x222222, false);
  crema_canvas_text(&c, 16, top + k * cell / 2, "true", 13, CREMA_ANCHOR_MIDDLE, 0x222222, true);
  for (int t = 0; t < k; t++) {
    int64_t row = 0;
    for (int p = 0; p < k; p++) row += e->confusion[(size_t)t * (size_t)k + (size_t)p];
    snprintf(shortname, sizeof shortname, "%.14s", label_name(lb, t, name, sizeof name));
    if (cell >= 14) {
      crema_canvas_text(&c, left - 6, top + t * cell + cell / 2 + 4, shortname, 11, CREMA_ANCHOR_END,
                        0x222222, false);
      crema_canvas_text(&c, left + t * cell + cell / 2 + 4, top + k * cell + 6, shortname, 11,
                        CREMA_ANCHOR_END, 0x222222, true);
    }
    for (int p = 0; p < k; p++) {
      const int64_t v = e->confusion[(size_t)t * (size_t)k + (size_t)p];
      const double frac = row ? (double)v / (double)row : 0;
      crema_canvas_rect(&c, left + p * cell, top + t * cell, cell, cell, heat(frac), 0xffffff);
      if (cell >= 22 && v) {
        char num[24];
        snprintf(num, sizeof num, "%lld", (long long)v);
        crema_canvas_text(&c, left + p * cell + cell / 2, top + t * cell + cell / 2 + 4, num,
                          cell >= 40 ? 12 : 9, CREMA_ANCHOR_MIDDLE, frac > 0.5 ? 0xffffff : 0x222222, false);
      }
    }
  }
  crema_strbuf_printf(
      b,
      "<section id=\"confusion\"><h2>Confusion matrix</h2><p>%lld validation samples, accuracy "
      "<b>%.4f</b>. Rows: true class; columns: predicted; colour: share of the row.</p>\n",
      (long long)e->samples, e->samples ? (double)e->correct / (double)e->samples : 0.0);
  crema_report_svg(b, &c);
  crema_canvas_free(&c);
  crema_strbuf_printf(b, "</section>\n<section id=\"per-class\"><h2>Per-class accuracy</h2>\n"
                         "<table><tr><th>class</th><th>samples</th><th>correct</th><th>accuracy</th>"
                         "<th></th></tr>\n");
  for (int t = 0; t < k; t++) {
    int64_t row = 0;
    for (int p = 0; p < k; p++) row += e->confusion[(size_t)t * (size_t)k + (size_t)p];
    const int64_t ok = e->confusion[(size_t)t * (size_t)k + (size_t)t];
    const double a = row ? (double)ok / (double)row : 0;
    crema_strbuf_printf(b, "<tr><td>");
    crema_strbuf_escape(b, label_name(lb, t, name, sizeof name));
    crema_strbuf_printf(b,
                        "</td><td>%lld</td><td>%lld</td><td>%.3f</td><td><div class=\"bar\" "
                        "style=\"width:%.0fpx\"></div></td></tr>\n",
                        (long long)row, (long long)ok, a, a * 200);
  }
  crema_strbuf_printf(b, "</table></section>\n");
  sum->sections += 2;
}

static void section_wrong(crema_strbuf *b, const crema_evaluation *e, const labels *lb,
                          crema_report_summary *sum) {
  crema_strbuf_printf(b, "<section id=\"wrong\"><h2>Most confidently wrong</h2>\n");
  if (!e->n_wrong) crema_strbuf_printf(b, "<p>No validation sample was misclassified.</p>\n");
  crema_strbuf_printf(b, "<div class=\"thumbs\">\n");
  char n1[32], n2[32];
  for (int i = 0; i < e->n_wrong; i++) {
    const crema_wrong_example *w = &e->wrong[i];
    crema_strbuf_printf(b, "<figure class=\"thumb\">");
    if (w->image.width > 0) {
      /* Small images (28x28 digits) are shown enlarged by the browser, pixels kept sharp. */
      const crema_image *img = &w->image;
      crema_error err;
      const int lng = img->width > img->height ? img->width : img->height;
      const int scale = lng < 96 ? (96 + lng - 1) / lng : 1;
      unsigned char *png = NULL;
      size_t n = 0;
      if (!crema_image_encode(img, "png", &png, &n, &err)) {
        crema_strbuf_printf(
            b, "<img alt=\"record %llu\" width=\"%d\" height=\"%d\" src=\"data:image/png;base64,",
            (unsigned long long)w->record, img->width * scale, img->height * scale);
        crema_strbuf_base64(b, png, n);
        crema_strbuf_printf(b, "\">");
        sum->thumbnails++;
        free(png);
      }
    }
    crema_strbuf_printf(b, "<figcaption>#%llu: true <b>", (unsigned long long)w->record);
    crema_strbuf_escape(b, label_name(lb, w->label, n1, sizeof n1));
    crema_strbuf_printf(b, "</b>, predicted <b>");
    crema_strbuf_escape(b, label_name(lb, w->predicted, n2, sizeof n2));
    crema_strbuf_printf(b, "</b> (p = %.3f)</figcaption></figure>\n", (double)w->confidence);
  }
  crema_strbuf_printf(b, "</div></section>\n");
  sum->sections++;
}

static void file_block(crema_strbuf *b, const char *title, const char *path) {
  char *text = NULL;
  size_t len = 0;
  crema_error err;
  if (!path[0] || crema_read_file(path, &text, &len, &err)) return;
  crema_strbuf_printf(b, "<h3>");
  crema_strbuf_escape(b, title);
  crema_strbuf_printf(b, " <span class=\"src\">");
  crema_strbuf_escape(b, path);
  crema_strbuf_printf(b, "</span></h3><pre>");
  if (len > 20000) text[20000] = '\0';
  crema_strbuf_escape(b, text);
  crema_strbuf_printf(b, "%s</pre>\n", len > 20000 ? "\n..." : "");
  free(text);
}

static const char STYLE[] =
    "<style>body{font-family:'DejaVu Sans',Helvetica,Arial,sans-serif;margin:24px "
    "auto;max-width:1000px;color:#222}"
    "h1{font-size:22px}h2{font-size:18px;border-bottom:1px solid #ddd;padding-bottom:4px;margin-top:32px}"
    "h3{font-size:14px}.src{color:#777;font-size:12px;font-weight:normal}table{border-collapse:collapse;font-"
    "size:12px}"
    "td,th{border-bottom:1px solid #eee;padding:3px 8px;text-align:left}pre{background:#f6f6f6;padding:8px;"
    "font-size:12px;overflow:auto;max-height:400px}.bar{height:10px;background:#104e8b}.thumbs{display:flex;"
    "flex-wrap:wrap;gap:12px}.thumb{margin:0;width:150px;font-size:11px}.thumb img{image-rendering:pixelated;"
    "max-width:150px;border:1px solid "
    "#ccc}.notes{color:#a05000;font-size:12px}svg{max-width:100%;height:auto}"
    "</style>\n";

int crema_report_write(const crema_report_inputs *in, const char *out_html, crema_report_summary *sum,
                       crema_error *err) {
  memset(sum, 0, sizeof *sum);
  found f;
  find_files(in, &f);
  labels lb;
  labels_read(f.labels, &lb);
  crema_strbuf b = {0};
  const char *title = in->title ? in->title : "crema training report";
  crema_strbuf_printf(&b, "<!DOCTYPE html>\n<html lang=\"en\"><head><meta charset=\"utf-8\"><title>");
  crema_strbuf_escape(&b, title);
  crema_strbuf_printf(&b, "</title>\n%s</head><body>\n<h1>", STYLE);
  crema_strbuf_escape(&b, title);
  crema_strbuf_printf(&b, "</h1>\n<p class=\"src\">");
  if (in->run_dir) {
    crema_strbuf_printf(&b, "run folder ");
    crema_strbuf_escape(&b, in->run_dir);
    crema_strbuf_printf(&b, "; ");
  }
  char when[64];
  time_t now = time(NULL);
  struct tm tmv;
  strftime(when, sizeof when, "%Y-%m-%d %H:%M UTC", gmtime_r(&now, &tmv));
  crema_strbuf_printf(&b, "written %s by crema %s</p>\n", when, CREMA_VERSION);
  int rc = 0;
  section_curves(&b, &f, sum, err, &rc);
  if (!rc && f.model[0] && f.weights[0]) {
    Crema__NetParameter *np = NULL;
    crema_evaluation e;
    crema_error e2;
    if (crema_read_net_param(f.model, &np, &e2) ||
        crema_evaluate(np, f.weights, in->iterations, in->run_dir, &e, &e2))
      crema_report_note(sum, "no confusion matrix: %s", e2.msg);
    else {
      sum->samples = e.samples;
      sum->accuracy = e.samples ? (double)e.correct / (double)e.samples : 0;
      crema_strbuf_printf(&b, "<p class=\"src\">scored: ");
      crema_strbuf_escape(&b, f.model);
      crema_strbuf_printf(&b, " with ");
      crema_strbuf_escape(&b, f.weights);
      crema_strbuf_printf(&b, "</p>\n");
      section_confusion(&b, &e, &lb, sum);
      section_wrong(&b, &e, &lb, sum);
      crema_evaluation_free(&e);
    }
    crema_message_free(np);
  } else if (!rc)
    crema_report_note(sum, "%s",
                      f.model[0] ? "no confusion matrix: no caffemodel found"
                                 : "no confusion matrix: no train_val net");
  if (!rc) crema_report_section_diagnostics(&b, f.diagnostics, sum);
  if (!rc) crema_report_section_net(&b, f.deploy[0] ? f.deploy : f.model, sum);
  if (!rc && (f.solver[0] || f.preprocess[0] || f.labels[0])) {
    crema_strbuf_printf(&b, "<section id=\"settings\"><h2>Settings</h2>\n");
    file_block(&b, "solver", f.solver);
    file_block(&b, "preprocessing", f.preprocess);
    file_block(&b, "labels", f.labels);
    crema_strbuf_printf(&b, "</section>\n");
    sum->sections++;
  }
  if (!rc && sum->notes[0]) {
    crema_strbuf_printf(&b, "<p class=\"notes\" id=\"notes\">Not shown: ");
    crema_strbuf_escape(&b, sum->notes);
    crema_strbuf_printf(&b, "</p>\n");
  }
  crema_strbuf_printf(
      &b, "<footer class=\"src\" id=\"footer\"></footer>\n<script>document.getElementById('footer')"
          ".textContent=document.querySelectorAll('section').length+' sections';</script>\n"
          "</body></html>\n");
  if (!rc && !sum->sections)
    rc = crema_fail(err,
                    "nothing to report%s%s: give a run folder with a *_metrics.csv, train.log, or "
                    "train_val.prototxt and a caffemodel",
                    in->run_dir ? " in " : "", in->run_dir ? in->run_dir : "");
  if (!rc) rc = crema_strbuf_ok(&b, out_html, err);
  if (!rc) rc = crema_write_file_atomic(out_html, b.data, b.len, err);
  crema_strbuf_free(&b);
  labels_free(&lb);
  return rc;
}
