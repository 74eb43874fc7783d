/* report_sections.c -- the report's diagnostics charts and net cost table (report.c writes
 * the rest of the page). */
#include "report/report_sections.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "proto/io.h"
#include "report/plot.h"
#include "report/summary.h"

/* The diagnostics CSV drawn as two charts: update/weight ratio per parameter (log scale) and
 * the fraction of outputs <= 0 per ReLU-family layer. */
#define DIAG_MAX_SERIES 24
typedef struct diag_series {
  char name[96];
  int n, cap;
  double *x, *y;
} diag_series;

static diag_series *diag_get(diag_series *s, int *n, const char *name) {
  for (int i = 0; i < *n; i++)
    if (!strcmp(s[i].name, name)) return &s[i];
  if (*n >= DIAG_MAX_SERIES) return NULL;
  diag_series *d = &s[(*n)++];
  snprintf(d->name, sizeof d->name, "%s", name);
  return d;
}

static void diag_push(diag_series *d, double x, double y) {
  if (!d || !isfinite(y)) return;
  if (d->n == d->cap) {
    int cap = d->cap ? d->cap * 2 : 64;
    double *nx = realloc(d->x, sizeof(double) * (size_t)cap),
           *ny = nx ? realloc(d->y, sizeof(double) * (size_t)cap) : NULL;
    if (nx) d->x = nx;
    if (!ny) return;
    d->y = ny;
    d->cap = cap;
  }
  d->x[d->n] = x, d->y[d->n++] = y;
}

void crema_report_section_diagnostics(crema_strbuf *b, const char *path, crema_report_summary *sum) {
  char *text = NULL;
  size_t len = 0;
  crema_error err;
  if (!path[0] || crema_read_file(path, &text, &len, &err)) return;
  diag_series act[DIAG_MAX_SERIES], par[DIAG_MAX_SERIES];
  memset(act, 0, sizeof act);
  memset(par, 0, sizeof par);
  int na = 0, np = 0;
  char *save = NULL;
  for (char *line = strtok_r(text, "\n", &save); line; line = strtok_r(NULL, "\n", &save)) {
    char *f[10];
    int nf = 0;
    for (char *p = line; nf < 10;) {
      f[nf++] = p;
      char *c = strchr(p, ',');
      if (!c) break;
      *c = '\0';
      p = c + 1;
    }
    if (nf < 10 || !strcmp(f[0], "iteration")) continue;
    const double it = atof(f[0]);
    char name[96];
    if (!strcmp(f[3], "activation") && *f[4]) {
      diag_push(diag_get(act, &na, f[1]), it, atof(f[4]));
    } else if (!strcmp(f[3], "param") && *f[9]) {
      snprintf(name, sizeof name, "%.80s[%.8s]", f[1], f[2]);
      const double r = atof(f[9]);
      if (r > 0) diag_push(diag_get(par, &np, name), it, r);
    }
  }
  free(text);
  crema_strbuf_printf(b, "<section id=\"diagnostics\"><h2>Diagnostics</h2><p class=\"src\">from ");
  crema_strbuf_escape(b, path);
  crema_strbuf_printf(b, "</p>\n");
  crema_series s[DIAG_MAX_SERIES];
  for (int chart = 0; chart < 2; chart++) {
    diag_series *d = chart ? act : par;
    const int n = chart ? na : np;
    if (!n) continue;
    for (int i = 0; i < n; i++)
      s[i] = (crema_series){d[i].x, d[i].y, d[i].n, crema_palette(i), i >= 8, d[i].name};
    crema_chart ch = {chart ? "fraction of outputs <= 0 (ReLU family)" : "update / weight ratio (L2)",
                      "iteration",
                      chart ? "fraction" : "ratio",
                      false,
                      chart == 0,
                      true,
                      NAN,
                      NULL,
                      false,
                      0,
                      0};
    crema_canvas c;
    if (crema_canvas_init(&c, CREMA_CANVAS_SVG, 640, 340, &err)) continue;
    crema_chart_draw(&c, 0, 0, 640, 340, &ch, s, n);
    crema_report_svg(b, &c);
    crema_canvas_free(&c);
  }
  crema_strbuf_printf(b, "</section>\n");
  for (int i = 0; i < DIAG_MAX_SERIES; i++) free(act[i].x), free(act[i].y), free(par[i].x), free(par[i].y);
  sum->sections++;
}

void crema_report_section_net(crema_strbuf *b, const char *path, crema_report_summary *sum) {
  if (!path || !path[0]) return;
  Crema__NetParameter *np = NULL;
  crema_error err;
  if (crema_read_net_param(path, &np, &err)) {
    crema_report_note(sum, "no net summary: %s", err.msg);
    return;
  }
  crema_net_summary s;
  if (crema_net_summarize(np, CREMA__PHASE__TEST, &s, &err)) {
    crema_message_free(np);
    return;
  }
  char a[32], m[32], p[32];
  crema_format_count(s.params, p, sizeof p);
  crema_format_count(s.macs, m, sizeof m);
  crema_format_bytes(s.activation_bytes, a, sizeof a);
  crema_strbuf_printf(b, "<section id=\"net\"><h2>Net</h2><p class=\"src\">");
  crema_strbuf_escape(b, path);
  crema_strbuf_printf(
      b,
      " (TEST phase): <b>%d</b> layers, <b>%s</b> parameters, <b>%s</b> multiply-adds per forward "
      "pass, <b>%s</b> of activations</p>\n",
      s.n_layers, p, m, a);
  if (!s.complete) {
    crema_strbuf_printf(b, "<p>Shapes stop at: ");
    crema_strbuf_escape(b, s.why);
    crema_strbuf_printf(b, "</p>\n");
  }
  crema_strbuf_printf(b, "<table><tr><th>#</th><th>layer</th><th>type</th><th>output</th><th>parameters</th>"
                         "<th>multiply-adds</th><th>activations</th></tr>\n");
  for (int i = 0; i < s.n_layers; i++) {
    const crema_layer_summary *l = &s.layers[i];
    char shape[96] = "-";
    if (l->n_tops) crema_blob_shape_text(&l->tops[0], shape, sizeof shape);
    crema_format_count(l->params, p, sizeof p);
    crema_format_count(l->macs, m, sizeof m);
    crema_format_bytes(l->top_bytes, a, sizeof a);
    crema_strbuf_printf(b, "<tr><td>%d</td><td>", i);
    crema_strbuf_escape(b, l->param->name);
    crema_strbuf_printf(b, "</td><td>");
    crema_strbuf_escape(b, l->param->type);
    crema_strbuf_printf(b, "</td><td>%s</td><td>%s</td><td>%s</td><td>%s</td></tr>\n", shape,
                        l->params ? p : "", l->macs ? m : "", l->top_bytes ? a : "in place");
  }
  crema_strbuf_printf(b, "</table></section>\n");
  crema_net_summary_free(&s);
  crema_message_free(np);
  sum->sections++;
}
