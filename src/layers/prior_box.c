/* prior_box.c -- SSD's "PriorBox" (weiliu89/caffe): the default boxes of one feature map.
 *   bottoms: the feature map (N, C, H, W) and the image (N, C', IH, IW) (only shapes are used)
 *   top (1, 2, H * W * P * 4): channel 0 the boxes (xmin, ymin, xmax, ymax), normalised by
 *   the image size; channel 1 their variances. At each position, center ((w + offset) step_w,
 *   (h + offset) step_h), for each min_size m (in order): a square of side m; with max_size M
 *   a square of side sqrt(m M); then for each aspect ratio r != 1 (duplicates dropped, 1/r
 *   added when `flip`) a box m sqrt(r) wide and m / sqrt(r) high. P = (ratios) * (min sizes)
 *   + (max sizes). `clip` clamps the coordinates to [0, 1]. step and image size come from
 *   the param when given, else from the bottoms. */
#include <math.h>
#include <stdlib.h>

#include "layers/layer.h"

#define PB_MAX_RATIOS 32

typedef struct prior_box_state {
  int n_min, n_max, n_ratio, n_prior;
  const float *min_size, *max_size;
  float ratio[PB_MAX_RATIOS];
  float var[4];
  bool clip;
  int img_h, img_w;             /* 0: from bottom[1] */
  float step_h, step_w, offset; /* step 0: from the sizes */
} prior_box_state;

static int prior_box_setup(crema_layer *l, crema_blob *const *bottom, crema_blob *const *top,
                           crema_error *err) {
  (void)bottom;
  (void)top;
  const Crema__PriorBoxParameter *p = l->param->prior_box_param;
  if (!p || !p->n_min_size) return crema_fail(err, "prior_box_param needs min_size");
  prior_box_state *s = calloc(1, sizeof *s);
  if (!s) return crema_fail(err, "out of memory");
  l->state = s;
  s->n_min = (int)p->n_min_size;
  s->min_size = p->min_size;
  for (int i = 0; i < s->n_min; i++)
    if (!(p->min_size[i] > 0)) return crema_fail(err, "prior_box_param min_size must be > 0");
  if (p->n_max_size && p->n_max_size != p->n_min_size)
    return crema_fail(err,
                      "prior_box_param gives %zu max_size for %zu min_size; give one per min_size or none",
                      p->n_max_size, p->n_min_size);
  s->n_max = (int)p->n_max_size;
  s->max_size = p->max_size;
  for (int i = 0; i < s->n_max; i++)
    if (!(p->max_size[i] > p->min_size[i]))
      return crema_fail(err, "prior_box_param max_size %g must be larger than min_size %g",
                        (double)p->max_size[i], (double)p->min_size[i]);
  s->ratio[s->n_ratio++] = 1.0f;
  for (size_t i = 0; i < p->n_aspect_ratio; i++) {
    const float r = p->aspect_ratio[i];
    bool seen = false;
    for (int k = 0; k < s->n_ratio; k++) seen = seen || fabsf(r - s->ratio[k]) < 1e-6f;
    if (seen) continue;
    if (s->n_ratio + 2 > PB_MAX_RATIOS)
      return crema_fail(err, "too many aspect ratios (at most %d)", PB_MAX_RATIOS);
    if (!(r > 0)) return crema_fail(err, "prior_box_param aspect_ratio must be > 0, got %g", (double)r);
    s->ratio[s->n_ratio++] = r;
    if (p->flip) s->ratio[s->n_ratio++] = 1.0f / r;
  }
  s->n_prior = s->n_ratio * s->n_min + s->n_max;
  if (p->n_variance == 0) {
    s->var[0] = s->var[1] = s->var[2] = s->var[3] = 0.1f;
  } else if (p->n_variance == 1) {
    s->var[0] = s->var[1] = s->var[2] = s->var[3] = p->variance[0];
  } else if (p->n_variance == 4) {
    for (int k = 0; k < 4; k++) s->var[k] = p->variance[k];
  } else {
    return crema_fail(err, "prior_box_param variance: give 1 or 4 values, got %zu", p->n_variance);
  }
  s->clip = p->clip;
  if (p->has_img_size && (p->has_img_h || p->has_img_w))
    return crema_fail(err, "prior_box_param: give img_size or img_h and img_w, not both");
  s->img_h = (int)(p->has_img_size ? p->img_size : p->img_h);
  s->img_w = (int)(p->has_img_size ? p->img_size : p->img_w);
  if (p->has_step && (p->has_step_h || p->has_step_w))
    return crema_fail(err, "prior_box_param: give step or step_h and step_w, not both");
  s->step_h = p->has_step ? p->step : p->step_h;
  s->step_w = p->has_step ? p->step : p->step_w;
  s->offset = p->offset;
  return 0;
}

