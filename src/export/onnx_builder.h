/* onnx_builder.h -- building an ONNX GraphProto node by node (protobuf-c messages from
 * proto/onnx.proto).
 *
 * Ownership: everything the builder makes (nodes, attributes, names, copied tensors) lives in
 * its arena and goes with crema_onnx_builder_free, except float tensors added with
 * copy == false, which borrow the caller's array (it must outlive packing). Calls that
 * allocate return NULL / -1 when out of memory; the builder then stays valid for freeing. */
#ifndef CREMA_EXPORT_ONNX_BUILDER_H
#define CREMA_EXPORT_ONNX_BUILDER_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "base/error.h"
#include "proto/onnx.pb-c.h"

typedef struct crema_onnx_builder crema_onnx_builder;

crema_onnx_builder *crema_onnx_builder_new(void);
void crema_onnx_builder_free(crema_onnx_builder *b);

/* The graph being built (its arrays are set by crema_onnx_builder_finish). */
Onnx__GraphProto *crema_onnx_builder_graph(crema_onnx_builder *b);
/* Points the graph's repeated fields at the builder's lists. Call before packing. */
void crema_onnx_builder_finish(crema_onnx_builder *b);
int crema_onnx_builder_node_count(const crema_onnx_builder *b);

/* An arena copy of the formatted string. */
char *crema_onnx_str(crema_onnx_builder *b, const char *fmt, ...) __attribute__((format(printf, 2, 3)));

/* Appends node op_type named `name` with inputs in[0..n_in) and outputs out[0..n_out)
 * (strings copied into the arena). */
Onnx__NodeProto *crema_onnx_node(crema_onnx_builder *b, const char *op_type, const char *name, int n_in,
                                 const char *const *in, int n_out, const char *const *out);
int crema_onnx_attr_int(crema_onnx_builder *b, Onnx__NodeProto *n, const char *name, int64_t v);
int crema_onnx_attr_float(crema_onnx_builder *b, Onnx__NodeProto *n, const char *name, float v);
int crema_onnx_attr_ints(crema_onnx_builder *b, Onnx__NodeProto *n, const char *name, int count,
                         const int64_t *v);

/* A float initializer of shape dims[0..n_dims) with count values. copy: the data is copied
 * into the arena; otherwise borrowed. Returns its name (arena) or NULL. */
const char *crema_onnx_init_float(crema_onnx_builder *b, const char *name, int n_dims, const int64_t *dims,
                                  const float *data, size_t count, bool copy);
/* An int64 initializer (copied). */
const char *crema_onnx_init_int64(crema_onnx_builder *b, const char *name, int n_dims, const int64_t *dims,
                                  const int64_t *data, size_t count);
/* Scratch float memory in the arena (for computed tensors). */
float *crema_onnx_floats(crema_onnx_builder *b, size_t count);

/* A float tensor input or output of the graph with shape dims. */
int crema_onnx_graph_io(crema_onnx_builder *b, bool input, const char *name, int n_dims, const int *dims);

#endif
