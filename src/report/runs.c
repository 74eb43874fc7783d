/* runs.c -- metrics CSV and training-log readers (see runs.h). */
#include "report/runs.h"

#include <ctype.h>
#include <math.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "proto/io.h"

static char *dup_n(const char *s, size_t n) {
  char *d = malloc(n + 1);
  if (d) {
    memcpy(d, s, n);
    d[n] = '\0';
  }
  return d;
}

static crema_run *run_new(const char *name) {
  crema_run *r = calloc(1, sizeof *r);
  if (!r) return NULL;
  r->name = dup_n(name, strlen(name));
  static const char *const base[4] = {"iteration", "seconds", "lr", "loss"};
  r->cols = calloc(4, sizeof *r->cols);
  if (!r->name || !r->cols) {
    crema_run_free(r);
    return NULL;
  }
  for (int i = 0; i < 4; i++) {
    if (!(r->cols[i] = dup_n(base[i], strlen(base[i])))) {
      crema_run_free(r);
      return NULL;
    }
    r->n_cols = i + 1;
  }
  return r;
}

void crema_run_free(crema_run *r) {
  if (!r) return;
  for (int i = 0; i < r->n_cols; i++) free(r->cols[i]);
  free(r->cols);
  free(r->v);
  free(r->name);
  free(r);
}

int crema_run_column(const crema_run *r, const char *name) {
  for (int i = 0; i < r->n_cols; i++)
    if (!strcmp(r->cols[i], name)) return i;
  return -1;
}

double crema_run_at(const crema_run *r, int row, int col) {
  if (row < 0 || row >= r->n_rows || col < 0 || col >= r->n_cols) return NAN;
  return r->v[(size_t)row * (size_t)r->n_cols + (size_t)col];
}

/* Adds a column (all NAN so far); returns its index or -1 when out of memory. */
static int add_column(crema_run *r, const char *name, size_t len) {
  char *nm = dup_n(name, len);
  char **cols = nm ? realloc(r->cols, (size_t)(r->n_cols + 1) * sizeof *cols) : NULL;
  if (!cols) {
    free(nm);
    return -1;
  }
  r->cols = cols;
  double *v = NULL;
  if (r->n_rows) {
    v = malloc((size_t)r->n_rows * (size_t)(r->n_cols + 1) * sizeof *v);
    if (!v) {
      free(nm);
      return -1;
    }
    for (int i = 0; i < r->n_rows; i++) {
      memcpy(v + (size_t)i * (size_t)(r->n_cols + 1), r->v + (size_t)i * (size_t)r->n_cols,
             (size_t)r->n_cols * sizeof *v);
      v[(size_t)i * (size_t)(r->n_cols + 1) + (size_t)r->n_cols] = NAN;
    }
    free(r->v);
    r->v = v;
    r->cap_rows = r->n_rows;
  }
  r->cols[r->n_cols++] = nm;
  return r->n_cols - 1;
}

static int column_or_add(crema_run *r, const char *name, size_t len) {
  for (int i = 0; i < r->n_cols; i++)
    if (strlen(r->cols[i]) == len && !strncmp(r->cols[i], name, len)) return i;
  return add_column(r, name, len);
}

/* Appends a row of NANs; returns its index or -1. */
static int add_row(crema_run *r) {
  if (r->n_rows == r->cap_rows) {
    int cap = r->cap_rows ? r->cap_rows * 2 : 64;
    double *v = realloc(r->v, (size_t)cap * (size_t)r->n_cols * sizeof *v);
    if (!v) return -1;
    r->v = v;
    r->cap_rows = cap;
  }
  double *row = r->v + (size_t)r->n_rows * (size_t)r->n_cols;
  for (int i = 0; i < r->n_cols; i++) row[i] = NAN;
  return r->n_rows++;
}

static void set(crema_run *r, int row, int col, double x) {
  r->v[(size_t)row * (size_t)r->n_cols + (size_t)col] = x;
}

/* The run's label: path without folders and without its last extension. */
static void run_label(const char *path, char *buf, size_t size) {
  const char *base = strrchr(path, '/');
  base = base ? base + 1 : path;
  snprintf(buf, size, "%s", base);
  char *dot = strrchr(buf, '.');
  if (dot && dot != buf) *dot = '\0';
}

int crema_run_read(const char *path, crema_run **out, crema_error *err) {
  char *text = NULL;
  size_t len = 0;
  if (crema_read_file(path, &text, &len, err)) return -1;
  if (memchr(text, '\0', len)) {
    free(text);
    return crema_fail(err,
                      "%s: a binary file; expected a metrics CSV (crema's <prefix>_metrics.csv) or a "
                      "training log",
                      path);
  }
  char label[256];
  run_label(path, label, sizeof label);
  int rc = !strncmp(text, "iteration,", 10) ? crema_run_parse_csv(text, label, out, err)
                                            : crema_run_parse_log(text, label, out, err);
  free(text);
  if (rc) return crema_error_prefix(err, "%s", path);
  return 0;
}

