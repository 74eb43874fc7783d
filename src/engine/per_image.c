/* per_image.c -- a small convolution whose channels oneDNN would pad, as im2col and one
 * product per image, the images spread over OpenMP's threads.
 *
 * A first layer on 1-7 channels (LeNet's conv1: 1 channel, 5x5, 24x24 outputs) suits neither
 * other path: oneDNN pads its channels to a block of 8 and its weight gradient ran 1.8-5x
 * slower than the reference; the reference's weight gradient is one long thin product (20 x
 * 25, 36864 deep) over a column matrix of the whole chunk that has left the cache by then.
 * Here each thread unrolls one image at a time into its own column buffer (it stays in L2),
 * runs that image's products on its own (oneDNN's sgemm, single-threaded inside the parallel
 * region), and folds the data gradient back while the buffer is still in cache. The weight
 * gradient is summed in per-thread partials over fixed ranges of images, then added to dW in
 * thread order (crema_sum_partials): its bits depend on the thread count, never on timing.
 * Layers with stride 1, no padding and 256+ output pixels (LeNet's conv1) skip the column
 * matrix in forward and in the weight gradient: both read the image directly (forward_direct,
 * dw_direct below, with sixteen-lane copies that give the same bits on AVX-512 CPUs). */
#include <omp.h>
#include <stdlib.h>

#include "base/clones.h"
#include "base/v16.h"
#include "base/v8.h"
#include "engine/engine.h"
#include "engine/workspace.h"

#if CREMA_V16
#include <immintrin.h>
#endif

struct crema_per_image_conv {
  crema_im2col_geom g;
  int n, cy;
  size_t rows, cols; /* of one image's column matrix: C * kh * kw, out_h * out_w */
  size_t col_floats; /* per thread, rounded to whole 64-byte lines */
  bool bias;
  bool direct;        /* forward and weight gradient from the image (direct_suits) */
  bool wide;          /* the direct passes sixteen lanes at a time (AVX-512 CPUs) */
  int threads, parts; /* col buffers; weight-gradient partials (cy, rows) */
  bool ws_reserved;
};

/* An image's output plane below this is too narrow a product (ResNet-50's 7x7 planes, 49
 * columns). Above PER_IMAGE_MAX_COL_FLOATS (128 KB) an image's column matrix, with the
 * weights and the output beside it, crowds L2: CIFAR-10's conv1 (3 channels, 5x5, pad 2, 75 x
 * 1024 floats) took 32-35 ms here at batch 100 against oneDNN's 28 (2 cores, AVX2), where
 * LeNet's conv1 (25 x 576) and conv2 (500 x 64) won. */
#define PER_IMAGE_MIN_PLANE 64
#define PER_IMAGE_MAX_COL_FLOATS (32u * 1024u)
/* oneDNN keeps channels in blocks of 8 (16 with AVX-512) and pads the rest: a layer with
 * fewer input channels than one block wastes most of its work there. With LeNet's 1 channel
 * this engine took conv1 from 0.85 + 2.8 ms (oneDNN forward, reference gradients) to 1.0 +
 * 1.6 (2 cores, AVX2, batch 64).
 * With whole blocks, only layers padded on both sides come here: LeNet's conv2 (20 -> 50,
 * computed as 24 -> 56, 1.34x the work) took 1.9-2.4 ms forward and 4.0-5.6 backward here
 * against oneDNN's 2.3-2.5 and 6.6-7.6 (batch 64, 2 cores, best of 0.5 s, three runs); 12 ->
 * 20 came out even. Padded on one side only, oneDNN won or came out even: 16 -> 32 took
 * 0.4 + 1.0-1.3 ms there against 0.6-0.8 + 1.6-1.8 here, 8 -> 32 0.4-0.7 + 1.2-1.7 against
 * 0.8-1.0 + 1.3-2.0, 20 -> 40 and 16 -> 50 even. GoogLeNet's 14x14 5x5 layers (16-32
 * channels) took 1.6-2x longer here (and their column matrices pass the limit above). */
static int onednn_block(void) { return crema_engine_onednn_avx512() ? 16 : 8; }

