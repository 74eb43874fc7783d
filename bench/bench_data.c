/* bench_data -- data pipeline throughput: convert_imageset (raw and encoded records),
 * compute_image_mean, and the Data layer feeding batches (raw and encoded records), on
 * generated images: 10000 28x28 grey PNGs (MNIST-like) and 1000 256x256 colour JPEGs
 * (ImageNet-like after Caffe's usual resize). Prints one table; no assertions. */
#include <math.h>
#include <omp.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include <stb_image_write.h>

#include "bench_common.h"
#include "base/log.h"
#include "base/rng.h"
#include "data/convert.h"
#include "data/mean.h"
#include "layers/layer.h"
#include "tensor/math.h"

/* CPU seconds of the whole process (all threads): a rate per CPU-second does not depend on
 * how busy the machine is with other work, the wall-clock rate does. */
static double cpu_now(void) {
  struct timespec ts;
  clock_gettime(CLOCK_PROCESS_CPUTIME_ID, &ts);
  return (double)ts.tv_sec + ts.tv_nsec * 1e-9;
}

typedef struct rate {
  double wall, cpu; /* images per second, images per CPU-second */
} rate;

static rate rate_since(double n, double t0, double c0) {
  rate r = {n / (bench_now() - t0), n / (cpu_now() - c0)};
  return r;
}

/* Smooth gradients plus noise: compresses like a photograph, not like white noise. */
static void make_image(uint8_t *px, int w, int h, int c, crema_rng *r) {
  const float fx = crema_rng_uniform(r, 0.02f, 0.2f), fy = crema_rng_uniform(r, 0.02f, 0.2f);
  for (int y = 0; y < h; y++)
    for (int x = 0; x < w; x++)
      for (int k = 0; k < c; k++) {
        float v = 128 + 90 * sinf(fx * x + k) * cosf(fy * y) + crema_rng_uniform(r, -12, 12);
        px[(y * w + x) * c + k] = (uint8_t)(v < 0 ? 0 : v > 255 ? 255 : v);
      }
}

static void generate(const char *dir, const char *list_path, int n, int w, int h, int c, int jpg) {
  FILE *list = fopen(list_path, "w");
  if (!list) {
    perror(list_path);
    exit(1);
  }
  for (int i = 0; i < n; i++)
    fprintf(list, "%s%06d.%s %d\n", jpg ? "photo " : "digit_", i, jpg ? "jpg" : "png", i % 10);
  fclose(list);
#pragma omp parallel
  {
    uint8_t *px = malloc((size_t)w * h * c);
    crema_rng r;
    crema_rng_seed(&r, 1, (uint64_t)omp_get_thread_num());
#pragma omp for schedule(dynamic, 16)
    for (int i = 0; i < n; i++) {
      char p[512];
      snprintf(p, sizeof p, "%s/%s%06d.%s", dir, jpg ? "photo " : "digit_", i, jpg ? "jpg" : "png");
      make_image(px, w, h, c, &r);
      if (jpg)
        stbi_write_jpg(p, w, h, c, px, 90);
      else
        stbi_write_png(p, w, h, c, px, w * c);
    }
    free(px);
  }
}

static rate convert(const char *root, const char *list, const char *db, bool gray, bool encoded) {
  crema_convert_options o = {
      .root = root, .list_file = list, .db_path = db, .gray = gray, .encoded = encoded};
  crema_convert_result res;
  crema_error err;
  double t = bench_now(), c = cpu_now();
  if (crema_convert_imageset(&o, &res, &err)) {
    fprintf(stderr, "error: %s\n", err.msg);
    exit(1);
  }
  return rate_since((double)res.written, t, c);
}

static rate mean_rate(const char *db, const char *out) {
  crema_mean m;
  crema_error err;
  double t = bench_now(), c = cpu_now();
  if (crema_compute_image_mean(db, NULL, NULL, &m, &err) || crema_mean_write(out, &m, &err)) {
    fprintf(stderr, "error: %s\n", err.msg);
    exit(1);
  }
  rate r = rate_since((double)m.count, t, c);
  crema_mean_free(&m);
  return r;
}

