/* solver.c -- building the nets of a SolverParameter and the training loop (Caffe's
 * Solver::Init, Solve, Step, TestAll/Test, ApplyUpdate, UpdateSmoothedLoss).
 * Snapshots and restore live in snapshot.c. */
#include "solver/solver.h"

#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "base/log.h"
#include "base/mem.h"
#include "engine/workspace.h"
#include "proto/hdf5_io.h"
#include "proto/io.h"
#include "proto/upgrade.h"
#include "solver/solver_internal.h"

/* ---------------------------------------------------------------- small helpers */

static char *dup_str(const char *s) {
  size_t n = strlen(s) + 1;
  char *d = malloc(n);
  if (d) memcpy(d, s, n);
  return d;
}

double crema_solver_seconds(const crema_solver *s) {
  struct timespec now;
  clock_gettime(CLOCK_MONOTONIC, &now);
  return s->seconds_before + (double)(now.tv_sec - s->t_start.tv_sec) +
         1e-9 * (double)(now.tv_nsec - s->t_start.tv_nsec);
}

/* "/abs/cwd/name" for a relative name (Caffe resolves solver paths against the current
 * directory); the name itself when absolute. Written into buf. */
static const char *resolved(const char *name, char *buf, size_t size) {
  if (name[0] == '/') return name;
  char cwd[PATH_MAX];
  if (!getcwd(cwd, sizeof cwd)) return name;
  snprintf(buf, size, "%s/%s", cwd, name);
  return buf;
}

/* ---------------------------------------------------------------- --freeze */

static bool pattern_matches(const char *pattern, const char *name) {
  size_t n = strlen(pattern);
  if (n > 0 && pattern[n - 1] == '*') return !strncmp(pattern, name, n - 1);
  return !strcmp(pattern, name);
}

/* How many parameter blobs a layer of this type has (Caffe's layouts). */
static int param_blob_count(const Crema__LayerParameter *l) {
  const char *t = l->type ? l->type : "";
  if (!strcmp(t, "Convolution") || !strcmp(t, "Deconvolution"))
    return 1 + (!l->convolution_param || l->convolution_param->bias_term);
  if (!strcmp(t, "InnerProduct")) return 1 + (!l->inner_product_param || l->inner_product_param->bias_term);
  if (!strcmp(t, "Embed")) return 1 + (!l->embed_param || l->embed_param->bias_term);
  if (!strcmp(t, "Scale")) return 1 + (l->scale_param && l->scale_param->bias_term);
  if (!strcmp(t, "BatchNorm")) return 3;
  if (!strcmp(t, "Bias") || !strcmp(t, "PReLU")) return 1;
  return (int)l->n_param;
}

static int freeze_layer(Crema__LayerParameter *l, crema_error *err) {
  const int want = param_blob_count(l);
  if ((int)l->n_param < want) {
    Crema__ParamSpec **p = realloc(l->param, (size_t)want * sizeof *p);
    if (!p) return crema_fail(err, "out of memory");
    l->param = p;
    for (int i = (int)l->n_param; i < want; i++) {
      if (!(p[i] = malloc(sizeof *p[i]))) return crema_fail(err, "out of memory");
      crema__param_spec__init(p[i]);
      l->n_param = (size_t)i + 1;
    }
  }
  for (size_t i = 0; i < l->n_param; i++) {
    l->param[i]->has_lr_mult = 1;
    l->param[i]->lr_mult = 0.0f;
  }
  if (l->type && !strcmp(l->type, "BatchNorm")) {
    if (!l->batch_norm_param) {
      if (!(l->batch_norm_param = malloc(sizeof *l->batch_norm_param)))
        return crema_fail(err, "out of memory");
      crema__batch_norm_parameter__init(l->batch_norm_param);
    }
    l->batch_norm_param->has_use_global_stats = 1;
    l->batch_norm_param->use_global_stats = 1;
  }
  return 0;
}

static int apply_freeze(Crema__NetParameter *np, const crema_solver_options *opt, bool *matched, bool log,
                        crema_error *err) {
  for (size_t li = 0; li < np->n_layer; li++) {
    Crema__LayerParameter *l = np->layer[li];
    if (!l->name) continue;
    for (int k = 0; k < opt->n_freeze; k++) {
      if (!pattern_matches(opt->freeze[k], l->name)) continue;
      matched[k] = true;
      if (freeze_layer(l, err)) return -1;
      if (log)
        CREMA_INFO("Freezing layer %s (%s): lr_mult 0%s", l->name, l->type ? l->type : "?",
                   l->type && !strcmp(l->type, "BatchNorm") ? ", use_global_stats true" : "");
      break;
    }
  }
  return 0;
}

/* ---------------------------------------------------------------- building the nets */

static int read_net_file(const char *path, Crema__NetParameter **out, crema_error *err) {
  char buf[PATH_MAX + 8];
  if (crema_read_net_param(path, out, err)) return -1;
  CREMA_INFO("  (net file %s)", resolved(path, buf, sizeof buf));
  return 0;
}

/* Builds one net from `np` (which is edited: upgraded, frozen) in `phase`, with the state
 * rules Caffe's solver merges: the net's own state, then the solver's train/test state. */
/* Test nets: a layer named like a train-net layer with parameters gets the train net's blobs
 * (shared after the build), so its fillers need not run. */
static bool shared_with_train(void *ctx, const char *layer, int blob) {
  const crema_net *train = ctx;
  const int li = crema_net_layer_index(train, layer);
  return li >= 0 && blob < crema_net_layer(train, li)->n_blobs;
}

/* The caffemodels of crema_solver_options.weights, read before the train net is built: a
 * layer they hold blob i of is copied over right after the build, so it is not filled. (V1
 * caffemodels are upgraded only when copied; their layers are filled as before.) */
typedef struct weights_set {
  Crema__NetParameter **msg;
  int n;
} weights_set;

static bool in_weights(void *ctx, const char *layer, int blob) {
  const weights_set *w = ctx;
  for (int k = 0; k < w->n; k++)
    for (size_t i = 0; i < w->msg[k]->n_layer; i++) {
      const Crema__LayerParameter *lp = w->msg[k]->layer[i];
      if (lp->name && !strcmp(lp->name, layer) && (size_t)blob < lp->n_blobs) return true;
    }
  return false;
}

