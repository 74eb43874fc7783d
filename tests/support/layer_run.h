/* layer_run.h -- one layer on hand-made bottoms, for layer test suites.
 *
 *   run r;
 *   run_setup(&r, "name: 'c' type: 'Concat'", 2, bottoms, 1);
 *   run_forward(&r);       ... check r.top[0] ...
 *   run_free(&r);
 *
 * Setup and forward failures fail the running Check test with the layer's message;
 * run_try returns them instead, for tests of error messages. */
#ifndef CREMA_TESTS_LAYER_RUN_H
#define CREMA_TESTS_LAYER_RUN_H

#include "layers/layer.h"

/* A layer set up (TRAIN phase, seed 42) on given bottoms with n_top fresh tops. */
enum { RUN_MAX_TOPS = 8 };
typedef struct run {
  Crema__LayerParameter *p;
  crema_layer *l;
  int n_bottom, n_top;
  crema_blob **bottom;
  crema_blob *top[RUN_MAX_TOPS];
} run;

int run_try(run *r, const char *text, int n_bottom, crema_blob **bottom, int n_top, crema_error *err);
void run_setup(run *r, const char *text, int n_bottom, crema_blob **bottom, int n_top);
void run_forward(run *r);
/* Frees the layer, its parameter message and the tops (not the caller's bottoms). */
void run_free(run *r);

/* A blob of the given shape (zero-filled); one filled with v's values; free n blobs. */
crema_blob *blob_of(int num_axes, const int *shape);
crema_blob *blob_vals(int num_axes, const int *shape, const float *v);
void free_blobs(int n, crema_blob **b);

#endif