static bool onednn_pads(int channels, int cy) {
  const int b = onednn_block();
  return channels < b || (channels % b != 0 && cy % b != 0);
}

static bool is_pointwise(const crema_im2col_geom *g) {
  return g->kernel_h == 1 && g->kernel_w == 1 && g->stride_h == 1 && g->stride_w == 1 && g->pad_h == 0 &&
         g->pad_w == 0;
}

bool crema_per_image_conv_suits(const crema_im2col_geom *g, int n, int cy, int group) {
  if (!crema_engine_have_onednn()) return false; /* without it the products would go to OpenBLAS again */
  const size_t cols = (size_t)g->out_h * g->out_w;
  return group == 1 && onednn_pads(g->channels, cy) && !is_pointwise(g) && cols >= PER_IMAGE_MIN_PLANE &&
         crema_im2col_rows(g) * cols <= PER_IMAGE_MAX_COL_FLOATS && n >= omp_get_max_threads();
}

/* Layers that skip the column matrix in forward and in the weight gradient (forward_direct,
 * dw_direct below): stride 1, no padding, no dilation, and enough output pixels (fewer: the
 * lanes' final sums would cost as much as the products). */
#define DIRECT_MIN_PIXELS 256

static bool direct_suits(const crema_im2col_geom *g) {
  return g->stride_h == 1 && g->stride_w == 1 && g->pad_h == 0 && g->pad_w == 0 && g->dilation_h == 1 &&
         g->dilation_w == 1 && (size_t)g->out_h * g->out_w >= DIRECT_MIN_PIXELS;
}

int crema_per_image_conv_create(const crema_im2col_geom *g, int n, int cy, int group, bool bias,
                                crema_per_image_conv **out, crema_error *err) {
  *out = NULL;
  if (n < 1 || !crema_per_image_conv_suits(g, n, cy, group)) {
    crema_fail(err,
               "the per-image engine needs oneDNN, one group, input channels that oneDNN pads (fewer than "
               "one block, or input and output channels both off its blocks), a kernel other than 1x1 "
               "stride 1, an output plane of 64+ pixels, an image's column matrix of at most 32K floats "
               "and at least as many images as threads");
    return 1;
  }
  crema_per_image_conv *c = calloc(1, sizeof *c);
  if (!c) return crema_fail(err, "out of memory"), -1;
  c->g = *g;
  c->n = n;
  c->cy = cy;
  c->rows = crema_im2col_rows(g);
  c->cols = (size_t)g->out_h * g->out_w;
  c->col_floats = (c->rows * c->cols + 15) & ~(size_t)15;
  c->bias = bias;
  c->direct = direct_suits(g);
  c->wide = crema_cpu_v16();
  c->threads = omp_get_max_threads();
  c->parts = c->threads < n ? c->threads : n;
  const size_t floats = (size_t)c->threads * c->col_floats + (size_t)c->parts * cy * (c->rows + 1);
  if (crema_engine_ws_reserve(floats * sizeof(float), err)) {
    free(c);
    return crema_fail(err, "out of memory for the per-image engine's buffers"), -1;
  }
  c->ws_reserved = true;
  *out = c;
  return 0;
}

bool crema_per_image_conv_matches(const crema_per_image_conv *c, const crema_im2col_geom *g, int n, int cy,
                                  int group, bool bias) {
  const crema_im2col_geom *h = c ? &c->g : NULL;
  return c && group == 1 && c->n == n && c->cy == cy && c->bias == bias && h->channels == g->channels &&
         h->height == g->height && h->width == g->width && h->kernel_h == g->kernel_h &&
         h->kernel_w == g->kernel_w && h->pad_h == g->pad_h && h->pad_w == g->pad_w &&
         h->stride_h == g->stride_h && h->stride_w == g->stride_w && h->dilation_h == g->dilation_h &&
         h->dilation_w == g->dilation_w && c->threads == omp_get_max_threads();
}