static int build_net(Crema__NetParameter *np, Crema__Phase phase, const Crema__NetState *extra,
                     const crema_solver_options *opt, bool *matched, uint64_t seed, const char *source,
                     bool (*skip_fill)(void *, const char *, int), void *skip_ctx, crema_workspace *ws,
                     crema_net **out, crema_error *err) {
  bool changed = false;
  if (crema_upgrade_net(np, source, &changed, err)) return -1;
  if (opt->n_freeze && apply_freeze(np, opt, matched, phase == CREMA__PHASE__TRAIN, err)) return -1;
  crema_net_options no;
  memset(&no, 0, sizeof no);
  no.phase = phase;
  if (extra && extra->has_phase) no.phase = extra->phase;
  no.level = np->state && np->state->has_level ? np->state->level : 0;
  if (extra && extra->has_level) no.level = extra->level;
  if (extra) {
    no.n_stages = (int)extra->n_stage;
    no.stages = (const char *const *)extra->stage;
  }
  no.seed = seed;
  no.source = source;
  no.skip_fill = skip_fill;
  no.skip_fill_ctx = skip_ctx;
  no.workspace = ws;
  return crema_net_build(np, &no, out, err);
}

static int init_train_net(crema_solver *s, const crema_solver_options *opt, bool *matched,
                          const weights_set *weights, crema_error *err) {
  const Crema__SolverParameter *p = s->param;
  const int n =
      (p->train_net_param != NULL) + (p->train_net != NULL) + (p->net_param != NULL) + (p->net != NULL);
  if (n == 0)
    return crema_fail(err, "solver: no train net; set one of net, net_param, train_net, train_net_param");
  if (n > 1)
    return crema_fail(err, "solver: more than one train net; set only one of net, net_param, train_net, "
                           "train_net_param");
  Crema__NetParameter *np = NULL;
  const char *source;
  if (p->train_net_param) {
    CREMA_INFO("Creating training net specified in train_net_param.");
    np = crema_message_copy(&p->train_net_param->base);
    source = "train_net_param";
  } else if (p->net_param) {
    CREMA_INFO("Creating training net specified in net_param.");
    np = crema_message_copy(&p->net_param->base);
    source = "net_param";
  } else {
    const char *file = p->train_net ? p->train_net : p->net;
    CREMA_INFO("Creating training net from %s file: %s", p->train_net ? "train_net" : "net", file);
    if (read_net_file(file, &np, err)) return crema_error_prefix(err, "solver");
    source = file;
  }
  if (!np) return crema_fail(err, "out of memory");
  int rc = build_net(np, CREMA__PHASE__TRAIN, p->train_state, opt, matched, s->seed, source, in_weights,
                     (void *)weights, NULL, &s->net, err);
  crema_message_free(np);
  return rc;
}

static int init_test_nets(crema_solver *s, const crema_solver_options *opt, bool *matched, crema_error *err) {
  const Crema__SolverParameter *p = s->param;
  const int generic = (p->net_param != NULL) + (p->net != NULL);
  const int n_specific = (int)p->n_test_net_param + (int)p->n_test_net;
  const int n_iter = (int)p->n_test_iter;
  if (generic ? n_iter < n_specific : n_iter != n_specific)
    return crema_fail(err,
                      "solver: test_iter must be given once per test net (%d test_iter for %d test nets)",
                      n_iter, n_specific);
  const int n = generic ? n_iter : n_specific;
  if (p->n_test_state && (int)p->n_test_state != n)
    return crema_fail(err, "solver: test_state must be unspecified or given once per test net (%d for %d)",
                      (int)p->n_test_state, n);
  if (n > 0 && p->test_interval <= 0)
    return crema_fail(err,
                      "solver: %d test net(s) but test_interval is %d; set test_interval > 0 (or remove "
                      "test_iter)",
                      n, p->test_interval);
  s->tests = calloc((size_t)(n ? n : 1), sizeof *s->tests);
  if (!s->tests) return crema_fail(err, "out of memory");
  for (int i = 0; i < n; i++) {
    Crema__NetParameter *np = NULL;
    const char *source;
    if (i < (int)p->n_test_net_param) {
      CREMA_INFO("Creating test net (#%d) specified by test_net_param", i);
      np = crema_message_copy(&p->test_net_param[i]->base);
      source = "test_net_param";
    } else if (i < n_specific) {
      source = p->test_net[i - p->n_test_net_param];
      CREMA_INFO("Creating test net (#%d) specified by test_net file: %s", i, source);
      if (read_net_file(source, &np, err)) return crema_error_prefix(err, "solver");
    } else if (p->net_param) {
      CREMA_INFO("Creating test net (#%d) specified by net_param", i);
      np = crema_message_copy(&p->net_param->base);
      source = "net_param";
    } else {
      source = p->net;
      CREMA_INFO("Creating test net (#%d) specified by net file: %s", i, source);
      if (read_net_file(source, &np, err)) return crema_error_prefix(err, "solver");
    }
    if (!np) return crema_fail(err, "out of memory");
    const Crema__NetState *st = p->n_test_state ? p->test_state[i] : NULL;
    /* A test net runs only between training iterations, never beside the train net, so it
     * borrows the train net's scratch workspace (crema_solver_free frees the test nets first). */
    int rc = build_net(np, CREMA__PHASE__TEST, st, opt, matched, s->seed + 1000003u * (uint64_t)(i + 1),
                       source, shared_with_train, s->net, crema_net_workspace(s->net), &s->tests[i].net, err);
    crema_message_free(np);
    if (rc) return crema_error_prefix(err, "test net #%d", i);
    s->n_test = i + 1;
    solver_test_net *t = &s->tests[i];
    t->iters = p->test_iter[i];
    /* Which train layer shares its weights with each test layer (Caffe's
     * ShareTrainedLayersWith matches by layer name). */
    const int nl = crema_net_num_layers(t->net);
    t->train_layer = malloc((size_t)(nl ? nl : 1) * sizeof *t->train_layer);
    if (!t->train_layer) return crema_fail(err, "out of memory");
    for (int li = 0; li < nl; li++) {
      const crema_layer *tl = crema_net_layer(t->net, li);
      int src = tl->n_blobs ? crema_net_layer_index(s->net, crema_net_layer_name(t->net, li)) : -1;
      if (src >= 0) {
        const crema_layer *sl = crema_net_layer(s->net, src);
        if (sl->n_blobs != tl->n_blobs)
          return crema_fail(err,
                            "layer \"%s\" has %d parameter blobs in the train net but %d in test net #%d",
                            crema_net_layer_name(t->net, li), sl->n_blobs, tl->n_blobs, i);
        for (int b = 0; b < tl->n_blobs; b++)
          if (sl->blobs[b]->count != tl->blobs[b]->count) {
            char a[128], c[128];
            return crema_fail(err, "layer \"%s\" parameter %d: train net shape %s, test net #%d shape %s",
                              crema_net_layer_name(t->net, li), b,
                              crema_blob_shape_string(sl->blobs[b], a, sizeof a), i,
                              crema_blob_shape_string(tl->blobs[b], c, sizeof c));
          }
      }
      t->train_layer[li] = src;
      /* Same shapes: read the train net's blobs in place (no copy per test, no second set of
       * weights in memory). Blobs equal in count but not in shape are copied per test. */
      for (int b = 0; src >= 0 && b < tl->n_blobs; b++)
        if (crema_blob_same_shape(crema_net_layer(s->net, src)->blobs[b], tl->blobs[b]) &&
            crema_net_share_param_blob(t->net, li, b, crema_net_layer(s->net, src)->blobs[b], err))
          return crema_error_prefix(err, "test net #%d", i);
    }
    /* Only test_one runs it, forward only, and reads its outputs; it runs between training
     * iterations, when the train net's activation gradients are dead: their arena holds its
     * activations (crema_solver_free frees the test nets first). */
    if (crema_net_share_activations(t->net, s->net, err)) return crema_error_prefix(err, "test net #%d", i);
    /* Forward only: BatchNorm and Scale fold into the convolutions (re-read per test). */
    if (crema_net_fuse(t->net, true, err)) return crema_error_prefix(err, "test net #%d", i);
    size_t total = 0;
    for (int o = 0; o < crema_net_num_outputs(t->net); o++) total += crema_net_output(t->net, o)->count;
    t->n_scores = total;
    t->scores = calloc(total ? total : 1, sizeof *t->scores);
    t->means = calloc(total ? total : 1, sizeof *t->means);
    if (!t->scores || !t->means) return crema_fail(err, "out of memory");
  }
  return 0;
}

