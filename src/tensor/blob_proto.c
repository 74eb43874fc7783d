/* blob_proto.c -- see blob_proto.h. */
#include "tensor/blob_proto.h"

#include <limits.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

int crema_blob_shape_from_proto(const Crema__BlobProto *p, int *num_axes, int shape[CREMA_MAX_AXES],
                                crema_error *err) {
  if (p->shape) {
    if (p->shape->n_dim > CREMA_MAX_AXES)
      return crema_fail(err, "blob has %zu axes; crema supports at most %d", p->shape->n_dim, CREMA_MAX_AXES);
    for (size_t i = 0; i < p->shape->n_dim; i++) {
      int64_t d = p->shape->dim[i];
      if (d < 0 || d > INT_MAX)
        return crema_fail(err, "blob dim %zu is %lld; dims must be between 0 and %d", i, (long long)d,
                          INT_MAX);
      shape[i] = (int)d;
    }
    *num_axes = (int)p->shape->n_dim;
    return 0;
  }
  const int32_t legacy[4] = {p->num, p->channels, p->height, p->width};
  for (int i = 0; i < 4; i++) {
    if (legacy[i] < 0) return crema_fail(err, "blob has a negative legacy dim (%d)", (int)legacy[i]);
    shape[i] = legacy[i];
  }
  *num_axes = 4;
  return 0;
}

static size_t shape_count(int num_axes, const int *shape) {
  /* Saturates on overflow: no file can hold SIZE_MAX values, so the count check fails. */
  size_t n = 1;
  for (int i = 0; i < num_axes; i++) {
    if (shape[i] && n > SIZE_MAX / (size_t)shape[i]) return SIZE_MAX;
    n *= (size_t)shape[i];
  }
  return n;
}

int crema_blob_from_proto(crema_blob *b, const Crema__BlobProto *p, bool with_diff, crema_error *err) {
  int num_axes = 0, shape[CREMA_MAX_AXES];
  if (crema_blob_shape_from_proto(p, &num_axes, shape, err)) return -1;
  size_t count = shape_count(num_axes, shape);
  bool dbl = p->n_double_data > 0 && p->n_data == 0;
  size_t n = dbl ? p->n_double_data : p->n_data;
  if (n != count)
    return crema_fail(err, "blob shape has %zu elements but the file holds %zu %s values", count, n,
                      dbl ? "double_data" : "data");
  if (with_diff) {
    bool ddbl = p->n_double_diff > 0 && p->n_diff == 0;
    size_t nd = ddbl ? p->n_double_diff : p->n_diff;
    if (nd != count)
      return crema_fail(err, "blob shape has %zu elements but the file holds %zu diff values", count, nd);
  }
  if (crema_blob_reshape(b, num_axes, shape, err)) return -1;
  if (dbl)
    for (size_t i = 0; i < count; i++) b->data[i] = (float)p->double_data[i];
  else if (count)
    memcpy(b->data, p->data, count * sizeof(float));
  if (with_diff) {
    if (p->n_double_diff > 0 && p->n_diff == 0)
      for (size_t i = 0; i < count; i++) b->diff[i] = (float)p->double_diff[i];
    else if (count)
      memcpy(b->diff, p->diff, count * sizeof(float));
  }
  return 0;
}

int crema_blob_to_proto(const crema_blob *b, bool with_diff, Crema__BlobProto **out, crema_error *err) {
  *out = NULL;
  Crema__BlobProto *p = malloc(sizeof *p);
  Crema__BlobShape *s = malloc(sizeof *s);
  if (!p || !s) {
    free(p);
    free(s);
    return crema_fail(err, "out of memory converting a blob");
  }
  crema__blob_proto__init(p);
  crema__blob_shape__init(s);
  p->shape = s;
  int rc = 0;
  if (b->num_axes > 0) {
    s->dim = malloc((size_t)b->num_axes * sizeof *s->dim);
    if (!s->dim) rc = -1;
    for (int i = 0; !rc && i < b->num_axes; i++) s->dim[i] = b->shape[i];
    if (!rc) s->n_dim = (size_t)b->num_axes;
  }
  size_t count = b->count;
  if (!rc && count) {
    p->data = malloc(count * sizeof(float));
    if (p->data) {
      memcpy(p->data, b->data, count * sizeof(float));
      p->n_data = count;
    } else {
      rc = -1;
    }
    if (!rc && with_diff) {
      p->diff = malloc(count * sizeof(float));
      if (p->diff) {
        memcpy(p->diff, b->diff, count * sizeof(float));
        p->n_diff = count;
      } else {
        rc = -1;
      }
    }
  }
  if (rc) {
    protobuf_c_message_free_unpacked(&p->base, NULL);
    return crema_fail(err, "out of memory converting a blob of %zu elements", count);
  }
  *out = p;
  return 0;
}
