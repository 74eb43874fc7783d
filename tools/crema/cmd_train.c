/* cmd_train.c -- `crema train`: Caffe's `caffe train` with crema's additions.
 *
 *   crema train --solver=S [--weights=A.caffemodel[,B...]] [--snapshot=X.solverstate]
 *               [--iterations=N] [--freeze=NAME[,PREFIX*...]] [--sigint_effect=stop|snapshot|none]
 *               [--sighup_effect=stop|snapshot|none] [--seed=N] [--diagnostics[=N]]
 *               [--dist_timeout=SECONDS]
 *
 * The signal handlers live here (the library has no globals): they set a flag that the
 * solver polls once per iteration through the action callback.
 *
 * Under `mpirun -np N` every process runs this command (src/dist): rank 0 loads --weights
 * and --snapshot and broadcasts them, each rank reads its shard of the training data, and
 * an error on any rank stops every rank (crema_dist_abort). */
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "base/log.h"
#include "common/flags.h"
#include "common/tool.h"
#include "crema/commands.h"
#include "dist/dist.h"
#include "proto/io.h"
#include "report/diagnostics.h"
#include "solver/solver.h"

/* got_sigint holds the signal number: SIGTERM (what kill, systemd and batch schedulers send)
 * has SIGINT's effect. */
static volatile sig_atomic_t got_sigint, got_sighup;

static void on_sigint(int sig) { got_sigint = sig; }

static void on_sighup(int sig) {
  (void)sig;
  got_sighup = 1;
}

typedef struct signal_effects {
  crema_solver_action on_int, on_hup;
} signal_effects;

/* Caffe's SignalHandler::GetRequestedAction: SIGINT first, then SIGHUP, each once. */
static crema_solver_action requested_action(void *ctx) {
  const signal_effects *e = ctx;
  if (got_sigint) {
    CREMA_INFO("%s received", got_sigint == SIGTERM ? "SIGTERM" : "SIGINT");
    got_sigint = 0;
    return e->on_int;
  }
  if (got_sighup) {
    got_sighup = 0;
    CREMA_INFO("SIGHUP received");
    return e->on_hup;
  }
  return CREMA_SOLVER_ACTION_NONE;
}

static int parse_effect(const char *flag, const char *v, crema_solver_action *out) {
  if (!strcmp(v, "stop"))
    *out = CREMA_SOLVER_ACTION_STOP;
  else if (!strcmp(v, "snapshot"))
    *out = CREMA_SOLVER_ACTION_SNAPSHOT;
  else if (!strcmp(v, "none"))
    *out = CREMA_SOLVER_ACTION_NONE;
  else {
    fprintf(stderr, "error: --%s must be stop, snapshot or none (got \"%s\")\n", flag, v);
    return -1;
  }
  return 0;
}

/* Splits a comma-separated list in place; returns the number of items (at most max). */
static int split_list(char *s, char **items, int max) {
  int n = 0;
  for (char *tok = strtok(s, ","); tok && n < max; tok = strtok(NULL, ","))
    if (*tok) items[n++] = tok;
  return n;
}

#define MAX_LIST 64

