/* diagnostics.c -- activation, gradient and update statistics through solver hooks. */
#include "report/diagnostics.h"

#include <errno.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "base/log.h"

typedef struct act_stat {
  int layer;
  const char *name;
  crema_blob *top;
  int units;
  unsigned char *fired; /* per unit, over the window */
  double zero_sum;      /* sum over the window's iterations of the fraction <= 0 */
  int iters;
} act_stat;

typedef struct param_stat {
  const crema_net_param *p;
  char name[160];
  size_t offset; /* into saved */
  double grad_l2, weight_l2;
} param_stat;

struct crema_diagnostics {
  crema_net *net;
  int every;
  bool quiet, report_now;
  int n_act, n_param;
  act_stat *act;
  param_stat *param;
  float *saved; /* weights before the update, at reporting iterations */
  char *csv_path;
  FILE *csv;
  int rows;
  double seconds; /* spent inside the hooks */
  int iterations;
};

static double now(void) {
  struct timespec t;
  clock_gettime(CLOCK_MONOTONIC, &t);
  return (double)t.tv_sec + 1e-9 * (double)t.tv_nsec;
}

static bool relu_family(const char *type) {
  return type &&
         (!strcmp(type, "ReLU") || !strcmp(type, "PReLU") || !strcmp(type, "ELU") || !strcmp(type, "RReLU"));
}

/* One pass over a top: fraction <= 0, and which units fired. Unit = index along axis 1. */
static void scan_top(act_stat *a) {
  const crema_blob *b = a->top;
  if (!b->count) return;
  const size_t n = b->num_axes > 0 ? (size_t)b->shape[0] : 1;
  const size_t c = b->num_axes > 1 ? (size_t)b->shape[1] : 1;
  const size_t inner = b->count / (n * c > 0 ? n * c : 1);
  size_t zeros = 0;
  for (size_t i = 0; i < n; i++)
    for (size_t k = 0; k < c; k++) {
      const float *p = b->data + (i * c + k) * inner;
      size_t z = 0;
      for (size_t j = 0; j < inner; j++) z += p[j] <= 0.0f;
      zeros += z;
      if (z < inner && k < (size_t)a->units) a->fired[k] = 1;
    }
  a->zero_sum += (double)zeros / (double)b->count;
  a->iters++;
}

static double l2(const float *x, size_t n) {
  double s = 0;
  for (size_t i = 0; i < n; i++) s += (double)x[i] * x[i];
  return sqrt(s);
}

static int after_backward(void *ctx, crema_solver *s, crema_error *err) {
  (void)err;
  crema_diagnostics *d = ctx;
  const double t0 = now();
  const int iter = crema_solver_iter(s);
  for (int i = 0; i < d->n_act; i++) scan_top(&d->act[i]);
  d->iterations++;
  d->report_now = iter % d->every == 0;
  if (!d->report_now) {
    d->seconds += now() - t0;
    return 0;
  }
  for (int i = 0; i < d->n_param; i++) {
    param_stat *ps = &d->param[i];
    const crema_blob *b = ps->p->blob;
    ps->grad_l2 = l2(b->diff, b->count);
    ps->weight_l2 = l2(b->data, b->count);
    memcpy(d->saved + ps->offset, b->data, b->count * sizeof(float));
  }
  d->seconds += now() - t0;
  return 0;
}

static void cell(FILE *f, double v) {
  if (isfinite(v))
    fprintf(f, ",%.6g", v);
  else
    fprintf(f, ",");
}

static void on_iteration(void *ctx, const crema_solver *s, int iter, float loss, float lr) {
  (void)s, (void)loss, (void)lr;
  crema_diagnostics *d = ctx;
  if (!d->report_now) return;
  const double t0 = now();
  d->report_now = false;
  if (!d->quiet) {
    CREMA_INFO("Diagnostics at iteration %d (activations over the last %d iterations):", iter,
               d->n_act ? d->act[0].iters : 0);
    if (d->n_act) CREMA_INFO("    %-24s %9s %14s", "layer", "<=0 frac", "dead units");
  }
  for (int i = 0; i < d->n_act; i++) {
    act_stat *a = &d->act[i];
    int dead = 0;
    for (int k = 0; k < a->units; k++) dead += !a->fired[k];
    const double zf = a->iters ? a->zero_sum / a->iters : NAN;
    if (!d->quiet) CREMA_INFO("    %-24s %9.3f %8d / %-5d", a->name, zf, dead, a->units);
    if (d->csv) {
      fprintf(d->csv, "%d,%s,0,activation", iter, a->name);
      cell(d->csv, zf);
      fprintf(d->csv, ",%d,%d,,,\n", dead, a->units);
      d->rows++;
    }
    memset(a->fired, 0, (size_t)a->units);
    a->zero_sum = 0;
    a->iters = 0;
  }
  if (!d->quiet && d->n_param)
    CREMA_INFO("    %-24s %11s %11s %13s", "param", "grad L2", "weight L2", "update/weight");
  for (int i = 0; i < d->n_param; i++) {
    param_stat *ps = &d->param[i];
    const crema_blob *b = ps->p->blob;
    double du = 0;
    const float *w0 = d->saved + ps->offset;
    for (size_t k = 0; k < b->count; k++) {
      const double diff = (double)b->data[k] - w0[k];
      du += diff * diff;
    }
    const double ratio = ps->weight_l2 > 0 ? sqrt(du) / ps->weight_l2 : NAN;
    if (!d->quiet) CREMA_INFO("    %-24s %11.4g %11.4g %13.4g", ps->name, ps->grad_l2, ps->weight_l2, ratio);
    if (d->csv) {
      const char *br = strrchr(ps->name, '[');
      fprintf(d->csv, "%d,%.*s,%d,param,,,", iter, br ? (int)(br - ps->name) : (int)strlen(ps->name),
              ps->name, ps->p->index);
      cell(d->csv, ps->grad_l2);
      cell(d->csv, ps->weight_l2);
      cell(d->csv, ratio);
      fprintf(d->csv, "\n");
      d->rows++;
    }
  }
  if (d->csv) fflush(d->csv);
  d->seconds += now() - t0;
}

