/* cmd_info.c -- `crema info FILE`: what a Caffe file is and what it holds.
 *
 * Recognises net prototxts, solver prototxts, caffemodels (binary NetParameter), binaryproto
 * blobs (mean files) and solverstates, by content first and by extension as a hint, and
 * prints a readable summary of each. */
#include <inttypes.h>
#include <math.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "base/log.h"
#include "common/flags.h"
#include "crema/commands.h"
#include "net/net.h"
#include "proto/hdf5_io.h"
#include "proto/io.h"
#include "proto/textformat.h"
#include "proto/upgrade.h"
#include "report/summary.h"
#include "tensor/blob_proto.h"

typedef enum { KIND_UNKNOWN, KIND_NET, KIND_SOLVER, KIND_BLOB, KIND_STATE } file_kind;

static const char *const KIND_NAMES[] = {"", "net", "solver", "binaryproto", "solverstate"};

static bool has_suffix(const char *s, const char *suffix) {
  size_t n = strlen(s), m = strlen(suffix);
  return n >= m && !strcmp(s + n - m, suffix);
}

/* "20x1x5x5" into buf; returns the element count. */
static size_t blob_shape_text(const Crema__BlobProto *b, char *buf, size_t size) {
  int num_axes = 0, shape[CREMA_MAX_AXES];
  crema_error err;
  if (crema_blob_shape_from_proto(b, &num_axes, shape, &err)) {
    snprintf(buf, size, "(bad shape)");
    return 0;
  }
  size_t n = 0, count = 1;
  for (int i = 0; i < num_axes; i++) {
    /* A damaged file can hold dims whose product wraps around; say so instead of a count. */
    if (shape[i] && count > SIZE_MAX / (size_t)shape[i]) {
      snprintf(buf, size, "(bad shape: too many elements)");
      return 0;
    }
    count *= (size_t)shape[i];
  }
  buf[0] = '\0';
  for (int i = 0; i < num_axes && n < size; i++)
    n += (size_t)snprintf(buf + n, size - n, "%s%d", i ? "x" : "", shape[i]);
  if (num_axes == 0) snprintf(buf, size, "scalar");
  return count;
}

static size_t blob_values(const Crema__BlobProto *b) { return b->n_data ? b->n_data : b->n_double_data; }

static double blob_value(const Crema__BlobProto *b, size_t i) {
  return b->n_data ? (double)b->data[i] : b->double_data[i];
}

/* Joins a string list with ","; "-" when empty. */
static void join(char *const *v, size_t n, char *buf, size_t size) {
  size_t k = 0;
  buf[0] = '\0';
  for (size_t i = 0; i < n && k < size; i++)
    k += (size_t)snprintf(buf + k, size - k, "%s%s", i ? "," : "", v[i]);
  if (!n) snprintf(buf, size, "-");
}

/* A few words on a layer's main settings. */
static void layer_settings(const Crema__LayerParameter *l, char *buf, size_t size) {
  buf[0] = '\0';
  size_t k = 0;
  if (l->convolution_param) {
    const Crema__ConvolutionParameter *c = l->convolution_param;
    k += (size_t)snprintf(buf + k, size - k, "out %u", c->num_output);
    if (c->n_kernel_size) k += (size_t)snprintf(buf + k, size - k, " k %u", c->kernel_size[0]);
    if (k < size && c->n_stride) k += (size_t)snprintf(buf + k, size - k, " s %u", c->stride[0]);
    if (k < size && c->n_pad) k += (size_t)snprintf(buf + k, size - k, " p %u", c->pad[0]);
    if (k < size && c->group != 1) snprintf(buf + k, size - k, " g %u", c->group);
  } else if (l->inner_product_param) {
    snprintf(buf, size, "out %u", l->inner_product_param->num_output);
  } else if (l->pooling_param) {
    const Crema__PoolingParameter *p = l->pooling_param;
    const ProtobufCEnumValue *ev =
        protobuf_c_enum_descriptor_get_value(&crema__pooling_parameter__pool_method__descriptor, p->pool);
    if (p->global_pooling)
      snprintf(buf, size, "%s global", ev ? ev->name : "?");
    else
      snprintf(buf, size, "%s k %u s %u", ev ? ev->name : "?", p->has_kernel_size ? p->kernel_size : 0,
               p->stride);
  } else if (l->input_param && l->input_param->n_shape) {
    const Crema__BlobShape *s = l->input_param->shape[0];
    for (size_t i = 0; i < s->n_dim && k < size; i++)
      k += (size_t)snprintf(buf + k, size - k, "%s%" PRId64, i ? "x" : "shape ", s->dim[i]);
  } else if (l->data_param) {
    snprintf(buf, size, "batch %u", l->data_param->batch_size);
  } else if (l->dropout_param) {
    snprintf(buf, size, "ratio %g", (double)l->dropout_param->dropout_ratio);
  }
  for (size_t i = 0; i < l->n_include && strlen(buf) + 12 < size; i++)
    if (l->include[i]->has_phase)
      strcat(buf, l->include[i]->phase == CREMA__PHASE__TRAIN ? " [TRAIN]" : " [TEST]");
}

