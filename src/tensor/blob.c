#include "tensor/blob.h"

#include <math.h>
#include <stdatomic.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "base/mem.h"

/* Bytes held by every blob's data and diff, and the most they may hold (0: physical memory). */
static _Atomic size_t g_blob_bytes;
static size_t g_blob_limit;

void crema_blob_set_memory_limit(size_t bytes) { g_blob_limit = bytes; }

size_t crema_blob_memory_limit(void) {
  if (g_blob_limit) return g_blob_limit;
  const long pages = sysconf(_SC_PHYS_PAGES), page = sysconf(_SC_PAGESIZE);
  return pages > 0 && page > 0 ? (size_t)pages * (size_t)page : SIZE_MAX;
}

size_t crema_blob_memory_held(void) { return atomic_load(&g_blob_bytes); }

/* Whether b owns its data and its diff, and the bytes they hold. */
static bool owns_data(const crema_blob *b) { return !b->data_of && !b->data_borrowed; }
static size_t held_by(const crema_blob *b) {
  return b->capacity * ((owns_data(b) ? 1u : 0u) + (b->diff_borrowed ? 0u : 1u)) * sizeof(float);
}

/* Elements b's data may hold: its own buffer's, the borrowed one's, or data_of's. */
static size_t data_room(const crema_blob *b) {
  return b->data_of ? data_room(b->data_of) : b->data_borrowed ? b->data_capacity : b->capacity;
}

/* Refuses before allocating `want` more bytes: zero-filling more than the machine holds
 * would get the process killed instead of reporting which blob (and so which layer) is too
 * big. held: what every other blob holds. */
static int check_limit(size_t want, size_t held, size_t count, crema_error *err) {
  const size_t limit = crema_blob_memory_limit();
  if (want <= limit && held <= limit - want) return 0;
  return crema_fail(err,
                    "a blob of %zu floats needs %.1f MB; with the %.1f MB the other blobs hold, that is "
                    "more than the memory limit of %.1f MB (the machine's memory unless "
                    "CREMA_MAX_MEMORY_MB is set): use a smaller input or batch",
                    count, want / 1048576.0, held / 1048576.0, limit / 1048576.0);
}

crema_blob *crema_blob_new(void) { return calloc(1, sizeof(crema_blob)); }

void crema_blob_free(crema_blob *b) {
  if (!b) return;
  atomic_fetch_sub(&g_blob_bytes, held_by(b));
  if (owns_data(b)) crema_aligned_free(b->data);
  if (!b->diff_borrowed) crema_aligned_free(b->diff);
  free(b);
}

