/* serial.c -- the world of one process, for builds without MPI: the same API as comm.c and
 * allreduce.c, doing nothing, so tools call it unconditionally. */
#ifndef CREMA_HAVE_MPI

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "dist/dist.h"
#include "dist/resume.h"

struct crema_dist {
  char host[256];
};

bool crema_dist_available(void) { return false; }

/* The size an MPI launcher announced, or 1. */
static long launcher_size(void) {
  const char *v = getenv("OMPI_COMM_WORLD_SIZE");
  if (!v) v = getenv("PMI_SIZE");
  return v ? strtol(v, NULL, 10) : 1;
}

int crema_dist_init(crema_dist **out, crema_error *err) {
  *out = NULL;
  const long n = launcher_size();
  if (n > 1)
    return crema_fail(err,
                      "started by an MPI launcher with %ld processes, but this crema was built without MPI; "
                      "install libopenmpi-dev and openmpi-bin and rebuild (cmake finds MPI automatically)",
                      n);
  crema_dist *d = calloc(1, sizeof *d);
  if (!d) return crema_fail(err, "out of memory");
  if (gethostname(d->host, sizeof d->host - 1)) snprintf(d->host, sizeof d->host, "?");
  *out = d;
  return 0;
}

void crema_dist_free(crema_dist *d) { free(d); }
void crema_dist_abort(crema_dist *d, int code) {
  (void)d;
  (void)code;
}
int crema_dist_rank(const crema_dist *d) {
  (void)d;
  return 0;
}
int crema_dist_size(const crema_dist *d) {
  (void)d;
  return 1;
}
const char *crema_dist_host(const crema_dist *d) { return d ? d->host : "?"; }

int crema_dist_agree_seed(crema_dist *d, bool *has_seed, int64_t *seed, int64_t solver_random_seed,
                          crema_error *err) {
  (void)d;
  (void)has_seed;
  (void)seed;
  (void)solver_random_seed;
  (void)err;
  return 0;
}

int crema_dist_attach(crema_dist *d, crema_solver *s, const crema_dist_options *opt, crema_error *err) {
  (void)d;
  if (opt && opt->snapshot) return crema_dist_note_resume(1, s, opt->snapshot, err);
  return 0;
}

crema_dist_stats crema_dist_get_stats(const crema_dist *d) {
  (void)d;
  crema_dist_stats st;
  memset(&st, 0, sizeof st);
  return st;
}

void crema_dist_log_stats(const crema_dist *d) { (void)d; }

#endif
