/* snapshot.c -- <prefix>_iter_N.caffemodel + <prefix>_iter_N.solverstate, and restoring them.
 *
 * The solverstate is Caffe's SolverState (iter, learned_net, history, current_step), so
 * Caffe resumes from crema's files and crema from Caffe's. crema adds (fields >= 1000, which
 * Caffe skips) what an exact resume needs: the solver type, every layer's RNG state (train
 * net, then each test net, in layer order, 16 bytes each; then 8 bytes: the run's seed,
 * which data layers derive their per-record draws from), every data layer's position
 * (same order, only layers that report one), the smoothed-loss window (oldest first) and
 * the early-stopping bookkeeping. Both files are written to a temporary name and renamed,
 * so a crash or kill mid-snapshot leaves either the old complete files or the new ones. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "base/log.h"
#include "proto/hdf5_io.h"
#include "proto/io.h"
#include "solver/solver_internal.h"

static char *snapshot_name(const crema_solver *s, const char *ext) {
  size_t n = strlen(s->prefix) + strlen(ext) + 32;
  char *p = malloc(n);
  if (p) snprintf(p, n, "%s_iter_%d%s", s->prefix, s->iter, ext);
  return p;
}

/* All nets in solverstate order: the train net, then the test nets. */
static int net_count(const crema_solver *s) { return 1 + s->n_test; }
static crema_net *net_at(const crema_solver *s, int k) { return k == 0 ? s->net : s->tests[k - 1].net; }

static bool snapshot_hdf5(const crema_solver *s) {
  return s->param->snapshot_format == CREMA__SOLVER_PARAMETER__SNAPSHOT_FORMAT__HDF5;
}

static int write_model(crema_solver *s, const char *path, crema_error *err) {
  const bool h5 = snapshot_hdf5(s);
  CREMA_INFO("Snapshotting to %s file %s", h5 ? "HDF5" : "binary proto", path);
  Crema__NetParameter *np = NULL;
  if (crema_net_to_proto(s->net, s->param->snapshot_diff, &np, err)) return -1;
  int rc = h5 ? crema_hdf5_write_net(path, np, err) : crema_write_binary_message(path, &np->base, err);
  crema_message_free(np);
  return rc;
}

/* The arrays a SolverState message of the solver points into (see fill_state). */
typedef struct state_arrays {
  Crema__BlobProto *blobs, **bp;
  Crema__BlobShape *shapes;
  int64_t *dims;
  uint8_t *rng_bytes;
  ProtobufCBinaryData *rng;
  uint64_t *pos;
  float *window;
} state_arrays;

static void free_state_arrays(state_arrays *a) {
  free(a->blobs);
  free(a->bp);
  free(a->shapes);
  free(a->dims);
  free(a->rng_bytes);
  free(a->rng);
  free(a->pos);
  free(a->window);
}

/* Fills `st` with the solver's state. Everything points into the solver's own memory; only
 * the small arrays in `a` are allocated (a snapshot is not a training step). The caller
 * frees them with free_state_arrays, also on failure. */
