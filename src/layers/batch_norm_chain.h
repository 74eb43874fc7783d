/* batch_norm_chain.h -- BatchNorm, the per-channel Scale after it and the ReLU after that,
 * run as one pass forward and one pass backward (batch_norm_chain.c).
 *
 * ResNet puts BatchNorm, Scale and ReLU in place behind most convolutions. Run one by one,
 * the three layers read and write the whole activation three times forward and three times
 * backward, and Scale keeps a copy of its input. The net (net_fuse.c) lets the BatchNorm run
 * the other two inside its forward and backward, with stored statistics (a finetune's
 * frozen BatchNorm: `crema finetune` sets use_global_stats) or with the batch's own (training
 * from scratch; backward then makes a second pass over each channel, as BatchNorm's own
 * does). The values are the same bits as the layers give one by one: the same operations in
 * the same order on every element, and the same sums. */
#ifndef CREMA_LAYERS_BATCH_NORM_CHAIN_H
#define CREMA_LAYERS_BATCH_NORM_CHAIN_H

#include <stdbool.h>
#include <stddef.h>

#include "layers/layer.h"

/* One chain over a blob of outer x channels x inner elements (N, C, H*W). */
typedef struct crema_bn_chain {
  size_t outer, channels, inner;
  const float *mean, *stddev; /* BatchNorm's statistics: x_hat = (x - mean) * (1 / stddev) */
  const float *gamma, *beta;  /* Scale's factor and bias; NULL: no Scale, or no bias */
  float *kept;                /* where Scale keeps x_hat for its gradient; NULL: not kept */
  float *x_norm;              /* with batch statistics: BatchNorm's own copy of x_hat (which
                               * its backward reads); NULL with stored statistics */
  bool relu;                  /* then y = y > 0 ? y : slope * y */
  float slope;
} crema_bn_chain;

/* y = relu(x_hat * gamma + beta); y may be x. Writes x_hat to c->kept and c->x_norm when
 * they are set. */
void crema_bn_chain_forward(const crema_bn_chain *c, const float *x, float *y);
/* The same for channel k alone, on the calling thread (BatchNorm with batch statistics runs
 * it per channel right after the channel's statistics, while its rows are in cache). */
void crema_bn_chain_forward_channel(const crema_bn_chain *c, size_t k, const float *x, float *y);

/* From the chain's output y and its gradient dy: d gamma and d beta added to dgamma and
 * dbeta (each NULL when not wanted; dgamma needs c->kept) and, when dx is not NULL, the
 * gradient of the BatchNorm's input written to dx (which may be dy). dy is overwritten with
 * the ReLU's gradient, as the ReLU layer leaves it. */
void crema_bn_chain_backward(const crema_bn_chain *c, const float *y, float *dy, float *dgamma, float *dbeta,
                             float *dx);

/* The same with batch statistics (c->x_norm set): the BatchNorm's gradient
 *   dx = (t - mean(t) - x_hat * mean(t * x_hat)) / stddev,   t = g * gamma,
 * with its means summed as batch_norm.c sums them, in a second pass over each channel. */
void crema_bn_chain_backward_batch(const crema_bn_chain *c, const float *y, float *dy, float *dgamma,
                                   float *dbeta, float *dx);

/* scale.c: where the in-place Scale layer l on blob keeps its input for d gamma, or NULL when
 * it keeps none (a frozen scale, or a net without backward). */
float *crema_scale_kept_input(crema_layer *l, crema_blob *blob);
/* scale.c: the Scale keeps its input in `shared` instead of a buffer of its own (NULL: its
 * own again). For a Scale right after an in-place BatchNorm with batch statistics, whose
 * x_hat (crema_batch_norm_x_norm) is what the Scale reads, bit for bit: one copy fewer. */
void crema_scale_keep_input_in(crema_layer *l, crema_blob *shared);
/* batch_norm.c: the BatchNorm's copy of x_hat, kept for its backward (batch statistics), or
 * NULL (stored statistics). */
crema_blob *crema_batch_norm_x_norm(crema_layer *l);

#endif
