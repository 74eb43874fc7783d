/* pooling_max_v16.h -- MAX pooling's forward pass on CPUs with AVX-512: one (H, W) plane,
 * sixteen outputs at a time, from a copy of the input padded with -FLT_MAX (as pooling.c's
 * eight-wide max_plane_padded): the same values and argmaxes as Caffe's window loop.
 * pooling.c chooses it, for strides 1 or 2 across. */
#ifndef CREMA_LAYERS_POOLING_MAX_V16_H
#define CREMA_LAYERS_POOLING_MAX_V16_H

#include <stdbool.h>

/* The plane (h x w in, ph x pw out), its window, and the padded copy: hp rows of wp floats,
 * the input at (pad_h, pad_w), -FLT_MAX elsewhere; wp covers (groups of 16 outputs - 1) *
 * stride_w + kernel_w + 16 columns. */
typedef struct crema_pool_pad {
  int h, w, ph, pw, kh, kw, sh, sw, pad_h, pad_w, hp, wp;
} crema_pool_pad;

/* True when this build has the sixteen-wide pass and the CPU runs it. */
bool crema_pool_max_v16_available(void);
/* Copies the plane x into pad's middle (the border must hold -FLT_MAX already), then writes y
 * and the argmax (flat index h * w + w in the plane, -1 when nothing beats -FLT_MAX). next: the
 * plane that comes after (prefetched), or NULL. */
void crema_pool_max_v16_forward(const crema_pool_pad *g, const float *x, const float *next, float *y,
                                int *mask, float *pad);

#endif
