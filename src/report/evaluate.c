/* evaluate.c -- confusion matrix and confidently wrong examples (see evaluate.h). */
#include "report/evaluate.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "base/log.h"
#include "data/datum.h"
#include "data/lmdb_db.h"
#include "net/net.h"
#include "proto/io.h"

void crema_evaluation_free(crema_evaluation *e) {
  free(e->confusion);
  for (int i = 0; i < e->n_wrong; i++) crema_image_free(&e->wrong[i].image);
  memset(e, 0, sizeof *e);
}

/* Points relative sources that exist only under base_dir there (in the copy we build). */
static int rebase_sources(Crema__NetParameter *np, const char *base_dir) {
  if (!base_dir) return 0;
  for (size_t i = 0; i < np->n_layer; i++) {
    Crema__DataParameter *dp = np->layer[i]->data_param;
    if (!dp || !dp->source || dp->source[0] == '/' || access(dp->source, F_OK) == 0) continue;
    size_t n = strlen(base_dir) + strlen(dp->source) + 2;
    char *p = malloc(n);
    if (!p) return -1;
    snprintf(p, n, "%s/%s", base_dir, dp->source);
    if (access(p, F_OK) == 0) {
      free(dp->source);
      dp->source = p;
    } else
      free(p);
  }
  return 0;
}

/* Keeps the CREMA_EVAL_MAX_WRONG most confident mistakes, most confident first. */
static void keep_wrong(crema_evaluation *e, uint64_t record, int label, int pred, float conf) {
  int n = e->n_wrong;
  if (n == CREMA_EVAL_MAX_WRONG && conf <= e->wrong[n - 1].confidence) return;
  int at = n < CREMA_EVAL_MAX_WRONG ? n : n - 1;
  while (at > 0 && e->wrong[at - 1].confidence < conf) {
    e->wrong[at] = e->wrong[at - 1];
    at--;
  }
  e->wrong[at] = (crema_wrong_example){record, label, pred, conf, {0, 0, 0, NULL}};
  if (n < CREMA_EVAL_MAX_WRONG) e->n_wrong++;
}

/* Decodes the records of the wrong examples from the LMDB (best effort: no images on failure). */
static void load_images(crema_evaluation *e, const char *source) {
  crema_lmdb *db = NULL;
  crema_error err;
  if (!source || crema_lmdb_open(source, &db, &err)) return;
  crema_bytes scratch = {0};
  for (int i = 0; i < e->n_wrong; i++) {
    if (crema_lmdb_seek(db, e->wrong[i].record, &err)) break;
    const void *key, *val;
    size_t kl, vl;
    crema_lmdb_current(db, &key, &kl, &val, &vl);
    crema_datum_view v;
    int c = 0, h = 0, w = 0;
    const uint8_t *px = NULL;
    if (crema_datum_parse(val, vl, "record", &v, &err) ||
        crema_datum_pixels(&v, CREMA_IMAGE_NATIVE, "record", &scratch, &c, &h, &w, &px, &err) || !px)
      continue;
    crema_image_from_chw_bgr(px, c, h, w, &e->wrong[i].image, &err);
  }
  crema_bytes_free(&scratch);
  crema_lmdb_close(db);
}

int crema_evaluate(const Crema__NetParameter *train_val, const char *caffemodel, int iterations,
                   const char *base_dir, crema_evaluation *out, crema_error *err) {
  memset(out, 0, sizeof *out);
  Crema__NetParameter *np = crema_message_copy(&train_val->base);
  if (!np || rebase_sources(np, base_dir)) {
    crema_message_free(np);
    return crema_fail(err, "out of memory");
  }
  crema_net *net = NULL;
  crema_net_options opt = {.phase = CREMA__PHASE__TEST, .seed = 1, .source = "the train_val net"};
  crema_log_level saved = crema_log_min_level();
  crema_log_set_min_level(CREMA_LOG_WARNING);
  int rc = crema_net_build(np, &opt, &net, err);
  if (!rc) rc = crema_net_copy_trained_layers_from_file(net, caffemodel, err);
  crema_log_set_min_level(saved);
  const char *source = NULL;
  int acc = -1, batch = 0;
  for (int i = 0; !rc && i < crema_net_num_layers(net); i++) {
    const Crema__LayerParameter *lp = crema_net_layer_param(net, i);
    if (!source && lp->data_param && lp->data_param->source && !strcmp(lp->type, "Data")) {
      source = lp->data_param->source;
      batch = (int)lp->data_param->batch_size;
    }
    if (acc < 0 && !strcmp(lp->type, "Accuracy")) acc = i;
  }
  if (!rc && acc < 0)
    rc = crema_fail(err, "the TEST net has no Accuracy layer: not a classifier the report can score");
  const crema_blob *scores = NULL, *labels = NULL;
  if (!rc) {
    const int *ids;
    crema_net_layer_bottoms(net, acc, &ids);
    scores = crema_net_blob(net, ids[0]);
    labels = crema_net_blob(net, ids[1]);
    out->classes = scores->num_axes >= 2 ? scores->shape[1] : 0;
    if (out->classes < 2 || out->classes > 10000 ||
        scores->count != (size_t)scores->shape[0] * (size_t)out->classes)
      rc = crema_fail(err, "the Accuracy layer's scores are not (N, K) with 2 <= K <= 10000");
  }
  uint64_t count = 0;
  if (!rc && iterations <= 0) {
    crema_lmdb *db = NULL;
    crema_error e2;
    if (source && batch > 0 && !crema_lmdb_open(source, &db, &e2)) {
      count = crema_lmdb_count(db);
      crema_lmdb_close(db);
      iterations = (int)((count + (uint64_t)batch - 1) / (uint64_t)batch);
    }
    if (iterations <= 0 || iterations > 100) iterations = iterations <= 0 ? 10 : 100;
  }
  if (!rc && !(out->confusion = calloc((size_t)out->classes * (size_t)out->classes, sizeof *out->confusion)))
    rc = crema_fail(err, "out of memory");
  const int k = out->classes;
  for (int it = 0; !rc && it < iterations; it++) {
    if (crema_net_forward(net, NULL, err)) {
      rc = -1;
      break;
    }
    const int n = scores->shape[0];
    for (int i = 0; i < n; i++) {
      const uint64_t record = (uint64_t)it * (uint64_t)n + (uint64_t)i;
      if (count && record >= count) break; /* the last batch wrapped around */
      const float *s = scores->data + (size_t)i * (size_t)k;
      const int label = (int)labels->data[i];
      if (label < 0 || label >= k) continue;
      int pred = 0;
      double sum = 0, mx = s[0];
      bool probs = true;
      for (int c = 0; c < k; c++) {
        if (s[c] > s[pred]) pred = c;
        sum += s[c];
        probs = probs && s[c] >= 0;
        mx = fmax(mx, s[c]);
      }
      double conf;
      if (probs && fabs(sum - 1) < 1e-3)
        conf = s[pred];
      else {
        double z = 0;
        for (int c = 0; c < k; c++) z += exp(s[c] - mx);
        conf = 1 / z; /* exp(s[pred] - mx) = 1 */
      }
      out->confusion[(size_t)label * (size_t)k + (size_t)pred]++;
      out->samples++;
      if (pred == label)
        out->correct++;
      else
        keep_wrong(out, record, label, pred, (float)conf);
    }
  }
  if (!rc) load_images(out, source);
  crema_net_free(net);
  crema_message_free(np);
  if (rc) crema_evaluation_free(out);
  return rc;
}
