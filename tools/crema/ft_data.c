#include "crema/ft_data.h"

#include <dirent.h>
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/stat.h>

#include "base/log.h"
#include "data/list_file.h"
#include "proto/io.h"

bool ft_is_image_name(const char *name) {
  static const char *const EXT[] = {".jpg", ".jpeg", ".png", ".bmp", ".gif", ".tga", ".pnm", ".ppm", ".pgm"};
  const char *dot = strrchr(name, '.');
  if (!dot || name[0] == '.') return false;
  for (size_t i = 0; i < sizeof EXT / sizeof EXT[0]; i++)
    if (!strcasecmp(dot, EXT[i])) return true;
  return false;
}

static bool is_dir(const char *path) {
  struct stat st;
  return stat(path, &st) == 0 && S_ISDIR(st.st_mode);
}

static int cmp_str(const void *a, const void *b) { return strcmp(*(char *const *)a, *(char *const *)b); }

/* Sorted names of the entries of dir that are folders (want_dirs) or regular files. */
static int list_dir(const char *dir, bool want_dirs, char ***out, size_t *n, crema_error *err) {
  *out = NULL;
  *n = 0;
  DIR *d = opendir(dir);
  if (!d) return crema_fail(err, "cannot open folder \"%s\": %s", dir, strerror(errno));
  char **a = NULL;
  size_t cap = 0, k = 0;
  struct dirent *e;
  while ((e = readdir(d))) {
    if (e->d_name[0] == '.') continue;
    char path[4096];
    snprintf(path, sizeof path, "%s/%s", dir, e->d_name);
    struct stat st;
    if (stat(path, &st) || (want_dirs ? !S_ISDIR(st.st_mode) : !S_ISREG(st.st_mode))) continue;
    if (k == cap) {
      cap = cap ? cap * 2 : 64;
      char **na = realloc(a, sizeof *a * cap);
      if (!na) break;
      a = na;
    }
    if (!(a[k] = strdup(e->d_name))) break;
    k++;
  }
  closedir(d);
  if (a) qsort(a, k, sizeof *a, cmp_str);
  *out = a;
  *n = k;
  return 0;
}

static void free_strs(char **a, size_t n) {
  for (size_t i = 0; i < n; i++) free(a[i]);
  free(a);
}

static int push(ft_item **items, size_t *n, const char *rel, int label, crema_error *err) {
  ft_item *a = realloc(*items, sizeof *a * (*n + 1));
  if (!a) return crema_fail(err, "out of memory");
  *items = a;
  if (!(a[*n].path = strdup(rel))) return crema_fail(err, "out of memory");
  a[*n].label = label;
  (*n)++;
  return 0;
}

/* Images of folder root/sub/<class> as paths relative to root; counts other files. */
static int class_images(const char *root, const char *sub, const char *cls, char ***names, size_t *n,
                        size_t *ignored, crema_error *err) {
  char dir[4096];
  snprintf(dir, sizeof dir, "%s/%s%s%s", root, sub, *sub ? "/" : "", cls);
  char **files;
  size_t nf;
  if (list_dir(dir, false, &files, &nf, err)) return -1;
  size_t k = 0;
  for (size_t i = 0; i < nf; i++) {
    if (ft_is_image_name(files[i])) {
      char rel[4096];
      snprintf(rel, sizeof rel, "%s%s%s/%s", sub, *sub ? "/" : "", cls, files[i]);
      free(files[i]);
      files[k++] = strdup(rel);
      if (!files[k - 1]) {
        free_strs(files, k - 1);
        return crema_fail(err, "out of memory");
      }
    } else {
      CREMA_WARN("Ignoring %s/%s: not an image file name (jpg, jpeg, png, bmp, gif, tga, pnm, ppm, pgm)", dir,
                 files[i]);
      (*ignored)++;
      free(files[i]);
    }
  }
  if (k == 0) {
    free(files);
    return crema_fail(err, "class folder \"%s\" has no images; add images or remove the folder", dir);
  }
  *names = files;
  *n = k;
  return 0;
}

void ft_dataset_free(ft_dataset *d) {
  if (!d) return;
  free(d->root);
  free_strs(d->classes, (size_t)d->n_classes);
  for (size_t i = 0; i < d->n_train; i++) free(d->train[i].path);
  for (size_t i = 0; i < d->n_val; i++) free(d->val[i].path);
  free(d->train);
  free(d->val);
  memset(d, 0, sizeof *d);
}