/* Test-output column names for the CSV and for lookups: "name", "name[k]" for multi-element
 * outputs, prefixed "testN/" for test nets after the first. */
static int output_column(const crema_net *net, int test_index, int o, size_t k, char *buf, size_t size) {
  const crema_blob *b = crema_net_output(net, o);
  char pre[32] = "";
  if (test_index > 0) snprintf(pre, sizeof pre, "test%d/", test_index);
  const char *name = crema_net_output_name(net, o);
  /* The CSV already has iteration, seconds, lr and loss (the train loss) columns. */
  if (test_index == 0 && (!strcmp(name, "loss") || !strcmp(name, "lr") || !strcmp(name, "iteration") ||
                          !strcmp(name, "seconds")))
    snprintf(pre, sizeof pre, "test_");
  if (b->count == 1) return snprintf(buf, size, "%s%s", pre, name);
  return snprintf(buf, size, "%s%s[%zu]", pre, name, k);
}

/* Checks the snapshot folder by creating (and removing) a probe file there, as Caffe's
 * CheckSnapshotWritePermissions does, so a typo fails now and not after hours of training. */
static int check_writable(const char *prefix, crema_error *err) {
  size_t n = strlen(prefix) + 64;
  char *probe = malloc(n);
  if (!probe) return crema_fail(err, "out of memory");
  snprintf(probe, n, "%s.crema-probe-%ld", prefix, (long)getpid());
  int fd = open(probe, O_WRONLY | O_CREAT | O_EXCL, 0644);
  if (fd < 0) {
    int e = errno;
    free(probe);
    return crema_fail(err,
                      "cannot write snapshots with snapshot_prefix \"%s\": %s; make sure the folder exists "
                      "and is writable",
                      prefix, strerror(e));
  }
  close(fd);
  unlink(probe);
  free(probe);
  return 0;
}

static int init_prefix(crema_solver *s, const crema_solver_options *opt, crema_error *err) {
  const char *pre = s->param->snapshot_prefix;
  char buf[PATH_MAX];
  if (!pre || !*pre) {
    /* Caffe: the solver file name without its extension. */
    if (opt->solver_path) {
      snprintf(buf, sizeof buf, "%s", opt->solver_path);
      char *dot = strrchr(buf, '.'), *slash = strrchr(buf, '/');
      if (dot && (!slash || dot > slash)) *dot = '\0';
    } else {
      snprintf(buf, sizeof buf, "crema");
    }
    pre = buf;
  }
  if (!(s->prefix = dup_str(pre))) return crema_fail(err, "out of memory");
  char res[PATH_MAX + 8];
  CREMA_INFO("Snapshot prefix: %s", resolved(s->prefix, res, sizeof res));
  return 0;
}

static int init_update(crema_solver *s, crema_error *err) {
  const Crema__SolverParameter *p = s->param;
  const char *type = p->type ? p->type : "SGD";
  s->rule = crema_update_rule_lookup(type);
  if (!s->rule)
    return crema_fail(err, "solver: unknown type \"%s\"; crema knows %s", type, crema_update_rule_names());
  crema_update_config *c = &s->cfg;
  c->rule = s->rule;
  c->hp.momentum = p->momentum;
  c->hp.momentum2 = p->momentum2;
  c->hp.delta = p->delta;
  c->hp.rms_decay = p->rms_decay;
  c->weight_decay = p->weight_decay;
  const char *reg = p->regularization_type ? p->regularization_type : "L2";
  if (!strcmp(reg, "L2"))
    c->regularization = CREMA_REG_L2;
  else if (!strcmp(reg, "L1"))
    c->regularization = CREMA_REG_L1;
  else
    return crema_fail(err, "solver: unknown regularization_type \"%s\"; use L1 or L2", reg);
  c->clip_gradients = p->clip_gradients;
  c->iter_size = p->iter_size;
  if (p->iter_size < 1) return crema_fail(err, "solver: iter_size must be >= 1 (got %d)", p->iter_size);
  if (!strcmp(type, "AdaDelta") && p->momentum <= 0.0f)
    CREMA_WARN("AdaDelta with momentum %g: Caffe's AdaDelta uses momentum as its decay rate (e.g. 0.95)",
               (double)p->momentum);
  s->n_params = crema_net_num_params(s->net);
  s->up = calloc((size_t)(s->n_params ? s->n_params : 1), sizeof *s->up);
  s->hist = calloc((size_t)(s->n_params ? s->n_params : 1) * 2, sizeof *s->hist);
  if (!s->up || !s->hist) return crema_fail(err, "out of memory");
  for (int i = 0; i < s->n_params; i++) {
    const crema_net_param *np = crema_net_param_at(s->net, i);
    for (int h = 0; h < s->rule->n_history; h++) {
      float *mem = crema_aligned_alloc(np->blob->count * sizeof(float));
      if (!mem) return crema_fail(err, "out of memory allocating solver history");
      s->hist[(size_t)h * s->n_params + i] = mem;
    }
  }
  return 0;
}

