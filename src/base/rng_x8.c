/* rng_x8.c -- eight crema_rng generators side by side (crema_rng_u32_x8), and the chunked
 * draws of the passes that draw per element (crema_rng_chunked: the uniform filler; Dropout
 * and RReLU, which used it before, now draw from lane generators, rng16.h).
 *
 * One xoshiro128** step is a chain of dependent shifts and xors, so one generator yields a
 * number every few cycles whatever the CPU's width: Dropout's forward pass ran at 0.06-0.08 of
 * a memory copy's speed. Layers that draw per element already split their draws into chunks,
 * each with its own generator (so results do not depend on the thread count); eight such
 * chunks' generators fit the eight 32-bit lanes of an AVX2 register, one step of all eight
 * costing what one step of one did. Every lane runs exactly crema_rng_u32's arithmetic (the
 * multiplications by 5 and 9 as shifts and adds, which wrap the same way), so the numbers are
 * the same bits. Where the CPU has AVX-512, its one-instruction rotation (VPROLD) replaces
 * AVX2's shift, shift and or: the draws 1.75 -> 1.40 ms for 6.4 M numbers, one thread; and
 * sixteen generators run in its 512-bit registers, two octets of chunks at once: 0.74 ms. */
#include "base/rng.h"

#include <stdlib.h>

#if defined(__GNUC__) && !defined(__clang__) && defined(__x86_64__) && !defined(CREMA_NO_CLONES)
#include <immintrin.h>
#define RNG_AVX2 1
#define AVX2 __attribute__((target("avx2")))

AVX2 static inline __m256i rotl8(__m256i x, int k) {
  return _mm256_or_si256(_mm256_slli_epi32(x, k), _mm256_srli_epi32(x, 32 - k));
}

/* Rows of eight lanes to columns: lane t of out[k] = lane k of in[t]. */
AVX2 static inline void transpose8(const __m256i in[8], __m256i out[8]) {
  __m256 t[8], u[8];
  for (int i = 0; i < 4; i++) {
    const __m256 a = _mm256_castsi256_ps(in[2 * i]), b = _mm256_castsi256_ps(in[2 * i + 1]);
    t[2 * i] = _mm256_unpacklo_ps(a, b);
    t[2 * i + 1] = _mm256_unpackhi_ps(a, b);
  }
  for (int i = 0; i < 2; i++) {
    u[4 * i] = _mm256_shuffle_ps(t[4 * i], t[4 * i + 2], _MM_SHUFFLE(1, 0, 1, 0));
    u[4 * i + 1] = _mm256_shuffle_ps(t[4 * i], t[4 * i + 2], _MM_SHUFFLE(3, 2, 3, 2));
    u[4 * i + 2] = _mm256_shuffle_ps(t[4 * i + 1], t[4 * i + 3], _MM_SHUFFLE(1, 0, 1, 0));
    u[4 * i + 3] = _mm256_shuffle_ps(t[4 * i + 1], t[4 * i + 3], _MM_SHUFFLE(3, 2, 3, 2));
  }
  for (int i = 0; i < 4; i++) {
    out[i] = _mm256_castps_si256(_mm256_permute2f128_ps(u[i], u[i + 4], 0x20));
    out[i + 4] = _mm256_castps_si256(_mm256_permute2f128_ps(u[i], u[i + 4], 0x31));
  }
}

/* One xoshiro128** step of the eight generators in s; returns their numbers. rol is the
 * rotation: three instructions with AVX2, one with AVX-512's VPROLD. */
#define STEP8(s, rol, draw)                                                                                  \
  do {                                                                                                       \
    const __m256i five_ = _mm256_add_epi32(s[1], _mm256_slli_epi32(s[1], 2)); /* s1 * 5 */                   \
    const __m256i rot_ = rol(five_, 7);                                                                      \
    draw = _mm256_add_epi32(rot_, _mm256_slli_epi32(rot_, 3)); /* * 9 */                                     \
    const __m256i shifted_ = _mm256_slli_epi32(s[1], 9);                                                     \
    s[2] = _mm256_xor_si256(s[2], s[0]);                                                                     \
    s[3] = _mm256_xor_si256(s[3], s[1]);                                                                     \
    s[1] = _mm256_xor_si256(s[1], s[2]);                                                                     \
    s[0] = _mm256_xor_si256(s[0], s[3]);                                                                     \
    s[2] = _mm256_xor_si256(s[2], shifted_);                                                                 \
    s[3] = rol(s[3], 11);                                                                                    \
  } while (0)

/* The generators' states to registers and back, lane k holding r[k]'s. */
#define LOAD_STATES(s, r)                                                                                    \
  for (int j = 0; j < 4; j++)                                                                                \
  s[j] = _mm256_setr_epi32((int)r[0].s[j], (int)r[1].s[j], (int)r[2].s[j], (int)r[3].s[j], (int)r[4].s[j],   \
                           (int)r[5].s[j], (int)r[6].s[j], (int)r[7].s[j])

