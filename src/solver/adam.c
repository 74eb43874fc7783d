/* Adam (Kingma & Ba) as Caffe does it: beta1 = momentum, beta2 = momentum2, eps = delta,
 *   m = b1 * m + (1 - b1) * g;  v = b2 * v + (1 - b2) * g^2
 *   update = local_rate * sqrt(1 - b2^t) / (1 - b1^t) * m / (sqrt(v) + eps),  t = iter + 1. */
#include <math.h>
#include <stddef.h>

#include "solver/update.h"

static void adam_compute(size_t n, float *diff, float *const *hist, float local_rate,
                         const crema_update_hparams *hp, int iter) {
  float *m = hist[0], *v = hist[1];
  const float b1 = hp->momentum, b2 = hp->momentum2, eps = hp->delta;
  const int t = iter + 1;
  const float correction = sqrtf(1.0f - powf(b2, (float)t)) / (1.0f - powf(b1, (float)t));
  const float scale = local_rate * correction;
  for (size_t i = 0; i < n; i++) {
    const float g = diff[i];
    m[i] = (1.0f - b1) * g + b1 * m[i];
    v[i] = (1.0f - b2) * (g * g) + b2 * v[i];
    diff[i] = scale * (m[i] / (sqrtf(v[i]) + eps));
  }
}

const crema_update_rule crema_update_adam = {.type = "Adam", .n_history = 2, .compute = adam_compute};
