#include "support/layer_run.h"

#include <check.h>
#include <string.h>

#include "support/textproto.h"

int run_try(run *r, const char *text, int n_bottom, crema_blob **bottom, int n_top, crema_error *err) {
  memset(r, 0, sizeof *r);
  ck_assert_msg(n_top >= 0 && n_top <= RUN_MAX_TOPS, "run_try: %d tops, at most %d", n_top, RUN_MAX_TOPS);
  r->p = test_layer_param(text);
  r->n_bottom = n_bottom;
  r->n_top = n_top;
  r->bottom = bottom;
  for (int t = 0; t < n_top; t++) r->top[t] = crema_blob_new();
  if (crema_layer_create(r->p, CREMA__PHASE__TRAIN, 42, &r->l, err)) return -1;
  return crema_layer_setup(r->l, n_bottom, bottom, n_top, r->top, err);
}

void run_setup(run *r, const char *text, int n_bottom, crema_blob **bottom, int n_top) {
  crema_error err;
  ck_assert_msg(run_try(r, text, n_bottom, bottom, n_top, &err) == 0, "%s", err.msg);
}

void run_forward(run *r) {
  crema_error err;
  ck_assert_msg(crema_layer_forward(r->l, r->bottom, r->top, &err) == 0, "%s", err.msg);
}

void run_free(run *r) {
  crema_layer_free(r->l);
  for (int t = 0; t < r->n_top; t++) crema_blob_free(r->top[t]);
  crema_message_free(r->p);
}

crema_blob *blob_of(int num_axes, const int *shape) {
  crema_blob *b = crema_blob_new();
  crema_error err;
  ck_assert_msg(crema_blob_reshape(b, num_axes, shape, &err) == 0, "%s", err.msg);
  return b;
}

crema_blob *blob_vals(int num_axes, const int *shape, const float *v) {
  crema_blob *b = blob_of(num_axes, shape);
  memcpy(b->data, v, b->count * sizeof(float));
  return b;
}

void free_blobs(int n, crema_blob **b) {
  for (int i = 0; i < n; i++) crema_blob_free(b[i]);
}