/* An image's weight gradient straight from the image, without its column matrix, for a
 * layer with stride 1, no padding and no dilation (LeNet's conv1: 20 x 25 sums, each 576
 * long): out[o][t] (+)= sum over output pixels (y, x) of dy[o][y][x] image[c][y + i][x + j],
 * with t = (c, i, j). The column matrix's row t at pixel (y, x) is that image cell, so eight
 * pixels of an output row are eight consecutive floats of an image row. An im2col and a
 * general GEMM spent more on copying and packing such thin operands than on the products:
 * LeNet's conv1 backward took 1.02-1.23 ms for 64 images (36 GFLOP/s, one thread, AVX-512
 * EPYC), 0.67-0.80 this way. Four rows of dy and five of the column matrix at a time keep
 * twenty sums of eight lanes in registers, nine loads for twenty multiply-adds; each sum is
 * its eight lanes added in a fixed order, so the bits depend on nothing but the data. Blocks
 * past the last row read row 0 again and drop the result. */
#define DW_RO 4
#define DW_RT 5

/* n (1..8) pixels from offset dk of the block's dy rows and ck of its image rows into its
 * sums (zeros past n). */
static inline __attribute__((always_inline)) void dw_step(const float *const *dr, size_t dk,
                                                          const float *const *cr, size_t ck, size_t n,
                                                          v8 acc[DW_RO][DW_RT]) {
  v8 d[DW_RO], c[DW_RT];
#pragma GCC unroll 4
  for (int a = 0; a < DW_RO; a++) d[a] = load8_part(dr[a] + dk, n);
#pragma GCC unroll 5
  for (int b = 0; b < DW_RT; b++) c[b] = load8_part(cr[b] + ck, n);
#pragma GCC unroll 4
  for (int a = 0; a < DW_RO; a++)
#pragma GCC unroll 5
    for (int b = 0; b < DW_RT; b++) acc[a][b] += d[a] * c[b];
}

/* The image rows of column rows t0 .. t0 + n - 1 (t = (c, i, j): image[c][i][j] on), row 0
 * for t past the last: three divisions per block instead of three per column row. */
static void column_rows(const crema_im2col_geom *g, const float *img, int t0, int n, const float **cr) {
  const int kh = g->kernel_h, kw = g->kernel_w, rows = g->channels * kh * kw;
  const size_t plane = (size_t)g->height * g->width;
  int c = t0 / (kh * kw), i = t0 / kw % kh, j = t0 % kw;
  for (int b = 0; b < n; b++) {
    cr[b] = t0 + b < rows ? img + (size_t)c * plane + (size_t)i * g->width + j : img;
    if (++j == kw) {
      j = 0;
      if (++i == kh) {
        i = 0;
        c++;
      }
    }
  }
}

CREMA_CLONES static void dw_direct(const crema_im2col_geom *g, int cy, const float *dy, const float *img,
                                   bool first, float *out) {
  const int rows = g->channels * g->kernel_h * g->kernel_w, oh = g->out_h, ow = g->out_w;
  const int W = g->width, owv = ow & ~7;
  for (int o0 = 0; o0 < cy; o0 += DW_RO)
    for (int t0 = 0; t0 < rows; t0 += DW_RT) {
      const float *dr[DW_RO], *cr[DW_RT];
      for (int a = 0; a < DW_RO; a++) dr[a] = dy + (size_t)(o0 + a < cy ? o0 + a : 0) * oh * ow;
      column_rows(g, img, t0, DW_RT, cr);
      v8 acc[DW_RO][DW_RT];
#pragma GCC unroll 4
      for (int a = 0; a < DW_RO; a++)
#pragma GCC unroll 5
        for (int b = 0; b < DW_RT; b++) acc[a][b] = (v8){0};
      for (int y = 0; y < oh; y++) {
        const size_t dk = (size_t)y * ow, ck = (size_t)y * W;
        for (int x = 0; x < owv; x += 8) dw_step(dr, dk + x, cr, ck + x, 8, acc);
        if (owv < ow) dw_step(dr, dk + owv, cr, ck + owv, (size_t)(ow - owv), acc);
      }
      for (int a = 0; a < DW_RO && o0 + a < cy; a++)
        for (int b = 0; b < DW_RT && t0 + b < rows; b++) {
          const v8 v = acc[a][b];
          const float s = ((v[0] + v[4]) + (v[1] + v[5])) + ((v[2] + v[6]) + (v[3] + v[7]));
          float *o = out + (size_t)(o0 + a) * rows + t0 + b;
          *o = first ? s : *o + s;
        }
    }
}

