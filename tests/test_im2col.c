/* im2col / col2im against naive loops (padding, strides, dilation, asymmetric geometry,
 * several images), col2im as the exact adjoint of im2col, and the batch fold helpers. */
#include <check.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "support/run.h"
#include "base/rng.h"
#include "tensor/im2col.h"

static float *random_floats(size_t n, uint64_t seed) {
  crema_rng r;
  crema_rng_seed(&r, seed, 1);
  float *x = malloc((n ? n : 1) * sizeof(float));
  for (size_t i = 0; i < n; i++) x[i] = crema_rng_uniform(&r, -1.0f, 1.0f);
  return x;
}

/* The definition, one element at a time. */
static float naive_col(const crema_im2col_geom *g, int n, const float *im, int r, int col) {
  const int c = r / (g->kernel_h * g->kernel_w), i = (r / g->kernel_w) % g->kernel_h, j = r % g->kernel_w;
  const int plane = g->out_h * g->out_w, b = col / plane, oh = (col % plane) / g->out_w, ow = col % g->out_w;
  const int ih = oh * g->stride_h - g->pad_h + i * g->dilation_h;
  const int iw = ow * g->stride_w - g->pad_w + j * g->dilation_w;
  (void)n;
  if (ih < 0 || ih >= g->height || iw < 0 || iw >= g->width) return 0.0f;
  return im[(((size_t)b * g->channels + c) * g->height + ih) * g->width + iw];
}

static const crema_im2col_geom GEOMS[] = {
    /* C, H, W, kh, kw, pad_h, pad_w, stride_h, stride_w, dil_h, dil_w */
    {2, 5, 5, 3, 3, 1, 1, 1, 1, 1, 1, 0, 0},
    {3, 7, 6, 3, 2, 2, 0, 2, 3, 2, 1, 0, 0},
    {1, 9, 8, 2, 4, 0, 3, 3, 1, 1, 2, 0, 0},
    {4, 4, 4, 1, 1, 0, 0, 1, 1, 1, 1, 0, 0},
    {2, 6, 11, 5, 3, 2, 1, 1, 4, 1, 3, 0, 0},
    {2, 3, 3, 3, 3, 0, 0, 1, 1, 1, 1, 0, 0},   /* kernel = image: one column per image */
    {2, 3, 44, 2, 37, 1, 3, 1, 2, 1, 1, 0, 0}, /* past the 32 precomputed taps of an axis */
    /* stride 1, no pad, no dilation (the dense path): LeNet's conv2 (rows of 8), rows of 13 */
    {20, 12, 12, 5, 5, 0, 0, 1, 1, 1, 1, 0, 0},
    {3, 9, 17, 3, 5, 0, 0, 1, 1, 1, 1, 0, 0},
};

START_TEST(test_im2col_matches_naive) {
  for (size_t t = 0; t < sizeof GEOMS / sizeof GEOMS[0]; t++) {
    crema_im2col_geom g = GEOMS[t];
    ck_assert_int_eq(crema_im2col_geom_finish(&g), 0);
    for (int n = 1; n <= 3; n += 2) {
      const size_t rows = crema_im2col_rows(&g), cols = crema_im2col_cols(&g, n);
      float *im = random_floats((size_t)n * g.channels * g.height * g.width, 10 + t);
      float *col = random_floats(rows * cols, 99); /* garbage that must be overwritten */
      crema_im2col(&g, n, im, col);
      for (size_t r = 0; r < rows; r++)
        for (size_t c = 0; c < cols; c++)
          ck_assert_msg(col[r * cols + c] == naive_col(&g, n, im, (int)r, (int)c),
                        "geometry %zu, n %d: col[%zu][%zu] = %g, expected %g", t, n, r, c, col[r * cols + c],
                        naive_col(&g, n, im, (int)r, (int)c));
      free(im);
      free(col);
    }
  }
}
END_TEST

START_TEST(test_output_size) {
  crema_im2col_geom g = {3, 227, 227, 11, 11, 0, 0, 4, 4, 1, 1, 0, 0};
  ck_assert_int_eq(crema_im2col_geom_finish(&g), 0);
  ck_assert_int_eq(g.out_h, 55);
  ck_assert_int_eq(g.out_w, 55);
  crema_im2col_geom d = {1, 10, 12, 3, 3, 2, 0, 1, 2, 3, 2, 0, 0};
  ck_assert_int_eq(crema_im2col_geom_finish(&d), 0);
  ck_assert_int_eq(d.out_h, (10 + 4 - 7) / 1 + 1);
  ck_assert_int_eq(d.out_w, (12 + 0 - 5) / 2 + 1);
  crema_im2col_geom too_big = {1, 4, 4, 5, 5, 0, 0, 1, 1, 1, 1, 0, 0};
  ck_assert_int_eq(crema_im2col_geom_finish(&too_big), -1);
  crema_im2col_geom zero_stride = {1, 4, 4, 3, 3, 0, 0, 0, 1, 1, 1, 0, 0};
  ck_assert_int_eq(crema_im2col_geom_finish(&zero_stride), -1);
}
END_TEST

