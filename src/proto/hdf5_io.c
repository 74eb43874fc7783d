/* hdf5_io.c -- see hdf5_io.h. Uses HDF5's core C API only (no high-level library). */
#include "proto/hdf5_io.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "proto/io.h"

bool crema_hdf5_is_h5_name(const char *path) {
  const size_t n = path ? strlen(path) : 0;
  return n >= 3 && !strcmp(path + n - 3, ".h5");
}

#ifndef CREMA_HAVE_HDF5

bool crema_hdf5_available(void) { return false; }

static int no_hdf5(const char *path, crema_error *err) {
  return crema_fail(err,
                    "%s: crema was built without HDF5, so it cannot read or write HDF5 files; install "
                    "libhdf5-dev (scripts/install-deps.sh does) and rebuild",
                    path ? path : "(HDF5 file)");
}

int crema_hdf5_read_net(const char *path, Crema__NetParameter **out, crema_error *err) {
  *out = NULL;
  return no_hdf5(path, err);
}
int crema_hdf5_write_net(const char *path, const Crema__NetParameter *np, crema_error *err) {
  (void)np;
  return no_hdf5(path, err);
}
int crema_hdf5_read_solverstate(const char *path, Crema__SolverState **out, crema_error *err) {
  *out = NULL;
  return no_hdf5(path, err);
}
int crema_hdf5_write_solverstate(const char *path, const Crema__SolverState *st, crema_error *err) {
  (void)st;
  return no_hdf5(path, err);
}
int crema_hdf5_read_floats(const char *path, const char *name, int *num_axes, int shape[CREMA_HDF5_MAX_AXES],
                           float **data, crema_error *err) {
  (void)name;
  (void)shape;
  *num_axes = 0;
  *data = NULL;
  return no_hdf5(path, err);
}
int crema_hdf5_writer_open(const char *path, crema_hdf5_writer **out, crema_error *err) {
  *out = NULL;
  return no_hdf5(path, err);
}
int crema_hdf5_writer_put(crema_hdf5_writer *w, const char *name, int num_axes, const int *shape,
                          const float *data, crema_error *err) {
  (void)w;
  (void)num_axes;
  (void)shape;
  (void)data;
  return no_hdf5(name, err);
}
void crema_hdf5_writer_close(crema_hdf5_writer *w) { (void)w; }

#else

#include <hdf5.h>
#include <unistd.h>

bool crema_hdf5_available(void) { return true; }

/* HDF5 prints an error stack on stderr for every failed call unless told not to; crema
 * reports its own errors. */
static void quiet(void) { H5Eset_auto2(H5E_DEFAULT, NULL, NULL); }

/* ---------------------------------------------------------------- reading */

/* Reads a float or integer dataset as floats: rank, shape and a malloc'd array. */
static int read_float_dataset(hid_t loc, const char *name, const char *path, int *rank_out,
                              int shape[CREMA_HDF5_MAX_AXES], float **data, crema_error *err) {
  *data = NULL;
  hid_t d = H5Dopen2(loc, name, H5P_DEFAULT);
  if (d < 0) return crema_fail(err, "%s: no dataset \"%s\"", path, name);
  int rc = 0;
  hid_t space = H5Dget_space(d), type = H5Dget_type(d);
  const H5T_class_t cls = type >= 0 ? H5Tget_class(type) : H5T_NO_CLASS;
  const int rank = space >= 0 ? H5Sget_simple_extent_ndims(space) : -1;
  hsize_t dims[H5S_MAX_RANK];
  size_t count = 1;
  if (cls != H5T_FLOAT && cls != H5T_INTEGER)
    rc = crema_fail(err, "%s: dataset \"%s\" holds neither floats nor integers", path, name);
  else if (rank < 0 || rank > CREMA_HDF5_MAX_AXES)
    rc = crema_fail(err, "%s: dataset \"%s\" has %d axes; at most %d", path, name, rank, CREMA_HDF5_MAX_AXES);
  else if (H5Sget_simple_extent_dims(space, dims, NULL) < 0)
    rc = crema_fail(err, "%s: cannot read the shape of dataset \"%s\"", path, name);
  for (int i = 0; !rc && i < rank; i++) {
    if (dims[i] > 0x7fffffff || (dims[i] && count > ((size_t)1 << 40) / dims[i]))
      rc = crema_fail(err, "%s: dataset \"%s\" is too large (axis %d has %llu)", path, name, i,
                      (unsigned long long)dims[i]);
    else {
      shape[i] = (int)dims[i];
      count *= (size_t)dims[i];
    }
  }
  if (!rc) {
    *rank_out = rank;
    if (!(*data = malloc((count ? count : 1) * sizeof(float))))
      rc = crema_fail(err, "out of memory reading \"%s\" (%zu values)", name, count);
    else if (count && H5Dread(d, H5T_NATIVE_FLOAT, H5S_ALL, H5S_ALL, H5P_DEFAULT, *data) < 0)
      rc = crema_fail(err, "%s: cannot read dataset \"%s\"", path, name);
    if (rc) {
      free(*data);
      *data = NULL;
    }
  }
  if (type >= 0) H5Tclose(type);
  if (space >= 0) H5Sclose(space);
  H5Dclose(d);
  return rc;
}

