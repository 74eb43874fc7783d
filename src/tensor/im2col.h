/* im2col.h -- the lowering of 2-d convolution windows to matrix columns, batch-folded.
 *
 * Layout (llm.c style, every kernel states its shapes):
 *   images  (N, C, H, W), contiguous, row-major
 *   columns (C*kh*kw, N*Ho*Wo): row r = (c*kh + i)*kw + j, column n*Ho*Wo + oh*Wo + ow
 * so that one GEMM per group multiplies a weight matrix (M, C*kh*kw) by the columns of the
 * whole batch at once (the rows of a group of channels are contiguous). Entries that fall in
 * the zero padding are 0 in im2col and are dropped by col2im.
 * Both kernels are parallel with OpenMP; call them outside parallel regions. */
#ifndef CREMA_TENSOR_IM2COL_H
#define CREMA_TENSOR_IM2COL_H

#include <stdbool.h>
#include <stddef.h>

typedef struct crema_im2col_geom {
  int channels, height, width; /* of one input image */
  int kernel_h, kernel_w;
  int pad_h, pad_w;
  int stride_h, stride_w;
  int dilation_h, dilation_w;
  int out_h, out_w; /* filled by crema_im2col_geom_finish */
} crema_im2col_geom;

/* Computes out_h/out_w: (in + 2*pad - (dilation*(k-1)+1)) / stride + 1 (floor).
 * Returns -1 (and leaves out_* <= 0) when the dilated kernel does not fit in the padded
 * input, a size/stride/dilation is not positive, or the padded input or the dilated kernel
 * exceeds INT_MAX; the caller reports the error (crema_im2col_geom_too_large tells which). */
int crema_im2col_geom_finish(crema_im2col_geom *g);
/* True when the padded input (size + 2*pad) or the dilated kernel (dilation*(k-1)+1) of g
 * exceeds INT_MAX. */
bool crema_im2col_geom_too_large(const crema_im2col_geom *g);

/* Rows and columns of the column matrix for n images. */
size_t crema_im2col_rows(const crema_im2col_geom *g);
size_t crema_im2col_cols(const crema_im2col_geom *g, int n);

/* im (n, C, H, W) -> col (C*kh*kw, n*Ho*Wo), overwriting col. */
void crema_im2col(const crema_im2col_geom *g, int n, const float *im, float *col);

/* The adjoint of crema_im2col: im (n, C, H, W) = sum of the column entries that im2col
 * copied from each pixel. Overwrites im (pixels no window touches become 0). */
void crema_col2im(const crema_im2col_geom *g, int n, const float *col, float *im);

/* Folds a batch to one matrix: x (n, C, S) -> y (C, n*S). Overwrites y. */
void crema_batch_to_rows(int n, int c, size_t s, const float *x, float *y);

/* The inverse: y (C, n*S) -> x (n, C, S), plus bias[c] on every element of channel c when
 * bias is not NULL. Overwrites x. */
void crema_rows_to_batch(int n, int c, size_t s, const float *y, const float *bias, float *x);

#endif
