/* workspace.h -- scratch memory that the layers of one net share.
 *
 * A net runs its layers one at a time, so the temporary buffers a layer needs only while its
 * forward or backward runs (convolution column matrices, GEMM staging) can all live in one
 * block sized for the largest need, instead of one block per layer (as Caffe has it).
 *
 * Rules:
 *  - Owner: whoever created the struct (a net: crema_net_build makes one, crema_net_free
 *    releases it). It may be lent to another net that never runs at the same time as the
 *    owner (a solver's test nets borrow the train net's).
 *  - Layers reserve what they need at setup/reshape (grow-only; a larger reservation moves
 *    the block) and fetch the block with crema_workspace_data() inside forward/backward.
 *    Never keep the pointer across a reshape of any layer sharing the workspace.
 *  - Contents do not survive from one layer's call to the next: whatever a layer needs
 *    between forward and backward belongs in its own state, not here.
 *  - Not thread-safe: the layers sharing a workspace must run one at a time (several nets on
 *    several threads each need their own).
 * The block comes from crema_aligned_alloc (64-byte aligned, zeroed, pages resident only once
 * written). */
#ifndef CREMA_TENSOR_WORKSPACE_H
#define CREMA_TENSOR_WORKSPACE_H

#include <stddef.h>

#include "base/error.h"

typedef struct crema_workspace {
  float *data; /* NULL until the first reservation */
  size_t cap;  /* floats in data */
} crema_workspace;

/* Makes the block hold at least `floats` floats. A larger request frees the old block and
 * allocates a new one (contents are not kept). Fails only when out of memory. */
int crema_workspace_reserve(crema_workspace *ws, size_t floats, crema_error *err);
/* The block (NULL when nothing was reserved). Valid until the next larger reservation. */
float *crema_workspace_data(const crema_workspace *ws);
/* Floats the block holds. */
size_t crema_workspace_floats(const crema_workspace *ws);
/* Frees the block; the struct is then empty ({0}) and may be used again. */
void crema_workspace_release(crema_workspace *ws);

#endif