/* The dataset as a BlobProto with `shape` and float data. */
static int read_blob_proto(hid_t loc, const char *name, const char *path, Crema__BlobProto **out,
                           crema_error *err) {
  int rank = 0, shape[CREMA_HDF5_MAX_AXES];
  float *data = NULL;
  *out = NULL;
  if (read_float_dataset(loc, name, path, &rank, shape, &data, err)) return -1;
  Crema__BlobProto *bp = malloc(sizeof *bp);
  Crema__BlobShape *bs = malloc(sizeof *bs);
  int64_t *dims = malloc((size_t)(rank ? rank : 1) * sizeof *dims);
  if (!bp || !bs || !dims) {
    free(bp);
    free(bs);
    free(dims);
    free(data);
    return crema_fail(err, "out of memory");
  }
  crema__blob_proto__init(bp);
  crema__blob_shape__init(bs);
  size_t count = 1;
  for (int i = 0; i < rank; i++) {
    dims[i] = shape[i];
    count *= (size_t)shape[i];
  }
  bs->n_dim = (size_t)rank;
  bs->dim = dims;
  bp->shape = bs;
  bp->n_data = count;
  bp->data = data;
  *out = bp;
  return 0;
}

static int read_int(hid_t loc, const char *name, const char *path, int *out, crema_error *err) {
  hid_t d = H5Dopen2(loc, name, H5P_DEFAULT);
  if (d < 0) return crema_fail(err, "%s: no dataset \"%s\"", path, name);
  int rc = H5Dread(d, H5T_NATIVE_INT, H5S_ALL, H5S_ALL, H5P_DEFAULT, out) < 0
               ? crema_fail(err, "%s: dataset \"%s\" is not one integer", path, name)
               : 0;
  H5Dclose(d);
  return rc;
}

/* A fixed-length (as Caffe's H5LTmake_dataset_string writes) or variable-length string. */
static int read_string(hid_t loc, const char *name, const char *path, char **out, crema_error *err) {
  *out = NULL;
  hid_t d = H5Dopen2(loc, name, H5P_DEFAULT);
  if (d < 0) return crema_fail(err, "%s: no dataset \"%s\"", path, name);
  hid_t ft = H5Dget_type(d), mt = H5Tcopy(H5T_C_S1);
  int rc = 0;
  if (ft < 0 || H5Tget_class(ft) != H5T_STRING) {
    rc = crema_fail(err, "%s: dataset \"%s\" is not a string", path, name);
  } else if (H5Tis_variable_str(ft) > 0) {
    char *v = NULL;
    H5Tset_size(mt, H5T_VARIABLE);
    if (H5Dread(d, mt, H5S_ALL, H5S_ALL, H5P_DEFAULT, &v) < 0 || !v)
      rc = crema_fail(err, "%s: cannot read string \"%s\"", path, name);
    else if (!(*out = strdup(v)))
      rc = crema_fail(err, "out of memory");
    free(v);
  } else {
    const size_t n = H5Tget_size(ft);
    char *buf = calloc(n + 1, 1);
    H5Tset_size(mt, n + 1);
    if (!buf)
      rc = crema_fail(err, "out of memory");
    else if (H5Dread(d, mt, H5S_ALL, H5S_ALL, H5P_DEFAULT, buf) < 0)
      rc = crema_fail(err, "%s: cannot read string \"%s\"", path, name);
    if (rc)
      free(buf);
    else
      *out = buf;
  }
  if (ft >= 0) H5Tclose(ft);
  H5Tclose(mt);
  H5Dclose(d);
  return rc;
}

