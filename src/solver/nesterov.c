/* Nesterov's accelerated gradient, Caffe's form:
 *   h' = momentum * h + local_rate * g;  update = (1 + momentum) * h' - momentum * h. */
#include <stddef.h>

#include "solver/update.h"

static void nesterov_compute(size_t n, float *diff, float *const *hist, float local_rate,
                             const crema_update_hparams *hp, int iter) {
  (void)iter;
  float *h = hist[0];
  const float m = hp->momentum;
  for (size_t i = 0; i < n; i++) {
    const float old = h[i];
    h[i] = local_rate * diff[i] + m * h[i];
    diff[i] = (1.0f + m) * h[i] - m * old;
  }
}

const crema_update_rule crema_update_nesterov = {
    .type = "Nesterov", .n_history = 1, .compute = nesterov_compute};
