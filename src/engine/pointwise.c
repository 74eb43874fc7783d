/* pointwise.c -- 1x1 convolution as one product per image, the images spread over OpenMP's
 * threads.
 *
 * A 1x1 stride-1 unpadded convolution needs no im2col: image i's input (Cx, H*W) already is
 * the column matrix, so y_i = W x_i, dx_i = W^T dy_i and dW += sum_i dy_i x_i^T. The
 * reference path runs these on OpenBLAS's thread pool, each product split over the cores;
 * inside a net the engines and element-wise layers around them run on OpenMP's pool, and
 * every switch between the pools hands the cores over. Here each image's product runs on one
 * OpenMP thread (oneDNN's sgemm, single-threaded inside a parallel region: gemm_batch.c), so
 * the whole layer stays on one pool, and the bias is added while the image's output is still
 * in cache. The weight gradient sums per-thread partial products, then adds them to dW in
 * thread order: the bits depend on the thread count, never on timing.
 *
 * Strided (ResNet's projections, 1x1 stride 2): the kernel reads every stride-th pixel of
 * every stride-th row, so each image's pixels are first gathered into a compact (Cx, OH*OW)
 * matrix in the thread's scratch and the same products run on it; the data gradient's
 * product lands in that scratch and is spread back to its pixels, zeros between. ResNet-50 at
 * batch 10 (oneDNN's jit_1x1:avx512_core before): res3a's and res4a's four strided layers
 * 114 -> 102 ms on one thread, 95-97 -> 83-84 on two. res5a's have 7x7 output planes, too
 * narrow for a product per image: they run folded (folded_forward below). */
#include <assert.h>
#include <limits.h>
#include <omp.h>
#include <stdlib.h>
#include <string.h>

#include "base/clones.h"
#include "engine/engine.h"
#include "engine/workspace.h"

struct crema_pointwise_conv {
  int n, cx, cy;
  int h, w, stride, oh, ow; /* the input plane, the stride (both ways), the output plane */
  size_t hw, hw_in;         /* pixels of an output plane, of an input plane */
  bool bias;
  bool folded;        /* strided on small planes: one product for the whole batch (see below) */
  int threads;        /* OpenMP threads the scratch is reserved for */
  int parts;          /* weight-gradient partial sums: min(threads, n), each (cy, cx), in the workspace */
  size_t part_floats; /* the partial sums' floats, rounded to whole 64-byte lines */
  bool ws_reserved;
};

/* Planes smaller than this make each image's product too narrow: GoogLeNet's 7x7 layers (49
 * columns) ran at 0.8-0.9x of the reference's one folded product of the whole batch, its 14x14
 * ones (196) at 1.1-1.3x, 28x28 and 56x56 at 1.2-1.7x (2 cores, AVX2). */
#define POINTWISE_MIN_PLANE 100

/* Backward is weaker on small planes with many input channels. ResNet-50's 14x14 (196-pixel)
 * 1024->256 layers took 27-28 ms backward here against 18 on the reference (batch 10, 2
 * cores, AVX2; 45 against 32 on one), while their forward stayed 1.2x faster here. Its
 * 256->1024 layers on the same planes (five layers: 110-115 ms here, 119-122 on the
 * reference) and GoogLeNet's 14x14 layers (480-832 channels: twenty layers 69-112 ms here
 * against 85-99, within this machine's noise) did not lose, nor did 28x28 and 56x56 planes. */
#define POINTWISE_MIN_PLANE_BACKWARD 400
#define POINTWISE_MAX_CHANNELS_SMALL_PLANE_BACKWARD 1024

/* A thread's gathered pixels (strided layers): (cx, oh * ow), whole 64-byte lines. */
static size_t scratch_floats(const crema_pointwise_conv *c) {
  return ((size_t)c->cx * c->hw + 15) & ~(size_t)15;
}

/* Folded: one operand of the batch, (channels, n * oh * ow), in whole 64-byte lines. */
static size_t batch_floats(const crema_pointwise_conv *c, int channels) {
  return ((size_t)channels * c->n * c->hw + 15) & ~(size_t)15;
}

