#include "crema/ft_train.h"

#include <dirent.h>
#include <limits.h>
#include <signal.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "base/log.h"
#include "proto/io.h"
#include "proto/textformat.h"
#include "solver/solver.h"

#define FT_PREFIX "snapshots/ft"

static volatile sig_atomic_t got_sigint;

static void on_sigint(int sig) {
  (void)sig;
  got_sigint = 1;
}

static crema_solver_action requested(void *ctx) {
  int *interrupted = ctx;
  if (!got_sigint) return CREMA_SOLVER_ACTION_NONE;
  got_sigint = 0;
  *interrupted = 1;
  CREMA_INFO("SIGINT received: snapshotting and stopping");
  return CREMA_SOLVER_ACTION_STOP;
}

static double now_s(void) {
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return (double)ts.tv_sec + ts.tv_nsec * 1e-9;
}

typedef struct progress {
  FILE *out;
  int tty, batch, per_epoch, max_iter, first_iter;
  double start, last_draw;
  float val_acc;
  int has_val;
} progress;

static void draw(progress *p, int iter, float loss) {
  const double t = now_s();
  if (!p->tty || (t - p->last_draw < 0.1 && iter < p->max_iter)) return;
  p->last_draw = t;
  const double el = t - p->start, done = iter - p->first_iter;
  const double rate = el > 0 ? done * p->batch / el : 0;
  const double eta = done > 0 ? (p->max_iter - iter) * el / done : 0;
  char acc[32] = "-";
  if (p->has_val) snprintf(acc, sizeof acc, "%.3f", p->val_acc);
  fprintf(p->out, "\r\033[Kiter %d/%d  epoch %d/%d  loss %.4f  val acc %s  %.0f img/s  ETA %d:%02d", iter,
          p->max_iter, (iter + p->per_epoch - 1) / p->per_epoch,
          (p->max_iter + p->per_epoch - 1) / p->per_epoch, loss, acc, rate, (int)eta / 60, (int)eta % 60);
}

static void on_iteration(void *ctx, const crema_solver *s, int iter, float loss, float lr) {
  (void)s;
  (void)lr;
  draw(ctx, iter, loss);
}

static void on_test(void *ctx, const crema_solver *s, int iter) {
  progress *p = ctx;
  (void)iter;
  float v;
  if (crema_solver_test_value(s, 0, "accuracy", &v) == 0) {
    p->val_acc = v;
    p->has_val = 1;
  }
}

char *ft_newest_snapshot(void) {
  DIR *d = opendir("snapshots");
  if (!d) return NULL;
  long best = -1;
  struct dirent *e;
  while ((e = readdir(d))) {
    long n;
    char tail[64];
    if (sscanf(e->d_name, "ft_iter_%ld%63s", &n, tail) == 2 && !strcmp(tail, ".solverstate") && n > best)
      best = n;
  }
  closedir(d);
  if (best < 0) return NULL;
  char *p = malloc(64);
  if (p) snprintf(p, 64, FT_PREFIX "_iter_%ld.solverstate", best);
  return p;
}

/* Best accuracy and its iteration from the metrics CSV; -1 when there is none. */
static int best_from_metrics(const char *path, double *acc, int *iter) {
  FILE *f = fopen(path, "r");
  if (!f) return -1;
  char line[8192];
  int col = -1, found = -1;
  if (fgets(line, sizeof line, f)) {
    int i = 0;
    for (char *tok = strtok(line, ",\n"); tok; tok = strtok(NULL, ",\n"), i++)
      if (!strcmp(tok, "accuracy")) col = i;
  }
  while (col >= 0 && fgets(line, sizeof line, f)) {
    int i = 0, it = -1;
    char *s = line; /* split by hand: empty cells matter */
    for (;; i++) {
      char *c = strchr(s, ',');
      if (c) *c = '\0';
      if (i == 0) it = atoi(s);
      if (i == col && *s && *s != '\n') {
        const double v = atof(s);
        if (found < 0 || v > *acc) {
          *acc = v;
          *iter = it;
          found = 0;
        }
      }
      if (!c) break;
      s = c + 1;
    }
  }
  fclose(f);
  return found;
}

/* dst as a hard link to src (a copy when links do not work). */
static void publish(const char *src, const char *dst) {
  if (access(src, R_OK)) return;
  unlink(dst);
  if (link(src, dst) == 0) return;
  char *data;
  size_t len;
  crema_error err;
  if (crema_read_file(src, &data, &len, &err) == 0) {
    if (crema_write_file_atomic(dst, data, len, &err)) CREMA_WARN("%s", err.msg);
    free(data);
  }
}

