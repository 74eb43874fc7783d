/* run_dir.c -- crema_model_load_run: a model from an exported run folder (deploy net,
 * weights, and the preprocessing and labels when present). */
#include <dirent.h>
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "api/api_internal.h"

static bool ends_with(const char *s, const char *suffix) {
  size_t n = strlen(s), k = strlen(suffix);
  return n >= k && !strcmp(s + n - k, suffix);
}

static bool is_file(const char *path) {
  struct stat st;
  return stat(path, &st) == 0 && S_ISREG(st.st_mode);
}

/* A prototxt that is not the net to deploy. */
static bool is_other_prototxt(const char *name) {
  return strstr(name, "preprocess") || strstr(name, "solver") || strstr(name, "train_val") ||
         strstr(name, "train_test");
}

/* Finds the file to use in dir: the first of `preferred` that exists, else the folder's only
 * file ending in `suffix` (skipping prototxts that are not nets). Writes dir/name to out. */
static crema_status pick(const char *dir, const char *const *preferred, const char *suffix, const char *what,
                         char *out, size_t size) {
  for (const char *const *p = preferred; *p; p++) {
    snprintf(out, size, "%s/%s", dir, *p);
    if (is_file(out)) return CREMA_OK;
  }
  DIR *d = opendir(dir);
  if (!d) return api_failf(CREMA_ERR_IO, "cannot open run folder \"%s\": %s", dir, strerror(errno));
  int found = 0;
  char first[512] = "", second[512] = "";
  for (struct dirent *e = readdir(d); e; e = readdir(d)) {
    if (!ends_with(e->d_name, suffix)) continue;
    if (!strcmp(suffix, ".prototxt") && is_other_prototxt(e->d_name)) continue;
    if (found == 0) snprintf(first, sizeof first, "%s", e->d_name);
    if (found == 1) snprintf(second, sizeof second, "%s", e->d_name);
    found++;
  }
  closedir(d);
  if (found == 0)
    return api_failf(CREMA_ERR_IO, "run folder \"%s\" has no %s (looked for %s and any *%s)", dir, what,
                     preferred[0], suffix);
  if (found > 1)
    return api_failf(CREMA_ERR_ARGUMENT,
                     "run folder \"%s\" has several %s files (%s, %s, ...): name the one to use %s, or load "
                     "it with crema_model_load",
                     dir, what, first, second, preferred[0]);
  snprintf(out, size, "%s/%s", dir, first);
  return CREMA_OK;
}

/* Loads deploy net + weights (TEST phase), then preprocess.prototxt and labels.txt when the
 * folder has them. The caller frees with crema_model_free. */
crema_status crema_model_load_run(const char *run_dir, crema_model **out) {
  if (!out) return api_failf(CREMA_ERR_ARGUMENT, "crema_model_load_run: out is NULL");
  *out = NULL;
  if (!run_dir) return api_failf(CREMA_ERR_ARGUMENT, "crema_model_load_run: run_dir is NULL");
  static const char *const NETS[] = {"deploy.prototxt", NULL};
  static const char *const WEIGHTS[] = {"weights.caffemodel", "model.caffemodel", "best.caffemodel", NULL};
  char net[4096], weights[4096], extra[4096];
  crema_status s = pick(run_dir, NETS, ".prototxt", "deploy net", net, sizeof net);
  if (!s) s = pick(run_dir, WEIGHTS, ".caffemodel", "weights", weights, sizeof weights);
  if (s) return s;
  crema_model *m = NULL;
  s = crema_model_load(net, weights, CREMA_PHASE_TEST, &m);
  if (s) return s;
  snprintf(extra, sizeof extra, "%s/preprocess.prototxt", run_dir);
  if (is_file(extra)) s = crema_model_load_preprocess(m, extra);
  snprintf(extra, sizeof extra, "%s/labels.txt", run_dir);
  if (!s && is_file(extra)) s = crema_model_load_labels(m, extra);
  if (s) {
    crema_model_free(m);
    return s;
  }
  *out = m;
  return CREMA_OK;
}