static int init_early_stop(crema_solver *s, crema_error *err) {
  const Crema__EarlyStoppingParameter *e = s->param->early_stopping;
  if (!e) return 0;
  if (!e->metric || !*e->metric)
    return crema_fail(err, "solver: early_stopping needs a metric (a test net output)");
  if (s->n_test == 0)
    return crema_fail(err, "solver: early_stopping needs a test net (test_iter, test_interval)");
  bool found = false;
  for (int o = 0; o < crema_net_num_outputs(s->tests[0].net); o++)
    if (!strcmp(crema_net_output_name(s->tests[0].net, o), e->metric)) found = true;
  if (!found) {
    char names[1024] = "";
    size_t n = 0;
    for (int o = 0; o < crema_net_num_outputs(s->tests[0].net) && n < sizeof names; o++)
      n += (size_t)snprintf(names + n, sizeof names - n, "%s%s", o ? ", " : "",
                            crema_net_output_name(s->tests[0].net, o));
    return crema_fail(err,
                      "solver: early_stopping metric \"%s\" is not an output of test net #0 (outputs: %s)",
                      e->metric, names);
  }
  if (e->patience < 1)
    return crema_fail(err, "solver: early_stopping patience must be >= 1 (got %d)", e->patience);
  s->es.enabled = true;
  s->es.metric = e->metric;
  s->es.maximize = e->mode == CREMA__EARLY_STOPPING_PARAMETER__MODE__MAXIMIZE;
  s->es.patience = e->patience;
  s->es.min_delta = e->min_delta;
  CREMA_INFO("Early stopping: %s %s, patience %d test rounds, min_delta %g",
             s->es.maximize ? "maximize" : "minimize", e->metric, e->patience, (double)e->min_delta);
  return 0;
}

static int init_metrics(crema_solver *s, crema_error *err) {
  if (!s->param->metrics_csv) return 0;
  int n = 0;
  for (int t = 0; t < s->n_test; t++)
    for (int o = 0; o < crema_net_num_outputs(s->tests[t].net); o++)
      n += (int)crema_net_output(s->tests[t].net, o)->count;
  char **cols = calloc((size_t)n + 1, sizeof *cols);
  if (!cols) return crema_fail(err, "out of memory");
  int k = 0, rc = 0;
  for (int t = 0; t < s->n_test && !rc; t++)
    for (int o = 0; o < crema_net_num_outputs(s->tests[t].net); o++)
      for (size_t e = 0; e < crema_net_output(s->tests[t].net, o)->count; e++) {
        char name[512];
        output_column(s->tests[t].net, t, o, e, name, sizeof name);
        if (!(cols[k++] = dup_str(name))) rc = crema_fail(err, "out of memory");
      }
  size_t len = strlen(s->prefix) + 16;
  char *path = malloc(len);
  if (!path) rc = crema_fail(err, "out of memory");
  if (!rc) {
    snprintf(path, len, "%s_metrics.csv", s->prefix);
    rc = crema_metrics_init(&s->metrics, path, n, (const char *const *)cols, err);
  }
  free(path);
  for (int i = 0; i < k; i++) free(cols[i]);
  free(cols);
  return rc;
}

/* What the nets hold, as Caffe's "Memory required for data" line does for one net. */
static void log_memory(const crema_solver *s) {
  size_t params = 0;
  for (int i = 0; i < s->n_params; i++) params += crema_net_param_at(s->net, i)->blob->count * sizeof(float);
  const double mb = 1.0 / (1024.0 * 1024.0);
  CREMA_INFO("Memory: parameters %.1f MB, as much for their gradients and %d x as much for the solver's "
             "history; train net activations %.1f MB, their gradients %.1f MB",
             (double)params * mb, s->rule->n_history, (double)crema_net_data_bytes(s->net) * mb,
             (double)crema_net_diff_bytes(s->net) * mb);
  CREMA_INFO("Memory: scratch %.1f MB for the layers, %.1f MB for the engines",
             (double)crema_workspace_floats(crema_net_workspace(s->net)) * sizeof(float) * mb,
             (double)crema_engine_ws_bytes() * mb);
  for (int t = 0; t < s->n_test; t++)
    CREMA_INFO("Memory: test net #%d activations %.1f MB, besides what it borrows from the train net", t,
               (double)crema_net_data_bytes(s->tests[t].net) * mb);
}

