/* ft_setup.c -- see ft_setup.h. */
#include "crema/ft_setup.h"

#include <errno.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "base/log.h"
#include "crema/ft_data.h"
#include "data/convert.h"
#include "data/list_file.h"
#include "data/lmdb_db.h"
#include "data/mean.h"
#include "data/preprocess.h"
#include "proto/io.h"
#include "recipe/recipe.h"

/* Splits a comma-separated list in place. */
int ft_split_list(char *s, char **items, int max) {
  int n = 0;
  for (char *tok = strtok(s, ","); tok && n < max; tok = strtok(NULL, ","))
    if (*tok) items[n++] = tok;
  return n;
}

static void convert_skipped(void *ctx, const char *path, const char *reason) {
  (void)ctx;
  CREMA_WARN("Skipping unreadable image %s: %s", path, reason);
}

/* Builds an LMDB from a list file; *written gets the record count. */
static int build_db(const char *root, const char *list, const char *db, bool gray, bool shuffle,
                    uint64_t seed, int rh, int rw, size_t *written, crema_error *err) {
  crema_convert_options co;
  memset(&co, 0, sizeof co);
  co.root = root;
  co.list_file = list;
  co.db_path = db;
  co.gray = gray;
  co.shuffle = shuffle;
  co.seed = seed;
  co.check_size = true;
  co.resize_height = rh;
  co.resize_width = rw;
  co.skipped = convert_skipped;
  crema_convert_result res;
  if (crema_convert_imageset(&co, &res, err)) return -1;
  CREMA_INFO("%s: %zu images (%zu skipped)", db, res.written, res.skipped);
  *written = res.written;
  return 0;
}

static int db_count(const char *path, size_t *n, crema_error *err) {
  crema_lmdb *db;
  if (crema_lmdb_open(path, &db, err)) return -1;
  *n = (size_t)crema_lmdb_count(db);
  crema_lmdb_close(db);
  if (*n == 0) return crema_fail(err, "LMDB \"%s\" has no records", path);
  return 0;
}

/* Number of classes in a list file: max label + 1. */
static int list_classes(const char *path, size_t *lines, int *classes, crema_error *err) {
  crema_image_list l;
  if (crema_image_list_read(path, &l, err)) return -1;
  int mx = -1;
  for (size_t i = 0; i < l.count; i++) {
    if (l.entries[i].label < 0) {
      crema_image_list_free(&l);
      return crema_fail(err, "%s: negative label %d on line %zu", path, l.entries[i].label, i + 1);
    }
    if (l.entries[i].label > mx) mx = l.entries[i].label;
  }
  *lines = l.count;
  *classes = mx + 1;
  crema_image_list_free(&l);
  return 0;
}

static int write_text_msg(const char *dir, const char *name, const ProtobufCMessage *m, crema_error *err) {
  char path[PATH_MAX];
  snprintf(path, sizeof path, "%s/%s", dir, name);
  return crema_write_text_message(path, m, err);
}

/* The transform of the base train_val's TRAIN data layer (a copy), or an empty one. */
static Crema__TransformationParameter *base_transform(const Crema__NetParameter *base) {
  for (size_t i = 0; i < base->n_layer; i++) {
    const Crema__LayerParameter *l = base->layer[i];
    if (l->type && (!strcmp(l->type, "Data") || !strcmp(l->type, "ImageData")) && l->transform_param)
      return crema_message_copy(&l->transform_param->base);
  }
  Crema__TransformationParameter t = CREMA__TRANSFORMATION_PARAMETER__INIT;
  return crema_message_copy(&t.base);
}

static void clear_mean(Crema__TransformationParameter *t) {
  free(t->mean_file);
  t->mean_file = NULL;
  free(t->mean_value);
  t->mean_value = NULL;
  t->n_mean_value = 0;
}