/* A prototxt holds no blobs: to show parameter shapes we build the net (TEST, then TRAIN for
 * the layers only TRAIN has) and read the shapes the layers' setup chose. Building needs the
 * data sets of Data layers; when it fails, the table shows settings only and says why. */
typedef struct built_nets {
  crema_net *net[2];
  crema_error why;
} built_nets;

static void build_for_shapes(const Crema__NetParameter *param, const char *path, built_nets *b) {
  crema_log_level saved = crema_log_min_level();
  crema_log_set_min_level(CREMA_LOG_ERROR); /* building logs a lot; info shows a table */
  const Crema__Phase phases[2] = {CREMA__PHASE__TEST, CREMA__PHASE__TRAIN};
  for (int k = 0; k < 2; k++) {
    crema_net_options opt = {.phase = phases[k], .seed = 1, .source = path};
    if (crema_net_build(param, &opt, &b->net[k], k == 0 ? &b->why : NULL)) b->net[k] = NULL;
  }
  crema_log_set_min_level(saved);
}

/* "20x1x5x5 (500), 20 (20)" for the built layer of that name; adds to the totals. */
static bool built_params(const built_nets *b, const char *name, char *buf, size_t size, size_t *total,
                         size_t *blobs) {
  for (int k = 0; k < 2; k++) {
    if (!b->net[k] || !name) continue;
    int i = crema_net_layer_index(b->net[k], name);
    if (i < 0) continue;
    const crema_layer *l = crema_net_layer(b->net[k], i);
    size_t used = 0;
    buf[0] = '\0';
    for (int j = 0; j < l->n_blobs && used < size; j++) {
      const crema_blob *w = l->blobs[j];
      used += (size_t)snprintf(buf + used, size - used, "%s", j ? ", " : "");
      for (int a = 0; a < w->num_axes && used < size; a++)
        used += (size_t)snprintf(buf + used, size - used, "%s%d", a ? "x" : "", w->shape[a]);
      if (used < size) used += (size_t)snprintf(buf + used, size - used, " (%zu)", w->count);
      *total += w->count;
      ++*blobs;
    }
    return l->n_blobs > 0;
  }
  return false;
}

/* Shapes, parameters and multiply-adds worked out from the message alone (no net is built):
 * TEST phase first, TRAIN for the layers only TRAIN has. */
typedef struct summaries {
  crema_net_summary s[2];
  bool ok[2];
} summaries;

static const crema_layer_summary *find_summary(const summaries *sm, const Crema__LayerParameter *l) {
  for (int k = 0; k < 2; k++)
    for (int i = 0; sm->ok[k] && i < sm->s[k].n_layers; i++)
      if (sm->s[k].layers[i].param == l && (sm->s[k].complete || i + 1 < sm->s[k].n_layers))
        return &sm->s[k].layers[i];
  return NULL;
}

