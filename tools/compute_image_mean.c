/* compute_image_mean -- the mean image of an LMDB data set, as a Caffe .binaryproto. */
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <strings.h>

#include "base/log.h"
#include "common/flags.h"
#include "common/progress.h"
#include "common/tool.h"
#include "data/db.h"
#include "data/image_probe.h"
#include "data/mean.h"

static const char USAGE[] = "Compute the mean_image of a set of images given by a lmdb data set\n"
                            "Usage:\n"
                            "    compute_image_mean [FLAGS] INPUT_DB [OUTPUT_FILE]\n";

static void on_progress(void *ctx, size_t done, size_t total) {
  crema_progress *p = ctx;
  p->total = total;
  crema_progress_update(p, done);
}

int main(int argc, char **argv) {
  crema_tool_init(argc, argv);
  const char *backend = "lmdb";
  long max_pixels = (long)CREMA_IMAGE_DEFAULT_MAX_PIXELS;
  crema_flag flags[] = {
      {"backend", CREMA_FLAG_STRING, &backend,
       "The backend {lmdb, leveldb} of the data set (detected from its files)", 0},
      {"max_pixels", CREMA_FLAG_INT, &max_pixels,
       "Encoded records of more pixels (width x height) are refused as decompression bombs", 0},
  };
  char *pos[2];
  int n_pos = 0;
  int rc = crema_flags_command(argc, argv, USAGE, flags, 2, pos, 1, 2, &n_pos);
  if (rc >= 0) return rc;
  if ((rc = crema_flag_check_range("max_pixels", 1, INT_MAX, USAGE, flags, 2))) return rc;
  crema_image_set_max_pixels((uint64_t)max_pixels);
  crema_error err = {{0}};
  crema_db_backend b;
  if (crema_db_backend_parse(backend, &b, &err)) {
    fprintf(stderr, "error: --backend: %s\n", err.msg);
    return 2;
  }
  crema_progress prog;
  crema_progress_start(&prog, "compute_image_mean", "images", 0);
  CREMA_INFO("Starting iteration");
  crema_mean m;
  if (crema_compute_image_mean(pos[0], on_progress, &prog, &m, &err)) {
    if (prog.drawn) fputc('\n', stderr);
    fprintf(stderr, "error: %s\n", err.msg);
    return 1;
  }
  crema_progress_finish(&prog, (size_t)m.count);
  CREMA_INFO("Processed %llu files.", (unsigned long long)m.count);
  if (n_pos == 2) {
    CREMA_INFO("Write to %s", pos[1]);
    if (crema_mean_write(pos[1], &m, &err)) {
      fprintf(stderr, "error: %s\n", err.msg);
      crema_mean_free(&m);
      return 1;
    }
  }
  const size_t dim = (size_t)m.height * m.width;
  CREMA_INFO("Number of channels: %d", m.channels);
  for (int c = 0; c < m.channels; c++) {
    double s = 0;
    for (size_t i = 0; i < dim; i++) s += m.data[(size_t)c * dim + i];
    CREMA_INFO("mean_value channel [%d]: %g", c, s / (double)dim);
  }
  crema_mean_free(&m);
  return 0;
}
