/* progress.h -- progress reporting for long tool runs (conversion, mean, extraction).
 *
 * On a terminal (stderr is a tty): one redrawn line with a bar, count, rate and ETA,
 * refreshed at most 10 times a second. Otherwise (logs, pipes, CI): a plain log line at
 * every 10% step, so logs stay short and readable. */
#ifndef CREMA_TOOLS_PROGRESS_H
#define CREMA_TOOLS_PROGRESS_H

#include <stdbool.h>
#include <stddef.h>

typedef struct crema_progress {
  const char *what; /* e.g. "converting" */
  const char *unit; /* e.g. "images" */
  size_t total;     /* 0 = unknown */
  double start, last_draw;
  int last_step; /* last 10% step logged (non-terminal mode) */
  bool tty, drawn;
} crema_progress;

/* Starts timing. `what` and `unit` must outlive the progress object (string literals). */
void crema_progress_start(crema_progress *p, const char *what, const char *unit, size_t total);
/* Reports `done` items so far. Cheap when nothing needs drawing. */
void crema_progress_update(crema_progress *p, size_t done);
/* Final state: completes the terminal line with a newline; returns the elapsed seconds. */
double crema_progress_finish(crema_progress *p, size_t done);

#endif
