/* blob_proto.h -- crema_blob <-> BlobProto (the blob message of caffemodels, binaryproto
 * mean files and solverstates). */
#ifndef CREMA_TENSOR_BLOB_PROTO_H
#define CREMA_TENSOR_BLOB_PROTO_H

#include <stdbool.h>

#include "base/error.h"
#include "proto/crema.pb-c.h"
#include "tensor/blob.h"

/* Shape of a BlobProto: its `shape` field when present, else the legacy num/channels/height/
 * width (always 4 axes, as Caffe reads them). Fails on negative dims, dims above INT_MAX or
 * more than CREMA_MAX_AXES axes. */
int crema_blob_shape_from_proto(const Crema__BlobProto *p, int *num_axes, int shape[CREMA_MAX_AXES],
                                crema_error *err);

/* Reshapes b to the proto's shape and copies its data (`data` as floats, or `double_data`
 * converted to float), and its diff (`diff` / `double_diff`) when with_diff. A data count
 * that differs from the shape's count is an error (an absent diff when with_diff too). */
int crema_blob_from_proto(crema_blob *b, const Crema__BlobProto *p, bool with_diff, crema_error *err);

/* A new BlobProto with the `shape` field set and float data (and diff when with_diff).
 * The caller frees *out with crema_message_free. */
int crema_blob_to_proto(const crema_blob *b, bool with_diff, Crema__BlobProto **out, crema_error *err);

#endif
