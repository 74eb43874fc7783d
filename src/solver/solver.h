/* solver.h -- the training loop with Caffe's semantics (Solver::Solve / Step / Test /
 * Snapshot / Restore), plus crema's early stopping, metrics CSV and exact resume.
 *
 * A solver owns one train net and zero or more test nets built from a SolverParameter, the
 * update-rule history, and the bookkeeping a solverstate records. Typical use (what
 * `crema train` does):
 *
 *   crema_solver *s;
 *   crema_solver_create(param, &opt, &s, &err);        nets built, snapshot folder checked
 *   crema_solver_copy_weights(s, "a.caffemodel", &err); finetuning, or:
 *   crema_solver_restore(s, "x_iter_100.solverstate", &err);
 *   crema_solver_solve(s, &err);                         trains to max_iter (or an early stop)
 *   crema_solver_free(s);
 *
 * Logging follows Caffe's lines word for word (so Caffe's parse_log.py reads crema logs).
 * The library installs no signal handlers: the caller passes an action callback that the
 * loop polls once per iteration (and per test batch). */
#ifndef CREMA_SOLVER_SOLVER_H
#define CREMA_SOLVER_SOLVER_H

#include <stdbool.h>
#include <stdint.h>

#include "base/error.h"
#include "net/net.h"
#include "proto/crema.pb-c.h"

typedef struct crema_solver crema_solver;

typedef enum {
  CREMA_SOLVER_ACTION_NONE = 0,
  CREMA_SOLVER_ACTION_STOP,     /* stop now (the solve then snapshots unless snapshot_after_train is off) */
  CREMA_SOLVER_ACTION_SNAPSHOT, /* snapshot after this iteration and carry on */
} crema_solver_action;

/* Polled once per iteration and per test batch; returns what the user asked for since the
 * last call (e.g. read from a volatile sig_atomic_t set by a signal handler). */
typedef crema_solver_action (*crema_solver_action_fn)(void *ctx);

/* Optional observers of the loop, all called on the solving thread; any may be NULL. They
 * are how tools and other modules follow or extend training without editing the loop:
 * progress displays, diagnostics, the embedding API's callbacks, distributed gradient sums. */
typedef struct crema_solver_hooks {
  void *ctx;
  /* After the backward passes of an iteration (all iter_size of them) and before the update:
   * the train net's parameter diffs hold this process's gradient and may be rewritten (e.g.
   * summed across processes). Returning non-zero (with err filled) stops the solve. */
  int (*after_backward)(void *ctx, crema_solver *s, crema_error *err);
  /* After each iteration's update. `iter` is the iteration just trained, `loss` its smoothed
   * loss and `lr` the rate it used. */
  void (*on_iteration)(void *ctx, const crema_solver *s, int iter, float loss, float lr);
  /* After each completed test round (crema_solver_test_value reads its results). */
  void (*on_test)(void *ctx, const crema_solver *s, int iter);
  /* Data-parallel training: called twice per iteration on every process, where the loop
   * decides whether to stop -- after the test round (before the forward passes), and after
   * polling the action callback. *stop holds this process's decision; the hook replaces it
   * with the decision every process takes (src/dist: rank 0's). Non-zero stops the solve. */
  int (*agree_stop)(void *ctx, crema_solver *s, bool *stop, crema_error *err);
} crema_solver_hooks;

typedef struct crema_solver_options {
  /* The solver file's path: messages, and the default snapshot_prefix (Caffe: the file name
   * without ".prototxt") when the solver has none. May be NULL. */
  const char *solver_path;
  int max_iter;  /* > 0: overrides the solver's max_iter */
  bool has_seed; /* overrides random_seed */
  int64_t seed;
  /* Layers to freeze: exact names, or prefixes ending in '*'. Their params get lr_mult 0 and
   * BatchNorm layers among them use_global_stats true, by editing the NetParameter before
   * the nets are built. A pattern matching no layer is an error. */
  const char *const *freeze;
  int n_freeze;
  crema_solver_action_fn action; /* may be NULL */
  void *action_ctx;
  crema_solver_hooks hooks; /* zeroed = none; more can be added with crema_solver_add_hooks */
  /* Caffemodels to finetune from (--weights), copied into the train net by layer name right
   * after it is built, in order; the blobs they cover are not filled first (set-up time).
   * Same result as crema_solver_copy_weights on each after create. */
  const char *const *weights;
  int n_weights;
} crema_solver_options;

#define CREMA_SOLVER_MAX_HOOKS 8

