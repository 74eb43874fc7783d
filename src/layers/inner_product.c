/* InnerProduct: Caffe's InnerProductLayer (fully connected). The bottom is viewed as
 * (M, K) with M = product of the axes before `axis` and K = product of the rest;
 * top (M, num_output) = bottom * W^T + b with W (num_output, K), or bottom * W with
 * W (K, num_output) when transpose is set. One GEMM for the whole batch; a small batch (16 or
 * fewer rows) of a large layer streams W (and dW) once per pass instead (engine/fc_stream.c),
 * unless the process runs on the reference path. With oneDNN the GEMMs of larger batches run
 * through its sgemm on OpenMP's threads: on 2 cores (AVX2) it took LeNet's ip1 (64 x 800 ->
 * 500) 0.28-0.40 ms a product against OpenBLAS's 0.34-0.46, and CaffeNet's fc6 at batch 50
 * 38-40 ms forward against 48-51, 34-35 for the data gradient against 41, the weight
 * gradient even; and no layer hands the cores between OpenMP's and OpenBLAS's threads. */
#include <limits.h>
#include <stdlib.h>

#include "base/mem.h"
#include "engine/engine.h"
#include "layers/layer.h"
#include "tensor/math.h"
#include "tensor/workspace.h"

typedef struct ip_state {
  int num_output, axis, m, k;
  bool bias_term, transpose;
  bool stream; /* this shape runs on fc_stream (chosen at reshape) */
  bool omp;    /* else: the GEMMs run on oneDNN's sgemm (crema_gemm_omp), not OpenBLAS's */
  float *ones; /* M ones: the bias gradient is one GEMV, dy^T * ones */
  size_t ones_cap;
  crema_workspace own; /* fc_stream's scratch outside a net (in a net: the net's workspace) */
} ip_state;

static crema_workspace *scratch(crema_layer *l) {
  ip_state *s = l->state;
  return l->workspace ? l->workspace : &s->own;
}

static int ip_setup(crema_layer *l, crema_blob *const *bottom, crema_blob *const *top, crema_error *err) {
  (void)top;
  Crema__InnerProductParameter dflt = CREMA__INNER_PRODUCT_PARAMETER__INIT;
  const Crema__InnerProductParameter *p =
      l->param->inner_product_param ? l->param->inner_product_param : &dflt;
  ip_state *s = calloc(1, sizeof *s);
  if (!s) return crema_fail(err, "out of memory");
  l->state = s;
  if (!p->has_num_output || p->num_output == 0)
    return crema_fail(err, "inner_product_param.num_output must be given and > 0");
  if (p->num_output > INT_MAX)
    return crema_fail(err, "inner_product_param.num_output %u is too large", p->num_output);
  s->num_output = (int)p->num_output;
  s->bias_term = p->bias_term;
  s->transpose = p->transpose;
  if (crema_blob_canonical_axis(bottom[0], p->axis, &s->axis, err))
    return crema_error_prefix(err, "inner_product_param.axis");
  const size_t k = crema_blob_count_range(bottom[0], s->axis, bottom[0]->num_axes);
  if (k == 0 || k > (size_t)0x7fffffff)
    return crema_fail(err, "the bottom has %zu inputs per sample after axis %d; need 1 to 2^31-1", k,
                      s->axis);
  s->k = (int)k;
  const int wshape[2] = {s->transpose ? s->k : s->num_output, s->transpose ? s->num_output : s->k};
  if (crema_layer_add_blob(l, 0, 2, wshape, p->weight_filler, err))
    return crema_error_prefix(err, "weight_filler");
  if (s->bias_term) {
    const int bshape[1] = {s->num_output};
    if (crema_layer_add_blob(l, 1, 1, bshape, p->bias_filler, err))
      return crema_error_prefix(err, "bias_filler");
  }
  return 0;
}

static int ip_reshape(crema_layer *l, crema_blob *const *bottom, crema_blob *const *top, crema_error *err) {
  ip_state *s = l->state;
  const crema_blob *b = bottom[0];
  char buf[128];
  if (b->num_axes <= s->axis || crema_blob_count_range(b, s->axis, b->num_axes) != (size_t)s->k)
    return crema_fail(err,
                      "input size incompatible with inner product parameters: the bottom %s does not have "
                      "the %d inputs per sample (from axis %d) that the weights were made for",
                      crema_blob_shape_string(b, buf, sizeof buf), s->k, s->axis);
  const size_t m = crema_blob_count_range(b, 0, s->axis);
  if (m > (size_t)0x7fffffff) return crema_fail(err, "too many samples (%zu)", m);
  s->m = (int)m;
  /* InnerProductParameter has no engine field: only the process-wide choice applies */
  s->stream =
      !s->transpose && crema_engine_winograd_wanted(0) && crema_fc_stream_suits(s->m, s->num_output, s->k);
  s->omp = !s->stream && crema_engine_winograd_wanted(0) && crema_engine_have_onednn();
  if (s->stream && crema_workspace_reserve(scratch(l), crema_fc_stream_scratch_floats(s->m, s->k), err))
    return crema_error_prefix(err, "InnerProduct scratch");
  if (s->bias_term && m > s->ones_cap) {
    crema_aligned_free(s->ones);
    s->ones_cap = 0;
    if (!(s->ones = crema_aligned_alloc(m * sizeof(float)))) return crema_fail(err, "out of memory");
    for (size_t i = 0; i < m; i++) s->ones[i] = 1.0f;
    s->ones_cap = m;
  }
  int shape[CREMA_MAX_AXES];
  for (int i = 0; i < s->axis; i++) shape[i] = b->shape[i];
  shape[s->axis] = s->num_output;
  return crema_blob_reshape(top[0], s->axis + 1, shape, err);
}