int crema_cmd_train(int argc, char **argv) {
  /* argv is main's argv + 1: the re-exec needs the whole command line. */
  crema_tool_init(argc + 1, argv - 1);
  /* --diagnostics without a value means "every display iterations"; the flag parser wants a
   * value, so the bare flag becomes --diagnostics=display (argv's pointers are ours to change). */
  for (int i = 1; i < argc; i++)
    if (!strcmp(argv[i], "--diagnostics") || !strcmp(argv[i], "-diagnostics"))
      argv[i] = (char *)"--diagnostics=display";
  const char *solver = NULL, *weights = NULL, *snapshot = NULL, *freeze = NULL, *gpu = NULL;
  const char *sigint_effect = "stop", *sighup_effect = "snapshot";
  const char *diagnostics_text = "0";
  long iterations = 0, seed = -1, diagnostics = 0;
  double dist_timeout = 0;
  crema_flag flags[] = {
      {"solver", CREMA_FLAG_STRING, &solver, "the solver prototxt (required)", 0},
      {"weights", CREMA_FLAG_STRING, &weights,
       "caffemodel(s) to finetune from, comma-separated, copied by layer name", 0},
      {"snapshot", CREMA_FLAG_STRING, &snapshot, "a .solverstate to resume from", 0},
      {"iterations", CREMA_FLAG_INT, &iterations, "override the solver's max_iter (0 = keep)", 0},
      {"freeze", CREMA_FLAG_STRING, &freeze, "layers to freeze: NAME or PREFIX*, comma-separated", 0},
      {"sigint_effect", CREMA_FLAG_STRING, &sigint_effect, "on SIGINT: stop, snapshot or none", 0},
      {"sighup_effect", CREMA_FLAG_STRING, &sighup_effect, "on SIGHUP: stop, snapshot or none", 0},
      {"seed", CREMA_FLAG_INT, &seed, "override the solver's random_seed", 0},
      {"gpu", CREMA_FLAG_STRING, &gpu, "accepted for Caffe scripts; crema runs on the CPU", 0},
      {"diagnostics", CREMA_FLAG_STRING, &diagnostics_text,
       "every N iterations log dead ReLUs, gradient norms and update/weight ratios to "
       "<prefix>_diagnostics.csv (--diagnostics alone: every display iterations; 0 = off)",
       0},
      {"dist_timeout", CREMA_FLAG_FLOAT, &dist_timeout,
       "under mpirun: seconds a rank waits for the others before stopping with an error (0 = 1800)", 0},
  };
  const int n_flags = (int)(sizeof flags / sizeof flags[0]);
  static const char usage[] = "usage: crema train --solver=SOLVER.prototxt [flags]\n\n";
  char *pos[1];
  int n_pos = 0;
  int rc = crema_flags_command(argc, argv, usage, flags, n_flags, pos, 0, 0, &n_pos);
  if (rc >= 0) return rc;
  if (!solver) return crema_flags_missing("--solver", usage, flags, n_flags);
  if (!strcmp(diagnostics_text, "display")) {
    diagnostics = -1;
  } else {
    char *end = NULL;
    diagnostics = strtol(diagnostics_text, &end, 10);
    if (end == diagnostics_text || *end || diagnostics < 0 || diagnostics > 1000000000) {
      fprintf(stderr, "error: --diagnostics=%s: give a period in iterations (1 or more), or no value\n",
              diagnostics_text);
      return 2;
    }
  }
  crema_error err = {{0}};
  if (snapshot && weights) {
    fprintf(stderr, "error: give --snapshot to resume training or --weights to finetune, not both\n");
    return 2;
  }
  signal_effects effects;
  if (parse_effect("sigint_effect", sigint_effect, &effects.on_int) ||
      parse_effect("sighup_effect", sighup_effect, &effects.on_hup))
    return 2;
  crema_dist *dist = NULL;
  if (crema_dist_init(&dist, &err)) {
    fprintf(stderr, "error: %s\n", err.msg);
    return 1;
  }
  const bool root = crema_dist_rank(dist) == 0;
  if (gpu) CREMA_WARN("--gpu=%s: crema runs on the CPU only; continuing on the CPU", gpu);
  crema_tool_log_blas();

  Crema__SolverParameter *param = NULL;
  if (crema_read_solver_param(solver, &param, &err)) {
    fprintf(stderr, "error: %s\n", err.msg);
    crema_dist_abort(dist, 1);
    crema_dist_free(dist);
    return 1;
  }
  char *freeze_copy = freeze ? strdup(freeze) : NULL, *weights_copy = weights ? strdup(weights) : NULL;
  char *freeze_items[MAX_LIST], *weight_items[MAX_LIST];
  const int n_freeze = freeze_copy ? split_list(freeze_copy, freeze_items, MAX_LIST) : 0;
  const int n_weights = weights_copy ? split_list(weights_copy, weight_items, MAX_LIST) : 0;

  crema_solver_options opt;
  memset(&opt, 0, sizeof opt);
  opt.solver_path = solver;
  opt.max_iter = (int)iterations;
  opt.has_seed = flags[7].seen > 0;
  opt.seed = seed;
  if (snapshot && !opt.has_seed && root) {
    /* Same seed as the run being resumed (it may have been time-based): data layers derive
     * their per-record draws from it. */
    int64_t prev = 0;
    int found = crema_solverstate_seed(snapshot, &prev, &err);
    if (found < 0) {
      fprintf(stderr, "error: %s\n", err.msg);
      crema_dist_abort(dist, 1);
      crema_dist_free(dist);
      crema_message_free(param);
      free(freeze_copy);
      free(weights_copy);
      return 1;
    }
    if (found) {
      opt.has_seed = true;
      opt.seed = prev;
      CREMA_INFO("Using random seed %lld recorded in %s", (long long)prev, snapshot);
    }
  }
  opt.freeze = (const char *const *)freeze_items;
  opt.n_freeze = n_freeze;
  /* Under mpirun only rank 0 reads the weights; crema_dist_attach sends them to the others. */
  opt.weights = root ? (const char *const *)weight_items : NULL;
  opt.n_weights = root ? n_weights : 0;
  opt.action = requested_action;
  opt.action_ctx = &effects;

  struct sigaction sa;
  memset(&sa, 0, sizeof sa);
  sigemptyset(&sa.sa_mask);
  sa.sa_handler = on_sigint;
  sa.sa_flags = SA_RESTART; /* interrupted reads and writes go on instead of failing (ft_train.c) */
  sigaction(SIGINT, &sa, NULL);
  sigaction(SIGTERM, &sa, NULL);
  sa.sa_handler = on_sighup;
  sigaction(SIGHUP, &sa, NULL);

  crema_solver *s = NULL;
  crema_diagnostics *diag = NULL;
  int status = 0;
  if (crema_dist_agree_seed(dist, &opt.has_seed, &opt.seed, param->random_seed, &err)) status = 1;
  if (!status && crema_solver_create(param, &opt, &s, &err)) status = 1;
  if (!status && diagnostics) {
    crema_diagnostics_options dopt = {.every = diagnostics > 0 ? (int)diagnostics : 0,
                                      .append = snapshot != NULL};
    if (crema_diagnostics_attach(s, &dopt, &diag, &err)) status = 1;
  }
  /* Under mpirun rank 0 alone reads the weights (opt.weights) and the snapshot; attach sends them. */
  if (!status && snapshot && root) {
    CREMA_INFO("Resuming from %s", snapshot);
    if (crema_solver_restore(s, snapshot, &err)) status = 1;
  }
  crema_dist_options dopt;
  memset(&dopt, 0, sizeof dopt);
  dopt.timeout_s = dist_timeout;
  dopt.snapshot = snapshot;
  if (!status && crema_dist_attach(dist, s, &dopt, &err)) status = 1;
  if (!status && crema_solver_solve(s, &err)) status = 1;
  if (status) {
    if (crema_dist_size(dist) > 1)
      fprintf(stderr, "error: rank %d of %d (%s): %s\n", crema_dist_rank(dist), crema_dist_size(dist),
              crema_dist_host(dist), err.msg);
    else
      fprintf(stderr, "error: %s\n", err.msg);
    crema_dist_abort(dist, 1);
  } else {
    crema_dist_log_stats(dist);
    const char *prefix = crema_solver_snapshot_prefix(s);
    CREMA_INFO("Snapshots: %s_iter_*.caffemodel / .solverstate%s%s%s", prefix,
               param->metrics_csv ? "; metrics: " : "", param->metrics_csv ? prefix : "",
               param->metrics_csv ? "_metrics.csv" : "");
  }
  if (diag) {
    int n = 0;
    const double secs = crema_diagnostics_seconds(diag, &n);
    CREMA_INFO(
        "Diagnostics: %.3f s spent collecting over %d iterations (%.3f ms per iteration); table rows in %s",
        secs, n, n ? 1e3 * secs / n : 0.0, crema_diagnostics_csv_path(diag));
  }
  crema_solver_free(s);
  crema_diagnostics_free(diag);
  crema_dist_free(dist);
  crema_message_free(param);
  free(freeze_copy);
  free(weights_copy);
  return status;
}
