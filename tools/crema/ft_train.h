/* ft_train.h -- the training half of `crema finetune`: runs RUN_DIR/solver.prototxt (from
 * the base weights, or resuming a snapshot), with a progress line on a terminal, Ctrl-C
 * snapshotting, and at the end best.caffemodel, metrics.csv and a summary. */
#ifndef CREMA_TOOLS_FT_TRAIN_H
#define CREMA_TOOLS_FT_TRAIN_H

#include <stdio.h>

typedef struct ft_train_options {
  const char *run_dir;  /* as the user wrote it, for messages; the process is already in it */
  const char *weights;  /* absolute path of the base caffemodel, or NULL */
  const char *snapshot; /* a solverstate (relative to RUN_DIR) to resume, or NULL */
  FILE *user;           /* where the progress line and the summary go */
  int tty;              /* draw the progress line */
} ft_train_options;

/* Returns the exit status (0 done, 1 error; the error is logged and printed on `user`). */
int ft_train(const ft_train_options *o);

/* Path (relative to RUN_DIR) of the newest snapshots/ft_iter_N.solverstate, or NULL (malloc'd). */
char *ft_newest_snapshot(void);

#endif
