/* batch_norm.c -- Caffe's "BatchNorm": normalises each channel (axis 1) to zero mean and unit
 * variance; no scale or shift (Caffe puts those in a following Scale layer with bias_term).
 *
 * Blobs, exactly as Caffe stores them in a caffemodel:
 *   blobs[0] (C): running sum of means,  blobs[1] (C): running sum of (unbiased) variances,
 *   blobs[2] (1): running normaliser; the statistics are blobs[0..1] / blobs[2] (0 if it is 0).
 * None of them is learned: setup forces lr_mult 0 so solvers leave them alone.
 *
 * use_global_stats (default: false in TRAIN, true in TEST):
 *   false: normalise with the batch's own mean and (biased) variance over N and spatial axes,
 *          and in TRAIN update the blobs as Caffe does:
 *            blobs[2] = maf * blobs[2] + 1
 *            blobs[0] = maf * blobs[0] + mean
 *            blobs[1] = maf * blobs[1] + m / (m - 1) * var     (m = N * H * W; factor 1 if m == 1)
 *          (maf = moving_average_fraction). Caffe also updates them in a TEST-phase layer
 *          told use_global_stats: false; crema does not, so evaluating never changes a model.
 *          Backward is the full batch-norm gradient:
 *            d x = (d y - mean(d y) - y * mean(d y * y)) / sqrt(var + eps)
 *   true:  normalise with the stored statistics ("frozen" BatchNorm, as for finetuning);
 *          backward is d x = d y / sqrt(var + eps).
 * In-place allowed: the normalised output is kept for backward, since layers after this one
 * (Scale, ReLU in place) overwrite the top. */
#include <math.h>
#include <stdlib.h>

#include "base/clones.h"
#include "base/v8.h"
#include "layers/axis_common.h"
#include "layers/batch_norm_chain.h"
#include "layers/layer.h"
#include "tensor/math.h"

typedef struct batch_norm_state {
  bool use_global_stats;
  float maf, eps;
  int channels;
  crema_blob *mean;   /* (C) mean used by the last forward */
  crema_blob *stddev; /* (C) sqrt(var + eps) used by the last forward */
  crema_blob *x_norm; /* like bottom: normalised output of the last forward (batch stats only) */
} batch_norm_state;

static int batch_norm_setup(crema_layer *l, crema_blob *const *bottom, crema_blob *const *top,
                            crema_error *err) {
  (void)top;
  const Crema__BatchNormParameter def = CREMA__BATCH_NORM_PARAMETER__INIT;
  const Crema__BatchNormParameter *p = l->param->batch_norm_param ? l->param->batch_norm_param : &def;
  if (!(p->eps > 0.0f))
    return crema_fail(err, "batch_norm_param.eps is %g; it must be positive", (double)p->eps);
  batch_norm_state *s = calloc(1, sizeof *s);
  if (!s) return crema_fail(err, "out of memory");
  l->state = s;
  if (!(s->mean = crema_blob_new()) || !(s->stddev = crema_blob_new()) || !(s->x_norm = crema_blob_new()))
    return crema_fail(err, "out of memory");
  s->use_global_stats = p->has_use_global_stats ? p->use_global_stats : l->phase == CREMA__PHASE__TEST;
  s->maf = p->moving_average_fraction;
  s->eps = p->eps;
  s->channels = bottom[0]->num_axes > 1 ? bottom[0]->shape[1] : 1;
  int c = s->channels, one = 1;
  if (crema_layer_add_blob(l, 0, 1, &c, NULL, err) || crema_layer_add_blob(l, 1, 1, &c, NULL, err) ||
      crema_layer_add_blob(l, 2, 1, &one, NULL, err))
    return -1;
  /* Statistics, not parameters: never touched by a solver, whatever the prototxt says. */
  for (int i = 0; i < 3; i++) {
    l->lr_mult[i] = 0.0f;
    l->decay_mult[i] = 0.0f;
    l->param_propagate_down[i] = false;
  }
  return 0;
}

static int batch_norm_reshape(crema_layer *l, crema_blob *const *bottom, crema_blob *const *top,
                              crema_error *err) {
  batch_norm_state *s = l->state;
  if (bottom[0]->num_axes < 1)
    return crema_fail(err, "BatchNorm needs a bottom with at least 1 axis (N, ...)");
  int c = bottom[0]->num_axes > 1 ? bottom[0]->shape[1] : 1;
  if (c != s->channels)
    return crema_fail(err, "bottom now has %d channels on axis 1 but the layer was set up with %d", c,
                      s->channels);
  if (crema_blob_reshape_like(top[0], bottom[0], err) || crema_blob_reshape(s->mean, 1, &c, err) ||
      crema_blob_reshape(s->stddev, 1, &c, err))
    return -1;
  if (!s->use_global_stats) return crema_blob_reshape_like(s->x_norm, bottom[0], err);
  return 0;
}

crema_blob *crema_batch_norm_x_norm(crema_layer *l) {
  const batch_norm_state *s = l->state;
  return s->use_global_stats ? NULL : s->x_norm;
}

