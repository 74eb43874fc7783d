/* io.h -- reading and writing protobuf messages in files (binary wire format or text).
 *
 * Binary files are memory-mapped read-only and unpacked straight from the mapping, so a
 * 550 MB caffemodel costs its unpacked message and nothing more; writers pack through a
 * small buffer into a temporary file beside the target, fsync it, and rename it into place,
 * so a crash never leaves a half-written file under the real name.
 * Every message returned here is freed with crema_message_free. Errors name the file. */
#ifndef CREMA_PROTO_IO_H
#define CREMA_PROTO_IO_H

#include <stdbool.h>
#include <stddef.h>

#include <protobuf-c/protobuf-c.h>

#include "base/error.h"
#include "proto/crema.pb-c.h"

/* protobuf_c_message_free_unpacked(msg, NULL); NULL is fine. */
void crema_message_free(void *msg);
/* A deep copy of m (by packing and unpacking, so it frees like any unpacked message).
 * NULL when out of memory. */
void *crema_message_copy(const ProtobufCMessage *m);

/* Reads a message of type desc from path: as text when the name ends in .prototxt, .pbtxt or
 * .txt, or when the content is not a valid binary message but looks like text; otherwise as
 * binary. An empty file is an error. */
int crema_read_message(const char *path, const ProtobufCMessageDescriptor *desc, ProtobufCMessage **out,
                       crema_error *err);
/* Binary only. A text file given here is reported as such. */
int crema_read_binary_message(const char *path, const ProtobufCMessageDescriptor *desc,
                              ProtobufCMessage **out, crema_error *err);
/* Text only. A binary file given here is reported as such. */
int crema_read_text_message(const char *path, const ProtobufCMessageDescriptor *desc, ProtobufCMessage **out,
                            crema_error *err);

/* Atomic writers: temp file in the same folder, fsync, rename over path. */
int crema_write_binary_message(const char *path, const ProtobufCMessage *msg, crema_error *err);
int crema_write_text_message(const char *path, const ProtobufCMessage *msg, crema_error *err);
/* Writes len bytes atomically to path (for CSV, npy and other outputs). */
int crema_write_file_atomic(const char *path, const void *data, size_t len, crema_error *err);

/* Reads a whole file into a malloc'd, NUL-terminated buffer (*len excludes the NUL).
 * The caller frees *out with free(). */
int crema_read_file(const char *path, char **out, size_t *len, crema_error *err);

/* Whether path names a text-format file by its extension (.prototxt, .pbtxt, .txt). */
bool crema_path_is_text(const char *path);
/* Whether the file's first 4 KB look like text (no NUL bytes, few control bytes). False when
 * the file cannot be read or is empty. */
bool crema_file_looks_like_text(const char *path);

/* Net and solver readers: text or binary (as crema_read_message), then upgraded from legacy
 * forms (V1 layers, net inputs, solver_type) with crema_upgrade_net / crema_upgrade_solver. */
int crema_read_net_param(const char *path, Crema__NetParameter **out, crema_error *err);
int crema_read_solver_param(const char *path, Crema__SolverParameter **out, crema_error *err);

#endif
