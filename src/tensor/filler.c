#include "tensor/filler.h"

#include <math.h>
#include <string.h>

void crema_fill_constant(crema_blob *b, float v) {
  for (size_t i = 0; i < b->count; i++) b->data[i] = v;
}

/* Caffe's fan-in / fan-out for xavier and msra. */
static float variance_n(const crema_blob *b, const Crema__FillerParameter *f) {
  float fan_in = b->num_axes > 0 && b->shape[0] ? (float)b->count / (float)b->shape[0] : (float)b->count;
  float fan_out = b->num_axes > 1 && b->shape[1] ? (float)b->count / (float)b->shape[1] : (float)b->count;
  switch (f->variance_norm) {
  case CREMA__FILLER_PARAMETER__VARIANCE_NORM__FAN_OUT: return fan_out;
  case CREMA__FILLER_PARAMETER__VARIANCE_NORM__AVERAGE: return (fan_in + fan_out) / 2.0f;
  default: return fan_in;
  }
}

int crema_fill(crema_blob *b, const Crema__FillerParameter *f, crema_rng *rng, crema_error *err) {
  if (!f) {
    crema_fill_constant(b, 0.0f);
    return 0;
  }
  const char *type = f->type ? f->type : "constant";
  float *x = b->data;
  size_t n = b->count;
  if (f->sparse >= 0 && strcmp(type, "gaussian"))
    return crema_fail(err, "filler \"%s\" does not support sparse (only gaussian does); remove sparse: %d",
                      type, f->sparse);
  if (!strcmp(type, "constant")) {
    crema_fill_constant(b, f->value);
  } else if (!strcmp(type, "uniform")) {
    if (f->max < f->min) return crema_fail(err, "uniform filler: max %g < min %g", f->max, f->min);
    for (size_t i = 0; i < n; i++) x[i] = crema_rng_uniform(rng, f->min, f->max);
  } else if (!strcmp(type, "gaussian")) {
    if (f->sparse < -1)
      return crema_fail(err, "gaussian filler: sparse must be >= 0 (or -1 for dense), got %d", f->sparse);
    for (size_t i = 0; i < n; i++) x[i] = crema_rng_gaussian(rng, f->mean, f->std);
    if (f->sparse >= 0) {
      if (b->num_axes < 1 || b->shape[0] == 0)
        return crema_fail(err, "sparse gaussian filler needs a blob with at least one axis");
      float p = (float)f->sparse / (float)b->shape[0];
      for (size_t i = 0; i < n; i++)
        if (!crema_rng_bernoulli(rng, p)) x[i] = 0.0f;
    }
  } else if (!strcmp(type, "positive_unitball")) {
    if (b->num_axes < 1 || b->shape[0] == 0)
      return crema_fail(err, "positive_unitball filler needs a blob with at least one axis");
    size_t rows = (size_t)b->shape[0], dim = n / rows;
    for (size_t i = 0; i < n; i++) x[i] = crema_rng_uniform01(rng);
    for (size_t r = 0; r < rows; r++) {
      double s = 0;
      for (size_t j = 0; j < dim; j++) s += x[r * dim + j];
      for (size_t j = 0; j < dim; j++) x[r * dim + j] = (float)(x[r * dim + j] / s);
    }
  } else if (!strcmp(type, "xavier")) {
    float scale = sqrtf(3.0f / variance_n(b, f));
    for (size_t i = 0; i < n; i++) x[i] = crema_rng_uniform(rng, -scale, scale);
  } else if (!strcmp(type, "msra")) {
    float std = sqrtf(2.0f / variance_n(b, f));
    for (size_t i = 0; i < n; i++) x[i] = crema_rng_gaussian(rng, 0.0f, std);
  } else if (!strcmp(type, "bilinear")) {
    if (b->num_axes != 4 || b->shape[2] != b->shape[3])
      return crema_fail(err, "bilinear filler needs a 4-d blob with square kernels");
    int w = b->shape[3], h = b->shape[2];
    /* Caffe's current formula: the kernel is centred at (w - 1) / 2 for odd and even w
     * alike (the older (2f - 1 - f % 2) / 2f was off-centre for w = 2, 6, 10, ...). */
    float fct = ceilf((float)w / 2.0f);
    float c = (float)(w - 1) / (2.0f * fct);
    for (size_t i = 0; i < n; i++) {
      float xx = (float)(i % (size_t)w), yy = (float)((i / (size_t)w) % (size_t)h);
      x[i] = (1.0f - fabsf(xx / fct - c)) * (1.0f - fabsf(yy / fct - c));
    }
  } else {
    return crema_fail(err,
                      "unknown filler type \"%s\" (known: constant, uniform, gaussian, "
                      "positive_unitball, xavier, msra, bilinear)",
                      type);
  }
  return 0;
}
