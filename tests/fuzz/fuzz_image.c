/* Fuzz target: image files (the bytes of a user's JPEG/PNG/BMP/GIF/PNM, or of anything else)
 * -> crema_image_decode (native, grey or colour, picked by the last byte) -> resize -> Caffe's
 * CHW BGR layout. stb_image is
 * compiled into this target, so the sanitizers see inside its decoders. */
#include <stdlib.h>

#include "data/image.h"
#include "fuzz_util.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
  fuzz_init();
  static const crema_image_mode modes[3] = {CREMA_IMAGE_NATIVE, CREMA_IMAGE_GRAY, CREMA_IMAGE_COLOR};
  (void)crema_image_native_channels(data, size);
  crema_image img = {0}, small = {0};
  crema_error err;
  if (crema_image_decode(data, size, modes[size ? data[size - 1] % 3 : 0], "fuzz", &img, &err)) return 0;
  if (crema_image_resize(&img, 5, 3, &small, &err) == 0) {
    uint8_t chw[5 * 3 * 3];
    crema_image_to_chw_bgr(&small, chw);
    crema_image_free(&small);
  }
  crema_image_free(&img);
  return 0;
}