/* Images per second the Data layer hands to the net (the net doing nothing else). */
static rate layer_rate(const char *db, int batch, const char *transform, int images) {
  /* The LayerParameter by hand: the bench does not depend on the text parser. */
  Crema__LayerParameter lp = CREMA__LAYER_PARAMETER__INIT;
  Crema__DataParameter dp = CREMA__DATA_PARAMETER__INIT;
  Crema__TransformationParameter tp = CREMA__TRANSFORMATION_PARAMETER__INIT;
  lp.name = "data";
  lp.type = "Data";
  lp.data_param = &dp;
  dp.source = (char *)db;
  dp.has_batch_size = dp.has_backend = 1;
  dp.batch_size = (uint32_t)batch;
  dp.backend = CREMA__DATA_PARAMETER__DB__LMDB;
  if (transform) {
    lp.transform_param = &tp;
    if (strstr(transform, "crop")) {
      tp.has_crop_size = tp.has_mirror = 1;
      tp.crop_size = 227;
      tp.mirror = 1;
    }
    tp.has_scale = 1;
    tp.scale = 0.00390625f;
  }
  crema_layer *l;
  crema_blob *top[2] = {crema_blob_new(), crema_blob_new()};
  crema_error err;
  if (crema_layer_create(&lp, CREMA__PHASE__TRAIN, 1, &l, &err) ||
      crema_layer_setup(l, 0, NULL, 2, top, &err) || crema_layer_forward(l, NULL, top, &err)) {
    fprintf(stderr, "error: %s\n", err.msg);
    exit(1);
  }
  const int iters = images / batch;
  double t = bench_now(), c = cpu_now();
  for (int i = 0; i < iters; i++)
    if (crema_layer_forward(l, NULL, top, &err)) {
      fprintf(stderr, "error: %s\n", err.msg);
      exit(1);
    }
  rate r = rate_since((double)iters * batch, t, c);
  crema_layer_free(l);
  crema_blob_free(top[0]);
  crema_blob_free(top[1]);
  return r;
}

static void row(const char *label, rate r) { printf("%s| %.0f | %.0f |\n", label, r.wall, r.cpu); }

int main(void) {
  crema_log_set_min_level(CREMA_LOG_WARNING);
  /* In memory when possible: the table is about decode/transform/LMDB throughput, not about
   * this machine's disk. */
  char dir[64] = "/dev/shm/crema-bench-data-XXXXXX";
  if (access("/dev/shm", W_OK) != 0 || !mkdtemp(dir)) {
    snprintf(dir, sizeof dir, "/tmp/crema-bench-data-XXXXXX");
    if (!mkdtemp(dir)) return 1;
  }
  char root[300], small_list[300], big_list[300], db[300], mean_out[300];
  snprintf(root, sizeof root, "%s/", dir);
  snprintf(small_list, sizeof small_list, "%s/small.txt", dir);
  snprintf(big_list, sizeof big_list, "%s/big.txt", dir);
  double t = bench_now();
  generate(dir, small_list, 10000, 28, 28, 1, 0);
  generate(dir, big_list, 1000, 256, 256, 3, 1);
  printf("bench_data: %d threads (OMP), BLAS kernel %s, files in %s; generated the images in %.1f s\n\n",
         omp_get_max_threads(), crema_blas_corename(), dir, bench_now() - t);
  printf("| step | images | record | images/s | images per CPU-s |\n| --- | --- | --- | ---: | ---: |\n");
  snprintf(db, sizeof db, "%s/small_raw", dir);
  row("| convert_imageset --gray | 10000 28x28 PNG | raw ", convert(root, small_list, db, true, false));
  snprintf(mean_out, sizeof mean_out, "%s/small_mean.binaryproto", dir);
  row("| compute_image_mean | 10000 28x28 | raw ", mean_rate(db, mean_out));
  row("| Data layer, batch 64, scale | 10000 28x28 | raw ", layer_rate(db, 64, "scale", 20000));
  snprintf(db, sizeof db, "%s/small_enc", dir);
  row("| convert_imageset --gray --encoded | 10000 28x28 PNG | encoded ",
      convert(root, small_list, db, true, true));
  row("| Data layer, batch 64, scale | 10000 28x28 | encoded PNG ", layer_rate(db, 64, "scale", 20000));
  snprintf(db, sizeof db, "%s/big_raw", dir);
  row("| convert_imageset | 1000 256x256 JPEG | raw ", convert(root, big_list, db, false, false));
  snprintf(mean_out, sizeof mean_out, "%s/big_mean.binaryproto", dir);
  row("| compute_image_mean | 1000 256x256 | raw ", mean_rate(db, mean_out));
  row("| Data layer, batch 32, crop 227 + mirror | 1000 256x256 | raw ", layer_rate(db, 32, "crop", 2000));
  snprintf(db, sizeof db, "%s/big_enc", dir);
  row("| convert_imageset --encoded | 1000 256x256 JPEG | encoded ",
      convert(root, big_list, db, false, true));
  row("| compute_image_mean | 1000 256x256 | encoded JPEG ", mean_rate(db, mean_out));
  row("| Data layer, batch 32, crop 227 + mirror | 1000 256x256 | encoded JPEG ",
      layer_rate(db, 32, "crop", 2000));
  char cmd[400];
  snprintf(cmd, sizeof cmd, "rm -rf '%s'", dir);
  return system(cmd) == 0 ? 0 : 1;
}
