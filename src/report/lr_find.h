/* lr_find.h -- the learning-rate range test (Smith 2015; fastai's lr_find): train a short
 * run from the given weights while the rate rises exponentially from `start` to `end`,
 * record the loss at each step, stop when the smoothed loss diverges, and suggest the rate
 * where the smoothed loss falls fastest.
 *
 * The run uses the solver's net, update rule, momentum, weight decay, iter_size and seed,
 * but its own schedule: lr_policy "exp" from start to end over `iterations`, every
 * iteration's raw loss (average_loss 1), no test nets, no display, no metrics CSV, no early
 * stopping and no snapshot at all -- nothing is written to disk. The caller's message is not
 * changed. The result owns its arrays; free with crema_lr_find_result_free. */
#ifndef CREMA_REPORT_LR_FIND_H
#define CREMA_REPORT_LR_FIND_H

#include <stdbool.h>

#include "base/error.h"
#include "proto/crema.pb-c.h"

typedef struct crema_lr_find_options {
  double start, end;          /* rates: 0 < start < end (defaults 1e-6 and 1 when 0) */
  int iterations;             /* steps of the ramp (default 100 when 0; at least 5) */
  double diverge;             /* stop when smoothed loss > diverge * best (default 4) */
  double beta;                /* smoothing: exponential moving average (default 0.98) */
  const char *const *weights; /* caffemodels copied by layer name before the ramp */
  int n_weights;
  const char *solver_path; /* for resolving the net file and messages; may be NULL */
} crema_lr_find_options;

typedef struct crema_lr_find_result {
  int n;                      /* steps recorded */
  double *lr, *loss, *smooth; /* n each */
  bool diverged;              /* stopped early because the loss blew up (or became NaN) */
  double suggested;           /* rate at the steepest descent of the smoothed loss; NAN if none */
  double min_loss_lr;         /* rate at the lowest smoothed loss */
} crema_lr_find_result;

int crema_lr_find(const Crema__SolverParameter *param, const crema_lr_find_options *opt,
                  crema_lr_find_result *out, crema_error *err);
void crema_lr_find_result_free(crema_lr_find_result *r);

/* The suggestion alone, on a recorded curve: the index of the most negative slope of
 * smooth against log(lr), ignoring the first 10% of the points and the last 5 before the end
 * (they are dominated by warm-up noise and by the blow-up). -1 when fewer than 8 points. */
int crema_lr_find_steepest(const double *lr, const double *smooth, int n);

#endif
