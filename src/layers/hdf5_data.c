/* hdf5_data.c -- Caffe's "HDF5Data": batches from the datasets of HDF5 files.
 *
 * hdf5_data_param.source is a text file listing .h5 files, one per line (a relative path
 * that does not exist as written is looked up beside the list). Every top reads the dataset
 * of the same name, converted to float; within a file all datasets have the same number of
 * rows (first axis), and top k is (batch_size, dataset k's shape[1..]). Rows are handed out
 * in order, file after file, looping around at the end, as Caffe does. With `shuffle`, the
 * file order is permuted at each pass over the list and the rows of a file each time it is
 * (re)started. The permutations are drawn from a seed taken from the layer's RNG at setup
 * and the pass number, so the position (rows handed out) determines everything after it and
 * resume is exact. Needs crema built with HDF5. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "layers/layer.h"
#include "proto/hdf5_io.h"

typedef struct hdf5_file_data {
  int num_axes, shape[CREMA_HDF5_MAX_AXES];
  float *data;
  size_t row_size;
} hdf5_file_data;

typedef struct hdf5_data_state {
  char **files;
  int n_files, batch;
  bool shuffle;
  uint64_t seed;
  int *file_perm; /* order of the files in this pass */
  int *row_perm;  /* order of the rows of the current file */
  int rows;       /* of the current file */
  int file_at;    /* index into file_perm */
  int row_at;     /* rows of the current file handed out */
  uint64_t list_pass, file_starts, position;
  hdf5_file_data *cur; /* one per top */
} hdf5_data_state;

static void shuffle_ints(int *v, int n, uint64_t seed, uint64_t stream) {
  crema_rng r;
  crema_rng_seed(&r, seed, stream);
  for (int i = n - 1; i > 0; i--) {
    const int j = (int)crema_rng_below(&r, (uint32_t)i + 1);
    const int t = v[i];
    v[i] = v[j];
    v[j] = t;
  }
}

static void free_current(crema_layer *l, hdf5_data_state *s) {
  if (!s->cur) return;
  for (int k = 0; k < l->n_top; k++) {
    free(s->cur[k].data);
    s->cur[k].data = NULL;
  }
}

/* Loads file_perm[file_at] and starts its rows. */
static int load_current(crema_layer *l, hdf5_data_state *s, crema_error *err) {
  const char *path = s->files[s->file_perm[s->file_at]];
  free_current(l, s);
  int rows = -1;
  for (int k = 0; k < l->n_top; k++) {
    hdf5_file_data *d = &s->cur[k];
    const char *name = l->param->top[k];
    if (crema_hdf5_read_floats(path, name, &d->num_axes, d->shape, &d->data, err)) return -1;
    if (d->num_axes < 1 || d->num_axes > CREMA_MAX_AXES)
      return crema_fail(err, "%s: dataset \"%s\" has %d axes; HDF5Data needs 1 to %d", path, name,
                        d->num_axes, CREMA_MAX_AXES);
    if (rows >= 0 && d->shape[0] != rows)
      return crema_fail(err,
                        "%s: dataset \"%s\" has %d rows but \"%s\" has %d; every top needs the same number",
                        path, name, d->shape[0], l->param->top[0], rows);
    rows = d->shape[0];
    d->row_size = 1;
    for (int a = 1; a < d->num_axes; a++) d->row_size *= (size_t)d->shape[a];
  }
  if (rows <= 0) return crema_fail(err, "%s: the datasets have no rows", path);
  int *perm = realloc(s->row_perm, (size_t)rows * sizeof *perm);
  if (!perm) return crema_fail(err, "out of memory");
  s->row_perm = perm;
  s->rows = rows;
  for (int i = 0; i < rows; i++) perm[i] = i;
  if (s->shuffle) shuffle_ints(perm, rows, s->seed, 2 * s->file_starts + 1);
  s->file_starts++;
  s->row_at = 0;
  return 0;
}

/* Starts pass `list_pass` over the files (from the first in its order). */
static void start_pass(hdf5_data_state *s) {
  for (int i = 0; i < s->n_files; i++) s->file_perm[i] = i;
  if (s->shuffle) shuffle_ints(s->file_perm, s->n_files, s->seed, 2 * s->list_pass);
  s->file_at = 0;
}

/* After the last row of the current file: the next file (or, with one file, the same rows
 * again, reshuffled). */
static int next_file(crema_layer *l, hdf5_data_state *s, crema_error *err) {
  if (s->n_files == 1) {
    s->row_at = 0;
    if (s->shuffle) shuffle_ints(s->row_perm, s->rows, s->seed, 2 * s->file_starts++ + 1);
    return 0;
  }
  if (++s->file_at == s->n_files) {
    s->list_pass++;
    start_pass(s);
  }
  return load_current(l, s, err);
}

