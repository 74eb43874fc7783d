/* model.c -- crema_model: load a net (file, string) with weights, list what it holds, set
 * inputs, reshape, run forward, read blobs and parameters. Classification helpers are in
 * classify.c, run folders in run_dir.c. */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "api/api_internal.h"
#include "proto/io.h"
#include "proto/textformat.h"
#include "proto/upgrade.h"

/* The seed of every layer's RNG and filler: fixed, so that a net without weights (fillers) and
 * TRAIN-phase Dropout give the same values in every run. */
#define API_NET_SEED 1

crema_status api_model_index_params(crema_model *m) {
  int n = 0;
  for (int li = 0; li < crema_net_num_layers(m->net); li++) n += crema_net_layer(m->net, li)->n_blobs;
  free(m->params);
  m->params = calloc((size_t)n + 1, sizeof *m->params);
  if (!m->params) return api_failf(CREMA_ERR_MEMORY, "out of memory listing %d parameter blobs", n);
  m->n_params = 0;
  for (int li = 0; li < crema_net_num_layers(m->net); li++)
    for (int b = 0; b < crema_net_layer(m->net, li)->n_blobs; b++)
      m->params[m->n_params++] = (api_param_ref){li, b};
  return CREMA_OK;
}

/* Checks that path can be opened for reading, so that a missing file is CREMA_ERR_IO and a
 * malformed one CREMA_ERR_FORMAT. */
static crema_status check_readable(const char *what, const char *path) {
  if (access(path, R_OK) != 0)
    return api_failf(CREMA_ERR_IO, "cannot read %s \"%s\": %s; check the path", what, path, strerror(errno));
  return CREMA_OK;
}

/* Re-reads the parameters folded into the convolutions (after they changed). */
static crema_status refold(crema_net *net) {
  crema_error err;
  crema_error_clear(&err);
  if (crema_net_fuse(net, true, &err)) return api_fail(CREMA_ERR_RUNTIME, &err);
  return CREMA_OK;
}

/* Copies a caffemodel's weights by layer name: unreadable = IO, unparsable = FORMAT, a layer
 * of another shape = SHAPE. */
static crema_status copy_weights(crema_net *net, const char *path) {
  crema_status s = check_readable("weights", path);
  if (s) return s;
  crema_error err;
  crema_error_clear(&err);
  Crema__NetParameter *w = NULL;
  if (crema_read_net_param(path, &w, &err)) return api_fail(CREMA_ERR_FORMAT, &err);
  int rc = crema_net_copy_trained_layers(net, w, &err);
  crema_message_free(w);
  if (rc) {
    crema_error_prefix(&err, "%s", path);
    return api_fail(CREMA_ERR_SHAPE, &err);
  }
  return CREMA_OK;
}

/* Builds the model from a parsed (and upgraded) message; msg stays the caller's. */
static crema_status build(const Crema__NetParameter *msg, const char *source, const char *weights,
                          crema_phase phase, crema_model **out) {
  if (phase != CREMA_PHASE_TEST && phase != CREMA_PHASE_TRAIN)
    return api_failf(CREMA_ERR_ARGUMENT, "phase must be CREMA_PHASE_TEST or CREMA_PHASE_TRAIN, got %d",
                     (int)phase);
  crema_model *m = calloc(1, sizeof *m);
  if (!m) return api_failf(CREMA_ERR_MEMORY, "out of memory creating a model");
  crema_net_options o = {0};
  o.phase = phase == CREMA_PHASE_TRAIN ? CREMA__PHASE__TRAIN : CREMA__PHASE__TEST;
  o.seed = API_NET_SEED;
  o.source = source;
  crema_error err;
  crema_error_clear(&err);
  if (crema_net_build(msg, &o, &m->net, &err)) {
    crema_model_free(m);
    return api_fail(CREMA_ERR_FORMAT, &err);
  }
  crema_status s = weights ? copy_weights(m->net, weights) : CREMA_OK;
  /* No backward ever runs here: ReLUs run inside the convolutions before them, and
   * BatchNorm and Scale fold into them (the same values to float rounding); folded once
   * the weights are in */
  if (!s && (!(m->params_lent = calloc(1, sizeof *m->params_lent)) || crema_net_fuse(m->net, true, &err))) {
    if (m->params_lent)
      crema_error_prefix(&err, "folding BatchNorm");
    else
      crema_fail(&err, "out of memory creating a model");
    s = api_fail(CREMA_ERR_MEMORY, &err);
  }
  if (!s) s = api_model_index_params(m);
  if (s) {
    crema_model_free(m);
    return s;
  }
  *out = m;
  return CREMA_OK;
}

