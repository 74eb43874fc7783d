/* trainer.c -- crema_trainer: the solver loop behind the public API, with the caller's
 * callbacks attached as solver hooks and stop/snapshot requests as the solver's action poll.
 *
 * A request comes from three places, merged in one atomic slot the loop polls once per
 * iteration and per test batch: the on_iteration and on_test callbacks' return values, and
 * crema_trainer_request (any thread, or a signal handler: an atomic exchange is
 * async-signal-safe). STOP wins over SNAPSHOT when both arrive before a poll. */
#include <errno.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "api/api_internal.h"
#include "proto/io.h"
#include "solver/solver.h"

#define MAX_TEST_OUTPUTS 64
#define MAX_FREEZE 256

struct crema_trainer {
  crema_solver *solver;
  crema_train_callbacks cb;
  atomic_int request; /* a crema_action */
  const char *names[MAX_TEST_OUTPUTS];
  float values[MAX_TEST_OUTPUTS];
};

/* Records an action; a pending STOP is never downgraded. */
static void post(crema_trainer *t, crema_action a) {
  if (a == CREMA_CONTINUE) return;
  int cur = atomic_load(&t->request);
  while (cur != CREMA_STOP && !atomic_compare_exchange_weak(&t->request, &cur, (int)a)) {
  }
}

static crema_solver_action poll(void *ctx) {
  crema_trainer *t = ctx;
  switch (atomic_exchange(&t->request, CREMA_CONTINUE)) {
  case CREMA_STOP: return CREMA_SOLVER_ACTION_STOP;
  case CREMA_SNAPSHOT: return CREMA_SOLVER_ACTION_SNAPSHOT;
  default: return CREMA_SOLVER_ACTION_NONE;
  }
}

static void on_iteration(void *ctx, const crema_solver *s, int iter, float loss, float lr) {
  (void)s;
  crema_trainer *t = ctx;
  if (t->cb.on_iteration) post(t, t->cb.on_iteration(t->cb.user, iter, loss, lr));
}

static void on_test(void *ctx, const crema_solver *s, int iter) {
  crema_trainer *t = ctx;
  if (!t->cb.on_test || crema_solver_num_test_nets(s) < 1) return;
  const crema_net *net = crema_solver_test_net(s, 0);
  int n = 0;
  for (int o = 0; o < crema_net_num_outputs(net) && n < MAX_TEST_OUTPUTS; o++) {
    const char *name = crema_net_output_name(net, o);
    if (crema_solver_test_value(s, 0, name, &t->values[n]) == 0) t->names[n++] = name;
  }
  post(t, t->cb.on_test(t->cb.user, iter, n, t->names, t->values));
}

/* Splits the comma-separated list and copies each caffemodel by layer name. */
static crema_status copy_weights(crema_trainer *t, const char *list) {
  char *copy = strdup(list);
  if (!copy) return api_failf(CREMA_ERR_MEMORY, "out of memory");
  crema_status s = CREMA_OK;
  char *save = NULL;
  for (char *w = strtok_r(copy, ",", &save); w && !s; w = strtok_r(NULL, ",", &save)) {
    if (!*w) continue;
    if (access(w, R_OK) != 0) {
      s = api_failf(CREMA_ERR_IO, "cannot read weights \"%s\": %s; check the path", w, strerror(errno));
      break;
    }
    crema_error err;
    crema_error_clear(&err);
    if (crema_solver_copy_weights(t->solver, w, &err)) s = api_fail(CREMA_ERR_SHAPE, &err);
  }
  free(copy);
  return s;
}

