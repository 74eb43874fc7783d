/* summary.h -- what a net costs, worked out from its NetParameter alone: every top's shape,
 * every layer's parameter count and multiply-adds, and the activation memory, without
 * building the net or allocating a single blob (GoogLeNet's deploy net: milliseconds and a
 * few kilobytes, against seconds and gigabytes for building it).
 *
 * A pure function over the message, with one shape rule per layer type crema supports.
 * Data layers are the exception that touches the disk: a Data layer's shape comes from the
 * first record of its LMDB (and its transform's crop_size); an ImageData layer's from its
 * new_height/new_width, else from its list's first image. When a layer has no shape rule
 * (an unknown type, or a data set that cannot be read here), the summary stops at that
 * layer: `complete` is false and `why` names the layer and the reason, so callers can fall
 * back to building the net.
 *
 * Multiply-adds count the inner products of Convolution, Deconvolution and InnerProduct
 * (one multiply and one add each); other layers count 0. Activation memory is the float32
 * size of every distinct blob (in-place tops reuse their bottom's); `caffe_bytes` adds what
 * Caffe's "Memory required for data" line counts (in-place tops again, and the tops of the
 * Split layers it inserts where one blob feeds several layers).
 * The summary owns its arrays; free with crema_net_summary_free. */
#ifndef CREMA_REPORT_SUMMARY_H
#define CREMA_REPORT_SUMMARY_H

#include <stdbool.h>
#include <stdint.h>

#include "base/error.h"
#include "proto/crema.pb-c.h"
#include "tensor/blob.h"

typedef struct crema_blob_shape {
  int num_axes;
  int64_t dim[CREMA_MAX_AXES];
} crema_blob_shape;

typedef struct crema_layer_summary {
  const Crema__LayerParameter *param; /* borrowed from the NetParameter */
  int n_tops;
  crema_blob_shape *tops; /* n_tops shapes */
  bool in_place;          /* top 0 is bottom 0 */
  double params;          /* values in the layer's parameter blobs (doubles: absurd shapes cannot overflow) */
  int n_param_blobs;      /* and their shapes, in Caffe's order (weights, bias, ...) */
  crema_blob_shape param_shapes[4];
  double macs;      /* multiply-adds of one forward pass at the net's batch size */
  double top_bytes; /* float32 bytes of the new blobs this layer creates */
} crema_layer_summary;

typedef struct crema_net_summary {
  int n_layers; /* the layers of the phase, in order (only those summarised when incomplete) */
  crema_layer_summary *layers;
  double params, macs, activation_bytes, caffe_bytes;
  bool complete;
  char why[512]; /* when !complete: which layer stopped the summary and why */
} crema_net_summary;

/* Summarises the layers of `param` that the phase includes (include/exclude rules on phase,
 * with level 0 and no stages). `param` must already be upgraded (crema_upgrade_net). Fails
 * only when out of memory; a layer without a shape rule makes an incomplete summary. */
int crema_net_summarize(const Crema__NetParameter *param, Crema__Phase phase, crema_net_summary *out,
                        crema_error *err);
void crema_net_summary_free(crema_net_summary *s);

/* "10x3x224x224" (or "scalar") into buf. */
void crema_blob_shape_text(const crema_blob_shape *s, char *buf, size_t size);
/* Product of the dims, as a double (no overflow on absurd shapes). */
double crema_blob_shape_count(const crema_blob_shape *s);
/* "1.23 G", "456 M", "12.3 k", "789" */
void crema_format_count(double v, char *buf, size_t size);
/* "1.5 MB", "312 KB", "17 B" (powers of 1024) */
void crema_format_bytes(double v, char *buf, size_t size);

#endif