#if CREMA_V16
/* The same sums on AVX-512 CPUs, two column rows side by side in each register: lanes 0-7
 * hold row t's eight sums, lanes 8-15 row t + 1's, against the same dy pixels in both halves.
 * Every lane adds the products it would add in dw_direct, in the same order (a multiply, then
 * an add: no fusing), and each half is reduced as dw_direct reduces its eight lanes, so the
 * bits are dw_direct's on twice the sums per instruction: four rows of dy by ten column rows
 * (twenty sums of sixteen lanes), per eight pixels four dy loads and ten image loads for twenty
 * multiplies and twenty adds. Whole groups of eight load without a mask: masked loads across
 * a line boundary are slow on Zen 5 (sixteen pixels a load under a mask ran no faster than
 * dw_direct). LeNet's conv1, 64 images, one thread of an AVX-512 EPYC (Zen 5), the kernel
 * alone: 0.59-0.60 ms as dw_direct, 0.39-0.41 this way. */
#define DW_RP 5 /* pairs of column rows per block */

/* The pixels of m (the first n of eight, n = 1..8) from offset dk of the block's dy rows and ck
 * of its image rows into its pairs of sums (masked-off lanes load 0). */
CREMA_V16_TARGET static inline __attribute__((always_inline)) void
dw_step16(const float *const *dr, size_t dk, const float *const *cr, size_t ck, __mmask8 m,
          v16 acc[DW_RO][DW_RP]) {
  v16 d[DW_RO], c[DW_RP];
#pragma GCC unroll 4
  for (int a = 0; a < DW_RO; a++) {
    const v8 h = m == 0xff ? load8(dr[a] + dk) : (v8)_mm256_maskz_loadu_ps(m, dr[a] + dk);
    d[a] = v16_join(h, h);
  }
#pragma GCC unroll 5
  for (int p = 0; p < DW_RP; p++)
    c[p] = m == 0xff ? v16_join(load8(cr[2 * p] + ck), load8(cr[2 * p + 1] + ck))
                     : v16_join((v8)_mm256_maskz_loadu_ps(m, cr[2 * p] + ck),
                                (v8)_mm256_maskz_loadu_ps(m, cr[2 * p + 1] + ck));
#pragma GCC unroll 4
  for (int a = 0; a < DW_RO; a++)
#pragma GCC unroll 5
    for (int p = 0; p < DW_RP; p++) acc[a][p] += d[a] * c[p];
}

