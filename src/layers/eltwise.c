/* Eltwise: element-wise PROD, SUM (with optional per-bottom `coeff`, default 1) or MAX of two
 * or more bottoms of identical shape.
 * Backward: SUM -> coeff_i * top_diff; MAX -> top_diff where bottom i held the maximum (ties
 * resolved as Caffe: between bottoms 0 and 1 bottom 1 wins, a later bottom wins only when
 * strictly larger); PROD -> top_diff * product of the other bottoms,
 * computed directly when stable_prod_grad (default) or as top / bottom_i otherwise. */
#include <stdlib.h>

#include "layers/layer.h"
#include "layers/loss_common.h"
#include "tensor/math.h"

typedef struct eltwise_state {
  Crema__EltwiseParameter__EltwiseOp op;
  bool stable_prod_grad;
  float *coeff; /* one per bottom */
  int *mask;    /* MAX: which bottom won each element, grow-only */
  size_t mask_capacity;
} eltwise_state;

static int eltwise_setup(crema_layer *l, crema_blob *const *bottom, crema_blob *const *top,
                         crema_error *err) {
  (void)bottom;
  (void)top;
  eltwise_state *s = calloc(1, sizeof *s);
  if (!s) return crema_fail(err, "out of memory");
  l->state = s;
  const Crema__EltwiseParameter *ep = l->param->eltwise_param;
  s->op = ep ? ep->operation : CREMA__ELTWISE_PARAMETER__ELTWISE_OP__SUM;
  s->stable_prod_grad = ep ? ep->stable_prod_grad : true;
  if (s->op != CREMA__ELTWISE_PARAMETER__ELTWISE_OP__PROD &&
      s->op != CREMA__ELTWISE_PARAMETER__ELTWISE_OP__SUM &&
      s->op != CREMA__ELTWISE_PARAMETER__ELTWISE_OP__MAX)
    return crema_fail(err, "eltwise_param operation %d is unknown; use PROD, SUM or MAX", (int)s->op);
  size_t n_coeff = ep ? ep->n_coeff : 0;
  if (n_coeff && n_coeff != (size_t)l->n_bottom)
    return crema_fail(err, "eltwise_param has %zu coeff values for %d bottoms; give one per bottom", n_coeff,
                      l->n_bottom);
  if (n_coeff && s->op != CREMA__ELTWISE_PARAMETER__ELTWISE_OP__SUM)
    return crema_fail(err, "eltwise_param coeff is only allowed with operation SUM");
  if (!(s->coeff = malloc((size_t)l->n_bottom * sizeof *s->coeff))) return crema_fail(err, "out of memory");
  for (int i = 0; i < l->n_bottom; i++) s->coeff[i] = n_coeff ? ep->coeff[i] : 1.0f;
  return 0;
}

static int eltwise_reshape(crema_layer *l, crema_blob *const *bottom, crema_blob *const *top,
                           crema_error *err) {
  eltwise_state *s = l->state;
  char a[256], b[256];
  for (int i = 1; i < l->n_bottom; i++)
    if (!crema_blob_same_shape(bottom[0], bottom[i]))
      return crema_fail(
          err, "bottom 0 has shape %s but bottom %d has shape %s; all bottoms must have the same shape",
          crema_blob_shape_string(bottom[0], a, sizeof a), i,
          crema_blob_shape_string(bottom[i], b, sizeof b));
  if (s->op == CREMA__ELTWISE_PARAMETER__ELTWISE_OP__MAX && bottom[0]->count > s->mask_capacity) {
    int *mask = realloc(s->mask, bottom[0]->count * sizeof *mask);
    if (!mask) return crema_fail(err, "out of memory");
    s->mask = mask;
    s->mask_capacity = bottom[0]->count;
  }
  return crema_blob_reshape_like(top[0], bottom[0], err);
}

/* The loops below make one pass per bottom rather than one loop over bottoms per element:
 * each pass streams contiguous arrays and vectorises. */