/* "20x1x5x5 (500), 20 (20)" from a summary; adds to the totals. */
static bool summary_params(const crema_layer_summary *ls, char *buf, size_t size, size_t *total,
                           size_t *blobs) {
  size_t used = 0;
  buf[0] = '\0';
  for (int j = 0; j < ls->n_param_blobs && used < size; j++) {
    char shape[256];
    crema_blob_shape_text(&ls->param_shapes[j], shape, sizeof shape);
    const double n = crema_blob_shape_count(&ls->param_shapes[j]);
    used += (size_t)snprintf(buf + used, size - used, "%s%s (%.0f)", j ? ", " : "", shape, n);
    *total += (size_t)n;
    ++*blobs;
  }
  return ls->n_param_blobs > 0;
}

static void print_costs(const char *phase, const crema_net_summary *s) {
  char macs[32], act[32], caffe[32], batch[64] = "";
  crema_format_count(s->macs, macs, sizeof macs);
  crema_format_bytes(s->activation_bytes, act, sizeof act);
  crema_format_bytes(s->caffe_bytes, caffe, sizeof caffe);
  for (int i = 0; i < s->n_layers; i++)
    if (s->layers[i].n_tops && s->layers[i].tops[0].num_axes) {
      snprintf(batch, sizeof batch, ", batch %" PRId64, s->layers[i].tops[0].dim[0]);
      break;
    }
  printf("%s%smultiply-adds: %s per forward pass (%.0f)%s\n", phase, phase[0] ? " " : "", macs, s->macs,
         batch);
  printf(
      "%s%sactivation memory: %s in distinct blobs (%.0f bytes); Caffe's \"Memory required for data\": %.0f "
      "(%s)\n",
      phase, phase[0] ? " " : "", act, s->activation_bytes, s->caffe_bytes, caffe);
}

static bool has_phase_rules(const Crema__NetParameter *net) {
  for (size_t i = 0; i < net->n_layer; i++)
    if (net->layer[i]->n_include || net->layer[i]->n_exclude || net->layer[i]->has_phase) return true;
  return false;
}

