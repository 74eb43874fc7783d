/* madvise and MADV_HUGEPAGE are outside POSIX. */
#define _DEFAULT_SOURCE
#include "base/mem.h"

#include <stdint.h>
#include <stdlib.h>
#include <sys/mman.h>
#include <unistd.h>

/* Blocks of at least this many bytes ask for transparent huge pages (where the kernel gives
 * them on request, Debian's default): first touching a 2 MB page costs one fault instead of
 * 512, which took CaffeNet's finetune set-up (233 MB of weights, copied once, plus the
 * activations) from 0.67 to 0.42 s. Pages still become resident only when written, 2 MB at a
 * time: a buffer nothing writes still costs nothing. */
#define HUGE_MIN ((size_t)4 << 20)

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
#ifdef MADV_HUGEPAGE
  if (rounded >= HUGE_MIN) {
    const uintptr_t page = (uintptr_t)sysconf(_SC_PAGESIZE);
    const uintptr_t lo = ((uintptr_t)raw + page - 1) & ~(page - 1),
                    hi = ((uintptr_t)raw + rounded) & ~(page - 1);
    if (hi > lo) (void)madvise((void *)lo, hi - lo, MADV_HUGEPAGE);
  }
#endif
  uintptr_t a = ((uintptr_t)(raw + header) + CREMA_ALIGN - 1) & ~(uintptr_t)(CREMA_ALIGN - 1);
  ((void **)a)[-1] = raw;
  return (void *)a;
}

void crema_aligned_free(void *p) {
  if (p) free(((void **)p)[-1]);
}
