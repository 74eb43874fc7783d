/* Fuzz target: an LMDB record's bytes -> Datum (crema's own wire walker) -> pixels (decoding
 * encoded images with stb compiled in) -> the data transformer (mean values, scale, crop,
 * mirror, TRAIN-phase augmentation), as the Data layer and compute_image_mean see records. */
#include <stdlib.h>
#include <string.h>

#include "data/datum.h"
#include "data/transformer.h"
#include "fuzz_util.h"
#include "proto/textformat.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

/* One transformer per channel count: mean_value needs one value per channel (or one). */
static const char *const TRANSFORM[2] = {
    "scale: 0.5 mirror: true crop_size: 3 mean_value: 10",
    "scale: 0.5 mirror: true crop_size: 3 mean_value: 10 mean_value: 20 mean_value: 30"
    " augment { max_rotation: 10 brightness: 0.2 contrast: 0.2 min_area: 0.5 }"};

static crema_transformer *transformer(int channels) {
  static crema_transformer *t[2];
  const int k = channels == 3;
  if (!t[k]) {
    ProtobufCMessage *m = NULL;
    crema_error err;
    if (crema_text_parse(&crema__transformation_parameter__descriptor, TRANSFORM[k], strlen(TRANSFORM[k]),
                         "t", &m, &err))
      return NULL;
    if (crema_transformer_create((Crema__TransformationParameter *)m, CREMA__PHASE__TRAIN, 1, &t[k], &err))
      t[k] = NULL;
    protobuf_c_message_free_unpacked(m, NULL);
  }
  return t[k];
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
  fuzz_init();
  crema_datum_view v;
  crema_error err;
  if (crema_datum_parse(data, size, "fuzz", &v, &err)) return 0;
  crema_bytes scratch = {0};
  int c, h, w;
  const uint8_t *pixels;
  if (crema_datum_pixels(&v, CREMA_IMAGE_NATIVE, "fuzz", &scratch, &c, &h, &w, &pixels, &err) == 0) {
    float *floats = NULL;
    if (!pixels && v.n_float) {
      floats = malloc(v.n_float * sizeof *floats);
      if (floats) crema_datum_copy_floats(&v, floats);
    }
    crema_transformer *t = transformer(c);
    int oc, oh, ow;
    if (t && (pixels || floats) && crema_transformer_shape(t, c, h, w, &oc, &oh, &ow, &err) == 0) {
      float *out = malloc((size_t)oc * oh * ow * sizeof *out);
      crema_transform_work work = {0};
      if (out) (void)crema_transformer_apply(t, pixels, pixels ? NULL : floats, c, h, w, 7, &work, out, &err);
      crema_transform_work_free(&work);
      free(out);
    }
    free(floats);
  }
  crema_bytes_free(&scratch);
  return 0;
}