int crema_diagnostics_attach(crema_solver *s, const crema_diagnostics_options *opt, crema_diagnostics **out,
                             crema_error *err) {
  crema_diagnostics *d = calloc(1, sizeof *d);
  if (!d) return crema_fail(err, "out of memory");
  d->net = crema_solver_net(s);
  const Crema__SolverParameter *sp = crema_solver_param(s);
  d->every = opt && opt->every > 0 ? opt->every : sp->display > 0 ? sp->display : 100;
  d->quiet = opt && opt->quiet;
  const int nl = crema_net_num_layers(d->net);
  d->act = calloc((size_t)nl + 1, sizeof *d->act);
  d->n_param = crema_net_num_params(d->net);
  d->param = calloc((size_t)d->n_param + 1, sizeof *d->param);
  if (!d->act || !d->param) goto oom;
  for (int i = 0; i < nl; i++) {
    const Crema__LayerParameter *lp = crema_net_layer_param(d->net, i);
    const int *tops;
    if (!relu_family(lp->type) || crema_net_layer_tops(d->net, i, &tops) < 1) continue;
    act_stat *a = &d->act[d->n_act];
    a->layer = i;
    a->name = crema_net_layer_name(d->net, i);
    a->top = crema_net_blob(d->net, tops[0]);
    a->units = a->top->num_axes > 1 ? a->top->shape[1] : 1;
    if (!(a->fired = calloc((size_t)a->units + 1, 1))) goto oom;
    d->n_act++;
  }
  size_t total = 0;
  for (int i = 0; i < d->n_param; i++) {
    param_stat *ps = &d->param[i];
    ps->p = crema_net_param_at(d->net, i);
    snprintf(ps->name, sizeof ps->name, "%s[%d]", crema_net_layer_name(d->net, ps->p->layer), ps->p->index);
    ps->offset = total;
    total += ps->p->blob->count;
  }
  if (!(d->saved = malloc((total + 1) * sizeof(float)))) goto oom;
  if (opt && opt->csv_path) {
    d->csv_path = strdup(opt->csv_path);
  } else {
    const char *prefix = crema_solver_snapshot_prefix(s);
    size_t len = strlen(prefix) + 20;
    if ((d->csv_path = malloc(len))) snprintf(d->csv_path, len, "%s_diagnostics.csv", prefix);
  }
  if (!d->csv_path) goto oom;
  static const char HEADER[] =
      "iteration,layer,blob,kind,zero_fraction,dead_units,units,grad_l2,weight_l2,update_ratio\n";
  bool append = false;
  if (opt && opt->append) {
    FILE *old = fopen(d->csv_path, "r");
    char first[sizeof HEADER + 8] = "";
    if (old) {
      append = fgets(first, sizeof first, old) && !strcmp(first, HEADER);
      fclose(old);
    }
  }
  d->csv = fopen(d->csv_path, append ? "a" : "w");
  if (!d->csv) {
    int e = errno;
    crema_fail(err, "cannot write the diagnostics file %s: %s; check that its folder exists and is writable",
               d->csv_path, strerror(e));
    crema_diagnostics_free(d);
    return -1;
  }
  if (!append) fputs(HEADER, d->csv);
  fflush(d->csv);
  crema_solver_hooks h = {.ctx = d, .after_backward = after_backward, .on_iteration = on_iteration};
  if (crema_solver_add_hooks(s, &h, err)) {
    crema_diagnostics_free(d);
    return -1;
  }
  CREMA_INFO("Diagnostics every %d iterations: %d ReLU-family layers, %d parameter blobs -> %s", d->every,
             d->n_act, d->n_param, d->csv_path);
  *out = d;
  return 0;
oom:
  crema_diagnostics_free(d);
  return crema_fail(err, "out of memory for the diagnostics buffers");
}

void crema_diagnostics_free(crema_diagnostics *d) {
  if (!d) return;
  if (d->csv) fclose(d->csv);
  for (int i = 0; d->act && i < d->n_act; i++) free(d->act[i].fired);
  free(d->act);
  free(d->param);
  free(d->saved);
  free(d->csv_path);
  free(d);
}

const char *crema_diagnostics_csv_path(const crema_diagnostics *d) { return d->csv_path; }
int crema_diagnostics_rows(const crema_diagnostics *d) { return d->rows; }
double crema_diagnostics_seconds(const crema_diagnostics *d, int *iterations) {
  if (iterations) *iterations = d->iterations;
  return d->seconds;
}
