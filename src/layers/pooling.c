/* Pooling: Caffe's PoolingLayer, MAX and AVE over (N, C, H, W) planes.
 *
 * Output size follows Caffe exactly: ceil((in + 2*pad - k) / stride) + 1 (floor with
 * round_mode FLOOR); then, when padding, a last window that would start in the bottom/right
 * padding (at or beyond in + pad) is dropped. AVE divides by the window clipped to
 * in + pad (padding cells count, cells past the padding do not), as Caffe does. MAX keeps
 * the argmax of each output for backward and, with a second top, writes it there as Caffe
 * does (the flat index h * W + w within the plane, as a float). global_pooling pools each
 * whole plane. STOCHASTIC: pool_setup hands the layer to pooling_stochastic.c. AVE planes
 * with strides up to 2 across run in pooling_ave.c, MAX with stride 1 both ways in
 * pooling_max_s1.c; the window loops here take the rest (and check both in the tests). */
#include <float.h>
#include <inttypes.h>
#include <limits.h>
#include <stdint.h>
#include <math.h>
#include <omp.h>
#include <stdlib.h>
#include <string.h>
#if defined(__SSE2__)
#include <emmintrin.h>
#endif

#include "base/mem.h"
#include "layers/layer.h"
#include "layers/pooling_ave.h"
#include "layers/pooling_max_s1.h"
#include "layers/pooling_max_v16.h"
#include "layers/pooling_simd.h" /* POOL_AVX2: 8-wide planes on CPUs with AVX2, chosen when the layer runs */

typedef struct pool_state {
  Crema__PoolingParameter__PoolMethod method;
  bool global;
  bool floor_mode;
  int kernel_h, kernel_w, stride_h, stride_w, pad_h, pad_w;
  int n, c, h, w, ph, pw;
  int *mask; /* MAX: argmax per output element */
  size_t mask_cap;
  /* The windows, the same for every plane, worked out once per reshape: rows [lo, hi) and
   * AVE extent of each output row (3 * ph ints), then of each output column (3 * pw). */
  int *win;
  size_t win_cap;
  /* MAX forward sixteen outputs at a time (pooling_max_v16.c, and the stride-1 passes of
   * pooling_max_s1.c): rows of more than eight outputs on a CPU with AVX-512. GoogLeNet's
   * pool2 (56 wide) forward 2.46 -> 1.94 ms, one thread; its 7-wide pool4 took 0.82 ms
   * against 0.61 on eight lanes, nine of sixteen computed for nothing. */
  bool wide;
  /* Scratch per thread (thread_floats each), in the net's shared workspace
   * (tensor/workspace.h) or, outside a net, the layer's own: for MAX (forward only), one
   * plane's argmax, written instead of `mask` when nothing reads the mask (a forward-only net
   * with one top, so the full mask is never touched); with stride 1 both ways, then the
   * separable pass's row maxima and their columns for the whole plane and one padded input
   * row. For AVE (pooling_ave.c), the padded plane of forward or the shares of backward. */
  int threads; /* the forward's threads */
  size_t thread_floats;
  crema_workspace own;
} pool_state;

/* The proto fields are uint32; a value above INT_MAX would turn negative as an int. */
static int checked_int(const char *name, uint32_t v, int *out, crema_error *err) {
  if (v > (uint32_t)INT_MAX)
    return crema_fail(err, "pooling_param.%s %" PRIu32 " is too large (at most %d)", name, v, INT_MAX);
  *out = (int)v;
  return 0;
}

