/* ft_log.h -- `crema finetune`'s log: every line the library logs (fd 2) goes to
 * RUN_DIR/train.log, and to the terminal either in full (when stderr is not a terminal:
 * pipes, CI) or only its warnings and errors (on a terminal, where a progress line is shown
 * instead). A thread copies the lines from a pipe that replaces fd 2. */
#ifndef CREMA_TOOLS_FT_LOG_H
#define CREMA_TOOLS_FT_LOG_H

#include <pthread.h>
#include <stdbool.h>
#include <stdio.h>

#include "base/error.h"

typedef struct ft_log {
  bool active, echo_all;
  int saved_fd, read_fd, log_fd;
  pthread_t thread;
  FILE *user; /* the original stderr, for the progress line and messages */
} ft_log;

/* Starts copying fd 2 into log_path (appending). echo_all: copy every line to the original
 * stderr too; otherwise only warnings and errors. */
int ft_log_start(ft_log *l, const char *log_path, bool echo_all, crema_error *err);
/* Restores fd 2 and waits until every line is written. Safe to call twice. */
void ft_log_stop(ft_log *l);

#endif
