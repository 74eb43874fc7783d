/* cmd_finetune.c -- `crema finetune`: from a base model and an image folder to a run folder
 * with a trained, deployable model.
 *
 *   crema finetune --model BASE.prototxt [--weights BASE.caffemodel] --data DIR --out RUN_DIR
 *   crema finetune --resume RUN_DIR
 *
 * Everything is first built in RUN_DIR.partial-<pid> (lists, LMDBs, mean, nets, solver,
 * preprocessing) and renamed to RUN_DIR only when complete; on an error the partial folder
 * is removed. Training then runs inside RUN_DIR (paths in its files are relative to it, as
 * `cd RUN_DIR && caffe train --solver solver.prototxt` expects). */
#define _XOPEN_SOURCE 700
#include <errno.h>
#include <ftw.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "base/log.h"
#include "common/flags.h"
#include "common/tool.h"
#include "crema/commands.h"
#include "crema/ft_log.h"
#include "crema/ft_setup.h"
#include "crema/ft_train.h"
#include "proto/io.h"

static int rm_entry(const char *path, const struct stat *st, int flag, struct FTW *ftw) {
  (void)st;
  (void)flag;
  (void)ftw;
  remove(path);
  return 0;
}

static void remove_tree(const char *path) { nftw(path, rm_entry, 16, FTW_DEPTH | FTW_PHYS); }

/* An absolute path for an existing file (NULL name -> NULL). */
static char *abs_path(const char *p, crema_error *err, int *bad) {
  if (!p) return NULL;
  char *r = realpath(p, NULL);
  if (!r) {
    crema_fail(err, "\"%s\": %s", p, strerror(errno));
    *bad = 1;
  }
  return r;
}

/* How many times the flag `name` was given. */
static int seen(const crema_flag *flags, int n, const char *name) {
  for (int i = 0; i < n; i++)
    if (!strcmp(flags[i].name, name)) return flags[i].seen;
  return 0;
}

/* The command line, for RUN_DIR/command.txt. */
static int write_command(const char *tmp, int argc, char **argv, crema_error *err) {
  size_t n = 32;
  for (int i = 0; i < argc; i++) n += strlen(argv[i]) + 3;
  char *s = malloc(n), path[PATH_MAX];
  if (!s) return crema_fail(err, "out of memory");
  size_t k = (size_t)snprintf(s, n, "crema");
  for (int i = 0; i < argc; i++) k += (size_t)snprintf(s + k, n - k, " %s", argv[i]);
  k += (size_t)snprintf(s + k, n - k, "\n");
  snprintf(path, sizeof path, "%s/command.txt", tmp);
  int rc = crema_write_file_atomic(path, s, k, err);
  free(s);
  return rc;
}

static int start_training(const char *run_dir, const char *weights, bool resume, ft_log *log) {
  crema_error err;
  if (chdir(run_dir)) {
    ft_log_stop(log);
    fprintf(stderr, "error: cannot enter \"%s\": %s\n", run_dir, strerror(errno));
    return 1;
  }
  char *snap = NULL;
  if (resume) {
    snap = ft_newest_snapshot();
    if (!snap) {
      ft_log_stop(log);
      fprintf(
          stderr,
          "error: no snapshot in \"%s/snapshots\" to resume from; start the run again with crema finetune\n",
          run_dir);
      return 1;
    }
  }
  if (!log->active) {
    const bool tty = isatty(STDERR_FILENO) == 1;
    if (ft_log_start(log, "train.log", !tty, &err)) {
      free(snap);
      fprintf(stderr, "error: %s\n", err.msg);
      return 1;
    }
  }
  crema_tool_log_blas();
  ft_train_options to = {run_dir, weights, snap, log->user ? log->user : stdout, !log->echo_all};
  int rc = ft_train(&to);
  free(snap);
  ft_log_stop(log);
  return rc;
}

