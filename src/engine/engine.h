/* engine.h -- faster compute engines behind the layer vtable.
 *
 * What this module promises:
 *  - A layer asks crema_engine_wanted() at reshape whether it should try a faster engine;
 *    the answer depends on the layer's own `engine` field (Caffe's DEFAULT / CAFFE / CUDNN
 *    enum: CAFFE forces the reference im2col+OpenBLAS path), on the process-wide choice
 *    (crema_engine_set_default, or the CREMA_ENGINE environment variable: "caffe" or
 *    "onednn"), and on whether crema was built with oneDNN at all.
 *  - An engine object computes exactly what the reference path computes (same layouts at its
 *    boundaries: NCHW data, Caffe's weight layout; the same accumulate/overwrite rules as
 *    layer.h), within float rounding. Tests compare every engine with the reference.
 *  - Creating an engine object may fail or decline (a shape the library does not support):
 *    the layer then keeps the reference path. Nothing here ever exits or aborts.
 *  - All buffers (layout-converted copies of the operands) are allocated at create time;
 *    forward and backward allocate nothing.
 *  - Ownership: the layer owns its engine object and frees it with the matching *_free.
 *
 * Without oneDNN (crema built where libdnnl-dev is absent) every create declines and
 * crema_engine_describe() says so. */
#ifndef CREMA_ENGINE_ENGINE_H
#define CREMA_ENGINE_ENGINE_H

#include <stdbool.h>

#include "base/error.h"
#include "tensor/im2col.h"
#include "tensor/math.h"

/* Names of the engines a layer can report (crema time prints them). */
#define CREMA_ENGINE_REFERENCE "caffe"
#define CREMA_ENGINE_ONEDNN "onednn"
#define CREMA_ENGINE_WINOGRAD "winograd"
#define CREMA_ENGINE_POINTWISE "pointwise"
#define CREMA_ENGINE_PER_IMAGE "per image"

/* True when crema was built with oneDNN. */
bool crema_engine_have_onednn(void);
/* True when oneDNN runs its AVX-512 kernels on this CPU (false without oneDNN). */
bool crema_engine_onednn_avx512(void);

/* One line for logs and benches: "oneDNN 2.6.3 (default engine)", "oneDNN 2.6.3 (disabled:
 * CREMA_ENGINE=caffe)" or "reference only (built without oneDNN: apt-get install
 * libdnnl-dev)". Static storage. */
const char *crema_engine_describe(void);

/* Process-wide default for layers whose engine field is DEFAULT: true = try the fast engines
 * (the initial value, unless CREMA_ENGINE=caffe is set), false = reference path everywhere.
 * Takes effect for layers reshaped afterwards. Not thread-safe against running nets. */
void crema_engine_set_default(bool use_fast);
bool crema_engine_get_default(void);
/* Within the fast engines, whether crema's own engines run (the initial value, unless
 * CREMA_ENGINE=onednn is set): Winograd for 3x3 stride-1 convolutions and the per-image
 * engine for 1x1 ones; without them oneDNN takes the 3x3 layers and the reference the 1x1. */
void crema_engine_set_winograd(bool use_winograd);

/* Whether a layer whose param says `proto_engine` (0 DEFAULT, 1 CAFFE, 2 CUDNN) should try
 * oneDNN (only true when crema has it) or crema's own engines (Winograd, per-image 1x1). CUDNN is treated
 * like DEFAULT (a GPU net run on the CPU). CREMA_ENGINE=caffe|onednn|winograd in the environment restricts
 * the choice: the reference path only, oneDNN only, Winograd only (other shapes: reference). */
bool crema_engine_onednn_wanted(int proto_engine);
bool crema_engine_winograd_wanted(int proto_engine);

/* ---- Convolution through oneDNN (fwd, bwd-data, bwd-weights), NCHW at the boundaries. */
typedef struct crema_onednn_conv crema_onednn_conv;

/* Creates the primitives for x (n, Cx, H, W) -> y (n, cy, Ho, Wo), weights (cy, Cx/group,
 * kh, kw), with or without bias (g->out_* must be filled), and with `act` (a fused ReLU) as
 * a post-op of the forward pass, which forward then applies when asked for it. Returns 0
 * and sets *out on success; returns 1 with *out NULL when oneDNN is absent or declines the
 * shape (the caller keeps the reference path; err says why); -1 on out of memory. Free with
 * crema_onednn_conv_free. */
