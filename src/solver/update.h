/* update.h -- the update rules (SGD, Nesterov, AdaGrad, RMSProp, AdaDelta, Adam) as pure
 * functions over flat float arrays, with Caffe's exact semantics (BVLC sgd_solvers).
 *
 * One solver step, per learnable parameter of n elements, is:
 *   crema_update_normalize   diff /= iter_size                       (when iter_size > 1)
 *   crema_update_regularize  diff += decay * data  (L2)  or  decay * sign(data)  (L1)
 *   rule->compute            diff becomes the update value, history updated
 *   data -= diff             (crema_update_apply)
 * preceded once per step by crema_update_clip_scale over all parameters together.
 * local_rate = lr * lr_mult and decay = weight_decay * decay_mult are the caller's.
 *
 * History: rule->n_history arrays of n floats per parameter (zero at the start), in Caffe's
 * order: a solverstate stores all parameters' first history, then (AdaDelta, Adam) all
 * parameters' second history. Nothing here allocates. The steps above are serial loops over
 * the n elements they are given; crema_update_step runs them all on one cache-sized block of
 * a parameter after another, the blocks over OpenMP's threads. Every step is element-wise, so
 * results do not depend on the thread count. */
#ifndef CREMA_SOLVER_UPDATE_H
#define CREMA_SOLVER_UPDATE_H

#include <stddef.h>

/* Hyper-parameters of the rules (SolverParameter names). */
typedef struct crema_update_hparams {
  float momentum;  /* SGD, Nesterov; AdaDelta's decay; Adam's beta1 */
  float momentum2; /* Adam's beta2 */
  float delta;     /* AdaGrad, RMSProp, AdaDelta, Adam epsilon */
  float rms_decay; /* RMSProp */
} crema_update_hparams;

typedef struct crema_update_rule {
  const char *type; /* SolverParameter.type: "SGD", "Nesterov", ... */
  int n_history;    /* history arrays per parameter: 1, or 2 for AdaDelta and Adam */
  /* Turns diff (the regularized gradient) into the value to subtract from data, updating
   * hist[0..n_history). iter is the 0-based iteration being applied (Adam's t = iter + 1). */
  void (*compute)(size_t n, float *diff, float *const *hist, float local_rate, const crema_update_hparams *hp,
                  int iter);
} crema_update_rule;

extern const crema_update_rule crema_update_sgd;
extern const crema_update_rule crema_update_nesterov;
extern const crema_update_rule crema_update_adagrad;
extern const crema_update_rule crema_update_rmsprop;
extern const crema_update_rule crema_update_adadelta;
extern const crema_update_rule crema_update_adam;

/* The rule for a SolverParameter.type name (case as Caffe spells it); NULL when unknown. */
const crema_update_rule *crema_update_rule_lookup(const char *type);
/* "SGD, Nesterov, ..." for error messages. */
const char *crema_update_rule_names(void);

typedef enum { CREMA_REG_L2 = 0, CREMA_REG_L1 = 1 } crema_regularization;

/* diff *= 1 / iter_size (nothing when iter_size <= 1). */
void crema_update_normalize(size_t n, float *diff, int iter_size);
/* Adds the weight-decay term; nothing when decay == 0. */
void crema_update_regularize(size_t n, const float *data, float *diff, float decay,
                             crema_regularization type);
/* Gradient clipping: given the sum of squares of ALL parameters' diffs, the factor to scale
 * every diff by (1 when clip < 0, Caffe's "off", or when the L2 norm is within clip). */
float crema_update_clip_scale(double sumsq, float clip);
/* data -= diff. */
void crema_update_apply(size_t n, float *data, const float *diff);

/* One learnable parameter as the step below sees it (views into the caller's memory). */
typedef struct crema_update_param {
  float *data, *diff;
  size_t n;
  float lr_mult, decay_mult;
  float *hist[2]; /* rule->n_history arrays of n floats */
} crema_update_param;

typedef struct crema_update_config {
  const crema_update_rule *rule;
  crema_update_hparams hp;
  float weight_decay;
  crema_regularization regularization;
  float clip_gradients; /* < 0: off */
  int iter_size;
} crema_update_config;

/* One whole solver update (Caffe's ApplyUpdate after the rate is known): clip over all
 * parameters, then per parameter normalize, regularize, compute, apply. Parameters with
 * lr_mult 0 are frozen: skipped entirely. *clip_scale (may be NULL) gets the clipping factor
 * applied (1 = none). sumsq is crema_update_grad_sumsq of the same parameters: the sum of
 * squares of all raw diffs, computed first so the caller can stop on a non-finite gradient
 * before anything is updated. */
double crema_update_grad_sumsq(const crema_update_param *p, int n_params);
void crema_update_step(const crema_update_config *c, crema_update_param *p, int n_params, double sumsq,
                       float rate, int iter, float *clip_scale);

#endif
