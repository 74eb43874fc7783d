/* net_random.c -- seeded random parameters that keep a deep net's activations in range, for
 * deploy nets that come without fillers (benchmarks, cross-checks against other frameworks). */
#include <math.h>
#include <string.h>

#include "base/rng.h"
#include "net/net.h"
#include "tensor/filler.h"

static void fill_uniform(crema_blob *b, float lo, float hi, crema_rng *r) {
  for (size_t i = 0; i < b->count; i++) b->data[i] = crema_rng_uniform(r, lo, hi);
}

/* He-normal: std sqrt(2 / fan_in), fan_in = count / shape[0] (weights are output-major in
 * Convolution and InnerProduct), so ReLU nets keep unit-scale activations layer after layer. */
static void fill_he(crema_blob *b, crema_rng *r) {
  size_t fan_in = b->num_axes > 0 && b->shape[0] > 0 ? b->count / (size_t)b->shape[0] : 1;
  if (fan_in == 0) fan_in = 1;
  float std = sqrtf(2.0f / (float)fan_in);
  for (size_t i = 0; i < b->count; i++) b->data[i] = crema_rng_gaussian(r, 0.0f, std);
}

void crema_net_fill_random_weights(crema_net *net, uint64_t seed) {
  for (int li = 0; li < crema_net_num_layers(net); li++) {
    crema_layer *l = crema_net_layer(net, li);
    const char *type = l->ops->type;
    crema_rng r;
    crema_rng_seed(&r, seed, 0x5eed0000u + (uint64_t)li);
    for (int j = 0; j < l->n_blobs; j++) {
      if (l->blob_shared[j]) continue; /* filled through its owner */
      crema_blob *b = l->blobs[j];
      if (!strcmp(type, "BatchNorm")) {
        /* mean, variance, moving-average factor */
        if (j == 0)
          fill_uniform(b, -0.1f, 0.1f, &r);
        else if (j == 1)
          fill_uniform(b, 0.5f, 1.5f, &r);
        else
          crema_fill_constant(b, 1.0f);
      } else if (!strcmp(type, "Scale")) {
        if (j == 0)
          fill_uniform(b, 0.5f, 1.5f, &r);
        else
          fill_uniform(b, -0.1f, 0.1f, &r);
      } else if (!strcmp(type, "PReLU")) {
        crema_fill_constant(b, 0.25f);
      } else if (!strcmp(type, "Bias") || b->num_axes <= 1) {
        fill_uniform(b, -0.1f, 0.1f, &r);
      } else {
        fill_he(b, &r);
      }
    }
  }
}