AVX2 static void save_states(const __m256i s[4], crema_rng r[8]) {
  for (int j = 0; j < 4; j++) {
    uint32_t lanes[8];
    _mm256_storeu_si256((__m256i *)(void *)lanes, s[j]);
    for (int k = 0; k < 8; k++) r[k].s[j] = lanes[k];
  }
}

/* Eight steps at a time, transposed so that each generator's eight numbers are one row. */
#define U32_X8(rol)                                                                                          \
  __m256i s[4];                                                                                              \
  LOAD_STATES(s, r);                                                                                         \
  for (size_t i = 0; i < steps; i += 8) {                                                                    \
    __m256i draws[8], rows[8];                                                                               \
    for (int t = 0; t < 8; t++) STEP8(s, rol, draws[t]);                                                     \
    transpose8(draws, rows);                                                                                 \
    for (int k = 0; k < 8; k++)                                                                              \
      _mm256_storeu_si256((__m256i *)(void *)(out + (size_t)k * steps + i), rows[k]);                        \
  }                                                                                                          \
  save_states(s, r)

AVX2 static void u32_x8_avx2(crema_rng r[8], uint32_t *out, size_t steps) { U32_X8(rotl8); }

__attribute__((target("avx2,avx512f,avx512vl"))) static void u32_x8_avx512(crema_rng r[8], uint32_t *out,
                                                                           size_t steps) {
  U32_X8(_mm256_rol_epi32);
}

#define AVX512 __attribute__((target("avx2,avx512f,avx512vl")))

/* Sixteen generators in the sixteen lanes of an AVX-512 register: STEP8's arithmetic on
 * 512 bits, so one step of sixteen costs what one of eight did. Each half of the eight steps'
 * results goes through the eight-lane transpose: lanes 0-7 are r[0..7], lanes 8-15
 * r[8..15]; generator k's numbers go to out + k * stride. steps % 8 == 0.
 * The rows must not lie a multiple of 4 KB apart: sixteen store streams in the same L1 set
 * (twelve ways on Zen 5) evicted each other, and 6.4 M numbers took 2.4 ms against 1.46 for
 * eight generators at a time; with rows ROW_PAD floats longer, 0.74 ms (one thread, Zen 5). */
AVX512 static void u32_x16_avx512(crema_rng r[16], uint32_t *out, size_t steps, size_t stride) {
  __m512i s[4];
  for (int j = 0; j < 4; j++) {
    uint32_t lanes[16];
    for (int k = 0; k < 16; k++) lanes[k] = r[k].s[j];
    s[j] = _mm512_loadu_si512(lanes);
  }
  for (size_t i = 0; i < steps; i += 8) {
    __m512i draws[8];
    for (int t = 0; t < 8; t++) {
      const __m512i five = _mm512_add_epi32(s[1], _mm512_slli_epi32(s[1], 2)); /* s1 * 5 */
      const __m512i rot = _mm512_rol_epi32(five, 7);
      draws[t] = _mm512_add_epi32(rot, _mm512_slli_epi32(rot, 3)); /* * 9 */
      const __m512i shifted = _mm512_slli_epi32(s[1], 9);
      s[2] = _mm512_xor_si512(s[2], s[0]);
      s[3] = _mm512_xor_si512(s[3], s[1]);
      s[1] = _mm512_xor_si512(s[1], s[2]);
      s[0] = _mm512_xor_si512(s[0], s[3]);
      s[2] = _mm512_xor_si512(s[2], shifted);
      s[3] = _mm512_rol_epi32(s[3], 11);
    }
    for (int half = 0; half < 2; half++) {
      __m256i part[8], rows[8];
      for (int t = 0; t < 8; t++)
        part[t] = half ? _mm512_extracti64x4_epi64(draws[t], 1) : _mm512_castsi512_si256(draws[t]);
      transpose8(part, rows);
      for (int k = 0; k < 8; k++)
        _mm256_storeu_si256((__m256i *)(void *)(out + (size_t)(8 * half + k) * stride + i), rows[k]);
    }
  }
  for (int j = 0; j < 4; j++) {
    uint32_t lanes[16];
    _mm512_storeu_si512(lanes, s[j]);
    for (int k = 0; k < 16; k++) r[k].s[j] = lanes[k];
  }
}
#endif

void crema_rng_u32_x8(crema_rng r[8], uint32_t *out, size_t steps) {
#if defined(RNG_AVX2)
  if (steps % 8 == 0 && __builtin_cpu_supports("avx512vl")) {
    u32_x8_avx512(r, out, steps);
    return;
  }
  if (steps % 8 == 0 && __builtin_cpu_supports("avx2")) {
    u32_x8_avx2(r, out, steps);
    return;
  }
#endif
  for (int k = 0; k < 8; k++)
    for (size_t i = 0; i < steps; i++) out[(size_t)k * steps + i] = crema_rng_u32(&r[k]);
}

