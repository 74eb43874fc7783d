/* diagnostics.h -- what the layers are doing while a net trains, collected through the
 * solver's hooks (crema train --diagnostics, crema finetune):
 *  - per ReLU-family layer (ReLU, PReLU, ELU, RReLU): the fraction of outputs <= 0 (zeros for
 *    ReLU) averaged over the window, and the units -- channels of a (N, C, ...) top, or
 *    neurons of a (N, C) top -- that never fired (output > 0) for any sample during the whole
 *    window ("dead ReLUs");
 *  - per learnable parameter blob: the L2 norm of its gradient (the diff after backward,
 *    before weight decay and the update rule) and the ratio ||update|| / ||weights|| of the
 *    update the solver then applied.
 * Every `every` iterations (and at iteration 0) a table goes to the log and rows to a CSV:
 *   iteration,layer,blob,kind,zero_fraction,dead_units,units,grad_l2,weight_l2,update_ratio
 * (kind "activation" or "param"; empty cells where a column does not apply).
 *
 * Cost: nothing at all unless attached. Attached, one read pass over each ReLU-family top per
 * iteration and, at reporting iterations only, a copy of the weights and three norms per
 * parameter. All buffers are allocated when attaching; the training step allocates nothing.
 * Activations are read after the iteration's last forward and backward pass (with iter_size
 * > 1, the last one); a later in-place layer (e.g. Dropout after ReLU) has already written
 * into the blob, so its zeros count too.
 * The caller owns the collector and frees it with crema_diagnostics_free after the solver
 * has finished (the solver keeps pointers to it while it runs). */
#ifndef CREMA_REPORT_DIAGNOSTICS_H
#define CREMA_REPORT_DIAGNOSTICS_H

#include <stdbool.h>

#include "base/error.h"
#include "solver/solver.h"

typedef struct crema_diagnostics crema_diagnostics;

typedef struct crema_diagnostics_options {
  int every;            /* report every N iterations; <= 0: the solver's display (or 100) */
  const char *csv_path; /* NULL: <snapshot prefix>_diagnostics.csv */
  bool quiet;           /* no table in the log (the CSV is still written) */
  bool append;          /* a resumed run: keep the rows of an existing CSV with the same header */
} crema_diagnostics_options;

/* Attaches the collector to the solver's train net (one crema_solver_add_hooks call) and
 * creates the CSV (header written now, so an unwritable folder fails before training).
 * `opt` may be NULL for the defaults. */
int crema_diagnostics_attach(crema_solver *s, const crema_diagnostics_options *opt, crema_diagnostics **out,
                             crema_error *err);
/* Closes the CSV and frees the collector. NULL is fine. */
void crema_diagnostics_free(crema_diagnostics *d);
/* The CSV's path (owned by the collector). */
const char *crema_diagnostics_csv_path(const crema_diagnostics *d);
/* Rows written so far (for tests and summaries). */
int crema_diagnostics_rows(const crema_diagnostics *d);
/* Seconds spent inside the collector's hooks so far (its whole cost), and the iterations
 * it has seen. */
double crema_diagnostics_seconds(const crema_diagnostics *d, int *iterations);

#endif