static void print_net(const char *path, const Crema__NetParameter *net, bool binary, bool upgraded) {
  printf("%s: %s net%s, name \"%s\", %zu layers%s\n", path,
         binary ? "binary (caffemodel)" : "text (prototxt)", "", net->name ? net->name : "", net->n_layer,
         upgraded ? " (upgraded from a legacy format)" : "");
  int wn = 4, wt = 4, wb = 7, wo = 4;
  char buf[4096];
  for (size_t i = 0; i < net->n_layer; i++) {
    const Crema__LayerParameter *l = net->layer[i];
    int n = (int)strlen(l->name ? l->name : "");
    if (n > wn) wn = n;
    n = (int)strlen(l->type ? l->type : "");
    if (n > wt) wt = n;
    join(l->bottom, l->n_bottom, buf, sizeof buf);
    if ((int)strlen(buf) > wb) wb = (int)strlen(buf);
    join(l->top, l->n_top, buf, sizeof buf);
    if ((int)strlen(buf) > wo) wo = (int)strlen(buf);
  }
  if (wb > 40) wb = 40;
  if (wo > 40) wo = 40;
  built_nets built = {{NULL, NULL}, {{0}}};
  summaries sm;
  memset(&sm, 0, sizeof sm);
  const Crema__Phase phases[2] = {CREMA__PHASE__TEST, CREMA__PHASE__TRAIN};
  crema_error serr;
  for (int k = 0; k < 2; k++) sm.ok[k] = !crema_net_summarize(net, phases[k], &sm.s[k], &serr);
  const bool complete = sm.ok[0] && sm.ok[1] && sm.s[0].complete && sm.s[1].complete;
  const char *why = !sm.ok[0]           ? serr.msg
                    : !sm.s[0].complete ? sm.s[0].why
                    : !sm.ok[1]         ? serr.msg
                                        : sm.s[1].why;
  if (!binary && !complete) build_for_shapes(net, path, &built);
  printf("  %3s  %-*s  %-*s  %-*s  %-*s  %-16s  %8s  %s\n", "#", wn, "name", wt, "type", wb, "bottoms", wo,
         "tops", "output", "MACs", binary ? "parameters" : "settings; parameters");
  size_t total = 0, blobs = 0;
  for (size_t i = 0; i < net->n_layer; i++) {
    const Crema__LayerParameter *l = net->layer[i];
    char bottoms[1024], tops[1024], params[2048];
    join(l->bottom, l->n_bottom, bottoms, sizeof bottoms);
    join(l->top, l->n_top, tops, sizeof tops);
    params[0] = '\0';
    size_t k = 0;
    for (size_t b = 0; b < l->n_blobs && k < sizeof params; b++) {
      char shape[256];
      size_t count = blob_shape_text(l->blobs[b], shape, sizeof shape);
      k += (size_t)snprintf(params + k, sizeof params - k, "%s%s (%zu)", b ? ", " : "", shape, count);
      total += count;
      blobs++;
    }
    const crema_layer_summary *ls = find_summary(&sm, l);
    if (!l->n_blobs) {
      if (binary)
        snprintf(params, sizeof params, "-");
      else
        layer_settings(l, params, sizeof params);
      if (!params[0]) snprintf(params, sizeof params, "-");
      char shapes[1024];
      size_t used = strlen(params);
      bool have = false;
      if (!binary && complete && ls)
        have = summary_params(ls, shapes, sizeof shapes, &total, &blobs);
      else if (!binary)
        have = built_params(&built, l->name, shapes, sizeof shapes, &total, &blobs);
      if (have && used < sizeof params) snprintf(params + used, sizeof params - used, "; %s", shapes);
    }
    char out_shape[64] = "-", macs[32] = "-";
    if (ls && ls->n_tops) crema_blob_shape_text(&ls->tops[0], out_shape, sizeof out_shape);
    if (ls && ls->macs > 0) crema_format_count(ls->macs, macs, sizeof macs);
    printf("  %3zu  %-*s  %-*s  %-*s  %-*s  %-16s  %8s  %s\n", i, wn, l->name ? l->name : "", wt,
           l->type ? l->type : "", wb, bottoms, wo, tops, out_shape, macs, params);
  }
  if (binary || blobs) printf("total: %zu parameter blobs, %zu parameters\n", blobs, total);
  if (complete) {
    if (has_phase_rules(net)) {
      print_costs("TEST", &sm.s[0]);
      print_costs("TRAIN", &sm.s[1]);
    } else
      print_costs("", &sm.s[0]);
  } else {
    printf("(multiply-adds and activation memory not shown: %s)\n", why);
  }
  if (!binary && !complete && !built.net[0] && !built.net[1])
    printf("(parameter shapes not shown: the net could not be built here: %s)\n", built.why.msg);
  for (int k = 0; k < 2; k++)
    if (sm.ok[k]) crema_net_summary_free(&sm.s[k]);
  crema_net_free(built.net[0]);
  crema_net_free(built.net[1]);
}

