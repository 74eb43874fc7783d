#include "layers/layer.h"

#include <assert.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "tensor/filler.h"
#include "tensor/math.h"

static const char *layer_name(const crema_layer *l) {
  return l->param && l->param->name ? l->param->name : "(unnamed)";
}

int crema_layer_create(const Crema__LayerParameter *param, Crema__Phase phase, uint64_t seed,
                       crema_layer **out, crema_error *err) {
  *out = NULL;
  const char *type = param->type ? param->type : "";
  const crema_layer_ops *ops = crema_layer_lookup(type);
  const char *why = ops ? NULL : crema_layer_refused_reason(type);
  if (why)
    return crema_fail(err, "layer \"%s\": crema does not implement Caffe's %s layer: %s",
                      param->name ? param->name : "(unnamed)", type, why);
  if (!ops) {
    char known[2048];
    crema_layer_type_list(known, sizeof known);
    return crema_fail(err, "layer \"%s\" has unknown type \"%s\"; crema knows: %s",
                      param->name ? param->name : "(unnamed)", type, known);
  }
  crema_layer *l = calloc(1, sizeof *l);
  if (!l) return crema_fail(err, "out of memory creating layer \"%s\"", param->name ? param->name : "");
  l->ops = ops;
  l->param = param;
  l->phase = phase;
  crema_rng_seed(&l->rng, seed, 0);
  for (int i = 0; i < CREMA_LAYER_MAX_BLOBS; i++) {
    l->lr_mult[i] = 1.0f;
    l->decay_mult[i] = 1.0f;
    l->param_propagate_down[i] = true;
    if ((size_t)i < param->n_param) {
      l->lr_mult[i] = param->param[i]->lr_mult;
      l->decay_mult[i] = param->param[i]->decay_mult;
    }
  }
  *out = l;
  return 0;
}

static int check_count(const crema_layer *l, const char *what, int n, int lo, int hi, crema_error *err) {
  if (n < lo || (hi >= 0 && n > hi)) {
    if (lo == hi)
      return crema_fail(err, "layer \"%s\" (%s) takes %d %s blob(s), got %d", layer_name(l), l->ops->type, lo,
                        what, n);
    if (hi < 0)
      return crema_fail(err, "layer \"%s\" (%s) takes at least %d %s blob(s), got %d", layer_name(l),
                        l->ops->type, lo, what, n);
    return crema_fail(err, "layer \"%s\" (%s) takes %d to %d %s blobs, got %d", layer_name(l), l->ops->type,
                      lo, hi, what, n);
  }
  return 0;
}

int crema_layer_setup(crema_layer *l, int n_bottom, crema_blob *const *bottom, int n_top,
                      crema_blob *const *top, crema_error *err) {
  const crema_layer_ops *ops = l->ops;
  if (check_count(l, "bottom", n_bottom, ops->min_bottoms, ops->max_bottoms, err) ||
      check_count(l, "top", n_top, ops->min_tops, ops->max_tops, err))
    return -1;
  if (!ops->allow_inplace)
    for (int t = 0; t < n_top; t++)
      for (int b = 0; b < n_bottom; b++)
        if (top[t] == bottom[b])
          return crema_fail(err,
                            "layer \"%s\" (%s) cannot run in place (top \"%s\" is also a bottom); "
                            "give the top its own name",
                            layer_name(l), ops->type, (size_t)t < l->param->n_top ? l->param->top[t] : "?");
  l->n_bottom = n_bottom;
  l->n_top = n_top;
  if (ops->setup && ops->setup(l, bottom, top, err))
    return crema_error_prefix(err, "layer \"%s\" (%s)", layer_name(l), ops->type);
  for (int i = 0; i < l->n_blobs; i++)
    if (l->lr_mult[i] == 0.0f) l->param_propagate_down[i] = false;
  return crema_layer_reshape(l, bottom, top, err);
}