int ft_scan_folder(const char *dir, double val_split, uint64_t seed, ft_dataset *out, crema_error *err) {
  memset(out, 0, sizeof *out);
  if (strlen(dir) > 2048) return crema_fail(err, "data folder path too long (%zu bytes)", strlen(dir));
  if (!is_dir(dir)) return crema_fail(err, "data folder \"%s\" does not exist or is not a folder", dir);
  if (!(out->root = strdup(dir))) return crema_fail(err, "out of memory");
  char tdir[3072], vdir[3072];
  snprintf(tdir, sizeof tdir, "%s/train", dir);
  snprintf(vdir, sizeof vdir, "%s/val", dir);
  const bool presplit = is_dir(tdir) && is_dir(vdir);
  size_t nc;
  if (list_dir(presplit ? tdir : dir, true, &out->classes, &nc, err)) goto fail;
  out->n_classes = (int)nc;
  if (nc == 0) {
    crema_fail(err,
               "data folder \"%s\" has no class folders; put each class's images in a folder of its own "
               "(DIR/<class>/*.jpg, or DIR/train/<class> and DIR/val/<class>)",
               presplit ? tdir : dir);
    goto fail;
  }
  if (nc == 1) CREMA_WARN("Data folder %s has a single class (%s)", presplit ? tdir : dir, out->classes[0]);
  if (presplit) {
    char **vc;
    size_t nvc;
    if (list_dir(vdir, true, &vc, &nvc, err)) goto fail;
    for (size_t i = 0; i < nvc; i++) {
      if (!bsearch(&vc[i], out->classes, nc, sizeof *vc, cmp_str)) {
        crema_fail(err, "class folder \"%s/%s\" is not among the training classes in \"%s\"", vdir, vc[i],
                   tdir);
        free_strs(vc, nvc);
        goto fail;
      }
    }
    free_strs(vc, nvc);
  } else if (!(val_split > 0 && val_split < 1)) {
    crema_fail(err, "--val-split must be in (0, 1) (got %g) when \"%s\" has no train/ and val/ folders",
               val_split, dir);
    goto fail;
  }
  for (int c = 0; c < out->n_classes; c++) {
    char **imgs;
    size_t n;
    if (presplit) {
      if (class_images(dir, "train", out->classes[c], &imgs, &n, &out->ignored, err)) goto fail;
      for (size_t i = 0; i < n; i++)
        if (push(&out->train, &out->n_train, imgs[i], c, err)) {
          free_strs(imgs, n);
          goto fail;
        }
      free_strs(imgs, n);
      char cv[4096];
      snprintf(cv, sizeof cv, "%s/%s", vdir, out->classes[c]);
      if (!is_dir(cv)) {
        CREMA_WARN("Class %s has no folder in %s: it is not validated", out->classes[c], vdir);
        continue;
      }
      if (class_images(dir, "val", out->classes[c], &imgs, &n, &out->ignored, err)) goto fail;
      for (size_t i = 0; i < n; i++)
        if (push(&out->val, &out->n_val, imgs[i], c, err)) {
          free_strs(imgs, n);
          goto fail;
        }
      free_strs(imgs, n);
    } else {
      if (class_images(dir, "", out->classes[c], &imgs, &n, &out->ignored, err)) goto fail;
      uint32_t *idx = malloc(sizeof *idx * n);
      if (!idx) {
        free_strs(imgs, n);
        crema_fail(err, "out of memory");
        goto fail;
      }
      for (size_t i = 0; i < n; i++) idx[i] = (uint32_t)i;
      crema_shuffle_indices(idx, n, seed, (uint64_t)c);
      size_t nv = (size_t)((double)n * val_split + 0.5);
      if (nv == 0 && n >= 2) nv = 1;
      if (nv >= n) nv = n - 1;
      if (n == 1) CREMA_WARN("Class %s has a single image: it is used for training only", out->classes[c]);
      int rc = 0;
      for (size_t i = 0; i < n && !rc; i++)
        rc = i < nv ? push(&out->val, &out->n_val, imgs[idx[i]], c, err)
                    : push(&out->train, &out->n_train, imgs[idx[i]], c, err);
      free(idx);
      free_strs(imgs, n);
      if (rc) goto fail;
    }
  }
  if (out->n_val == 0) {
    crema_fail(err, "no validation images in \"%s\"; add images (at least 2 per class) or a val/ folder",
               dir);
    goto fail;
  }
  return 0;
fail:
  ft_dataset_free(out);
  return -1;
}

int ft_write_list(const char *path, const ft_item *items, size_t n, crema_error *err) {
  size_t cap = 64, len = 0;
  for (size_t i = 0; i < n; i++) cap += strlen(items[i].path) + 16;
  char *buf = malloc(cap);
  if (!buf) return crema_fail(err, "out of memory");
  for (size_t i = 0; i < n; i++)
    len += (size_t)snprintf(buf + len, cap - len, "%s %d\n", items[i].path, items[i].label);
  int rc = crema_write_file_atomic(path, buf, len, err);
  free(buf);
  return rc;
}

int ft_write_labels(const char *path, char *const *classes, int n, crema_error *err) {
  size_t cap = 16, len = 0;
  for (int i = 0; i < n; i++) cap += strlen(classes[i]) + 2;
  char *buf = malloc(cap);
  if (!buf) return crema_fail(err, "out of memory");
  for (int i = 0; i < n; i++) len += (size_t)snprintf(buf + len, cap - len, "%s\n", classes[i]);
  int rc = crema_write_file_atomic(path, buf, len, err);
  free(buf);
  return rc;
}

void ft_free_labels(char **names, int n) { free_strs(names, (size_t)(n > 0 ? n : 0)); }

int ft_read_labels(const char *path, char ***names, int *n, crema_error *err) {
  *names = NULL;
  *n = 0;
  char *text;
  size_t len;
  if (crema_read_file(path, &text, &len, err)) return -1;
  int lines = 0;
  for (size_t i = 0; i < len; i++) lines += text[i] == '\n';
  if (len && text[len - 1] != '\n') lines++;
  char **a = calloc((size_t)lines + 1, sizeof *a);
  if (!a) {
    free(text);
    return crema_fail(err, "out of memory");
  }
  int k = 0;
  for (char *s = text, *e; k < lines && *s; s = e + (*e == '\n')) {
    e = strchr(s, '\n');
    if (!e) e = s + strlen(s);
    size_t l = (size_t)(e - s);
    if (l && s[l - 1] == '\r') l--;
    if (!(a[k] = strndup(s, l))) {
      free_strs(a, (size_t)k);
      free(text);
      return crema_fail(err, "out of memory");
    }
    k++;
  }
  free(text);
  *names = a;
  *n = k;
  return 0;
}
