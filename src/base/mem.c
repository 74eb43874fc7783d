/* madvise, mmap's MAP_ANONYMOUS and MADV_HUGEPAGE are outside POSIX. */
#define _DEFAULT_SOURCE
#include "base/mem.h"

#include <stdint.h>
#include <stdlib.h>
#include <sys/mman.h>
#include <unistd.h>

/* Blocks of at least this many bytes are mapped on their own, starting on a 2 MB boundary,
 * and ask for transparent huge pages (where the kernel gives them on request, Debian's
 * default): one TLB entry then covers 2 MB where it covered 4 KB, and first touching a 2 MB
 * page costs one fault instead of 512. The first took GoogLeNet's training step (batch 10, one
 * thread, a virtual AMD EPYC) from 1.10 to 0.68 s: its 1x1 convolutions, copies and pooling
 * had spent much of their time on TLB misses. The second took CaffeNet's finetune set-up (233
 * MB of weights, copied once, plus the activations) from 0.67 to 0.42 s. A calloc'd block
 * is not aligned to 2 MB, so only the whole huge pages inside it could be huge: none of a
 * 2-4 MB block, most of which are activations. Pages still become resident only when
 * written: a buffer nothing writes costs nothing.
 *
 * A block's last part that does not fill a 2 MB page stayed in 4 KB pages: 1.7 MB of each of
 * ResNet-50's 7.7 MB res4 activations at batch 10, 1.9 MB of each 3.8 MB res5 one. Those
 * tails cost the layers that stream them as much again: ResNet-50's BatchNorm and Eltwise
 * took 45% and 30% less time once the tails were huge pages too (one thread, batch 10,
 * 1448-1557 -> 1250-1349 ms for the whole step). So a tail of half a huge page or more is
 * mapped as a whole one; the rest of that page stays unused, under 1 MB a block, and
 * becomes resident when the tail is first written (ResNet-50's training peak 2218 -> 2277
 * MB). Rounding every tail up gained no more and cost twice the memory; mapping blocks of
 * 1-2 MB as huge pages gained nothing. */
#define HUGE_MIN ((size_t)2 << 20)
#define HUGE_PAGE ((uintptr_t)2 << 20)

/* Under AddressSanitizer every block stays with the allocator, which guards its ends. */
#if !CREMA_ASAN && defined(MADV_HUGEPAGE) && defined(MAP_ANONYMOUS)
#define MAP_BIG 1
#else
#define MAP_BIG 0
#endif

/* Each block keeps two words just below the address it returns: where its memory starts
 * and, for a block mapped on its own, the mapping's length (0 for one from calloc). */
enum { HEADER = 2 * sizeof(uintptr_t) };

static void *with_header(unsigned char *start, uintptr_t a, size_t mapped) {
  ((void **)a)[-1] = start;
  ((size_t *)a)[-2] = mapped;
  return (void *)a;
}

#if MAP_BIG
/* A fresh anonymous mapping (zero-filled by the kernel) of one page for the header and then
 * the block, the block on a 2 MB boundary and, when its last part fills half a huge page or
 * more, reaching to the next one (above); the slack mapped to find that boundary is unmapped
 * again. A size that would wrap round gives NULL. */
static void *map_block(size_t rounded) {
  const uintptr_t page = (uintptr_t)sysconf(_SC_PAGESIZE);
  const size_t tail = rounded & (HUGE_PAGE - 1);
  const size_t body =
      tail >= HUGE_PAGE / 2 ? rounded - tail + HUGE_PAGE : (rounded + page - 1) & ~(size_t)(page - 1);
  if (body < rounded || body > SIZE_MAX - HUGE_PAGE - page) return NULL;
  const size_t len = page + body + HUGE_PAGE;
  unsigned char *raw = mmap(NULL, len, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
  if (raw == MAP_FAILED) return NULL;
  const uintptr_t a = ((uintptr_t)raw + page + HUGE_PAGE - 1) & ~(HUGE_PAGE - 1);
  unsigned char *start = (unsigned char *)(a - page), *end = (unsigned char *)(a + body);
  if (start > raw) (void)munmap(raw, (size_t)(start - raw));
  if (raw + len > end) (void)munmap(end, (size_t)(raw + len - end));
  (void)madvise((void *)a, body, MADV_HUGEPAGE);
  return with_header(start, a, page + body);
}
#endif

/* calloc, not aligned_alloc + memset: large blocks come straight from the kernel already
 * zero, so their pages cost no memory until written. A diff that nothing writes (a data
 * blob's, a test net's activations') then never adds to the resident set, and allocating a
 * net's parameters does not first write them all. */
void *crema_aligned_alloc(size_t n) {
  size_t rounded = (n + CREMA_ALIGN - 1) / CREMA_ALIGN * CREMA_ALIGN;
  if (rounded == 0) rounded = CREMA_ALIGN;
  if (rounded < n || rounded > SIZE_MAX - CREMA_ALIGN - HEADER) return NULL;
#if MAP_BIG
  if (rounded >= HUGE_MIN) {
    void *p = map_block(rounded);
    if (p) return p;
  }
#endif
  unsigned char *raw = calloc(1, rounded + CREMA_ALIGN + HEADER);
  if (!raw) return NULL;
  const uintptr_t a = ((uintptr_t)(raw + HEADER) + CREMA_ALIGN - 1) & ~(uintptr_t)(CREMA_ALIGN - 1);
  return with_header(raw, a, 0);
}

void crema_aligned_free(void *p) {
  if (!p) return;
  void *start = ((void **)p)[-1];
  const size_t mapped = ((size_t *)p)[-2];
#if MAP_BIG
  if (mapped) {
    (void)munmap(start, mapped);
    return;
  }
#endif
  (void)mapped;
  free(start);
}