/* The folded layer's workspace: the gathered pixels (cx rows), then the output or its
 * gradient (cy rows); backward's data gradient (cx rows) takes the first part's room. That
 * is the layer's output and a quarter of its input (stride 2), less than oneDNN's blocked
 * copies of the whole input and output, which it replaces. */
static size_t folded_floats(const crema_pointwise_conv *c) {
  return batch_floats(c, c->cx) + batch_floats(c, c->cy);
}

static bool backward_suits(size_t hw, int cx) {
  return hw >= POINTWISE_MIN_PLANE_BACKWARD || cx < POINTWISE_MAX_CHANNELS_SMALL_PLANE_BACKWARD;
}

bool crema_pointwise_conv_backward_suits(const crema_pointwise_conv *c) {
  return c->folded || backward_suits(c->hw, c->cx);
}

/* A strided layer per image: planes wide enough, and gradients that suit (there is no
 * copy-free reference to leave them to). Else, strided, the whole batch folded into one
 * product, when that product has enough columns. */
static bool per_image_strided(size_t hw, int cx) {
  return hw >= POINTWISE_MIN_PLANE && backward_suits(hw, cx);
}

static bool folds(const crema_im2col_geom *g, int n) {
  const size_t hw = (size_t)g->out_h * g->out_w;
  return g->stride_h > 1 && !per_image_strided(hw, g->channels) && (size_t)n * hw >= POINTWISE_MIN_PLANE &&
         (size_t)n * hw <= INT_MAX; /* the product's columns, an int */
}

bool crema_pointwise_conv_suits(const crema_im2col_geom *g, int n, int group) {
  if (!crema_engine_have_onednn()) return false; /* without it the products would go to OpenBLAS again */
  if (g->kernel_h != 1 || g->kernel_w != 1 || g->stride_h != g->stride_w || g->pad_h || g->pad_w ||
      group != 1)
    return false;
  if (folds(g, n)) return true; /* one product on all the threads: any number of images */
  const size_t hw = (size_t)g->out_h * g->out_w;
  return n >= omp_get_max_threads() && /* fewer images than threads would leave cores idle */
         (g->stride_h == 1 ? hw >= POINTWISE_MIN_PLANE : per_image_strided(hw, g->channels));
}

bool crema_pointwise_conv_folded(const crema_pointwise_conv *c) { return c->folded; }

int crema_pointwise_conv_create(const crema_im2col_geom *g, int n, int cy, int group, bool bias,
                                crema_pointwise_conv **out, crema_error *err) {
  *out = NULL;
  if (n < 1 || !crema_pointwise_conv_suits(g, n, group)) {
    crema_fail(
        err,
        "the per-image 1x1 engine needs oneDNN, a 1x1 unpadded kernel with the same stride both ways, "
        "one group, output planes of 100+ pixels and at least as many images as threads (strided: or 100+ "
        "output pixels in the batch)");
    return 1;
  }
  crema_pointwise_conv *c = calloc(1, sizeof *c);
  if (!c) return crema_fail(err, "out of memory"), -1;
  c->n = n;
  c->cx = g->channels;
  c->cy = cy;
  c->h = g->height;
  c->w = g->width;
  c->stride = g->stride_h;
  c->oh = g->out_h;
  c->ow = g->out_w;
  c->hw = (size_t)g->out_h * g->out_w;
  c->hw_in = (size_t)g->height * g->width;
  c->bias = bias;
  c->folded = folds(g, n);
  c->threads = omp_get_max_threads();
  c->parts = c->threads < n ? c->threads : n;
  c->part_floats = ((size_t)c->parts * cy * c->cx + 15) & ~(size_t)15;
  /* The partial sums serve backward only: none when the gradients run on the reference.
   * Strided, each thread also gathers its image's pixels there, after the partial sums.
   * Folded: the batch's operands instead (folded_floats). */
  const bool grads = crema_pointwise_conv_backward_suits(c);
  const size_t floats =
      c->folded ? folded_floats(c)
                : (grads ? c->part_floats : 0) + (c->stride > 1 ? (size_t)c->threads * scratch_floats(c) : 0);
  if (!floats) {
    *out = c;
    return 0;
  }
  if (crema_engine_ws_reserve(floats * sizeof(float), err)) {
    free(c);
    return crema_fail(err, "out of memory for the 1x1 engine's partial sums and gathered pixels"), -1;
  }
  c->ws_reserved = true;
  *out = c;
  return 0;
}