static int prior_box_reshape(crema_layer *l, crema_blob *const *bottom, crema_blob *const *top,
                             crema_error *err) {
  const prior_box_state *s = l->state;
  if (bottom[0]->num_axes != 4 || bottom[1]->num_axes != 4)
    return crema_fail(err, "both bottoms must be (N, C, H, W)");
  const size_t n = (size_t)bottom[0]->shape[2] * bottom[0]->shape[3] * s->n_prior * 4;
  if (n > 0x7fffffff) return crema_fail(err, "too many priors");
  return crema_blob_reshape(top[0], 3, (int[]){1, 2, (int)n}, err);
}

static int prior_box_forward(crema_layer *l, crema_blob *const *bottom, crema_blob *const *top,
                             crema_error *err) {
  (void)err;
  const prior_box_state *s = l->state;
  const int H = bottom[0]->shape[2], W = bottom[0]->shape[3];
  const float img_h = (float)(s->img_h ? s->img_h : bottom[1]->shape[2]),
              img_w = (float)(s->img_w ? s->img_w : bottom[1]->shape[3]);
  const float step_h = s->step_h > 0 ? s->step_h : img_h / (float)H,
              step_w = s->step_w > 0 ? s->step_w : img_w / (float)W;
  float *out = top[0]->data;
  const size_t dim = (size_t)H * W * s->n_prior * 4;
  size_t k = 0;
  for (int h = 0; h < H; h++)
    for (int w = 0; w < W; w++) {
      const float cx = ((float)w + s->offset) * step_w, cy = ((float)h + s->offset) * step_h;
#define BOX(bw, bh)                                                                                          \
  do {                                                                                                       \
    out[k++] = (cx - (bw) / 2.0f) / img_w;                                                                   \
    out[k++] = (cy - (bh) / 2.0f) / img_h;                                                                   \
    out[k++] = (cx + (bw) / 2.0f) / img_w;                                                                   \
    out[k++] = (cy + (bh) / 2.0f) / img_h;                                                                   \
  } while (0)
      for (int m = 0; m < s->n_min; m++) {
        const float ms = s->min_size[m];
        BOX(ms, ms);
        if (s->n_max) {
          const float side = sqrtf(ms * s->max_size[m]);
          BOX(side, side);
        }
        for (int r = 0; r < s->n_ratio; r++) {
          if (fabsf(s->ratio[r] - 1.0f) < 1e-6f) continue;
          const float sr = sqrtf(s->ratio[r]);
          BOX(ms * sr, ms / sr);
        }
      }
#undef BOX
    }
  if (s->clip)
    for (size_t i = 0; i < dim; i++) out[i] = fminf(fmaxf(out[i], 0.0f), 1.0f);
  for (size_t i = 0; i < dim; i++) out[dim + i] = s->var[i % 4];
  return 0;
}

static void prior_box_free(crema_layer *l) { free(l->state); }

const crema_layer_ops crema_prior_box_ops = {
    .type = "PriorBox",
    .min_bottoms = 2,
    .max_bottoms = 2,
    .min_tops = 1,
    .max_tops = 1,
    .setup = prior_box_setup,
    .reshape = prior_box_reshape,
    .forward = prior_box_forward,
    .free_state = prior_box_free,
};
