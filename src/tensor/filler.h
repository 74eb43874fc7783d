/* filler.h -- parameter initialisation with Caffe's filler semantics.
 *
 * constant (value), uniform (min, max), gaussian (mean, std; `sparse` >= 0 keeps each weight
 * with probability sparse / shape[0]), positive_unitball (each of shape[0] rows uniform and
 * normalised to sum 1), xavier (uniform +-sqrt(3/n)), msra (gaussian std sqrt(2/n)) with n
 * from variance_norm: fan_in = count/shape[0], fan_out = count/shape[1], or their average;
 * bilinear (upsampling kernels for Deconvolution, 4-d square blobs).
 * A NULL filler means constant 0. Unknown type or an impossible shape: an error. */
#ifndef CREMA_TENSOR_FILLER_H
#define CREMA_TENSOR_FILLER_H

#include "base/error.h"
#include "base/rng.h"
#include "proto/crema.pb-c.h"
#include "tensor/blob.h"

int crema_fill(crema_blob *b, const Crema__FillerParameter *filler, crema_rng *rng, crema_error *err);

/* The errors crema_fill would report for this filler on a blob of b's shape, without filling
 * or drawing anything (for layers that fill later, on every forward pass). */
int crema_filler_check(const crema_blob *b, const Crema__FillerParameter *filler, crema_error *err);

/* Fills data with constant value v (no filler message needed). */
void crema_fill_constant(crema_blob *b, float v);

#endif