int crema_layer_reshape(crema_layer *l, crema_blob *const *bottom, crema_blob *const *top, crema_error *err) {
  if (l->ops->reshape && l->ops->reshape(l, bottom, top, err))
    return crema_error_prefix(err, "layer \"%s\" (%s)", layer_name(l), l->ops->type);
  return 0;
}

int crema_layer_forward(crema_layer *l, crema_blob *const *bottom, crema_blob *const *top, crema_error *err) {
  if (l->ops->forward(l, bottom, top, err))
    return crema_error_prefix(err, "layer \"%s\" (%s)", layer_name(l), l->ops->type);
  return 0;
}

void crema_layer_backward(crema_layer *l, crema_blob *const *top, const bool *propagate_down,
                          crema_blob *const *bottom) {
  if (l->ops->backward) l->ops->backward(l, top, propagate_down, bottom);
}

void crema_layer_free(crema_layer *l) {
  if (!l) return;
  if (l->ops->free_state) l->ops->free_state(l);
  for (int i = 0; i < l->n_blobs; i++)
    if (!l->blob_shared[i]) crema_blob_free(l->blobs[i]);
  free(l);
}

const char *crema_layer_engine_name(const crema_layer *l) {
  return l->ops->engine_name ? l->ops->engine_name(l) : "caffe";
}

bool crema_layer_refills_every_top(const crema_layer *l, int t) {
  (void)l;
  (void)t;
  return true;
}

int crema_layer_add_blob(crema_layer *l, int i, int num_axes, const int *shape,
                         const Crema__FillerParameter *filler, crema_error *err) {
  if (i < 0 || i >= CREMA_LAYER_MAX_BLOBS) return crema_fail(err, "parameter blob index %d out of range", i);
  if (!l->blobs[i] && !(l->blobs[i] = crema_blob_new())) return crema_fail(err, "out of memory");
  if (i + 1 > l->n_blobs) l->n_blobs = i + 1;
  if (crema_blob_reshape(l->blobs[i], num_axes, shape, err)) return -1;
  /* A blob whose values will be overwritten (copied from --weights, or shared with the train
   * net) is not written at all: not even zeros, which would make its calloc'd pages
   * resident (233 MB for CaffeNet's test net, only to be freed when it shares). The filler is
   * still checked, so a bad one fails the same way with or without --weights. */
  if (l->skip_fill && l->skip_fill(l->skip_fill_ctx, l->param->name ? l->param->name : "", i))
    return crema_filler_check(l->blobs[i], filler, err);
  return crema_fill(l->blobs[i], filler, &l->rng, err);
}

bool crema_layer_keeps_input(const crema_layer *l, crema_blob *const *bottom, crema_blob *const *top) {
  return bottom[0] == top[0] && !l->forward_only;
}

int crema_input_copy_reshape(crema_input_copy *c, bool kept, const crema_blob *bottom, crema_error *err) {
  if (!kept || bottom->count <= c->capacity) return 0;
  float *buf = crema_blob_buffer_alloc(bottom->count, err);
  if (!buf) return crema_error_prefix(err, "the copy of the input kept for backward");
  crema_input_copy_free(c);
  c->buf = buf;
  c->capacity = bottom->count;
  return 0;
}

void crema_input_copy_save(crema_input_copy *c, bool kept, const crema_blob *bottom) {
  if (!kept) return;
  assert(bottom->count <= c->capacity); /* made room by crema_input_copy_reshape */
  crema_copy(bottom->count, bottom->data, c->buf);
}

float *crema_input_copy_target(crema_input_copy *c, bool kept) { return kept ? c->buf : NULL; }

const float *crema_input_copy_data(const crema_input_copy *c, bool kept, const crema_blob *bottom) {
  return kept ? c->buf : bottom->data;
}

void crema_input_copy_free(crema_input_copy *c) {
  crema_blob_buffer_free(c->buf, c->capacity);
  c->buf = NULL;
  c->capacity = 0;
}

int crema_reshape_like_bottom(crema_layer *l, crema_blob *const *bottom, crema_blob *const *top,
                              crema_error *err) {
  (void)l;
  return crema_blob_reshape_like(top[0], bottom[0], err);
}
