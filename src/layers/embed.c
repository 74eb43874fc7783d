/* embed.c -- Caffe's "Embed": a lookup table, the InnerProduct of a one-hot input.
 *   bottom: indices (any shape, values in [0, input_dim)); top: bottom's shape + (num_output)
 *   weights W (input_dim, num_output), bias b (num_output) when bias_term
 *   top[i, :] = W[x_i, :] + b
 *   d W[x_i, :] += d top[i, :];  d b += sum_i d top[i, :];  the indices get no gradient */
#include <stdlib.h>
#include <string.h>

#include "layers/layer.h"
#include "tensor/math.h"

typedef struct embed_state {
  int num_output, input_dim;
  bool bias;
} embed_state;

static int embed_setup(crema_layer *l, crema_blob *const *bottom, crema_blob *const *top, crema_error *err) {
  (void)bottom;
  (void)top;
  const Crema__EmbedParameter *p = l->param->embed_param;
  if (!p || !p->num_output || !p->input_dim)
    return crema_fail(err, "embed_param needs num_output > 0 and input_dim > 0");
  if (p->num_output > 0x7fffffff || p->input_dim > 0x7fffffff)
    return crema_fail(err, "embed_param num_output or input_dim is too large");
  embed_state *s = calloc(1, sizeof *s);
  if (!s) return crema_fail(err, "out of memory");
  l->state = s;
  s->num_output = (int)p->num_output;
  s->input_dim = (int)p->input_dim;
  s->bias = p->bias_term;
  const int wshape[2] = {s->input_dim, s->num_output};
  if (crema_layer_add_blob(l, 0, 2, wshape, p->weight_filler, err)) return -1;
  if (s->bias && crema_layer_add_blob(l, 1, 1, &s->num_output, p->bias_filler, err)) return -1;
  return 0;
}

static int embed_reshape(crema_layer *l, crema_blob *const *bottom, crema_blob *const *top,
                         crema_error *err) {
  const embed_state *s = l->state;
  if (bottom[0]->num_axes >= CREMA_MAX_AXES)
    return crema_fail(err, "the indices have %d axes; at most %d", bottom[0]->num_axes, CREMA_MAX_AXES - 1);
  int shape[CREMA_MAX_AXES];
  memcpy(shape, bottom[0]->shape, sizeof shape);
  shape[bottom[0]->num_axes] = s->num_output;
  return crema_blob_reshape(top[0], bottom[0]->num_axes + 1, shape, err);
}

static int embed_forward(crema_layer *l, crema_blob *const *bottom, crema_blob *const *top,
                         crema_error *err) {
  const embed_state *s = l->state;
  const size_t m = bottom[0]->count, k = (size_t)s->num_output;
  const float *w = l->blobs[0]->data;
  for (size_t i = 0; i < m; i++) {
    const float v = bottom[0]->data[i];
    if (!(v >= 0.0f && v < (float)s->input_dim) || v != (float)(int)v)
      return crema_fail(err, "index %zu is %g; embed_param input_dim %d allows the integers 0 to %d", i,
                        (double)v, s->input_dim, s->input_dim - 1);
    memcpy(top[0]->data + i * k, w + (size_t)v * k, k * sizeof(float));
    if (s->bias) crema_axpy(k, 1.0f, l->blobs[1]->data, top[0]->data + i * k);
  }
  return 0;
}

static void embed_backward(crema_layer *l, crema_blob *const *top, const bool *propagate_down,
                           crema_blob *const *bottom) {
  (void)propagate_down;
  const embed_state *s = l->state;
  const size_t m = bottom[0]->count, k = (size_t)s->num_output;
  const float *dy = top[0]->diff;
  if (l->param_propagate_down[0])
    for (size_t i = 0; i < m; i++)
      crema_axpy(k, 1.0f, dy + i * k, l->blobs[0]->diff + (size_t)bottom[0]->data[i] * k);
  if (s->bias && l->param_propagate_down[1])
    for (size_t i = 0; i < m; i++) crema_axpy(k, 1.0f, dy + i * k, l->blobs[1]->diff);
}

static void embed_free(crema_layer *l) { free(l->state); }

const crema_layer_ops crema_embed_ops = {
    .type = "Embed",
    .min_bottoms = 1,
    .max_bottoms = 1,
    .min_tops = 1,
    .max_tops = 1,
    .setup = embed_setup,
    .reshape = embed_reshape,
    .forward = embed_forward,
    .backward = embed_backward,
    .free_state = embed_free,
};
