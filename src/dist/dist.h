/* dist.h -- data-parallel training over MPI: `mpirun -np N crema train ...`.
 *
 * What this module promises:
 *  - Every process ("rank") builds the same solver from the same seed; rank 0 alone loads
 *    --weights / --snapshot, then crema_dist_attach broadcasts rank 0's weights and solver
 *    state, so all ranks start identical.
 *  - Each rank reads its shard of the training data (record g goes to rank g mod N; see
 *    data/shard.h), so one iteration on N ranks sees what one process sees with iter_size N.
 *  - After the backward passes the gradients of the learned parameters (lr_mult != 0) are
 *    summed with MPI_Iallreduce in buckets started while backward is still running for the
 *    layers below, and divided by N; every rank then applies the same update. Frozen
 *    parameters are never sent.
 *  - Only rank 0 logs (INFO), tests, writes metrics, snapshots and early-stopping files; the
 *    stop decision (signal, early stopping) is rank 0's and every rank takes it.
 *  - A collective that makes no progress for timeout seconds fails with an error instead
 *    of hanging; MPI errors are returned (MPI_ERRORS_RETURN), not fatal, and become errors.
 *
 * Errors do not name the rank: a tool prefixes its messages with crema_dist_rank,
 * crema_dist_size and crema_dist_host, as `crema train` does ("error: rank 1 of 4 (node2): ...").
 *
 * Ownership: crema_dist_init creates the handle (initialising MPI when the process was
 * started by an MPI launcher); crema_dist_free finalises MPI. A solver attached with
 * crema_dist_attach must be freed before the handle. The library never exits: on an error
 * a tool prints it and calls crema_dist_abort, which stops every rank (MPI_Abort).
 *
 * Without MPI at build time (or when not started by mpirun) the handle is a world of one
 * process and attach does nothing, so tools call these functions unconditionally. */
#ifndef CREMA_DIST_DIST_H
#define CREMA_DIST_DIST_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "base/error.h"
#include "solver/solver.h"

typedef struct crema_dist crema_dist;

typedef struct crema_dist_options {
  size_t bucket_bytes; /* gradient bytes per allreduce bucket; 0 = 4 MiB */
  double timeout_s;    /* a collective with no progress for this long is an error; 0 = 1800 */
  bool no_overlap;     /* true: start every bucket after backward (for measuring overlap) */
  /* The --snapshot being resumed (read by rank 0 only, for the rank count it records), or
   * NULL. */
  const char *snapshot;
} crema_dist_options;

/* Time spent in gradient exchange since attach, for logs and benchmarks. */
typedef struct crema_dist_stats {
  int iterations;         /* training iterations that exchanged gradients */
  double exposed_seconds; /* waiting after backward for buckets to finish, plus copy-out */
  double total_seconds;   /* wall time from the first bucket's start to the last's end */
  size_t bytes;           /* gradient bytes each rank sends per iteration */
  int buckets, params_sent, params_frozen;
} crema_dist_stats;

/* Joins the MPI job when the process was started by an MPI launcher (Open MPI's mpirun,
 * or any PMI/PMIx launcher); otherwise makes a world of one. Sets the data shard and, on
 * ranks other than 0, the log level (warnings and errors only). Started by a launcher with
 * several processes in a build without MPI: an error saying how to build with MPI.
 * The caller frees with crema_dist_free. */
int crema_dist_init(crema_dist **out, crema_error *err);
/* Finalises MPI (when init started it) and frees the handle. NULL is fine. */
void crema_dist_free(crema_dist *d);
/* Stops the whole job with `code` after an error on this rank (MPI_Abort, which makes the
 * launcher kill every rank and name this one). Returns only in a world of one. */
void crema_dist_abort(crema_dist *d, int code);

int crema_dist_rank(const crema_dist *d);
int crema_dist_size(const crema_dist *d);
/* This process's host name (for messages naming where a rank ran). */
const char *crema_dist_host(const crema_dist *d);
/* Whether this build can train on several processes (MPI found at build time). */
bool crema_dist_available(void);

/* Makes every rank use rank 0's seed: when rank 0 has none (*has_seed false) and the
 * solver's random_seed is negative (time-based), rank 0 draws one. On return every rank
 * has *has_seed true and the same *seed (in a world of one nothing changes). */
int crema_dist_agree_seed(crema_dist *d, bool *has_seed, int64_t *seed, int64_t solver_random_seed,
                          crema_error *err);

/* Makes the solver data-parallel: broadcasts rank 0's weights (every parameter blob of the
 * train net) and solver state to the other ranks, sets the ranks in the solver and hooks
 * the bucketed gradient allreduce into its loop and its train net's backward. Call after
 * rank 0 copied weights / restored a snapshot and before solving; every rank calls it.
 * In a world of one it only returns 0. */
int crema_dist_attach(crema_dist *d, crema_solver *s, const crema_dist_options *opt, crema_error *err);

/* Gradient-exchange times so far (zeros in a world of one). */
crema_dist_stats crema_dist_get_stats(const crema_dist *d);
/* Logs the exchange times on rank 0 (one INFO line); nothing in a world of one. */
void crema_dist_log_stats(const crema_dist *d);

#endif
