/* conv_common.h -- what Convolution and Deconvolution share: reading ConvolutionParameter
 * (kernel/stride/pad/dilation in their repeated and _h/_w forms, group, axis) and the
 * batch-folded convolution engine.
 *
 * The engine computes one convolution "view": x (N, Cx, H, W) -> y (N, Cy, Ho, Wo) with
 * weights (Cy, Cx/G, kh, kw). Convolution uses it directly; Deconvolution is its transpose
 * (its forward is the engine's backward-data, its backward-data the engine's forward), so
 * one set of kernels serves both, as in Caffe.
 *
 * Three paths, chosen in crema_conv_engine_reshape:
 *  - general: im2col of a chunk of images into one (Cx*kh*kw, nb*Ho*Wo) column matrix, one
 *    GEMM per group for the whole chunk, then a scatter to NCHW (bias added on the way);
 *    chunks keep the column buffer near CREMA_CONV_COL_BUDGET floats;
 *  - 1x1, stride 1, no pad, large planes: the input already is the column matrix of each
 *    image, so one GEMM per image and group, no copies at all (smaller planes take the
 *    general path with the batch folded by a transpose instead of im2col);
 *  - depthwise (one input channel per group, at most 4 outputs per group): direct loops.
 * The column and staging buffers are scratch: they come from a crema_workspace, the net's
 * (shared by all its layers, which run one at a time) when the layer has one, else the
 * engine's own. They are reserved in reshape only (grow-only) and fetched in forward and
 * backward, so forward and backward allocate nothing. */
#ifndef CREMA_LAYERS_CONV_COMMON_H
#define CREMA_LAYERS_CONV_COMMON_H

#include <stdbool.h>
#include <stddef.h>

#include "base/error.h"
#include "layers/layer.h"
#include "proto/crema.pb-c.h"
#include "tensor/blob.h"
#include "tensor/im2col.h"
#include "tensor/math.h"
#include "tensor/workspace.h"

/* Column-buffer budget per chunk (floats): 1M floats = 4 MB, but at least one image per
 * chunk. Inside a net every layer's buffers share one workspace, sized for the largest
 * layer; the budget keeps that block small while small planes (where folding the batch
 * matters) still fold many images into one GEMM of >= ~1000 columns. */
#define CREMA_CONV_COL_BUDGET ((size_t)1 << 20)

/* Convolution parameters after Caffe's defaulting and checks. */
typedef struct crema_conv_params {
  int num_output, group, axis; /* axis already canonical for the bottom it was read for */
  bool bias_term;
  int kernel_h, kernel_w, stride_h, stride_w, pad_h, pad_w, dilation_h, dilation_w;
} crema_conv_params;

/* Reads l->param->convolution_param (absent = all defaults) for a bottom of this shape.
 * Checks what Caffe checks (kernel given exactly one way and > 0, _h/_w in pairs, repeated
 * fields with 1 or 2 values, num_output > 0, channels and num_output divisible by group)
 * and that there are exactly 2 spatial axes after `axis` (crema's limit).
 * Errors say which field is wrong and what to write instead. */
int crema_conv_params_read(const crema_layer *l, const crema_blob *bottom, crema_conv_params *out,
                           crema_error *err);

/* True when the bottom has other than 2 spatial axes after convolution_param.axis (or
 * force_nd_im2col is set): such layers run in conv_nd.c. */
bool crema_conv_nd_wanted(const crema_layer *l, const crema_blob *bottom);

typedef enum { CREMA_CONV_GENERAL = 0, CREMA_CONV_1X1 = 1, CREMA_CONV_DEPTHWISE = 2 } crema_conv_path;

typedef struct crema_conv_engine {
  crema_im2col_geom g; /* geometry on the x side (channels = Cx); out_h/out_w = y's plane */
  int cy, group, n;    /* y channels, groups, images */
  int chunk;           /* images per GEMM in the general path */
  crema_conv_path path;
  bool pointwise; /* 1x1, stride 1, no pad: the column matrix is a transpose, not an im2col */
  /* Run the general path's GEMMs on oneDNN's sgemm over OpenMP's threads (crema_gemm_omp)
   * instead of on OpenBLAS's own threads. Set by Convolution when crema's engines are on (the
   * plain reference path, which stands in for Caffe, keeps OpenBLAS's threading). */
  bool omp_gemm;
  /* Scratch, in the workspace: col (Cx*kh*kw, chunk*Ho*Wo) at offset 0, then tmp (Cy,
   * chunk*Ho*Wo), the GEMM result before the scatter to NCHW (none when a chunk is one image,
   * whose NCHW planes already are that matrix). 0 for the 1x1 and depthwise paths. */
  size_t col_floats, tmp_floats;
  crema_workspace *ws; /* borrowed (the layer's net's), or NULL: `own` is used */
  crema_workspace own;
} crema_conv_engine;

/* Makes the engine take its scratch from `ws` (borrowed; it must outlive the engine; NULL =
 * the engine's own). Call before the first reshape: usually with the layer's l->workspace. */
void crema_conv_engine_use_workspace(crema_conv_engine *e, crema_workspace *ws);

/* Sets the geometry (g->out_* must be filled), chooses the path and reserves the scratch.
 * Out of memory: an error. The engine starts zeroed ({0}); free with crema_conv_engine_free. */
int crema_conv_engine_reshape(crema_conv_engine *e, const crema_im2col_geom *g, int cy, int group, int n,
                              crema_error *err);
/* Frees the engine's own scratch (a borrowed workspace is its owner's to free) and forgets
 * its reservation; the engine can be reshaped again. */
void crema_conv_engine_free(crema_conv_engine *e);
/* Scratch floats the current geometry needs (what reshape reserved). */
size_t crema_conv_engine_scratch_floats(const crema_conv_engine *e);

/* y (N, Cy, Ho, Wo) = act(conv(x, w) + bias[c]) (bias may be NULL; act: none, or a fused
 * ReLU). Overwrites y. */
void crema_conv_engine_forward(crema_conv_engine *e, const float *x, const float *w, const float *bias,
                               crema_act act, float *y);

/* Given dy (N, Cy, Ho, Wo): dw += dL/dw (needs x; skipped when dw is NULL) and
 * dx = dL/dx (overwritten; skipped when dx is NULL). */
void crema_conv_engine_backward(crema_conv_engine *e, const float *x, const float *dy, const float *w,
                                float *dw, float *dx);

/* dbias[c] += sum over images and positions of dy (n, c, s). */
void crema_conv_bias_backward(int n, int c, size_t s, const float *dy, float *dbias);

/* x (n, c, s) += bias[c]. */
void crema_conv_bias_add(int n, int c, size_t s, const float *bias, float *x);

#endif
