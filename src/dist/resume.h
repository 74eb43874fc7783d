/* resume.h -- what a resume on another number of processes changes (all builds). */
#ifndef CREMA_DIST_RESUME_H
#define CREMA_DIST_RESUME_H

#include "base/error.h"
#include "solver/solver.h"

/* Logs, for a run of `ranks` processes resuming `snapshot`, how many processes wrote it and
 * what changes when that number differs: the images per update, and that the data, the
 * iteration count and the learning-rate schedule continue. -1 when the file is unreadable. */
int crema_dist_note_resume(int ranks, const crema_solver *s, const char *snapshot, crema_error *err);

#endif
