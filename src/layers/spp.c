/* spp.c -- Caffe's "SPP" (spatial pyramid pooling, He et al. 2014).
 *   bottom (N, C, H, W); level l = 0 .. pyramid_height-1 pools into about 2^l x 2^l bins with
 *   kernel k = ceil(H / 2^l) (and likewise for W), stride k, pad (k * 2^l - H + 1) / 2, in
 *   Caffe's pooling (ceil rounding);
 *   top (N, sum_l C * ph_l * pw_l): each level flattened per item, concatenated in order;
 *   with pyramid_height 1 the top is the single level's (N, C, 1, 1), as in Caffe.
 *   d bottom = sum over levels of the pooling backward of that level's part of d top.
 * Each level is a Pooling layer built here from a generated pooling_param, as Caffe does. */
#include <stdlib.h>
#include <string.h>

#include "layers/layer.h"
#include "tensor/math.h"

typedef struct spp_level {
  Crema__LayerParameter lp;
  Crema__PoolingParameter pp;
  crema_layer *pool;
  crema_blob *out;
  size_t per_item; /* C * ph * pw */
} spp_level;

typedef struct spp_state {
  int height;
  Crema__PoolingParameter__PoolMethod method;
  int h, w; /* bottom plane the levels were built for */
  spp_level *levels;
  crema_blob *acc; /* bottom-shaped sum of the levels' gradients */
} spp_state;

static void spp_free_levels(spp_state *s) {
  if (!s->levels) return;
  for (int i = 0; i < s->height; i++) {
    crema_layer_free(s->levels[i].pool);
    s->levels[i].pool = NULL;
  }
}

static int spp_setup(crema_layer *l, crema_blob *const *bottom, crema_blob *const *top, crema_error *err) {
  (void)bottom;
  (void)top;
  const Crema__SPPParameter *p = l->param->spp_param;
  if (!p || !p->has_pyramid_height || p->pyramid_height == 0 || p->pyramid_height > 16)
    return crema_fail(err, "spp_param { pyramid_height: N } is required, 1 <= N <= 16");
  spp_state *s = calloc(1, sizeof *s);
  if (!s) return crema_fail(err, "out of memory");
  l->state = s;
  s->height = (int)p->pyramid_height;
  s->method = (Crema__PoolingParameter__PoolMethod)p->pool;
  s->levels = calloc((size_t)s->height, sizeof *s->levels);
  if (!s->levels || !(s->acc = crema_blob_new())) return crema_fail(err, "out of memory");
  for (int i = 0; i < s->height; i++)
    if (!(s->levels[i].out = crema_blob_new())) return crema_fail(err, "out of memory");
  return 0;
}

/* (Re)builds the levels' pooling layers for an h x w bottom. */
static int spp_build(crema_layer *l, crema_blob *const *bottom, crema_error *err) {
  spp_state *s = l->state;
  spp_free_levels(s);
  s->h = bottom[0]->shape[2];
  s->w = bottom[0]->shape[3];
  for (int i = 0; i < s->height; i++) {
    spp_level *v = &s->levels[i];
    const int bins = 1 << i;
    const int kh = (s->h + bins - 1) / bins, kw = (s->w + bins - 1) / bins;
    crema__layer_parameter__init(&v->lp);
    crema__pooling_parameter__init(&v->pp);
    v->lp.name = l->param->name;
    v->lp.type = "Pooling";
    v->lp.pooling_param = &v->pp;
    v->pp.pool = s->method;
    v->pp.has_pool = 1;
    v->pp.has_kernel_h = v->pp.has_kernel_w = v->pp.has_stride_h = v->pp.has_stride_w = 1;
    v->pp.has_pad_h = v->pp.has_pad_w = 1;
    v->pp.kernel_h = (uint32_t)kh;
    v->pp.kernel_w = (uint32_t)kw;
    v->pp.stride_h = (uint32_t)kh;
    v->pp.stride_w = (uint32_t)kw;
    v->pp.pad_h = (uint32_t)((kh * bins - s->h + 1) / 2);
    v->pp.pad_w = (uint32_t)((kw * bins - s->w + 1) / 2);
    if (crema_layer_create(&v->lp, l->phase, crema_rng_u64(&l->rng), &v->pool, err) ||
        crema_layer_setup(v->pool, 1, bottom, 1, &v->out, err))
      return crema_error_prefix(err, "pyramid level %d", i);
    v->per_item = v->out->count / (size_t)(bottom[0]->shape[0] ? bottom[0]->shape[0] : 1);
  }
  return 0;
}

