/* solver_internal.h -- the solver's private data, shared by solver.c, snapshot.c,
 * metrics.c and early_stop.c only. */
#ifndef CREMA_SOLVER_SOLVER_INTERNAL_H
#define CREMA_SOLVER_SOLVER_INTERNAL_H

#include <stdio.h>
#include <time.h>

#include "solver/early_stop.h"
#include "solver/lr_policy.h"
#include "solver/metrics.h"
#include "solver/solver.h"
#include "solver/update.h"

typedef struct solver_test_net {
  crema_net *net;
  int iters;
  int *train_layer; /* per test layer: the train layer sharing its weights, or -1 */
  double *scores;   /* sum over batches of every output element */
  float *means;     /* last round's means */
  size_t n_scores;
  bool has_result;
} solver_test_net;

struct crema_solver {
  Crema__SolverParameter *param; /* owned copy */
  crema_solver_action_fn action;
  void *action_ctx;
  crema_solver_hooks hooks[CREMA_SOLVER_MAX_HOOKS];
  int n_hooks;
  int max_iter;
  uint64_t seed;

  crema_net *net;
  int n_test;
  solver_test_net *tests;

  const crema_update_rule *rule;
  crema_update_config cfg;
  crema_lr_policy lr;
  int n_params;
  crema_update_param *up; /* views into the net's params, refreshed each step */
  float **hist;           /* n_params * rule->n_history arrays */

  int iter, current_step;
  int rank, n_ranks; /* data-parallel training: this process and how many train together */
  float rate;

  /* Smoothed loss: Caffe's ring of the last average_loss losses. */
  int average_loss;
  float *losses;
  int n_losses, window_start;
  float smoothed_loss;
  bool window_restored;

  bool requested_early_exit;
  bool resumed; /* restored from a solverstate: the metrics CSV is appended to */
  bool tested_this_iter;
  char *prefix;

  crema_early_stop es;
  crema_metrics metrics;

  struct timespec t_start;
  double seconds_before; /* training seconds of the runs this one resumes (for the CSV) */
};

/* Seconds since the solver started training (for logs and the CSV). */
double crema_solver_seconds(const crema_solver *s);

#endif
