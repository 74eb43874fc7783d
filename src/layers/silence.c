/* Silence: consumes any number of bottoms and produces nothing, so that unused tops do not
 * show up as net outputs. Backward zeroes the bottom diffs it is asked for (Caffe does the
 * same: nothing flows back from a silenced blob). */
#include "layers/layer.h"

static int silence_forward(crema_layer *l, crema_blob *const *bottom, crema_blob *const *top,
                           crema_error *err) {
  (void)l;
  (void)bottom;
  (void)top;
  (void)err;
  return 0;
}

static void silence_backward(crema_layer *l, crema_blob *const *top, const bool *propagate_down,
                             crema_blob *const *bottom) {
  (void)top;
  for (int i = 0; i < l->n_bottom; i++)
    if (propagate_down[i]) crema_blob_zero_diff(bottom[i]);
}

const crema_layer_ops crema_silence_ops = {
    .type = "Silence",
    .min_bottoms = 1,
    .max_bottoms = -1,
    .min_tops = 0,
    .max_tops = 0,
    .forward = silence_forward,
    .backward = silence_backward,
};
