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

/* One stream of an LSTM step (H cells): the gate inputs x (i, f, o, g; 4H floats) squashed
 * into act (may be x): the sigmoid of i, f and o, tanh of g, and f then 0 where cont is 0 and
 * cont f elsewhere (Caffe's LSTMUnit); then c = f c_prev + i g, tc = tanh(c), h = o tc. The
 * sigmoid and tanh run on vectors (layers/smooth_rows.h): libm's expf and tanhf, one call per
 * element, had been 16% of an LSTM's time on one thread, and a third of its forward pass on
 * two once the products ran on oneDNN. */
void crema_lstm_cell(int H, float cont, const float *x, float *act, const float *c_prev, float *c, float *tc,
                     float *h);

/* That step's gradients, Caffe's LSTMUnit backward, for one stream: with dh = dh_top
 * (+ dh_rec when not NULL) and e = dc + dh o (1 - tc^2), dc_prev = e f (when not NULL; may be
 * dc) and the gate inputs' gradients dx (4H, when not NULL): e g i (1 - i), e c_prev f (1 - f),
 * dh tc o (1 - o), e i (1 - g^2). act and tc are what crema_lstm_cell wrote. */
void crema_lstm_cell_backward(int H, const float *act, const float *tc, const float *c_prev, const float *dc,
                              const float *dh_top, const float *dh_rec, float *dc_prev, float *dx);

/* C (M, N) = alpha op(A) op(B) + beta C, packed row-major, for the recurrences' products:
 * on oneDNN's sgemm where it is the faster one, its columns split over the threads
 * (crema_gemm_cols_omp), while crema's engines are on (RecurrentParameter has no engine field:
 * the process-wide choice applies), else on OpenBLAS. The step-by-step products are thin (N
 * streams by 4H gates): on a Zen 5 core with OpenBLAS's Haswell kernel preset, 64-92 GFLOP/s
 * there against oneDNN's 92-201. */
void crema_rec_gemm(bool trans_a, bool trans_b, int M, int N, int K, float alpha, const float *A,
                    const float *B, float beta, float *C);

#endif
