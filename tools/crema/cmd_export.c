/* cmd_export.c -- `crema export`: a trained snapshot as files to deploy.
 *
 *   crema export --model TRAIN_VAL_OR_DEPLOY --weights SNAPSHOT.caffemodel --out DIR
 *                [--keep-bn] [--onnx] [--batch N] [--labels L] [--preprocess P] [--opset 13]
 *
 * Writes DIR/deploy.prototxt and DIR/weights.caffemodel (and DIR/model.onnx, labels.txt,
 * preprocess.prototxt). Everything is written into a staging folder inside DIR first and
 * renamed into place only when all of it succeeded, so DIR never holds half an export. */
#include <dirent.h>
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "base/log.h"
#include "common/flags.h"
#include "common/tool.h"
#include "crema/commands.h"
#include "export/export.h"
#include "proto/io.h"

static const char USAGE[] =
    "usage: crema export --model NET.prototxt --weights SNAPSHOT.caffemodel --out DIR [flags]\n\n"
    "Writes a deploy net for the snapshot: DIR/deploy.prototxt + DIR/weights.caffemodel (TEST-phase\n"
    "layers, the data layer as one Input, the loss as Softmax `prob`, Accuracy/Silence/Dropout\n"
    "removed, BatchNorm + Scale folded into the Convolution/InnerProduct before them), with\n"
    "--onnx also DIR/model.onnx, and labels.txt / preprocess.prototxt when known (the flags, or\n"
    "files of those names next to NET, as `crema finetune` leaves them; else the data layer's\n"
    "transform_param).\n\n";

static long file_size(const char *path) {
  struct stat st;
  return stat(path, &st) ? -1 : (long)st.st_size;
}

static void human(long bytes, char *buf, size_t size) {
  if (bytes < 0)
    snprintf(buf, size, "?");
  else if (bytes >= 10L << 20)
    snprintf(buf, size, "%.1f MB", bytes / 1048576.0);
  else if (bytes >= 10L << 10)
    snprintf(buf, size, "%.1f KB", bytes / 1024.0);
  else
    snprintf(buf, size, "%ld B", bytes);
}

/* DIR/name next to the model file, when it exists. */
static bool beside(const char *model, const char *name, char *out, size_t size) {
  const char *slash = strrchr(model, '/');
  int dir_len = slash ? (int)(slash - model) : 1;
  snprintf(out, size, "%.*s/%s", dir_len, slash ? model : ".", name);
  return access(out, R_OK) == 0;
}

static int copy_file(const char *from, const char *to, crema_error *err) {
  char *buf = NULL;
  size_t len = 0;
  if (crema_read_file(from, &buf, &len, err)) return -1;
  int rc = crema_write_file_atomic(to, buf, len, err);
  free(buf);
  return rc;
}

/* Removes the staging folder and whatever is in it. */
static void remove_staging(const char *dir) {
  DIR *d = opendir(dir);
  if (d) {
    struct dirent *e;
    while ((e = readdir(d))) {
      if (!strcmp(e->d_name, ".") || !strcmp(e->d_name, "..")) continue;
      char p[4400];
      snprintf(p, sizeof p, "%s/%s", dir, e->d_name);
      unlink(p);
    }
    closedir(d);
  }
  rmdir(dir);
}

typedef struct outputs {
  const char *names[8];
  int n;
} outputs;

/* preprocess.prototxt from the given file, else from the data layer (derived, may be NULL):
 * read (so a bad file is an error now, not at deployment), and a mean_file it names (relative
 * to the file's folder, or to the working folder for the data layer's, as Caffe reads it) is
 * copied beside it as mean.binaryproto, so DIR works wherever it is moved. */
static int write_preprocess(const char *given, const Crema__TransformationParameter *derived,
                            const char *stage, outputs *files, crema_error *err) {
  Crema__TransformationParameter *t = NULL;
  char base[4096] = ".";
  if (given) {
    if (crema_read_text_message(given, &crema__transformation_parameter__descriptor, (ProtobufCMessage **)&t,
                                err))
      return crema_error_prefix(err, "preprocess file");
    const char *slash = strrchr(given, '/');
    if (slash) snprintf(base, sizeof base, "%.*s", (int)(slash - given), given);
  } else if (derived) {
    if (!(t = crema_message_copy(&derived->base))) return crema_fail(err, "out of memory");
  } else {
    return 0;
  }
  char path[4400];
  int rc = 0;
  if (t->mean_file && *t->mean_file) {
    char src[8400];
    if (t->mean_file[0] == '/')
      snprintf(src, sizeof src, "%s", t->mean_file);
    else
      snprintf(src, sizeof src, "%s/%s", base, t->mean_file);
    snprintf(path, sizeof path, "%s/mean.binaryproto", stage);
    rc = copy_file(src, path, err);
    if (rc) {
      crema_error_prefix(err, "the mean file of the preprocessing");
    } else {
      files->names[files->n++] = "mean.binaryproto";
      free(t->mean_file);
      if (!(t->mean_file = strdup("mean.binaryproto"))) rc = crema_fail(err, "out of memory");
    }
  }
  snprintf(path, sizeof path, "%s/preprocess.prototxt", stage);
  if (!rc && !(rc = crema_write_text_message(path, &t->base, err)))
    files->names[files->n++] = "preprocess.prototxt";
  crema_message_free(t);
  return rc;
}