CREMA_V16_TARGET static void dw_direct16(const crema_im2col_geom *g, int cy, const float *dy,
                                         const float *img, bool first, float *out) {
  const int rows = g->channels * g->kernel_h * g->kernel_w, oh = g->out_h, ow = g->out_w;
  const int W = g->width, groups = (ow + 7) / 8;               /* groups of eight pixels per output row */
  const __mmask8 last = (__mmask8)(0xff >> (8 * groups - ow)); /* a row's last group */
  for (int o0 = 0; o0 < cy; o0 += DW_RO)
    for (int t0 = 0; t0 < rows; t0 += 2 * DW_RP) {
      const float *dr[DW_RO], *cr[2 * DW_RP];
      for (int a = 0; a < DW_RO; a++) dr[a] = dy + (size_t)(o0 + a < cy ? o0 + a : 0) * oh * ow;
      column_rows(g, img, t0, 2 * DW_RP, cr);
      v16 acc[DW_RO][DW_RP];
#pragma GCC unroll 4
      for (int a = 0; a < DW_RO; a++)
#pragma GCC unroll 5
        for (int p = 0; p < DW_RP; p++) acc[a][p] = (v16){0};
      /* one loop over every group of every row, in dw_direct's order: nested loops over rows
       * and groups made gcc keep the twenty sums in memory across rows */
      size_t dk = 0, ck = 0;
      if (last == 0xff) /* whole groups only: plain loads */
        for (int q = 0, x = 0; q < oh * groups; q++) {
          const bool end = ++x == groups;
          dw_step16(dr, dk, cr, ck, 0xff, acc);
          dk += 8;
          ck += end ? (size_t)(W - 8 * (groups - 1)) : 8;
          x = end ? 0 : x;
        }
      else
        for (int q = 0, x = 0; q < oh * groups; q++) {
          const bool end = ++x == groups;
          dw_step16(dr, dk, cr, ck, end ? last : (__mmask8)0xff, acc);
          dk += end ? (size_t)(ow - 8 * (groups - 1)) : 8;
          ck += end ? (size_t)(W - 8 * (groups - 1)) : 8;
          x = end ? 0 : x;
        }
      /* the sums leave their registers only here (indexed by a variable, gcc kept them in
       * memory all along) */
      float lanes[DW_RO][DW_RP][16];
#pragma GCC unroll 4
      for (int a = 0; a < DW_RO; a++)
#pragma GCC unroll 5
        for (int p = 0; p < DW_RP; p++) store16(lanes[a][p], acc[a][p]);
      for (int a = 0; a < DW_RO && o0 + a < cy; a++)
        for (int b = 0; b < 2 * DW_RP && t0 + b < rows; b++) {
          const float *v = lanes[a][b / 2] + 8 * (b % 2);
          const float s = ((v[0] + v[4]) + (v[1] + v[5])) + ((v[2] + v[6]) + (v[3] + v[7]));
          float *o = out + (size_t)(o0 + a) * rows + t0 + b;
          *o = first ? s : *o + s;
        }
    }
}
#endif

/* An image's outputs straight from the image too (the same layers as dw_direct): y[o][y][x] =
 * sum over t = (c, i, j) of w[o][t] image[c][y + i][x + j], four outputs by three groups of
 * eight pixels of an output row at a time, twelve sums in registers: per tap three loads of
 * the image and four weights for twelve multiply-adds. Each output adds its taps in order, one
 * product at a time. Outputs past the last read output 0 again and are dropped. */
#define FW_RO 4
#define FW_GX 3

/* Tap t of the block: the image's groups of eight at p (n[q] pixels each, all eight when
 * whole) times each output's weight, into its sums. */
static inline __attribute__((always_inline)) void fw_step(const float *const *wr, int t, const float *p,
                                                          const size_t *n, bool whole, v8 acc[FW_RO][FW_GX]) {
  v8 v[FW_GX];
#pragma GCC unroll 3
  for (int q = 0; q < FW_GX; q++)
    v[q] = whole ? load8(p + 8 * q) : n[q] ? load8_part(p + 8 * q, n[q]) : (v8){0};
#pragma GCC unroll 4
  for (int a = 0; a < FW_RO; a++) {
    const float wt = wr[a][t];
#pragma GCC unroll 3
    for (int q = 0; q < FW_GX; q++) acc[a][q] += wt * v[q];
  }
}

/* Every tap t = (c, i, j) in order, from the block's row of the image (pixel (0, 0) of its
 * groups at row). */
static inline __attribute__((always_inline)) void fw_taps(const crema_im2col_geom *g, const float *const *wr,
                                                          const float *row, const size_t *n, bool whole,
                                                          v8 acc[FW_RO][FW_GX]) {
  const size_t plane = (size_t)g->height * g->width;
  int t = 0;
  for (int c = 0; c < g->channels; c++)
    for (int i = 0; i < g->kernel_h; i++) {
      const float *p = row + c * plane + (size_t)i * g->width;
      for (int j = 0; j < g->kernel_w; j++) fw_step(wr, t++, p + j, n, whole, acc);
    }
}

/* The outputs o0 .. o0 + FW_RO - 1 of row yy, pixels x0 .. x0 + 8 FW_GX - 1 (those that lie in
 * the row). */
