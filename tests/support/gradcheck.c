#include "support/gradcheck.h"

#include <check.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>

gradcheck_opts gradcheck_defaults(void) {
  gradcheck_opts o = {.step = 1e-2f,
                      .threshold = 1e-2f,
                      .kink = 0.0f,
                      .kink_range = -1.0f,
                      .check_params = true,
                      .max_per_blob = 0,
                      .phase = CREMA__PHASE__TRAIN};
  return o;
}

void gradcheck_fill_gaussian(crema_blob *b, float std, uint64_t seed) {
  crema_rng r;
  crema_rng_seed(&r, seed, 7);
  for (size_t i = 0; i < b->count; i++) b->data[i] = crema_rng_gaussian(&r, 0.0f, std);
}

void gradcheck_fill_uniform(crema_blob *b, float lo, float hi, uint64_t seed) {
  crema_rng r;
  crema_rng_seed(&r, seed, 11);
  for (size_t i = 0; i < b->count; i++) b->data[i] = crema_rng_uniform(&r, lo, hi);
}

typedef struct checker {
  crema_layer *layer;
  crema_rng saved_rng;
  int n_bottom, n_top;
  crema_blob **bottom;
  crema_blob **top;
  float **weights; /* per top, count elements */
} checker;

static double objective(checker *c) {
  crema_error err;
  c->layer->rng = c->saved_rng;
  int rc = crema_layer_forward(c->layer, c->bottom, c->top, &err);
  ck_assert_msg(rc == 0, "forward failed: %s", err.msg);
  double j = 0;
  for (int t = 0; t < c->n_top; t++) /* weights are NULL on the first, shaping pass */
    for (size_t k = 0; c->weights[t] && k < c->top[t]->count; k++)
      j += (double)c->weights[t][k] * c->top[t]->data[k];
  return j;
}

static void check_blob(checker *c, const char *what, int which, crema_blob *x, const float *analytic,
                       const float *kink_ref, const gradcheck_opts *o) {
  size_t n = x->count, stride = 1;
  if (o->max_per_blob > 0 && n > (size_t)o->max_per_blob) stride = n / (size_t)o->max_per_blob;
  for (size_t k = 0; k < n; k += stride) {
    if (o->kink_range >= 0 && kink_ref && fabsf(kink_ref[k] - o->kink) < o->kink_range) continue;
    float orig = x->data[k];
    x->data[k] = orig + o->step;
    double jp = objective(c);
    x->data[k] = orig - o->step;
    double jm = objective(c);
    x->data[k] = orig;
    double numeric = (jp - jm) / (2.0 * o->step);
    double a = analytic[k];
    double scale = fmax(1.0, fmax(fabs(a), fabs(numeric)));
    ck_assert_msg(fabs(a - numeric) <= o->threshold * scale,
                  "layer \"%s\" (%s): gradient of %s %d element %zu: analytic %.6g, numeric %.6g",
                  c->layer->param->name ? c->layer->param->name : "", c->layer->ops->type, what, which, k, a,
                  numeric);
  }
}