/* Whether sixteen generators run side by side here (u32_x16_avx512). */
static bool have_x16(void) {
#if defined(RNG_AVX2)
  return __builtin_cpu_supports("avx512vl");
#else
  return false;
#endif
}

/* steps numbers from each of the width (8, or 16 where have_x16) generators r, generator k's
 * at out + k * (the returned stride): row floats apart for sixteen, steps for eight. */
static size_t draw_rows(crema_rng *r, size_t width, uint32_t *out, size_t steps, size_t row) {
#if defined(RNG_AVX2)
  if (width == 16) {
    u32_x16_avx512(r, out, steps, row);
    return row;
  }
#else
  (void)width;
  (void)row;
#endif
  crema_rng_u32_x8(r, out, steps);
  return steps;
}

/* Draws buffered per chunk generator: eight of them side by side take 8 x 2 KB. */
#define DRAW_BLOCK 512

/* Chunk c's elements [at, at + count) with its generator r. */
static void chunk_draws(crema_rng *r, uint32_t *draws, size_t at, size_t count, crema_rng_draws_fn fn,
                        void *ctx) {
  for (size_t done = 0; done < count; done += DRAW_BLOCK) {
    const size_t m = count - done < DRAW_BLOCK ? count - done : DRAW_BLOCK;
    for (size_t i = 0; i < m; i++) draws[i] = crema_rng_u32(r);
    fn(ctx, draws, at + done, m);
  }
}

/* Chunks of up to this many elements are drawn whole, eight at a time (8 x 16 KB per
 * thread), and handed to fn one after another: fn then walks memory in one sequential run.
 * Handed over in pieces of DRAW_BLOCK, eight chunks at once, fn wrote to eight places 16 KB
 * apart in turn, and the stores of Dropout's forward pass (its output and mask, three
 * streams each) ran 1.4x slower (bench_elementwise Dropout, one thread: 3.7-3.9 against
 * 2.8 ms on a (32, 64, 56, 56) blob). */
#define WHOLE_CHUNK_MAX 4096
/* Floats between the end of one generator's row and the start of the next when sixteen run
 * side by side (u32_x16_avx512). */
#define ROW_PAD 16

void crema_rng_chunked(uint64_t key, size_t n, size_t chunk, bool parallel, crema_rng_draws_fn fn,
                       void *ctx) {
  const size_t n_chunks = (n + chunk - 1) / chunk;
  /* whole chunks eight at a time when their generators can run side by side */
  const size_t octets = chunk % DRAW_BLOCK == 0 ? n / chunk / 8 : 0;
  /* and sixteen at a time, two octets, where the CPU has AVX-512 (an odd last octet alone) */
  const bool can_whole = octets && chunk <= WHOLE_CHUNK_MAX;
  const bool x16 = can_whole && octets > 1 && have_x16();
  const size_t per_group = x16 ? 2 : 1, groups = (octets + per_group - 1) / per_group;
  /* sixteen rows a multiple of 4 KB apart would share their L1 sets (see u32_x16_avx512) */
  const size_t row = x16 ? chunk + ROW_PAD : chunk;
#pragma omp parallel if (parallel)
  {
    uint32_t draws[8 * DRAW_BLOCK];
    /* without this buffer (out of memory) the octets go in pieces, with the same numbers */
    uint32_t *whole = can_whole ? malloc(8 * per_group * row * sizeof *whole) : NULL;
#pragma omp for schedule(static)
    for (size_t g = 0; g < groups; g++) {
      const size_t o = g * per_group, first = 8 * o;
      const size_t width = x16 && o + 1 < octets ? 16 : 8;
      crema_rng r[16];
      for (size_t k = 0; k < width; k++) crema_rng_seed(&r[k], key, first + k);
      if (whole) {
        const size_t at = draw_rows(r, width, whole, chunk, row);
        for (size_t k = 0; k < width; k++) fn(ctx, whole + k * at, (first + k) * chunk, chunk);
        continue;
      }
      for (size_t h = 0; h < width; h += 8) /* no buffer: each octet in pieces */
        for (size_t done = 0; done < chunk; done += DRAW_BLOCK) {
          crema_rng_u32_x8(r + h, draws, DRAW_BLOCK);
          for (size_t k = 0; k < 8; k++)
            fn(ctx, draws + k * DRAW_BLOCK, (first + h + k) * chunk + done, DRAW_BLOCK);
        }
    }
    free(whole);
#pragma omp for schedule(static)
    for (size_t c = 8 * octets; c < n_chunks; c++) {
      crema_rng r;
      crema_rng_seed(&r, key, c);
      const size_t end = c + 1 < n_chunks ? (c + 1) * chunk : n;
      chunk_draws(&r, draws, c * chunk, end - c * chunk, fn, ctx);
    }
  }
}