/* Names of the links of a group, in HDF5's name order. */
static int group_names(hid_t g, const char *path, char ***names, size_t *n, crema_error *err) {
  H5G_info_t info;
  *names = NULL;
  *n = 0;
  if (H5Gget_info(g, &info) < 0) return crema_fail(err, "%s: cannot list a group", path);
  char **v = calloc((size_t)info.nlinks + 1, sizeof *v);
  if (!v) return crema_fail(err, "out of memory");
  for (hsize_t i = 0; i < info.nlinks; i++) {
    ssize_t len = H5Lget_name_by_idx(g, ".", H5_INDEX_NAME, H5_ITER_INC, i, NULL, 0, H5P_DEFAULT);
    if (len < 0 || !(v[i] = malloc((size_t)len + 1)) ||
        H5Lget_name_by_idx(g, ".", H5_INDEX_NAME, H5_ITER_INC, i, v[i], (size_t)len + 1, H5P_DEFAULT) < 0) {
      for (hsize_t j = 0; j <= i; j++) free(v[j]);
      free(v);
      return crema_fail(err, "%s: cannot read the names in a group", path);
    }
  }
  *names = v;
  *n = (size_t)info.nlinks;
  return 0;
}

static void free_names(char **names, size_t n) {
  for (size_t i = 0; i < n; i++) free(names[i]);
  free(names);
}

static hid_t open_file(const char *path, crema_error *err) {
  quiet();
  if (access(path, R_OK) != 0) {
    crema_fail(err, "%s: cannot open (missing or unreadable)", path);
    return -1;
  }
  hid_t f = H5Fopen(path, H5F_ACC_RDONLY, H5P_DEFAULT);
  if (f < 0) crema_fail(err, "%s: not an HDF5 file", path);
  return f;
}

/* Reads the datasets "0", "1", ... of group g as BlobProtos. */
static int read_blob_list(hid_t g, const char *path, Crema__BlobProto ***out, size_t *n_out,
                          crema_error *err) {
  char **names;
  size_t n;
  *out = NULL;
  *n_out = 0;
  if (group_names(g, path, &names, &n, err)) return -1;
  int rc = 0;
  Crema__BlobProto **v = calloc(n + 1, sizeof *v);
  if (!v) rc = crema_fail(err, "out of memory");
  for (size_t i = 0; !rc && i < n; i++) {
    char idx[32];
    snprintf(idx, sizeof idx, "%zu", i);
    if (H5Lexists(g, idx, H5P_DEFAULT) <= 0)
      rc = crema_fail(err, "%s: a group of %zu blobs has no dataset \"%s\" (blobs are named 0, 1, ...)", path,
                      n, idx);
    else if (!read_blob_proto(g, idx, path, &v[i], err))
      *n_out = i + 1;
    else
      rc = -1;
  }
  free_names(names, n);
  if (rc) {
    for (size_t i = 0; i < *n_out; i++) crema_message_free(v[i]);
    free(v);
    *n_out = 0;
    return -1;
  }
  *out = v;
  return 0;
}

