/* dropout.c -- Caffe's "Dropout" (inverted dropout).
 *   TRAIN: each element is kept with probability 1 - dropout_ratio and scaled by
 *          1 / (1 - dropout_ratio), so the expected output equals the input;
 *          d bottom = d top * (the same mask and scale).
 *   TEST:  identity.
 * The mask comes from l->rng (through lane generators keyed from it, rng16.h, so the same seed
 * gives the same mask whatever the thread count or CPU): an element is dropped when a uniform
 * uint32 falls below dropout_ratio * 2^32 (Caffe's GPU path compares against UINT_MAX * ratio
 * the same way).
 * Caffe requires 0 < dropout_ratio < 1; crema also accepts 0 (identity).
 * dropout_param.scale_train false (Faster R-CNN's fork): TRAIN keeps without scaling and
 * TEST multiplies by 1 - dropout_ratio.
 * In-place allowed: the mask is kept in the layer, one byte an element (keep or drop), not the
 * float multiplier: a quarter of the memory, and of the bytes the forward pass writes and the
 * backward pass reads. */
#include <math.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#if defined(__SSE2__)
#include <emmintrin.h>
#endif

#include "base/clones.h"
#include "base/mem.h"
#include "base/rng16.h"
#include "base/v16.h"
#include "layers/drawing_rows.h"
#include "layers/layer.h"
#include "tensor/math.h"

typedef struct dropout_state {
  float ratio, scale, test_scale;
  uint32_t threshold; /* drop when u32 < threshold */
  uint8_t *keep;      /* per element of the last TRAIN forward: 1 kept (times scale), 0 dropped */
  size_t keep_cap;
} dropout_state;

static int dropout_setup(crema_layer *l, crema_blob *const *bottom, crema_blob *const *top,
                         crema_error *err) {
  (void)bottom;
  (void)top;
  const Crema__DropoutParameter def = CREMA__DROPOUT_PARAMETER__INIT;
  const Crema__DropoutParameter *p = l->param->dropout_param ? l->param->dropout_param : &def;
  if (!(p->dropout_ratio >= 0.0f && p->dropout_ratio < 1.0f))
    return crema_fail(err, "dropout_param.dropout_ratio is %g; it must be in [0, 1)",
                      (double)p->dropout_ratio);
  dropout_state *s = calloc(1, sizeof *s);
  if (!s) return crema_fail(err, "out of memory");
  l->state = s;
  s->ratio = p->dropout_ratio;
  /* scale_train false (Faster R-CNN's fork): no scaling in TRAIN, (1 - ratio) in TEST. */
  s->scale = p->scale_train ? 1.0f / (1.0f - p->dropout_ratio) : 1.0f;
  s->test_scale = p->scale_train ? 1.0f : 1.0f - p->dropout_ratio;
  /* at most 2^32 - 256: the largest float below 1 is 1 - 2^-24 */
  s->threshold = (uint32_t)llround((double)p->dropout_ratio * 4294967296.0);
  return 0;
}

static int dropout_reshape(crema_layer *l, crema_blob *const *bottom, crema_blob *const *top,
                           crema_error *err) {
  dropout_state *s = l->state;
  if (crema_blob_reshape_like(top[0], bottom[0], err)) return -1;
  const size_t n = bottom[0]->count;
  if (n > s->keep_cap) {
    crema_aligned_free(s->keep);
    s->keep_cap = 0;
    if (!(s->keep = crema_aligned_alloc(n))) return crema_fail(err, "out of memory for the dropout mask");
    s->keep_cap = n;
  }
  return 0;
}

typedef struct drop_pass {
  const float *x;
  float *y;
  uint8_t *keep;
  uint32_t threshold;
  float scale;
} drop_pass;

/* The last partial group of a run: its draws d (the first lanes), element by element. */
static void drop_tail(const drop_pass *p, const uint32_t d[16], size_t at, size_t count) {
  for (size_t j = 0; j < count; j++) {
    const uint32_t k = d[j] >= p->threshold;
    p->keep[at + j] = (uint8_t)k;
    p->y[at + j] = p->x[at + j] * ((float)k * p->scale); /* x * 0 when dropped: NaN stays NaN, as in Caffe */
  }
}

/* A run's elements [begin, begin + count) with their lane generators (rng16.h), sixteen at a
 * time: branch-free (a branch on random bits would be mispredicted half the time), the draws
 * made in the loop that reads x and writes y and the mask. Two copies: sixteen lanes in one
 * register (AVX-512), and two halves of eight (AVX2 and less, clones.h); both do the same
 * comparisons and products, so they give the same bits. */
#if CREMA_V16
typedef uint8_t u8x16 __attribute__((vector_size(16)));

CREMA_V16_TARGET static void drop_run16(void *ctx, crema_rng16 *g, size_t begin, size_t count) {
  const drop_pass *p = ctx;
  const float *x = p->x;
  float *y = p->y;
  uint8_t *keep = p->keep;
  const uint32_t th = p->threshold;
  const crema_u32x16 t = {th, th, th, th, th, th, th, th, th, th, th, th, th, th, th, th};
  const v16 sc = v16_splat(p->scale), zero = {0};
  crema_rng16 s = *g; /* a local copy: the state stays in registers */
  const size_t end = begin + (count & ~(size_t)15);
  for (size_t i = begin; i < end; i += 16) {
    const i16 k = (i16)(crema_rng16_next(&s) >= t);            /* -1 kept, 0 dropped */
    const u8x16 bytes = __builtin_convertvector(k & 1, u8x16); /* one VPMOVDB */
    memcpy(keep + i, &bytes, sizeof bytes);
    store16(y + i, load16(x + i) * v16_select(k, sc, zero)); /* x * 0 when dropped, as drop_tail */
  }
  if (end < begin + count) {
    uint32_t d[16];
    crema_rng16_next_array(&s, d);
    drop_tail(p, d, end, begin + count - end);
  }
}
#define DROP_RUN16 drop_run16
#else
#define DROP_RUN16 NULL
#endif

