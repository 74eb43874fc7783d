#include "solver/lr_policy.h"

#include <math.h>
#include <string.h>

#include "base/log.h"
#include "base/mem.h"

static const double PI = 3.14159265358979323846;

static const char *const NAMES[] = {"fixed", "step", "exp", "inv", "multistep", "poly", "sigmoid", "cosine"};
_Static_assert(CREMA_ARRAY_LEN(NAMES) == CREMA_LR_COSINE + 1, "lr policy names out of step with the enum");

const char *crema_lr_policy_name(crema_lr_kind kind) {
  return (unsigned)kind < CREMA_ARRAY_LEN(NAMES) ? NAMES[kind] : "?";
}

int crema_lr_policy_init(crema_lr_policy *p, const Crema__SolverParameter *s, crema_error *err) {
  memset(p, 0, sizeof *p);
  const char *name = s->lr_policy;
  if (!name || !*name)
    return crema_fail(err, "solver: lr_policy is missing; use one of fixed, step, exp, inv, multistep, poly, "
                           "sigmoid, cosine");
  int kind = -1;
  for (size_t i = 0; i < CREMA_ARRAY_LEN(NAMES); i++)
    if (!strcmp(NAMES[i], name)) kind = (int)i;
  if (kind < 0)
    return crema_fail(err,
                      "solver: unknown lr_policy \"%s\"; use one of fixed, step, exp, inv, multistep, "
                      "poly, sigmoid, cosine",
                      name);
  p->kind = (crema_lr_kind)kind;
  p->base_lr = s->base_lr;
  p->gamma = s->gamma;
  p->power = s->power;
  p->min_lr = s->min_lr;
  p->stepsize = s->stepsize;
  p->max_iter = s->max_iter;
  p->stepvalue = s->stepvalue;
  p->n_stepvalue = (int)s->n_stepvalue;
  p->warmup_iter = s->warmup_iter;
  p->warmup_start_factor = s->warmup_start_factor;
  if ((p->kind == CREMA_LR_STEP) && p->stepsize <= 0)
    return crema_fail(err, "solver: lr_policy \"step\" needs a positive stepsize (got %d)", p->stepsize);
  if ((p->kind == CREMA_LR_POLY || p->kind == CREMA_LR_COSINE) && p->max_iter <= 0)
    return crema_fail(err, "solver: lr_policy \"%s\" needs a positive max_iter (got %d)", name, p->max_iter);
  for (int i = 1; i < p->n_stepvalue; i++)
    if (p->stepvalue[i] <= p->stepvalue[i - 1])
      return crema_fail(err, "solver: stepvalue must increase (stepvalue %d = %d follows %d)", i,
                        p->stepvalue[i], p->stepvalue[i - 1]);
  if (p->warmup_iter < 0) return crema_fail(err, "solver: warmup_iter must be >= 0 (got %d)", p->warmup_iter);
  return 0;
}

float crema_lr_rate(const crema_lr_policy *p, int iter, int *current_step) {
  double rate = p->base_lr;
  switch (p->kind) {
  case CREMA_LR_FIXED: break;
  case CREMA_LR_STEP:
    *current_step = iter / p->stepsize;
    rate = p->base_lr * pow(p->gamma, *current_step);
    break;
  case CREMA_LR_EXP: rate = p->base_lr * pow(p->gamma, iter); break;
  case CREMA_LR_INV: rate = p->base_lr * pow(1.0 + p->gamma * iter, -p->power); break;
  case CREMA_LR_MULTISTEP:
    if (*current_step < p->n_stepvalue && iter >= p->stepvalue[*current_step]) {
      (*current_step)++;
      CREMA_INFO("MultiStep Status: Iteration %d, step = %d", iter, *current_step);
    }
    rate = p->base_lr * pow(p->gamma, *current_step);
    break;
  case CREMA_LR_POLY: rate = p->base_lr * pow(1.0 - (double)iter / p->max_iter, p->power); break;
  case CREMA_LR_SIGMOID:
    rate = p->base_lr * (1.0 / (1.0 + exp(-p->gamma * (double)(iter - p->stepsize))));
    break;
  case CREMA_LR_COSINE: {
    const double t = iter > p->max_iter ? 1.0 : (double)iter / p->max_iter;
    rate = p->min_lr + (p->base_lr - p->min_lr) * 0.5 * (1.0 + cos(PI * t));
    break;
  }
  }
  if (p->warmup_iter > 0 && iter < p->warmup_iter)
    rate *= p->warmup_start_factor + (1.0 - p->warmup_start_factor) * (double)iter / p->warmup_iter;
  return (float)rate;
}