static int pool_setup(crema_layer *l, crema_blob *const *bottom, crema_blob *const *top, crema_error *err) {
  Crema__PoolingParameter dflt = CREMA__POOLING_PARAMETER__INIT;
  const Crema__PoolingParameter *p = l->param->pooling_param ? l->param->pooling_param : &dflt;
  if (p->pool == CREMA__POOLING_PARAMETER__POOL_METHOD__STOCHASTIC) { /* pooling_stochastic.c */
    extern const crema_layer_ops crema_pooling_stochastic_ops;
    l->ops = &crema_pooling_stochastic_ops;
    return l->ops->setup(l, bottom, top, err);
  }
  pool_state *s = calloc(1, sizeof *s);
  if (!s) return crema_fail(err, "out of memory");
  l->state = s;
  s->method = p->pool;
  if (s->method != CREMA__POOLING_PARAMETER__POOL_METHOD__MAX &&
      s->method != CREMA__POOLING_PARAMETER__POOL_METHOD__AVE)
    return crema_fail(err, "unknown pooling method %d", (int)s->method);
  if (l->n_top > 1 && s->method != CREMA__POOLING_PARAMETER__POOL_METHOD__MAX)
    return crema_fail(err, "only MAX pooling has a second (mask) top; remove the second top");
  s->global = p->global_pooling;
  s->floor_mode =
      p->round_mode == CREMA__POOLING_PARAMETER__ROUND_MODE__FLOOR || (p->has_ceil_mode && !p->ceil_mode);
  if (s->global) {
    if (p->has_kernel_size || p->has_kernel_h || p->has_kernel_w)
      return crema_fail(err, "with global_pooling the kernel size is the input size; remove kernel_size");
  } else {
    if (p->has_kernel_size == (p->has_kernel_h || p->has_kernel_w))
      return crema_fail(err, "give either kernel_size or kernel_h and kernel_w (exactly one of the two)");
    if (!p->has_kernel_size && !(p->has_kernel_h && p->has_kernel_w))
      return crema_fail(err, "kernel_h and kernel_w must be given together");
    if (checked_int(p->has_kernel_size ? "kernel_size" : "kernel_h",
                    p->has_kernel_size ? p->kernel_size : p->kernel_h, &s->kernel_h, err) ||
        checked_int(p->has_kernel_size ? "kernel_size" : "kernel_w",
                    p->has_kernel_size ? p->kernel_size : p->kernel_w, &s->kernel_w, err))
      return -1;
    if (s->kernel_h <= 0 || s->kernel_w <= 0) return crema_fail(err, "filter dimensions must be > 0");
  }
  if (p->has_pad && (p->has_pad_h || p->has_pad_w))
    return crema_fail(err, "give either pad or pad_h and pad_w, not both");
  if (p->has_pad_h != p->has_pad_w) return crema_fail(err, "pad_h and pad_w must be given together");
  if (checked_int(p->has_pad_h ? "pad_h" : "pad", p->has_pad_h ? p->pad_h : p->pad, &s->pad_h, err) ||
      checked_int(p->has_pad_w ? "pad_w" : "pad", p->has_pad_w ? p->pad_w : p->pad, &s->pad_w, err))
    return -1;
  if ((p->has_stride_h || p->has_stride_w) && p->has_stride)
    return crema_fail(err, "give either stride or stride_h and stride_w, not both");
  if (p->has_stride_h != p->has_stride_w)
    return crema_fail(err, "stride_h and stride_w must be given together");
  if (checked_int(p->has_stride_h ? "stride_h" : "stride", p->has_stride_h ? p->stride_h : p->stride,
                  &s->stride_h, err) ||
      checked_int(p->has_stride_w ? "stride_w" : "stride", p->has_stride_w ? p->stride_w : p->stride,
                  &s->stride_w, err))
    return -1;
  if (s->stride_h <= 0 || s->stride_w <= 0) return crema_fail(err, "stride must be > 0");
  if (s->global && (s->pad_h || s->pad_w || s->stride_h != 1 || s->stride_w != 1))
    return crema_fail(err, "with global_pooling, pad must be 0 and stride 1");
  if (!s->global && (s->pad_h >= s->kernel_h || s->pad_w >= s->kernel_w))
    return crema_fail(err, "pad (%d,%d) must be smaller than the kernel (%d,%d)", s->pad_h, s->pad_w,
                      s->kernel_h, s->kernel_w);
  return 0;
}

/* Called with in + 2*pad <= INT_MAX and k <= in + 2*pad (checked by pool_reshape). Integer
 * floor/ceil: equal to Caffe's float division for every size below 2^24, and exact above. */
static int pooled_size(int in, int k, int pad, int stride, bool floor_mode) {
  const int span = in + 2 * pad - k;
  int out = (floor_mode ? span / stride : span / stride + (span % stride != 0)) + 1;
  /* Caffe: the last window must start inside the image or its left/top padding. */
  if (pad > 0 && (int64_t)(out - 1) * stride >= (int64_t)in + pad) out--;
  return out;
}

static void pool_window(int o, int stride, int pad, int k, int in, int *lo, int *hi, int *len);

/* MAX pooling with stride 1 both ways, not global (GoogLeNet's 3x3 pad-1 inception pools):
 * pooling_max_s1.c, forward in two passes of kernel_h + kernel_w comparisons an output. */
static bool separable(const pool_state *s) {
  return s->method == CREMA__POOLING_PARAMETER__POOL_METHOD__MAX && !s->global && s->stride_h == 1 &&
         s->stride_w == 1 && s->w <= (1 << 24); /* its row scratch counts columns in int */
}

static crema_pool_s1 s1_geometry(const pool_state *s) {
  /* sixteen lanes from two groups on: GoogLeNet's 28-wide inception pools forward 0.63 of
   * their time on eight, its 14-wide ones 1.12x slower (their planes' fixed costs dominate) */
  return (crema_pool_s1){
      s->h, s->w, s->ph, s->pw, s->kernel_h, s->kernel_w, s->pad_h, s->pad_w, s->wide && s->pw > 16};
}

/* AVE planes with strides up to 2 across: pooling_ave.c, the whole plane at once. */
static crema_pool_ave ave_geometry(const pool_state *s) {
  return (crema_pool_ave){.h = s->h,
                          .w = s->w,
                          .ph = s->ph,
                          .pw = s->pw,
                          .kh = s->kernel_h,
                          .kw = s->kernel_w,
                          .sh = s->stride_h,
                          .sw = s->stride_w,
                          .pad_h = s->pad_h,
                          .pad_w = s->pad_w,
                          .rows = s->win,
                          .cols = s->win + 3 * (size_t)s->ph,
                          .wide = crema_pool_ave_wide(s->pw)};
}

