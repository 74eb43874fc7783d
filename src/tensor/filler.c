#include "tensor/filler.h"

#include <math.h>
#include <string.h>

#include "tensor/math.h"

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

/* Random fills run in chunks of FILL_CHUNK values, each from its own stream keyed by one draw
 * of the caller's generator and the chunk's index: the values depend only on the seed (not
 * on the thread count), the chunks fill in parallel, and a net's 60 M weights take a fraction
 * of a second instead of seconds. Box-Muller in float, using both values of each pair. */
#define FILL_CHUNK 65536

typedef struct uniform_pass {
  float *x;
  float lo, scale;
} uniform_pass;

static void uniform_piece(void *ctx, const uint32_t *draws, size_t begin, size_t count) {
  const uniform_pass *p = ctx;
  float *x = p->x + begin;
  for (size_t i = 0; i < count; i++) x[i] = p->lo + p->scale * (float)(draws[i] >> 8);
}

static void fill_uniform(float *x, size_t n, float lo, float hi, crema_rng *rng) {
  uniform_pass pass = {x, lo, (hi - lo) * (1.0f / 16777216.0f)};
  crema_rng_chunked(crema_rng_u64(rng), n, FILL_CHUNK, n > CREMA_PAR_MIN, uniform_piece, &pass);
}

static void fill_gaussian(float *x, size_t n, float mean, float std, crema_rng *rng) {
  const uint64_t key = crema_rng_u64(rng);
  const size_t chunks = (n + FILL_CHUNK - 1) / FILL_CHUNK;
#pragma omp parallel for schedule(static) if (n > CREMA_PAR_MIN_HEAVY)
  for (size_t c = 0; c < chunks; c++) {
    crema_rng r;
    crema_rng_seed(&r, key, c);
    const size_t end = (c + 1) * FILL_CHUNK < n ? (c + 1) * FILL_CHUNK : n;
    for (size_t i = c * FILL_CHUNK; i < end; i += 2) {
      /* u1 in (0, 1] so logf() is finite. */
      const float u1 = ((float)(crema_rng_u32(&r) >> 8) + 1.0f) * (1.0f / 16777216.0f);
      const float u2 = (float)(crema_rng_u32(&r) >> 8) * (float)(2.0 * 3.14159265358979323846 / 16777216.0);
      const float rad = std * sqrtf(-2.0f * logf(u1));
      x[i] = mean + rad * cosf(u2);
      if (i + 1 < end) x[i + 1] = mean + rad * sinf(u2);
    }
  }
}

int crema_filler_check(const crema_blob *b, const Crema__FillerParameter *f, crema_error *err) {
  if (!f) return 0;
  const char *type = f->type ? f->type : "constant";
  if (f->sparse >= 0 && strcmp(type, "gaussian"))
    return crema_fail(err, "filler \"%s\" does not support sparse (only gaussian does); remove sparse: %d",
                      type, f->sparse);
  if (!strcmp(type, "constant") || !strcmp(type, "xavier") || !strcmp(type, "msra")) return 0;
  if (!strcmp(type, "uniform")) {
    if (f->max < f->min) return crema_fail(err, "uniform filler: max %g < min %g", f->max, f->min);
  } else if (!strcmp(type, "gaussian")) {
    if (f->sparse < -1)
      return crema_fail(err, "gaussian filler: sparse must be >= 0 (or -1 for dense), got %d", f->sparse);
    if (f->sparse >= 0 && (b->num_axes < 1 || b->shape[0] == 0))
      return crema_fail(err, "sparse gaussian filler needs a blob with at least one axis");
  } else if (!strcmp(type, "positive_unitball")) {
    if (b->num_axes < 1 || b->shape[0] == 0)
      return crema_fail(err, "positive_unitball filler needs a blob with at least one axis");
  } else if (!strcmp(type, "bilinear")) {
    if (b->num_axes != 4 || b->shape[2] != b->shape[3])
      return crema_fail(err, "bilinear filler needs a 4-d blob with square kernels");
  } else {
    return crema_fail(err,
                      "unknown filler type \"%s\" (known: constant, uniform, gaussian, "
                      "positive_unitball, xavier, msra, bilinear)",
                      type);
  }
  return 0;
}

int crema_fill(crema_blob *b, const Crema__FillerParameter *f, crema_rng *rng, crema_error *err) {
  if (crema_filler_check(b, f, err)) return -1;
  if (!f) {
    crema_fill_constant(b, 0.0f);
    return 0;
  }
  const char *type = f->type ? f->type : "constant";
  float *x = b->data;
  const size_t n = b->count;
  if (!strcmp(type, "constant")) {
    crema_fill_constant(b, f->value);
  } else if (!strcmp(type, "uniform")) {
    fill_uniform(x, n, f->min, f->max, rng);
  } else if (!strcmp(type, "gaussian")) {
    fill_gaussian(x, n, f->mean, f->std, rng);
    if (f->sparse >= 0) {
      float p = (float)f->sparse / (float)b->shape[0];
      for (size_t i = 0; i < n; i++)
        if (!crema_rng_bernoulli(rng, p)) x[i] = 0.0f;
    }
  } else if (!strcmp(type, "positive_unitball")) {
    size_t rows = (size_t)b->shape[0], dim = n / rows;
    for (size_t i = 0; i < n; i++) x[i] = crema_rng_uniform01(rng);
    for (size_t r = 0; r < rows; r++) {
      double s = 0;
      for (size_t j = 0; j < dim; j++) s += x[r * dim + j];
      for (size_t j = 0; j < dim; j++) x[r * dim + j] = (float)(x[r * dim + j] / s);
    }
  } else if (!strcmp(type, "xavier")) {
    float scale = sqrtf(3.0f / variance_n(b, f));
    fill_uniform(x, n, -scale, scale, rng);
  } else if (!strcmp(type, "msra")) {
    float std = sqrtf(2.0f / variance_n(b, f));
    fill_gaussian(x, n, 0.0f, std, rng);
  } else { /* bilinear (crema_filler_check knows no other type) */
    int w = b->shape[3], h = b->shape[2];
    /* Caffe's current formula: the kernel is centred at (w - 1) / 2 for odd and even w
     * alike (the older (2f - 1 - f % 2) / 2f was off-centre for w = 2, 6, 10, ...). */
    float fct = ceilf((float)w / 2.0f);
    float c = (float)(w - 1) / (2.0f * fct);
    for (size_t i = 0; i < n; i++) {
      float xx = (float)(i % (size_t)w), yy = (float)((i / (size_t)w) % (size_t)h);
      x[i] = (1.0f - fabsf(xx / fct - c)) * (1.0f - fabsf(yy / fct - c));
    }
  }
  return 0;
}