static void print_solver(const char *path, const Crema__SolverParameter *s, bool upgraded) {
  printf("%s: solver%s\n", path, upgraded ? " (upgraded from solver_type)" : "");
  char num[40];
  if (s->net) printf("  net:               %s\n", s->net);
  if (s->train_net) printf("  train_net:         %s\n", s->train_net);
  for (size_t i = 0; i < s->n_test_net; i++) printf("  test_net:          %s\n", s->test_net[i]);
  if (s->net_param) printf("  net_param:         (inline net, %zu layers)\n", s->net_param->n_layer);
  printf("  type:              %s\n", s->type ? s->type : "SGD");
  printf("  base_lr:           %s\n", crema_format_float(s->base_lr, num, sizeof num));
  printf("  lr_policy:         %s", s->lr_policy ? s->lr_policy : "(not set)");
  if (s->has_gamma) printf("  gamma %s", crema_format_float(s->gamma, num, sizeof num));
  if (s->has_power) printf("  power %s", crema_format_float(s->power, num, sizeof num));
  if (s->has_stepsize) printf("  stepsize %d", s->stepsize);
  for (size_t i = 0; i < s->n_stepvalue; i++) printf("%s%d", i ? "," : "  stepvalue ", s->stepvalue[i]);
  printf("\n");
  if (s->has_momentum) printf("  momentum:          %s\n", crema_format_float(s->momentum, num, sizeof num));
  if (s->has_weight_decay)
    printf("  weight_decay:      %s (%s)\n", crema_format_float(s->weight_decay, num, sizeof num),
           s->regularization_type ? s->regularization_type : "L2");
  printf("  max_iter:          %d\n", s->max_iter);
  if (s->has_iter_size) printf("  iter_size:         %d\n", s->iter_size);
  if (s->n_test_iter || s->has_test_interval) {
    printf("  test:              every %d iterations,", s->test_interval);
    for (size_t i = 0; i < s->n_test_iter; i++) printf(" %d", s->test_iter[i]);
    printf(" test iterations\n");
  }
  if (s->has_display) printf("  display:           every %d iterations\n", s->display);
  if (s->has_snapshot || s->snapshot_prefix)
    printf("  snapshot:          every %d iterations to %s\n", s->snapshot,
           s->snapshot_prefix ? s->snapshot_prefix : "(no prefix)");
  if (s->has_solver_mode) printf("  solver_mode:       %s\n", s->solver_mode == 0 ? "CPU" : "GPU");
  if (s->has_random_seed) printf("  random_seed:       %" PRId64 "\n", s->random_seed);
  if (s->has_clip_gradients)
    printf("  clip_gradients:    %s\n", crema_format_float(s->clip_gradients, num, sizeof num));
  if (s->has_warmup_iter) printf("  warmup_iter:       %d\n", s->warmup_iter);
  if (s->early_stopping && s->early_stopping->metric)
    printf("  early_stopping:    %s, patience %d\n", s->early_stopping->metric, s->early_stopping->patience);
}

static void print_blob(const char *path, const Crema__BlobProto *b) {
  char shape[256];
  size_t count = blob_shape_text(b, shape, sizeof shape);
  size_t n = blob_values(b);
  printf("%s: binaryproto blob, shape %s (%zu values%s)\n", path, shape, n, b->n_data ? "" : ", double");
  if (!n) return;
  double lo = INFINITY, hi = -INFINITY, sum = 0;
  for (size_t i = 0; i < n; i++) {
    double v = blob_value(b, i);
    if (v < lo) lo = v;
    if (v > hi) hi = v;
    sum += v;
  }
  printf("  min %g, max %g, mean %g\n", lo, hi, sum / (double)n);
  int num_axes = 0, s[CREMA_MAX_AXES];
  crema_error err;
  if (n == count && !crema_blob_shape_from_proto(b, &num_axes, s, &err) && num_axes == 4 && s[0] == 1 &&
      s[1] > 0 && s[1] <= 16) {
    size_t plane = (size_t)s[2] * (size_t)s[3];
    printf("  per-channel mean (a mean file: %d channels, %dx%d):", s[1], s[2], s[3]);
    for (int c = 0; c < s[1]; c++) {
      double cs = 0;
      for (size_t i = 0; i < plane; i++) cs += blob_value(b, (size_t)c * plane + i);
      printf(" %.4f", plane ? cs / (double)plane : 0.0);
    }
    printf("\n");
  }
}