bool crema_pointwise_conv_matches(const crema_pointwise_conv *c, const crema_im2col_geom *g, int n, int cy,
                                  int group, bool bias) {
  return c && group == 1 && c->n == n && c->cx == g->channels && c->cy == cy && c->h == g->height &&
         c->w == g->width && c->stride == g->stride_h && c->bias == bias &&
         c->threads == omp_get_max_threads();
}

/* Thread t's gathered pixels (strided only): after the partial sums in the workspace. */
static float *thread_scratch(const crema_pointwise_conv *c, float *ws, int t) {
  return ws + c->part_floats + (size_t)t * scratch_floats(c);
}

/* The pixels a strided 1x1 kernel reads from image x: every stride-th column of every
 * stride-th row, as cx rows of oh * ow floats, ld apart. */
CREMA_CLONES static void gather_pixels(const crema_pointwise_conv *c, const float *x, float *g, size_t ld) {
  for (int ch = 0; ch < c->cx; ch++)
    for (int oy = 0; oy < c->oh; oy++) {
      const float *row = x + ((size_t)ch * c->h + (size_t)oy * c->stride) * c->w;
      float *out = g + (size_t)ch * ld + (size_t)oy * c->ow;
      for (int ox = 0; ox < c->ow; ox++) out[ox] = row[(size_t)ox * c->stride];
    }
}

/* The data gradient of image dx from the product's cx rows of oh * ow floats (ld apart):
 * each back at its pixel, zero at the pixels the kernel skipped. */
CREMA_CLONES static void spread_pixels(const crema_pointwise_conv *c, const float *g, size_t ld, float *dx) {
  for (int ch = 0; ch < c->cx; ch++)
    for (int y = 0; y < c->h; y++) {
      float *row = dx + ((size_t)ch * c->h + y) * c->w;
      memset(row, 0, (size_t)c->w * sizeof(float));
      if (y % c->stride) continue;
      const float *in = g + (size_t)ch * ld + (size_t)(y / c->stride) * c->ow;
      for (int ox = 0; ox < c->ow; ox++) row[(size_t)ox * c->stride] = in[ox];
    }
}

/* rows runs of len floats from src (src_ld apart) to dst (dst_ld apart): an image's planes
 * to or from its columns of a batch matrix. */
static void copy_rows(int rows, size_t len, const float *src, size_t src_ld, float *dst, size_t dst_ld) {
  for (int r = 0; r < rows; r++)
    memcpy(dst + (size_t)r * dst_ld, src + (size_t)r * src_ld, len * sizeof(float));
}

/* Folded layers (strided 1x1 on small planes: ResNet-50's res5a projections, 7x7 outputs): a
 * product per image would be 49 columns wide, too narrow to run well, and the reference ran
 * one per image too. Here the batch's gathered pixels form one (cx, n * oh * ow) matrix, so
 * each pass is one product on all the threads, with the images' planes copied out of (or
 * into) its other operand. */
static void folded_forward(crema_pointwise_conv *c, const float *x, const float *w, const float *bias,
                           crema_act act, float *y) {
  const int cols = (int)((size_t)c->n * c->hw);
  const size_t xs = (size_t)c->cx * c->hw_in, ys = (size_t)c->cy * c->hw;
  float *g = (float *)(void *)crema_engine_ws_lock(), *prod = g + batch_floats(c, c->cx);
#pragma omp parallel for schedule(static)
  for (int i = 0; i < c->n; i++) gather_pixels(c, x + (size_t)i * xs, g + (size_t)i * c->hw, (size_t)cols);
  crema_gemm_omp(false, false, c->cy, cols, c->cx, 1.0f, w, c->cx, g, cols, 0.0f, prod, cols);
#pragma omp parallel for schedule(static)
  for (int i = 0; i < c->n; i++) {
    float *yi = y + (size_t)i * ys;
    copy_rows(c->cy, c->hw, prod + (size_t)i * c->hw, (size_t)cols, yi, c->hw);
    crema_bias_act_rows(c->cy, c->hw, c->bias ? bias : NULL, act, yi); /* while yi is in cache */
  }
  crema_engine_ws_unlock();
}

