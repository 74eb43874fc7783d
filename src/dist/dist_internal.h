/* dist_internal.h -- the data-parallel handle, shared by the files of src/dist (MPI builds). */
#ifndef CREMA_DIST_DIST_INTERNAL_H
#define CREMA_DIST_DIST_INTERNAL_H

#ifdef CREMA_HAVE_MPI

#include <mpi.h>

#include "dist/dist.h"
#include "dist/resume.h"

/* One allreduce bucket: params order[first .. first + n) of the send list, packed at
 * `offset` floats into the staging buffer. Complete once backward finished layer `ready`. */
typedef struct dist_bucket {
  int first, n;
  size_t offset, count;
  int ready;
  MPI_Request req;
} dist_bucket;

struct crema_dist {
  int rank, size;
  char host[256];
  bool mpi_started; /* we called MPI_Init_thread (and so MPI_Finalize) */
  MPI_Comm comm;    /* a duplicate of MPI_COMM_WORLD with MPI_ERRORS_RETURN */
  double timeout_s;

  /* Gradient exchange, set up by crema_dist_attach. */
  crema_solver *solver;
  crema_net *net;
  bool overlap;
  int iter_size, pass, top_layer;
  int n_send;          /* learned params sent, in backward order */
  int *order;          /* their indices (crema_net_param_at) */
  int n_buckets, next; /* next: first bucket not started this iteration */
  dist_bucket *buckets;
  float *staging;
  size_t staging_count;
  bool failed; /* an MPI call inside the backward callback failed */
  crema_error pending;
  double t_first_start;
  crema_dist_stats stats;

  /* Per-rank random streams (rng_split.c). */
  int n_rng;
  crema_rng *rng_base; /* per train layer: the common state S_t of this iteration */
  bool rng_split;      /* the layers draw from this rank's stream */
  bool after_update;   /* the next agree_stop is the one after the update */
};

/* The text of an MPI error code, for messages. */
void crema_dist_mpi_error(int code, char *buf, size_t size);
/* Waits for n requests, polling (and so progressing MPI) until all complete; fails naming
 * `what` when none completes for d->timeout_s seconds or MPI reports an error. `bulk`: a
 * large transfer, polled without pauses (a small message may pause between polls). */
int crema_dist_wait(crema_dist *d, int n, MPI_Request *reqs, bool bulk, const char *what, crema_error *err);
/* MPI_Ibcast from rank 0 + crema_dist_wait, in chunks small enough for an int count. */
int crema_dist_bcast(crema_dist *d, void *buf, size_t bytes, const char *what, crema_error *err);
/* rng_split.c: allocate the per-layer states; switch the train layers to this rank's
 * streams for an iteration (split); back to the common next state after the update (join). */
int crema_dist_rng_init(crema_dist *d, crema_error *err);
void crema_dist_rng_split(crema_dist *d);
void crema_dist_rng_join(crema_dist *d);
/* Monotonic seconds. */
double crema_dist_now(void);

#endif
#endif