int crema_cmd_finetune(int argc, char **argv) {
  crema_tool_init(argc + 1, argv - 1);
  ft_flags f;
  memset(&f, 0, sizeof f);
  f.head_suffix = "_ft";
  f.val_split = 0.2;
  f.lr_boost = 10;
  f.scale = 1;
  f.seed = 1;
  f.batch = 32;
  f.epochs = 10;
  crema_flag flags[] = {
      {"model", CREMA_FLAG_STRING, &f.model, "base net: deploy.prototxt or train_val.prototxt (required)", 0},
      {"weights", CREMA_FLAG_STRING, &f.weights, "base caffemodel, copied by layer name (none: from scratch)",
       0},
      {"data", CREMA_FLAG_STRING, &f.data, "image folder DIR/<class>/*.jpg (or DIR/train + DIR/val)", 0},
      {"out", CREMA_FLAG_STRING, &f.out, "run folder to create (must not exist)", 0},
      {"val-split", CREMA_FLAG_FLOAT, &f.val_split, "share of each class held out for validation", 0},
      {"train-list", CREMA_FLAG_STRING, &f.train_list, "Caffe list file \"path label\" (instead of --data)",
       0},
      {"val-list", CREMA_FLAG_STRING, &f.val_list, "Caffe list file for validation", 0},
      {"root", CREMA_FLAG_STRING, &f.root, "folder the list files' paths are relative to", 0},
      {"train-db", CREMA_FLAG_STRING, &f.train_db, "existing training LMDB (instead of --data)", 0},
      {"val-db", CREMA_FLAG_STRING, &f.val_db, "existing validation LMDB", 0},
      {"labels", CREMA_FLAG_STRING, &f.labels, "class names, one per line (with lists or LMDBs)", 0},
      {"classes", CREMA_FLAG_INT, &f.classes, "number of classes (with LMDBs and no --labels)", 0},
      {"head", CREMA_FLAG_STRING, &f.head, "classifier layer(s) to replace, comma-separated (default: found)",
       0},
      {"head-suffix", CREMA_FLAG_STRING, &f.head_suffix, "appended to each replaced head's name", 0},
      {"lr-boost", CREMA_FLAG_FLOAT, &f.lr_boost, "heads' lr_mult factor (bias: twice this)", 0},
      {"freeze-through", CREMA_FLAG_STRING, &f.freeze_through, "freeze every layer up to and including LAYER",
       0},
      {"train", CREMA_FLAG_STRING, &f.train, "all, or head (train only the new heads)", 0},
      {"freeze", CREMA_FLAG_STRING, &f.freeze, "layers to freeze: NAME or PREFIX*, comma-separated", 0},
      {"solver", CREMA_FLAG_STRING, &f.solver, "base solver to adapt (default: crema's recipe)", 0},
      {"lr", CREMA_FLAG_FLOAT, &f.lr, "base learning rate (default 0.001, or the base solver's x 0.1)", 0},
      {"batch", CREMA_FLAG_INT, &f.batch, "training batch size", 0},
      {"epochs", CREMA_FLAG_INT, &f.epochs, "passes over the training images", 0},
      {"patience", CREMA_FLAG_INT, &f.patience, "stop after N epochs without a better val accuracy (0 = off)",
       0},
      {"schedule", CREMA_FLAG_STRING, &f.schedule, "learning-rate schedule: step or cosine", 0},
      {"seed", CREMA_FLAG_INT, &f.seed, "seed of the split, the shuffle and training", 0},
      {"mean", CREMA_FLAG_STRING, &f.mean, "auto (computed on the new images) or none", 0},
      {"mean-file", CREMA_FLAG_STRING, &f.mean_file, "mean .binaryproto to subtract", 0},
      {"mean-value", CREMA_FLAG_STRING, &f.mean_value, "mean per channel (B,G,R) to subtract", 0},
      {"scale", CREMA_FLAG_FLOAT, &f.scale, "multiply pixels (after the mean) by this", 0},
      {"resize", CREMA_FLAG_STRING, &f.resize, "resize images to S or HxW before cropping", 0},
      {"crop", CREMA_FLAG_INT, &f.crop, "crop size (default: the net's input size)", 0},
      {"mirror", CREMA_FLAG_BOOL, &f.mirror, "random left-right flips in training (default: colour nets)", 0},
      {"gray", CREMA_FLAG_BOOL, &f.gray, "grey images (train_val bases; deploy nets say it themselves)", 0},
      {"caffe", CREMA_FLAG_BOOL, &f.caffe, "write only what BVLC Caffe reads", 0},
      {"dry-run", CREMA_FLAG_BOOL, &f.dry_run, "prepare RUN_DIR and print the training command, do not train",
       0},
      {"resume", CREMA_FLAG_STRING, &f.resume, "continue RUN_DIR from its newest snapshot", 0},
  };
  const int n_flags = (int)(sizeof flags / sizeof flags[0]);
  static const char usage[] = "usage: crema finetune --model BASE.prototxt [--weights BASE.caffemodel] "
                              "--data DIR --out RUN_DIR [flags]\n"
                              "       crema finetune --resume RUN_DIR\n\n";
  char *pos[1];
  int n_pos = 0;
  int rc = crema_flags_command(argc, argv, usage, flags, n_flags, pos, 0, 0, &n_pos);
  if (rc >= 0) return rc;
  f.scale_seen = seen(flags, n_flags, "scale");
  f.crop_seen = seen(flags, n_flags, "crop");
  f.mirror_seen = seen(flags, n_flags, "mirror");
  ft_log log;
  memset(&log, 0, sizeof log);
  if (f.resume) return start_training(f.resume, NULL, true, &log);

  if (!f.model) return crema_flags_missing("--model", usage, flags, n_flags);
  if (!f.out) return crema_flags_missing("--out", usage, flags, n_flags);
  const int sources = (f.data != NULL) + (f.train_list || f.val_list) + (f.train_db || f.val_db);
  if (sources != 1) {
    fprintf(stderr, "error: give the images as one of --data DIR, --train-list + --val-list, or --train-db + "
                    "--val-db\n");
    return 2;
  }
  if ((f.train_list && !f.val_list) || (!f.train_list && f.val_list) || (f.train_db && !f.val_db) ||
      (!f.train_db && f.val_db)) {
    fprintf(stderr, "error: give both the training and the validation list (or LMDB)\n");
    return 2;
  }
  if (f.batch <= 0 || f.epochs <= 0 || f.patience < 0 || f.batch > 100000 || f.epochs > 100000) {
    fprintf(stderr, "error: --batch and --epochs must be positive, --patience >= 0\n");
    return 2;
  }
  if (f.caffe && f.patience) {
    fprintf(stderr,
            "error: --patience (early stopping) is crema's own; BVLC Caffe does not have it (drop --caffe "
            "or --patience)\n");
    return 2;
  }
  if (!f.weights) CREMA_WARN("No --weights: training %s from its fillers (from scratch)", f.model);
  crema_error err = {{0}};
  int bad = 0;
  char *model = abs_path(f.model, &err, &bad);
  char *weights = bad ? NULL : abs_path(f.weights, &err, &bad);
  char *data = bad ? NULL : abs_path(f.data, &err, &bad);
  char *tl = bad ? NULL : abs_path(f.train_list, &err, &bad);
  char *vl = bad ? NULL : abs_path(f.val_list, &err, &bad);
  char *root = bad ? NULL : abs_path(f.root, &err, &bad);
  char *tdb = bad ? NULL : abs_path(f.train_db, &err, &bad);
  char *vdb = bad ? NULL : abs_path(f.val_db, &err, &bad);
  char *labels = bad ? NULL : abs_path(f.labels, &err, &bad);
  char *mean_file = bad ? NULL : abs_path(f.mean_file, &err, &bad);
  char *solver = bad ? NULL : abs_path(f.solver, &err, &bad);
  char tmp[PATH_MAX - 512];
  snprintf(tmp, sizeof tmp, "%s.partial-%ld", f.out, (long)getpid());
  struct stat st;
  int status = 0;
  ft_setup_out so;
  memset(&so, 0, sizeof so);
  if (strlen(f.out) > 2048) {
    fprintf(stderr, "error: --out path too long\n");
    status = 1;
  } else if (bad) {
    fprintf(stderr, "error: %s\n", err.msg);
    status = 1;
  } else if (stat(f.out, &st) == 0) {
    fprintf(stderr, "error: \"%s\" already exists; choose another --out, or continue it with --resume %s\n",
            f.out, f.out);
    status = 1;
  } else if (mkdir(tmp, 0755)) {
    fprintf(stderr, "error: cannot create \"%s\": %s\n", tmp, strerror(errno));
    status = 1;
  } else {
    char lp[PATH_MAX];
    snprintf(lp, sizeof lp, "%s/train.log", tmp);
    const bool tty = isatty(STDERR_FILENO) == 1;
    if (ft_log_start(&log, lp, !tty, &err)) {
      fprintf(stderr, "error: %s\n", err.msg);
      status = 1;
    } else if (ft_setup_run(&f, tmp, model, solver, data, tl, vl, root, tdb, vdb, labels, mean_file, &so,
                            &err) ||
               write_command(tmp, argc, argv, &err)) {
      CREMA_ERROR_LOG("%s", err.msg);
      ft_log_stop(&log);
      fprintf(stderr, "error: %s\n", err.msg);
      status = 1;
    } else if (rename(tmp, f.out)) {
      ft_log_stop(&log);
      fprintf(stderr, "error: cannot rename \"%s\" to \"%s\": %s\n", tmp, f.out, strerror(errno));
      status = 1;
    }
    if (status) remove_tree(tmp);
  }
  if (!status) {
    FILE *u = log.user ? log.user : stderr;
    fprintf(u, "%s: %d classes, %zu training / %zu validation images; %d iterations (%d per epoch)\n", f.out,
            so.n_classes, so.n_train, so.n_val, so.max_iter, so.per_epoch);
    if (f.dry_run) {
      fprintf(u, "Dry run: wrote labels.txt, train_val.prototxt, solver.prototxt, deploy.prototxt, "
                 "preprocess.prototxt and the LMDBs. To train:\n");
      fprintf(u, "  cd %s && crema train --solver solver.prototxt%s%s\n", f.out, weights ? " --weights " : "",
              weights ? weights : "");
      ft_log_stop(&log);
    } else {
      status = start_training(f.out, weights, false, &log);
    }
  }
  ft_log_stop(&log);
  free(model);
  free(weights);
  free(data);
  free(tl);
  free(vl);
  free(root);
  free(tdb);
  free(vdb);
  free(labels);
  free(mean_file);
  free(solver);
  return status;
}