int ft_train(const ft_train_options *o) {
  crema_error err = {{0}};
  Crema__SolverParameter *param = NULL;
  if (crema_read_solver_param("solver.prototxt", &param, &err)) {
    fprintf(o->user, "error: %s\n", err.msg);
    return 1;
  }
  /* Always keep the best model: watch accuracy, stopping only when the files say so. */
  if (!param->early_stopping) {
    const char *text = "metric: \"accuracy\" mode: MAXIMIZE patience: 1000000000";
    ProtobufCMessage *m = NULL;
    if (crema_text_parse(&crema__early_stopping_parameter__descriptor, text, strlen(text), "(finetune)", &m,
                         &err) == 0)
      param->early_stopping = (Crema__EarlyStoppingParameter *)m;
  }
  int interrupted = 0;
  crema_solver_options opt;
  memset(&opt, 0, sizeof opt);
  opt.solver_path = "solver.prototxt";
  opt.action = requested;
  opt.action_ctx = &interrupted;
  if (o->snapshot) {
    int64_t seed;
    if (crema_solverstate_seed(o->snapshot, &seed, &err) == 1) {
      opt.has_seed = true;
      opt.seed = seed;
    }
  }
  progress pr = {
      o->user, o->tty, 1, param->test_interval > 0 ? param->test_interval : 1, param->max_iter, 0, now_s(),
      0,       0,      0};
  opt.hooks.ctx = &pr;
  opt.hooks.on_iteration = on_iteration;
  opt.hooks.on_test = on_test;

  struct sigaction sa, old;
  memset(&sa, 0, sizeof sa);
  sigemptyset(&sa.sa_mask);
  sa.sa_handler = on_sigint;
  /* restart the calls the signal interrupts (a read of an image on the prefetch thread, a
   * write of the log): without it one of them could fail with EINTR and end the run as an
   * error instead of a snapshot */
  sa.sa_flags = SA_RESTART;
  sigaction(SIGINT, &sa, &old);

  const double t0 = now_s();
  crema_solver *s = NULL;
  int status = 0;
  if (crema_solver_create(param, &opt, &s, &err)) status = 1;
  if (!status) {
    crema_net *net = crema_solver_net(s);
    const int *tops;
    if (crema_net_num_layers(net) > 0 && crema_net_layer_tops(net, 0, &tops) > 0)
      pr.batch = crema_net_blob(net, tops[0])->shape[0];
  }
  if (!status && o->weights && crema_solver_copy_weights(s, o->weights, &err)) status = 1;
  if (!status && o->snapshot) {
    CREMA_INFO("Resuming from %s/%s", o->run_dir, o->snapshot);
    if (crema_solver_restore(s, o->snapshot, &err)) status = 1;
  }
  if (!status) {
    pr.first_iter = crema_solver_iter(s);
    pr.start = now_s();
    if (crema_solver_solve(s, &err)) status = 1;
  }
  sigaction(SIGINT, &old, NULL);
  const int iter = s ? crema_solver_iter(s) : 0;
  crema_solver_free(s);
  crema_message_free(param);
  if (o->tty) fprintf(o->user, "\r\033[K");
  if (status) {
    CREMA_ERROR_LOG("%s", err.msg);
    fprintf(o->user, "error: %s\n", err.msg);
    fprintf(o->user, "The files are in %s (log: %s/train.log).\n", o->run_dir, o->run_dir);
    return 1;
  }
  publish(FT_PREFIX "_best.caffemodel", "best.caffemodel");
  publish(FT_PREFIX "_metrics.csv", "metrics.csv");
  const double secs = now_s() - t0;
  double acc = 0;
  int best_iter = 0;
  const int have = best_from_metrics("metrics.csv", &acc, &best_iter);
  if (interrupted) {
    fprintf(
        o->user,
        "Interrupted at iteration %d; a snapshot was written. Resume with:\n  crema finetune --resume %s\n",
        iter, o->run_dir);
    CREMA_INFO("Interrupted at iteration %d", iter);
    return 0;
  }
  if (have == 0) {
    fprintf(o->user, "Best val accuracy %.4f at iteration %d (epoch %d), %d iterations in %.1f s.\n", acc,
            best_iter, (best_iter + pr.per_epoch - 1) / pr.per_epoch, iter, secs);
    CREMA_INFO("Best val accuracy %.4f at iteration %d; %.1f s", acc, best_iter, secs);
  } else {
    fprintf(o->user, "Trained %d iterations in %.1f s (no val accuracy was recorded).\n", iter, secs);
  }
  fprintf(o->user,
          "Run folder %s: best.caffemodel, deploy.prototxt, labels.txt, preprocess.prototxt, metrics.csv, "
          "train.log\n",
          o->run_dir);
  fprintf(o->user, "Classify with:\n  crema classify --run %s IMAGE...\n", o->run_dir);
  return 0;
}
