#include "solver/metrics.h"

#include <stdlib.h>
#include <string.h>

static char *dup_str(const char *s) {
  size_t n = strlen(s) + 1;
  char *d = malloc(n);
  if (d) memcpy(d, s, n);
  return d;
}

int crema_metrics_init(crema_metrics *m, const char *path, int n_columns, const char *const *columns,
                       crema_error *err) {
  memset(m, 0, sizeof *m);
  m->path = dup_str(path);
  m->columns = calloc((size_t)n_columns + 1, sizeof *m->columns);
  if (!m->path || !m->columns) return crema_fail(err, "out of memory");
  m->n_columns = n_columns;
  for (int i = 0; i < n_columns; i++)
    if (!(m->columns[i] = dup_str(columns[i]))) return crema_fail(err, "out of memory");
  return 0;
}

static void write_header(crema_metrics *m, FILE *f) {
  fprintf(f, "iteration,seconds,lr,loss");
  for (int i = 0; i < m->n_columns; i++) fprintf(f, ",%s", m->columns[i]);
  fprintf(f, "\n");
}

int crema_metrics_open(crema_metrics *m, bool append, double *last_seconds, crema_error *err) {
  if (last_seconds) *last_seconds = 0.0;
  if (m->f) return 0;
  bool have_header = false;
  if (append) {
    FILE *old = fopen(m->path, "r");
    if (old) {
      /* Append only under the same columns; otherwise start afresh. */
      char line[4096], want[4096];
      FILE *mem = fmemopen(want, sizeof want, "w");
      if (mem) {
        write_header(m, mem);
        fclose(mem);
        want[sizeof want - 1] = '\0';
        have_header = fgets(line, sizeof line, old) && !strcmp(line, want);
        /* The last row's seconds: "iteration,seconds,...". */
        while (have_header && fgets(line, sizeof line, old)) {
          const char *comma = strchr(line, ',');
          if (comma && last_seconds) *last_seconds = strtod(comma + 1, NULL);
        }
      }
      fclose(old);
    }
  }
  m->f = fopen(m->path, have_header ? "a" : "w");
  if (!m->f)
    return crema_fail(err, "cannot open metrics file %s for writing; check the snapshot_prefix folder",
                      m->path);
  if (!have_header) write_header(m, m->f);
  fflush(m->f);
  return 0;
}

int crema_metrics_row(crema_metrics *m, int iter, double seconds, bool has_lr, float lr, bool has_loss,
                      float loss, const float *values, const bool *has, crema_error *err) {
  if (!m->f) return 0;
  fprintf(m->f, "%d,%.3f,", iter, seconds);
  if (has_lr) fprintf(m->f, "%.9g", lr);
  fprintf(m->f, ",");
  if (has_loss) fprintf(m->f, "%.9g", loss);
  for (int i = 0; i < m->n_columns; i++) {
    fprintf(m->f, ",");
    if (has && has[i]) fprintf(m->f, "%.9g", values[i]);
  }
  fprintf(m->f, "\n");
  if (fflush(m->f) != 0) return crema_fail(err, "cannot write metrics file %s (disk full?)", m->path);
  return 0;
}

void crema_metrics_close(crema_metrics *m) {
  if (m->f) fclose(m->f);
  free(m->path);
  if (m->columns)
    for (int i = 0; i < m->n_columns; i++) free(m->columns[i]);
  free(m->columns);
  memset(m, 0, sizeof *m);
}