int crema_solver_create(const Crema__SolverParameter *param, const crema_solver_options *opt,
                        crema_solver **out, crema_error *err) {
  *out = NULL;
  crema_solver_options none;
  memset(&none, 0, sizeof none);
  if (!opt) opt = &none;
  crema_solver *s = calloc(1, sizeof *s);
  if (!s) return crema_fail(err, "out of memory");
  bool *matched = calloc((size_t)opt->n_freeze + 1, sizeof *matched);
  s->param = crema_message_copy(&param->base);
  if (!s->param || !matched) {
    free(matched);
    crema_solver_free(s);
    return crema_fail(err, "out of memory");
  }
  Crema__SolverParameter *p = s->param;
  bool changed = false;
  int rc = crema_upgrade_solver(p, &changed, err);
  s->action = opt->action;
  s->action_ctx = opt->action_ctx;
  s->n_ranks = 1;
  if (opt->hooks.after_backward || opt->hooks.on_iteration || opt->hooks.on_test || opt->hooks.agree_stop)
    s->hooks[s->n_hooks++] = opt->hooks;
  s->max_iter = opt->max_iter > 0 ? opt->max_iter : p->max_iter;
  if (!rc && p->snapshot_format == CREMA__SOLVER_PARAMETER__SNAPSHOT_FORMAT__HDF5 && !crema_hdf5_available())
    rc = crema_fail(
        err, "solver: snapshot_format HDF5 needs crema built with HDF5 (install libhdf5-dev and rebuild), "
             "or use BINARYPROTO (the default)");
  if (!rc && p->has_solver_mode && p->solver_mode == CREMA__SOLVER_PARAMETER__SOLVER_MODE__GPU)
    CREMA_WARN("solver_mode GPU: crema runs on the CPU only; continuing in CPU mode");
  if (!rc) {
    int64_t seed = opt->has_seed ? opt->seed : p->random_seed;
    if (seed < 0) {
      struct timespec now;
      clock_gettime(CLOCK_REALTIME, &now);
      seed =
          (int64_t)(((uint64_t)now.tv_sec * 1000003u) ^ (uint64_t)now.tv_nsec ^ ((uint64_t)getpid() << 16)) &
          INT64_MAX;
      CREMA_INFO("random_seed -1: using time-based seed %lld (pass --seed=%lld to repeat this run)",
                 (long long)seed, (long long)seed);
    } else {
      CREMA_INFO("Random seed %lld", (long long)seed);
    }
    s->seed = (uint64_t)seed;
    /* Caffe's default: max_iter override also moves a cosine/poly schedule's end. */
    p->max_iter = s->max_iter;
    rc = crema_lr_policy_init(&s->lr, p, err);
  }
  if (!rc) rc = init_prefix(s, opt, err);
  const bool writes =
      !rc && (p->snapshot > 0 || p->snapshot_after_train || p->metrics_csv || p->early_stopping);
  if (writes) rc = check_writable(s->prefix, err);
  /* --weights: read first (their layers are not filled), copied right after the build. */
  weights_set ws = {NULL, 0};
  if (!rc && opt->n_weights > 0 && !(ws.msg = calloc((size_t)opt->n_weights, sizeof *ws.msg)))
    rc = crema_fail(err, "out of memory");
  for (int w = 0; !rc && w < opt->n_weights; w++) {
    if (crema_read_net_param(opt->weights[w], &ws.msg[w], err))
      rc = crema_error_prefix(err, "%s", opt->weights[w]);
    else
      ws.n = w + 1;
  }
  if (!rc) rc = init_train_net(s, opt, matched, &ws, err);
  /* ReLUs run inside the convolutions before them (the same bits). */
  if (!rc) rc = crema_net_fuse(s->net, false, err);
  /* Only this loop runs the train net: its activations' gradients may share storage. */
  if (!rc) rc = crema_net_share_diffs(s->net, err);
  for (int w = 0; !rc && w < ws.n; w++) {
    CREMA_INFO("Finetuning from %s", opt->weights[w]);
    if (crema_net_copy_trained_layers(s->net, ws.msg[w], err))
      rc = crema_error_prefix(err, "%s", opt->weights[w]);
  }
  for (int w = 0; w < ws.n; w++) crema_message_free(ws.msg[w]);
  free(ws.msg);
  /* Caffe 1.0's SolverParameter.weights: caffemodels copied into the train net at start. */
  for (size_t w = 0; !rc && w < p->n_weights; w++) rc = crema_solver_copy_weights(s, p->weights[w], err);
  if (!rc) rc = init_test_nets(s, opt, matched, err);
  for (int k = 0; !rc && k < opt->n_freeze; k++)
    if (!matched[k]) rc = crema_fail(err, "--freeze: no layer matches \"%s\"", opt->freeze[k]);
  if (!rc) rc = init_update(s, err);
  if (!rc) rc = init_early_stop(s, err);
  if (!rc) rc = init_metrics(s, err);
  free(matched);
  if (!rc) {
    s->average_loss = p->average_loss > 0 ? p->average_loss : 1;
    s->losses = calloc((size_t)s->average_loss, sizeof *s->losses);
    if (!s->losses) rc = crema_fail(err, "out of memory");
  }
  if (rc) {
    crema_solver_free(s);
    return -1;
  }
  clock_gettime(CLOCK_MONOTONIC, &s->t_start);
  log_memory(s);
  CREMA_INFO("Solver scaffolding done.");
  *out = s;
  return 0;
}

void crema_solver_free(crema_solver *s) {
  if (!s) return;
  crema_metrics_close(&s->metrics);
  if (s->hist)
    for (int i = 0; i < 2 * s->n_params; i++) crema_aligned_free(s->hist[i]);
  free(s->hist);
  free(s->up);
  for (int t = 0; t < s->n_test; t++) {
    crema_net_free(s->tests[t].net);
    free(s->tests[t].train_layer);
    free(s->tests[t].scores);
    free(s->tests[t].means);
  }
  free(s->tests);
  crema_net_free(s->net);
  free(s->losses);
  free(s->prefix);
  crema_message_free(s->param);
  free(s);
}

void crema_solver_set_ranks(crema_solver *s, int rank, int ranks) {
  s->rank = rank;
  s->n_ranks = ranks > 0 ? ranks : 1;
}

int crema_solver_add_hooks(crema_solver *s, const crema_solver_hooks *hooks, crema_error *err) {
  if (s->n_hooks >= CREMA_SOLVER_MAX_HOOKS)
    return crema_fail(err, "too many solver hooks (at most %d)", CREMA_SOLVER_MAX_HOOKS);
  s->hooks[s->n_hooks++] = *hooks;
  return 0;
}

int crema_solver_copy_weights(crema_solver *s, const char *caffemodel, crema_error *err) {
  CREMA_INFO("Finetuning from %s", caffemodel);
  return crema_net_copy_trained_layers_from_file(s->net, caffemodel, err);
}

/* ---------------------------------------------------------------- accessors */

