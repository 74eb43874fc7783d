/* gradcheck.h -- numerical gradient checking for layers (Caffe's GradientChecker idea).
 *
 * The objective is J = sum_t sum_k w_tk * top_t[k] with fixed random weights w, so the
 * analytic gradients come from one backward pass with top diffs = w, and the numerical ones
 * from central differences (J(x+h) - J(x-h)) / 2h on every element of every checked bottom
 * and every parameter blob. The layer's RNG is restored before each forward pass so
 * stochastic layers (Dropout, RReLU) see the same draws every time. */
#ifndef CREMA_TESTS_GRADCHECK_H
#define CREMA_TESTS_GRADCHECK_H

#include <stdbool.h>
#include <stdint.h>

#include "layers/layer.h"

typedef struct gradcheck_opts {
  float step;         /* finite-difference step h (default 1e-2) */
  float threshold;    /* allowed |analytic - numeric| / max(1, |analytic|, |numeric|) (default 1e-2) */
  float kink;         /* skip elements whose bottom value is within kink_range of kink ... */
  float kink_range;   /* ... (for non-differentiable points such as ReLU's 0); < 0 = never skip */
  bool check_params;  /* check parameter blobs too (default true) */
  int max_per_blob;   /* check at most this many elements per blob, spread evenly (0 = all) */
  Crema__Phase phase; /* default TRAIN */
} gradcheck_opts;

/* Default options as described above. */
gradcheck_opts gradcheck_defaults(void);

/* Creates a layer from p, sets it up on `bottom` (filled by the caller), and checks the
 * gradients of every bottom i with check_bottom[i] (NULL = all) and, if asked, of the
 * parameter blobs. Fails the running Check test with a message naming the layer, the blob,
 * the element, and both values. n_top tops are created internally. */
void gradcheck_layer(const Crema__LayerParameter *p, int n_bottom, crema_blob **bottom, int n_top,
                     const bool *check_bottom, const gradcheck_opts *opt);

/* For loss layers (a 1-element top): central differences of w * loss against one backward
 * pass with top diff w = 1.7, on every element of each bottom marked in check, with a tight
 * relative tolerance (2e-3 of max(1, |numeric|)). Fails the running Check test naming the
 * layer type, the bottom and the element. */
void gradcheck_loss(const Crema__LayerParameter *p, int n_bottom, crema_blob **bottom, const bool *check);

/* Fills a blob with Gaussian(0, std) values from a seeded generator. */
void gradcheck_fill_gaussian(crema_blob *b, float std, uint64_t seed);
void gradcheck_fill_uniform(crema_blob *b, float lo, float hi, uint64_t seed);

#endif
