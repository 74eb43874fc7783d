/* tile.c -- Caffe's "Tile": repeats the block of axes from `axis` on `tiles` times.
 *   bottom (outer, inner) with outer = prod shape[0 .. axis), inner = prod shape[axis ..)
 *   top (outer, tiles * inner): top[o, t * inner + i] = bottom[o, i]; shape[axis] *= tiles
 *   d bottom[o, i] = sum over t of d top[o, t * inner + i] */
#include <stdlib.h>
#include <string.h>

#include "layers/layer.h"
#include "layers/loss_common.h"
#include "tensor/math.h"

typedef struct tile_state {
  int axis, tiles;
  size_t outer, inner;
} tile_state;

static int tile_setup(crema_layer *l, crema_blob *const *bottom, crema_blob *const *top, crema_error *err) {
  (void)bottom;
  (void)top;
  const Crema__TileParameter *p = l->param->tile_param;
  if (!p || !p->has_tiles) return crema_fail(err, "tile_param { tiles: N } is required");
  if (p->tiles <= 0) return crema_fail(err, "tile_param tiles must be positive, got %d", (int)p->tiles);
  tile_state *s = calloc(1, sizeof *s);
  if (!s) return crema_fail(err, "out of memory");
  l->state = s;
  s->tiles = p->tiles;
  s->axis = p->axis;
  return 0;
}

static int tile_reshape(crema_layer *l, crema_blob *const *bottom, crema_blob *const *top, crema_error *err) {
  tile_state *s = l->state;
  int axis = crema_layer_axis(bottom[0], ((const tile_state *)l->state)->axis, "tile_param axis", err);
  if (axis < 0) return -1;
  int shape[CREMA_MAX_AXES];
  memcpy(shape, bottom[0]->shape, sizeof shape);
  if ((long long)shape[axis] * s->tiles > 0x7fffffff)
    return crema_fail(err, "tile_param tiles %d makes axis %d too large", s->tiles, axis);
  shape[axis] *= s->tiles;
  s->outer = crema_blob_count_range(bottom[0], 0, axis);
  s->inner = crema_blob_count_range(bottom[0], axis, bottom[0]->num_axes);
  return crema_blob_reshape(top[0], bottom[0]->num_axes, shape, err);
}

static int tile_forward(crema_layer *l, crema_blob *const *bottom, crema_blob *const *top, crema_error *err) {
  (void)err;
  const tile_state *s = l->state;
  const float *x = bottom[0]->data;
  float *y = top[0]->data;
  for (size_t o = 0; o < s->outer; o++)
    for (int t = 0; t < s->tiles; t++)
      memcpy(y + (o * (size_t)s->tiles + (size_t)t) * s->inner, x + o * s->inner, s->inner * sizeof *y);
  return 0;
}

static void tile_backward(crema_layer *l, crema_blob *const *top, const bool *propagate_down,
                          crema_blob *const *bottom) {
  const tile_state *s = l->state;
  if (!propagate_down[0]) return;
  const float *dy = top[0]->diff;
  float *dx = bottom[0]->diff;
  for (size_t o = 0; o < s->outer; o++) {
    float *d = dx + o * s->inner;
    memcpy(d, dy + o * (size_t)s->tiles * s->inner, s->inner * sizeof *d);
    for (int t = 1; t < s->tiles; t++)
      crema_axpy(s->inner, 1.0f, dy + (o * (size_t)s->tiles + (size_t)t) * s->inner, d);
  }
}

static void tile_free(crema_layer *l) { free(l->state); }

const crema_layer_ops crema_tile_ops = {
    .type = "Tile",
    .min_bottoms = 1,
    .max_bottoms = 1,
    .min_tops = 1,
    .max_tops = 1,
    .setup = tile_setup,
    .reshape = tile_reshape,
    .forward = tile_forward,
    .backward = tile_backward,
    .free_state = tile_free,
};