static int eltwise_forward(crema_layer *l, crema_blob *const *bottom, crema_blob *const *top,
                           crema_error *err) {
  (void)err;
  eltwise_state *s = l->state;
  const size_t n = top[0]->count;
  const int nb = l->n_bottom;
  const bool par = n > CREMA_PAR_MIN;
  float *y = top[0]->data;
  const float *a = bottom[0]->data, *b = bottom[1]->data;
  /* a ReLU the net runs here (crema_net_fuse): backward is unchanged, since the ReLU is in
   * place, so PROD's backward read its output before as well */
  const crema_act act = l->run_fused ? l->fusion.act : (crema_act){0};
  bool act_done = false;
  switch (s->op) {
  case CREMA__ELTWISE_PARAMETER__ELTWISE_OP__PROD:
#pragma omp parallel for if (par) schedule(static)
    for (size_t k = 0; k < n; k++) y[k] = a[k] * b[k];
    for (int i = 2; i < nb; i++) {
      const float *x = bottom[i]->data;
#pragma omp parallel for if (par) schedule(static)
      for (size_t k = 0; k < n; k++) y[k] *= x[k];
    }
    break;
  case CREMA__ELTWISE_PARAMETER__ELTWISE_OP__SUM: {
    const float c0 = s->coeff[0], c1 = s->coeff[1];
    if (nb == 2 && act.relu) {    /* ResNet's shortcut + ReLU: one pass */
      const float ns = act.slope; /* a scalar, not the struct, or the loop does not vectorise */
#pragma omp parallel for if (par) schedule(static)
      for (size_t k = 0; k < n; k++) {
        const float v = c0 * a[k] + c1 * b[k], neg = ns * v;
        y[k] = v > 0.0f ? v : neg; /* relu.c's select */
      }
      act_done = true;
      break;
    }
#pragma omp parallel for if (par) schedule(static)
    for (size_t k = 0; k < n; k++) y[k] = c0 * a[k] + c1 * b[k];
    for (int i = 2; i < nb; i++) {
      const float *x = bottom[i]->data, c = s->coeff[i];
#pragma omp parallel for if (par) schedule(static)
      for (size_t k = 0; k < n; k++) y[k] += c * x[k];
    }
    break;
  }
  default: { /* MAX, with Caffe's tie rule: bottom 1 wins ties with bottom 0, later bottoms
              * win only when strictly larger. */
    int *mask = s->mask;
    /* Selects rather than branches, so the loops vectorise. */
#pragma omp parallel for if (par) schedule(static)
    for (size_t k = 0; k < n; k++) {
      const float av = a[k], bv = b[k];
      const int first = av > bv;
      y[k] = first ? av : bv;
      mask[k] = 1 - first;
    }
    for (int i = 2; i < nb; i++) {
      const float *x = bottom[i]->data;
      const int bi = i;
#pragma omp parallel for if (par) schedule(static)
      for (size_t k = 0; k < n; k++) {
        const float xv = x[k], yv = y[k];
        const int m = mask[k], gt = xv > yv;
        y[k] = gt ? xv : yv;
        mask[k] = m + gt * (bi - m); /* arithmetic: gcc will not vectorise an int select here */
      }
    }
    break;
  }
  }
  if (!act_done) crema_act_apply(act, n, y, false);
  return 0;
}

/* The backward of the ReLU the net runs in this layer (crema_net_fuse, in training it runs
 * the ReLU's backward too): relu.c's, in place on the top's diff, reading the in-place
 * output (the sign of the input for a slope >= 0). */
static void relu_backward_in_place(const crema_act act, size_t n, const float *y, float *dy) {
  const float ns = act.slope;
#pragma omp parallel for if (n > CREMA_PAR_MIN) schedule(static)
  for (size_t k = 0; k < n; k++) dy[k] = crema_relu_grad(dy[k], y[k], ns);
}

/* The Split's backward (two tops), into the top's diff. */
static void split_sum(size_t n, const float *a, const float *b, float *dy) {
#pragma omp parallel for if (n > CREMA_PAR_MIN) schedule(static)
  for (size_t k = 0; k < n; k++) dy[k] = a[k] + b[k];
}