int crema_onednn_conv_create(const crema_im2col_geom *g, int n, int cy, int group, bool bias, crema_act act,
                             crema_onednn_conv **out, crema_error *err);
/* Same geometry as at create (so a reshape to the same shape can keep the object). */
bool crema_onednn_conv_matches(const crema_onednn_conv *c, const crema_im2col_geom *g, int n, int cy,
                               int group, bool bias, crema_act act);
/* y = act(conv(x, w) + bias) (bias ignored unless created with bias; act: none, or a ReLU
 * fused into the layer, applied as each output is written). Overwrites y. */
void crema_onednn_conv_forward(crema_onednn_conv *c, const float *x, const float *w, const float *bias,
                               crema_act act, float *y);
/* dw += dL/dw (skipped when dw is NULL; needs x), dx = dL/dx (overwritten; skipped when dx
 * is NULL). The bias gradient is the caller's (crema_conv_bias_backward). */
void crema_onednn_conv_backward(crema_onednn_conv *c, const float *x, const float *dy, const float *w,
                                float *dw, float *dx);
/* The implementation oneDNN picked for the forward pass, e.g. "jit:avx2". */
const char *crema_onednn_conv_impl(const crema_onednn_conv *c);
void crema_onednn_conv_free(crema_onednn_conv *c);

/* ---- Independent products of one shape (gemm_batch.c): for j in [0, count),
 *   C_j = alpha op(A_j) op(B_j) + beta C_j,  X_j = X + j * stride_x  (row-major, as
 * crema_gemm_ld). With oneDNN they run in parallel over j, each on one OpenMP thread
 * (through oneDNN's sgemm), so the work never crosses into OpenBLAS's thread pool; without
 * it, one after another on OpenBLAS. The bits of each product do not depend on the thread
 * count. The C_j must not overlap. */
typedef struct crema_gemm_batch {
  bool trans_a, trans_b;
  int m, n, k;
  float alpha, beta;
  const float *a, *b;
  float *c;
  int lda, ldb, ldc;
  size_t stride_a, stride_b, stride_c;
  int count;
} crema_gemm_batch;
void crema_gemm_batch_run(const crema_gemm_batch *b);
/* One product, row-major, through oneDNN's sgemm on OpenMP's threads: inside a parallel
 * region on the calling thread only, outside it on all of them, so the work never crosses
 * into OpenBLAS's thread pool (OpenBLAS's crema_gemm_ld without oneDNN). */
void crema_gemm_omp(bool trans_a, bool trans_b, int m, int n, int k, float alpha, const float *a, int lda,
                    const float *b, int ldb, float beta, float *c, int ldc);
/* Whether a product n columns wide, B transposed or not, runs faster on oneDNN's sgemm
 * (crema_gemm_omp) than on OpenBLAS (gemm_batch.c says when). False without oneDNN. */
bool crema_gemm_prefers_onednn(bool trans_b, int n);
/* One product on whichever of the two crema_gemm_prefers_onednn picks. */
void crema_gemm_best(bool trans_a, bool trans_b, int m, int n, int k, float alpha, const float *a, int lda,
                     const float *b, int ldb, float beta, float *c, int ldc);
/* crema_gemm_omp's product with C's columns in one contiguous range per OpenMP thread, each
 * range one oneDNN sgemm on its thread: for products with B transposed and few rows (an
 * InnerProduct's forward pass, a recurrence's N streams), which oneDNN's own threading runs up
 * to 3x slower. Where that cannot be (no oneDNN, one thread, inside a parallel region, under
 * 128 columns), crema_gemm_omp itself. */
void crema_gemm_cols_omp(bool trans_a, bool trans_b, int m, int n, int k, float alpha, const float *a,
                         int lda, const float *b, int ldb, float beta, float *c, int ldc);
/* dw[k] += the sum over t < parts of part[t * n + k], added in the order t = 0, 1, ...: the
 * bits depend on the number of parts, never on which thread finished first. Parallel. */