int crema_blob_reshape(crema_blob *b, int num_axes, const int *shape, crema_error *err) {
  if (num_axes < 0 || num_axes > CREMA_MAX_AXES)
    return crema_fail(err, "blob with %d axes: crema supports at most %d", num_axes, CREMA_MAX_AXES);
  size_t count = 1;
  for (int i = 0; i < num_axes; i++) {
    if (shape[i] < 0) return crema_fail(err, "blob dimension %d is negative (%d)", i, shape[i]);
    if (shape[i] && count > SIZE_MAX / sizeof(float) / (size_t)shape[i])
      return crema_fail(err, "blob shape overflows: too many elements");
    count *= (size_t)shape[i];
  }
  if (count > (size_t)INT32_MAX) return crema_fail(err, "blob of %zu elements exceeds 2^31-1", count);
  if (b->data_of && count > data_room(b->data_of))
    return crema_fail(err, "a blob sharing the data of a %zu-element blob cannot hold %zu elements",
                      data_room(b->data_of), count);
  /* A borrowed buffer too small for the new count is given up for one of the blob's own. */
  const bool drop_data = b->data_borrowed && count > b->data_capacity;
  const bool drop_diff = b->diff_borrowed && count > b->diff_capacity;
  if (count > b->capacity || drop_data || drop_diff) {
    const size_t cap = count > b->capacity ? count : b->capacity;
    const bool grow = cap > b->capacity;
    const bool own_data = !b->data_of && (!b->data_borrowed || drop_data);
    const bool own_diff = !b->diff_borrowed || drop_diff;
    const bool new_data = own_data && (grow || drop_data), new_diff = own_diff && (grow || drop_diff);
    const size_t want = cap * ((own_data ? 1u : 0u) + (own_diff ? 1u : 0u)) * sizeof(float);
    if (check_limit(want, atomic_load(&g_blob_bytes) - held_by(b), count, err)) return -1;
    float *data = new_data ? crema_aligned_alloc(cap * sizeof(float)) : NULL;
    float *diff = new_diff ? crema_aligned_alloc(cap * sizeof(float)) : NULL;
    if ((new_data && !data) || (new_diff && !diff)) {
      crema_aligned_free(data);
      crema_aligned_free(diff);
      return crema_fail(err, "out of memory allocating a blob of %zu floats", count);
    }
    const size_t before = held_by(b);
    if (new_data) {
      if (owns_data(b)) crema_aligned_free(b->data);
      b->data = data;
      b->data_borrowed = false;
      b->data_capacity = 0;
    }
    if (new_diff) {
      if (!b->diff_borrowed) crema_aligned_free(b->diff);
      b->diff = diff;
      b->diff_borrowed = false;
      b->diff_capacity = 0;
    }
    b->capacity = cap;
    atomic_fetch_add(&g_blob_bytes, held_by(b) - before);
  }
  if (b->data_of) b->data = b->data_of->data;
  b->num_axes = num_axes;
  for (int i = 0; i < num_axes; i++) b->shape[i] = shape[i];
  b->count = count;
  return 0;
}

int crema_blob_share_data(crema_blob *b, const crema_blob *src, crema_error *err) {
  if (b->data_of != src) {
    /* Become a borrower first (an empty one if b is new): the reshape below then sizes
     * only the diff. */
    const size_t before = held_by(b);
    if (owns_data(b)) crema_aligned_free(b->data);
    b->data = NULL;
    b->data_borrowed = false;
    b->data_capacity = 0;
    b->data_of = src;
    atomic_fetch_sub(&g_blob_bytes, before - held_by(b));
  }
  return crema_blob_reshape(b, src->num_axes, src->shape, err);
}

/* Points b's diff (diff = true) or data at buf, freeing the buffer b owned there. */
static int borrow(crema_blob *b, float *buf, size_t capacity, bool diff, crema_error *err) {
  const char *what = diff ? "diff" : "data";
  if (!diff && b->data_of)
    return crema_fail(err, "a blob sharing another blob's data cannot borrow a buffer for it");
  if (b->count > capacity)
    return crema_fail(err, "a blob of %zu elements cannot keep its %s in a buffer of %zu", b->count, what,
                      capacity);
  const size_t before = held_by(b);
  if (diff) {
    if (!b->diff_borrowed) crema_aligned_free(b->diff);
    b->diff = buf;
    b->diff_borrowed = true;
    b->diff_capacity = capacity;
  } else {
    if (owns_data(b)) crema_aligned_free(b->data);
    b->data = buf;
    b->data_borrowed = true;
    b->data_capacity = capacity;
  }
  atomic_fetch_sub(&g_blob_bytes, before - held_by(b));
  return 0;
}

int crema_blob_borrow_diff(crema_blob *b, float *buf, size_t capacity, crema_error *err) {
  return borrow(b, buf, capacity, true, err);
}

int crema_blob_borrow_data(crema_blob *b, float *buf, size_t capacity, crema_error *err) {
  return borrow(b, buf, capacity, false, err);
}