int crema_hdf5_read_net(const char *path, Crema__NetParameter **out, crema_error *err) {
  *out = NULL;
  hid_t f = open_file(path, err);
  if (f < 0) return -1;
  int rc = 0;
  hid_t data = H5Lexists(f, "data", H5P_DEFAULT) > 0 ? H5Gopen2(f, "data", H5P_DEFAULT) : -1;
  char **names = NULL;
  size_t n = 0;
  Crema__NetParameter *np = malloc(sizeof *np);
  if (!np) rc = crema_fail(err, "out of memory");
  if (!rc) crema__net_parameter__init(np);
  if (!rc && data < 0)
    rc = crema_fail(err, "%s: no group \"data\"; is this a .caffemodel.h5 written by Caffe or crema?", path);
  if (!rc) rc = group_names(data, path, &names, &n, err);
  if (!rc && !(np->layer = calloc(n + 1, sizeof *np->layer))) rc = crema_fail(err, "out of memory");
  for (size_t i = 0; !rc && i < n; i++) {
    Crema__LayerParameter *lp = malloc(sizeof *lp);
    if (!lp || !(lp->name = NULL, crema__layer_parameter__init(lp), lp->name = strdup(names[i]))) {
      free(lp);
      rc = crema_fail(err, "out of memory");
      break;
    }
    np->layer[np->n_layer++] = lp;
    hid_t g = H5Gopen2(data, names[i], H5P_DEFAULT);
    if (g < 0)
      rc = crema_fail(err, "%s: data/%s is not a group", path, names[i]);
    else {
      rc = read_blob_list(g, path, &lp->blobs, &lp->n_blobs, err);
      if (rc) crema_error_prefix(err, "layer \"%s\"", names[i]);
      H5Gclose(g);
    }
  }
  free_names(names, n);
  if (data >= 0) H5Gclose(data);
  H5Fclose(f);
  if (rc) {
    crema_message_free(np);
    return -1;
  }
  *out = np;
  return 0;
}

int crema_hdf5_read_floats(const char *path, const char *name, int *num_axes, int shape[CREMA_HDF5_MAX_AXES],
                           float **data, crema_error *err) {
  *num_axes = 0;
  *data = NULL;
  hid_t f = open_file(path, err);
  if (f < 0) return -1;
  int rc = H5Lexists(f, name, H5P_DEFAULT) > 0 ? read_float_dataset(f, name, path, num_axes, shape, data, err)
                                               : crema_fail(err, "%s: no dataset \"%s\"", path, name);
  H5Fclose(f);
  return rc;
}

int crema_hdf5_read_solverstate(const char *path, Crema__SolverState **out, crema_error *err) {
  *out = NULL;
  hid_t f = open_file(path, err);
  if (f < 0) return -1;
  Crema__SolverState *st = NULL;
  int rc = 0;
  if (H5Lexists(f, "crema_state", H5P_DEFAULT) > 0) {
    hid_t d = H5Dopen2(f, "crema_state", H5P_DEFAULT);
    hid_t space = d >= 0 ? H5Dget_space(d) : -1;
    const hssize_t n = space >= 0 ? H5Sget_simple_extent_npoints(space) : -1;
    uint8_t *bytes = n >= 0 ? malloc((size_t)n + 1) : NULL;
    if (!bytes || H5Dread(d, H5T_NATIVE_UCHAR, H5S_ALL, H5S_ALL, H5P_DEFAULT, bytes) < 0 ||
        !(st = crema__solver_state__unpack(NULL, (size_t)n, bytes)))
      rc = crema_fail(err, "%s: crema_state is damaged", path);
    free(bytes);
    if (space >= 0) H5Sclose(space);
    if (d >= 0) H5Dclose(d);
  } else if ((st = malloc(sizeof *st))) {
    crema__solver_state__init(st);
  } else {
    rc = crema_fail(err, "out of memory");
  }
  int iter = 0, step = 0;
  if (!rc) rc = read_int(f, "iter", path, &iter, err);
  if (!rc) {
    st->has_iter = 1;
    st->iter = iter;
    st->has_current_step = 1;
    if (H5Lexists(f, "current_step", H5P_DEFAULT) > 0) rc = read_int(f, "current_step", path, &step, err);
    st->current_step = step;
  }
  if (!rc && H5Lexists(f, "learned_net", H5P_DEFAULT) > 0) {
    free(st->learned_net);
    st->learned_net = NULL;
    rc = read_string(f, "learned_net", path, &st->learned_net, err);
  }
  if (!rc) {
    hid_t h = H5Lexists(f, "history", H5P_DEFAULT) > 0 ? H5Gopen2(f, "history", H5P_DEFAULT) : -1;
    if (h < 0)
      rc = crema_fail(err, "%s: no group \"history\"; is this a .solverstate.h5?", path);
    else {
      for (size_t i = 0; i < st->n_history; i++) crema_message_free(st->history[i]);
      free(st->history);
      st->history = NULL;
      st->n_history = 0;
      rc = read_blob_list(h, path, &st->history, &st->n_history, err);
      H5Gclose(h);
    }
  }
  H5Fclose(f);
  if (rc) {
    if (st) crema_message_free(st);
    return -1;
  }
  *out = st;
  return 0;
}

