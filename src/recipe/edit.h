/* edit.h -- small in-place edits of unpacked messages, shared by the recipe's files (not a
 * public header). Every message edited here was unpacked or copied with the default
 * allocator, so strings, arrays and sub-messages are malloc'd and may be freed or replaced. */
#ifndef CREMA_RECIPE_EDIT_H
#define CREMA_RECIPE_EDIT_H

#include <stdbool.h>
#include <stddef.h>

#include "base/error.h"
#include "proto/crema.pb-c.h"

/* A deep copy of a net (NULL when out of memory). */
Crema__NetParameter *recipe_copy_net(const Crema__NetParameter *net);

/* Parses one LayerParameter from text. */
Crema__LayerParameter *recipe_layer_from_text(const char *text, crema_error *err);

/* Inserts l (ownership passes to net) before position at. -1 when out of memory (l is
 * then freed). */
int recipe_insert_layer(Crema__NetParameter *net, size_t at, Crema__LayerParameter *l, crema_error *err);
/* Removes and frees layer at. */
void recipe_remove_layer(Crema__NetParameter *net, size_t at);

/* Replaces a malloc'd string field (one without a default) with a copy of v. */
int recipe_set_string(char **field, const char *v, crema_error *err);

/* Writes s into buf with '"' and '\\' escaped, for text-format strings. */
void recipe_escape(const char *s, char *buf, size_t size);

/* Number of parameter blobs a layer of this type learns (0 for layers without any). */
int recipe_layer_num_blobs(const Crema__LayerParameter *l);
/* Makes l->param hold at least n ParamSpecs (new ones at their defaults). */
int recipe_ensure_params(Crema__LayerParameter *l, int n, crema_error *err);
/* Sets lr_mult 0 on every parameter (and use_global_stats on a BatchNorm). */
int recipe_freeze_layer(Crema__LayerParameter *l, crema_error *err);

/* Data layers: Input, Data, ImageData, HDF5Data, MemoryData, WindowData, DummyData. */
bool recipe_is_data_layer(const Crema__LayerParameter *l);
/* Index of the layer named name, -1 when absent. */
int recipe_layer_index(const Crema__NetParameter *net, const char *name);

#endif