static bool ave_planes(const pool_state *s) {
  const crema_pool_ave g = ave_geometry(s);
  return s->method == CREMA__POOLING_PARAMETER__POOL_METHOD__AVE && crema_pool_ave_suits(&g);
}

/* The separable pass's scratch, in whole 64-byte lines. */
static size_t sep_floats(const pool_state *s) {
  const crema_pool_s1 g = s1_geometry(s);
  return (crema_pool_s1_scratch_floats(&g) + 15) & ~(size_t)15;
}

#if defined(POOL_AVX2)
/* MAX with stride 1 or 2 across (any stride down; stride 1 both ways is separable), not
 * global: on CPUs with AVX2 the whole plane runs eight outputs at a time from a copy padded
 * with -FLT_MAX (max_plane_padded). GoogLeNet's 3x3 stride-2 pools took 4-10 ms this way
 * against 7-18 for the row loops (one thread, forward). */
/* The padded copy: rows and columns enough for every window of every output, the last
 * group of eight or sixteen (s->wide) outputs in a row included (its extra lanes are computed
 * and dropped). In 64 bits: a fuzzed kernel or stride near INT_MAX must not wrap. */
static int64_t padded_cols64(const pool_state *s) {
  const int64_t cols = s->wide ? ((int64_t)s->pw + 15) & ~(int64_t)15 : ((int64_t)s->pw + 7) & ~(int64_t)7;
  /* rows a whole number of 64-byte lines long: with no padding at the left, the copy's stores
   * are then aligned (a store across two lines costs two; 56x56 planes, 3x3 stride 2, in
   * cache, one thread of a Zen 5 EPYC: 0.67 -> 0.57 us a plane) */
  return ((cols - 1) * s->stride_w + s->kernel_w + 16 + 15) & ~(int64_t)15;
}

static int64_t padded_rows64(const pool_state *s) { return ((int64_t)s->ph - 1) * s->stride_h + s->kernel_h; }

/* Planes whose padded copy would pass this many floats (64 MB) keep the other paths. */
#define POOL_PADDED_MAX_FLOATS ((int64_t)1 << 24)

static bool padded_max(const pool_state *s) {
  return s->method == CREMA__POOLING_PARAMETER__POOL_METHOD__MAX && !s->global && s->stride_w <= 2 &&
         !separable(s) && padded_rows64(s) * padded_cols64(s) <= POOL_PADDED_MAX_FLOATS;
}

static int padded_cols(const pool_state *s) { return (int)padded_cols64(s); }

static int padded_rows(const pool_state *s) { return (int)padded_rows64(s); }

static size_t padded_floats(const pool_state *s) {
  return padded_max(s) ? (size_t)padded_rows(s) * padded_cols(s) + 16 : 0;
}

/* The plane and its padded copy, for the AVX-512 pass (pooling_max_v16.c). */
static crema_pool_pad pad_geometry(const pool_state *s) {
  return (crema_pool_pad){s->h,        s->w,        s->ph,    s->pw,    s->kernel_h,    s->kernel_w,
                          s->stride_h, s->stride_w, s->pad_h, s->pad_w, padded_rows(s), padded_cols(s)};
}
#else
static size_t padded_floats(const pool_state *s) {
  (void)s;
  return 0;
}
#endif

/* One plane's argmax (ints, in floats' room), rounded to whole 64-byte lines. */
static size_t plane_mask_floats(const pool_state *s) { return ((size_t)s->ph * s->pw + 15) & ~(size_t)15; }

static crema_workspace *scratch(crema_layer *l) {
  pool_state *s = l->state;
  return l->workspace ? l->workspace : &s->own;
}

