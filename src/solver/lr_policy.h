/* lr_policy.h -- learning-rate schedules with Caffe's formulas (Solver::GetLearningRate),
 * plus crema's cosine policy and linear warmup.
 *
 *   fixed      base_lr
 *   step       base_lr * gamma ^ floor(iter / stepsize)
 *   exp        base_lr * gamma ^ iter
 *   inv        base_lr * (1 + gamma * iter) ^ (-power)
 *   multistep  base_lr * gamma ^ current_step, current_step += 1 when iter reaches the next
 *              stepvalue (stateful, one step per call, as in Caffe)
 *   poly       base_lr * (1 - iter / max_iter) ^ power
 *   sigmoid    base_lr / (1 + exp(-gamma * (iter - stepsize)))
 *   cosine     min_lr + (base_lr - min_lr) * (1 + cos(pi * iter / max_iter)) / 2   (crema)
 * Warmup (crema): for iter < warmup_iter the rate is multiplied by
 *   warmup_start_factor + (1 - warmup_start_factor) * iter / warmup_iter. */
#ifndef CREMA_SOLVER_LR_POLICY_H
#define CREMA_SOLVER_LR_POLICY_H

#include "base/error.h"
#include "proto/crema.pb-c.h"

typedef enum {
  CREMA_LR_FIXED,
  CREMA_LR_STEP,
  CREMA_LR_EXP,
  CREMA_LR_INV,
  CREMA_LR_MULTISTEP,
  CREMA_LR_POLY,
  CREMA_LR_SIGMOID,
  CREMA_LR_COSINE,
} crema_lr_kind;

typedef struct crema_lr_policy {
  crema_lr_kind kind;
  double base_lr, gamma, power, min_lr;
  int stepsize, max_iter;
  const int *stepvalue; /* borrowed from the SolverParameter */
  int n_stepvalue;
  int warmup_iter;
  double warmup_start_factor;
} crema_lr_policy;

/* Reads and checks the schedule's fields from s (which must outlive p: stepvalue is
 * borrowed). Unknown policy names and missing/invalid fields (stepsize for step/sigmoid,
 * max_iter for poly/cosine, increasing stepvalues) are errors naming the field. */
int crema_lr_policy_init(crema_lr_policy *p, const Crema__SolverParameter *s, crema_error *err);

/* The rate at `iter`. *current_step is the solver's step counter (saved in solverstates):
 * set for step, advanced by multistep, untouched otherwise. */
float crema_lr_rate(const crema_lr_policy *p, int iter, int *current_step);

/* The policy's name as in the prototxt. */
const char *crema_lr_policy_name(crema_lr_kind kind);

#endif
