/* comm.c -- joining and leaving the MPI job, waiting with a timeout, broadcasts, and the
 * seed every rank agrees on. (MPI builds; serial.c is the world of one otherwise.) */
#ifdef CREMA_HAVE_MPI

#include <sched.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "base/log.h"
#include "base/mem.h"
#include "data/shard.h"
#include "dist/dist_internal.h"

double crema_dist_now(void) {
  struct timespec t;
  clock_gettime(CLOCK_MONOTONIC, &t);
  return (double)t.tv_sec + 1e-9 * (double)t.tv_nsec;
}

void crema_dist_mpi_error(int code, char *buf, size_t size) {
  char text[MPI_MAX_ERROR_STRING];
  int len = 0;
  if (MPI_Error_string(code, text, &len) != MPI_SUCCESS) len = 0;
  text[len] = '\0';
  snprintf(buf, size, "%s", len ? text : "unknown MPI error");
}

bool crema_dist_available(void) { return true; }

/* Started by an MPI launcher? Open MPI's mpirun sets OMPI_COMM_WORLD_SIZE; PMI/PMIx
 * launchers (MPICH's hydra, Slurm's srun) set PMI_SIZE or PMIX_RANK. */
static bool launched_by_mpi(void) {
  return getenv("OMPI_COMM_WORLD_SIZE") || getenv("PMI_SIZE") || getenv("PMIX_RANK");
}

int crema_dist_init(crema_dist **out, crema_error *err) {
  *out = NULL;
  crema_dist *d = calloc(1, sizeof *d);
  if (!d) return crema_fail(err, "out of memory");
  d->size = 1;
  d->comm = MPI_COMM_NULL;
  d->timeout_s = 1800.0;
  if (gethostname(d->host, sizeof d->host - 1)) snprintf(d->host, sizeof d->host, "?");
  int inited = 0;
  MPI_Initialized(&inited);
  if (launched_by_mpi() || inited) {
    if (!inited) {
      int provided = 0;
      /* Only the solving thread calls MPI (prefetch threads never do). */
      if (MPI_Init_thread(NULL, NULL, MPI_THREAD_FUNNELED, &provided) != MPI_SUCCESS) {
        free(d);
        return crema_fail(err, "MPI_Init_thread failed; check the mpirun command line and the hostfile");
      }
      d->mpi_started = true;
    }
    MPI_Comm_dup(MPI_COMM_WORLD, &d->comm);
    MPI_Comm_set_errhandler(d->comm, MPI_ERRORS_RETURN);
    MPI_Comm_rank(d->comm, &d->rank);
    MPI_Comm_size(d->comm, &d->size);
  }
  if (d->size > 1) {
    crema_data_shard_set((uint32_t)d->rank, (uint32_t)d->size);
    if (d->rank != 0 && crema_log_min_level() < CREMA_LOG_WARNING) crema_log_set_min_level(CREMA_LOG_WARNING);
    CREMA_INFO("Data-parallel training: %d processes (MPI), rank 0 on %s", d->size, d->host);
  }
  *out = d;
  return 0;
}

void crema_dist_free(crema_dist *d) {
  if (!d) return;
  free(d->order);
  free(d->buckets);
  crema_aligned_free(d->staging);
  free(d->rng_base);
  if (d->comm != MPI_COMM_NULL) MPI_Comm_free(&d->comm);
  if (d->mpi_started) MPI_Finalize();
  free(d);
}

void crema_dist_abort(crema_dist *d, int code) {
  if (d && d->size > 1) MPI_Abort(MPI_COMM_WORLD, code);
}

int crema_dist_rank(const crema_dist *d) { return d ? d->rank : 0; }
int crema_dist_size(const crema_dist *d) { return d ? d->size : 1; }
const char *crema_dist_host(const crema_dist *d) { return d ? d->host : "?"; }

int crema_dist_wait(crema_dist *d, int n, MPI_Request *reqs, bool bulk, const char *what, crema_error *err) {
  double last_progress = crema_dist_now();
  int remaining = -1;
  for (;;) {
    int done = 0;
    int rc = MPI_Testall(n, reqs, &done, MPI_STATUSES_IGNORE);
    if (rc != MPI_SUCCESS) {
      char text[MPI_MAX_ERROR_STRING + 32];
      crema_dist_mpi_error(rc, text, sizeof text);
      return crema_fail(err, "%s failed: %s; another rank has probably died", what, text);
    }
    if (done) return 0;
    int left = 0;
    for (int i = 0; i < n; i++) left += reqs[i] != MPI_REQUEST_NULL;
    const double now = crema_dist_now();
    if (left != remaining) {
      remaining = left;
      last_progress = now;
    }
    if (now - last_progress > d->timeout_s)
      return crema_fail(err,
                        "%s made no progress for %.0f s: another rank is stuck or has died "
                        "(raise --dist_timeout when a test round takes longer)",
                        what, d->timeout_s);
    /* Open MPI moves a large message a fragment per MPI call: for bulk data keep testing,
     * yielding the core to anything else runnable. A small message waits for a peer (e.g.
     * rank 0 testing): after a second, poll every millisecond. */
    if (!bulk && now - last_progress > 1.0) {
      struct timespec pause = {0, 1000000};
      nanosleep(&pause, NULL);
    } else {
      sched_yield();
    }
  }
}

int crema_dist_bcast(crema_dist *d, void *buf, size_t bytes, const char *what, crema_error *err) {
  const size_t chunk = (size_t)1 << 30;
  for (size_t off = 0; off < bytes; off += chunk) {
    const size_t n = bytes - off < chunk ? bytes - off : chunk;
    MPI_Request req;
    int rc = MPI_Ibcast((char *)buf + off, (int)n, MPI_BYTE, 0, d->comm, &req);
    if (rc != MPI_SUCCESS) {
      char text[MPI_MAX_ERROR_STRING + 32];
      crema_dist_mpi_error(rc, text, sizeof text);
      return crema_fail(err, "broadcasting %s failed: %s", what, text);
    }
    if (crema_dist_wait(d, 1, &req, n > 64, what, err)) return -1;
  }
  return 0;
}

int crema_dist_agree_seed(crema_dist *d, bool *has_seed, int64_t *seed, int64_t solver_random_seed,
                          crema_error *err) {
  if (!d || d->size == 1) return 0;
  int64_t msg[2] = {*has_seed, *seed};
  if (d->rank == 0 && !*has_seed) {
    msg[0] = 1;
    msg[1] = solver_random_seed;
    if (solver_random_seed < 0) {
      struct timespec now;
      clock_gettime(CLOCK_REALTIME, &now);
      msg[1] = (int64_t)(((uint64_t)now.tv_sec * 1000003u) ^ (uint64_t)now.tv_nsec) & INT64_MAX;
      CREMA_INFO(
          "random_seed -1: every rank uses the time-based seed %lld (pass --seed=%lld to repeat this run)",
          (long long)msg[1], (long long)msg[1]);
    }
  }
  if (crema_dist_bcast(d, msg, sizeof msg, "the random seed", err)) return -1;
  *has_seed = true;
  *seed = msg[1];
  return 0;
}

#endif
