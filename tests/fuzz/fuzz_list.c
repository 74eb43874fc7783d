/* Fuzz target: "<path> <label>" list files (convert_imageset, ImageData) -> crema_image_list_read,
 * then a seeded shuffle of the entries. */
#include <stdlib.h>

#include "data/list_file.h"
#include "fuzz_util.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
  fuzz_init();
  const char *path = fuzz_write_temp(data, size, ".txt");
  if (!path) return 0;
  crema_image_list list;
  crema_error err;
  if (crema_image_list_read(path, &list, &err) == 0) {
    uint32_t *idx = malloc(sizeof *idx * (list.count ? list.count : 1));
    if (idx) {
      for (size_t i = 0; i < list.count; i++) idx[i] = (uint32_t)i;
      crema_shuffle_indices(idx, list.count, 1, 0);
      free(idx);
    }
    crema_image_list_free(&list);
  }
  return 0;
}
