/* blob.h -- crema's N-d float tensor: a shape, `data`, and `diff` (the gradient).
 *
 * Like Caffe's Blob: up to CREMA_MAX_AXES axes, row-major (the last axis varies fastest).
 * data and diff are 64-byte aligned and zero-filled when first allocated. Reshaping to a
 * count no larger than the capacity reuses the buffers (no allocation), so a net whose
 * shapes do not change allocates nothing after its first forward pass.
 * One owner: whoever called crema_blob_new calls crema_blob_free.
 * A blob may borrow its data from another (crema_blob_share_data, Caffe's ShareData): it then
 * owns only its diff. It may also keep its data or its diff in a buffer owned elsewhere
 * (crema_blob_borrow_data, crema_blob_borrow_diff): a net that plans which activations are
 * never needed at the same time lets them share storage (src/net/net_memory.c). */
#ifndef CREMA_TENSOR_BLOB_H
#define CREMA_TENSOR_BLOB_H

#include <stdbool.h>
#include <stddef.h>

#include "base/error.h"

#define CREMA_MAX_AXES 8

typedef struct crema_blob {
  int num_axes;
  int shape[CREMA_MAX_AXES];
  size_t count;    /* product of shape; 1 for a 0-axis (scalar) blob */
  size_t capacity; /* elements allocated in each buffer the blob owns (data, diff) */
  float *data;
  float *diff;
  /* When set, data is data_of's buffer (not owned: never freed or grown here). */
  const struct crema_blob *data_of;
  /* When set, data (diff) is a buffer of data_capacity (diff_capacity) floats owned elsewhere,
   * never freed or grown here (crema_blob_borrow_data, crema_blob_borrow_diff). */
  bool data_borrowed, diff_borrowed;
  size_t data_capacity, diff_capacity;
  /* A parameter's diff that counts as zero while its memory is not: set by
   * crema_net_clear_param_diffs_lazily, cleared by the first layer whose backward writes the
   * gradient (a layer whose ops set overwrites_pending_diffs), and otherwise by the net, which
   * zeroes the memory before any other code can read it (see net.h). */
  bool diff_zero_pending;
} crema_blob;

/* An empty blob (0 axes... count 0 until reshaped). NULL when out of memory. */
crema_blob *crema_blob_new(void);
void crema_blob_free(crema_blob *b);

/* Reshapes to num_axes dims; grows the buffers when needed (new memory zeroed).
 * Fails on a negative dim, too many axes, an overflowing count, or out of memory. A blob
 * that borrows its data grows only its diff, points data at data_of's current buffer, and
 * fails when data_of holds fewer elements than the new count. A blob keeps a borrowed
 * buffer while the count fits; past its capacity it gets one of its own again (zero). */
int crema_blob_reshape(crema_blob *b, int num_axes, const int *shape, crema_error *err);
/* Caffe's Blob::ShareData: b takes src's shape and reads and writes src's data (its own data
 * buffer, if any, is freed); b keeps its own diff (grown when needed). Call it again whenever
 * src may have been reshaped (its buffer may have moved). src must outlive b's use of it,
 * and is never freed through b. Out of memory (growing the diff): an error. */
int crema_blob_share_data(crema_blob *b, const crema_blob *src, crema_error *err);
/* Makes b's diff (data) the first floats of buf, a buffer of `capacity` floats owned by the
 * caller (from crema_blob_buffer_alloc) that outlives b's use of it; b's own buffer is freed.
 * b's count must fit, and a blob borrowing data_of's data cannot borrow other data. Several
 * blobs may borrow one buffer: the caller makes sure that no two of them need their values
 * at the same time. The values are whatever buf holds. */
int crema_blob_borrow_diff(crema_blob *b, float *buf, size_t capacity, crema_error *err);
int crema_blob_borrow_data(crema_blob *b, float *buf, size_t capacity, crema_error *err);
/* A zero-filled, 64-byte aligned buffer of n floats that counts against the memory limit
 * below as a blob's buffers do; free with crema_blob_buffer_free(buf, n). */
float *crema_blob_buffer_alloc(size_t n, crema_error *err);
void crema_blob_buffer_free(float *buf, size_t n);
/* Memory guard: reshape refuses (with the sizes in the message) to grow a blob when every
 * blob's data and diff together would exceed the limit, instead of allocating and being killed
 * when the memory runs out. The limit is the machine's physical memory unless set (0 restores
 * that); tools set it from CREMA_MAX_MEMORY_MB. held: bytes all blobs hold now. */
void crema_blob_set_memory_limit(size_t bytes);
size_t crema_blob_memory_limit(void);
size_t crema_blob_memory_held(void);

/* Convenience: up to 4 dims; pass -1 for unused trailing dims (e.g. (n, c, -1, -1) = 2-d). */
int crema_blob_reshape4(crema_blob *b, int n, int c, int h, int w, crema_error *err);
int crema_blob_reshape_like(crema_blob *b, const crema_blob *other, crema_error *err);

/* Product of shape[start..end). */
size_t crema_blob_count_range(const crema_blob *b, int start, int end);
/* Axis index allowing negatives (-1 = last). Fails when out of range. */
int crema_blob_canonical_axis(const crema_blob *b, int axis, int *out, crema_error *err);
/* Legacy 4-d accessors: dims past num_axes read as 1 (Caffe's LegacyShape). */
int crema_blob_legacy_dim(const crema_blob *b, int i);

bool crema_blob_same_shape(const crema_blob *a, const crema_blob *b);
/* "20 1 5 5 (500)" into buf; returns buf. */
char *crema_blob_shape_string(const crema_blob *b, char *buf, size_t size);

void crema_blob_zero_data(crema_blob *b);
void crema_blob_zero_diff(crema_blob *b);
/* Copies data (and diff when with_diff) from src; shapes must have equal counts. */
int crema_blob_copy_from(crema_blob *dst, const crema_blob *src, bool with_diff, crema_error *err);

/* Sums used by solvers and diagnostics. */
double crema_blob_sumsq_data(const crema_blob *b);
double crema_blob_sumsq_diff(const crema_blob *b);
double crema_blob_asum_data(const crema_blob *b);
double crema_blob_asum_diff(const crema_blob *b);

#endif