int crema_solver_iter(const crema_solver *s) { return s->iter; }
bool crema_solver_stopped_early(const crema_solver *s) { return s->requested_early_exit; }
crema_net *crema_solver_net(const crema_solver *s) { return s->net; }
int crema_solver_num_test_nets(const crema_solver *s) { return s->n_test; }
crema_net *crema_solver_test_net(const crema_solver *s, int i) { return s->tests[i].net; }
const char *crema_solver_snapshot_prefix(const crema_solver *s) { return s->prefix; }
float crema_solver_smoothed_loss(const crema_solver *s) { return s->smoothed_loss; }
float crema_solver_rate(const crema_solver *s) { return s->rate; }
const Crema__SolverParameter *crema_solver_param(const crema_solver *s) { return s->param; }

int crema_solver_test_value(const crema_solver *s, int t, const char *name, float *value) {
  if (t < 0 || t >= s->n_test || !s->tests[t].has_result) return -1;
  const crema_net *net = s->tests[t].net;
  size_t off = 0;
  for (int o = 0; o < crema_net_num_outputs(net); o++) {
    if (!strcmp(crema_net_output_name(net, o), name)) {
      *value = s->tests[t].means[off];
      return 0;
    }
    off += crema_net_output(net, o)->count;
  }
  return -1;
}

/* ---------------------------------------------------------------- non-finite values */

static bool all_finite(const float *x, size_t n) {
  for (size_t i = 0; i < n; i++)
    if (!isfinite(x[i])) return false;
  return true;
}

/* Names the first layer, in forward order, with a non-finite top value or parameter
 * gradient, and returns the error. */
static int report_nonfinite(crema_solver *s, const char *what, double value, crema_error *err) {
  const crema_net *net = s->net;
  for (int li = 0; li < crema_net_num_layers(net); li++) {
    const crema_layer *l = crema_net_layer(net, li);
    const int *ids;
    const int nt = crema_net_layer_tops(net, li, &ids);
    for (int t = 0; t < nt; t++) {
      const crema_blob *b = crema_net_blob(net, ids[t]);
      if (!all_finite(b->data, b->count))
        return crema_fail(
            err,
            "iteration %d: %s is %g; the first non-finite value is in top \"%s\" of layer \"%s\" (%s). "
            "Lower base_lr, set clip_gradients, or check the input data",
            s->iter, what, value, crema_net_blob_name(net, ids[t]), crema_net_layer_name(net, li),
            l->ops->type);
    }
    for (int b = 0; b < l->n_blobs; b++)
      if (!all_finite(l->blobs[b]->diff, l->blobs[b]->count))
        return crema_fail(
            err,
            "iteration %d: %s is %g; the first non-finite value is in the gradient of parameter %d of "
            "layer \"%s\" (%s). Lower base_lr, set clip_gradients, or check the input data",
            s->iter, what, value, b, crema_net_layer_name(net, li), l->ops->type);
  }
  return crema_fail(err, "iteration %d: %s is %g. Lower base_lr, set clip_gradients, or check the input data",
                    s->iter, what, value);
}

/* ---------------------------------------------------------------- testing */

static void share_weights(crema_solver *s, solver_test_net *t) {
  for (int li = 0; li < crema_net_num_layers(t->net); li++) {
    if (t->train_layer[li] < 0) continue;
    crema_layer *dst = crema_net_layer(t->net, li);
    const crema_layer *src = crema_net_layer(s->net, t->train_layer[li]);
    for (int b = 0; b < dst->n_blobs; b++)
      if (dst->blobs[b] != src->blobs[b])
        memcpy(dst->blobs[b]->data, src->blobs[b]->data, dst->blobs[b]->count * sizeof(float));
  }
}

static crema_solver_action poll_action(crema_solver *s) {
  return s->action ? s->action(s->action_ctx) : CREMA_SOLVER_ACTION_NONE;
}

static int test_one(crema_solver *s, int ti, crema_error *err) {
  solver_test_net *t = &s->tests[ti];
  CREMA_INFO("Iteration %d, Testing net (#%d)", s->iter, ti);
  share_weights(s, t);
  if (crema_net_fuse(t->net, true, err)) return -1; /* the folded weights follow the train net's */
  memset(t->scores, 0, t->n_scores * sizeof *t->scores);
  double loss = 0.0;
  for (int i = 0; i < t->iters; i++) {
    for (crema_solver_action a = poll_action(s); a != CREMA_SOLVER_ACTION_NONE; a = poll_action(s)) {
      if (a == CREMA_SOLVER_ACTION_SNAPSHOT && crema_solver_snapshot(s, err)) return -1;
      if (a == CREMA_SOLVER_ACTION_STOP) s->requested_early_exit = true;
    }
    if (s->requested_early_exit) break;
    float iter_loss = 0.0f;
    if (crema_net_forward(t->net, &iter_loss, err))
      return crema_error_prefix(err, "iteration %d, test net #%d, batch %d", s->iter, ti, i);
    loss += iter_loss;
    size_t off = 0;
    for (int o = 0; o < crema_net_num_outputs(t->net); o++) {
      const crema_blob *b = crema_net_output(t->net, o);
      for (size_t k = 0; k < b->count; k++) t->scores[off + k] += b->data[k];
      off += b->count;
    }
  }
  if (s->requested_early_exit) {
    CREMA_INFO("Test interrupted.");
    return 0;
  }
  if (s->param->test_compute_loss) CREMA_INFO("Test loss: %g", loss / t->iters);
  size_t off = 0;
  int idx = 0;
  for (int o = 0; o < crema_net_num_outputs(t->net); o++) {
    const crema_blob *b = crema_net_output(t->net, o);
    const float w = crema_net_output_loss_weight(t->net, o);
    for (size_t k = 0; k < b->count; k++, off++) {
      const float mean = (float)(t->scores[off] / (t->iters > 0 ? t->iters : 1));
      t->means[off] = mean;
      if (w != 0.0f)
        CREMA_INFO("    Test net output #%d: %s = %g (* %g = %g loss)", idx++,
                   crema_net_output_name(t->net, o), (double)mean, (double)w, (double)(w * mean));
      else
        CREMA_INFO("    Test net output #%d: %s = %g", idx++, crema_net_output_name(t->net, o), (double)mean);
    }
  }
  t->has_result = true;
  return 0;
}

