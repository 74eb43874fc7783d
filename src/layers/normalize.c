/* normalize.c -- SSD's "Normalize" (weiliu89/caffe; ParseNet's L2 normalisation) on
 * (N, C, H, W), with a learned scale s (one value, or one per channel):
 *   across_spatial:  n = sqrt(sum over C, H, W of x^2 + eps) per item
 *   otherwise:       n = sqrt(sum over C of x^2 + eps) per item and position
 *   top = s_c * x / n
 *   d x_i = s_i d y_i / n - x_i sum_j (s_j d y_j x_j) / n^3   (sums over the group)
 *   d s_c += sum of d y * x / n over channel c (over everything when channel_shared)
 * The scale starts from scale_filler (default constant 1). */
#include <math.h>
#include <stdlib.h>

#include "layers/layer.h"
#include "layers/recurrent_common.h"

typedef struct normalize_state {
  bool across, shared;
  float eps;
  float *norm; /* per group */
  size_t norm_cap;
} normalize_state;

static int normalize_setup(crema_layer *l, crema_blob *const *bottom, crema_blob *const *top,
                           crema_error *err) {
  (void)top;
  const Crema__NormalizeParameter def = CREMA__NORMALIZE_PARAMETER__INIT;
  const Crema__NormalizeParameter *p = l->param->norm_param ? l->param->norm_param : &def;
  if (bottom[0]->num_axes < 2) return crema_fail(err, "the bottom needs at least 2 axes (N, C, ...)");
  normalize_state *s = calloc(1, sizeof *s);
  if (!s) return crema_fail(err, "out of memory");
  l->state = s;
  s->across = p->across_spatial;
  s->shared = p->channel_shared;
  s->eps = p->eps;
  const int n = s->shared ? 1 : bottom[0]->shape[1];
  Crema__FillerParameter one = CREMA__FILLER_PARAMETER__INIT;
  one.type = "constant";
  one.has_value = 1;
  one.value = 1.0f;
  return crema_layer_add_blob(l, 0, 1, &n, p->scale_filler ? p->scale_filler : &one, err);
}

static int normalize_reshape(crema_layer *l, crema_blob *const *bottom, crema_blob *const *top,
                             crema_error *err) {
  normalize_state *s = l->state;
  if (!s->shared && (size_t)bottom[0]->shape[1] != l->blobs[0]->count)
    return crema_fail(err, "the bottom has %d channels but the scale has %zu", bottom[0]->shape[1],
                      l->blobs[0]->count);
  const size_t spatial = crema_blob_count_range(bottom[0], 2, bottom[0]->num_axes);
  const size_t groups = (size_t)bottom[0]->shape[0] * (s->across ? 1 : spatial);
  if (crema_rec_grow(&s->norm, &s->norm_cap, groups ? groups : 1, err)) return -1;
  return crema_blob_reshape_like(top[0], bottom[0], err);
}

/* Element (n, c, p) of (N, C, P). */
#define AT(n, c, p) (((size_t)(n)*C + (size_t)(c)) * P + (size_t)(p))

static int normalize_forward(crema_layer *l, crema_blob *const *bottom, crema_blob *const *top,
                             crema_error *err) {
  (void)err;
  normalize_state *s = l->state;
  const int N = bottom[0]->shape[0], C = bottom[0]->shape[1];
  const size_t P = crema_blob_count_range(bottom[0], 2, bottom[0]->num_axes);
  const float *x = bottom[0]->data, *sc = l->blobs[0]->data;
  float *y = top[0]->data;
  for (int n = 0; n < N; n++) {
    if (s->across) {
      double sq = 0;
      for (size_t k = 0; k < (size_t)C * P; k++) sq += (double)x[AT(n, 0, 0) + k] * x[AT(n, 0, 0) + k];
      s->norm[n] = (float)sqrt(sq + s->eps);
    } else {
      for (size_t p = 0; p < P; p++) {
        double sq = 0;
        for (int c = 0; c < C; c++) sq += (double)x[AT(n, c, p)] * x[AT(n, c, p)];
        s->norm[(size_t)n * P + p] = (float)sqrt(sq + s->eps);
      }
    }
    for (int c = 0; c < C; c++)
      for (size_t p = 0; p < P; p++) {
        const float nv = s->norm[s->across ? (size_t)n : (size_t)n * P + p];
        y[AT(n, c, p)] = x[AT(n, c, p)] / nv * sc[s->shared ? 0 : c];
      }
  }
  return 0;
}

static void normalize_backward(crema_layer *l, crema_blob *const *top, const bool *propagate_down,
                               crema_blob *const *bottom) {
  normalize_state *s = l->state;
  const int N = bottom[0]->shape[0], C = bottom[0]->shape[1];
  const size_t P = crema_blob_count_range(bottom[0], 2, bottom[0]->num_axes);
  const float *x = bottom[0]->data, *dy = top[0]->diff, *sc = l->blobs[0]->data;
  float *dx = bottom[0]->diff, *ds = l->blobs[0]->diff;
  for (int n = 0; n < N; n++) {
    if (l->param_propagate_down[0])
      for (int c = 0; c < C; c++) {
        double acc = 0;
        for (size_t p = 0; p < P; p++)
          acc +=
              (double)dy[AT(n, c, p)] * x[AT(n, c, p)] / s->norm[s->across ? (size_t)n : (size_t)n * P + p];
        ds[s->shared ? 0 : c] += (float)acc;
      }
    if (!propagate_down[0]) continue;
    if (s->across) {
      double dot = 0;
      for (int c = 0; c < C; c++)
        for (size_t p = 0; p < P; p++)
          dot += (double)sc[s->shared ? 0 : c] * dy[AT(n, c, p)] * x[AT(n, c, p)];
      const double nv = s->norm[n], k = dot / (nv * nv * nv);
      for (int c = 0; c < C; c++)
        for (size_t p = 0; p < P; p++)
          dx[AT(n, c, p)] = (float)(sc[s->shared ? 0 : c] * dy[AT(n, c, p)] / nv - x[AT(n, c, p)] * k);
    } else {
      for (size_t p = 0; p < P; p++) {
        double dot = 0;
        for (int c = 0; c < C; c++) dot += (double)sc[s->shared ? 0 : c] * dy[AT(n, c, p)] * x[AT(n, c, p)];
        const double nv = s->norm[(size_t)n * P + p], k = dot / (nv * nv * nv);
        for (int c = 0; c < C; c++)
          dx[AT(n, c, p)] = (float)(sc[s->shared ? 0 : c] * dy[AT(n, c, p)] / nv - x[AT(n, c, p)] * k);
      }
    }
  }
}

static void normalize_free(crema_layer *l) {
  normalize_state *s = l->state;
  if (!s) return;
  free(s->norm);
  free(s);
}

const crema_layer_ops crema_normalize_ops = {
    .type = "Normalize",
    .min_bottoms = 1,
    .max_bottoms = 1,
    .min_tops = 1,
    .max_tops = 1,
    .setup = normalize_setup,
    .reshape = normalize_reshape,
    .forward = normalize_forward,
    .backward = normalize_backward,
    .free_state = normalize_free,
};
