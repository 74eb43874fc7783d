/* edit.h -- small in-place edits of unpacked NetParameter messages, for the export passes.
 *
 * Every message edited here was made by protobuf-c's unpacker (or crema_message_copy), so
 * everything it points to is malloc'd and freed by crema_message_free; these helpers keep it
 * that way: strings they store are malloc'd copies, layers they drop are freed. */
#ifndef CREMA_EXPORT_EDIT_H
#define CREMA_EXPORT_EDIT_H

#include <stdbool.h>
#include <stddef.h>

#include "base/error.h"
#include "proto/crema.pb-c.h"

/* Replaces *field by a malloc'd copy of value (freeing the old string). -1 when out of memory. */
int crema_edit_set_string(char **field, const char *value);
/* Frees layer i and closes the gap. */
void crema_edit_remove_layer(Crema__NetParameter *m, size_t i);
/* A new empty layer (name and type copied); NULL when out of memory. */
Crema__LayerParameter *crema_edit_new_layer(const char *name, const char *type);
/* Appends a copy of s to a repeated string field (bottom, top). -1 when out of memory. */
int crema_edit_append_string(char ***list, size_t *n, const char *s);
/* Frees every blob of the layer. */
void crema_edit_free_blobs(Crema__LayerParameter *lp);
/* Frees the include and exclude rules of the layer and its phase. */
void crema_edit_clear_rules(Crema__LayerParameter *lp);
/* Index of the layer named name, or -1. */
int crema_edit_find_layer(const Crema__NetParameter *m, const char *name);
/* A BlobProto of shape dims[0..n) holding a copy of data (count values). NULL when out of memory. */
Crema__BlobProto *crema_edit_new_blob(const int *dims, int n, const float *data, size_t count);
/* Number of values a BlobProto holds (data or double_data). */
size_t crema_edit_blob_count(const Crema__BlobProto *b);
/* Whether the layer reads blob name as a bottom. */
bool crema_edit_reads(const Crema__LayerParameter *lp, const char *name);
/* Whether the layer writes blob name as a top. */
bool crema_edit_writes(const Crema__LayerParameter *lp, const char *name);

#endif
