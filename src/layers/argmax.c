/* ArgMax: indices (and optionally values) of the top_k largest entries, as Caffe computes them.
 *  - without argmax_param.axis: per sample over all of count(1); top is (N, 1 or 2, top_k)
 *    (at least 3 axes), holding the indices, then -- with out_max_val -- the values;
 *  - with axis: along that axis; top is the bottom shape with that axis set to top_k, holding
 *    the indices, or with out_max_val only the values.
 * Order: by value, larger first; equal values put the larger index first (Caffe sorts
 * (value, index) pairs with std::greater). No backward. */
#include <limits.h>
#include <stdlib.h>

#include "layers/layer.h"
#include "layers/loss_common.h"
#include "tensor/math.h"

typedef struct argmax_pair {
  float value;
  int index;
} argmax_pair;

typedef struct argmax_state {
  bool out_max_val, has_axis;
  int top_k, axis_param, axis;
  argmax_pair *best; /* top_k pairs per slice being searched, grow-only */
  size_t best_capacity;
} argmax_state;

static int argmax_setup(crema_layer *l, crema_blob *const *bottom, crema_blob *const *top, crema_error *err) {
  (void)bottom;
  (void)top;
  argmax_state *s = calloc(1, sizeof *s);
  if (!s) return crema_fail(err, "out of memory");
  l->state = s;
  const Crema__ArgMaxParameter *ap = l->param->argmax_param;
  s->out_max_val = ap && ap->out_max_val;
  if (ap && ap->top_k > INT_MAX) return crema_fail(err, "argmax_param top_k %u is too large", ap->top_k);
  s->top_k = ap ? (int)ap->top_k : 1;
  s->has_axis = ap && ap->has_axis;
  s->axis_param = s->has_axis ? ap->axis : 0;
  if (s->top_k < 1) return crema_fail(err, "argmax_param top_k must be at least 1, got %d", s->top_k);
  return 0;
}

static int argmax_reshape(crema_layer *l, crema_blob *const *bottom, crema_blob *const *top,
                          crema_error *err) {
  argmax_state *s = l->state;
  const crema_blob *b = bottom[0];
  int shape[CREMA_MAX_AXES];
  int num_axes = b->num_axes < 3 ? 3 : b->num_axes;
  for (int i = 0; i < num_axes; i++) shape[i] = 1;
  size_t slices;
  if (s->has_axis) {
    if ((s->axis = crema_layer_axis(b, s->axis_param, "argmax_param axis", err)) < 0) return -1;
    if (b->shape[s->axis] < s->top_k)
      return crema_fail(err, "argmax_param top_k (%d) exceeds the size %d of axis %d", s->top_k,
                        b->shape[s->axis], s->axis);
    for (int i = 0; i < b->num_axes; i++) shape[i] = b->shape[i];
    num_axes = b->num_axes;
    shape[s->axis] = s->top_k;
    slices = b->shape[s->axis] ? b->count / (size_t)b->shape[s->axis] : 0;
  } else {
    size_t dim = crema_blob_count_range(b, 1, b->num_axes);
    if (b->num_axes < 1 || dim < (size_t)s->top_k)
      return crema_fail(err, "argmax_param top_k (%d) exceeds the number of values per sample (%zu)",
                        s->top_k, b->num_axes < 1 ? (size_t)0 : dim);
    shape[0] = b->shape[0];
    shape[1] = s->out_max_val ? 2 : 1;
    shape[2] = s->top_k;
    slices = (size_t)b->shape[0];
  }
  if (crema_blob_reshape(top[0], num_axes, shape, err)) return -1;
  size_t need = slices * (size_t)s->top_k;
  if (need > s->best_capacity) {
    argmax_pair *best = realloc(s->best, need * sizeof *best);
    if (!best) return crema_fail(err, "out of memory");
    s->best = best;
    s->best_capacity = need;
  }
  return 0;
}

/* (v, i) ranks before (w, j) when v > w, or v == w and i > j. */
static bool ranks_before(float v, int i, const argmax_pair *p) {
  return v > p->value || (v == p->value && i > p->index);
}

static int argmax_forward(crema_layer *l, crema_blob *const *bottom, crema_blob *const *top,
                          crema_error *err) {
  (void)err;
  argmax_state *s = l->state;
  const crema_blob *b = bottom[0];
  const int top_k = s->top_k;
  size_t dim, stride; /* values per slice, distance between consecutive values */
  if (s->has_axis) {
    dim = (size_t)b->shape[s->axis];
    stride = crema_blob_count_range(b, s->axis + 1, b->num_axes);
  } else {
    dim = crema_blob_count_range(b, 1, b->num_axes);
    stride = 1;
  }
  if (dim == 0) return 0;
  const size_t num = b->count / dim;
  const float *x = b->data;
  float *y = top[0]->data;
#pragma omp parallel for if (b->count > CREMA_PAR_MIN) schedule(static)
  for (size_t i = 0; i < num; i++) {
    const size_t outer = i / stride, in = i % stride;
    const float *xs = x + outer * dim * stride + in;
    argmax_pair *best = s->best + i * (size_t)top_k;
    int n = 0; /* best[0..n) sorted, n <= top_k */
    for (size_t j = 0; j < dim; j++) {
      const float v = xs[j * stride];
      const int idx = (int)j;
      if (n == top_k && !ranks_before(v, idx, &best[n - 1])) continue;
      int pos = n < top_k ? n++ : top_k - 1;
      while (pos > 0 && ranks_before(v, idx, &best[pos - 1])) {
        best[pos] = best[pos - 1];
        pos--;
      }
      best[pos].value = v;
      best[pos].index = idx;
    }
    for (int j = 0; j < top_k; j++) {
      const size_t at = (outer * (size_t)top_k + (size_t)j) * stride + in;
      if (s->has_axis) {
        y[at] = s->out_max_val ? best[j].value : (float)best[j].index;
      } else {
        /* (N, 1 or 2, top_k): the indices, then the values. */
        const size_t base = i * (size_t)top_k * (s->out_max_val ? 2 : 1);
        y[base + j] = (float)best[j].index;
        if (s->out_max_val) y[base + top_k + j] = best[j].value;
      }
    }
  }
  return 0;
}

static void argmax_free(crema_layer *l) {
  argmax_state *s = l->state;
  if (!s) return;
  free(s->best);
  free(s);
}

const crema_layer_ops crema_argmax_ops = {
    .type = "ArgMax",
    .min_bottoms = 1,
    .max_bottoms = 1,
    .min_tops = 1,
    .max_tops = 1,
    .setup = argmax_setup,
    .reshape = argmax_reshape,
    .forward = argmax_forward,
    .free_state = argmax_free,
};