/* Loads a net from a file, with optional weights. The caller frees with crema_model_free. */
crema_status crema_model_load(const char *prototxt_path, const char *weights_path, crema_phase phase,
                              crema_model **out) {
  if (!out) return api_failf(CREMA_ERR_ARGUMENT, "crema_model_load: out is NULL");
  *out = NULL;
  if (!prototxt_path) return api_failf(CREMA_ERR_ARGUMENT, "crema_model_load: prototxt_path is NULL");
  crema_status s = check_readable("net", prototxt_path);
  if (s) return s;
  crema_error err;
  crema_error_clear(&err);
  Crema__NetParameter *msg = NULL;
  if (crema_read_net_param(prototxt_path, &msg, &err)) return api_fail(CREMA_ERR_FORMAT, &err);
  s = build(msg, prototxt_path, weights_path, phase, out);
  crema_message_free(msg);
  return s;
}

/* Loads a net from prototxt text in memory (parsed, then upgraded from legacy forms). */
crema_status crema_model_load_string(const char *prototxt_text, const char *weights_path, crema_phase phase,
                                     crema_model **out) {
  if (!out) return api_failf(CREMA_ERR_ARGUMENT, "crema_model_load_string: out is NULL");
  *out = NULL;
  if (!prototxt_text) return api_failf(CREMA_ERR_ARGUMENT, "crema_model_load_string: prototxt_text is NULL");
  crema_error err;
  crema_error_clear(&err);
  ProtobufCMessage *msg = NULL;
  if (crema_text_parse(&crema__net_parameter__descriptor, prototxt_text, strlen(prototxt_text), "<string>",
                       &msg, &err))
    return api_fail(CREMA_ERR_FORMAT, &err);
  Crema__NetParameter *net = (Crema__NetParameter *)msg;
  if (crema_upgrade_net(net, "<string>", NULL, &err)) {
    crema_message_free(net);
    return api_fail(CREMA_ERR_FORMAT, &err);
  }
  crema_status s = build(net, "<string>", weights_path, phase, out);
  crema_message_free(net);
  return s;
}

crema_status crema_model_load_weights(crema_model *m, const char *caffemodel_path) {
  if (!m || !caffemodel_path) return api_failf(CREMA_ERR_ARGUMENT, "crema_model_load_weights: NULL argument");
  crema_status s = copy_weights(m->net, caffemodel_path);
  return s ? s : refold(m->net); /* the folded copies follow the new weights */
}

crema_status crema_model_save_weights(const crema_model *m, const char *caffemodel_path) {
  if (!m || !caffemodel_path) return api_failf(CREMA_ERR_ARGUMENT, "crema_model_save_weights: NULL argument");
  crema_error err;
  crema_error_clear(&err);
  if (crema_net_save_weights(m->net, caffemodel_path, &err)) return api_fail(CREMA_ERR_IO, &err);
  return CREMA_OK;
}

void crema_model_free(crema_model *m) {
  if (!m) return;
  crema_net_free(m->net);
  free(m->params);
  crema_preprocess_free(m->stored);
  crema_preprocess_free(m->pp);
  for (int i = 0; i < m->n_labels; i++) free(m->labels[i]);
  free(m->labels);
  free(m->params_lent);
  free(m);
}

/* ------------------------------------------------------------------ listing */

int crema_model_num_inputs(const crema_model *m) { return m ? crema_net_num_inputs(m->net) : 0; }
const char *crema_model_input_name(const crema_model *m, int i) {
  return m && i >= 0 && i < crema_net_num_inputs(m->net) ? crema_net_input_name(m->net, i) : NULL;
}
int crema_model_num_outputs(const crema_model *m) { return m ? crema_net_num_outputs(m->net) : 0; }
const char *crema_model_output_name(const crema_model *m, int i) {
  return m && i >= 0 && i < crema_net_num_outputs(m->net) ? crema_net_output_name(m->net, i) : NULL;
}
int crema_model_num_layers(const crema_model *m) { return m ? crema_net_num_layers(m->net) : 0; }
const char *crema_model_layer_name(const crema_model *m, int i) {
  return m && i >= 0 && i < crema_net_num_layers(m->net) ? crema_net_layer_name(m->net, i) : NULL;
}
const char *crema_model_layer_type(const crema_model *m, int i) {
  return m && i >= 0 && i < crema_net_num_layers(m->net) ? crema_net_layer(m->net, i)->ops->type : NULL;
}
int crema_model_num_blobs(const crema_model *m) { return m ? crema_net_num_blobs(m->net) : 0; }
const char *crema_model_blob_name(const crema_model *m, int i) {
  return m && i >= 0 && i < crema_net_num_blobs(m->net) ? crema_net_blob_name(m->net, i) : NULL;
}

