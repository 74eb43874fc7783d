#include "layers/loss_common.h"
#include "tensor/math.h"

#include <math.h>
#include <string.h>

/* One row of `channels` contiguous values (inner == 1, the classifier case). */
static void softmax_row(const float *x, float *y, int channels) {
  float m = x[0];
  for (int c = 1; c < channels; c++) m = fmaxf(m, x[c]);
  float sum = 0.0f;
  for (int c = 0; c < channels; c++) {
    y[c] = expf(x[c] - m);
    sum += y[c];
  }
  /* sum >= 1 because the maximum contributes exp(0). */
  const float inv = 1.0f / sum;
  for (int c = 0; c < channels; c++) y[c] *= inv;
}

/* Positions j0 .. j0 + n of one outer index: x and y point at channel 0, position j0. */
static void softmax_block(const float *x, float *y, int channels, size_t inner, int n) {
  float m[CREMA_SOFTMAX_BLOCK], sum[CREMA_SOFTMAX_BLOCK];
  for (int j = 0; j < n; j++) m[j] = x[j];
  for (int c = 1; c < channels; c++)
    for (int j = 0; j < n; j++) m[j] = fmaxf(m[j], x[(size_t)c * inner + j]);
  for (int j = 0; j < n; j++) sum[j] = 0.0f;
  for (int c = 0; c < channels; c++)
    for (int j = 0; j < n; j++) {
      float e = expf(x[(size_t)c * inner + j] - m[j]);
      y[(size_t)c * inner + j] = e;
      sum[j] += e;
    }
  for (int j = 0; j < n; j++) sum[j] = 1.0f / sum[j];
  for (int c = 0; c < channels; c++)
    for (int j = 0; j < n; j++) y[(size_t)c * inner + j] *= sum[j];
}

void crema_softmax_cpu(const float *in, float *out, int outer, int channels, int inner) {
  const size_t dim = (size_t)channels * (size_t)inner;
  const bool par = (size_t)outer * dim > CREMA_PAR_MIN;
  if (inner == 1) {
#pragma omp parallel for if (par) schedule(static)
    for (int i = 0; i < outer; i++) softmax_row(in + (size_t)i * dim, out + (size_t)i * dim, channels);
    return;
  }
  /* Work items = (outer index, block of inner positions); all independent. */
  const size_t blocks = ((size_t)inner + CREMA_SOFTMAX_BLOCK - 1) / CREMA_SOFTMAX_BLOCK;
  const size_t items = (size_t)outer * blocks;
#pragma omp parallel for if (par) schedule(static)
  for (size_t w = 0; w < items; w++) {
    const size_t i = w / blocks, j0 = (w % blocks) * CREMA_SOFTMAX_BLOCK;
    const int n = (size_t)inner - j0 < CREMA_SOFTMAX_BLOCK ? (int)((size_t)inner - j0) : CREMA_SOFTMAX_BLOCK;
    softmax_block(in + i * dim + j0, out + i * dim + j0, channels, (size_t)inner, n);
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
