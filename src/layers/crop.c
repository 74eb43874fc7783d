/* crop.c -- Caffe's "Crop": cuts bottom[0] to the shape of bottom[1] from `axis` on.
 *   top shape: bottom[0]'s on axes < axis, bottom[1]'s on axes >= axis
 *   top[i_0 .. i_n] = bottom[0][i_0 + o_0 .. i_n + o_n], o_k = 0 for k < axis, else the offset
 *   (one crop_param offset for every cropped axis, or one per cropped axis; none = 0)
 *   d bottom[0] = d top inside the window, 0 outside; bottom[1] only gives a shape. */
#include <stdlib.h>
#include <string.h>

#include "layers/layer.h"
#include "layers/loss_common.h"

typedef struct crop_state {
  int offset[CREMA_MAX_AXES];
} crop_state;

static int crop_setup(crema_layer *l, crema_blob *const *bottom, crema_blob *const *top, crema_error *err) {
  (void)bottom;
  (void)top;
  crop_state *s = calloc(1, sizeof *s);
  if (!s) return crema_fail(err, "out of memory");
  l->state = s;
  return 0;
}

static int crop_reshape(crema_layer *l, crema_blob *const *bottom, crema_blob *const *top, crema_error *err) {
  crop_state *s = l->state;
  const Crema__CropParameter def = CREMA__CROP_PARAMETER__INIT;
  const Crema__CropParameter *p = l->param->crop_param ? l->param->crop_param : &def;
  char a[256], b[256];
  if (bottom[0]->num_axes != bottom[1]->num_axes)
    return crema_fail(err, "both bottoms need the same number of axes, got %s and %s",
                      crema_blob_shape_string(bottom[0], a, sizeof a),
                      crema_blob_shape_string(bottom[1], b, sizeof b));
  int axis = crema_layer_axis(bottom[0], p->axis, "crop_param axis", err);
  if (axis < 0) return -1;
  const int n_crop = bottom[0]->num_axes - axis;
  if (p->n_offset > 1 && p->n_offset != (size_t)n_crop)
    return crema_fail(err, "crop_param gives %zu offsets for %d cropped axes; give one, or one per axis",
                      p->n_offset, n_crop);
  int shape[CREMA_MAX_AXES];
  for (int i = 0; i < bottom[0]->num_axes; i++) {
    s->offset[i] = 0;
    shape[i] = bottom[0]->shape[i];
    if (i < axis) continue;
    const uint32_t o = p->n_offset == 0 ? 0 : p->offset[p->n_offset == 1 ? 0 : (size_t)(i - axis)];
    if ((uint64_t)o + (uint64_t)bottom[1]->shape[i] > (uint64_t)bottom[0]->shape[i])
      return crema_fail(
          err, "axis %d: offset %u + size %d exceeds the size %d of the first bottom (%s cropped to %s)", i,
          o, bottom[1]->shape[i], bottom[0]->shape[i], crema_blob_shape_string(bottom[0], a, sizeof a),
          crema_blob_shape_string(bottom[1], b, sizeof b));
    s->offset[i] = (int)o;
    shape[i] = bottom[1]->shape[i];
  }
  return crema_blob_reshape(top[0], bottom[0]->num_axes, shape, err);
}

/* Calls copy for every row (run along the last axis) of the top: the offsets of the row in
 * the top and in bottom[0]. to_top chooses the direction. */
static void crop_rows(const crop_state *s, const crema_blob *big, const crema_blob *small, const float *src,
                      float *dst, bool to_small) {
  const int na = big->num_axes;
  if (small->count == 0) return;
  if (na == 0) {
    dst[0] = src[0];
    return;
  }
  const int last = na - 1, len = small->shape[last];
  const size_t rows = small->count / (size_t)len;
  int idx[CREMA_MAX_AXES] = {0};
  for (size_t r = 0; r < rows; r++) {
    size_t ob = 0;
    for (int k = 0; k < na; k++) ob = ob * (size_t)big->shape[k] + (size_t)(idx[k] + s->offset[k]);
    const size_t os = r * (size_t)len;
    if (to_small)
      memcpy(dst + os, src + ob, (size_t)len * sizeof(float));
    else
      memcpy(dst + ob, src + os, (size_t)len * sizeof(float));
    for (int k = last - 1; k >= 0; k--) {
      if (++idx[k] < small->shape[k]) break;
      idx[k] = 0;
    }
  }
}

static int crop_forward(crema_layer *l, crema_blob *const *bottom, crema_blob *const *top, crema_error *err) {
  (void)err;
  crop_rows(l->state, bottom[0], top[0], bottom[0]->data, top[0]->data, true);
  return 0;
}

static void crop_backward(crema_layer *l, crema_blob *const *top, const bool *propagate_down,
                          crema_blob *const *bottom) {
  if (!propagate_down[0]) return;
  memset(bottom[0]->diff, 0, bottom[0]->count * sizeof(float));
  crop_rows(l->state, bottom[0], top[0], top[0]->diff, bottom[0]->diff, false);
}

static void crop_free(crema_layer *l) { free(l->state); }

const crema_layer_ops crema_crop_ops = {
    .type = "Crop",
    .min_bottoms = 2,
    .max_bottoms = 2,
    .min_tops = 1,
    .max_tops = 1,
    .setup = crop_setup,
    .reshape = crop_reshape,
    .forward = crop_forward,
    .backward = crop_backward,
    .free_state = crop_free,
};