/* Everything the export computes and writes into the staging folder. */
static int run_export(const char *model_path, const char *weights_path, const char *stage, bool keep_bn,
                      bool onnx, long batch, long opset, const char *labels, const char *preprocess,
                      outputs *files, crema_error *err) {
  Crema__NetParameter *net = NULL, *weights = NULL, *deploy = NULL, *model = NULL, *folded = NULL,
                      *bare = NULL;
  crema_deploy_report dep;
  memset(&dep, 0, sizeof dep);
  crema_fold_report fold;
  memset(&fold, 0, sizeof fold);
  char path[4200], s1[32], s2[32];
  int rc = -1;
  if (crema_read_net_param(model_path, &net, err) || crema_read_net_param(weights_path, &weights, err))
    goto done;
  crema_deploy_options dopt = {.batch = (int)batch, .source = model_path};
  if (crema_export_deploy(net, &dopt, &deploy, &dep, err)) goto done;
  if (crema_export_attach_weights(deploy, weights, &model, err)) goto done;
  Crema__NetParameter *final = model;
  if (!keep_bn) {
    if (crema_export_fold_batchnorm(model, &folded, &fold, err)) goto done;
    final = folded;
    if (fold.n_folded) {
      double rel = 0.0;
      if (crema_export_compare(model, folded, 7, &rel, err)) goto done;
      CREMA_INFO("Folded %d BatchNorm layer(s) (%d with their Scale): %s", fold.n_folded, fold.n_scale,
                 fold.folded);
      CREMA_INFO("Folded vs unfolded outputs on a random input: max relative difference %.2g (every blob "
                 "both nets have)",
                 rel);
      if (rel > 1e-4) CREMA_WARN("Folding changed the outputs by more than 1e-4 relative: check the net");
    }
    if (fold.n_kept) CREMA_INFO("Kept %d BatchNorm layer(s): %s", fold.n_kept, fold.kept);
  }
  if (crema_export_strip_blobs(final, &bare, err)) goto done;
  snprintf(path, sizeof path, "%s/deploy.prototxt", stage);
  if (crema_write_text_message(path, &bare->base, err)) goto done;
  files->names[files->n++] = "deploy.prototxt";
  snprintf(path, sizeof path, "%s/weights.caffemodel", stage);
  if (crema_write_binary_message(path, &final->base, err)) goto done;
  files->names[files->n++] = "weights.caffemodel";
  long after = file_size(path);
  human(file_size(weights_path), s1, sizeof s1);
  human(after, s2, sizeof s2);
  printf(
      "deploy: %zu layers, input \"%s\" %d x %d x %d x %d, output \"%s\"; %d layer(s) removed, %d pruned\n",
      bare->n_layer, dep.input_layer, dep.input_shape[0], dep.input_shape[1], dep.input_shape[2],
      dep.input_shape[3], dep.output, dep.removed, dep.pruned);
  printf("weights: %s (%zu values) -> %s (%zu values)\n", s1, crema_export_count_params(weights), s2,
         crema_export_count_params(final));
  printf("folded: %d BatchNorm (%d with Scale)%s%s\n", fold.n_folded, fold.n_scale, fold.n_folded ? ": " : "",
         fold.folded);
  if (onnx) {
    snprintf(path, sizeof path, "%s/model.onnx", stage);
    crema_onnx_options oo = {.opset = (int)opset};
    int nodes = 0;
    if (crema_export_write_onnx(final, &oo, path, &nodes, err)) goto done;
    files->names[files->n++] = "model.onnx";
    human(file_size(path), s1, sizeof s1);
    printf("onnx: %s, opset %ld, %d nodes\n", s1, opset, nodes);
  }
  char found[4096];
  if (!labels && beside(model_path, "labels.txt", found, sizeof found)) labels = found;
  if (labels) {
    snprintf(path, sizeof path, "%s/labels.txt", stage);
    if (copy_file(labels, path, err)) goto done;
    files->names[files->n++] = "labels.txt";
  }
  char found_pp[4096];
  if (!preprocess && beside(model_path, "preprocess.prototxt", found_pp, sizeof found_pp))
    preprocess = found_pp;
  if (write_preprocess(preprocess, dep.transform, stage, files, err)) goto done;
  rc = 0;
done:
  crema_deploy_report_free(&dep);
  crema_message_free(net);
  crema_message_free(weights);
  crema_message_free(deploy);
  crema_message_free(model);
  crema_message_free(folded);
  crema_message_free(bare);
  return rc;
}

