#include "solver/early_stop.h"

crema_early_stop_verdict crema_early_stop_update(crema_early_stop *es, float value, int iter) {
  if (!es->enabled) return CREMA_ES_CONTINUE;
  /* A NaN value never counts as an improvement. */
  const bool better =
      value == value &&
      (!es->has_best || (es->maximize ? value > es->best + es->min_delta : value < es->best - es->min_delta));
  if (better) {
    es->has_best = true;
    es->best = value;
    es->best_iter = iter;
    es->rounds_without_improvement = 0;
    return CREMA_ES_IMPROVED;
  }
  es->rounds_without_improvement++;
  return es->rounds_without_improvement >= es->patience ? CREMA_ES_STOP : CREMA_ES_CONTINUE;
}
