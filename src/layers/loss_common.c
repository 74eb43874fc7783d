#include "layers/loss_common.h"

#include <math.h>
#include <string.h>

void crema_softmax_cpu(const float *in, float *out, int outer, int channels, int inner) {
  const size_t dim = (size_t)channels * (size_t)inner;
  const size_t total = (size_t)outer * (size_t)inner;
  /* One iteration = one (outer, inner) position; positions are independent. */
#pragma omp parallel for if (total * (size_t)channels > CREMA_LAYER_PAR_MIN) schedule(static)
  for (size_t pos = 0; pos < total; pos++) {
    const size_t i = pos / (size_t)inner, j = pos % (size_t)inner;
    const float *x = in + i * dim + j;
    float *y = out + i * dim + j;
    float m = x[0];
    for (int c = 1; c < channels; c++) m = fmaxf(m, x[(size_t)c * inner]);
    float sum = 0.0f;
    for (int c = 0; c < channels; c++) {
      float e = expf(x[(size_t)c * inner] - m);
      y[(size_t)c * inner] = e;
      sum += e;
    }
    /* sum >= 1 because the maximum contributes exp(0). */
    const float inv = 1.0f / sum;
    for (int c = 0; c < channels; c++) y[(size_t)c * inner] *= inv;
  }
}

Crema__LossParameter__NormalizationMode crema_loss_mode(const Crema__LossParameter *lp,
                                                        Crema__LossParameter__NormalizationMode fallback) {
  if (!lp) return fallback;
  if (lp->has_normalization) return lp->normalization;
  if (lp->has_normalize)
    return lp->normalize ? CREMA__LOSS_PARAMETER__NORMALIZATION_MODE__VALID
                         : CREMA__LOSS_PARAMETER__NORMALIZATION_MODE__BATCH_SIZE;
  return fallback;
}

float crema_loss_normalizer(Crema__LossParameter__NormalizationMode mode, int outer, int inner,
                            int valid_count) {
  double n;
  switch (mode) {
  case CREMA__LOSS_PARAMETER__NORMALIZATION_MODE__FULL: n = (double)outer * inner; break;
  case CREMA__LOSS_PARAMETER__NORMALIZATION_MODE__VALID:
    n = valid_count < 0 ? (double)outer * inner : (double)valid_count;
    break;
  case CREMA__LOSS_PARAMETER__NORMALIZATION_MODE__BATCH_SIZE: n = outer; break;
  default: n = 1.0; break;
  }
  return (float)fmax(1.0, n);
}

bool crema_label_to_int(float v, int *out) {
  if (!(v > -2147483648.0f && v < 2147483648.0f)) return false; /* also rejects NaN */
  *out = (int)v;
  return true;
}

int crema_layer_axis(const crema_blob *b, int axis, const char *what, crema_error *err) {
  if (axis < -b->num_axes || axis >= b->num_axes) {
    char shape[256];
    return crema_fail(err, "%s %d is out of range for bottom shape %s (valid: %d to %d)", what, axis,
                      crema_blob_shape_string(b, shape, sizeof shape), -b->num_axes, b->num_axes - 1);
  }
  return axis < 0 ? axis + b->num_axes : axis;
}

int crema_loss_reshape_top(crema_blob *top, crema_error *err) {
  return crema_blob_reshape(top, 0, NULL, err);
}

int crema_copy_through_forward(crema_layer *l, crema_blob *const *bottom, crema_blob *const *top,
                               crema_error *err) {
  (void)l;
  (void)err;
  if (bottom[0]->count) memcpy(top[0]->data, bottom[0]->data, bottom[0]->count * sizeof(float));
  return 0;
}

void crema_copy_through_backward(crema_layer *l, crema_blob *const *top, const bool *propagate_down,
                                 crema_blob *const *bottom) {
  (void)l;
  if (propagate_down[0] && bottom[0]->count)
    memcpy(bottom[0]->diff, top[0]->diff, bottom[0]->count * sizeof(float));
}
