/* lr_find.c -- the learning-rate range test over crema's solver (see lr_find.h). */
#include "report/lr_find.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "base/log.h"
#include "proto/io.h"
#include "solver/solver.h"

typedef struct ramp {
  crema_lr_find_result *r;
  int cap;
  double beta, avg, best, diverge;
  bool stop;
} ramp;

static void on_iteration(void *ctx, const crema_solver *s, int iter, float loss, float lr) {
  (void)s;
  ramp *rp = ctx;
  crema_lr_find_result *r = rp->r;
  if (r->n >= rp->cap) return;
  rp->avg = rp->beta * rp->avg + (1 - rp->beta) * loss;
  const double sm = rp->avg / (1 - pow(rp->beta, iter + 1));
  r->lr[r->n] = lr;
  r->loss[r->n] = loss;
  r->smooth[r->n] = sm;
  r->n++;
  if (sm < rp->best || r->n == 1) rp->best = sm;
  if (!isfinite(loss) || (r->n > 1 && sm > rp->diverge * rp->best)) {
    rp->stop = true;
    r->diverged = true;
  }
}

static crema_solver_action action(void *ctx) {
  const ramp *rp = ctx;
  return rp->stop ? CREMA_SOLVER_ACTION_STOP : CREMA_SOLVER_ACTION_NONE;
}

int crema_lr_find_steepest(const double *lr, const double *smooth, int n) {
  if (n < 8) return -1;
  int lo = n / 10 > 1 ? n / 10 : 1, hi = n - 5;
  int best = -1;
  double best_slope = 0;
  for (int i = lo; i < hi; i++) {
    const double dx = log(lr[i + 1]) - log(lr[i - 1]);
    if (!(dx > 0) || !isfinite(smooth[i + 1]) || !isfinite(smooth[i - 1])) continue;
    const double slope = (smooth[i + 1] - smooth[i - 1]) / dx;
    if (best < 0 || slope < best_slope) best = i, best_slope = slope;
  }
  return best;
}

void crema_lr_find_result_free(crema_lr_find_result *r) {
  free(r->lr);
  free(r->loss);
  free(r->smooth);
  memset(r, 0, sizeof *r);
}

int crema_lr_find(const Crema__SolverParameter *param, const crema_lr_find_options *opt,
                  crema_lr_find_result *out, crema_error *err) {
  memset(out, 0, sizeof *out);
  out->suggested = out->min_loss_lr = NAN;
  const double start = opt->start > 0 ? opt->start : 1e-6, end = opt->end > 0 ? opt->end : 1;
  const int iters = opt->iterations > 0 ? opt->iterations : 100;
  if (!(start < end) || !isfinite(end))
    return crema_fail(err, "lr-find: --start (%g) must be below --end (%g), both positive", start, end);
  if (iters < 5 || iters > 100000)
    return crema_fail(err, "lr-find: --iterations %d is out of range (5..100000)", iters);
  Crema__SolverParameter *p = crema_message_copy(&param->base);
  if (!p) return crema_fail(err, "out of memory");
  /* The ramp's own schedule; fields whose memory the message owns are swapped back before
   * it is freed. */
  char *saved_policy = p->lr_policy;
  Crema__EarlyStoppingParameter *saved_es = p->early_stopping;
  const size_t saved_n[4] = {p->n_test_iter, p->n_test_net, p->n_test_net_param, p->n_test_state};
  char exp_policy[] = "exp";
  p->lr_policy = exp_policy;
  p->early_stopping = NULL;
  p->n_test_iter = p->n_test_net = p->n_test_net_param = p->n_test_state = 0;
  p->base_lr = (float)start;
  p->has_gamma = true;
  p->gamma = (float)pow(end / start, 1.0 / (iters - 1));
  p->max_iter = iters;
  p->has_snapshot = true;
  p->snapshot = 0;
  p->has_snapshot_after_train = true;
  p->snapshot_after_train = false;
  p->has_display = true;
  p->display = 0;
  p->has_average_loss = true;
  p->average_loss = 1;
  p->has_test_interval = true;
  p->test_interval = 0;
  p->has_test_initialization = true;
  p->test_initialization = false;
  p->has_metrics_csv = true;
  p->metrics_csv = false;
  p->has_warmup_iter = true;
  p->warmup_iter = 0;

  ramp rp = {.r = out,
             .cap = iters,
             .beta = opt->beta > 0 && opt->beta < 1 ? opt->beta : 0.98,
             .diverge = opt->diverge > 1 ? opt->diverge : 4};
  out->lr = calloc((size_t)iters, sizeof *out->lr);
  out->loss = calloc((size_t)iters, sizeof *out->loss);
  out->smooth = calloc((size_t)iters, sizeof *out->smooth);
  int rc = 0;
  if (!out->lr || !out->loss || !out->smooth) rc = crema_fail(err, "out of memory");
  crema_solver_options so;
  memset(&so, 0, sizeof so);
  so.solver_path = opt->solver_path;
  so.action = action;
  so.action_ctx = &rp;
  so.hooks.ctx = &rp;
  so.hooks.on_iteration = on_iteration;
  crema_solver *s = NULL;
  if (!rc && crema_solver_create(p, &so, &s, err)) rc = -1;
  for (int i = 0; !rc && i < opt->n_weights; i++)
    if (crema_solver_copy_weights(s, opt->weights[i], err)) rc = -1;
  if (!rc) {
    CREMA_INFO("lr-find: %d iterations, lr from %g to %g (x%.4g per iteration)", iters, start, end,
               (double)p->gamma);
    if (crema_solver_solve(s, err)) {
      /* A non-finite loss or gradient is the divergence we are looking for. */
      if (out->n > 0 && strstr(err->msg, "non-finite")) {
        CREMA_INFO("lr-find: stopped at iteration %d: %s", out->n, err->msg);
        out->diverged = true;
      } else
        rc = -1;
    }
  }
  crema_solver_free(s);
  p->lr_policy = saved_policy;
  p->early_stopping = saved_es;
  p->n_test_iter = saved_n[0], p->n_test_net = saved_n[1], p->n_test_net_param = saved_n[2];
  p->n_test_state = saved_n[3];
  crema_message_free(p);
  if (!rc && out->n == 0) rc = crema_fail(err, "lr-find: no iteration completed");
  if (rc) {
    crema_lr_find_result_free(out);
    return -1;
  }
  int best = 0;
  for (int i = 1; i < out->n; i++)
    if (out->smooth[i] < out->smooth[best]) best = i;
  out->min_loss_lr = out->lr[best];
  /* Only the part of the curve before the blow-up counts: up to the minimum's rate x4 at most. */
  int usable = out->n;
  if (out->diverged) {
    usable = best + 1;
    while (usable < out->n && out->lr[usable] <= out->lr[best] * 4) usable++;
  }
  int k = crema_lr_find_steepest(out->lr, out->smooth, usable);
  out->suggested = k >= 0 ? out->lr[k] : out->lr[best] / 10;
  return 0;
}
