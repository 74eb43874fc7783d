/* math.h -- BLAS wrappers (row-major, Caffe's argument order) and small vector kernels.
 *
 * GEMM and GEMV go to OpenBLAS (cblas); call them from outside OpenMP parallel regions:
 * OpenBLAS runs its own threads. Element-wise kernels here use OpenMP when n is large. */
#ifndef CREMA_TENSOR_MATH_H
#define CREMA_TENSOR_MATH_H

#include <stdbool.h>
#include <stddef.h>

/* OpenMP thresholds: loops over fewer elements stay on one thread, because starting the
 * team costs more than the loop saves. Loops doing an exp/log/pow per element pay off
 * sooner. */
#define CREMA_PAR_MIN 32768
#define CREMA_PAR_MIN_HEAVY 16384

/* C (M x N) = alpha * op(A) (M x K) * op(B) (K x N) + beta * C; all row-major, packed. */
void crema_gemm(bool trans_a, bool trans_b, int M, int N, int K, float alpha, const float *A, const float *B,
                float beta, float *C);
/* Same with explicit leading dimensions (row strides) for sub-matrices. */
void crema_gemm_ld(bool trans_a, bool trans_b, int M, int N, int K, float alpha, const float *A, int lda,
                   const float *B, int ldb, float beta, float *C, int ldc);
/* y = alpha * op(A) * x + beta * y, A is M x N row-major. */
void crema_gemv(bool trans_a, int M, int N, float alpha, const float *A, const float *x, float beta,
                float *y);
void crema_axpy(size_t n, float alpha, const float *x, float *y);              /* y += alpha x */
void crema_axpby(size_t n, float alpha, const float *x, float beta, float *y); /* y = a x + b y */
void crema_scal(size_t n, float alpha, float *x);
void crema_set(size_t n, float value, float *x);
void crema_copy(size_t n, const float *x, float *y);
float crema_dot(size_t n, const float *x, const float *y);
float crema_asum(size_t n, const float *x);

/* An activation a layer applies to its outputs as it writes them: a ReLU the net fused into
 * the layer before it (net_fuse.c). relu false: none; else Caffe's ReLU,
 * y = y > 0 ? y : slope * y (the same expression as relu.c, so the same bits). */
typedef struct crema_act {
  bool relu;
  float slope;
} crema_act;
/* The activation of one value. */
static inline float crema_act_one(crema_act a, float v) {
  if (!a.relu) return v;
  const float neg = a.slope * v;
  return v > 0.0f ? v : neg; /* both sides computed: a select, not a branch, so it vectorises */
}
/* The ReLU's gradient for an output y (in place: its sign is the input's for slope >= 0):
 * relu.c's select, so the same bits. Takes the slope, not a crema_act: loops that read a
 * struct's field inside did not vectorise. */
static inline float crema_relu_grad(float g, float y, float slope) {
  const float neg = slope * g;
  return y > 0.0f ? g : neg;
}
/* x[i] = act(x[i]) for i < n; nothing without an activation. Parallel when n is large; call
 * it outside a parallel region, or with serial true from inside one. */
void crema_act_apply(crema_act a, size_t n, float *x, bool serial);

/* The OpenBLAS kernel in use ("SkylakeX", "Haswell", "Prescott", ...) and thread count. */
const char *crema_blas_corename(void);
/* Whether that kernel uses AVX-512 (OpenBLAS's SkylakeX, Cooperlake and SapphireRapids). */
bool crema_blas_avx512(void);
int crema_blas_threads(void);
void crema_blas_set_threads(int n);

#endif