/* <im2col(x), y> == <x, col2im(y)> for random x, y: col2im is the adjoint. */
START_TEST(test_col2im_is_adjoint) {
  for (size_t t = 0; t < sizeof GEOMS / sizeof GEOMS[0]; t++) {
    crema_im2col_geom g = GEOMS[t];
    ck_assert_int_eq(crema_im2col_geom_finish(&g), 0);
    const int n = 2;
    const size_t nim = (size_t)n * g.channels * g.height * g.width;
    const size_t ncol = crema_im2col_rows(&g) * crema_im2col_cols(&g, n);
    float *x = random_floats(nim, 3 + t), *y = random_floats(ncol, 5 + t);
    float *cx = malloc(ncol * sizeof(float)), *ty = random_floats(nim, 77);
    crema_im2col(&g, n, x, cx);
    crema_col2im(&g, n, y, ty);
    double lhs = 0, rhs = 0, mag = 0;
    for (size_t i = 0; i < ncol; i++) {
      lhs += (double)cx[i] * y[i];
      mag += fabs((double)cx[i] * y[i]);
    }
    for (size_t i = 0; i < nim; i++) rhs += (double)x[i] * ty[i];
    ck_assert_msg(fabs(lhs - rhs) <= 1e-5 * (mag + 1), "geometry %zu: <im2col x, y> %g vs <x, col2im y> %g",
                  t, lhs, rhs);
    free(x);
    free(y);
    free(cx);
    free(ty);
  }
}
END_TEST

/* col2im against its own naive definition: every column entry added back to its pixel. */
START_TEST(test_col2im_matches_naive) {
  crema_im2col_geom g = GEOMS[1];
  ck_assert_int_eq(crema_im2col_geom_finish(&g), 0);
  const int n = 2;
  const size_t nim = (size_t)n * g.channels * g.height * g.width, rows = crema_im2col_rows(&g),
               cols = crema_im2col_cols(&g, n);
  float *y = random_floats(rows * cols, 8), *im = random_floats(nim, 9);
  double *ref = calloc(nim, sizeof(double));
  for (size_t r = 0; r < rows; r++)
    for (size_t c = 0; c < cols; c++) {
      const int ch = (int)r / (g.kernel_h * g.kernel_w), i = ((int)r / g.kernel_w) % g.kernel_h,
                j = (int)r % g.kernel_w;
      const int plane = g.out_h * g.out_w, b = (int)c / plane, oh = ((int)c % plane) / g.out_w,
                ow = (int)c % g.out_w;
      const int ih = oh * g.stride_h - g.pad_h + i * g.dilation_h,
                iw = ow * g.stride_w - g.pad_w + j * g.dilation_w;
      if (ih < 0 || ih >= g.height || iw < 0 || iw >= g.width) continue;
      ref[(((size_t)b * g.channels + ch) * g.height + ih) * g.width + iw] += y[r * cols + c];
    }
  crema_col2im(&g, n, y, im);
  for (size_t i = 0; i < nim; i++)
    ck_assert_msg(fabs(im[i] - ref[i]) < 1e-5, "pixel %zu: %g vs %g", i, im[i], ref[i]);
  free(y);
  free(im);
  free(ref);
}
END_TEST

/* Strides 2 and 4 across go by groups of taps interleaved into runs, stride 1 without padding by
 * whole rows (im2col.c): bit for bit
 * Caffe's sums, each pixel's taps added in kernel-row-then-column order from +0, on column
 * values of many magnitudes (another order rounds differently), with pads that put taps outside
 * the image, kernels that end inside a group, rows long enough for the vectors and several
 * images. */
