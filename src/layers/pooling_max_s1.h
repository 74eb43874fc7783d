/* pooling_max_s1.h -- MAX pooling's forward pass with stride 1 both ways (GoogLeNet's 3x3
 * pad-1 inception pools), one (H, W) plane at a time, in two passes (row maxima, then the
 * maxima of those down the window), with AVX2 where the CPU has it: the same values and
 * argmaxes as Caffe's window loop. pooling.c chooses it. */
#ifndef CREMA_LAYERS_POOLING_MAX_S1_H
#define CREMA_LAYERS_POOLING_MAX_S1_H

#include <stdbool.h>
#include <stddef.h>

/* The plane's geometry: input h x w, output ph x pw (stride 1: ph = h + 2 pad_h - kh + 1).
 * wide: sixteen outputs at a time, for a CPU with AVX-512 only (crema_pool_max_v16_available
 * in pooling_max_v16.h); it also sets the scratch's size. */
typedef struct crema_pool_s1 {
  int h, w, ph, pw, kh, kw, pad_h, pad_w;
  bool wide;
} crema_pool_s1;

/* Floats of scratch crema_pool_s1_forward needs, 32-byte aligned. */
size_t crema_pool_s1_scratch_floats(const crema_pool_s1 *g);
/* y and its argmax (flat h * w + w index in the plane, -1 when nothing beats -FLT_MAX). next:
 * the plane that comes after (prefetched), or NULL. */
void crema_pool_s1_forward(const crema_pool_s1 *g, const float *x, const float *next, float *y, int *mask,
                           float *scratch);

#endif