static int pool_reshape(crema_layer *l, crema_blob *const *bottom, crema_blob *const *top, crema_error *err) {
  pool_state *s = l->state;
  const crema_blob *b = bottom[0];
  char buf[128];
  if (b->num_axes != 4)
    return crema_fail(err, "the bottom must have 4 axes (N, C, H, W); it is %s",
                      crema_blob_shape_string(b, buf, sizeof buf));
  s->n = b->shape[0];
  s->c = b->shape[1];
  s->h = b->shape[2];
  s->w = b->shape[3];
  if (s->global) {
    s->kernel_h = s->h;
    s->kernel_w = s->w;
  }
  /* The window loops index with int: the padded input must fit one. */
  const int64_t padded_h = (int64_t)s->h + 2 * (int64_t)s->pad_h,
                padded_w = (int64_t)s->w + 2 * (int64_t)s->pad_w;
  if (padded_h > INT_MAX || padded_w > INT_MAX)
    return crema_fail(err, "the %dx%d input with pad %d,%d exceeds 2^31-1 pixels per side; use a smaller pad",
                      s->h, s->w, s->pad_h, s->pad_w);
  if (padded_h < s->kernel_h || padded_w < s->kernel_w)
    return crema_fail(err, "the %dx%d input (pad %d,%d) is smaller than the %dx%d pooling kernel", s->h, s->w,
                      s->pad_h, s->pad_w, s->kernel_h, s->kernel_w);
  s->ph = pooled_size(s->h, s->kernel_h, s->pad_h, s->stride_h, s->floor_mode);
  s->pw = pooled_size(s->w, s->kernel_w, s->pad_w, s->stride_w, s->floor_mode);
  for (int t = 0; t < l->n_top; t++)
    if (crema_blob_reshape4(top[t], s->n, s->c, s->ph, s->pw, err)) return -1;
  const size_t wneed = 3 * ((size_t)s->ph + (size_t)s->pw);
  if (wneed > s->win_cap) {
    crema_aligned_free(s->win);
    s->win_cap = 0;
    if (!(s->win = crema_aligned_alloc(wneed * sizeof(int)))) return crema_fail(err, "out of memory");
    s->win_cap = wneed;
  }
  int *rows = s->win, *cols = s->win + 3 * (size_t)s->ph;
  for (int o = 0; o < s->ph; o++)
    pool_window(o, s->stride_h, s->pad_h, s->kernel_h, s->h, &rows[3 * o], &rows[3 * o + 1],
                &rows[3 * o + 2]);
  for (int o = 0; o < s->pw; o++)
    pool_window(o, s->stride_w, s->pad_w, s->kernel_w, s->w, &cols[3 * o], &cols[3 * o + 1],
                &cols[3 * o + 2]);
  s->wide = s->pw > 8 && crema_pool_max_v16_available();
  s->threads = omp_get_max_threads();
  /* whole 64-byte lines per thread: no two threads write one line */
  const crema_pool_ave ave = ave_geometry(s);
  s->thread_floats =
      s->method == CREMA__POOLING_PARAMETER__POOL_METHOD__MAX
          ? (plane_mask_floats(s) + (separable(s) ? sep_floats(s) : 0) + padded_floats(s) + 15) & ~(size_t)15
      : ave_planes(s) ? crema_pool_ave_scratch_floats(&ave)
                      : 0;
  if (s->thread_floats && crema_workspace_reserve(scratch(l), s->thread_floats * (size_t)s->threads, err))
    return crema_error_prefix(err, "pooling scratch");
  if (s->method == CREMA__POOLING_PARAMETER__POOL_METHOD__MAX) {
    const size_t need = top[0]->count;
    if (need > s->mask_cap) {
      crema_aligned_free(s->mask);
      s->mask_cap = 0;
      if (!(s->mask = crema_aligned_alloc((need ? need : 1) * sizeof(int))))
        return crema_fail(err, "out of memory for the pooling mask");
      s->mask_cap = need;
    }
  }
  return 0;
}

/* The window of output position o along one side. [*lo, *hi) is the part inside the input;
 * *len is the AVE divisor's extent (clipped at in + pad, so padding cells count), at least 1.
 * In 64 bits: with a stride near INT_MAX, o * stride overflows an int, and in ceil mode
 * without padding the last window can start past the input (Caffe keeps it; it is empty). */
static void pool_window(int o, int stride, int pad, int k, int in, int *lo, int *hi, int *len) {
  const int64_t start = (int64_t)o * stride - pad, end = start + k;
  const int64_t end_pad = end < (int64_t)in + pad ? end : (int64_t)in + pad;
  *len = end_pad - start > 1 ? (int)(end_pad - start) : 1;
  *lo = start < 0 ? 0 : start > in ? in : (int)start;
  *hi = end > in ? in : end < *lo ? *lo : (int)end;
}

/* Interior output columns [*ow0, *ow1): windows wholly inside the input, starting at
 * ow * stride - pad and K wide (no clipping, AVE divisor extent K). */
static void interior_cols(int PW, int W, int K, int stride, int pad, int *ow0, int *ow1) {
  int lo = (pad + stride - 1) / stride;
  int64_t last = (int64_t)W + pad - K; /* the largest start + pad that still fits */
  int hi = last < 0 ? 0 : (int)(last / stride) + 1;
  if (lo > PW) lo = PW;
  if (hi > PW) hi = PW;
  if (hi < lo) hi = lo;
  *ow0 = lo;
  *ow1 = hi;
}

/* One kernel tap (row ih, column offset off = kw - pad) for the interior columns of an output
 * row: each output keeps the first strictly larger value, as the window loop does in row-major
 * order. Selects, not branches, so it vectorises; inlined with stride 1 and 2 as constants. */
static inline void max_tap(const float *restrict srow, int base, float *restrict best, int *restrict arg,
                           int ow0, int ow1, int stride, int off) {
  for (int ow = ow0; ow < ow1; ow++) {
    const int iw = ow * stride + off;
    const float v = srow[iw], b = best[ow];
    const int gt = v > b;
    best[ow] = gt ? v : b;
    /* arithmetic, not a select: gcc 12 will not if-convert an int select on a float compare */
    const unsigned a = (unsigned)arg[ow];
    arg[ow] = (int)(a + (unsigned)gt * ((unsigned)(base + iw) - a));
  }
}

static inline void sum_tap(const float *restrict srow, float *restrict sum, int ow0, int ow1, int stride,
                           int off) {
  for (int ow = ow0; ow < ow1; ow++) sum[ow] += srow[ow * stride + off];
}

