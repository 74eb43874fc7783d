/* loss_common.h -- small helpers shared by the softmax, loss, accuracy and structural layers:
 * the numerically stable softmax kernel, Caffe's loss normalisation rules, label reading and
 * axis handling. Internal to src/layers (not part of the public library interface). */
#ifndef CREMA_LAYERS_LOSS_COMMON_H
#define CREMA_LAYERS_LOSS_COMMON_H

#include <stdbool.h>
#include <stddef.h>

#include "base/error.h"
#include "layers/layer.h"
#include "proto/crema.pb-c.h"
#include "tensor/blob.h"
#include "tensor/math.h"

/* Positions of the inner axis processed together when inner > 1, so that loops over channels
 * run over contiguous memory (vectorised) instead of striding by `inner`. */
#define CREMA_SOFTMAX_BLOCK 256

/* Softmax over the middle axis of an (outer, channels, inner) array, for every (outer, inner)
 * position: out = exp(x - max) / sum exp(x - max). Subtracting the maximum keeps exp() from
 * overflowing for large logits. out may equal in. channels >= 1. */
void crema_softmax_cpu(const float *in, float *out, int outer, int channels, int inner);

/* The normalisation mode a loss layer uses, following Caffe: an explicit `normalization`
 * wins; otherwise the legacy `normalize` flag maps true -> VALID and false -> BATCH_SIZE;
 * otherwise `fallback` (VALID for SoftmaxWithLoss, BATCH_SIZE for SigmoidCrossEntropyLoss).
 * lp may be NULL (no loss_param): fallback. */
Crema__LossParameter__NormalizationMode crema_loss_mode(const Crema__LossParameter *lp,
                                                        Crema__LossParameter__NormalizationMode fallback);

/* Caffe's normaliser: FULL = outer * inner, VALID = valid_count (or outer * inner when
 * valid_count < 0), BATCH_SIZE = outer, NONE = 1; never below 1 so a batch whose labels are
 * all ignored gives loss 0 rather than a division by zero. */
float crema_loss_normalizer(Crema__LossParameter__NormalizationMode mode, int outer, int inner,
                            int valid_count);

/* Converts a label stored as float to an int the way Caffe does (truncation toward zero).
 * Returns false for NaN, infinities and values beyond int range, which Caffe would turn into
 * undefined behaviour. */
bool crema_label_to_int(float v, int *out);

/* Resolves a possibly negative axis of b; the error names the parameter (e.g. "softmax_param
 * axis"), the value and the bottom's shape. */
int crema_layer_axis(const crema_blob *b, int axis, const char *what, crema_error *err);

/* Reshapes a loss layer's top to a 0-axis scalar (count 1), as Caffe's LossLayer does. */
int crema_loss_reshape_top(crema_blob *top, crema_error *err);

/* Forward and backward of layers that only change the shape (Flatten, Reshape): copy bottom[0]
 * data to top[0] and top[0] diff back to bottom[0] (equal counts). crema's blobs never share
 * memory, and a memcpy costs little next to the layers around it. */
int crema_copy_through_forward(crema_layer *l, crema_blob *const *bottom, crema_blob *const *top,
                               crema_error *err);
void crema_copy_through_backward(crema_layer *l, crema_blob *const *top, const bool *propagate_down,
                                 crema_blob *const *bottom);

#endif