static inline __attribute__((always_inline)) void fw_block(const crema_im2col_geom *g, int cy,
                                                           const float *const *wr, const float *img, float *y,
                                                           int o0, int yy, int x0) {
  const int oh = g->out_h, ow = g->out_w;
  /* pixels of each group of eight that lie in the row (8, or fewer in the last) */
  size_t n[FW_GX];
  for (int q = 0; q < FW_GX; q++) {
    const int left = ow - x0 - 8 * q;
    n[q] = left <= 0 ? 0 : left >= 8 ? 8 : (size_t)left;
  }
  v8 acc[FW_RO][FW_GX];
#pragma GCC unroll 4
  for (int a = 0; a < FW_RO; a++)
#pragma GCC unroll 3
    for (int q = 0; q < FW_GX; q++) acc[a][q] = (v8){0};
  const float *row = img + (size_t)yy * g->width + x0;
  if (n[FW_GX - 1] == 8) /* whole groups: the loop without the tests */
    fw_taps(g, wr, row, n, true, acc);
  else
    fw_taps(g, wr, row, n, false, acc);
  for (int a = 0; a < FW_RO && o0 + a < cy; a++)
    for (int q = 0; q < FW_GX; q++)
      if (n[q]) store8_part(y + ((size_t)(o0 + a) * oh + yy) * ow + x0 + 8 * q, acc[a][q], n[q]);
}

/* The first of each block of FW_RO outputs' weights (past the last: output 0's). */
static inline __attribute__((always_inline)) void weight_rows(const float *w, int rows, int cy, int o0,
                                                              const float **wr) {
  for (int a = 0; a < FW_RO; a++) wr[a] = w + (size_t)(o0 + a < cy ? o0 + a : 0) * rows;
}

CREMA_CLONES static void forward_direct(const crema_im2col_geom *geom, int cy, const float *w,
                                        const float *img, float *y) {
  const crema_im2col_geom local = *geom, *g = &local; /* the stores to y cannot change it */
  const int rows = g->channels * g->kernel_h * g->kernel_w;
  for (int o0 = 0; o0 < cy; o0 += FW_RO) {
    const float *wr[FW_RO];
    weight_rows(w, rows, cy, o0, wr);
    for (int yy = 0; yy < g->out_h; yy++)
      for (int x0 = 0; x0 < g->out_w; x0 += 8 * FW_GX) fw_block(g, cy, wr, img, y, o0, yy, x0);
  }
}

#if CREMA_V16
/* Every tap t = (c, i, j) in order into the sums of two rows (row: pixel (0, 0) of the
 * upper row's groups). */
CREMA_V16_TARGET static inline __attribute__((always_inline)) void fw_taps16(const crema_im2col_geom *g,
                                                                             const float *const *wr,
                                                                             const float *row, int KW,
                                                                             v16 acc[FW_RO][FW_GX]) {
  const size_t plane = (size_t)g->height * g->width, W = (size_t)g->width;
  int t = 0;
  for (int c = 0; c < g->channels; c++)
    for (int i = 0; i < g->kernel_h; i++) {
      const float *p = row + c * plane + (size_t)i * W;
      for (int j = 0; j < KW; j++, t++) {
        v16 v[FW_GX];
#pragma GCC unroll 3
        for (int q = 0; q < FW_GX; q++) v[q] = v16_join(load8(p + j + 8 * q), load8(p + j + 8 * q + W));
#pragma GCC unroll 4
        for (int a = 0; a < FW_RO; a++) {
          const float wt = wr[a][t];
#pragma GCC unroll 3
          for (int q = 0; q < FW_GX; q++) acc[a][q] += wt * v[q];
        }
      }
    }
}

/* fw_block kept out of forward_direct16's loop: inlined there, gcc kept the sixteen-lane sums
 * in memory. */
CREMA_V16_TARGET __attribute__((noinline)) static void fw_block16_rest(const crema_im2col_geom *g, int cy,
                                                                       const float *const *wr,
                                                                       const float *img, float *y, int o0,
                                                                       int yy, int x0) {
  fw_block(g, cy, wr, img, y, o0, yy, x0);
}