/* The window of (oh, ow) in the plane, clipped, as the reference loop: max and its argmax. */
static void max_window(const float *src, int W, int hs, int he, int ws, int we, float *out, int *arg_out) {
  float best = -FLT_MAX;
  int arg = -1;
  for (int ih = hs; ih < he; ih++) {
    const float *srow = src + (size_t)ih * W;
    for (int iw = ws; iw < we; iw++)
      if (srow[iw] > best) {
        best = srow[iw];
        arg = ih * W + iw;
      }
  }
  *out = best;
  *arg_out = arg;
}

static float sum_window(const float *src, int W, int hs, int he, int ws, int we) {
  float sum = 0.0f;
  for (int ih = hs; ih < he; ih++) {
    const float *srow = src + (size_t)ih * W;
    for (int iw = ws; iw < we; iw++) sum += srow[iw];
  }
  return sum;
}

#if defined(__SSE2__)
/* Four outputs at a time with the window's running max (and argmax) or sum held in registers
 * across all its taps, for stride 1 or 2 (the common 3x3 s1, 2x2 s2 and 3x3 s2 kernels).
 * The taps go in the same order as in the window loop (rows in turn, each left to right) with
 * the same comparison (strictly greater, so NaN never wins and the first maximum stays) and
 * the same float additions, so the results are the same bit for bit. Handles the interior
 * columns from ow0 while all loads of a group of four stay inside the row; returns the first
 * column it did not do. */
/* Columns from a group's first window start that the loads below read (max_row_sse2). */
static inline int pool_reach(int K, int stride) { return stride == 1 ? K + 3 : ((K - 1) & ~1) + 8; }

static inline __m128 tap4(const float *p, int stride, int kw) {
  if (stride == 1) return _mm_loadu_ps(p + kw);
  const int e = kw & ~1; /* the columns 2 * (0..3) + kw, from eight loaded floats */
  const __m128 a = _mm_loadu_ps(p + e), b = _mm_loadu_ps(p + e + 4);
  return kw & 1 ? _mm_shuffle_ps(a, b, _MM_SHUFFLE(3, 1, 3, 1))
                : _mm_shuffle_ps(a, b, _MM_SHUFFLE(2, 0, 2, 0));
}

static int max_row_sse2(const float *src, int W, int hs, int he, int K, int stride, int pad, int ow0, int ow1,
                        float *drow, int *mrow) {
  /* Loads read columns start .. start + reach - 1: with stride 1 exactly the four windows'
   * (start + K + 2); with stride 2 eight floats from the last tap's even column e =
   * (K - 1) & ~1, up to start + e + 7 (one past the last tap's column when K is odd), so
   * that must lie inside the row too. A 2x2 stride-2 window on an even row reaches its end
   * exactly, so whole rows run here (LeNet's 24 and 8 columns). */
  const int reach = pool_reach(K, stride);
  int ow = ow0;
  for (; ow + 4 <= ow1 && ow * stride - pad + reach <= W; ow += 4) {
    const int start = ow * stride - pad;
    __m128 best = _mm_set1_ps(-FLT_MAX);
    __m128i arg = _mm_set1_epi32(-1);
    const __m128i lanes = _mm_setr_epi32(0, stride, 2 * stride, 3 * stride);
    for (int ih = hs; ih < he; ih++) {
      const float *p = src + (size_t)ih * W + start;
      const __m128i idx0 = _mm_add_epi32(_mm_set1_epi32(ih * W + start), lanes);
      for (int kw = 0; kw < K; kw++) {
        const __m128 v = tap4(p, stride, kw), gt = _mm_cmpgt_ps(v, best);
        const __m128i g = _mm_castps_si128(gt), idx = _mm_add_epi32(idx0, _mm_set1_epi32(kw));
        best = _mm_or_ps(_mm_and_ps(gt, v), _mm_andnot_ps(gt, best));
        arg = _mm_or_si128(_mm_and_si128(g, idx), _mm_andnot_si128(g, arg));
      }
    }
    _mm_storeu_ps(drow + ow, best);
    _mm_storeu_si128((__m128i *)(void *)(mrow + ow), arg);
  }
  return ow;
}

#if defined(POOL_AVX2)
/* Eight outputs at a time where the CPU has AVX2: whole MAX planes (max_plane_padded). MAXPS
 * returns its second operand unless the first is strictly greater (NaN included), which is
 * exactly the window loop's `if (v > best) best = v`; the argmax is the tap's flat index,
 * blended in under the same comparison. Per tap: one or two loads (stride 2 takes the even
 * floats of 16 with one shuffle: tap8_turned), a compare, a max, an add and a blend, where
 * the SSE2 rows above spend about twice that on half the outputs. */

/* The padded copy's cells outside the input: -FLT_MAX, written once per thread and call
 * (the scratch lives in the net's shared workspace, which other layers overwrite between
 * calls); max_plane_padded then copies only the input rows in. Rewriting the border for every
 * plane cost as much as the plane's taps on GoogLeNet's 14x14 and 7x7 inception pools. */
static void padded_fill(const pool_state *s, float *pad) {
  const size_t n = (size_t)padded_rows(s) * padded_cols(s);
  for (size_t i = 0; i < n; i++) pad[i] = -FLT_MAX;
}