int crema_run_parse_csv(const char *text, const char *name, crema_run **out, crema_error *err) {
  crema_run *r = run_new(name);
  if (!r) return crema_fail(err, "out of memory");
  const char *p = text, *eol = strchr(p, '\n');
  if (!eol) eol = p + strlen(p);
  /* Header: map each CSV column to a run column. */
  int map[1024], n_csv = 0;
  for (const char *c = p; c < eol && n_csv < 1024;) {
    const char *e = c;
    while (e < eol && *e != ',' && *e != '\r') e++;
    int col = column_or_add(r, c, (size_t)(e - c));
    if (col < 0) {
      crema_run_free(r);
      return crema_fail(err, "out of memory");
    }
    map[n_csv++] = col;
    if (e >= eol || *e == '\r') break;
    c = e + 1;
  }
  int line = 1;
  for (p = *eol ? eol + 1 : eol; *p; line++) {
    eol = strchr(p, '\n');
    if (!eol) eol = p + strlen(p);
    if (eol > p && !(eol == p + 1 && p[0] == '\r')) {
      int row = add_row(r);
      if (row < 0) {
        crema_run_free(r);
        return crema_fail(err, "out of memory");
      }
      int k = 0;
      for (const char *c = p; c <= eol && k < n_csv; k++) {
        const char *e = c;
        while (e < eol && *e != ',') e++;
        if (e > c && *c != '\r') {
          char *end = NULL;
          double x = strtod(c, &end);
          if (end == c) {
            crema_run_free(r);
            return crema_fail(err, "line %d, column %d: \"%.*s\" is not a number", line + 1, k + 1,
                              (int)(e - c), c);
          }
          set(r, row, map[k], x);
        }
        c = e + 1;
      }
    }
    p = *eol ? eol + 1 : eol;
  }
  if (!r->n_rows) {
    crema_run_free(r);
    return crema_fail(err, "the metrics CSV has a header but no rows yet");
  }
  *out = r;
  return 0;
}

/* Seconds since an arbitrary origin from a glog prefix "I1201 16:08:03.107939" or glog 0.6's
 * "I20261201 16:08:03.107939"; -1 when the line has none. Month lengths are taken as 31 days:
 * only differences matter and runs spanning a month end are rare. */
static double glog_time(const char *line) {
  if (!line[0] || !strchr("IWEF", line[0])) return -1;
  const char *p = line + 1;
  int nd = 0;
  while (isdigit((unsigned char)p[nd])) nd++;
  if ((nd != 4 && nd != 8) || p[nd] != ' ') return -1;
  const char *md = p + nd - 4;
  int month = (md[0] - '0') * 10 + (md[1] - '0'), day = (md[2] - '0') * 10 + (md[3] - '0');
  int h = 0, m = 0;
  double s = 0;
  if (sscanf(p + nd + 1, "%d:%d:%lf", &h, &m, &s) != 3) return -1;
  return ((month * 31.0 + day) * 24.0 + h) * 3600.0 + m * 60.0 + s;
}

/* The message part of a glog line (after "] "), or the line itself. */
static const char *message(const char *line) {
  const char *b = strstr(line, "] ");
  return b && glog_time(line) >= 0 ? b + 2 : line;
}

int crema_run_parse_log(const char *text, const char *name, crema_run **out, crema_error *err) {
  crema_run *r = run_new(name);
  if (!r) return crema_fail(err, "out of memory");
  double t0 = -1;
  int iter = -1, row = -1, test_net = 0;
  bool oom = false;
  char line[4096];
  for (const char *p = text; *p;) {
    const char *eol = strchr(p, '\n');
    size_t n = eol ? (size_t)(eol - p) : strlen(p);
    snprintf(line, sizeof line, "%.*s", (int)(n < sizeof line ? n : sizeof line - 1), p);
    p = eol ? eol + 1 : p + n;
    const double t = glog_time(line);
    if (t >= 0 && t0 < 0) t0 = t;
    const char *msg = message(line);
    const char *it = strstr(msg, "Iteration ");
    if (it && isdigit((unsigned char)it[10])) {
      int k = atoi(it + 10);
      if (k != iter || row < 0) {
        iter = k;
        if ((row = add_row(r)) < 0) {
          oom = true;
          break;
        }
        set(r, row, CREMA_RUN_ITER, k);
        if (t >= 0) set(r, row, CREMA_RUN_SECONDS, t - t0);
      }
      const char *tn = strstr(msg, "Testing net (#");
      if (tn) test_net = atoi(tn + 14);
      const char *lr = strstr(msg, ", lr = ");
      if (lr) set(r, row, CREMA_RUN_LR, strtod(lr + 7, NULL));
      const char *loss = strstr(msg, "loss = ");
      if (loss && !lr) set(r, row, CREMA_RUN_LOSS, strtod(loss + 7, NULL));
      continue;
    }
    const char *to = strstr(msg, "Test net output #");
    if (to && row >= 0) {
      const char *colon = strchr(to, ':');
      if (!colon) continue;
      const char *nm = colon + 2, *eq = strstr(nm, " = ");
      if (!eq) continue;
      char col[300];
      size_t len = (size_t)(eq - nm);
      if (len > 200) continue;
      char tpre[32] = "";
      if (test_net > 0) snprintf(tpre, sizeof tpre, "test%d/", test_net);
      bool reserved = !strncmp(nm, "loss", len) && len == 4;
      reserved = reserved || (len == 2 && !strncmp(nm, "lr", 2)) ||
                 (len == 9 && !strncmp(nm, "iteration", 9)) || (len == 7 && !strncmp(nm, "seconds", 7));
      snprintf(col, sizeof col, "%s%s%.*s", tpre, test_net == 0 && reserved ? "test_" : "", (int)len, nm);
      int c = column_or_add(r, col, strlen(col));
      if (c < 0) {
        oom = true;
        break;
      }
      set(r, row, c, strtod(eq + 3, NULL));
    }
  }
  if (oom) {
    crema_run_free(r);
    return crema_fail(err, "out of memory");
  }
  if (!r->n_rows) {
    crema_run_free(r);
    return crema_fail(err,
                      "no \"Iteration N\" lines: expected crema's <prefix>_metrics.csv or a training log "
                      "written by Caffe or crema (glog lines)");
  }
  *out = r;
  return 0;
}
