/* ft_setup.h -- the set-up half of `crema finetune`: everything written into the partial run
 * folder before training (labels and lists, LMDBs, mean, train_val / deploy / solver /
 * preprocess files), from the flags and the base net, through the recipe module. */
#ifndef CREMA_TOOLS_FT_SETUP_H
#define CREMA_TOOLS_FT_SETUP_H

#include <stdbool.h>
#include <stddef.h>

#include "base/error.h"

/* crema finetune's flags as parsed (cmd_finetune.c's table says what each means); the
 * *_seen fields say whether a flag with a default was given. */
typedef struct ft_flags {
  const char *model, *weights, *data, *out, *train_list, *val_list, *root, *train_db, *val_db, *labels;
  const char *head, *head_suffix, *freeze_through, *train, *freeze, *solver, *schedule, *resume;
  const char *mean, *mean_file, *mean_value, *resize;
  double val_split, lr, lr_boost, scale;
  long seed, batch, epochs, patience, crop, classes;
  bool caffe, dry_run, gray, mirror;
  int scale_seen, crop_seen, mirror_seen;
} ft_flags;

/* What the set-up found, for the summary line. */
typedef struct ft_setup_out {
  int n_classes;
  size_t n_train, n_val;
  int max_iter, per_epoch;
} ft_setup_out;

/* Builds every file of the run in `tmp` (which exists and is removed by the caller on
 * failure). Paths are absolute (or NULL when not given). Errors name the file or folder. */
int ft_setup_run(const ft_flags *f, const char *tmp, const char *model, const char *solver_path,
                 const char *data, const char *train_list, const char *val_list, const char *root,
                 const char *train_db, const char *val_db, const char *labels, const char *mean_file,
                 ft_setup_out *so, crema_error *err);

/* Splits a comma-separated list in place; returns the number of items (at most max). */
int ft_split_list(char *s, char **items, int max);

#endif
