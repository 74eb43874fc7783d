/* fuzz_util.h -- what every libFuzzer target of tests/fuzz shares. */
#ifndef CREMA_FUZZ_UTIL_H
#define CREMA_FUZZ_UTIL_H

#include <stddef.h>
#include <stdint.h>

/* Once per process: no logging, a 256 MB limit on tensors so that a net declaring huge blobs is
 * refused (as it is for users) rather than reported as out-of-memory, and a 256 kpixel image
 * limit (--max_pixels) so that large declared sizes do not slow the search down. */
void fuzz_init(void);

/* Writes data to a per-process file under /tmp (for APIs that read paths) and returns its
 * path, or NULL when it cannot be written. */
const char *fuzz_write_temp(const uint8_t *data, size_t size, const char *suffix);

#endif