static int fill_state(crema_solver *s, const char *model, Crema__SolverState *st, state_arrays *a,
                      crema_error *err) {
  memset(a, 0, sizeof *a);
  crema__solver_state__init(st);
  st->has_iter = 1;
  st->iter = s->iter;
  st->learned_net = (char *)model;
  st->has_current_step = 1;
  st->current_step = s->current_step;
  st->solver_type = (char *)s->rule->type;
  if (s->n_ranks > 1) {
    st->has_ranks = 1;
    st->ranks = s->n_ranks;
  }
  const int nh = s->n_params * s->rule->n_history;
  Crema__BlobProto *blobs = a->blobs = calloc((size_t)nh + 1, sizeof *blobs);
  Crema__BlobProto **bp = a->bp = calloc((size_t)nh + 1, sizeof *bp);
  Crema__BlobShape *shapes = a->shapes = calloc((size_t)nh + 1, sizeof *shapes);
  int64_t *dims = a->dims = calloc((size_t)nh * CREMA_MAX_AXES + 1, sizeof *dims);
  int n_layers = 0, n_pos = 0;
  for (int k = 0; k < net_count(s); k++) {
    crema_net *net = net_at(s, k);
    n_layers += crema_net_num_layers(net);
    for (int li = 0; li < crema_net_num_layers(net); li++)
      n_pos += crema_net_layer(net, li)->ops->get_position != NULL;
  }
  uint8_t *rng_bytes = a->rng_bytes = calloc((size_t)n_layers * CREMA_RNG_STATE_BYTES + 8, 1);
  ProtobufCBinaryData *rng = a->rng = calloc((size_t)n_layers + 1, sizeof *rng);
  uint64_t *pos = a->pos = calloc((size_t)n_pos + 1, sizeof *pos);
  float *window = a->window = calloc((size_t)s->average_loss + 1, sizeof *window);
  int rc = 0;
  if (!blobs || !bp || !shapes || !dims || !rng_bytes || !rng || !pos || !window)
    rc = crema_fail(err, "out of memory");
  for (int h = 0; !rc && h < s->rule->n_history; h++)
    for (int i = 0; i < s->n_params; i++) {
      const int k = h * s->n_params + i;
      const crema_blob *b = crema_net_param_at(s->net, i)->blob;
      crema__blob_proto__init(&blobs[k]);
      crema__blob_shape__init(&shapes[k]);
      for (int a = 0; a < b->num_axes; a++) dims[(size_t)k * CREMA_MAX_AXES + a] = b->shape[a];
      shapes[k].n_dim = (size_t)b->num_axes;
      shapes[k].dim = &dims[(size_t)k * CREMA_MAX_AXES];
      blobs[k].shape = &shapes[k];
      blobs[k].n_data = b->count;
      blobs[k].data = s->hist[k];
      bp[k] = &blobs[k];
    }
  st->n_history = (size_t)nh;
  st->history = bp;
  int r = 0, q = 0;
  for (int k = 0; !rc && k < net_count(s); k++) {
    crema_net *net = net_at(s, k);
    for (int li = 0; li < crema_net_num_layers(net); li++, r++) {
      const crema_layer *l = crema_net_layer(net, li);
      crema_rng_save(&l->rng, rng_bytes + (size_t)r * CREMA_RNG_STATE_BYTES);
      rng[r].len = CREMA_RNG_STATE_BYTES;
      rng[r].data = rng_bytes + (size_t)r * CREMA_RNG_STATE_BYTES;
      if (l->ops->get_position) pos[q++] = l->ops->get_position(l);
    }
  }
  if (!rc) {
    uint8_t *seed = rng_bytes + (size_t)r * CREMA_RNG_STATE_BYTES;
    for (int b = 0; b < 8; b++) seed[b] = (uint8_t)(s->seed >> (8 * b));
    rng[r].len = 8;
    rng[r].data = seed;
    r++;
  }
  st->n_rng_state = (size_t)r;
  st->rng_state = rng;
  st->n_reader_position = (size_t)q;
  st->reader_position = pos;
  /* The loss ring, oldest first: Caffe overwrites at (iter - start) % average_loss. */
  if (!rc) {
    const int n = s->n_losses;
    for (int j = 0; j < n; j++) {
      const int idx = n < s->average_loss ? j : (s->iter - s->window_start + j) % s->average_loss;
      window[j] = s->losses[idx];
    }
    st->n_loss_window = (size_t)n;
    st->loss_window = window;
  }
  if (s->es.enabled && s->es.has_best) {
    st->has_best_metric = st->has_best_iter = st->has_rounds_without_improvement = 1;
    st->best_metric = s->es.best;
    st->best_iter = s->es.best_iter;
    st->rounds_without_improvement = s->es.rounds_without_improvement;
  }
  return rc;
}

static int write_state(crema_solver *s, const char *model, const char *path, crema_error *err) {
  CREMA_INFO("Snapshotting solver state to %s file %s", snapshot_hdf5(s) ? "HDF5" : "binary proto", path);
  Crema__SolverState st;
  state_arrays a;
  int rc = fill_state(s, model, &st, &a, err);
  if (!rc)
    rc = snapshot_hdf5(s) ? crema_hdf5_write_solverstate(path, &st, err)
                          : crema_write_binary_message(path, &st.base, err);
  free_state_arrays(&a);
  return rc;
}

int crema_solver_state_pack(crema_solver *s, uint8_t **buf, size_t *len, crema_error *err) {
  *buf = NULL;
  *len = 0;
  Crema__SolverState st;
  state_arrays a;
  int rc = fill_state(s, "", &st, &a, err);
  if (!rc) {
    const size_t n = protobuf_c_message_get_packed_size(&st.base);
    if (!(*buf = malloc(n ? n : 1)))
      rc = crema_fail(err, "out of memory packing the solver state");
    else
      *len = protobuf_c_message_pack(&st.base, *buf);
  }
  free_state_arrays(&a);
  return rc;
}