/* A whole MAX plane from `pad`, its copy surrounded by -FLT_MAX (padded_rows x padded_cols,
 * the input at (pad_h, pad_w)): every output's K x K taps in the window loop's order, eight
 * outputs at a time. Padding cells never win (the loop starts from -FLT_MAX and needs
 * strictly greater), and windows clipped by the edges meet only such cells beyond the
 * input, so values and argmaxes are those of the clipped loop, with no border cases: for
 * GoogLeNet's 14x14 and 7x7 inception pools the borders were most of the plane. */
__attribute__((target("avx2"))) static inline __attribute__((always_inline)) void
max_plane_padded_k(const pool_state *s, const float *src, const float *next, float *dst, int *mask,
                   float *pad, int KH, int KW, int sh, int sw) {
  const int H = s->h, W = s->w, PH = s->ph, PW = s->pw, WP = padded_cols(s), HP = padded_rows(s);
  /* input rows y - pad_h at columns pad_w on (clipped to the copy's width) */
  const int n_cols = W < WP - s->pad_w ? W : WP - s->pad_w;
  for (int y = s->pad_h; y < HP && y - s->pad_h < H && n_cols > 0; y++)
    copy_floats8(pad + (size_t)y * WP + s->pad_w, src + (size_t)(y - s->pad_h) * W, n_cols);
  /* each lane's column offset, in tap8_turned's lane order */
  const __m256i lanes =
      _mm256_castps_si256(turn8(_mm256_castsi256_ps(_mm256_mullo_epi32(
                                    _mm256_setr_epi32(0, 1, 2, 3, 4, 5, 6, 7), _mm256_set1_epi32(sw))),
                                sw));
  const pool_prefetch ahead = pool_prefetch_plan(next, (size_t)H * W, PH);
  for (int oh = 0; oh < PH; oh++) {
    pool_prefetch_row(&ahead, oh);
    const int y0 = oh * sh;
    for (int ow = 0; ow < PW; ow += 8) {
      const int x0 = ow * sw;
      /* the flat input index of padded cell (y0 + kh, x0 + lane * sw + kw) is
       * (y0 + kh - pad_h) * W + x0 - pad_w + lane * sw + kw */
      const __m256i base = _mm256_add_epi32(_mm256_set1_epi32(x0 - s->pad_w), lanes);
      __m256 best = _mm256_set1_ps(-FLT_MAX);
      __m256 arg = _mm256_castsi256_ps(_mm256_set1_epi32(-1));
      for (int kh = 0; kh < KH; kh++) {
        const float *p = pad + (size_t)(y0 + kh) * WP + x0;
        const int row_index = (y0 + kh - s->pad_h) * W;
        for (int kw = 0; kw < KW; kw++) {
          const __m256 v = tap8_turned(p, sw, kw), gt = _mm256_cmp_ps(v, best, _CMP_GT_OQ);
          const __m256i idx = _mm256_add_epi32(base, _mm256_set1_epi32(row_index + kw));
          best = _mm256_max_ps(v, best);
          arg = _mm256_blendv_ps(arg, _mm256_castsi256_ps(idx), gt);
        }
      }
      best = turn8(best, sw);
      arg = turn8(arg, sw);
      float *d = dst + (size_t)oh * PW + ow;
      int *m = mask + (size_t)oh * PW + ow;
      /* whole stores wherever the eight floats lie inside the plane: a row's tail spills into
       * the rows after it, written later (a copy of the tail cost two libc calls per row of
       * GoogLeNet's 7-wide pool4) */
      if ((size_t)oh * PW + ow + 8 <= (size_t)PH * PW) {
        _mm256_storeu_ps(d, best);
        _mm256_storeu_si256((__m256i *)(void *)m, _mm256_castps_si256(arg));
      } else {
        float bv[8];
        int av[8];
        _mm256_storeu_ps(bv, best);
        _mm256_storeu_si256((__m256i *)(void *)av, _mm256_castps_si256(arg));
        memcpy(d, bv, (size_t)(PW - ow) * sizeof(float));
        memcpy(m, av, (size_t)(PW - ow) * sizeof(int));
      }
    }
  }
}

/* With the kernel and strides as constants where inlined (GoogLeNet's and CaffeNet's 3x3
 * stride-2 pools), so the tap loops unroll. */
__attribute__((target("avx2"))) static void max_plane_padded(const pool_state *s, const float *src,
                                                             const float *next, float *dst, int *mask,
                                                             float *pad) {
  if (s->kernel_h == 3 && s->kernel_w == 3 && s->stride_h == 2 && s->stride_w == 2)
    max_plane_padded_k(s, src, next, dst, mask, pad, 3, 3, 2, 2);
  else
    max_plane_padded_k(s, src, next, dst, mask, pad, s->kernel_h, s->kernel_w, s->stride_h, s->stride_w);
}
#endif

#endif

/* Forward of one plane. Border columns (windows clipped by the edge) go window by window;
 * the interior columns of each output row go tap by tap across the row, vectorised. Every
 * output sees the same values in the same order either way (rows of its window in turn, each
 * left to right), so the results, argmax ties included, are the same. */
