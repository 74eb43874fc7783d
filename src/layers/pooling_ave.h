/* pooling_ave.h -- AVE pooling's forward and backward passes, one (H, W) plane at a time, with
 * the sums in Caffe's order (so the same bits as its window loops) and eight outputs or
 * inputs side by side where the CPU has AVX2, sixteen where it has AVX-512. pooling.c
 * chooses it. */
#ifndef CREMA_LAYERS_POOLING_AVE_H
#define CREMA_LAYERS_POOLING_AVE_H

#include <stdbool.h>
#include <stddef.h>

/* The plane's geometry and pooling.c's windows: for each output row, then each output column,
 * (lo, hi, len): the input range [lo, hi) and the divisor's extent len (clipped at in + pad). */
typedef struct crema_pool_ave {
  int h, w, ph, pw, kh, kw, sh, sw, pad_h, pad_w;
  const int *rows, *cols;
  bool wide; /* sixteen lanes (AVX-512; crema_pool_ave_wide) instead of eight */
} crema_pool_ave;

/* Strides up to 2 across (any down), kernels up to 8 strides wide, rows of 8+ outputs and
 * planes whose zero-padded copy stays within 16 M floats; other layers keep pooling.c's window
 * loops. */
bool crema_pool_ave_suits(const crema_pool_ave *g);
/* Whether a plane of pw outputs a row runs sixteen lanes wide: a CPU with AVX-512 (and a
 * build with the sixteen-wide code) and more than eight outputs a row. */
bool crema_pool_ave_wide(int pw);
/* Floats of scratch a thread needs (either pass), a multiple of 16. */
size_t crema_pool_ave_scratch_floats(const crema_pool_ave *g);
/* Before a thread's first plane of a call: the divisor's column extents and, for forward, the
 * padded copy's zero border (other layers use the scratch between calls). */
void crema_pool_ave_begin(const crema_pool_ave *g, bool forward, float *scratch);
/* next: the plane that comes after (prefetched while this one's sums run), or NULL. */
void crema_pool_ave_forward(const crema_pool_ave *g, const float *x, const float *next, float *y,
                            float *scratch);
/* dx = the plane's input gradient (overwritten), from dy; next: the plane of dy that comes
 * after (prefetched), or NULL. */
void crema_pool_ave_backward(const crema_pool_ave *g, const float *dy, const float *next, float *dx,
                             float *scratch);

#endif