int ft_setup_run(const ft_flags *f, const char *tmp, const char *model, const char *solver_path,
                 const char *data, const char *train_list, const char *val_list, const char *root,
                 const char *train_db, const char *val_db, const char *labels, const char *mean_file,
                 ft_setup_out *so, crema_error *err) {
  int rc = -1;
  Crema__NetParameter *base = NULL, *tv = NULL, *ft = NULL, *fz = NULL, *dep = NULL;
  Crema__SolverParameter *base_solver = NULL, *solver = NULL;
  Crema__TransformationParameter *tr = NULL;
  ft_dataset ds;
  memset(&ds, 0, sizeof ds);
  char **heads = NULL, **label_names = NULL, *base_mean = NULL;
  int n_heads = 0, n_labels = 0;
  char path[PATH_MAX], path2[PATH_MAX];

  if (crema_read_net_param(model, &base, err)) goto done;
  if (solver_path && crema_read_solver_param(solver_path, &base_solver, err)) goto done;
  const bool deploy = crema_recipe_is_deploy(base);
  /* input size, crop and resize */
  int c = f->gray ? 1 : 3, h = 0, w = 0, crop = 0, rh = 0, rw = 0;
  tr = base_transform(base);
  if (!tr) {
    crema_fail(err, "out of memory");
    goto done;
  }
  if (deploy) {
    if (crema_recipe_input_shape(base, &c, &h, &w, err)) goto done;
    if (c != 1 && c != 3) {
      crema_fail(err,
                 "%s: the net's input has %d channels; crema finetune reads grey (1) or colour (3) images",
                 model, c);
      goto done;
    }
    crop = h == w && h >= 100 ? h : 0;
  } else {
    crop = (int)tr->crop_size;
  }
  if (f->crop_seen) crop = (int)f->crop;
  if (f->resize) {
    if (sscanf(f->resize, "%dx%d", &rh, &rw) != 2) rw = rh = atoi(f->resize);
    if (rh <= 0 || rw <= 0 || rh > 65536 || rw > 65536) {
      crema_fail(err, "--resize %s: give a size (256) or HEIGHTxWIDTH (256x320)", f->resize);
      goto done;
    }
  } else if (crop) {
    rh = rw = crop >= 200 ? 256 : crop * 8 / 7;
  } else if (deploy) {
    rh = h;
    rw = w;
  } else {
    crema_fail(err, "%s has no crop_size, so the image size is unknown; give --resize (e.g. --resize 28)",
               model);
    goto done;
  }
  if (crop > rh || crop > rw) {
    crema_fail(err, "crop %d is larger than the resized %dx%d images; raise --resize or lower --crop", crop,
               rh, rw);
    goto done;
  }
  if (deploy && ((crop ? crop : rh) != h || (crop ? crop : rw) != w))
    CREMA_WARN("The net's input is %dx%d but the images will be %dx%d", h, w, crop ? crop : rh,
               crop ? crop : rw);
  /* the size the net is trained (and deployed) at */
  h = crop ? crop : rh;
  w = crop ? crop : rw;
  const bool gray = c == 1;

  /* data */
  snprintf(path, sizeof path, "%s/labels.txt", tmp);
  if (data) {
    if (ft_scan_folder(data, f->val_split, (uint64_t)f->seed, &ds, err)) goto done;
    CREMA_INFO("Data %s: %d classes, %zu training and %zu validation images", data, ds.n_classes, ds.n_train,
               ds.n_val);
    if (ft_write_labels(path, ds.classes, ds.n_classes, err)) goto done;
    so->n_classes = ds.n_classes;
    snprintf(path, sizeof path, "%s/train.txt", tmp);
    snprintf(path2, sizeof path2, "%s/val.txt", tmp);
    if (ft_write_list(path, ds.train, ds.n_train, err) || ft_write_list(path2, ds.val, ds.n_val, err))
      goto done;
    train_list = NULL; /* the lists just written */
  } else {
    int k = 0;
    if (labels) {
      if (ft_read_labels(labels, &label_names, &n_labels, err)) goto done;
      k = n_labels;
    }
    if (train_list) {
      size_t lines;
      int kt = 0, kv = 0;
      if (list_classes(train_list, &lines, &kt, err) || list_classes(val_list, &lines, &kv, err)) goto done;
      if (!labels) k = kt > kv ? kt : kv;
    } else if (!labels) {
      k = (int)f->classes;
    }
    if (k <= 0) {
      crema_fail(
          err,
          "the number of classes is unknown; give --labels FILE (one class name per line) or --classes N");
      goto done;
    }
    if (!labels) {
      n_labels = k;
      label_names = calloc((size_t)k, sizeof *label_names);
      for (int i = 0; label_names && i < k; i++) {
        label_names[i] = malloc(16);
        if (label_names[i]) snprintf(label_names[i], 16, "%d", i);
      }
    }
    if (!label_names || ft_write_labels(path, label_names, k, err)) goto done;
    so->n_classes = k;
  }
  char src_train[PATH_MAX], src_val[PATH_MAX];
  if (train_db) {
    snprintf(src_train, sizeof src_train, "%s", train_db);
    snprintf(src_val, sizeof src_val, "%s", val_db);
    if (db_count(train_db, &so->n_train, err) || db_count(val_db, &so->n_val, err)) goto done;
  } else {
    const char *r = data ? data : (root ? root : "");
    char lt[PATH_MAX], lv[PATH_MAX], rootslash[PATH_MAX];
    snprintf(lt, sizeof lt, "%s/train.txt", tmp);
    snprintf(lv, sizeof lv, "%s/val.txt", tmp);
    snprintf(rootslash, sizeof rootslash, "%s%s", r, *r ? "/" : "");
    snprintf(path, sizeof path, "%s/train_lmdb", tmp);
    snprintf(path2, sizeof path2, "%s/val_lmdb", tmp);
    CREMA_INFO("Converting the images to LMDB (%s, %dx%d)", gray ? "grey" : "colour", rw, rh);
    if (build_db(rootslash, train_list ? train_list : lt, path, gray, true, (uint64_t)f->seed, rh, rw,
                 &so->n_train, err) ||
        build_db(rootslash, val_list ? val_list : lv, path2, gray, false, 0, rh, rw, &so->n_val, err))
      goto done;
    snprintf(src_train, sizeof src_train, "train_lmdb");
    snprintf(src_val, sizeof src_val, "val_lmdb");
  }

  /* preprocessing: scale, mean */
  if (f->scale_seen) {
    tr->has_scale = 1;
    tr->scale = (float)f->scale;
  }
  tr->has_crop_size = crop > 0;
  tr->crop_size = (uint32_t)crop;
  const char *mean_mode = f->mean;
  if (mean_file || f->mean_value) {
    clear_mean(tr);
    mean_mode = "given";
  } else if (!mean_mode && deploy) {
    mean_mode = "auto"; /* a deploy net says nothing about its mean: compute it on the new images */
  } else if (!mean_mode && tr->mean_file && *tr->mean_file) {
    /* a train_val's mean file: copied into the run folder when it exists, else recomputed */
    if (access(tr->mean_file, R_OK) == 0) {
      base_mean = strdup(tr->mean_file);
      if (!base_mean) goto oom;
      mean_file = base_mean;
      mean_mode = "given";
    } else {
      CREMA_WARN("The base net's mean file %s does not exist: computing the mean of the new images instead",
                 tr->mean_file);
      mean_mode = "auto";
    }
  } else if (!mean_mode) {
    mean_mode = "keep"; /* a train_val's own mean values, or no mean, as the base was trained */
  }
  if (!strcmp(mean_mode, "none")) clear_mean(tr);
  snprintf(path, sizeof path, "%s/mean.binaryproto", tmp);
  if (mean_file || !strcmp(mean_mode, "auto")) {
    crema_mean m;
    char db[PATH_MAX];
    snprintf(db, sizeof db, "%s/train_lmdb", tmp);
    if (mean_file ? crema_mean_read(mean_file, &m, err)
                  : crema_compute_image_mean(train_db ? train_db : db, NULL, NULL, &m, err))
      goto done;
    int wrc = crema_mean_write(path, &m, err);
    CREMA_INFO("Mean %s: %d x %d x %d, first channel %.2f", mean_file ? mean_file : "of the training images",
               m.channels, m.height, m.width, m.data[0]);
    crema_mean_free(&m);
    if (wrc) goto done;
    clear_mean(tr);
    if (!(tr->mean_file = strdup("mean.binaryproto"))) goto oom;
  } else if (f->mean_value) {
    char *copy = strdup(f->mean_value), *items[16];
    if (!copy) goto oom;
    const int n = ft_split_list(copy, items, 16);
    tr->mean_value = malloc(sizeof(float) * (size_t)(n ? n : 1));
    if (!tr->mean_value) {
      free(copy);
      goto oom;
    }
    for (int i = 0; i < n; i++) tr->mean_value[i] = strtof(items[i], NULL);
    tr->n_mean_value = (size_t)n;
    free(copy);
  } else if (strcmp(mean_mode, "keep") && strcmp(mean_mode, "none")) {
    crema_fail(err, "--mean %s: use auto, none, or give --mean-file / --mean-value", mean_mode);
    goto done;
  }

  /* the nets */
  const long batch = f->batch;
  so->per_epoch = (int)((so->n_train + (size_t)batch - 1) / (size_t)batch);
  /* the largest test batch up to twice the training one (up to 100 for small inputs) that
   * divides the val set, so each test covers every val image exactly once when possible */
  const long cap = (long)h * w <= 64 * 64 && batch * 2 < 100 ? 100 : batch * 2;
  int val_batch = (int)(so->n_val < (size_t)batch ? so->n_val : (size_t)batch);
  for (int d = (int)(cap < (long)so->n_val ? cap : (long)so->n_val); d >= (batch + 1) / 2 && d > 0; d--)
    if (so->n_val % (size_t)d == 0) {
      val_batch = d;
      break;
    }
  const int test_iter = (int)((so->n_val + (size_t)val_batch - 1) / (size_t)val_batch);
  const bool mirror = f->mirror_seen ? f->mirror : !gray;
  crema_recipe_data rd = {src_train, src_val, (int)batch, val_batch, tr, mirror};
  if (crema_recipe_train_val(base, &rd, so->n_classes, &tv, err)) goto done;
  if (f->head) {
    char *copy = strdup(f->head), *items[64];
    if (!copy) goto oom;
    n_heads = ft_split_list(copy, items, 64);
    heads = calloc((size_t)n_heads + 1, sizeof *heads);
    for (int i = 0; heads && i < n_heads; i++) heads[i] = strdup(items[i]);
    free(copy);
    if (!heads) goto oom;
  } else if (crema_recipe_find_heads(tv, &heads, &n_heads, err)) {
    crema_error_prefix(err, "%s", model);
    goto done;
  }
  crema_recipe_head_options ho = {so->n_classes, f->head_suffix, (float)f->lr_boost};
  if (crema_recipe_replace_heads(tv, heads, n_heads, &ho, &ft, err)) goto done;
  /* what learns */
  if (f->freeze_through) {
    if (crema_recipe_freeze_through(ft, f->freeze_through, &fz, err)) goto done;
    crema_message_free(ft);
    ft = fz;
    fz = NULL;
  }
  if (f->train && strcmp(f->train, "all")) {
    if (strcmp(f->train, "head")) {
      crema_fail(err, "--train %s: use all or head", f->train);
      goto done;
    }
    char **renamed = calloc((size_t)n_heads, sizeof *renamed);
    if (!renamed) goto oom;
    int ok = 1;
    for (int i = 0; i < n_heads; i++) {
      renamed[i] = malloc(strlen(heads[i]) + strlen(f->head_suffix) + 1);
      if (!renamed[i])
        ok = 0;
      else
        sprintf(renamed[i], "%s%s", heads[i], f->head_suffix);
    }
    int frc = ok ? crema_recipe_train_only(ft, renamed, n_heads, &fz, err) : crema_fail(err, "out of memory");
    crema_recipe_free_names(renamed, n_heads);
    if (frc) goto done;
    crema_message_free(ft);
    ft = fz;
    fz = NULL;
  }
  if (f->freeze) {
    char *copy = strdup(f->freeze), *items[64];
    if (!copy) goto oom;
    const int n = ft_split_list(copy, items, 64);
    const int frc = crema_recipe_freeze_matching(ft, items, n, &fz, err);
    free(copy);
    if (frc) goto done;
    crema_message_free(ft);
    ft = fz;
    fz = NULL;
  }
  if (crema_recipe_deploy(ft, c, h, w, &dep, err)) goto done;
  if (!f->weights)
    for (size_t i = 0; i < ft->n_layer; i++) {
      const Crema__LayerParameter *l = ft->layer[i];
      const bool conv = l->convolution_param && !l->convolution_param->weight_filler;
      const bool ip = l->inner_product_param && !l->inner_product_param->weight_filler;
      if (conv || ip)
        CREMA_WARN("Layer %s has no weight_filler, so without --weights it starts at 0 and may not learn",
                   l->name);
    }

  /* the solver */
  so->max_iter = (int)(so->per_epoch * f->epochs);
  crema_recipe_solver_options sopt = {.base = base_solver,
                                      .net = "train_val.prototxt",
                                      .lr = (float)f->lr,
                                      .max_iter = so->max_iter,
                                      .test_iter = test_iter,
                                      .test_interval = so->per_epoch,
                                      .display = so->per_epoch,
                                      .snapshot =
                                          so->per_epoch * (int)(f->epochs / 5 > 1 ? f->epochs / 5 : 1),
                                      .snapshot_prefix = "snapshots/ft",
                                      .schedule = f->schedule,
                                      .patience = (int)f->patience,
                                      .has_seed = true,
                                      .seed = f->seed,
                                      .caffe = f->caffe};
  if (crema_recipe_solver(&sopt, &solver, err)) goto done;
  if (f->caffe) {
    crema_recipe_strip_crema_fields(&ft->base);
    crema_recipe_strip_crema_fields(&dep->base);
  }
  if (write_text_msg(tmp, "train_val.prototxt", &ft->base, err) ||
      write_text_msg(tmp, "deploy.prototxt", &dep->base, err) ||
      write_text_msg(tmp, "solver.prototxt", &solver->base, err))
    goto done;
  /* preprocess.prototxt: what the deployed model needs */
  tr->has_mirror = 0;
  tr->mirror = 0;
  crema_message_free(tr->augment);
  tr->augment = NULL;
  tr->has_resize_height = tr->has_resize_width = 1;
  tr->resize_height = (uint32_t)rh;
  tr->resize_width = (uint32_t)rw;
  tr->has_force_gray = gray;
  tr->force_gray = gray;
  tr->has_force_color = !gray;
  tr->force_color = !gray;
  snprintf(path, sizeof path, "%s/preprocess.prototxt", tmp);
  if (crema_preprocess_write(path, tr, err)) goto done;
  snprintf(path, sizeof path, "%s/snapshots", tmp);
  if (mkdir(path, 0755)) {
    crema_fail(err, "cannot create \"%s\": %s", path, strerror(errno));
    goto done;
  }
  rc = 0;
  goto done;
oom:
  crema_fail(err, "out of memory");
done:
  free(base_mean);
  crema_recipe_free_names(heads, n_heads);
  ft_free_labels(label_names, n_labels);
  ft_dataset_free(&ds);
  crema_message_free(base);
  crema_message_free(tv);
  crema_message_free(ft);
  crema_message_free(fz);
  crema_message_free(dep);
  crema_message_free(base_solver);
  crema_message_free(solver);
  crema_message_free(tr);
  return rc;
}