START_TEST(test_col2im_strided_bitwise) {
  static const crema_im2col_geom geoms[] = {
      /* C, H, W, kh, kw, pad_h, pad_w, stride_h, stride_w, dil_h, dil_w */
      {3, 227, 227, 11, 11, 0, 0, 4, 4, 1, 1, 0, 0}, /* CaffeNet's conv1 */
      {3, 40, 37, 7, 7, 3, 3, 2, 2, 1, 1, 0, 0},     /* GoogLeNet's and ResNet's conv1, smaller */
      {2, 19, 70, 5, 6, 1, 2, 3, 4, 1, 1, 0, 0},     /* kw 6: the second group has taps 4 and 5 only */
      {2, 12, 50, 3, 3, 1, 1, 2, 2, 1, 1, 0, 0},
      {1, 9, 64, 1, 2, 0, 0, 1, 2, 1, 1, 0, 0},
      {2, 8, 90, 3, 5, 2, 4, 1, 4, 1, 1, 0, 0}, /* pad 4 of a 5-wide kernel: whole groups outside */
      /* stride 1, no pad (the dense path): LeNet's conv2, and rows of 13 (a vector and a tail) */
      {20, 12, 12, 5, 5, 0, 0, 1, 1, 1, 1, 0, 0},
      {3, 9, 17, 3, 5, 0, 0, 1, 1, 1, 1, 0, 0},
  };
  for (size_t k = 0; k < sizeof geoms / sizeof geoms[0]; k++) {
    crema_im2col_geom g = geoms[k];
    ck_assert_int_eq(crema_im2col_geom_finish(&g), 0);
    const int n = 2, plane = g.out_h * g.out_w;
    const size_t nim = (size_t)n * g.channels * g.height * g.width, rows = crema_im2col_rows(&g),
                 cols = crema_im2col_cols(&g, n);
    float *y = random_floats(rows * cols, 30 + k), *im = random_floats(nim, 40 + k),
          *ref = calloc(nim, sizeof(float));
    for (size_t i = 0; i < rows * cols; i++) y[i] = ldexpf(y[i], (int)(i % 23) - 11);
    /* Caffe's col2im_cpu: per channel, kernel row, kernel column, then output position */
    for (int b = 0; b < n; b++)
      for (int c = 0; c < g.channels; c++)
        for (int i = 0; i < g.kernel_h; i++)
          for (int j = 0; j < g.kernel_w; j++)
            for (int oh = 0; oh < g.out_h; oh++)
              for (int ow = 0; ow < g.out_w; ow++) {
                const int ih = oh * g.stride_h - g.pad_h + i, iw = ow * g.stride_w - g.pad_w + j;
                if (ih < 0 || ih >= g.height || iw < 0 || iw >= g.width) continue;
                const size_t r = ((size_t)c * g.kernel_h + i) * g.kernel_w + j;
                ref[(((size_t)b * g.channels + c) * g.height + ih) * g.width + iw] +=
                    y[r * cols + (size_t)b * plane + (size_t)oh * g.out_w + ow];
              }
    crema_col2im(&g, n, y, im);
    for (size_t i = 0; i < nim; i++)
      ck_assert_msg(!memcmp(&im[i], &ref[i], sizeof(float)), "geometry %zu, pixel %zu: %a, want %a", k, i,
                    (double)im[i], (double)ref[i]);
    free(y);
    free(im);
    free(ref);
  }
}
END_TEST

START_TEST(test_batch_fold_round_trip) {
  const int n = 3, c = 4;
  const size_t s = 5;
  float *x = random_floats((size_t)n * c * s, 4), *y = malloc((size_t)n * c * s * sizeof(float));
  float *back = malloc((size_t)n * c * s * sizeof(float));
  const float bias[4] = {1, 2, 3, 4};
  crema_batch_to_rows(n, c, s, x, y);
  for (int b = 0; b < n; b++)
    for (int ch = 0; ch < c; ch++)
      for (size_t k = 0; k < s; k++)
        ck_assert_float_eq(y[((size_t)ch * n + b) * s + k], x[((size_t)b * c + ch) * s + k]);
  crema_rows_to_batch(n, c, s, y, bias, back);
  for (int b = 0; b < n; b++)
    for (int ch = 0; ch < c; ch++)
      for (size_t k = 0; k < s; k++) {
        const size_t i = ((size_t)b * c + ch) * s + k;
        ck_assert_float_eq_tol(back[i], x[i] + bias[ch], 1e-6);
      }
  crema_rows_to_batch(n, c, s, y, NULL, back);
  for (size_t i = 0; i < (size_t)n * c * s; i++) ck_assert_float_eq(back[i], x[i]);
  free(x);
  free(y);
  free(back);
}
END_TEST

int main(void) {
  Suite *s = suite_create("im2col");
  TCase *tc = tcase_create("core");
  tcase_add_test(tc, test_im2col_matches_naive);
  tcase_add_test(tc, test_output_size);
  tcase_add_test(tc, test_col2im_is_adjoint);
  tcase_add_test(tc, test_col2im_matches_naive);
  tcase_add_test(tc, test_col2im_strided_bitwise);
  tcase_add_test(tc, test_batch_fold_round_trip);
  suite_add_tcase(s, tc);
  return test_run_suite(s);
}
