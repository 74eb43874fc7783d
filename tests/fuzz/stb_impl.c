/* stb_image and stb_image_write compiled into the fuzz build (CREMA_FUZZ), instead of Debian's
 * libstb.so, so that AddressSanitizer, UBSan and libFuzzer's coverage see inside the decoders
 * crema feeds users' files to. */
#define STB_IMAGE_IMPLEMENTATION
#define STB_IMAGE_WRITE_IMPLEMENTATION
#include <stb_image.h>
#include <stb_image_write.h>
