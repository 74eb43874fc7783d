/* solver.c -- the finetuning solver: crema's default recipe, or the user's solver adapted. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "proto/io.h"
#include "proto/textformat.h"
#include "recipe/edit.h"
#include "recipe/recipe.h"

static void free_strings(char **a, size_t *n) {
  for (size_t i = 0; i < *n; i++) free(a[i]);
  free(a);
  *n = 0;
}

/* Drops every net the base solver names (net files, inline nets, states). */
static void clear_nets(Crema__SolverParameter *s) {
  free(s->net);
  s->net = NULL;
  free(s->train_net);
  s->train_net = NULL;
  free_strings(s->test_net, &s->n_test_net);
  s->test_net = NULL;
  crema_message_free(s->net_param);
  s->net_param = NULL;
  crema_message_free(s->train_net_param);
  s->train_net_param = NULL;
  for (size_t i = 0; i < s->n_test_net_param; i++) crema_message_free(s->test_net_param[i]);
  free(s->test_net_param);
  s->test_net_param = NULL;
  s->n_test_net_param = 0;
  crema_message_free(s->train_state);
  s->train_state = NULL;
  for (size_t i = 0; i < s->n_test_state; i++) crema_message_free(s->test_state[i]);
  free(s->test_state);
  s->test_state = NULL;
  s->n_test_state = 0;
  free_strings(s->weights, &s->n_weights);
  s->weights = NULL;
  free(s->stepvalue);
  s->stepvalue = NULL;
  s->n_stepvalue = 0;
}

int crema_recipe_solver(const crema_recipe_solver_options *o, Crema__SolverParameter **out,
                        crema_error *err) {
  *out = NULL;
  if (!o->net || !o->snapshot_prefix) return crema_fail(err, "the solver needs a net and a snapshot prefix");
  if (o->max_iter <= 0 || o->test_iter <= 0 || o->test_interval <= 0 || o->display <= 0 || o->snapshot <= 0)
    return crema_fail(err, "max_iter, test_iter, test_interval, display and snapshot must be > 0");
  const char *schedule = o->schedule;
  if (!schedule) schedule = o->base && o->base->lr_policy ? o->base->lr_policy : "step";
  if (o->caffe && !strcmp(schedule, "cosine"))
    return crema_fail(
        err, "the cosine schedule is crema's own; BVLC Caffe does not have it (use step with --caffe)");
  if (strcmp(schedule, "step") && strcmp(schedule, "cosine") && !o->base)
    return crema_fail(err, "unknown schedule \"%s\"; use step or cosine", schedule);
  Crema__SolverParameter *s;
  if (o->base) {
    s = crema_message_copy(&o->base->base);
    if (!s) return crema_fail(err, "out of memory");
    clear_nets(s);
    const float base_lr = o->lr > 0 ? o->lr : (o->base->has_base_lr ? o->base->base_lr * 0.1f : 0.001f);
    s->has_base_lr = 1;
    s->base_lr = base_lr;
  } else {
    char text[512];
    snprintf(text, sizeof text,
             "base_lr: %.9g momentum: 0.9 weight_decay: 0.0005 type: \"SGD\" test_initialization: false",
             o->lr > 0 ? o->lr : 0.001);
    ProtobufCMessage *m = NULL;
    if (crema_text_parse(&crema__solver_parameter__descriptor, text, strlen(text), "(recipe solver)", &m,
                         err))
      return -1;
    s = (Crema__SolverParameter *)m;
  }
  if (recipe_set_string(&s->net, o->net, err) || recipe_set_string(&s->lr_policy, schedule, err) ||
      recipe_set_string(&s->snapshot_prefix, o->snapshot_prefix, err))
    goto fail;
  if (!strcmp(schedule, "step") && (!o->base || o->schedule)) {
    s->has_gamma = s->has_stepsize = 1;
    s->gamma = 0.1f;
    s->stepsize = o->max_iter * 3 / 4 > 0 ? o->max_iter * 3 / 4 : 1;
  }
  free(s->test_iter);
  if (!(s->test_iter = malloc(sizeof *s->test_iter))) {
    crema_fail(err, "out of memory");
    goto fail;
  }
  s->test_iter[0] = o->test_iter;
  s->n_test_iter = 1;
  s->has_test_interval = s->has_max_iter = s->has_display = s->has_snapshot = 1;
  s->test_interval = o->test_interval;
  s->max_iter = o->max_iter;
  s->display = o->display;
  s->snapshot = o->snapshot;
  s->has_solver_mode = 1;
  s->solver_mode = CREMA__SOLVER_PARAMETER__SOLVER_MODE__CPU;
  if (o->has_seed) {
    s->has_random_seed = 1;
    s->random_seed = o->seed;
  }
  if (o->patience > 0) {
    crema_message_free(s->early_stopping);
    ProtobufCMessage *m = NULL;
    char text[128];
    snprintf(text, sizeof text, "metric: \"accuracy\" mode: MAXIMIZE patience: %d", o->patience);
    if (crema_text_parse(&crema__early_stopping_parameter__descriptor, text, strlen(text), "(recipe)", &m,
                         err)) {
      s->early_stopping = NULL;
      goto fail;
    }
    s->early_stopping = (Crema__EarlyStoppingParameter *)m;
  }
  if (o->caffe) crema_recipe_strip_crema_fields(&s->base);
  *out = s;
  return 0;
fail:
  crema_message_free(s);
  return -1;
}