/* C (M, N) = op(A) op(B) + beta C, all row-major and packed, on the layer's GEMM. */
static void ip_gemm(const ip_state *s, bool trans_a, bool trans_b, int M, int N, int K, const float *A,
                    const float *B, float beta, float *C) {
  if (s->omp) /* split by columns over the threads: oneDNN's own split of few rows is poor */
    crema_gemm_cols_omp(trans_a, trans_b, M, N, K, 1.0f, A, trans_a ? M : K, B, trans_b ? K : N, beta, C, N);
  else
    crema_gemm(trans_a, trans_b, M, N, K, 1.0f, A, B, beta, C);
}

static int ip_forward(crema_layer *l, crema_blob *const *bottom, crema_blob *const *top, crema_error *err) {
  (void)err;
  const ip_state *s = l->state;
  const int M = s->m, N = s->num_output, K = s->k;
  float *y = top[0]->data;
  if (s->stream) {
    crema_fc_stream_forward(M, N, K, bottom[0]->data, l->blobs[0]->data,
                            s->bias_term ? l->blobs[1]->data : NULL, y, crema_workspace_data(scratch(l)));
    return 0;
  }
  ip_gemm(s, false, !s->transpose, M, N, K, bottom[0]->data, l->blobs[0]->data, 0.0f, y);
  if (s->bias_term) {
    const float *bias = l->blobs[1]->data;
#pragma omp parallel for schedule(static) if ((size_t)M * N > 32768)
    for (int i = 0; i < M; i++)
      for (int j = 0; j < N; j++) y[(size_t)i * N + j] += bias[j];
  }
  return 0;
}

static void ip_backward(crema_layer *l, crema_blob *const *top, const bool *propagate_down,
                        crema_blob *const *bottom) {
  const ip_state *s = l->state;
  const int M = s->m, N = s->num_output, K = s->k;
  const float *dy = top[0]->diff, *x = bottom[0]->data;
  /* A diff the net marked zero (overwrites_pending_diffs) is written, not added to: fc6's
   * 151 MB were zeroed, then read back, every iteration. */
  crema_blob *W = l->blobs[0], *b = s->bias_term ? l->blobs[1] : NULL;
  if (b && l->param_propagate_down[1] && M > 0) { /* db += dy^T 1 */
    crema_gemv(true, M, N, 1.0f, dy, s->ones, b->diff_zero_pending ? 0.0f : 1.0f, b->diff);
    b->diff_zero_pending = false;
  }
  if (l->param_propagate_down[0] && M > 0) {
    const float beta = W->diff_zero_pending ? 0.0f : 1.0f;
    if (s->transpose) /* dW (K, N) += x^T dy */
      ip_gemm(s, true, false, K, N, M, x, dy, beta, W->diff);
    else if (s->stream)
      crema_fc_stream_backward_weights(M, N, K, dy, x, W->diff, beta == 0.0f,
                                       crema_workspace_data(scratch(l)));
    else /* dW (N, K) += dy^T x */
      ip_gemm(s, true, false, N, K, M, dy, x, beta, W->diff);
    W->diff_zero_pending = false;
  }
  if (propagate_down[0] && s->stream)
    crema_fc_stream_backward_data(M, N, K, dy, l->blobs[0]->data, bottom[0]->diff);
  else if (propagate_down[0]) /* dx (M, K) = dy W, or dy W^T when transposed */
    ip_gemm(s, false, s->transpose, M, K, N, dy, l->blobs[0]->data, 0.0f, bottom[0]->diff);
}

static void ip_free(crema_layer *l) {
  ip_state *s = l->state;
  if (!s) return;
  crema_aligned_free(s->ones);
  crema_workspace_release(&s->own);
  free(s);
  l->state = NULL;
}

static const char *ip_engine_name(const crema_layer *l) {
  const ip_state *s = l->state;
  if (s && s->stream) return CREMA_ENGINE_FC_STREAM " (small batch)";
  return s && s->omp ? CREMA_ENGINE_ONEDNN " sgemm" : CREMA_ENGINE_REFERENCE;
}

const crema_layer_ops crema_inner_product_ops = {
    .type = "InnerProduct",
    .min_bottoms = 1,
    .max_bottoms = 1,
    .min_tops = 1,
    .max_tops = 1,
    .setup = ip_setup,
    .reshape = ip_reshape,
    .forward = ip_forward,
    .backward = ip_backward,
    .overwrites_pending_diffs = true,
    .free_state = ip_free,
    .engine_name = ip_engine_name,
};
