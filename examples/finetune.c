/* finetune.c -- finetune a model from a Caffe solver file, reporting progress, through
 * crema's C API.
 *
 *   finetune SOLVER.prototxt [WEIGHTS.caffemodel[,MORE...]] [MAX_ITER]
 *
 * Weights are copied by layer name (renamed layers start from their fillers), as with
 * `crema train --weights`. Prints a progress line every 10 iterations and after each test
 * round; Ctrl-C asks the trainer to snapshot and stop, so the run can be resumed.
 * Build: cc finetune.c $(pkg-config --cflags --libs crema) -o finetune */
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>

#include <crema/crema.h>

static crema_trainer *trainer; /* for the signal handler */

static void on_sigint(int sig) {
  (void)sig;
  crema_trainer_request(trainer, CREMA_STOP); /* async-signal-safe */
}

static crema_action on_iteration(void *user, int iter, float loss, float lr) {
  (void)user;
  if (iter % 10 == 0) printf("iteration %d  loss %.4f  lr %g\n", iter, loss, lr);
  fflush(stdout);
  return CREMA_CONTINUE;
}

static crema_action on_test(void *user, int iter, int n, const char *const *names, const float *values) {
  (void)user;
  printf("test at iteration %d:", iter);
  for (int i = 0; i < n; i++) printf("  %s %.4f", names[i], values[i]);
  printf("\n");
  fflush(stdout);
  return CREMA_CONTINUE;
}

int main(int argc, char **argv) {
  if (argc < 2 || argc > 4) {
    fprintf(stderr, "usage: %s SOLVER.prototxt [WEIGHTS.caffemodel[,...]] [MAX_ITER]\n", argv[0]);
    return 2;
  }
  crema_set_log_level(1);
  crema_train_options opt = {0};
  opt.weights = argc >= 3 && argv[2][0] ? argv[2] : NULL;
  opt.max_iter = argc == 4 ? atoi(argv[3]) : 0;
  opt.callbacks.on_iteration = on_iteration;
  opt.callbacks.on_test = on_test;
  if (crema_trainer_create(argv[1], &opt, &trainer) != CREMA_OK) {
    fprintf(stderr, "error: %s\n", crema_last_error());
    return 1;
  }
  signal(SIGINT, on_sigint);
  crema_status s = crema_trainer_run(trainer);
  signal(SIGINT, SIG_DFL);
  if (s != CREMA_OK) {
    fprintf(stderr, "error: %s\n", crema_last_error());
  } else {
    printf("%s after %d iterations; snapshots: %s_iter_N.caffemodel\n",
           crema_trainer_stopped_early(trainer) ? "stopped" : "done", crema_trainer_iter(trainer),
           crema_trainer_snapshot_prefix(trainer));
  }
  crema_trainer_free(trainer);
  return s == CREMA_OK ? 0 : 1;
}