/* Eight comparison lanes (-1 or 0) as eight bytes 1 or 0 at q. gcc's own narrowing
 * (__builtin_convertvector) took the lanes out one by one. */
static inline __attribute__((always_inline)) void store_keep8(uint8_t *q, i8 k) {
#if defined(__SSE2__)
  __m128i half[2];
  memcpy(half, &k, sizeof half);
  const __m128i words = _mm_packs_epi32(half[0], half[1]);
  _mm_storel_epi64((__m128i *)(void *)q, _mm_and_si128(_mm_packs_epi16(words, words), _mm_set1_epi8(1)));
#else
  for (int j = 0; j < 8; j++) q[j] = (uint8_t)(k[j] & 1);
#endif
}

CREMA_CLONES static void drop_run8(void *ctx, crema_rng16 *g, size_t begin, size_t count) {
  const drop_pass *p = ctx;
  const float *x = p->x;
  float *y = p->y;
  uint8_t *keep = p->keep;
  const uint32_t th = p->threshold;
  const crema_u32x8 t = {th, th, th, th, th, th, th, th};
  const v8 sc = v8_splat(p->scale), zero = {0};
  crema_rng8 h[2];
  crema_rng16_halves(g, h);
  const size_t end = begin + (count & ~(size_t)15);
  for (size_t i = begin; i < end; i += 16) {
    const i8 k0 = (i8)(crema_rng8_next(&h[0]) >= t), k1 = (i8)(crema_rng8_next(&h[1]) >= t);
    store_keep8(keep + i, k0);
    store_keep8(keep + i + 8, k1);
    store8(y + i, load8(x + i) * v8_select(k0, sc, zero));
    store8(y + i + 8, load8(x + i + 8) * v8_select(k1, sc, zero));
  }
  if (end < begin + count) {
    uint32_t d[16];
    crema_rng8_next_array(h, d);
    drop_tail(p, d, end, begin + count - end);
  }
}

void crema_dropout_train_rows(size_t n, const float *x, float *y, uint8_t *keep, uint64_t key,
                              uint32_t threshold, float scale, bool wide) {
  drop_pass pass = {x, y, keep, threshold, scale};
  crema_rng16_runs(key, n, n > CREMA_PAR_MIN, drop_run8, DROP_RUN16, wide, &pass);
}

static int dropout_forward(crema_layer *l, crema_blob *const *bottom, crema_blob *const *top,
                           crema_error *err) {
  (void)err;
  dropout_state *s = l->state;
  const size_t n = bottom[0]->count;
  const float *x = bottom[0]->data;
  float *y = top[0]->data;
  if (l->phase != CREMA__PHASE__TRAIN) {
    if (s->test_scale == 1.0f)
      crema_copy(n, x, y);
    else
      for (size_t i = 0; i < n; i++) y[i] = x[i] * s->test_scale;
    return 0;
  }
  /* Parallel draws that do not depend on the thread count: one 64-bit key per pass from
   * l->rng, then run c's sixteen lane generators seeded (key, 16 c + j) (rng16.h). */
  crema_dropout_train_rows(n, x, y, s->keep, crema_rng_u64(&l->rng), s->threshold, s->scale, true);
  return 0;
}

/* dx = dy * (the forward's multiplier: scale or 0), the same product as the forward's. */
CREMA_CLONES static void drop_backward(size_t n, const float *dy, const uint8_t *keep, float scale,
                                       float *dx) {
#pragma omp parallel for if (n > CREMA_PAR_MIN) schedule(static)
  for (size_t i = 0; i < n; i++) dx[i] = dy[i] * ((float)keep[i] * scale);
}

static void dropout_backward(crema_layer *l, crema_blob *const *top, const bool *propagate_down,
                             crema_blob *const *bottom) {
  dropout_state *s = l->state;
  if (!propagate_down[0]) return;
  const size_t n = bottom[0]->count;
  const float *dy = top[0]->diff;
  float *dx = bottom[0]->diff;
  if (l->phase != CREMA__PHASE__TRAIN) {
    if (s->test_scale == 1.0f)
      crema_copy(n, dy, dx);
    else
      for (size_t i = 0; i < n; i++) dx[i] = dy[i] * s->test_scale;
    return;
  }
  drop_backward(n, dy, s->keep, s->scale, dx);
}

static void dropout_free(crema_layer *l) {
  dropout_state *s = l->state;
  if (!s) return;
  crema_aligned_free(s->keep);
  free(s);
}

const crema_layer_ops crema_dropout_ops = {
    .type = "Dropout",
    .min_bottoms = 1,
    .max_bottoms = 1,
    .min_tops = 1,
    .max_tops = 1,
    .allow_inplace = true,
    .setup = dropout_setup,
    .reshape = dropout_reshape,
    .forward = dropout_forward,
    .backward = dropout_backward,
    .free_state = dropout_free,
};
