/* mem.h -- aligned allocation and checked allocation helpers. */
#ifndef CREMA_BASE_MEM_H
#define CREMA_BASE_MEM_H

#include <stddef.h>

#define CREMA_ALIGN 64

/* 1 in builds under AddressSanitizer, where every block stays with its allocator. */
#if defined(__SANITIZE_ADDRESS__)
#define CREMA_ASAN 1
#elif defined(__has_feature)
#if __has_feature(address_sanitizer)
#define CREMA_ASAN 1
#endif
#endif
#ifndef CREMA_ASAN
#define CREMA_ASAN 0
#endif

/* 64-byte aligned, zero-filled buffer of n bytes (n may be 0: returns a valid pointer); from
 * 2 MB on, a mapping of its own on a 2 MB boundary that asks for huge pages (mem.c says why).
 * NULL when out of memory. Free with crema_aligned_free. */
void *crema_aligned_alloc(size_t n);
void crema_aligned_free(void *p);

#define CREMA_ARRAY_LEN(a) (sizeof(a) / sizeof((a)[0]))

#endif