void crema_sum_partials(const float *part, int parts, size_t n, float *dw);
/* One image's output rows in cache: row o (cols floats) += bias[o] when bias is not NULL,
 * then the activation. Serial: for use inside a parallel loop over images. */
void crema_bias_act_rows(int rows, size_t cols, const float *bias, crema_act act, float *y);

/* ---- 1x1 convolution, one product per image on OpenMP's threads (pointwise.c); strided on
 * small planes, one product for the whole batch. Same contract as the oneDNN object above.
 * Takes group 1 and (per image) at least as many images as threads, only when crema has
 * oneDNN (its sgemm is what runs single-threaded per image). */
typedef struct crema_pointwise_conv crema_pointwise_conv;
bool crema_pointwise_conv_suits(const crema_im2col_geom *g, int n, int group);
int crema_pointwise_conv_create(const crema_im2col_geom *g, int n, int cy, int group, bool bias,
                                crema_pointwise_conv **out, crema_error *err);
bool crema_pointwise_conv_matches(const crema_pointwise_conv *c, const crema_im2col_geom *g, int n, int cy,
                                  int group, bool bias);
void crema_pointwise_conv_forward(crema_pointwise_conv *c, const float *x, const float *w, const float *bias,
                                  crema_act act, float *y);
/* Whether backward suits this engine too: not on planes under 400 pixels with 1024+ input
 * channels, unless folded. There the caller runs the gradients on the reference path (copy-free for these
 * layers) and must not call crema_pointwise_conv_backward. */
bool crema_pointwise_conv_backward_suits(const crema_pointwise_conv *c);
/* True when the layer runs as one product for the whole batch (strided 1x1 on small planes). */
bool crema_pointwise_conv_folded(const crema_pointwise_conv *c);
/* dw += dL/dw (skipped when NULL), dx = dL/dx (overwritten; skipped when NULL). */
void crema_pointwise_conv_backward(crema_pointwise_conv *c, const float *x, const float *dy, const float *w,
                                   float *dw, float *dx);
void crema_pointwise_conv_free(crema_pointwise_conv *c);

/* ---- A small convolution as im2col and one product per image on OpenMP's threads
 * (per_image.c). Same contract as the oneDNN object above. Takes group 1, channels that
 * oneDNN would pad (fewer input channels than one of its blocks of 8, 16 with AVX-512, or
 * input and output channels both off its blocks), any kernel but a 1x1 stride-1 unpadded one
 * (pointwise.c's), output planes of 64+ pixels, an image's column matrix of at most 32K
 * floats and at least as many images as threads, only when crema has oneDNN (its sgemm is
 * what runs single-threaded per image): LeNet's conv1 and conv2. */
typedef struct crema_per_image_conv crema_per_image_conv;
bool crema_per_image_conv_suits(const crema_im2col_geom *g, int n, int cy, int group);
int crema_per_image_conv_create(const crema_im2col_geom *g, int n, int cy, int group, bool bias,
                                crema_per_image_conv **out, crema_error *err);
bool crema_per_image_conv_matches(const crema_per_image_conv *c, const crema_im2col_geom *g, int n, int cy,
                                  int group, bool bias);
void crema_per_image_conv_forward(crema_per_image_conv *c, const float *x, const float *w, const float *bias,
                                  crema_act act, float *y);
/* dw += dL/dw, db += dL/dbias (each skipped when NULL), dx = dL/dx (overwritten; skipped when
 * NULL). */
void crema_per_image_conv_backward(crema_per_image_conv *c, const float *x, const float *dy, const float *w,
                                   float *dw, float *db, float *dx);
/* Whether its forward pass and weight gradient read the image directly (stride 1, no
 * padding, enough output pixels) rather than a column matrix: for the engine's name. */
bool crema_per_image_conv_direct(const crema_per_image_conv *c);
/* The direct passes run sixteen lanes at a time where the CPU has AVX-512 (the default there),
 * eight otherwise; both give the same bits. wide false runs the eight-lane passes on such a
 * CPU too (for tests). Returns whether they now run sixteen wide. */
bool crema_per_image_conv_set_wide(crema_per_image_conv *c, bool wide);
void crema_per_image_conv_free(crema_per_image_conv *c);