/* ---------------------------------------------------------------- writing */

static int write_floats(hid_t loc, const char *name, int rank, const int *shape, const float *v,
                        const char *path, crema_error *err) {
  hsize_t dims[CREMA_HDF5_MAX_AXES + 1] = {0};
  for (int i = 0; i < rank; i++) dims[i] = (hsize_t)shape[i];
  hid_t space = rank ? H5Screate_simple(rank, dims, NULL) : H5Screate(H5S_SCALAR);
  hid_t d =
      space >= 0 ? H5Dcreate2(loc, name, H5T_NATIVE_FLOAT, space, H5P_DEFAULT, H5P_DEFAULT, H5P_DEFAULT) : -1;
  size_t count = 1;
  for (int i = 0; i < rank; i++) count *= (size_t)shape[i];
  int rc = 0;
  if (d < 0 || (count && H5Dwrite(d, H5T_NATIVE_FLOAT, H5S_ALL, H5S_ALL, H5P_DEFAULT, v) < 0))
    rc = crema_fail(err, "%s: cannot write dataset \"%s\"", path, name);
  if (d >= 0) H5Dclose(d);
  if (space >= 0) H5Sclose(space);
  return rc;
}

/* A BlobProto as a float dataset of its shape (`shape`, else the legacy 4-d num/channels/
 * height/width, as Caffe's Blob reports it); double data is converted. */
static int write_blob_proto(hid_t loc, const char *name, const Crema__BlobProto *bp, const char *path,
                            crema_error *err) {
  int rank, shape[CREMA_HDF5_MAX_AXES];
  size_t count = 1;
  if (bp->shape) {
    if (bp->shape->n_dim > CREMA_HDF5_MAX_AXES)
      return crema_fail(err, "%s: blob \"%s\" has too many axes", path, name);
    rank = (int)bp->shape->n_dim;
    for (int i = 0; i < rank; i++) {
      if (bp->shape->dim[i] < 0 || bp->shape->dim[i] > 0x7fffffff)
        return crema_fail(err, "%s: blob \"%s\" has a bad shape", path, name);
      shape[i] = (int)bp->shape->dim[i];
    }
  } else {
    rank = 4;
    shape[0] = bp->num;
    shape[1] = bp->channels;
    shape[2] = bp->height;
    shape[3] = bp->width;
  }
  for (int i = 0; i < rank; i++) count *= (size_t)(shape[i] < 0 ? 0 : shape[i]);
  const size_t have = bp->n_data ? bp->n_data : bp->n_double_data;
  if (have != count)
    return crema_fail(err, "%s: blob \"%s\" has %zu values for a shape of %zu", path, name, have, count);
  if (bp->n_data || !count) return write_floats(loc, name, rank, shape, bp->data, path, err);
  float *v = malloc(count * sizeof *v);
  if (!v) return crema_fail(err, "out of memory");
  for (size_t i = 0; i < count; i++) v[i] = (float)bp->double_data[i];
  int rc = write_floats(loc, name, rank, shape, v, path, err);
  free(v);
  return rc;
}