static void print_state(const char *path, const Crema__SolverState *st) {
  printf("%s: solverstate, iteration %d\n", path, st->iter);
  printf("  learned_net:       %s\n", st->learned_net ? st->learned_net : "(none)");
  if (st->has_current_step) printf("  current_step:      %d\n", st->current_step);
  size_t total = 0;
  printf("  history:           %zu blobs", st->n_history);
  for (size_t i = 0; i < st->n_history; i++) {
    char shape[256];
    total += blob_shape_text(st->history[i], shape, sizeof shape);
    printf("%s%s", i ? ", " : ": ", shape);
  }
  printf(" (%zu values)\n", total);
  if (st->solver_type) printf("  solver_type:       %s (crema)\n", st->solver_type);
  if (st->n_rng_state) printf("  rng states:        %zu (crema)\n", st->n_rng_state);
  if (st->n_reader_position) {
    printf("  reader positions: ");
    for (size_t i = 0; i < st->n_reader_position; i++) printf(" %" PRIu64, st->reader_position[i]);
    printf(" (crema)\n");
  }
  if (st->n_loss_window) printf("  loss window:       %zu values (crema)\n", st->n_loss_window);
  if (st->has_best_metric)
    printf("  early stopping:    best %g at iteration %d, %d rounds without improvement (crema)\n",
           (double)st->best_metric, st->best_iter, st->rounds_without_improvement);
}

/* Reads path as the kind it holds. Text files: net or solver, whichever parses (a net when
 * both do). Binary files: the extension's kind first, then net, solverstate, blob, each
 * accepted only if it parses and holds what that kind must hold. */
static int load_any(const char *path, file_kind want, file_kind *kind, bool *binary, ProtobufCMessage **out,
                    crema_error *err) {
  *out = NULL;
  *binary = !crema_path_is_text(path) && !crema_file_looks_like_text(path);
  if (crema_hdf5_is_h5_name(path)) { /* Caffe's HDF5 snapshots: .caffemodel.h5, .solverstate.h5 */
    const bool state = want == KIND_STATE || (want == KIND_UNKNOWN && strstr(path, ".solverstate"));
    *kind = state ? KIND_STATE : KIND_NET;
    return state ? crema_hdf5_read_solverstate(path, (Crema__SolverState **)out, err)
                 : crema_hdf5_read_net(path, (Crema__NetParameter **)out, err);
  }
  if (!*binary) {
    crema_error net_err, solver_err;
    if ((want == KIND_UNKNOWN || want == KIND_NET) &&
        !crema_read_text_message(path, &crema__net_parameter__descriptor, out, &net_err)) {
      *kind = KIND_NET;
      return 0;
    }
    if ((want == KIND_UNKNOWN || want == KIND_SOLVER) &&
        !crema_read_text_message(path, &crema__solver_parameter__descriptor, out, &solver_err)) {
      *kind = KIND_SOLVER;
      return 0;
    }
    if (want == KIND_SOLVER) {
      *err = solver_err;
      return -1;
    }
    if (want == KIND_NET) {
      *err = net_err;
      return -1;
    }
    /* Neither: report the error of the kind the file most looks like. */
    char *text = NULL;
    size_t len = 0;
    bool solverish = false;
    if (!crema_read_file(path, &text, &len, err))
      solverish = strstr(text, "base_lr") || strstr(text, "max_iter") || strstr(text, "lr_policy");
    free(text);
    *err = solverish ? solver_err : net_err;
    return -1;
  }
  file_kind order[4] = {KIND_NET, KIND_STATE, KIND_BLOB, KIND_SOLVER};
  if (has_suffix(path, ".solverstate")) order[0] = KIND_STATE, order[1] = KIND_NET;
  if (has_suffix(path, ".binaryproto")) order[0] = KIND_BLOB, order[2] = KIND_NET;
  crema_error first_err = {{0}};
  for (int i = 0; i < 4; i++) {
    file_kind k = want != KIND_UNKNOWN ? want : order[i];
    const ProtobufCMessageDescriptor *d = k == KIND_NET     ? &crema__net_parameter__descriptor
                                          : k == KIND_STATE ? &crema__solver_state__descriptor
                                          : k == KIND_BLOB  ? &crema__blob_proto__descriptor
                                                            : &crema__solver_parameter__descriptor;
    ProtobufCMessage *m = NULL;
    crema_error e;
    if (crema_read_binary_message(path, d, &m, &e)) {
      if (i == 0) first_err = e;
      if (want != KIND_UNKNOWN) break;
      continue;
    }
    bool plausible = true;
    if (want == KIND_UNKNOWN) {
      if (k == KIND_NET) {
        const Crema__NetParameter *n = (const Crema__NetParameter *)m;
        plausible = n->n_layer > 0 || n->n_layers > 0;
      } else if (k == KIND_STATE) {
        const Crema__SolverState *s = (const Crema__SolverState *)m;
        plausible = s->has_iter || s->n_history > 0 || s->learned_net;
      } else if (k == KIND_BLOB) {
        const Crema__BlobProto *b = (const Crema__BlobProto *)m;
        plausible = b->shape || b->n_data || b->n_double_data || b->has_num;
      } else {
        const Crema__SolverParameter *s = (const Crema__SolverParameter *)m;
        plausible = s->has_base_lr || s->net || s->train_net;
      }
    }
    if (plausible) {
      *kind = k;
      *out = m;
      return 0;
    }
    crema_message_free(m);
  }
  if (first_err.msg[0]) {
    *err = first_err;
    return -1;
  }
  return crema_fail(err, "%s: not a Caffe net, solver, caffemodel, binaryproto or solverstate file", path);
}