static void pool_forward_plane(const pool_state *s, bool is_max, const float *src, float *dst, int *mask) {
  const int W = s->w, PH = s->ph, PW = s->pw, K = s->kernel_w, stride = s->stride_w, pad = s->pad_w;
  const int *rows = s->win, *cols = s->win + 3 * (size_t)PH;
  int ow0, ow1;
  interior_cols(PW, W, K, stride, pad, &ow0, &ow1);
  if (ow1 - ow0 < 4) ow0 = ow1 = PW; /* too few to share a vector (global pooling): window by window */
  for (int oh = 0; oh < PH; oh++) {
    const int hs = rows[3 * oh], he = rows[3 * oh + 1], len_h = rows[3 * oh + 2];
    float *drow = dst + (size_t)oh * PW;
    int done = ow0; /* interior columns [ow0, done) already computed */
    if (is_max) {
      int *mrow = mask + (size_t)oh * PW;
#if defined(__SSE2__)
      if (stride <= 2) done = max_row_sse2(src, W, hs, he, K, stride, pad, done, ow1, drow, mrow);
#endif
      for (int ow = done; ow < ow1; ow++) {
        drow[ow] = -FLT_MAX;
        mrow[ow] = -1;
      }
      for (int ih = hs; ih < he && done < ow1; ih++) {
        const float *srow = src + (size_t)ih * W;
        for (int kw = 0; kw < K; kw++) {
          if (stride == 1)
            max_tap(srow, ih * W, drow, mrow, done, ow1, 1, kw - pad);
          else if (stride == 2)
            max_tap(srow, ih * W, drow, mrow, done, ow1, 2, kw - pad);
          else
            max_tap(srow, ih * W, drow, mrow, done, ow1, stride, kw - pad);
        }
      }
      for (int ow = 0; ow < ow0; ow++)
        max_window(src, W, hs, he, cols[3 * ow], cols[3 * ow + 1], &drow[ow], &mrow[ow]);
      for (int ow = ow1; ow < PW; ow++)
        max_window(src, W, hs, he, cols[3 * ow], cols[3 * ow + 1], &drow[ow], &mrow[ow]);
    } else {
      for (int ow = done; ow < ow1; ow++) drow[ow] = 0.0f;
      for (int ih = hs; ih < he && done < ow1; ih++) {
        const float *srow = src + (size_t)ih * W;
        for (int kw = 0; kw < K; kw++) {
          if (stride == 1)
            sum_tap(srow, drow, done, ow1, 1, kw - pad);
          else if (stride == 2)
            sum_tap(srow, drow, done, ow1, 2, kw - pad);
          else
            sum_tap(srow, drow, done, ow1, stride, kw - pad);
        }
      }
      for (int ow = 0; ow < PW; ow++) {
        const int ws = cols[3 * ow], we = cols[3 * ow + 1], len_w = cols[3 * ow + 2];
        const float sum = ow >= ow0 && ow < ow1 ? drow[ow] : sum_window(src, W, hs, he, ws, we);
        drow[ow] = sum / ((float)len_h * (float)len_w);
      }
    }
  }
}

static int pool_forward(crema_layer *l, crema_blob *const *bottom, crema_blob *const *top, crema_error *err) {
  (void)err;
  const pool_state *s = l->state;
  const size_t pin = (size_t)s->h * s->w, pout = (size_t)s->ph * s->pw;
  const bool is_max = s->method == CREMA__POOLING_PARAMETER__POOL_METHOD__MAX;
  const float *x = bottom[0]->data;
  float *y = top[0]->data;
  float *ymask = l->n_top > 1 ? top[1]->data : NULL;
  const int planes = s->n * s->c;
  const bool sep = separable(s);
  const crema_pool_s1 s1 = s1_geometry(s); /* the stride-1 kernel's plane, when sep */
  /* backward reads the mask, and so does whoever reads a second top */
  const bool keep_mask = !l->forward_only || l->n_top > 1;
  float *scratch_base = crema_workspace_data(scratch(l));
  const bool ave = !is_max && ave_planes(s);
  const crema_pool_ave ag = ave_geometry(s); /* when ave */
#if defined(POOL_AVX2)
  const bool avx2 = __builtin_cpu_supports("avx2"), padded = padded_max(s);
  const bool v16 = padded && s->wide;
  const crema_pool_pad pg = padded ? pad_geometry(s) : (crema_pool_pad){0};
#endif
#pragma omp parallel if ((size_t)planes * pin > 32768) num_threads(s->threads)
  {
    float *mine = scratch_base + s->thread_floats * (size_t)omp_get_thread_num();
    if (ave) crema_pool_ave_begin(&ag, true, mine);
#if defined(POOL_AVX2)
    float *pad = mine + plane_mask_floats(s) + (sep ? sep_floats(s) : 0);
    if (padded && avx2) padded_fill(s, pad);
#endif
#pragma omp for schedule(static)
    for (int pl = 0; pl < planes; pl++) {
      int *mask = !is_max ? NULL : keep_mask ? s->mask + (size_t)pl * pout : (int *)(void *)mine;
      /* planes of 8 KB or more prefetch the next one as they go: GoogLeNet's pool1 and pool2
       * (112 and 56 wide) forward 0.76-0.82 of their time on eight lanes, 0.63-0.76 with
       * sixteen; its 28- and 14-wide pools (3 KB planes or less) took 1.1x as long with it */
      const float *next = pl + 1 < planes && pin >= 2048 ? x + (size_t)(pl + 1) * pin : NULL;
      if (ave) {
        crema_pool_ave_forward(&ag, x + (size_t)pl * pin, next, y + (size_t)pl * pout, mine);
        continue;
      }
#if defined(POOL_AVX2)
      if (v16)
        crema_pool_max_v16_forward(&pg, x + (size_t)pl * pin, next, y + (size_t)pl * pout, mask, pad);
      else if (padded && avx2)
        max_plane_padded(s, x + (size_t)pl * pin, next, y + (size_t)pl * pout, mask, pad);
      else
#endif
          if (sep) {
        crema_pool_s1_forward(&s1, x + (size_t)pl * pin, next, y + (size_t)pl * pout, mask,
                              mine + plane_mask_floats(s));
      } else
        pool_forward_plane(s, is_max, x + (size_t)pl * pin, y + (size_t)pl * pout, mask);
      if (ymask)
        for (size_t o = 0; o < pout; o++) ymask[(size_t)pl * pout + o] = (float)mask[o];
    }
  }
  return 0;
}

