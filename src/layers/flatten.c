/* Flatten: merges axes flatten_param.axis .. end_axis (defaults 1 and -1; negative counts from
 * the end) into one, e.g. (N, C, H, W) -> (N, C*H*W). The data are copied (a plain memcpy;
 * blobs in crema do not share memory), and backward copies the diff back. Not in place. */
#include "layers/layer.h"
#include "layers/loss_common.h"

static int flatten_reshape(crema_layer *l, crema_blob *const *bottom, crema_blob *const *top,
                           crema_error *err) {
  const Crema__FlattenParameter *fp = l->param->flatten_param;
  const crema_blob *b = bottom[0];
  int start = crema_layer_axis(b, fp ? fp->axis : 1, "flatten_param axis", err);
  if (start < 0) return -1;
  int end = crema_layer_axis(b, fp ? fp->end_axis : -1, "flatten_param end_axis", err);
  if (end < 0) return -1;
  if (end < start) return crema_fail(err, "flatten_param end_axis (%d) comes before axis (%d)", end, start);
  int shape[CREMA_MAX_AXES], n = 0;
  for (int i = 0; i < start; i++) shape[n++] = b->shape[i];
  shape[n++] = (int)crema_blob_count_range(b, start, end + 1);
  for (int i = end + 1; i < b->num_axes; i++) shape[n++] = b->shape[i];
  return crema_blob_reshape(top[0], n, shape, err);
}

const crema_layer_ops crema_flatten_ops = {
    .type = "Flatten",
    .min_bottoms = 1,
    .max_bottoms = 1,
    .min_tops = 1,
    .max_tops = 1,
    .reshape = flatten_reshape,
    .forward = crema_copy_through_forward,
    .backward = crema_copy_through_backward,
};