static int write_int(hid_t loc, const char *name, int v, const char *path, crema_error *err) {
  hid_t space = H5Screate(H5S_SCALAR);
  hid_t d = H5Dcreate2(loc, name, H5T_NATIVE_INT, space, H5P_DEFAULT, H5P_DEFAULT, H5P_DEFAULT);
  int rc = d < 0 || H5Dwrite(d, H5T_NATIVE_INT, H5S_ALL, H5S_ALL, H5P_DEFAULT, &v) < 0
               ? crema_fail(err, "%s: cannot write \"%s\"", path, name)
               : 0;
  if (d >= 0) H5Dclose(d);
  H5Sclose(space);
  return rc;
}

/* As H5LTmake_dataset_string: a scalar, fixed-length, NUL-terminated string. */
static int write_string(hid_t loc, const char *name, const char *s, const char *path, crema_error *err) {
  hid_t t = H5Tcopy(H5T_C_S1);
  H5Tset_size(t, strlen(s) + 1);
  H5Tset_strpad(t, H5T_STR_NULLTERM);
  hid_t space = H5Screate(H5S_SCALAR);
  hid_t d = H5Dcreate2(loc, name, t, space, H5P_DEFAULT, H5P_DEFAULT, H5P_DEFAULT);
  int rc = d < 0 || H5Dwrite(d, t, H5S_ALL, H5S_ALL, H5P_DEFAULT, s) < 0
               ? crema_fail(err, "%s: cannot write \"%s\"", path, name)
               : 0;
  if (d >= 0) H5Dclose(d);
  H5Sclose(space);
  H5Tclose(t);
  return rc;
}

static int write_bytes(hid_t loc, const char *name, const uint8_t *v, size_t n, const char *path,
                       crema_error *err) {
  hsize_t dims[1] = {(hsize_t)n};
  hid_t space = H5Screate_simple(1, dims, NULL);
  hid_t d = H5Dcreate2(loc, name, H5T_NATIVE_UCHAR, space, H5P_DEFAULT, H5P_DEFAULT, H5P_DEFAULT);
  int rc = d < 0 || (n && H5Dwrite(d, H5T_NATIVE_UCHAR, H5S_ALL, H5S_ALL, H5P_DEFAULT, v) < 0)
               ? crema_fail(err, "%s: cannot write \"%s\"", path, name)
               : 0;
  if (d >= 0) H5Dclose(d);
  H5Sclose(space);
  return rc;
}

/* A temporary name beside path, created empty; the caller renames or removes it. */
static char *temp_beside(const char *path, crema_error *err) {
  const size_t n = strlen(path) + 16;
  char *t = malloc(n);
  if (!t) {
    crema_fail(err, "out of memory");
    return NULL;
  }
  snprintf(t, n, "%s.tmpXXXXXX", path);
  int fd = mkstemp(t);
  if (fd < 0) {
    crema_fail(err, "%s: cannot create a file in its folder", path);
    free(t);
    return NULL;
  }
  close(fd);
  return t;
}

static int finish(hid_t f, char *tmp, const char *path, int rc, crema_error *err) {
  if (f >= 0 && H5Fclose(f) < 0 && !rc) rc = crema_fail(err, "%s: cannot finish writing", path);
  if (!rc && rename(tmp, path) != 0)
    rc = crema_fail(err, "%s: cannot rename the finished file into place", path);
  if (rc) remove(tmp);
  free(tmp);
  return rc;
}

int crema_hdf5_write_net(const char *path, const Crema__NetParameter *np, crema_error *err) {
  quiet();
  char *tmp = temp_beside(path, err);
  if (!tmp) return -1;
  hid_t f = H5Fcreate(tmp, H5F_ACC_TRUNC, H5P_DEFAULT, H5P_DEFAULT);
  int rc = f < 0 ? crema_fail(err, "%s: cannot create an HDF5 file", path) : 0;
  hid_t data = rc ? -1 : H5Gcreate2(f, "data", H5P_DEFAULT, H5P_DEFAULT, H5P_DEFAULT);
  if (!rc && data < 0) rc = crema_fail(err, "%s: cannot create group \"data\"", path);
  for (size_t i = 0; !rc && i < np->n_layer; i++) {
    const Crema__LayerParameter *lp = np->layer[i];
    const char *name = lp->name && *lp->name ? lp->name : NULL;
    if (!name) continue;
    if (H5Lexists(data, name, H5P_DEFAULT) > 0) continue; /* the first of equal names wins */
    hid_t g = H5Gcreate2(data, name, H5P_DEFAULT, H5P_DEFAULT, H5P_DEFAULT);
    if (g < 0) {
      rc = crema_fail(err, "%s: cannot create group for layer \"%s\"", path, name);
      break;
    }
    for (size_t j = 0; !rc && j < lp->n_blobs; j++) {
      char idx[32];
      snprintf(idx, sizeof idx, "%zu", j);
      rc = write_blob_proto(g, idx, lp->blobs[j], path, err);
    }
    H5Gclose(g);
  }
  if (data >= 0) H5Gclose(data);
  return finish(f, tmp, path, rc, err);
}

