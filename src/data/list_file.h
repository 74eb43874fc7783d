/* list_file.h -- the "<path> <label>" list files of convert_imageset and ImageData.
 *
 * One image per line: the path, one space, an integer label. Paths may contain spaces: the
 * label is whatever follows the LAST space (as Caffe reads it). Blank lines are skipped and
 * a trailing '\r' (files written on Windows) is dropped. */
#ifndef CREMA_DATA_LIST_FILE_H
#define CREMA_DATA_LIST_FILE_H

#include <stddef.h>
#include <stdint.h>

#include "base/error.h"

typedef struct crema_list_entry {
  char *path; /* points into the list's own storage */
  int label;
} crema_list_entry;

typedef struct crema_image_list {
  crema_list_entry *entries;
  size_t count;
  char *text; /* the file's bytes; entries point into it */
} crema_image_list;

/* Reads and parses a list file. A line without a label is an error naming the file and
 * line number. An empty list is an error too. Free with crema_image_list_free. */
int crema_image_list_read(const char *path, crema_image_list *out, crema_error *err);
void crema_image_list_free(crema_image_list *list);

/* Fisher-Yates shuffle of idx[0..n) driven by a crema_rng seeded with (seed, stream). */
void crema_shuffle_indices(uint32_t *idx, size_t n, uint64_t seed, uint64_t stream);

#endif
