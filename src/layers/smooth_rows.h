/* smooth_rows.h -- the forward passes of the smooth activations (Sigmoid, TanH, Exp, ELU,
 * Swish) over a whole blob: sixteen lanes at a time on a CPU with AVX-512, eight elsewhere,
 * the same bits either way (base/vec_math.h). */
#ifndef CREMA_LAYERS_SMOOTH_ROWS_H
#define CREMA_LAYERS_SMOOTH_ROWS_H

#include <stddef.h>

typedef enum crema_smooth_fn {
  CREMA_SMOOTH_SIGMOID, /* y = 1 / (1 + exp(-x)) */
  CREMA_SMOOTH_TANH,    /* y = tanh(x) */
  CREMA_SMOOTH_EXP,     /* y = b exp(a x) */
  CREMA_SMOOTH_ELU,     /* y = x > 0 ? x : a (exp(x) - 1) */
  CREMA_SMOOTH_SWISH,   /* s = sigmoid(a x), y = x s */
} crema_smooth_fn;

/* y[i] = f(x[i]) for i < n, over OpenMP's threads; x may be y. s receives Swish's sigmoid
 * (unused, may be NULL, for the others). */
void crema_smooth_rows(crema_smooth_fn f, size_t n, const float *x, float a, float b, float *y, float *s);

#endif
