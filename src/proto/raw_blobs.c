/* raw_blobs.c -- see raw_blobs.h. */
#include "proto/raw_blobs.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

float crema_half_to_float(uint16_t h) {
  const uint32_t sign = (uint32_t)(h & 0x8000u) << 16;
  const int exp = (h >> 10) & 0x1f;
  const uint32_t mant = h & 0x3ffu;
  float v;
  if (exp == 0)
    v = ldexpf((float)mant, -24); /* zero and subnormals */
  else if (exp == 31)
    v = mant ? NAN : INFINITY;
  else
    v = ldexpf((float)(mant | 0x400u), exp - 25);
  uint32_t bits;
  memcpy(&bits, &v, 4);
  bits |= sign;
  memcpy(&v, &bits, 4);
  return v;
}

uint16_t crema_float_to_half(float f) {
  uint32_t x;
  memcpy(&x, &f, 4);
  const uint16_t sign = (uint16_t)((x >> 16) & 0x8000u);
  const uint32_t ax = x & 0x7fffffffu;
  if (ax >= 0x7f800000u) return (uint16_t)(sign | 0x7c00u | (ax > 0x7f800000u ? 0x200u : 0)); /* inf, nan */
  if (ax >= 0x477ff000u) return (uint16_t)(sign | 0x7c00u); /* rounds beyond 65504: infinity */
  if (ax < 0x38800000u) { /* below the smallest normal half: subnormal, rounded to nearest even */
    const float a = fabsf(f) * 16777216.0f; /* in units of 2^-24 */
    return (uint16_t)(sign | (uint16_t)lrintf(a));
  }
  /* Normal: rebias the exponent and round the 13 dropped mantissa bits to nearest even. */
  uint32_t h = ((ax >> 13) - ((127 - 15) << 10));
  const uint32_t rest = ax & 0x1fffu;
  if (rest > 0x1000u || (rest == 0x1000u && (h & 1u))) h++;
  return (uint16_t)(sign | h);
}

static int decode_blob(Crema__BlobProto *b, const char *layer, crema_error *err) {
  if (!b->has_raw_data || (b->n_data || b->n_double_data)) return 0;
  size_t width;
  switch (b->raw_data_type) {
  case CREMA__TYPE__FLOAT16: width = 2; break;
  case CREMA__TYPE__FLOAT: width = 4; break;
  case CREMA__TYPE__DOUBLE: width = 8; break;
  default:
    return crema_fail(
        err, "layer \"%s\": a blob stores raw_data of type %d; crema reads FLOAT16, FLOAT and DOUBLE", layer,
        (int)b->raw_data_type);
  }
  if (b->raw_data.len % width)
    return crema_fail(err, "layer \"%s\": raw_data holds %zu bytes, not a whole number of %zu-byte values",
                      layer, b->raw_data.len, width);
  const size_t n = b->raw_data.len / width;
  float *v = malloc((n ? n : 1) * sizeof *v);
  if (!v) return crema_fail(err, "out of memory decoding layer \"%s\"", layer);
  const uint8_t *p = b->raw_data.data;
  for (size_t i = 0; i < n; i++, p += width) { /* little-endian, as NVIDIA Caffe writes it */
    if (width == 2) {
      v[i] = crema_half_to_float((uint16_t)(p[0] | (p[1] << 8)));
    } else if (width == 4) {
      uint32_t u = (uint32_t)p[0] | (uint32_t)p[1] << 8 | (uint32_t)p[2] << 16 | (uint32_t)p[3] << 24;
      memcpy(&v[i], &u, 4);
    } else {
      uint64_t u = 0;
      for (int k = 7; k >= 0; k--) u = u << 8 | p[k];
      double d;
      memcpy(&d, &u, 8);
      v[i] = (float)d;
    }
  }
  free(b->raw_data.data);
  b->raw_data.data = NULL;
  b->raw_data.len = 0;
  b->has_raw_data = 0;
  b->has_raw_data_type = 0;
  b->data = v;
  b->n_data = n;
  return 0;
}

int crema_net_decode_raw_blobs(Crema__NetParameter *np, crema_error *err) {
  for (size_t i = 0; i < np->n_layer; i++)
    for (size_t k = 0; k < np->layer[i]->n_blobs; k++)
      if (decode_blob(np->layer[i]->blobs[k], np->layer[i]->name ? np->layer[i]->name : "", err)) return -1;
  for (size_t i = 0; i < np->n_layers; i++)
    for (size_t k = 0; k < np->layers[i]->n_blobs; k++)
      if (decode_blob(np->layers[i]->blobs[k], np->layers[i]->name ? np->layers[i]->name : "", err))
        return -1;
  return 0;
}

static int encode_blob(Crema__BlobProto *b, crema_error *err) {
  const size_t n = b->n_data ? b->n_data : b->n_double_data;
  if (!n) return 0;
  uint8_t *raw = malloc(2 * n);
  if (!raw) return crema_fail(err, "out of memory");
  for (size_t i = 0; i < n; i++) {
    const uint16_t h = crema_float_to_half(b->n_data ? b->data[i] : (float)b->double_data[i]);
    raw[2 * i] = (uint8_t)(h & 0xff);
    raw[2 * i + 1] = (uint8_t)(h >> 8);
  }
  free(b->data);
  free(b->double_data);
  b->data = NULL;
  b->double_data = NULL;
  b->n_data = b->n_double_data = 0;
  free(b->raw_data.data);
  b->raw_data.data = raw;
  b->raw_data.len = 2 * n;
  b->has_raw_data = 1;
  b->raw_data_type = CREMA__TYPE__FLOAT16;
  b->has_raw_data_type = 1;
  return 0;
}

int crema_net_encode_fp16(Crema__NetParameter *np, crema_error *err) {
  for (size_t i = 0; i < np->n_layer; i++)
    for (size_t k = 0; k < np->layer[i]->n_blobs; k++)
      if (encode_blob(np->layer[i]->blobs[k], err)) return -1;
  for (size_t i = 0; i < np->n_layers; i++)
    for (size_t k = 0; k < np->layers[i]->n_blobs; k++)
      if (encode_blob(np->layers[i]->blobs[k], err)) return -1;
  return 0;
}