/* forward_direct on AVX-512 CPUs: two output rows in each register (lanes 0-7 a group of row
 * yy, lanes 8-15 the same group of row yy + 1), so a block is four outputs by two rows of
 * three groups, per tap three pairs of image loads and four weights for twelve multiplies and
 * twelve adds of sixteen lanes. Every lane adds its products as forward_direct's does (no
 * fusing), so the bits are forward_direct's. Rows whose groups are not all whole, and a last
 * odd row, go through forward_direct's block. LeNet's conv1, 64 images, one thread of an
 * AVX-512 EPYC (Zen 5), the kernel alone: 0.41 ms as forward_direct, 0.32 this way. */
CREMA_V16_TARGET static void forward_direct16(const crema_im2col_geom *geom, int cy, const float *w,
                                              const float *img, float *y) {
  const crema_im2col_geom local = *geom, *g = &local; /* the stores to y cannot change it */
  const int rows = g->channels * g->kernel_h * g->kernel_w, oh = g->out_h, ow = g->out_w, W = g->width;
  for (int o0 = 0; o0 < cy; o0 += FW_RO) {
    const float *wr[FW_RO];
    weight_rows(w, rows, cy, o0, wr);
    for (int yy = 0; yy < oh; yy += 2)
      for (int x0 = 0; x0 < ow; x0 += 8 * FW_GX) {
        if (yy + 1 >= oh || x0 + 8 * FW_GX > ow) { /* a last odd row, or part groups */
          for (int r = yy; r < yy + 2 && r < oh; r++) fw_block16_rest(g, cy, wr, img, y, o0, r, x0);
          continue;
        }
        v16 acc[FW_RO][FW_GX];
#pragma GCC unroll 4
        for (int a = 0; a < FW_RO; a++)
#pragma GCC unroll 3
          for (int q = 0; q < FW_GX; q++) acc[a][q] = (v16){0};
        /* LeNet's 5 wide as a constant: gcc peeled a loop of kernel_w taps at -O3 (1.9x
         * the time) and unrolls one of 5 */
        if (g->kernel_w == 5)
          fw_taps16(g, wr, img + (size_t)yy * W + x0, 5, acc);
        else
          fw_taps16(g, wr, img + (size_t)yy * W + x0, g->kernel_w, acc);
        float out[FW_RO][FW_GX][16]; /* out of the registers at once (see dw_direct16) */
#pragma GCC unroll 4
        for (int a = 0; a < FW_RO; a++)
#pragma GCC unroll 3
          for (int q = 0; q < FW_GX; q++) store16(out[a][q], acc[a][q]);
        for (int a = 0; a < FW_RO && o0 + a < cy; a++)
          for (int r = 0; r < 2; r++)
            for (int q = 0; q < FW_GX; q++)
              memcpy(y + ((size_t)(o0 + a) * oh + yy + r) * ow + x0 + 8 * q, out[a][q] + 8 * r,
                     8 * sizeof(float));
      }
  }
}
#endif

void crema_per_image_conv_forward(crema_per_image_conv *c, const float *x, const float *w, const float *bias,
                                  crema_act act, float *y) {
  const size_t xs = (size_t)c->g.channels * c->g.height * c->g.width, ys = (size_t)c->cy * c->cols;
  const int rows = (int)c->rows, cols = (int)c->cols;
  float *ws = (float *)(void *)crema_engine_ws_lock();
#pragma omp parallel for schedule(static) num_threads(c->threads)
  for (int i = 0; i < c->n; i++) {
    float *col = ws + c->col_floats * (size_t)omp_get_thread_num(), *yi = y + (size_t)i * ys;
    if (c->direct) {
#if CREMA_V16
      if (c->wide)
        forward_direct16(&c->g, c->cy, w, x + (size_t)i * xs, yi);
      else
#endif
        forward_direct(&c->g, c->cy, w, x + (size_t)i * xs, yi);
    } else {
      crema_im2col(&c->g, 1, x + (size_t)i * xs, col);
      crema_gemm_omp(false, false, c->cy, cols, rows, 1.0f, w, rows, col, cols, 0.0f, yi, cols);
    }
    crema_bias_act_rows(c->cy, c->cols, c->bias ? bias : NULL, act, yi); /* while yi is in cache */
  }
  crema_engine_ws_unlock();
}

