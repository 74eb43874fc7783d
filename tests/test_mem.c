/* test_mem.c -- crema_aligned_alloc: every block 64-byte aligned, zero-filled and writable
 * to its last byte; blocks of 2 MB or more mapped on their own on a 2 MB boundary and marked
 * for transparent huge pages (outside AddressSanitizer builds, which keep every block with
 * the allocator); freeing returns what was mapped; impossible sizes give NULL. */
#include <check.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "base/mem.h"
#include "support/run.h"

#define MB ((size_t)1 << 20)

/* Every byte of p[0, n) reads zero; then all are written (a fault would end the test). */
static void expect_zero_and_writable(unsigned char *p, size_t n) {
  ck_assert_msg(((uintptr_t)p & (CREMA_ALIGN - 1)) == 0, "%zu-byte block at %p is not 64-byte aligned", n,
                (void *)p);
  for (size_t i = 0; i < n; i++)
    if (p[i]) ck_abort_msg("%zu-byte block: byte %zu is %d, not 0", n, i, p[i]);
  memset(p, 0xA5, n);
}

START_TEST(small_blocks) {
  const size_t sizes[] = {0, 1, 63, 64, 65, 4095, 4096, 100000, 2 * MB - 65};
  for (size_t i = 0; i < sizeof sizes / sizeof *sizes; i++) {
    unsigned char *p = crema_aligned_alloc(sizes[i]);
    ck_assert_ptr_nonnull(p);
    expect_zero_and_writable(p, sizes[i]);
    crema_aligned_free(p);
  }
  crema_aligned_free(NULL);
}
END_TEST

/* The VmFlags line of the mapping that holds p, from /proc/self/smaps ("" if not found), and
 * where that mapping ends (0 if not found). */
static void vm_flags_of(const void *p, char *out, size_t cap, uintptr_t *end) {
  out[0] = '\0';
  *end = 0;
  FILE *f = fopen("/proc/self/smaps", "r");
  if (!f) return;
  char line[512];
  int inside = 0;
  while (fgets(line, sizeof line, f)) {
    unsigned long lo, hi;
    if (sscanf(line, "%lx-%lx ", &lo, &hi) == 2) {
      inside = (uintptr_t)p >= lo && (uintptr_t)p < hi;
      if (inside) *end = hi;
    } else if (inside && !strncmp(line, "VmFlags:", 8)) {
      snprintf(out, cap, "%s", line);
      break;
    }
  }
  fclose(f);
}

START_TEST(big_blocks) {
  /* and how far each block's huge-page mapping reaches: a last part of half a huge page or
   * more is mapped as a whole one, a smaller one to its last 4 KB page */
  const size_t sizes[] = {2 * MB, 3 * MB + 5, 17 * MB + 4096, 2 * MB + 4096, 3 * MB - 4096, 3 * MB};
  const size_t reach[] = {2 * MB, 4 * MB, 18 * MB, 2 * MB + 4096, 3 * MB - 4096, 4 * MB};
  for (size_t i = 0; i < sizeof sizes / sizeof *sizes; i++) {
    unsigned char *p = crema_aligned_alloc(sizes[i]);
    ck_assert_ptr_nonnull(p);
    if (!CREMA_ASAN) {
      ck_assert_msg(((uintptr_t)p & (2 * MB - 1)) == 0, "%zu-byte block at %p is not on a 2 MB boundary",
                    sizes[i], (void *)p);
      FILE *thp = fopen("/sys/kernel/mm/transparent_hugepage/enabled", "r");
      if (thp) { /* a kernel with huge pages: the block's mapping asks for them */
        fclose(thp);
        char flags[512];
        uintptr_t end;
        vm_flags_of(p, flags, sizeof flags, &end);
        ck_assert_msg(strstr(flags, " hg") != NULL, "%zu-byte block: no huge-page advice in \"%s\"", sizes[i],
                      flags);
        ck_assert_msg(end - (uintptr_t)p == reach[i], "%zu-byte block: mapped %zu bytes, expected %zu",
                      sizes[i], (size_t)(end - (uintptr_t)p), reach[i]);
      }
    }
    expect_zero_and_writable(p, sizes[i]);
    crema_aligned_free(p);
  }
}
END_TEST

/* Virtual size from /proc/self/status, in kB (-1 where there is none). */
static long vm_size_kb(void) {
  FILE *f = fopen("/proc/self/status", "r");
  if (!f) return -1;
  char line[256];
  long kb = -1;
  while (fgets(line, sizeof line, f))
    if (sscanf(line, "VmSize: %ld kB", &kb) == 1) break;
  fclose(f);
  return kb;
}

/* A block freed gives back all it mapped, the slack around the 2 MB boundary included:
 * 300 rounds of 3 MB would otherwise leave the address space 900 MB larger. */
START_TEST(free_returns_the_mapping) {
  /* AddressSanitizer keeps freed blocks in quarantine (256 MB by default), so the address
   * space grows there by design; its leak check covers that build's frees instead. */
  if (CREMA_ASAN) return;
  unsigned char *warm = crema_aligned_alloc(3 * MB);
  ck_assert_ptr_nonnull(warm);
  crema_aligned_free(warm);
  const long before = vm_size_kb();
  if (before < 0) return; /* no /proc: nothing to measure */
  for (int r = 0; r < 300; r++) {
    unsigned char *p = crema_aligned_alloc(3 * MB + (size_t)r * 4096);
    ck_assert_ptr_nonnull(p);
    p[0] = p[3 * MB - 1] = 1;
    crema_aligned_free(p);
  }
  const long after = vm_size_kb();
  ck_assert_msg(after - before < 64 * 1024, "300 rounds of allocating and freeing 3 MB grew VmSize by %ld kB",
                after - before);
}
END_TEST

START_TEST(impossible_sizes) {
  ck_assert_ptr_null(crema_aligned_alloc(SIZE_MAX));
  ck_assert_ptr_null(crema_aligned_alloc(SIZE_MAX - 100));
}
END_TEST

int main(void) {
  Suite *s = suite_create("mem");
  TCase *tc = tcase_create("aligned_alloc");
  tcase_add_test(tc, small_blocks);
  tcase_add_test(tc, big_blocks);
  tcase_add_test(tc, free_returns_the_mapping);
  tcase_add_test(tc, impossible_sizes);
  suite_add_tcase(s, tc);
  return test_run_suite(s);
}