int crema_hdf5_write_solverstate(const char *path, const Crema__SolverState *st, crema_error *err) {
  quiet();
  /* crema's own fields, packed as the message without the history. */
  Crema__SolverState extra = *st;
  extra.n_history = 0;
  extra.history = NULL;
  const size_t packed = crema__solver_state__get_packed_size(&extra);
  uint8_t *bytes = malloc(packed + 1);
  if (!bytes) return crema_fail(err, "out of memory");
  crema__solver_state__pack(&extra, bytes);
  char *tmp = temp_beside(path, err);
  if (!tmp) {
    free(bytes);
    return -1;
  }
  hid_t f = H5Fcreate(tmp, H5F_ACC_TRUNC, H5P_DEFAULT, H5P_DEFAULT);
  int rc = f < 0 ? crema_fail(err, "%s: cannot create an HDF5 file", path) : 0;
  if (!rc) rc = write_int(f, "iter", st->iter, path, err);
  if (!rc) rc = write_string(f, "learned_net", st->learned_net ? st->learned_net : "", path, err);
  if (!rc) rc = write_int(f, "current_step", st->current_step, path, err);
  hid_t h = rc ? -1 : H5Gcreate2(f, "history", H5P_DEFAULT, H5P_DEFAULT, H5P_DEFAULT);
  if (!rc && h < 0) rc = crema_fail(err, "%s: cannot create group \"history\"", path);
  for (size_t i = 0; !rc && i < st->n_history; i++) {
    char idx[32];
    snprintf(idx, sizeof idx, "%zu", i);
    rc = write_blob_proto(h, idx, st->history[i], path, err);
  }
  if (h >= 0) H5Gclose(h);
  if (!rc) rc = write_bytes(f, "crema_state", bytes, packed, path, err);
  free(bytes);
  return finish(f, tmp, path, rc, err);
}

struct crema_hdf5_writer {
  hid_t file;
  char *path;
};

int crema_hdf5_writer_open(const char *path, crema_hdf5_writer **out, crema_error *err) {
  quiet();
  *out = NULL;
  crema_hdf5_writer *w = calloc(1, sizeof *w);
  if (!w || !(w->path = strdup(path))) {
    free(w);
    return crema_fail(err, "out of memory");
  }
  w->file = H5Fcreate(path, H5F_ACC_TRUNC, H5P_DEFAULT, H5P_DEFAULT);
  if (w->file < 0) {
    free(w->path);
    free(w);
    return crema_fail(err, "%s: cannot create an HDF5 file (is the folder writable?)", path);
  }
  *out = w;
  return 0;
}

int crema_hdf5_writer_put(crema_hdf5_writer *w, const char *name, int num_axes, const int *shape,
                          const float *data, crema_error *err) {
  if (H5Lexists(w->file, name, H5P_DEFAULT) > 0 && H5Ldelete(w->file, name, H5P_DEFAULT) < 0)
    return crema_fail(err, "%s: cannot replace dataset \"%s\"", w->path, name);
  if (write_floats(w->file, name, num_axes, shape, data, w->path, err)) return -1;
  H5Fflush(w->file, H5F_SCOPE_LOCAL);
  return 0;
}

void crema_hdf5_writer_close(crema_hdf5_writer *w) {
  if (!w) return;
  H5Fclose(w->file);
  free(w->path);
  free(w);
}

#endif
