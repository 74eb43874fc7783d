/* absval.c -- Caffe's "AbsVal": top = |x|, d bottom = d top * sign(x) (sign(0) = 0).
 * Caffe refuses in-place use because |x| loses the sign; crema allows it and keeps a copy
 * of the input in that case, so backward still sees sign(x). */
#include <math.h>
#include <stdlib.h>

#include "base/clones.h"
#include "layers/layer.h"
#include "tensor/math.h"

typedef struct absval_state {
  crema_input_copy saved; /* copy of the input, only for in-place use */
} absval_state;

static int absval_setup(crema_layer *l, crema_blob *const *bottom, crema_blob *const *top, crema_error *err) {
  (void)bottom;
  (void)top;
  absval_state *s = calloc(1, sizeof *s);
  if (!s) return crema_fail(err, "out of memory");
  l->state = s;
  return 0;
}

static int absval_reshape(crema_layer *l, crema_blob *const *bottom, crema_blob *const *top,
                          crema_error *err) {
  absval_state *s = l->state;
  if (crema_blob_reshape_like(top[0], bottom[0], err)) return -1;
  return crema_input_copy_reshape(&s->saved, crema_layer_keeps_input(l, bottom, top), bottom[0], err);
}

static int absval_forward(crema_layer *l, crema_blob *const *bottom, crema_blob *const *top,
                          crema_error *err) {
  (void)err;
  absval_state *s = l->state;
  const size_t n = bottom[0]->count;
  const float *x = bottom[0]->data;
  float *y = top[0]->data;
  /* in place, the input's copy for backward is written in the same pass as y */
  float *saved = crema_input_copy_target(&s->saved, crema_layer_keeps_input(l, bottom, top));
  if (saved) {
#pragma omp parallel for if (n > CREMA_PAR_MIN) schedule(static)
    for (size_t i = 0; i < n; i++) {
      const float v = x[i];
      saved[i] = v;
      y[i] = fabsf(v);
    }
    return 0;
  }
#pragma omp parallel for if (n > CREMA_PAR_MIN) schedule(static)
  for (size_t i = 0; i < n; i++) y[i] = fabsf(x[i]);
  return 0;
}

/* dx = sign(x) dy, 0 where x is 0 or NaN. Two selects, not nested conditionals: gcc 12 left
 * the nested form scalar (3.4 ms for 6.4 M floats, twice a ReLU's backward). */
CREMA_CLONES static void sign_times(size_t n, const float *x, const float *dy, float *dx) {
#pragma omp parallel for if (n > CREMA_PAR_MIN) schedule(static)
  for (size_t i = 0; i < n; i++) {
    const float v = x[i], d = dy[i], pos = v > 0.0f ? d : 0.0f;
    dx[i] = v < 0.0f ? -d : pos;
  }
}

static void absval_backward(crema_layer *l, crema_blob *const *top, const bool *propagate_down,
                            crema_blob *const *bottom) {
  absval_state *s = l->state;
  if (!propagate_down[0]) return;
  const float *x = crema_input_copy_data(&s->saved, crema_layer_keeps_input(l, bottom, top), bottom[0]);
  sign_times(bottom[0]->count, x, top[0]->diff, bottom[0]->diff);
}

static void absval_free(crema_layer *l) {
  absval_state *s = l->state;
  if (!s) return;
  crema_input_copy_free(&s->saved);
  free(s);
}

const crema_layer_ops crema_absval_ops = {
    .type = "AbsVal",
    .min_bottoms = 1,
    .max_bottoms = 1,
    .min_tops = 1,
    .max_tops = 1,
    .allow_inplace = true,
    .setup = absval_setup,
    .reshape = absval_reshape,
    .forward = absval_forward,
    .backward = absval_backward,
    .free_state = absval_free,
};
