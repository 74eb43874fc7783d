#include "base/mem.h"

#include <stdlib.h>
#include <string.h>

void *crema_aligned_alloc(size_t n) {
  size_t rounded = (n + CREMA_ALIGN - 1) / CREMA_ALIGN * CREMA_ALIGN;
  if (rounded == 0) rounded = CREMA_ALIGN;
  void *p = aligned_alloc(CREMA_ALIGN, rounded);
  if (p) memset(p, 0, rounded);
  return p;
}

void crema_aligned_free(void *p) { free(p); }
