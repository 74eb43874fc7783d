/* mem.h -- aligned allocation and checked allocation helpers. */
#ifndef CREMA_BASE_MEM_H
#define CREMA_BASE_MEM_H

#include <stddef.h>

#define CREMA_ALIGN 64

/* 64-byte aligned, zero-filled buffer of n bytes (n may be 0: returns a valid pointer); from
 * 2 MB on, a mapping of its own on a 2 MB boundary that asks for huge pages (mem.c says why).
 * NULL when out of memory. Free with crema_aligned_free. */
void *crema_aligned_alloc(size_t n);
void crema_aligned_free(void *p);

#define CREMA_ARRAY_LEN(a) (sizeof(a) / sizeof((a)[0]))

#endif