static void folded_backward(crema_pointwise_conv *c, const float *x, const float *dy, const float *w,
                            float *dw, float *dx) {
  const int cols = (int)((size_t)c->n * c->hw);
  const size_t xs = (size_t)c->cx * c->hw_in, ys = (size_t)c->cy * c->hw;
  float *g = (float *)(void *)crema_engine_ws_lock(), *d = g + batch_floats(c, c->cx);
#pragma omp parallel for schedule(static)
  for (int i = 0; i < c->n; i++)
    copy_rows(c->cy, c->hw, dy + (size_t)i * ys, c->hw, d + (size_t)i * c->hw, (size_t)cols);
  if (dx) { /* W^T dy at the pixels the kernel read, in g's room first */
    crema_gemm_omp(true, false, c->cx, cols, c->cy, 1.0f, w, c->cx, d, cols, 0.0f, g, cols);
#pragma omp parallel for schedule(static)
    for (int i = 0; i < c->n; i++) spread_pixels(c, g + (size_t)i * c->hw, (size_t)cols, dx + (size_t)i * xs);
  }
  if (dw) { /* dW += dy x^T over the whole batch at once (parameter diffs accumulate) */
#pragma omp parallel for schedule(static)
    for (int i = 0; i < c->n; i++) gather_pixels(c, x + (size_t)i * xs, g + (size_t)i * c->hw, (size_t)cols);
    crema_gemm_omp(false, true, c->cy, c->cx, cols, 1.0f, d, cols, g, cols, 1.0f, dw, c->cx);
  }
  crema_engine_ws_unlock();
}

void crema_pointwise_conv_forward(crema_pointwise_conv *c, const float *x, const float *w, const float *bias,
                                  crema_act act, float *y) {
  if (c->folded) {
    folded_forward(c, x, w, bias, act, y);
    return;
  }
  const size_t xs = (size_t)c->cx * c->hw_in, ys = (size_t)c->cy * c->hw;
  const int hw = (int)c->hw;
  const bool strided = c->stride > 1;
  float *ws = strided ? (float *)(void *)crema_engine_ws_lock() : NULL;
#pragma omp parallel for schedule(dynamic, 1) num_threads(c->threads)
  for (int i = 0; i < c->n; i++) {
    float *yi = y + (size_t)i * ys;
    const float *xi = x + (size_t)i * xs;
    if (strided) {
      float *g = thread_scratch(c, ws, omp_get_thread_num());
      gather_pixels(c, xi, g, c->hw);
      xi = g;
    }
    crema_gemm_omp(false, false, c->cy, hw, c->cx, 1.0f, w, c->cx, xi, hw, 0.0f, yi, hw);
    crema_bias_act_rows(c->cy, c->hw, c->bias ? bias : NULL, act, yi); /* while yi is in cache */
  }
  if (strided) crema_engine_ws_unlock();
}

/* dW (cy, cx) += the sum of `parts` partial products each stored turned round (cx, cy), added
 * in part order as crema_sum_partials adds. */
static void sum_partials_turned(const float *part, int parts, int cx, int cy, float *dw) {
  const size_t wn = (size_t)cx * cy;
#pragma omp parallel for schedule(static)
  for (int o = 0; o < cy; o++)
    for (int ci = 0; ci < cx; ci++) {
      float s = 0.0f;
      for (int t = 0; t < parts; t++) s += part[(size_t)t * wn + (size_t)ci * cy + o];
      dw[(size_t)o * cx + ci] += s; /* parameter diffs accumulate */
    }
}

