/* RMSProp: h = rms_decay * h + (1 - rms_decay) * g^2; update = local_rate * g / (sqrt(h) + delta). */
#include <math.h>
#include <stddef.h>

#include "solver/update.h"

static void rmsprop_compute(size_t n, float *diff, float *const *hist, float local_rate,
                            const crema_update_hparams *hp, int iter) {
  (void)iter;
  float *h = hist[0];
  const float d = hp->rms_decay, delta = hp->delta;
  for (size_t i = 0; i < n; i++) {
    const float g = diff[i];
    h[i] = (1.0f - d) * (g * g) + d * h[i];
    diff[i] = local_rate * (g / (sqrtf(h[i]) + delta));
  }
}

const crema_update_rule crema_update_rmsprop = {
    .type = "RMSProp", .n_history = 1, .compute = rmsprop_compute};