static int early_stop_check(crema_solver *s, crema_error *err) {
  if (!s->es.enabled || !s->tests[0].has_result) return 0;
  float v = 0.0f;
  if (crema_solver_test_value(s, 0, s->es.metric, &v)) return 0;
  crema_early_stop_verdict verdict = crema_early_stop_update(&s->es, v, s->iter);
  if (verdict == CREMA_ES_IMPROVED) {
    size_t n = strlen(s->prefix) + 32;
    char *path = malloc(n);
    if (!path) return crema_fail(err, "out of memory");
    snprintf(path, n, "%s_best.caffemodel", s->prefix);
    CREMA_INFO("New best %s = %g at iteration %d; saving %s", s->es.metric, (double)v, s->iter, path);
    int rc = crema_net_save_weights(s->net, path, err);
    free(path);
    return rc;
  }
  if (verdict == CREMA_ES_STOP) {
    CREMA_INFO(
        "Early stopping at iteration %d: %s has not improved for %d test rounds (best %g at iteration %d)",
        s->iter, s->es.metric, s->es.rounds_without_improvement, (double)s->es.best, s->es.best_iter);
    s->requested_early_exit = true;
  }
  return 0;
}

int crema_solver_test_all(crema_solver *s, crema_error *err) {
  if (s->rank != 0) return 0; /* data-parallel: rank 0 tests for everyone */
  for (int t = 0; t < s->n_test && !s->requested_early_exit; t++)
    if (test_one(s, t, err)) return -1;
  if (s->requested_early_exit) return 0;
  s->tested_this_iter = s->n_test > 0;
  for (int h = 0; h < s->n_hooks && s->n_test > 0; h++)
    if (s->hooks[h].on_test) s->hooks[h].on_test(s->hooks[h].ctx, s, s->iter);
  return early_stop_check(s, err);
}

/* ---------------------------------------------------------------- the loop */

/* Caffe's UpdateSmoothedLoss: the mean of the last average_loss losses, kept in a ring that
 * is overwritten at (iter - window_start) % average_loss once full. */
static void update_smoothed_loss(crema_solver *s, float loss) {
  if (s->n_losses < s->average_loss) {
    s->losses[s->n_losses++] = loss;
    s->smoothed_loss = (s->smoothed_loss * (float)(s->n_losses - 1) + loss) / (float)s->n_losses;
  } else {
    const int idx = (s->iter - s->window_start) % s->average_loss;
    s->smoothed_loss += (loss - s->losses[idx]) / (float)s->average_loss;
    s->losses[idx] = loss;
  }
}

static int write_metrics_row(crema_solver *s, bool has_lr, bool has_loss, crema_error *err) {
  if (!s->param->metrics_csv || s->rank != 0) return 0;
  if (!s->metrics.f) {
    double before = 0.0;
    if (crema_metrics_open(&s->metrics, s->resumed, &before, err)) return -1;
    s->seconds_before = before; /* a resumed run's clock continues from its CSV */
  }
  /* Test values only when a test round ran at this iteration. Scratch on the stack: the CSV
   * has one column per test output element. */
  const int n = s->metrics.n_columns;
  float vals[n > 0 ? n : 1];
  bool has[n > 0 ? n : 1];
  int k = 0;
  for (int t = 0; t < s->n_test; t++)
    for (size_t i = 0; i < s->tests[t].n_scores && k < n; i++, k++) {
      vals[k] = s->tests[t].means[i];
      has[k] = s->tested_this_iter && s->tests[t].has_result;
    }
  for (; k < n; k++) has[k] = false;
  s->tested_this_iter = false;
  return crema_metrics_row(&s->metrics, s->iter, crema_solver_seconds(s), has_lr, s->rate, has_loss,
                           s->smoothed_loss, vals, has, err);
}

static void refresh_views(crema_solver *s) {
  for (int i = 0; i < s->n_params; i++) {
    const crema_net_param *np = crema_net_param_at(s->net, i);
    crema_update_param *u = &s->up[i];
    u->data = np->blob->data;
    u->diff = np->blob->diff;
    u->n = np->blob->count;
    u->lr_mult = np->lr_mult;
    u->decay_mult = np->decay_mult;
    u->hist[0] = s->hist[i];
    u->hist[1] = s->rule->n_history > 1 ? s->hist[(size_t)s->n_params + i] : NULL;
  }
}

static int apply_update(crema_solver *s, bool display, crema_error *err) {
  s->rate = crema_lr_rate(&s->lr, s->iter, &s->current_step);
  if (display) CREMA_INFO("Iteration %d, lr = %g", s->iter, (double)s->rate);
  refresh_views(s);
  const double sumsq = crema_update_grad_sumsq(s->up, s->n_params);
  if (!isfinite(sumsq)) return report_nonfinite(s, "the gradient norm", sumsq, err);
  float scale = 1.0f;
  crema_update_step(&s->cfg, s->up, s->n_params, sumsq, s->rate, s->iter, &scale);
  if (scale != 1.0f)
    CREMA_INFO("Gradient clipping: scaling down gradients (L2 norm %g > %g) by scale factor %g", sqrt(sumsq),
               (double)s->cfg.clip_gradients, (double)scale);
  return 0;
}

static void log_train_outputs(crema_solver *s) {
  int idx = 0;
  for (int o = 0; o < crema_net_num_outputs(s->net); o++) {
    const crema_blob *b = crema_net_output(s->net, o);
    const float w = crema_net_output_loss_weight(s->net, o);
    for (size_t k = 0; k < b->count; k++) {
      if (w != 0.0f)
        CREMA_INFO("    Train net output #%d: %s = %g (* %g = %g loss)", idx++,
                   crema_net_output_name(s->net, o), (double)b->data[k], (double)w, (double)(w * b->data[k]));
      else
        CREMA_INFO("    Train net output #%d: %s = %g", idx++, crema_net_output_name(s->net, o),
                   (double)b->data[k]);
    }
  }
}

static void format_duration(double sec, char *buf, size_t size) {
  if (sec < 0 || !isfinite(sec))
    snprintf(buf, size, "?");
  else if (sec < 60)
    snprintf(buf, size, "%.0fs", sec);
  else if (sec < 3600)
    snprintf(buf, size, "%dm%02ds", (int)sec / 60, (int)sec % 60);
  else
    snprintf(buf, size, "%dh%02dm", (int)sec / 3600, ((int)sec % 3600) / 60);
}

