/* ft_data.h -- the data side of `crema finetune`: an image folder in the usual layout
 * (DIR/<class>/IMAGE, optionally DIR/train/<class> + DIR/val/<class>) scanned into
 * class names and labelled train/val lists, with a seeded stratified split. */
#ifndef CREMA_TOOLS_FT_DATA_H
#define CREMA_TOOLS_FT_DATA_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "base/error.h"

typedef struct ft_item {
  char *path; /* relative to the data set's root folder */
  int label;
} ft_item;

typedef struct ft_dataset {
  char *root; /* the folder the paths are relative to (absolute) */
  char **classes;
  int n_classes;
  ft_item *train, *val;
  size_t n_train, n_val;
  size_t ignored; /* files skipped because their extension is not an image's */
} ft_dataset;

/* Scans an image folder. With DIR/train and DIR/val sub-folders their classes are used (a
 * class in val must be in train); otherwise each class's images are shuffled with `seed`
 * and round(n * val_split) of them (at least 1 when n >= 2) go to val. Classes are sorted
 * by name (labels = index). Errors name the folder: no class folders, a class without
 * images, nothing left for val. Free with ft_dataset_free. */
int ft_scan_folder(const char *dir, double val_split, uint64_t seed, ft_dataset *out, crema_error *err);
void ft_dataset_free(ft_dataset *d);

/* Writes "path label" lines (Caffe's list format), atomically. */
int ft_write_list(const char *path, const ft_item *items, size_t n, crema_error *err);
/* Writes one class name per line, atomically. */
int ft_write_labels(const char *path, char *const *classes, int n, crema_error *err);
/* Reads labels.txt: one name per line (blank lines kept as ""), *n names. */
int ft_read_labels(const char *path, char ***names, int *n, crema_error *err);
void ft_free_labels(char **names, int n);

/* Whether a file name has an image extension stb_image decodes. */
bool ft_is_image_name(const char *name);

#endif