/* The blob called name, or NULL with CREMA_ERR_NOT_FOUND recorded (listing the blobs). */
static crema_blob *find_blob(const crema_model *m, const char *name, const char *what) {
  crema_blob *b = crema_net_blob_by_name(m->net, name);
  if (b) return b;
  char names[512];
  size_t used = 0;
  names[0] = '\0';
  for (int i = 0; i < crema_net_num_blobs(m->net) && used < sizeof names; i++)
    used += (size_t)snprintf(names + used, sizeof names - used, "%s%s", i ? ", " : "",
                             crema_net_blob_name(m->net, i));
  api_failf(CREMA_ERR_NOT_FOUND, "%s: the net has no blob named \"%s\"; its blobs: %s", what, name, names);
  return NULL;
}

crema_status crema_model_blob_shape(const crema_model *m, const char *blob, int *ndim,
                                    int dims[CREMA_MAX_DIMS]) {
  if (!m || !blob || !ndim || !dims)
    return api_failf(CREMA_ERR_ARGUMENT, "crema_model_blob_shape: NULL argument");
  const crema_blob *b = find_blob(m, blob, "crema_model_blob_shape");
  if (!b) return CREMA_ERR_NOT_FOUND;
  *ndim = b->num_axes;
  for (int i = 0; i < b->num_axes; i++) dims[i] = b->shape[i];
  return CREMA_OK;
}

crema_status crema_model_blob_data(const crema_model *m, const char *blob, const float **data,
                                   size_t *count) {
  if (!m || !blob || !data || !count)
    return api_failf(CREMA_ERR_ARGUMENT, "crema_model_blob_data: NULL argument");
  const crema_blob *b = find_blob(m, blob, "crema_model_blob_data");
  if (!b) return CREMA_ERR_NOT_FOUND;
  *data = b->data;
  *count = b->count;
  return CREMA_OK;
}

int crema_model_num_params(const crema_model *m) { return m ? m->n_params : 0; }

crema_status crema_model_param(const crema_model *m, int i, crema_param_info *info) {
  if (!m || !info) return api_failf(CREMA_ERR_ARGUMENT, "crema_model_param: NULL argument");
  if (i < 0 || i >= m->n_params)
    return api_failf(CREMA_ERR_ARGUMENT, "crema_model_param: index %d out of range (the model has %d)", i,
                     m->n_params);
  const crema_layer *l = crema_net_layer(m->net, m->params[i].layer);
  const crema_blob *b = l->blobs[m->params[i].index];
  info->layer = crema_net_layer_name(m->net, m->params[i].layer);
  info->index = m->params[i].index;
  info->ndim = b->num_axes;
  for (int k = 0; k < b->num_axes; k++) info->dims[k] = b->shape[k];
  info->count = b->count;
  info->data = b->data;
  *m->params_lent = true; /* the caller may write through info->data from now on */
  return CREMA_OK;
}

/* ------------------------------------------------------------------ inputs, forward */

/* Index of the input called name, or -1 with CREMA_ERR_NOT_FOUND recorded. */
static int find_input(const crema_model *m, const char *name, const char *what) {
  for (int i = 0; i < crema_net_num_inputs(m->net); i++)
    if (!strcmp(crema_net_input_name(m->net, i), name)) return i;
  char names[512];
  size_t used = 0;
  names[0] = '\0';
  for (int i = 0; i < crema_net_num_inputs(m->net) && used < sizeof names; i++)
    used += (size_t)snprintf(names + used, sizeof names - used, "%s%s", i ? ", " : "",
                             crema_net_input_name(m->net, i));
  api_failf(CREMA_ERR_NOT_FOUND, "%s: the net has no input named \"%s\"; its inputs (Input layer tops): %s",
            what, name, used ? names : "(none)");
  return -1;
}