int crema_solver_snapshot(crema_solver *s, crema_error *err) {
  if (s->rank != 0) return 0; /* data-parallel: rank 0 writes for everyone */
  const bool h5 = snapshot_hdf5(s);
  char *model = snapshot_name(s, h5 ? ".caffemodel.h5" : ".caffemodel"),
       *state = snapshot_name(s, h5 ? ".solverstate.h5" : ".solverstate");
  int rc = (!model || !state) ? crema_fail(err, "out of memory") : 0;
  /* The model first: a solverstate always names a caffemodel that is already complete. */
  if (!rc) rc = write_model(s, model, err);
  if (!rc) rc = write_state(s, model, state, err);
  free(model);
  free(state);
  return rc;
}

static bool file_exists(const char *path) {
  struct stat st;
  return stat(path, &st) == 0 && S_ISREG(st.st_mode);
}

/* learned_net as written, or -- when that path does not exist (the folder was moved or the
 * snapshot came from another machine) -- the same base name beside the solverstate. */
static char *locate_model(const char *learned, const char *state_path) {
  if (file_exists(learned)) {
    char *p = malloc(strlen(learned) + 1);
    if (p) strcpy(p, learned);
    return p;
  }
  const char *base = strrchr(learned, '/');
  base = base ? base + 1 : learned;
  const char *slash = strrchr(state_path, '/');
  const size_t dir = slash ? (size_t)(slash - state_path) + 1 : 0;
  char *p = malloc(dir + strlen(base) + 1);
  if (!p) return NULL;
  memcpy(p, state_path, dir);
  strcpy(p + dir, base);
  return p;
}

/* Applies a SolverState read from `path` (a file, or a description for messages); the
 * caffemodel it names is loaded only when load_model is set. Does not free st. */
static int apply_state(crema_solver *s, const Crema__SolverState *st, const char *path, bool load_model,
                       crema_error *err) {
  int rc = 0;
  const int nh = s->n_params * s->rule->n_history;
  if (st->solver_type && strcmp(st->solver_type, s->rule->type))
    rc = crema_fail(err,
                    "%s was written by a %s solver, but this solver is %s; resume with the same solver type "
                    "(or start from its caffemodel with --weights)",
                    path, st->solver_type, s->rule->type);
  else if ((int)st->n_history != nh)
    rc = crema_fail(
        err,
        "%s has %zu history blobs but this %s solver needs %d (%d parameters x %d); was it written "
        "for another net or solver type?",
        path, st->n_history, s->rule->type, nh, s->n_params, s->rule->n_history);
  for (int k = 0; !rc && k < nh; k++) {
    const crema_blob *b = crema_net_param_at(s->net, k % (s->n_params ? s->n_params : 1))->blob;
    size_t n = st->history[k]->n_data ? st->history[k]->n_data : st->history[k]->n_double_data;
    if (n != b->count)
      rc = crema_fail(
          err, "%s: history blob %d has %zu values, the parameter has %zu; was it written for another net?",
          path, k, n, b->count);
  }
  if (!rc && load_model && st->learned_net && *st->learned_net) {
    char *model = locate_model(st->learned_net, path);
    if (!model)
      rc = crema_fail(err, "out of memory");
    else {
      if (strcmp(model, st->learned_net))
        CREMA_INFO("%s not found; using %s beside the solverstate", st->learned_net, model);
      rc = crema_net_copy_trained_layers_from_file(s->net, model, err);
      free(model);
    }
  }
  if (!rc) {
    s->iter = st->iter;
    s->current_step = st->current_step;
    CREMA_INFO("SGDSolver: restoring history");
    for (int k = 0; k < nh; k++) {
      const Crema__BlobProto *h = st->history[k];
      float *dst = s->hist[k];
      if (h->n_data)
        memcpy(dst, h->data, h->n_data * sizeof(float));
      else
        for (size_t i = 0; i < h->n_double_data; i++) dst[i] = (float)h->double_data[i];
    }
    /* crema's extensions, when present and matching these nets. */
    int n_layers = 0, n_pos = 0;
    for (int k = 0; k < net_count(s); k++) {
      crema_net *net = net_at(s, k);
      n_layers += crema_net_num_layers(net);
      for (int li = 0; li < crema_net_num_layers(net); li++)
        n_pos += crema_net_layer(net, li)->ops->get_position != NULL;
    }
    if (st->n_rng_state == (size_t)n_layers + 1 && st->rng_state[n_layers].len == 8) {
      uint64_t seed = 0;
      for (int b = 0; b < 8; b++) seed |= (uint64_t)st->rng_state[n_layers].data[b] << (8 * b);
      if (seed != s->seed)
        CREMA_WARN("%s was written by a run with random seed %llu but this run uses %llu: data-layer draws "
                   "(crops, mirrors) will differ; pass --seed=%llu for an exact resume",
                   path, (unsigned long long)seed, (unsigned long long)s->seed, (unsigned long long)seed);
    }
    if (st->n_rng_state == (size_t)n_layers || st->n_rng_state == (size_t)n_layers + 1) {
      int r = 0;
      for (int k = 0; k < net_count(s); k++)
        for (int li = 0; li < crema_net_num_layers(net_at(s, k)); li++, r++)
          if (st->rng_state[r].len == CREMA_RNG_STATE_BYTES)
            crema_rng_load(&crema_net_layer(net_at(s, k), li)->rng, st->rng_state[r].data);
    } else if (st->n_rng_state) {
      CREMA_WARN("%s holds %zu RNG states but the nets have %d layers; random draws restart", path,
                 st->n_rng_state, n_layers);
    }
    if (st->n_reader_position == (size_t)n_pos) {
      int q = 0;
      for (int k = 0; !rc && k < net_count(s); k++)
        for (int li = 0; !rc && li < crema_net_num_layers(net_at(s, k)); li++) {
          crema_layer *l = crema_net_layer(net_at(s, k), li);
          if (!l->ops->get_position) continue;
          if (l->ops->set_position(l, st->reader_position[q++], err))
            rc = crema_error_prefix(err, "restoring %s: layer \"%s\"", path,
                                    crema_net_layer_name(net_at(s, k), li));
        }
    } else if (st->n_reader_position) {
      CREMA_WARN("%s holds %zu data positions but the nets have %d data layers; data order restarts", path,
                 st->n_reader_position, n_pos);
    } else if (n_pos) {
      CREMA_INFO("%s has no data positions (written by Caffe?): data order restarts from the beginning",
                 path);
    }
    if (st->n_loss_window) {
      int n = (int)st->n_loss_window;
      const float *w = st->loss_window;
      if (n > s->average_loss) {
        w += n - s->average_loss;
        n = s->average_loss;
      }
      double sum = 0;
      for (int j = 0; j < n; j++) sum += (s->losses[j] = w[j]);
      s->n_losses = n;
      s->window_start = s->iter - n;
      s->smoothed_loss = (float)(sum / n);
      s->window_restored = true;
    }
    if (st->has_best_metric && s->es.enabled) {
      s->es.has_best = true;
      s->es.best = st->best_metric;
      s->es.best_iter = st->best_iter;
      s->es.rounds_without_improvement = st->rounds_without_improvement;
    }
    s->resumed = true;
  }
  return rc;
}

