/* AdaDelta (Zeiler 2012) as Caffe does it, with momentum as the decay rate:
 *   h1 = m * h1 + (1 - m) * g^2
 *   u  = g * sqrt((h2 + delta) / (h1 + delta))
 *   h2 = m * h2 + (1 - m) * u^2
 *   update = local_rate * u          (the learning rate is applied last) */
#include <math.h>
#include <stddef.h>

#include "solver/update.h"

static void adadelta_compute(size_t n, float *diff, float *const *hist, float local_rate,
                             const crema_update_hparams *hp, int iter) {
  (void)iter;
  float *h1 = hist[0], *h2 = hist[1];
  const float m = hp->momentum, delta = hp->delta;
  for (size_t i = 0; i < n; i++) {
    const float g = diff[i];
    h1[i] = (1.0f - m) * (g * g) + m * h1[i];
    const float u = g * sqrtf((h2[i] + delta) / (h1[i] + delta));
    h2[i] = (1.0f - m) * (u * u) + m * h2[i];
    diff[i] = local_rate * u;
  }
}

const crema_update_rule crema_update_adadelta = {
    .type = "AdaDelta", .n_history = 2, .compute = adadelta_compute};