void gradcheck_layer(const Crema__LayerParameter *p, int n_bottom, crema_blob **bottom, int n_top,
                     const bool *check_bottom, const gradcheck_opts *opt) {
  gradcheck_opts o = opt ? *opt : gradcheck_defaults();
  crema_error err;
  checker c = {.n_bottom = n_bottom, .n_top = n_top, .bottom = bottom};
  ck_assert_msg(crema_layer_create(p, o.phase, 1234, &c.layer, &err) == 0, "%s", err.msg);
  c.top = calloc((size_t)n_top, sizeof *c.top);
  c.weights = calloc((size_t)n_top, sizeof *c.weights);
  for (int t = 0; t < n_top; t++) c.top[t] = crema_blob_new();
  ck_assert_msg(crema_layer_setup(c.layer, n_bottom, bottom, n_top, c.top, &err) == 0, "%s", err.msg);
  c.saved_rng = c.layer->rng;

  crema_rng wr;
  crema_rng_seed(&wr, 99, 3);
  objective(&c); /* shapes the tops */
  for (int t = 0; t < n_top; t++) {
    c.weights[t] = malloc((c.top[t]->count + 1) * sizeof(float));
    /* Magnitudes in [0.5, 1.5] with random signs: a weight near 0 would hide an error in a
     * 1-element (loss) top. */
    for (size_t k = 0; k < c.top[t]->count; k++) {
      float m = crema_rng_uniform(&wr, 0.5f, 1.5f);
      c.weights[t][k] = crema_rng_bernoulli(&wr, 0.5f) ? m : -m;
    }
  }

  /* Analytic gradients. */
  objective(&c);
  for (int t = 0; t < n_top; t++) memcpy(c.top[t]->diff, c.weights[t], c.top[t]->count * sizeof(float));
  for (int i = 0; i < c.layer->n_blobs; i++) crema_blob_zero_diff(c.layer->blobs[i]);
  bool *prop = calloc((size_t)n_bottom + 1, sizeof(bool));
  for (int b = 0; b < n_bottom; b++) prop[b] = check_bottom ? check_bottom[b] : true;
  crema_layer_backward(c.layer, c.top, prop, bottom);

  float **bgrad = calloc((size_t)n_bottom + 1, sizeof *bgrad);
  float **kref = calloc((size_t)n_bottom + 1, sizeof *kref);
  for (int b = 0; b < n_bottom; b++) {
    bgrad[b] = malloc((bottom[b]->count + 1) * sizeof(float));
    kref[b] = malloc((bottom[b]->count + 1) * sizeof(float));
    memcpy(bgrad[b], bottom[b]->diff, bottom[b]->count * sizeof(float));
    memcpy(kref[b], bottom[b]->data, bottom[b]->count * sizeof(float));
  }
  int np = c.layer->n_blobs;
  float **pgrad = calloc((size_t)np + 1, sizeof *pgrad);
  for (int i = 0; i < np; i++) {
    crema_blob *w = c.layer->blobs[i];
    pgrad[i] = malloc((w->count + 1) * sizeof(float));
    memcpy(pgrad[i], w->diff, w->count * sizeof(float));
  }

  for (int b = 0; b < n_bottom; b++)
    if (prop[b]) check_blob(&c, "bottom", b, bottom[b], bgrad[b], kref[b], &o);
  if (o.check_params)
    for (int i = 0; i < np; i++)
      if (c.layer->param_propagate_down[i] && c.layer->lr_mult[i] != 0.0f)
        check_blob(&c, "param blob", i, c.layer->blobs[i], pgrad[i], NULL, &o);

  for (int b = 0; b < n_bottom; b++) {
    free(bgrad[b]);
    free(kref[b]);
  }
  for (int i = 0; i < np; i++) free(pgrad[i]);
  free(pgrad);
  free(bgrad);
  free(kref);
  free(prop);
  for (int t = 0; t < n_top; t++) {
    crema_blob_free(c.top[t]);
    free(c.weights[t]);
  }
  free(c.top);
  free(c.weights);
  crema_layer_free(c.layer);
}

void gradcheck_loss(const Crema__LayerParameter *p, int n_bottom, crema_blob **bottom, const bool *check) {
  const float w = 1.7f, h = 1e-2f;
  crema_layer *l;
  crema_error err;
  crema_blob *top = crema_blob_new();
  ck_assert_msg(crema_layer_create(p, CREMA__PHASE__TRAIN, 7, &l, &err) == 0, "%s", err.msg);
  ck_assert_msg(crema_layer_setup(l, n_bottom, bottom, 1, &top, &err) == 0, "%s", err.msg);
  ck_assert_msg(crema_layer_forward(l, bottom, &top, &err) == 0, "%s", err.msg);
  top->diff[0] = w;
  crema_layer_backward(l, &top, check, bottom);
  for (int b = 0; b < n_bottom; b++) {
    if (!check[b]) continue;
    float *analytic = malloc(bottom[b]->count * sizeof(float));
    ck_assert_ptr_nonnull(analytic);
    memcpy(analytic, bottom[b]->diff, bottom[b]->count * sizeof(float));
    for (size_t k = 0; k < bottom[b]->count; k++) {
      const float x = bottom[b]->data[k];
      bottom[b]->data[k] = x + h;
      ck_assert_int_eq(crema_layer_forward(l, bottom, &top, &err), 0);
      const double lp = top->data[0];
      bottom[b]->data[k] = x - h;
      ck_assert_int_eq(crema_layer_forward(l, bottom, &top, &err), 0);
      const double lm = top->data[0];
      bottom[b]->data[k] = x;
      const double numeric = w * (lp - lm) / (2.0 * h);
      ck_assert_msg(fabs(numeric - analytic[k]) <= 2e-3 * fmax(1.0, fabs(numeric)),
                    "%s: bottom %d element %zu: analytic %g numeric %g", p->type, b, k, (double)analytic[k],
                    numeric);
    }
    free(analytic);
  }
  crema_layer_free(l);
  crema_blob_free(top);
}
