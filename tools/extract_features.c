/* extract_features -- runs a trained net (TEST phase) over its data layer and stores the
 * values of chosen blobs, one Datum per image per blob, as Caffe's tool does; --npy also
 * (or, with --npy_only, instead) writes one float32 .npy array per blob. */
#include <errno.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <unistd.h>

#include "base/log.h"
#include "common/flags.h"
#include "common/npy.h"
#include "common/progress.h"
#include "common/tool.h"
#include "data/datum.h"
#include "data/db.h"
#include "net/net.h"
#include "proto/io.h"

#define MAX_BLOBS 32

static const char USAGE[] =
    "Extracts the values of net blobs into LMDB data sets (one Datum of float_data per image).\n"
    "Usage:\n"
    "    extract_features [FLAGS] pretrained_net_param feature_extraction_proto_file \\\n"
    "        extract_feature_blob_name1[,name2,...] save_feature_dataset_name1[,name2,...] \\\n"
    "        num_mini_batches [lmdb|leveldb] [CPU|GPU] [DEVICE_ID]\n"
    "The net runs in the TEST phase; each mini-batch is one forward pass of its data layer.\n"
    "Keys are the 10-digit image index. --npy writes <dataset_name>.npy as well (float32,\n"
    "shape (images, ...)); --npy_only writes only the .npy files.\n";

/* Splits a comma-separated list in place. */
static int split(char *s, char **out, int max) {
  int n = 0;
  for (char *tok = strtok(s, ","); tok; tok = strtok(NULL, ",")) {
    if (n == max) return -1;
    out[n++] = tok;
  }
  return n;
}