static int spp_reshape(crema_layer *l, crema_blob *const *bottom, crema_blob *const *top, crema_error *err) {
  spp_state *s = l->state;
  char b[128];
  if (bottom[0]->num_axes != 4)
    return crema_fail(err, "the bottom must have 4 axes (N, C, H, W); it is %s",
                      crema_blob_shape_string(bottom[0], b, sizeof b));
  if (!s->levels[0].pool || s->h != bottom[0]->shape[2] || s->w != bottom[0]->shape[3]) {
    if (spp_build(l, bottom, err)) return -1;
  } else {
    for (int i = 0; i < s->height; i++) {
      if (crema_layer_reshape(s->levels[i].pool, bottom, &s->levels[i].out, err)) return -1;
      s->levels[i].per_item =
          s->levels[i].out->count / (size_t)(bottom[0]->shape[0] ? bottom[0]->shape[0] : 1);
    }
  }
  if (crema_blob_reshape_like(s->acc, bottom[0], err)) return -1;
  if (s->height == 1) return crema_blob_reshape_like(top[0], s->levels[0].out, err);
  size_t total = 0;
  for (int i = 0; i < s->height; i++) total += s->levels[i].per_item;
  if (total > 0x7fffffff) return crema_fail(err, "the pyramid has too many outputs per item (%zu)", total);
  return crema_blob_reshape4(top[0], bottom[0]->shape[0], (int)total, -1, -1, err);
}

static int spp_forward(crema_layer *l, crema_blob *const *bottom, crema_blob *const *top, crema_error *err) {
  spp_state *s = l->state;
  const int n = bottom[0]->shape[0];
  const size_t row = top[0]->count / (size_t)(n ? n : 1);
  size_t off = 0;
  for (int i = 0; i < s->height; i++) {
    spp_level *v = &s->levels[i];
    if (crema_layer_forward(v->pool, bottom, &v->out, err)) return -1;
    for (int k = 0; k < n; k++)
      memcpy(top[0]->data + (size_t)k * row + off, v->out->data + (size_t)k * v->per_item,
             v->per_item * sizeof(float));
    off += v->per_item;
  }
  return 0;
}

static void spp_backward(crema_layer *l, crema_blob *const *top, const bool *propagate_down,
                         crema_blob *const *bottom) {
  spp_state *s = l->state;
  if (!propagate_down[0]) return;
  const int n = bottom[0]->shape[0];
  const size_t row = top[0]->count / (size_t)(n ? n : 1);
  size_t off = 0;
  for (int i = 0; i < s->height; i++) {
    spp_level *v = &s->levels[i];
    for (int k = 0; k < n; k++)
      memcpy(v->out->diff + (size_t)k * v->per_item, top[0]->diff + (size_t)k * row + off,
             v->per_item * sizeof(float));
    off += v->per_item;
    crema_layer_backward(v->pool, &v->out, propagate_down, bottom);
    if (i == 0)
      crema_copy(bottom[0]->count, bottom[0]->diff, s->acc->diff);
    else
      crema_axpy(bottom[0]->count, 1.0f, bottom[0]->diff, s->acc->diff);
  }
  crema_copy(bottom[0]->count, s->acc->diff, bottom[0]->diff);
}

static void spp_free(crema_layer *l) {
  spp_state *s = l->state;
  if (!s) return;
  if (s->levels) {
    spp_free_levels(s);
    for (int i = 0; i < s->height; i++) crema_blob_free(s->levels[i].out);
  }
  free(s->levels);
  crema_blob_free(s->acc);
  free(s);
}

const crema_layer_ops crema_spp_ops = {
    .type = "SPP",
    .min_bottoms = 1,
    .max_bottoms = 1,
    .min_tops = 1,
    .max_tops = 1,
    .setup = spp_setup,
    .reshape = spp_reshape,
    .forward = spp_forward,
    .backward = spp_backward,
    .free_state = spp_free,
};