static const char USAGE[] =
    "usage: crema info FILE [--type=KIND]\n\n"
    "Says what FILE is -- net prototxt, solver prototxt, caffemodel, binaryproto (mean file)\n"
    "or solverstate -- and summarises it: a net's layers with bottoms, tops and parameter\n"
    "shapes; a solver's settings; a blob's shape and per-channel means; a solverstate's\n"
    "iteration and history.\n\n";

int crema_cmd_info(int argc, char **argv) {
  const char *type = "";
  crema_flag flags[] = {
      {"type", CREMA_FLAG_STRING, &type,
       "read FILE as net, solver, binaryproto or solverstate (default: detect)", 0},
  };
  char *pos[1];
  int n_pos = 0;
  int rc =
      crema_flags_command(argc, argv, USAGE, flags, (int)(sizeof flags / sizeof flags[0]), pos, 1, 1, &n_pos);
  if (rc >= 0) return rc;
  crema_error err = {{0}};
  file_kind want = KIND_UNKNOWN;
  if (*type) {
    for (int k = KIND_NET; k <= KIND_STATE; k++)
      if (!strcmp(type, KIND_NAMES[k])) want = (file_kind)k;
    if (!strcmp(type, "caffemodel")) want = KIND_NET;
    if (want == KIND_UNKNOWN) {
      fprintf(stderr, "error: --type=%s: valid types are net, caffemodel, solver, binaryproto, solverstate\n",
              type);
      return 2;
    }
  }
  const char *path = pos[0];
  file_kind kind = KIND_UNKNOWN;
  bool binary = false;
  ProtobufCMessage *m = NULL;
  if (load_any(path, want, &kind, &binary, &m, &err)) {
    fprintf(stderr, "error: %s\n", err.msg);
    return 1;
  }
  bool changed = false;
  switch (kind) {
  case KIND_NET: {
    Crema__NetParameter *net = (Crema__NetParameter *)m;
    if (crema_upgrade_net(net, path, &changed, &err)) {
      fprintf(stderr, "error: %s\n", err.msg);
      crema_message_free(m);
      return 1;
    }
    print_net(path, net, binary, changed);
    break;
  }
  case KIND_SOLVER: {
    Crema__SolverParameter *s = (Crema__SolverParameter *)m;
    if (crema_upgrade_solver(s, &changed, &err)) {
      fprintf(stderr, "error: %s: %s\n", path, err.msg);
      crema_message_free(m);
      return 1;
    }
    print_solver(path, s, changed);
    break;
  }
  case KIND_BLOB: print_blob(path, (const Crema__BlobProto *)m); break;
  case KIND_STATE: print_state(path, (const Crema__SolverState *)m); break;
  case KIND_UNKNOWN: break;
  }
  crema_message_free(m);
  return 0;
}