/* Lets the agree_stop hooks turn this process's stop decision into everyone's. */
static int agree_stop(crema_solver *s, bool *stop, crema_error *err) {
  for (int h = 0; h < s->n_hooks; h++)
    if (s->hooks[h].agree_stop && s->hooks[h].agree_stop(s->hooks[h].ctx, s, stop, err))
      return crema_error_prefix(err, "iteration %d", s->iter);
  return 0;
}

int crema_solver_step(crema_solver *s, int iters, crema_error *err) {
  const Crema__SolverParameter *p = s->param;
  const int start_iter = s->iter, stop_iter = s->iter + iters;
  if (!s->window_restored) {
    s->n_losses = 0;
    s->smoothed_loss = 0.0f;
    s->window_start = start_iter;
  }
  s->window_restored = false;
  struct timespec t_last;
  clock_gettime(CLOCK_MONOTONIC, &t_last);
  int iterations_last = s->iter;
  while (s->iter < stop_iter) {
    bool stop_now = false;
    if (p->test_interval > 0 && s->iter % p->test_interval == 0 && (s->iter > 0 || p->test_initialization)) {
      if (crema_solver_test_all(s, err)) return -1;
      stop_now = s->requested_early_exit;
    }
    if (agree_stop(s, &stop_now, err)) return -1;
    if (stop_now) {
      s->requested_early_exit = true;
      break;
    }
    const bool display = p->display > 0 && s->iter % p->display == 0;
    float loss = 0.0f;
    /* zero, for the backward passes below: an InnerProduct writes its gradient instead of
     * adding it to zeros (net.h) */
    crema_net_clear_param_diffs_lazily(s->net);
    for (int i = 0; i < p->iter_size; i++) {
      float l = 0.0f;
      if (crema_net_forward(s->net, &l, err)) return crema_error_prefix(err, "iteration %d", s->iter);
      if (!isfinite(l)) return report_nonfinite(s, "the loss", l, err);
      crema_net_backward(s->net);
      loss += l;
    }
    loss /= (float)p->iter_size;
    for (int h = 0; h < s->n_hooks; h++)
      if (s->hooks[h].after_backward && s->hooks[h].after_backward(s->hooks[h].ctx, s, err))
        return crema_error_prefix(err, "iteration %d", s->iter);
    update_smoothed_loss(s, loss);
    if (display) {
      struct timespec now;
      clock_gettime(CLOCK_MONOTONIC, &now);
      const double lapse =
          (double)(now.tv_sec - t_last.tv_sec) + 1e-9 * (double)(now.tv_nsec - t_last.tv_nsec);
      const double per_s = lapse > 0 ? (s->iter - iterations_last) / lapse : 0.0;
      char eta[32];
      format_duration(per_s > 0 ? (stop_iter - s->iter) / per_s : -1, eta, sizeof eta);
      CREMA_INFO("Iteration %d (%g iter/s, %.3gs/%d iters), loss = %g, %s left", s->iter, per_s, lapse,
                 p->display, (double)s->smoothed_loss, eta);
      t_last = now;
      iterations_last = s->iter;
      log_train_outputs(s);
    }
    if (apply_update(s, display, err)) return -1;
    const bool row = display || s->tested_this_iter;
    const int row_iter = s->iter;
    for (int h = 0; h < s->n_hooks; h++)
      if (s->hooks[h].on_iteration)
        s->hooks[h].on_iteration(s->hooks[h].ctx, s, row_iter, s->smoothed_loss, s->rate);
    crema_solver_action request = poll_action(s);
    bool stop = request == CREMA_SOLVER_ACTION_STOP;
    if (agree_stop(s, &stop, err)) return -1;
    if (stop)
      request = CREMA_SOLVER_ACTION_STOP;
    else if (request == CREMA_SOLVER_ACTION_STOP)
      request = CREMA_SOLVER_ACTION_NONE;
    s->iter++;
    if (row) {
      /* The row belongs to the iteration just trained (its lr and loss). */
      s->iter = row_iter;
      int rc = write_metrics_row(s, true, display, err);
      s->iter = row_iter + 1;
      if (rc) return -1;
    }
    if ((p->snapshot > 0 && s->iter % p->snapshot == 0) || request == CREMA_SOLVER_ACTION_SNAPSHOT)
      if (crema_solver_snapshot(s, err)) return -1;
    if (request == CREMA_SOLVER_ACTION_STOP) {
      s->requested_early_exit = true;
      break;
    }
  }
  return 0;
}

int crema_solver_solve(crema_solver *s, crema_error *err) {
  const Crema__SolverParameter *p = s->param;
  const char *name = crema_net_param_message(s->net)->name;
  CREMA_INFO("Solving %s", name ? name : "");
  CREMA_INFO("Learning Rate Policy: %s", crema_lr_policy_name(s->lr.kind));
  CREMA_INFO("Solver type %s, max_iter %d, iter_size %d", s->rule->type, s->max_iter, p->iter_size);
  clock_gettime(CLOCK_MONOTONIC, &s->t_start);
  s->requested_early_exit = false;
  const int start_iter = s->iter;
  if (crema_solver_step(s, s->max_iter - s->iter, err)) return -1;
  if (p->snapshot_after_train && (p->snapshot <= 0 || s->iter % p->snapshot != 0) && s->iter > start_iter)
    if (crema_solver_snapshot(s, err)) return -1;
  if (s->requested_early_exit) {
    CREMA_INFO("Optimization stopped early.");
    return 0;
  }
  bool displayed = false;
  if (p->display > 0 && s->iter % p->display == 0) {
    float loss = 0.0f;
    if (crema_net_forward(s->net, &loss, err)) return crema_error_prefix(err, "iteration %d", s->iter);
    update_smoothed_loss(s, loss);
    CREMA_INFO("Iteration %d, loss = %g", s->iter, (double)s->smoothed_loss);
    displayed = true;
  }
  if (p->test_interval > 0 && s->iter % p->test_interval == 0)
    if (crema_solver_test_all(s, err)) return -1;
  if ((displayed || s->tested_this_iter) && write_metrics_row(s, false, displayed, err)) return -1;
  if (s->requested_early_exit) {
    CREMA_INFO("Optimization stopped early.");
    return 0;
  }
  CREMA_INFO("Optimization Done.");
  return 0;
}