void crema_pointwise_conv_backward(crema_pointwise_conv *c, const float *x, const float *dy, const float *w,
                                   float *dw, float *dx) {
  assert(crema_pointwise_conv_backward_suits(c)); /* else no partial sums were reserved */
  if (c->folded) {
    folded_backward(c, x, dy, w, dw, dx);
    return;
  }
  const size_t xs = (size_t)c->cx * c->hw_in, ys = (size_t)c->cy * c->hw, wn = (size_t)c->cy * c->cx;
  const int hw = (int)c->hw;
  const bool strided = c->stride > 1;
  if (dx && !strided) { /* dx_i = W^T dy_i: the same W (stride 0) for every image */
    const crema_gemm_batch b = {.trans_a = true,
                                .m = c->cx,
                                .n = hw,
                                .k = c->cy,
                                .alpha = 1.0f,
                                .beta = 0.0f,
                                .a = w,
                                .lda = c->cx,
                                .stride_a = 0,
                                .b = dy,
                                .ldb = hw,
                                .stride_b = ys,
                                .c = dx,
                                .ldc = hw,
                                .stride_c = xs,
                                .count = c->n};
    crema_gemm_batch_run(&b);
  }
  if (!dw && !(dx && strided)) return;
  /* With more input channels than outputs, the product runs as its transpose, dW^T (cx, cy)
   * += x_i dy_i^T, and is turned round as the partial sums are added: oneDNN's sgemm does
   * better with the longer side as its rows. One thread, batch 10: ResNet-50's 256->64 layers
   * on 56x56 planes 9.4 -> 6.3 ms, 1024->256 on 14x14 6.1 -> 5.2; the other way round, and
   * equal counts, no better. */
  const bool turned = c->cx > c->cy;
  if (c->parts == 1 && !turned && !strided) { /* one thread: straight into dW */
    for (int i = 0; i < c->n; i++)
      crema_gemm_omp(false, true, c->cy, c->cx, hw, 1.0f, dy + (size_t)i * ys, hw, x + (size_t)i * xs, hw,
                     1.0f, dw, c->cx);
    return;
  }
  float *ws = (float *)(void *)crema_engine_ws_lock(), *part = ws;
  /* part t sums images [t n / parts, (t + 1) n / parts): fixed ranges, so fixed bits */
#pragma omp parallel for schedule(static, 1) num_threads(c->parts)
  for (int t = 0; t < c->parts; t++) {
    const int i0 = (int)((long)t * c->n / c->parts), i1 = (int)((long)(t + 1) * c->n / c->parts);
    float *g = strided ? thread_scratch(c, ws, t) : NULL;
    for (int i = i0; i < i1; i++) {
      const float *dyi = dy + (size_t)i * ys, *xi = x + (size_t)i * xs;
      if (strided && dx) { /* W^T dy_i at the pixels the kernel read */
        crema_gemm_omp(true, false, c->cx, hw, c->cy, 1.0f, w, c->cx, dyi, hw, 0.0f, g, hw);
        spread_pixels(c, g, c->hw, dx + (size_t)i * xs);
      }
      if (!dw) continue;
      if (strided) {
        gather_pixels(c, xi, g, c->hw);
        xi = g;
      }
      if (turned)
        crema_gemm_omp(false, true, c->cx, c->cy, hw, 1.0f, xi, hw, dyi, hw, i == i0 ? 0.0f : 1.0f,
                       part + (size_t)t * wn, c->cy);
      else
        crema_gemm_omp(false, true, c->cy, c->cx, hw, 1.0f, dyi, hw, xi, hw, i == i0 ? 0.0f : 1.0f,
                       part + (size_t)t * wn, c->cx);
    }
  }
  if (dw && turned)
    sum_partials_turned(part, c->parts, c->cx, c->cy, dw);
  else if (dw)
    crema_sum_partials(part, c->parts, wn, dw);
  crema_engine_ws_unlock();
}

void crema_pointwise_conv_free(crema_pointwise_conv *c) {
  if (!c) return;
  if (c->ws_reserved) crema_engine_ws_release();
  free(c);
}
