/* raw_blobs.h -- NVIDIA Caffe's raw blob storage (BlobProto.raw_data + raw_data_type), as in
 * half-precision caffemodels that OpenCV's dnn also reads.
 *
 * On load, crema_read_net_param decodes every raw blob (FLOAT16, FLOAT, DOUBLE) into the
 * ordinary float `data` field, so the rest of crema never sees raw_data. For writing,
 * crema_net_encode_fp16 turns every blob's float data into FLOAT16 raw_data (half the
 * bytes; values rounded to nearest even, beyond 65504 saturated to infinity as IEEE does). */
#ifndef CREMA_PROTO_RAW_BLOBS_H
#define CREMA_PROTO_RAW_BLOBS_H

#include <stdint.h>

#include "base/error.h"
#include "proto/crema.pb-c.h"

float crema_half_to_float(uint16_t h);
uint16_t crema_float_to_half(float f);

/* Decodes the raw blobs of every layer (and V1 layer) of np in place. Errors name the layer
 * (unsupported type, a byte count that is not a whole number of values). */
int crema_net_decode_raw_blobs(Crema__NetParameter *np, crema_error *err);
/* Re-encodes every blob of np with float or double data as FLOAT16 raw_data. */
int crema_net_encode_fp16(Crema__NetParameter *np, crema_error *err);

#endif