int main(int argc, char **argv) {
  crema_tool_init(argc, argv);
  bool npy = false, npy_only = false;
  crema_flag flags[] = {
      {"npy", CREMA_FLAG_BOOL, &npy, "Also write <dataset_name>.npy per blob (float32, shape (images, ...))",
       0},
      {"npy_only", CREMA_FLAG_BOOL, &npy_only, "Write only the .npy files, no LMDB", 0},
  };
  const int n_flags = 2;
  char *pos[8];
  int n_pos = 0;
  int rc = crema_flags_command(argc, argv, USAGE, flags, n_flags, pos, 5, 8, &n_pos);
  if (rc >= 0) return rc;
  crema_error err = {{0}};
  if (npy_only) npy = true;
  const char *weights = pos[0], *model = pos[1];
  char *blob_names[MAX_BLOBS], *db_names[MAX_BLOBS];
  const int n_blobs = split(pos[2], blob_names, MAX_BLOBS), n_dbs = split(pos[3], db_names, MAX_BLOBS);
  if (n_blobs <= 0 || n_dbs != n_blobs) {
    fprintf(stderr,
            "error: %d blob name(s) but %d data set name(s); give one data set per blob (at most %d)\n",
            n_blobs, n_dbs, MAX_BLOBS);
    return 1;
  }
  char *end;
  errno = 0;
  const long num_batches = strtol(pos[4], &end, 10);
  if (!*pos[4] || *end || errno || num_batches <= 0 || num_batches > INT_MAX) {
    fprintf(stderr, "error: num_mini_batches must be an integer between 1 and %d, got \"%s\"\n", INT_MAX,
            pos[4]);
    return 1;
  }
  crema_db_backend backend = CREMA_DB_LMDB;
  if (n_pos > 5 && crema_db_backend_parse(pos[5], &backend, &err)) {
    fprintf(stderr, "error: data set type: %s\n", err.msg);
    return 1;
  }
  if (n_pos > 6) {
    if (!strcasecmp(pos[6], "GPU"))
      CREMA_WARN("crema runs on the CPU; ignoring GPU%s%s", n_pos > 7 ? " device " : "",
                 n_pos > 7 ? pos[7] : "");
    else if (strcasecmp(pos[6], "CPU")) {
      fprintf(stderr, "error: expected CPU or GPU, got \"%s\"\n", pos[6]);
      return 1;
    }
  }

  crema_net_options opt = {0};
  opt.phase = CREMA__PHASE__TEST;
  opt.source = model;
  crema_tool_log_blas();
  crema_net *net = NULL;
  crema_db_writer *writers[MAX_BLOBS] = {0};
  const crema_blob *blobs[MAX_BLOBS] = {0};
  float *arrays[MAX_BLOBS] = {0};
  uint64_t indices[MAX_BLOBS] = {0};
  bool created[MAX_BLOBS] = {0};
  crema_bytes record = {0};
  int status = 1;
  if (crema_net_load(model, &opt, &net, &err)) goto done;
  if (crema_net_copy_trained_layers_from_file(net, weights, &err)) goto done;
  /* forward only: BatchNorm, Scale and ReLUs run inside the convolutions (every blob ends
   * with the values it has unfused, to float rounding) */
  if (crema_net_fuse(net, true, &err)) goto done;
  for (int i = 0; i < n_blobs; i++) {
    blobs[i] = crema_net_blob_by_name(net, blob_names[i]);
    if (!blobs[i]) {
      crema_fail(&err, "Unknown feature blob name %s in the network %s", blob_names[i], model);
      goto done;
    }
  }
  if (!npy_only) {
    /* Refuse every existing output before creating any. */
    for (int i = 0; i < n_blobs; i++)
      if (access(db_names[i], F_OK) == 0) {
        crema_fail(&err, "output \"%s\" already exists; remove it or choose another name", db_names[i]);
        goto done;
      }
    for (int i = 0; i < n_blobs; i++) {
      if (crema_db_create(db_names[i], backend, 0, &writers[i], &err)) goto done;
      created[i] = true;
    }
  }

  CREMA_INFO("Extracting features of %ld mini-batches", num_batches);
  crema_progress prog;
  crema_progress_start(&prog, "extract_features", "batches", (size_t)num_batches);
  for (long b = 0; b < num_batches; b++) {
    if (crema_net_forward(net, NULL, &err)) goto done;
    for (int i = 0; i < n_blobs; i++) {
      const crema_blob *blob = blobs[i];
      const int num = blob->num_axes > 0 ? blob->shape[0] : 1;
      const size_t dim = num > 0 ? blob->count / (size_t)num : 0;
      if (npy) {
        if (!arrays[i]) {
          arrays[i] = malloc(sizeof(float) * blob->count * (size_t)num_batches);
          if (!arrays[i]) {
            crema_fail(&err, "out of memory keeping %ld batches of \"%s\" for the .npy file", num_batches,
                       blob_names[i]);
            goto done;
          }
        }
        memcpy(arrays[i] + (size_t)b * blob->count, blob->data, sizeof(float) * blob->count);
      }
      for (int n = 0; n < num && writers[i]; n++) {
        Crema__Datum d = CREMA__DATUM__INIT;
        d.has_channels = d.has_height = d.has_width = 1;
        d.channels = (int)dim;
        d.height = d.width = 1;
        d.n_float_data = dim;
        d.float_data = blob->data + (size_t)n * dim;
        char key[32];
        int kl = snprintf(key, sizeof key, "%010llu", (unsigned long long)indices[i]);
        if (crema_datum_serialize(&d, &record, &err) ||
            crema_db_put(writers[i], key, (size_t)kl, record.data, record.len, &err))
          goto done;
        indices[i]++;
      }
      if (!writers[i]) indices[i] += (uint64_t)num;
    }
    crema_progress_update(&prog, (size_t)b + 1);
  }
  crema_progress_finish(&prog, (size_t)num_batches);
  for (int i = 0; i < n_blobs; i++) {
    if (writers[i]) {
      int wrc = crema_db_writer_close(writers[i], &err);
      writers[i] = NULL;
      if (wrc) goto done;
    }
    if (npy) {
      const crema_blob *blob = blobs[i];
      int shape[CREMA_MAX_AXES], axes = blob->num_axes > 0 ? blob->num_axes : 1;
      for (int a = 0; a < axes; a++) shape[a] = blob->num_axes > 0 ? blob->shape[a] : 1;
      shape[0] *= (int)num_batches;
      void *buf;
      size_t len;
      char path[4096];
      snprintf(path, sizeof path, "%s.npy", db_names[i]);
      if (crema_npy_format(axes, shape, arrays[i], &buf, &len, &err)) goto done;
      int wrc = crema_write_file_atomic(path, buf, len, &err);
      free(buf);
      if (wrc) goto done;
      CREMA_INFO("Wrote %s", path);
    }
    CREMA_INFO("Extracted features of %llu query images for feature blob %s", (unsigned long long)indices[i],
               blob_names[i]);
  }
  CREMA_INFO("Successfully extracted the features!");
  status = 0;
done:
  if (status) fprintf(stderr, "error: %s\n", err.msg);
  for (int i = 0; i < n_blobs; i++) {
    if (writers[i]) crema_db_writer_abort(writers[i]);
    if (status && created[i]) crema_db_remove(db_names[i]); /* leave no half-written output */
    free(arrays[i]);
  }
  crema_bytes_free(&record);
  crema_net_free(net);
  return status;
}