int crema_solver_restore(crema_solver *s, const char *path, crema_error *err) {
  CREMA_INFO("Restoring previous solver status from %s", path);
  Crema__SolverState *st = NULL;
  if (crema_hdf5_is_h5_name(path)
          ? crema_hdf5_read_solverstate(path, &st, err)
          : crema_read_binary_message(path, &crema__solver_state__descriptor, (ProtobufCMessage **)&st, err))
    return -1;
  int rc = apply_state(s, st, path, true, err);
  crema_message_free(st);
  return rc;
}

int crema_solver_state_unpack(crema_solver *s, const uint8_t *buf, size_t len, crema_error *err) {
  Crema__SolverState *st = crema__solver_state__unpack(NULL, len, buf);
  if (!st) return crema_fail(err, "the solver state received is not a valid SolverState (%zu bytes)", len);
  int rc = apply_state(s, st, "the solver state received", false, err);
  crema__solver_state__free_unpacked(st, NULL);
  return rc;
}

int crema_solverstate_ranks(const char *path, crema_error *err) {
  Crema__SolverState *st = NULL;
  if (crema_hdf5_is_h5_name(path)
          ? crema_hdf5_read_solverstate(path, &st, err)
          : crema_read_binary_message(path, &crema__solver_state__descriptor, (ProtobufCMessage **)&st, err))
    return -1;
  const int ranks = st->has_ranks && st->ranks > 0 ? st->ranks : 1;
  crema_message_free(st);
  return ranks;
}

int crema_solverstate_seed(const char *path, int64_t *seed, crema_error *err) {
  Crema__SolverState *st = NULL;
  if (crema_hdf5_is_h5_name(path)
          ? crema_hdf5_read_solverstate(path, &st, err)
          : crema_read_binary_message(path, &crema__solver_state__descriptor, (ProtobufCMessage **)&st, err))
    return -1;
  int found = 0;
  /* The seed is the one 8-byte entry, last among the RNG states. */
  if (st->n_rng_state > 0 && st->rng_state[st->n_rng_state - 1].len == 8) {
    uint64_t v = 0;
    for (int b = 0; b < 8; b++) v |= (uint64_t)st->rng_state[st->n_rng_state - 1].data[b] << (8 * b);
    *seed = (int64_t)v;
    found = 1;
  }
  crema_message_free(st);
  return found;
}
