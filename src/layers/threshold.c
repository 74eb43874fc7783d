/* threshold.c -- Caffe's "Threshold":
 *   top = x > threshold ? 1 : 0
 * A step function: no gradient (Caffe does not implement its backward either), so the
 * layer has none and the net never propagates through it. In-place allowed. */
#include <stdlib.h>

#include "layers/layer.h"
#include "tensor/math.h"

typedef struct threshold_state {
  float threshold;
} threshold_state;

static int threshold_setup(crema_layer *l, crema_blob *const *bottom, crema_blob *const *top,
                           crema_error *err) {
  (void)bottom;
  (void)top;
  threshold_state *s = calloc(1, sizeof *s);
  if (!s) return crema_fail(err, "out of memory");
  l->state = s;
  s->threshold = l->param->threshold_param ? l->param->threshold_param->threshold : 0.0f;
  return 0;
}

static int threshold_forward(crema_layer *l, crema_blob *const *bottom, crema_blob *const *top,
                             crema_error *err) {
  (void)err;
  const threshold_state *s = l->state;
  const size_t n = bottom[0]->count;
  const float *x = bottom[0]->data;
  float *y = top[0]->data;
  const float t = s->threshold;
#pragma omp parallel for if (n > CREMA_PAR_MIN) schedule(static)
  for (size_t i = 0; i < n; i++) y[i] = x[i] > t ? 1.0f : 0.0f;
  return 0;
}

static void threshold_free(crema_layer *l) { free(l->state); }

const crema_layer_ops crema_threshold_ops = {
    .type = "Threshold",
    .min_bottoms = 1,
    .max_bottoms = 1,
    .min_tops = 1,
    .max_tops = 1,
    .allow_inplace = true,
    .setup = threshold_setup,
    .reshape = crema_reshape_like_bottom,
    .forward = threshold_forward,
    .free_state = threshold_free,
};
