/* recurrent_common.h -- what RNN and LSTM share: Caffe's recurrent_param and bottom layout.
 *
 * Bottoms, as Caffe's RecurrentLayer takes them:
 *   x (T, N, ...)       the inputs of T timesteps of N streams (flattened from axis 2)
 *   cont (T, N)         0 where a sequence starts (the state is reset), 1 where it continues
 *   x_static (N, ...)   optional: an input added at every timestep
 *   h_0 [, c_0] (1, N, H)  only with expose_hidden: the initial state (else 0)
 * Tops: the output (T, N, num_output), then with expose_hidden the final state h_T [, c_T].
 * Parameters are one set shared by every timestep (Caffe unrolls the net and shares them
 * by name); crema runs the same recurrence as a loop over t with those single blobs, so
 * gradients from every timestep accumulate into them. cont gets no gradient. */
#ifndef CREMA_LAYERS_RECURRENT_COMMON_H
#define CREMA_LAYERS_RECURRENT_COMMON_H

#include <stdbool.h>
#include <math.h>
#include <stddef.h>

#include "layers/layer.h"

typedef struct crema_rec_dims {
  int T, N, D, Ds, H; /* timesteps, streams, input size, static input size (0: none), hidden size */
  bool expose, has_static;
  int n_state; /* recurrent state blobs: 1 (RNN: h) or 2 (LSTM: h, c) */
} crema_rec_dims;

/* Reads recurrent_param and the bottoms' shapes; checks what Caffe checks (num_output > 0,
 * cont (T, N), x_static and h_0/c_0 shapes) with errors naming both shapes. n_state: 1 or 2.
 * Call from reshape. */
int crema_rec_dims_read(const crema_layer *l, crema_blob *const *bottom, int n_state, crema_rec_dims *d,
                        crema_error *err);

/* Checks the bottom and top counts for n_state at setup (expose_hidden adds n_state of each). */
int crema_rec_check_arity(const crema_layer *l, int n_state, crema_error *err);

/* Grows *buf to n floats (no allocation when it is large enough). */
int crema_rec_grow(float **buf, size_t *cap, size_t n, crema_error *err);

static inline float crema_rec_sigmoid(float x) { return 1.0f / (1.0f + expf(-x)); }

#endif