/* Builds the train net and the test nets, checks every setting (unknown type, lr policy,
 * HDF5 snapshots, early-stopping metric among the test outputs, ...) and that the snapshot
 * folder is writable -- all before any training. Caffemodels listed in the solver's
 * `weights` field are copied into the train net (Caffe 1.0). The caller frees with
 * crema_solver_free. `param` is copied. */
int crema_solver_create(const Crema__SolverParameter *param, const crema_solver_options *opt,
                        crema_solver **out, crema_error *err);
void crema_solver_free(crema_solver *s);

/* Adds one more set of hooks (copied); they run after those added before, in order.
 * Fails when CREMA_SOLVER_MAX_HOOKS sets are already attached. */
int crema_solver_add_hooks(crema_solver *s, const crema_solver_hooks *hooks, crema_error *err);

/* Finetuning: copies layers by name from a caffemodel into the train net (the net logs what
 * it copied, ignored and kept). Call before solve; several calls apply in order. */
int crema_solver_copy_weights(crema_solver *s, const char *caffemodel, crema_error *err);

/* Restores a solverstate (crema's or Caffe's). The caffemodel it names (learned_net) is
 * loaded; when that path does not exist, the file of the same base name beside the
 * solverstate is used, so snapshot folders can be moved. A crema solverstate restores the
 * RNGs, data positions, loss window and early-stopping state too (exact resume); a Caffe one
 * restores iter, history and current_step (the data order then restarts). A solverstate
 * from another solver type is an error. */
int crema_solver_restore(crema_solver *s, const char *solverstate, crema_error *err);

/* The random seed recorded in a crema solverstate: 1 and *seed set when present, 0 when the
 * file has none (Caffe's), -1 on a read error. `crema train --snapshot` passes it to
 * crema_solver_create so a run whose random_seed was -1 (time-based) resumes exactly. */
int crema_solverstate_seed(const char *path, int64_t *seed, crema_error *err);

/* Data-parallel training (src/dist): this process is `rank` of `ranks` training together.
 * Only rank 0 tests, snapshots and writes the metrics CSV and early-stopping files; the
 * others skip those calls. Snapshots record `ranks`. Call before solve. */
void crema_solver_set_ranks(crema_solver *s, int rank, int ranks);
/* How many processes the solverstate at `path` was written by (1 when it does not say);
 * -1 on a read error. */
int crema_solverstate_ranks(const char *path, crema_error *err);

/* The solver state in memory, as a serialized SolverState (what a .solverstate holds, with
 * learned_net empty): for sending it to other processes. The caller frees *buf with free. */
int crema_solver_state_pack(crema_solver *s, uint8_t **buf, size_t *len, crema_error *err);
/* Restores a state packed by crema_solver_state_pack in a solver built from the same
 * solver and nets; the weights are not part of it. */
int crema_solver_state_unpack(crema_solver *s, const uint8_t *buf, size_t len, crema_error *err);

/* Caffe's Solve: Step(max_iter - iter), snapshot after training, a final test. Returns -1
 * on errors (non-finite loss or gradient: the message names the iteration and first layer). */
int crema_solver_solve(crema_solver *s, crema_error *err);
/* Runs `iters` iterations (testing, displaying and snapshotting on the way). */
int crema_solver_step(crema_solver *s, int iters, crema_error *err);
/* Writes <prefix>_iter_N.caffemodel and <prefix>_iter_N.solverstate (atomically). */
int crema_solver_snapshot(crema_solver *s, crema_error *err);
/* Runs every test net once (test_iter batches), logging and recording the outputs. */
int crema_solver_test_all(crema_solver *s, crema_error *err);

int crema_solver_iter(const crema_solver *s);
/* True when the last solve/step stopped early (signal or early stopping). */
bool crema_solver_stopped_early(const crema_solver *s);
crema_net *crema_solver_net(const crema_solver *s);
int crema_solver_num_test_nets(const crema_solver *s);
crema_net *crema_solver_test_net(const crema_solver *s, int i);
/* The last test round's mean of output `name` of test net `net`; -1 when there is none. */
int crema_solver_test_value(const crema_solver *s, int net, const char *name, float *value);
/* The resolved snapshot prefix (for messages). */
const char *crema_solver_snapshot_prefix(const crema_solver *s);
/* Smoothed training loss of the last iteration. */
float crema_solver_smoothed_loss(const crema_solver *s);
/* The learning rate of the last update. */
float crema_solver_rate(const crema_solver *s);
/* The solver's (owned) parameter message, after command-line overrides. */
const Crema__SolverParameter *crema_solver_param(const crema_solver *s);

#endif
