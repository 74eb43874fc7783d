/* rng_split.c -- different random draws on every rank (Dropout masks, RReLU slopes), that
 * still resume exactly on any number of ranks.
 *
 * All ranks hold the same layer RNG states S_t at the start of iteration t (rank 0's,
 * broadcast at attach). For the forward and backward passes of iteration t, rank r draws
 * from a stream derived from (S_t, r); after the update every rank sets the layer RNGs to
 * S_{t+1}, derived from S_t alone. So the snapshot (taken after the update) holds S_{t+1},
 * the same on every rank, and a resume on any rank count continues the same sequence.
 * (MPI builds only.) */
#ifdef CREMA_HAVE_MPI

#include <stdlib.h>

#include "dist/dist_internal.h"

/* A stream derived from state s for id k (k = rank, or CREMA_DIST_NEXT_STREAM). */
static void derive(const crema_rng *s, uint64_t k, crema_rng *out) {
  crema_rng tmp = *s;
  const uint64_t key = crema_rng_u64(&tmp);
  crema_rng_seed(out, key, 0x5eed0000u + k);
}

#define NEXT_STREAM 0xffffffffu

int crema_dist_rng_init(crema_dist *d, crema_error *err) {
  d->n_rng = crema_net_num_layers(d->net);
  d->rng_base = calloc((size_t)(d->n_rng ? d->n_rng : 1), sizeof *d->rng_base);
  if (!d->rng_base) return crema_fail(err, "out of memory");
  return 0;
}

void crema_dist_rng_split(crema_dist *d) {
  for (int li = 0; li < d->n_rng; li++) {
    crema_layer *l = crema_net_layer(d->net, li);
    d->rng_base[li] = l->rng;
    derive(&d->rng_base[li], (uint64_t)d->rank, &l->rng);
  }
  d->rng_split = true;
}

void crema_dist_rng_join(crema_dist *d) {
  if (!d->rng_split) return;
  for (int li = 0; li < d->n_rng; li++)
    derive(&d->rng_base[li], NEXT_STREAM, &crema_net_layer(d->net, li)->rng);
  d->rng_split = false;
}

#endif