int crema_cmd_export(int argc, char **argv) {
  crema_tool_init(argc + 1, argv - 1); /* argv is main's argv + 1 */
  const char *model = NULL, *weights = NULL, *out = NULL, *labels = NULL, *preprocess = NULL;
  bool keep_bn = false, onnx = false;
  long batch = 0, opset = 13;
  crema_flag flags[] = {
      {"model", CREMA_FLAG_STRING, &model, "train_val or deploy prototxt (required)", 0},
      {"weights", CREMA_FLAG_STRING, &weights, "the trained caffemodel (required)", 0},
      {"out", CREMA_FLAG_STRING, &out, "output folder, created when missing (required)", 0},
      {"keep-bn", CREMA_FLAG_BOOL, &keep_bn, "keep BatchNorm/Scale layers instead of folding them", 0},
      {"onnx", CREMA_FLAG_BOOL, &onnx, "also write model.onnx", 0},
      {"batch", CREMA_FLAG_INT, &batch, "first dim of the Input (0: a deploy net's own, else 1)", 0},
      {"labels", CREMA_FLAG_STRING, &labels, "labels file to copy as labels.txt", 0},
      {"preprocess", CREMA_FLAG_STRING, &preprocess, "preprocessing file to copy as preprocess.prototxt", 0},
      {"opset", CREMA_FLAG_INT, &opset, "ONNX opset, 11 to 13", 0},
  };
  const int n_flags = (int)(sizeof flags / sizeof flags[0]);
  char *pos[1];
  int n_pos = 0;
  int rc = crema_flags_command(argc, argv, USAGE, flags, n_flags, pos, 0, 0, &n_pos);
  if (rc >= 0) return rc;
  if (!model) return crema_flags_missing("--model", USAGE, flags, n_flags);
  if (!weights) return crema_flags_missing("--weights", USAGE, flags, n_flags);
  if (!out) return crema_flags_missing("--out", USAGE, flags, n_flags);
  if (batch < 0 || batch > 1 << 20) {
    fprintf(stderr, "error: --batch %ld: give a positive batch size\n", batch);
    return 2;
  }
  if (opset < 11 || opset > 13) {
    fprintf(stderr, "error: --opset %ld: crema writes ONNX opsets 11 to 13\n", opset);
    return 2;
  }
  if (mkdir(out, 0777) && errno != EEXIST) {
    fprintf(stderr, "error: cannot create the output folder %s: %s\n", out, strerror(errno));
    return 1;
  }
  char stage[4096];
  snprintf(stage, sizeof stage, "%s/.crema-export-XXXXXX", out);
  if (!mkdtemp(stage)) {
    fprintf(stderr, "error: cannot create a staging folder in %s: %s\n", out, strerror(errno));
    return 1;
  }
  crema_error err;
  outputs files = {.n = 0};
  rc = run_export(model, weights, stage, keep_bn, onnx, batch, opset, labels, preprocess, &files, &err);
  for (int i = 0; !rc && i < files.n; i++) {
    char from[4200], to[4200];
    snprintf(from, sizeof from, "%s/%s", stage, files.names[i]);
    snprintf(to, sizeof to, "%s/%s", out, files.names[i]);
    if (rename(from, to)) rc = crema_fail(&err, "cannot move %s into place: %s", to, strerror(errno));
  }
  remove_staging(stage);
  if (rc) {
    fprintf(stderr, "error: %s\n", err.msg);
    return 1;
  }
  for (int i = 0; i < files.n; i++) {
    char p[4200], s[32];
    snprintf(p, sizeof p, "%s/%s", out, files.names[i]);
    human(file_size(p), s, sizeof s);
    printf("wrote %s (%s)\n", p, s);
  }
  return 0;
}