/* ---- Convolution by Winograd F(4x4, 3x3) (winograd.c): 3x3, stride 1, no dilation, pad <= 2.
 * Same contract as the oneDNN object above; no external library. */
typedef struct crema_winograd_conv crema_winograd_conv;

/* Fewer input or output channels per group than this and the 36 GEMMs are too thin to pay
 * for the transforms (measured: below 16 the im2col path wins). */
#define CREMA_WINOGRAD_MIN_CHANNELS 16
/* Fewer 4x4 output tiles than this over the batch and the weight transforms (36 values per
 * kernel, three times per training step, whatever the batch) cost more than the 36 GEMMs
 * save. Measured on an AMD EPYC (Zen 4), 512 -> 512 and 512 -> 384 channels on 7x7 planes
 * (ResNet-50's res5, GoogLeNet's inception_5), forward + backward against oneDNN on 1 / 2
 * threads: 40 tiles (batch 10) 0.70-0.90 / 0.88-1.03 of oneDNN's time with its AVX-512
 * kernels, 0.77 / 0.81 with its AVX2 ones, and 0.69 / 0.49 of the reference path's; 32 tiles
 * 0.90 / 0.93-0.96; 16 tiles 1.15-1.4x, 4 tiles 2.6-3.5x. (Earlier code, on AVX2, had lost at 40
 * tiles, so the bar was 128.) The choice is made at reshape, so a run keeps its engines (and
 * its exact results). */
#define CREMA_WINOGRAD_MIN_TILES 32

/* Whether the geometry is one Winograd takes (see above), for a batch of n. */
bool crema_winograd_conv_suits(const crema_im2col_geom *g, int n, int cy, int group);
/* 0 and *out on success; 1 with *out NULL when the shape does not suit (err says why); -1
 * on out of memory. Free with crema_winograd_conv_free. */
int crema_winograd_conv_create(const crema_im2col_geom *g, int n, int cy, int group, bool bias,
                               crema_winograd_conv **out, crema_error *err);
bool crema_winograd_conv_matches(const crema_winograd_conv *c, const crema_im2col_geom *g, int n, int cy,
                                 int group, bool bias);
/* y = act(conv(x, w) + bias). Overwrites y. */
void crema_winograd_conv_forward(crema_winograd_conv *c, const float *x, const float *w, const float *bias,
                                 crema_act act, float *y);
/* dw += dL/dw (skipped when NULL), dx = dL/dx (overwritten; skipped when NULL). */
void crema_winograd_conv_backward(crema_winograd_conv *c, const float *x, const float *dy, const float *w,
                                  float *dw, float *dx);
void crema_winograd_conv_free(crema_winograd_conv *c);

/* ---- A fully connected layer on a small batch (fc_stream.c): W (n, k) row-major (Caffe's
 * InnerProduct without `transpose`), x and dx (m, k), y and dy (m, n), m <=
 * CREMA_FC_STREAM_MAX_BATCH. Each pass reads W (or dW) once, at memory speed, where a GEMM
 * would pack a copy of it first. No external library; results within float rounding of the
 * reference GEMMs, the same bits on any thread count. */
#define CREMA_FC_STREAM_MAX_BATCH 16
#define CREMA_ENGINE_FC_STREAM "stream"
/* Whether a layer of this shape should take it (small batch, at least 64K weights). */
bool crema_fc_stream_suits(int m, int n, int k);
/* Floats of scratch the forward and the weight gradient need (a copy of x, rows spread over
 * the cache's sets), and the stride of its rows. */
size_t crema_fc_stream_scratch_floats(int m, int k);
int crema_fc_stream_stride(int k);
/* y = x W^T (+ bias, when not NULL). Overwrites y. */
void crema_fc_stream_forward(int m, int n, int k, const float *x, const float *w, const float *bias, float *y,
                             float *scratch);
/* dx = dy W. Overwrites dx. */
void crema_fc_stream_backward_data(int m, int n, int k, const float *dy, const float *w, float *dx);
/* dW += dy^T x, or dW = dy^T x with `overwrite` (dW's old contents are then never read). */
void crema_fc_stream_backward_weights(int m, int n, int k, const float *dy, const float *x, float *dw,
                                      bool overwrite, float *scratch);

#endif