/* Whether the net runs the Scale and ReLU after this layer inside it (net_fuse.c). */
static bool runs_chain(const crema_layer *l) {
  return l->run_fused && (l->fusion.scale || l->fusion.act.relu);
}

/* That chain, on the layer's in-place top of num x channels x spatial elements. */
static crema_bn_chain chain_of(crema_layer *l, crema_blob *top, size_t num, size_t spatial) {
  const batch_norm_state *s = l->state;
  crema_layer *sc = l->fusion.scale;
  const crema_bn_chain ch = {
      .outer = num,
      .channels = (size_t)s->channels,
      .inner = spatial,
      .mean = s->mean->data,
      .stddev = s->stddev->data,
      .gamma = sc ? sc->blobs[0]->data : NULL,
      .beta = sc && sc->n_blobs > 1 ? sc->blobs[1]->data : NULL,
      .kept = sc ? crema_scale_kept_input(sc, top) : NULL,
      .x_norm = s->use_global_stats ? NULL : s->x_norm->data,
      .relu = l->fusion.act.relu,
      .slope = l->fusion.act.slope,
  };
  return ch;
}

/* sum (x[i] - mu)^2 over n elements, in eight independent partial sums. */
static inline __attribute__((always_inline)) double sum_sq_dev(const float *x, size_t n, float mu) {
  v8 p = {0};
  size_t i = 0;
  for (; i + 8 <= n; i += 8) {
    const v8 d = load8(x + i) - mu;
    p += d * d;
  }
  double s = 0.0;
  for (; i < n; i++) s += ((double)x[i] - mu) * ((double)x[i] - mu);
  for (int j = 0; j < 8; j++) s += p[j];
  return s;
}

/* Batch statistics, channel by channel: mean and variance (two passes, as Caffe computes
 * E[(X - EX)^2]), then x_norm and y, or the fused chain's Scale and ReLU, while the channel
 * is in cache. */
CREMA_CLONES static void batch_stats_forward(const crema_bn_chain *ch, size_t num, size_t channels,
                                             size_t spatial, float eps, const float *x, float *xn, float *y,
                                             float *mean, float *var, float *sd) {
  const size_t m = num * spatial;
#pragma omp parallel for if (num * channels * spatial > CREMA_PAR_MIN) schedule(static)
  for (size_t c = 0; c < channels; c++) {
    double sum = 0.0;
    for (size_t n = 0; n < num; n++) sum += sum8(x + (n * channels + c) * spatial, spatial);
    const float mu = (float)(sum / (double)m);
    double sq = 0.0;
    for (size_t n = 0; n < num; n++) sq += sum_sq_dev(x + (n * channels + c) * spatial, spatial, mu);
    mean[c] = mu;
    var[c] = (float)(sq / (double)m);
    sd[c] = sqrtf(var[c] + eps);
    if (ch) {
      crema_bn_chain_forward_channel(ch, c, x, y);
      continue;
    }
    const float inv = 1.0f / sd[c];
    for (size_t n = 0; n < num; n++)
      for (size_t i = (n * channels + c) * spatial, e = i + spatial; i < e; i++) {
        xn[i] = (x[i] - mu) * inv; /* in place, y is x: read before written, same index */
        y[i] = xn[i];
      }
  }
}

/* dx with batch statistics, unfused: dx = (dy - mean(dy) - x_norm mean(dy x_norm)) / sd. */
CREMA_CLONES static void batch_stats_backward(size_t num, size_t channels, size_t spatial, const float *dy,
                                              const float *xn, const float *sd, float *dx) {
  const size_t m = num * spatial;
#pragma omp parallel for if (num * channels * spatial > CREMA_PAR_MIN) schedule(static)
  for (size_t c = 0; c < channels; c++) {
    double sum_dy = 0.0, sum_dyy = 0.0;
    for (size_t n = 0; n < num; n++) {
      const size_t off = (n * channels + c) * spatial;
      sum_dy += sum8(dy + off, spatial);
      sum_dyy += dot8(dy + off, xn + off, spatial);
    }
    const float mdy = (float)(sum_dy / (double)m), mdyy = (float)(sum_dyy / (double)m);
    const float inv = 1.0f / sd[c];
    for (size_t n = 0; n < num; n++)
      for (size_t i = (n * channels + c) * spatial, e = i + spatial; i < e; i++)
        dx[i] = (dy[i] - mdy - xn[i] * mdyy) * inv;
  }
}