static void pool_backward(crema_layer *l, crema_blob *const *top, const bool *propagate_down,
                          crema_blob *const *bottom) {
  if (!propagate_down[0]) return;
  const pool_state *s = l->state;
  const int H = s->h, W = s->w, PH = s->ph, PW = s->pw;
  const size_t pin = (size_t)H * W, pout = (size_t)PH * PW;
  const bool is_max = s->method == CREMA__POOLING_PARAMETER__POOL_METHOD__MAX;
  const float *dy = top[0]->diff;
  float *dx = bottom[0]->diff;
  const int planes = s->n * s->c;
  if (!is_max && ave_planes(s)) { /* each input gathers its shares: no zeroing, no scatter */
    const crema_pool_ave ag = ave_geometry(s);
    float *scratch_base = crema_workspace_data(scratch(l));
#pragma omp parallel if ((size_t)planes * pin > 32768) num_threads(s->threads)
    {
      float *mine = scratch_base + s->thread_floats * (size_t)omp_get_thread_num();
      crema_pool_ave_begin(&ag, false, mine);
#pragma omp for schedule(static)
      for (int pl = 0; pl < planes; pl++) {
        /* the next plane's gradients, fetched while this one's run, as forward does */
        const float *next = pl + 1 < planes && pin >= 2048 ? dy + (size_t)(pl + 1) * pout : NULL;
        crema_pool_ave_backward(&ag, dy + (size_t)pl * pout, next, dx + (size_t)pl * pin, mine);
      }
    }
    return;
  }
  /* One plane per task: windows overlap only within a plane. */
#pragma omp parallel for schedule(static) if ((size_t)planes * pin > 32768)
  for (int pl = 0; pl < planes; pl++) {
    const float *d = dy + (size_t)pl * pout;
    float *g = dx + (size_t)pl * pin;
    memset(g, 0, pin * sizeof(float));
    if (is_max) {
      const int *m = s->mask + (size_t)pl * pout;
      /* the next plane's gradients and argmaxes, a line of each per sixteen outputs, fetched
       * while this plane's run (for planes of 8 KB or more, as forward does) */
      const bool ahead = pl + 1 < planes && pin >= 2048;
      for (size_t o0 = 0; o0 < pout; o0 += 16) {
        if (ahead) {
          __builtin_prefetch(d + pout + o0);
          __builtin_prefetch(m + pout + o0);
        }
        for (size_t o = o0; o < pout && o < o0 + 16; o++)
          if (m[o] >= 0) g[m[o]] += d[o];
      }
      continue;
    }
    const int *rows = s->win, *cols = s->win + 3 * (size_t)PH;
    for (int oh = 0; oh < PH; oh++)
      for (int ow = 0; ow < PW; ow++) {
        const int hs = rows[3 * oh], he = rows[3 * oh + 1], len_h = rows[3 * oh + 2];
        const int ws = cols[3 * ow], we = cols[3 * ow + 1], len_w = cols[3 * ow + 2];
        const float v = d[(size_t)oh * PW + ow] / ((float)len_h * (float)len_w);
        for (int ih = hs; ih < he; ih++)
          for (int iw = ws; iw < we; iw++) g[(size_t)ih * W + iw] += v;
      }
  }
}

static void pool_free(crema_layer *l) {
  pool_state *s = l->state;
  if (!s) return;
  crema_aligned_free(s->mask);
  crema_aligned_free(s->win);
  crema_workspace_release(&s->own);
  free(s);
  l->state = NULL;
}

const crema_layer_ops crema_pooling_ops = {
    .type = "Pooling",
    .min_bottoms = 1,
    .max_bottoms = 1,
    .min_tops = 1,
    .max_tops = 2,
    .setup = pool_setup,
    .reshape = pool_reshape,
    .forward = pool_forward,
    .backward = pool_backward,
    .free_state = pool_free,
};