float *crema_blob_buffer_alloc(size_t n, crema_error *err) {
  if (n > SIZE_MAX / sizeof(float)) {
    crema_fail(err, "a buffer of %zu floats overflows", n);
    return NULL;
  }
  if (check_limit(n * sizeof(float), atomic_load(&g_blob_bytes), n, err)) return NULL;
  float *buf = crema_aligned_alloc(n * sizeof(float));
  if (!buf) {
    crema_fail(err, "out of memory allocating a buffer of %zu floats", n);
    return NULL;
  }
  atomic_fetch_add(&g_blob_bytes, n * sizeof(float));
  return buf;
}

void crema_blob_buffer_free(float *buf, size_t n) {
  if (!buf) return;
  atomic_fetch_sub(&g_blob_bytes, n * sizeof(float));
  crema_aligned_free(buf);
}

int crema_blob_reshape4(crema_blob *b, int n, int c, int h, int w, crema_error *err) {
  int dims[4] = {n, c, h, w}, k = 0;
  while (k < 4 && dims[k] >= 0) k++;
  return crema_blob_reshape(b, k, dims, err);
}

int crema_blob_reshape_like(crema_blob *b, const crema_blob *other, crema_error *err) {
  return crema_blob_reshape(b, other->num_axes, other->shape, err);
}

size_t crema_blob_count_range(const crema_blob *b, int start, int end) {
  size_t c = 1;
  for (int i = start; i < end && i < b->num_axes; i++) c *= (size_t)b->shape[i];
  return c;
}

int crema_blob_canonical_axis(const crema_blob *b, int axis, int *out, crema_error *err) {
  if (axis < -b->num_axes || axis >= b->num_axes)
    return crema_fail(err, "axis %d out of range for a blob with %d axes", axis, b->num_axes);
  *out = axis < 0 ? axis + b->num_axes : axis;
  return 0;
}

int crema_blob_legacy_dim(const crema_blob *b, int i) { return i < b->num_axes ? b->shape[i] : 1; }

bool crema_blob_same_shape(const crema_blob *a, const crema_blob *b) {
  if (a->num_axes != b->num_axes) return false;
  for (int i = 0; i < a->num_axes; i++)
    if (a->shape[i] != b->shape[i]) return false;
  return true;
}

char *crema_blob_shape_string(const crema_blob *b, char *buf, size_t size) {
  size_t n = 0;
  buf[0] = '\0';
  for (int i = 0; i < b->num_axes && n < size; i++)
    n += (size_t)snprintf(buf + n, size - n, "%d ", b->shape[i]);
  if (n < size) snprintf(buf + n, size - n, "(%zu)", b->count);
  return buf;
}

void crema_blob_zero_data(crema_blob *b) {
  if (b->count) memset(b->data, 0, b->count * sizeof(float));
}

void crema_blob_zero_diff(crema_blob *b) {
  if (b->count) memset(b->diff, 0, b->count * sizeof(float));
  b->diff_zero_pending = false;
}

int crema_blob_copy_from(crema_blob *dst, const crema_blob *src, bool with_diff, crema_error *err) {
  if (dst->count != src->count)
    return crema_fail(err, "cannot copy a blob of %zu elements into one of %zu", src->count, dst->count);
  if (src->count == 0) return 0;
  memcpy(dst->data, src->data, src->count * sizeof(float));
  if (with_diff) memcpy(dst->diff, src->diff, src->count * sizeof(float));
  return 0;
}

static double sumsq(const float *x, size_t n) {
  double s = 0;
  for (size_t i = 0; i < n; i++) s += (double)x[i] * x[i];
  return s;
}

static double asum(const float *x, size_t n) {
  double s = 0;
  for (size_t i = 0; i < n; i++) s += fabs((double)x[i]);
  return s;
}

double crema_blob_sumsq_data(const crema_blob *b) { return sumsq(b->data, b->count); }
double crema_blob_sumsq_diff(const crema_blob *b) { return sumsq(b->diff, b->count); }
double crema_blob_asum_data(const crema_blob *b) { return asum(b->data, b->count); }
double crema_blob_asum_diff(const crema_blob *b) { return asum(b->diff, b->count); }