static int batch_norm_forward(crema_layer *l, crema_blob *const *bottom, crema_blob *const *top,
                              crema_error *err) {
  (void)err;
  batch_norm_state *s = l->state;
  const crema_blob *b = bottom[0];
  const size_t count = b->count, channels = (size_t)s->channels;
  if (count == 0 || channels == 0) return 0;
  const size_t num = (size_t)b->shape[0], spatial = count / (num * channels), m = num * spatial;
  const float *x = b->data;
  float *y = top[0]->data, *mean = s->mean->data, *sd = s->stddev->data;
  const float eps = s->eps;

  if (s->use_global_stats) {
    const float f = l->blobs[2]->data[0] == 0.0f ? 0.0f : 1.0f / l->blobs[2]->data[0];
    for (size_t c = 0; c < channels; c++) {
      mean[c] = f * l->blobs[0]->data[c];
      sd[c] = sqrtf(f * l->blobs[1]->data[c] + eps);
    }
    if (runs_chain(l)) {
      const crema_bn_chain ch = chain_of(l, top[0], num, spatial);
      crema_bn_chain_forward(&ch, x, y);
      return 0;
    }
#pragma omp parallel for if (count > CREMA_PAR_MIN) schedule(static)
    for (size_t r = 0; r < num * channels; r++) {
      const size_t c = r % channels;
      const float mu = mean[c], inv = 1.0f / sd[c];
      for (size_t i = r * spatial; i < (r + 1) * spatial; i++) y[i] = (x[i] - mu) * inv;
    }
    return 0;
  }

  float *xn = s->x_norm->data, *var = s->stddev->diff; /* stddev's diff holds the batch variance */
  const bool chain = runs_chain(l);
  const crema_bn_chain ch = chain ? chain_of(l, top[0], num, spatial) : (crema_bn_chain){0};
  batch_stats_forward(chain ? &ch : NULL, num, channels, spatial, eps, x, xn, y, mean, var, sd);
  if (l->phase == CREMA__PHASE__TRAIN) {
    const float maf = s->maf, corr = m > 1 ? (float)m / (float)(m - 1) : 1.0f;
    l->blobs[2]->data[0] = l->blobs[2]->data[0] * maf + 1.0f;
    for (size_t c = 0; c < channels; c++) {
      l->blobs[0]->data[c] = maf * l->blobs[0]->data[c] + mean[c];
      l->blobs[1]->data[c] = maf * l->blobs[1]->data[c] + corr * var[c];
    }
  }
  return 0;
}

/* The Scale's gradients and dx of the chain the net runs in this layer. */
static void chain_backward(crema_layer *l, crema_blob *top, bool propagate_down, crema_blob *bottom,
                           size_t num, size_t spatial) {
  const batch_norm_state *s = l->state;
  const crema_bn_chain ch = chain_of(l, top, num, spatial);
  const crema_layer *sc = l->fusion.scale;
  float *dgamma = sc && sc->param_propagate_down[0] ? sc->blobs[0]->diff : NULL;
  float *dbeta = sc && sc->n_blobs > 1 && sc->param_propagate_down[1] ? sc->blobs[1]->diff : NULL;
  float *dx = propagate_down ? bottom->diff : NULL;
  if (s->use_global_stats)
    crema_bn_chain_backward(&ch, top->data, top->diff, dgamma, dbeta, dx);
  else
    crema_bn_chain_backward_batch(&ch, top->data, top->diff, dgamma, dbeta, dx);
}

static void batch_norm_backward(crema_layer *l, crema_blob *const *top, const bool *propagate_down,
                                crema_blob *const *bottom) {
  batch_norm_state *s = l->state;
  const crema_blob *b = bottom[0];
  const size_t count = b->count, channels = (size_t)s->channels;
  if (count == 0 || channels == 0) return;
  const size_t num = (size_t)b->shape[0], spatial = count / (num * channels);
  if (runs_chain(l)) { /* the Scale's gradients, even without dx */
    chain_backward(l, top[0], propagate_down[0], bottom[0], num, spatial);
    return;
  }
  if (!propagate_down[0]) return;
  const float *dy = top[0]->diff, *sd = s->stddev->data;
  float *dx = bottom[0]->diff; /* may be dy (in place): every loop reads index i before writing it */

  if (s->use_global_stats) {
#pragma omp parallel for if (count > CREMA_PAR_MIN) schedule(static)
    for (size_t r = 0; r < num * channels; r++) {
      const float inv = 1.0f / sd[r % channels];
      for (size_t i = r * spatial; i < (r + 1) * spatial; i++) dx[i] = dy[i] * inv;
    }
    return;
  }
  batch_stats_backward(num, channels, spatial, dy, s->x_norm->data, sd, dx);
}

static void batch_norm_free(crema_layer *l) {
  batch_norm_state *s = l->state;
  if (!s) return;
  crema_blob_free(s->mean);
  crema_blob_free(s->stddev);
  crema_blob_free(s->x_norm);
  free(s);
}

const crema_layer_ops crema_batch_norm_ops = {
    .type = "BatchNorm",
    .min_bottoms = 1,
    .max_bottoms = 1,
    .min_tops = 1,
    .max_tops = 1,
    .allow_inplace = true,
    .setup = batch_norm_setup,
    .reshape = batch_norm_reshape,
    .forward = batch_norm_forward,
    .backward = batch_norm_backward,
    .free_state = batch_norm_free,
    .takes_fusion = true,
};