crema_status crema_trainer_create(const char *solver_path, const crema_train_options *opt,
                                  crema_trainer **out) {
  if (!out) return api_failf(CREMA_ERR_ARGUMENT, "crema_trainer_create: out is NULL");
  *out = NULL;
  if (!solver_path) return api_failf(CREMA_ERR_ARGUMENT, "crema_trainer_create: solver_path is NULL");
  crema_train_options o = {0};
  if (opt) o = *opt;
  if (o.weights && o.resume)
    return api_failf(CREMA_ERR_ARGUMENT, "give weights (finetune) or resume (a solverstate), not both");
  if (access(solver_path, R_OK) != 0)
    return api_failf(CREMA_ERR_IO, "cannot read solver \"%s\": %s; check the path", solver_path,
                     strerror(errno));
  crema_trainer *t = calloc(1, sizeof *t);
  if (!t) return api_failf(CREMA_ERR_MEMORY, "out of memory creating a trainer");
  atomic_init(&t->request, CREMA_CONTINUE);
  t->cb = o.callbacks;
  crema_error err;
  crema_error_clear(&err);
  Crema__SolverParameter *param = NULL;
  if (crema_read_solver_param(solver_path, &param, &err)) {
    free(t);
    return api_fail(CREMA_ERR_FORMAT, &err);
  }
  crema_solver_options so = {0};
  so.solver_path = solver_path;
  so.max_iter = o.max_iter > 0 ? o.max_iter : 0;
  so.has_seed = o.has_seed != 0;
  so.seed = o.seed;
  if (o.resume && !so.has_seed) {
    /* A run whose random_seed was -1 (time-based) resumes exactly with the recorded seed. */
    int64_t seed;
    if (crema_solverstate_seed(o.resume, &seed, &err) == 1) {
      so.has_seed = true;
      so.seed = seed;
    }
    crema_error_clear(&err);
  }
  char *freeze_copy = NULL;
  const char *patterns[MAX_FREEZE];
  if (o.freeze) {
    if (!(freeze_copy = strdup(o.freeze))) {
      crema_message_free(param);
      free(t);
      return api_failf(CREMA_ERR_MEMORY, "out of memory");
    }
    char *save = NULL;
    for (char *tok = strtok_r(freeze_copy, ",", &save); tok; tok = strtok_r(NULL, ",", &save)) {
      if (!*tok) continue;
      if (so.n_freeze == MAX_FREEZE) {
        free(freeze_copy);
        crema_message_free(param);
        free(t);
        return api_failf(CREMA_ERR_ARGUMENT, "freeze: more than %d patterns", MAX_FREEZE);
      }
      patterns[so.n_freeze++] = tok;
    }
    so.freeze = patterns;
  }
  so.action = poll;
  so.action_ctx = t;
  so.hooks.ctx = t;
  so.hooks.on_iteration = on_iteration;
  so.hooks.on_test = on_test;
  int rc = crema_solver_create(param, &so, &t->solver, &err);
  crema_message_free(param);
  free(freeze_copy);
  if (rc) {
    free(t);
    return api_fail(CREMA_ERR_FORMAT, &err);
  }
  crema_status s = CREMA_OK;
  if (o.weights) s = copy_weights(t, o.weights);
  if (!s && o.resume) {
    if (access(o.resume, R_OK) != 0)
      s = api_failf(CREMA_ERR_IO, "cannot read solverstate \"%s\": %s; check the path", o.resume,
                    strerror(errno));
    else if (crema_solver_restore(t->solver, o.resume, &err))
      s = api_fail(CREMA_ERR_FORMAT, &err);
  }
  if (s) {
    crema_trainer_free(t);
    return s;
  }
  *out = t;
  return CREMA_OK;
}

crema_status crema_trainer_run(crema_trainer *t) {
  if (!t) return api_failf(CREMA_ERR_ARGUMENT, "crema_trainer_run: trainer is NULL");
  crema_error err;
  crema_error_clear(&err);
  if (crema_solver_solve(t->solver, &err)) return api_fail(CREMA_ERR_RUNTIME, &err);
  return CREMA_OK;
}

void crema_trainer_request(crema_trainer *t, crema_action action) {
  if (t && (action == CREMA_STOP || action == CREMA_SNAPSHOT)) post(t, action);
}

crema_status crema_trainer_snapshot(crema_trainer *t) {
  if (!t) return api_failf(CREMA_ERR_ARGUMENT, "crema_trainer_snapshot: trainer is NULL");
  crema_error err;
  crema_error_clear(&err);
  if (crema_solver_snapshot(t->solver, &err)) return api_fail(CREMA_ERR_IO, &err);
  return CREMA_OK;
}

crema_status crema_trainer_save_weights(const crema_trainer *t, const char *caffemodel_path) {
  if (!t || !caffemodel_path)
    return api_failf(CREMA_ERR_ARGUMENT, "crema_trainer_save_weights: NULL argument");
  crema_error err;
  crema_error_clear(&err);
  if (crema_net_save_weights(crema_solver_net(t->solver), caffemodel_path, &err))
    return api_fail(CREMA_ERR_IO, &err);
  return CREMA_OK;
}

int crema_trainer_iter(const crema_trainer *t) { return t ? crema_solver_iter(t->solver) : 0; }
int crema_trainer_stopped_early(const crema_trainer *t) { return t && crema_solver_stopped_early(t->solver); }

crema_status crema_trainer_test_value(const crema_trainer *t, const char *name, float *value) {
  if (!t || !name || !value) return api_failf(CREMA_ERR_ARGUMENT, "crema_trainer_test_value: NULL argument");
  if (crema_solver_num_test_nets(t->solver) < 1 || crema_solver_test_value(t->solver, 0, name, value))
    return api_failf(CREMA_ERR_NOT_FOUND,
                     "no test result named \"%s\" (has a test round run? is it an output of "
                     "test net 0?)",
                     name);
  return CREMA_OK;
}

const char *crema_trainer_snapshot_prefix(const crema_trainer *t) {
  return t ? crema_solver_snapshot_prefix(t->solver) : NULL;
}

void crema_trainer_free(crema_trainer *t) {
  if (!t) return;
  crema_solver_free(t->solver);
  free(t);
}
