/* pointwise.c -- 1x1 stride-1 convolution as one product per image, the images spread over
 * OpenMP's threads.
 *
 * A 1x1 stride-1 unpadded convolution needs no im2col: image i's input (Cx, H*W) already is
 * the column matrix, so y_i = W x_i, dx_i = W^T dy_i and dW += sum_i dy_i x_i^T. The
 * reference path runs these on OpenBLAS's thread pool, each product split over the cores;
 * inside a net the engines and element-wise layers around them run on OpenMP's pool, and
 * every switch between the pools hands the cores over. Here each image's product runs on one
 * OpenMP thread (oneDNN's sgemm, single-threaded inside a parallel region: gemm_batch.c), so
 * the whole layer stays on one pool, and the bias is added while the image's output is still
 * in cache. The weight gradient sums per-thread partial products, then adds them to dW in
 * thread order: the bits depend on the thread count, never on timing. */
#include <assert.h>
#include <omp.h>
#include <stdlib.h>
#include <string.h>

#include "engine/engine.h"
#include "engine/workspace.h"

struct crema_pointwise_conv {
  int n, cx, cy;
  size_t hw;
  bool bias;
  int parts; /* weight-gradient partial sums: min(threads, n), each (cy, cx), in the workspace */
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

bool crema_pointwise_conv_backward_suits(const crema_pointwise_conv *c) {
  return c->hw >= POINTWISE_MIN_PLANE_BACKWARD || c->cx < POINTWISE_MAX_CHANNELS_SMALL_PLANE_BACKWARD;
}

bool crema_pointwise_conv_suits(const crema_im2col_geom *g, int n, int group) {
  if (!crema_engine_have_onednn()) return false; /* without it the products would go to OpenBLAS again */
  return g->kernel_h == 1 && g->kernel_w == 1 && g->stride_h == 1 && g->stride_w == 1 && g->pad_h == 0 &&
         g->pad_w == 0 && group == 1 && (long)g->height * g->width >= POINTWISE_MIN_PLANE &&
         n >= omp_get_max_threads(); /* fewer images than threads would leave cores idle */
}

int crema_pointwise_conv_create(const crema_im2col_geom *g, int n, int cy, int group, bool bias,
                                crema_pointwise_conv **out, crema_error *err) {
  *out = NULL;
  if (n < 1 || !crema_pointwise_conv_suits(g, n, group)) {
    crema_fail(err,
               "the per-image 1x1 engine needs oneDNN, a 1x1 stride-1 unpadded kernel, one group, planes of "
               "100+ pixels and at least as many images as threads");
    return 1;
  }
  crema_pointwise_conv *c = calloc(1, sizeof *c);
  if (!c) return crema_fail(err, "out of memory"), -1;
  c->n = n;
  c->cx = g->channels;
  c->cy = cy;
  c->hw = (size_t)g->height * g->width;
  c->bias = bias;
  c->parts = omp_get_max_threads() < n ? omp_get_max_threads() : n;
  /* The partial sums serve backward only: none when the gradients run on the reference. */
  if (!crema_pointwise_conv_backward_suits(c)) {
    *out = c;
    return 0;
  }
  if (crema_engine_ws_reserve((size_t)c->parts * cy * c->cx * sizeof(float), err)) {
    free(c);
    return crema_fail(err, "out of memory for the 1x1 engine's partial sums"), -1;
  }
  c->ws_reserved = true;
  *out = c;
  return 0;
}

bool crema_pointwise_conv_matches(const crema_pointwise_conv *c, const crema_im2col_geom *g, int n, int cy,
                                  int group, bool bias) {
  return c && group == 1 && c->n == n && c->cx == g->channels && c->cy == cy &&
         c->hw == (size_t)g->height * g->width && c->bias == bias && g->out_h == g->height &&
         g->out_w == g->width;
}

void crema_pointwise_conv_forward(crema_pointwise_conv *c, const float *x, const float *w, const float *bias,
                                  crema_act act, float *y) {
  const size_t xs = (size_t)c->cx * c->hw, ys = (size_t)c->cy * c->hw;
  const int hw = (int)c->hw;
#pragma omp parallel for schedule(dynamic, 1)
  for (int i = 0; i < c->n; i++) {
    float *yi = y + (size_t)i * ys;
    crema_gemm_omp(false, false, c->cy, hw, c->cx, 1.0f, w, c->cx, x + (size_t)i * xs, hw, 0.0f, yi, hw);
    crema_bias_act_rows(c->cy, c->hw, c->bias ? bias : NULL, act, yi); /* while yi is in cache */
  }
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
  const size_t xs = (size_t)c->cx * c->hw, ys = (size_t)c->cy * c->hw, wn = (size_t)c->cy * c->cx;
  const int hw = (int)c->hw;
  if (dx) { /* dx_i = W^T dy_i: the same W (stride 0) for every image */
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
  if (!dw) return;
  /* With more input channels than outputs, the product runs as its transpose, dW^T (cx, cy)
   * += x_i dy_i^T, and is turned round as the partial sums are added: oneDNN's sgemm does
   * better with the longer side as its rows. One thread, batch 10: ResNet-50's 256->64 layers
   * on 56x56 planes 9.4 -> 6.3 ms, 1024->256 on 14x14 6.1 -> 5.2; the other way round, and
   * equal counts, no better. */
  const bool turned = c->cx > c->cy;
  if (c->parts == 1 && !turned) { /* one thread: straight into dW */
    for (int i = 0; i < c->n; i++)
      crema_gemm_omp(false, true, c->cy, c->cx, hw, 1.0f, dy + (size_t)i * ys, hw, x + (size_t)i * xs, hw,
                     1.0f, dw, c->cx);
    return;
  }
  float *part = (float *)(void *)crema_engine_ws_lock();
  /* part t sums images [t n / parts, (t + 1) n / parts): fixed ranges, so fixed bits */
#pragma omp parallel for schedule(static, 1) num_threads(c->parts)
  for (int t = 0; t < c->parts; t++) {
    const int i0 = (int)((long)t * c->n / c->parts), i1 = (int)((long)(t + 1) * c->n / c->parts);
    for (int i = i0; i < i1; i++) {
      const float *dyi = dy + (size_t)i * ys, *xi = x + (size_t)i * xs;
      if (turned)
        crema_gemm_omp(false, true, c->cx, c->cy, hw, 1.0f, xi, hw, dyi, hw, i == i0 ? 0.0f : 1.0f,
                       part + (size_t)t * wn, c->cy);
      else
        crema_gemm_omp(false, true, c->cy, c->cx, hw, 1.0f, dyi, hw, xi, hw, i == i0 ? 0.0f : 1.0f,
                       part + (size_t)t * wn, c->cx);
    }
  }
  if (turned)
    sum_partials_turned(part, c->parts, c->cx, c->cy, dw);
  else
    crema_sum_partials(part, c->parts, wn, dw);
  crema_engine_ws_unlock();
}

void crema_pointwise_conv_free(crema_pointwise_conv *c) {
  if (!c) return;
  if (c->ws_reserved) crema_engine_ws_release();
  free(c);
}