static int hdf5_data_setup(crema_layer *l, crema_blob *const *bottom, crema_blob *const *top,
                           crema_error *err) {
  (void)bottom;
  (void)top;
  const Crema__HDF5DataParameter *p = l->param->hdf5_data_param;
  if (!crema_hdf5_available())
    return crema_fail(err, "HDF5Data needs crema built with HDF5: install libhdf5-dev and rebuild");
  if (!p || !p->source || !*p->source)
    return crema_fail(err, "hdf5_data_param { source: \"list.txt\" } is required");
  if (!p->batch_size || p->batch_size > 0x7fffffff)
    return crema_fail(err, "hdf5_data_param batch_size must be > 0");
  if ((size_t)l->n_top > l->param->n_top)
    return crema_fail(err, "every top needs a name (the dataset to read)");
  hdf5_data_state *s = calloc(1, sizeof *s);
  if (!s) return crema_fail(err, "out of memory");
  l->state = s;
  s->batch = (int)p->batch_size;
  s->shuffle = p->shuffle;
  s->seed = crema_rng_u64(&l->rng);
  FILE *f = fopen(p->source, "r");
  if (!f) return crema_fail(err, "cannot open hdf5_data_param source \"%s\"", p->source);
  const char *slash = strrchr(p->source, '/');
  const size_t dir = slash ? (size_t)(slash - p->source) + 1 : 0;
  char line[4096];
  int cap = 0;
  while (fgets(line, sizeof line, f)) {
    size_t n = strlen(line);
    while (n && (line[n - 1] == '\n' || line[n - 1] == '\r' || line[n - 1] == ' ' || line[n - 1] == '\t'))
      line[--n] = 0;
    const char *name = line;
    while (*name == ' ' || *name == '\t') name++;
    if (!*name) continue;
    if (s->n_files == cap) {
      cap = cap ? 2 * cap : 8;
      char **v = realloc(s->files, (size_t)cap * sizeof *v);
      if (!v) {
        fclose(f);
        return crema_fail(err, "out of memory");
      }
      s->files = v;
    }
    char *path = NULL;
    FILE *probe = fopen(name, "rb");
    if (probe || name[0] == '/' || !dir) {
      if (probe) fclose(probe);
      path = strdup(name);
    } else if ((path = malloc(dir + strlen(name) + 1))) {
      memcpy(path, p->source, dir);
      strcpy(path + dir, name);
    }
    if (!path) {
      fclose(f);
      return crema_fail(err, "out of memory");
    }
    s->files[s->n_files++] = path;
  }
  fclose(f);
  if (!s->n_files) return crema_fail(err, "hdf5_data_param source \"%s\" lists no files", p->source);
  s->file_perm = calloc((size_t)s->n_files, sizeof *s->file_perm);
  s->cur = calloc((size_t)l->n_top + 1, sizeof *s->cur);
  if (!s->file_perm || !s->cur) return crema_fail(err, "out of memory");
  start_pass(s);
  return load_current(l, s, err);
}

static int hdf5_data_reshape(crema_layer *l, crema_blob *const *bottom, crema_blob *const *top,
                             crema_error *err) {
  (void)bottom;
  hdf5_data_state *s = l->state;
  for (int k = 0; k < l->n_top; k++) {
    int shape[CREMA_MAX_AXES];
    memcpy(shape, s->cur[k].shape, (size_t)s->cur[k].num_axes * sizeof(int));
    shape[0] = s->batch;
    if (crema_blob_reshape(top[k], s->cur[k].num_axes, shape, err)) return -1;
  }
  return 0;
}

static int hdf5_data_forward(crema_layer *l, crema_blob *const *bottom, crema_blob *const *top,
                             crema_error *err) {
  (void)bottom;
  hdf5_data_state *s = l->state;
  for (int i = 0; i < s->batch; i++) {
    if (s->row_at == s->rows && next_file(l, s, err)) return -1;
    for (int k = 0; k < l->n_top; k++) {
      const hdf5_file_data *d = &s->cur[k];
      if (d->row_size * (size_t)s->batch != top[k]->count)
        return crema_fail(err, "dataset \"%s\" of %s has rows of %zu values, the first file's had %zu",
                          l->param->top[k], s->files[s->file_perm[s->file_at]], d->row_size,
                          top[k]->count / (size_t)s->batch);
      memcpy(top[k]->data + (size_t)i * d->row_size, d->data + (size_t)s->row_perm[s->row_at] * d->row_size,
             d->row_size * sizeof(float));
    }
    s->row_at++;
    s->position++;
  }
  return 0;
}

static uint64_t hdf5_data_get_position(const crema_layer *l) {
  return ((const hdf5_data_state *)l->state)->position;
}

/* Replays from the start: whole files are skipped by their row counts. */
static int hdf5_data_set_position(crema_layer *l, uint64_t position, crema_error *err) {
  hdf5_data_state *s = l->state;
  s->list_pass = 0;
  s->file_starts = 0;
  start_pass(s);
  if (load_current(l, s, err)) return -1;
  uint64_t left = position;
  while (left > 0) {
    if (s->row_at == s->rows && next_file(l, s, err)) return -1;
    const uint64_t step = (uint64_t)(s->rows - s->row_at) < left ? (uint64_t)(s->rows - s->row_at) : left;
    s->row_at += (int)step;
    left -= step;
  }
  s->position = position;
  return 0;
}

static void hdf5_data_free(crema_layer *l) {
  hdf5_data_state *s = l->state;
  if (!s) return;
  free_current(l, s);
  for (int i = 0; i < s->n_files; i++) free(s->files[i]);
  free(s->files);
  free(s->file_perm);
  free(s->row_perm);
  free(s->cur);
  free(s);
}

const crema_layer_ops crema_hdf5_data_ops = {
    .type = "HDF5Data",
    .min_bottoms = 0,
    .max_bottoms = 0,
    .min_tops = 1,
    .max_tops = -1,
    .setup = hdf5_data_setup,
    .reshape = hdf5_data_reshape,
    .forward = hdf5_data_forward,
    .free_state = hdf5_data_free,
    .get_position = hdf5_data_get_position,
    .set_position = hdf5_data_set_position,
    .refills_top = crema_layer_refills_every_top,
};
