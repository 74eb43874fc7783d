/* SGD with momentum: h = momentum * h + local_rate * g; the update is h. */
#include <stddef.h>

#include "solver/update.h"

static void sgd_compute(size_t n, float *diff, float *const *hist, float local_rate,
                        const crema_update_hparams *hp, int iter) {
  (void)iter;
  float *h = hist[0];
  const float m = hp->momentum;
  for (size_t i = 0; i < n; i++) {
    h[i] = local_rate * diff[i] + m * h[i];
    diff[i] = h[i];
  }
}

const crema_update_rule crema_update_sgd = {.type = "SGD", .n_history = 1, .compute = sgd_compute};
