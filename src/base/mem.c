#include "base/mem.h"

#include <stdint.h>
#include <stdlib.h>

/* calloc, not aligned_alloc + memset: large blocks come straight from the kernel already
 * zero, so their pages cost no memory until written. A diff that nothing writes (a data
 * blob's, a test net's activations') then never adds to the resident set, and allocating a
 * net's parameters does not first write them all. The block starts with a pointer to what
 * calloc returned, just below the aligned address. */
void *crema_aligned_alloc(size_t n) {
  size_t rounded = (n + CREMA_ALIGN - 1) / CREMA_ALIGN * CREMA_ALIGN;
  if (rounded == 0) rounded = CREMA_ALIGN;
  const size_t header = sizeof(uintptr_t); /* room for the pointer calloc returned */
  if (rounded < n || rounded > SIZE_MAX - CREMA_ALIGN - header) return NULL;
  unsigned char *raw = calloc(1, rounded + CREMA_ALIGN + header);
  if (!raw) return NULL;
  uintptr_t a = ((uintptr_t)(raw + header) + CREMA_ALIGN - 1) & ~(uintptr_t)(CREMA_ALIGN - 1);
  ((void **)a)[-1] = raw;
  return (void *)a;
}

void crema_aligned_free(void *p) {
  if (p) free(((void **)p)[-1]);
}
