/* Fuzz target: NumPy .npy bytes -> crema_npy_parse (what `crema forward --input` reads). The
 * input is copied to a buffer of exactly its size, so a read past its end is caught. */
#include <stdlib.h>
#include <string.h>

#include "common/npy.h"
#include "fuzz_util.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
  fuzz_init();
  uint8_t *copy = malloc(size ? size : 1);
  if (!copy) return 0;
  memcpy(copy, data, size);
  int n, shape[CREMA_MAX_AXES];
  float *values = NULL;
  crema_error err;
  if (crema_npy_parse(copy, size, "fuzz.npy", &n, shape, &values, &err) == 0) free(values);
  free(copy);
  return 0;
}
