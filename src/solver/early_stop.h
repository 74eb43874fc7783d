/* early_stop.h -- early stopping on a test output (crema's EarlyStoppingParameter).
 *
 * After each test round the watched value is offered; an improvement (by more than
 * min_delta, in the direction of `mode`) resets the count and asks the caller to save
 * <prefix>_best.caffemodel; `patience` rounds in a row without one ask it to stop. */
#ifndef CREMA_SOLVER_EARLY_STOP_H
#define CREMA_SOLVER_EARLY_STOP_H

#include <stdbool.h>

typedef struct crema_early_stop {
  bool enabled;
  const char *metric; /* borrowed from the SolverParameter */
  bool maximize;
  int patience;
  float min_delta;
  /* state (saved in crema's solverstate) */
  bool has_best;
  float best;
  int best_iter;
  int rounds_without_improvement;
} crema_early_stop;

typedef enum { CREMA_ES_CONTINUE = 0, CREMA_ES_IMPROVED, CREMA_ES_STOP } crema_early_stop_verdict;

/* Offers one test round's value at iteration iter. */
crema_early_stop_verdict crema_early_stop_update(crema_early_stop *es, float value, int iter);

#endif
