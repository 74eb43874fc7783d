/* fuzz_util.c -- shared set-up of the fuzz targets (see fuzz_util.h). */
#include "fuzz_util.h"

#include <stdio.h>
#include <unistd.h>

#include "base/log.h"
#include "data/image_probe.h"
#include "tensor/blob.h"

void fuzz_init(void) {
  static int done;
  if (done) return;
  done = 1;
  crema_log_set_min_level(CREMA_LOG_ERROR + 1);
  crema_blob_set_memory_limit((size_t)256 << 20);
  crema_image_set_max_pixels(UINT64_C(1) << 18); /* 512 x 512: many decodes a second */
}

const char *fuzz_write_temp(const uint8_t *data, size_t size, const char *suffix) {
  static char path[256];
  snprintf(path, sizeof path, "/tmp/crema-fuzz-%ld%s", (long)getpid(), suffix);
  FILE *f = fopen(path, "wb");
  if (!f) return NULL;
  const size_t n = size ? fwrite(data, 1, size, f) : 0;
  if (fclose(f) != 0 || n != size) return NULL;
  return path;
}