/* Reshapes; when a layer refuses the new shape, the old one is put back so the model stays
 * usable. */
crema_status crema_model_reshape_input(crema_model *m, const char *input, int ndim, const int *dims) {
  if (!m || !input || !dims) return api_failf(CREMA_ERR_ARGUMENT, "crema_model_reshape_input: NULL argument");
  if (ndim < 0 || ndim > CREMA_MAX_DIMS)
    return api_failf(CREMA_ERR_ARGUMENT, "crema_model_reshape_input: ndim %d outside 0..%d", ndim,
                     CREMA_MAX_DIMS);
  int i = find_input(m, input, "crema_model_reshape_input");
  if (i < 0) return CREMA_ERR_NOT_FOUND;
  crema_blob *b = crema_net_input(m->net, i);
  int old_n = b->num_axes, old[CREMA_MAX_DIMS];
  memcpy(old, b->shape, sizeof old);
  crema_error err;
  crema_error_clear(&err);
  if (crema_blob_reshape(b, ndim, dims, &err)) return api_fail(CREMA_ERR_SHAPE, &err);
  if (crema_net_reshape(m->net, &err)) {
    crema_error_prefix(&err, "input %s cannot take the new shape", input);
    crema_error ignored;
    if (crema_blob_reshape(b, old_n, old, &ignored) || crema_net_reshape(m->net, &ignored))
      crema_error_prefix(&err, "the model could not be restored to its previous shape either; free it");
    return api_fail(CREMA_ERR_SHAPE, &err);
  }
  return CREMA_OK;
}

crema_status crema_model_set_input(crema_model *m, const char *input, const float *data, size_t count) {
  if (!m || !input || !data) return api_failf(CREMA_ERR_ARGUMENT, "crema_model_set_input: NULL argument");
  int i = find_input(m, input, "crema_model_set_input");
  if (i < 0) return CREMA_ERR_NOT_FOUND;
  crema_blob *b = crema_net_input(m->net, i);
  if (count != b->count) {
    char s[128];
    return api_failf(
        CREMA_ERR_SHAPE,
        "crema_model_set_input: input %s has shape %s but %zu values were given; reshape it first "
        "with crema_model_reshape_input",
        input, crema_blob_shape_string(b, s, sizeof s), count);
  }
  memcpy(b->data, data, count * sizeof(float));
  return CREMA_OK;
}

crema_status crema_model_forward(crema_model *m) {
  if (!m) return api_failf(CREMA_ERR_ARGUMENT, "crema_model_forward: model is NULL");
  crema_status s = *m->params_lent ? refold(m->net) : CREMA_OK;
  if (s) return s;
  crema_error err;
  crema_error_clear(&err);
  if (crema_net_forward(m->net, NULL, &err)) return api_fail(CREMA_ERR_RUNTIME, &err);
  return CREMA_OK;
}

crema_status crema_model_forward_to(crema_model *m, const char *name) {
  if (!m || !name) return api_failf(CREMA_ERR_ARGUMENT, "crema_model_forward_to: NULL argument");
  int end = crema_net_layer_index(m->net, name);
  if (end < 0) {
    int blob = -1;
    for (int i = 0; i < crema_net_num_blobs(m->net); i++)
      if (!strcmp(crema_net_blob_name(m->net, i), name)) blob = i;
    if (blob < 0)
      return api_failf(CREMA_ERR_NOT_FOUND,
                       "crema_model_forward_to: the net has no layer or blob named \"%s\"", name);
    for (int li = 0; li < crema_net_num_layers(m->net); li++) {
      const int *tops;
      int nt = crema_net_layer_tops(m->net, li, &tops);
      for (int t = 0; t < nt; t++)
        if (tops[t] == blob) end = li;
    }
    if (end < 0)
      return api_failf(CREMA_ERR_NOT_FOUND, "crema_model_forward_to: no layer writes blob \"%s\"", name);
  }
  crema_status s = *m->params_lent ? refold(m->net) : CREMA_OK;
  if (s) return s;
  crema_error err;
  crema_error_clear(&err);
  if (crema_net_forward_from_to(m->net, 0, end, &err)) return api_fail(CREMA_ERR_RUNTIME, &err);
  return CREMA_OK;
}