static void eltwise_backward(crema_layer *l, crema_blob *const *top, const bool *propagate_down,
                             crema_blob *const *bottom) {
  eltwise_state *s = l->state;
  const size_t n = top[0]->count;
  const int nb = l->n_bottom;
  const bool par = n > CREMA_PAR_MIN;
  float *dy = top[0]->diff;
  const float *y = top[0]->data;
  const crema_act act = l->run_fused ? l->fusion.act : (crema_act){0};
  /* The Split after this layer, whose sum this backward makes (split.c's a + b) */
  const float *sa = l->run_fused && l->fusion.sum[0] ? l->fusion.sum[0]->diff : NULL;
  const float *sb = sa ? l->fusion.sum[1]->diff : NULL;
  /* Two bottoms, both wanting a gradient (a residual sum): one pass reads dy once (and the
   * ReLU's output, when the ReLU runs here) and writes both, the same values as the ReLU's
   * backward followed by the loop below. */
  if (nb == 2 && propagate_down[0] && propagate_down[1] &&
      s->op != CREMA__ELTWISE_PARAMETER__ELTWISE_OP__PROD) {
    float *d0 = bottom[0]->diff, *d1 = bottom[1]->diff;
    if (s->op == CREMA__ELTWISE_PARAMETER__ELTWISE_OP__SUM && act.relu) {
      const float c0 = s->coeff[0], c1 = s->coeff[1], ns = act.slope;
#pragma omp parallel for if (par) schedule(static)
      for (size_t k = 0; k < n; k++) {
        const float g = crema_relu_grad(sa ? sa[k] + sb[k] : dy[k], y[k], ns);
        d0[k] = c0 * g;
        d1[k] = c1 * g;
      }
      return;
    }
    if (sa) split_sum(n, sa, sb, dy);
    if (act.relu) relu_backward_in_place(act, n, y, dy);
    if (s->op == CREMA__ELTWISE_PARAMETER__ELTWISE_OP__SUM) {
      const float c0 = s->coeff[0], c1 = s->coeff[1];
#pragma omp parallel for if (par) schedule(static)
      for (size_t k = 0; k < n; k++) {
        const float g = dy[k];
        d0[k] = c0 * g;
        d1[k] = c1 * g;
      }
    } else {
      const int *mask = s->mask;
#pragma omp parallel for if (par) schedule(static)
      for (size_t k = 0; k < n; k++) {
        const float g = dy[k];
        const int first = mask[k] == 0;
        d0[k] = first ? g : 0.0f;
        d1[k] = first ? 0.0f : g;
      }
    }
    return;
  }
  if (sa) split_sum(n, sa, sb, dy);
  if (act.relu) relu_backward_in_place(act, n, y, dy);
  for (int i = 0; i < nb; i++) {
    if (!propagate_down[i]) continue;
    float *dx = bottom[i]->diff;
    const float *x = bottom[i]->data;
    switch (s->op) {
    case CREMA__ELTWISE_PARAMETER__ELTWISE_OP__PROD:
      if (s->stable_prod_grad) { /* dy times the product of the other bottoms */
        const int first = i == 0 ? 1 : 0;
        const float *o = bottom[first]->data;
#pragma omp parallel for if (par) schedule(static)
        for (size_t k = 0; k < n; k++) dx[k] = dy[k] * o[k];
        for (int j = first + 1; j < nb; j++) {
          if (j == i) continue;
          const float *oj = bottom[j]->data;
#pragma omp parallel for if (par) schedule(static)
          for (size_t k = 0; k < n; k++) dx[k] *= oj[k];
        }
      } else { /* Caffe's fast form; inf/nan where bottom i is 0 */
#pragma omp parallel for if (par) schedule(static)
        for (size_t k = 0; k < n; k++) dx[k] = y[k] / x[k] * dy[k];
      }
      break;
    case CREMA__ELTWISE_PARAMETER__ELTWISE_OP__SUM: {
      const float c = s->coeff[i];
#pragma omp parallel for if (par) schedule(static)
      for (size_t k = 0; k < n; k++) dx[k] = c * dy[k];
      break;
    }
    default: { /* MAX */ const int *mask = s->mask;
#pragma omp parallel for if (par) schedule(static)
      for (size_t k = 0; k < n; k++) {
        const float g = dy[k];
        dx[k] = mask[k] == i ? g : 0.0f;
      }
      break;
    }
    }
  }
}

static void eltwise_free(crema_layer *l) {
  eltwise_state *s = l->state;
  if (!s) return;
  free(s->coeff);
  free(s->mask);
  free(s);
}

const crema_layer_ops crema_eltwise_ops = {
    .type = "Eltwise",
    .min_bottoms = 2,
    .max_bottoms = -1,
    .min_tops = 1,
    .max_tops = 1,
    .setup = eltwise_setup,
    .reshape = eltwise_reshape,
    .forward = eltwise_forward,
    .backward = eltwise_backward,
    .free_state = eltwise_free,
    .takes_fusion = true,
};