/* An image's bias gradient: each output row's sum (cols long) into part (first: written, else
 * added), four groups of eight side by side so that the adds do not wait on each other, summed
 * in a fixed order. Done right after the image's weight gradient, while dy is in cache: over
 * the whole batch afterwards it read LeNet's 2.9 MB of conv1 gradients from memory again. */
CREMA_CLONES static void bias_sums(int cy, size_t cols, const float *dy, bool first, float *part) {
  for (int o = 0; o < cy; o++) {
    const float *d = dy + (size_t)o * cols;
    v8 acc[4] = {{0}, {0}, {0}, {0}};
    size_t k = 0;
    for (; k + 32 <= cols; k += 32)
#pragma GCC unroll 4
      for (int g = 0; g < 4; g++) acc[g] += load8(d + k + 8 * g);
    for (; k + 8 <= cols; k += 8) acc[0] += load8(d + k);
    const v8 v = (acc[0] + acc[1]) + (acc[2] + acc[3]);
    float sum = ((v[0] + v[4]) + (v[1] + v[5])) + ((v[2] + v[6]) + (v[3] + v[7]));
    for (; k < cols; k++) sum += d[k];
    part[o] = first ? sum : part[o] + sum;
  }
}

void crema_per_image_conv_backward(crema_per_image_conv *c, const float *x, const float *dy, const float *w,
                                   float *dw, float *db, float *dx) {
  if (!dw && !db && !dx) return;
  const size_t xs = (size_t)c->g.channels * c->g.height * c->g.width, ys = (size_t)c->cy * c->cols;
  const size_t wn = (size_t)c->cy * c->rows;
  const int rows = (int)c->rows, cols = (int)c->cols;
  float *ws = (float *)(void *)crema_engine_ws_lock();
  float *part = ws + (size_t)c->threads * c->col_floats, *bpart = part + (size_t)c->parts * wn;
  /* part t sums images [t n / parts, (t + 1) n / parts): fixed ranges, so fixed bits */
#pragma omp parallel for schedule(static, 1) num_threads(c->parts)
  for (int t = 0; t < c->parts; t++) {
    float *col = ws + c->col_floats * (size_t)omp_get_thread_num();
    const int i0 = (int)((long)t * c->n / c->parts), i1 = (int)((long)(t + 1) * c->n / c->parts);
    for (int i = i0; i < i1; i++) {
      const float *dyi = dy + (size_t)i * ys;
      if (dw && c->direct) {
#if CREMA_V16
        if (c->wide)
          dw_direct16(&c->g, c->cy, dyi, x + (size_t)i * xs, i == i0, part + (size_t)t * wn);
        else
#endif
          dw_direct(&c->g, c->cy, dyi, x + (size_t)i * xs, i == i0, part + (size_t)t * wn);
      } else if (dw) {
        crema_im2col(&c->g, 1, x + (size_t)i * xs, col);
        crema_gemm_omp(false, true, c->cy, rows, cols, 1.0f, dyi, cols, col, cols, i == i0 ? 0.0f : 1.0f,
                       part + (size_t)t * wn, rows);
      }
      if (db) bias_sums(c->cy, c->cols, dyi, i == i0, bpart + (size_t)t * c->cy);
      if (dx) { /* dcol = W^T dy_i, folded back into the image while it is in cache */
        crema_gemm_omp(true, false, rows, cols, c->cy, 1.0f, w, rows, dyi, cols, 0.0f, col, cols);
        crema_col2im(&c->g, 1, col, dx + (size_t)i * xs);
      }
    }
  }
  if (dw) crema_sum_partials(part, c->parts, wn, dw);
  if (db) crema_sum_partials(bpart, c->parts, (size_t)c->cy, db);
  crema_engine_ws_unlock();
}

bool crema_per_image_conv_direct(const crema_per_image_conv *c) { return c->direct; }

bool crema_per_image_conv_set_wide(crema_per_image_conv *c, bool wide) {
  c->wide = wide && crema_cpu_v16();
  return c->wide;
}

void crema_per_image_conv_free(crema_per_image_conv *c) {
  if (!c) return;
  if (c->ws_reserved) crema_engine_ws_release();
  free(c);
}
