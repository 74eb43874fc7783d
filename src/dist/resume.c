/* resume.c -- the log line that says what a resume on another rank count changes. */
#include "dist/resume.h"

#include "base/log.h"

int crema_dist_note_resume(int ranks, const crema_solver *s, const char *snapshot, crema_error *err) {
  const int before = crema_solverstate_ranks(snapshot, err);
  if (before < 0) return -1;
  if (before == ranks) {
    if (ranks > 1)
      CREMA_INFO("%s was written by %d processes, as many as now: every rank resumes exactly", snapshot,
                 ranks);
    return 0;
  }
  const Crema__SolverParameter *p = crema_solver_param(s);
  const int k = p->iter_size > 0 ? p->iter_size : 1;
  CREMA_INFO("%s was written by %d process%s, resuming on %d: each update now averages %d x iter_size %d "
             "batches (it did %d x %d if iter_size was the same); the data continue at the recorded record "
             "(rank r reads records r, r + %d, ...); the iteration count and learning-rate schedule continue "
             "unchanged",
             snapshot, before, before == 1 ? "" : "es", ranks, ranks, k, before, k, ranks);
  return 0;
}
