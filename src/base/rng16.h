/* rng16.h -- sixteen crema_rng generators in the lanes of one vector, for the layers that draw
 * a number per element (Dropout, RReLU).
 *
 * Their draws come in runs of CREMA_RNG16_RUN elements. Run c has sixteen generators, lane j
 * seeded (key, 16 c + j), and element 16 t + j of the run takes draw t of lane j: one step of
 * the sixteen gives sixteen consecutive elements their numbers, in order, in one register.
 * The layer uses them where they are made, in the same loop that reads x and writes y, so
 * the arithmetic of the draws overlaps the memory traffic. The chunked draws before
 * (crema_rng_chunked: a generator per run of 4096 elements) made each run's numbers whole in
 * a buffer first, eight or sixteen generators at once and transposed, then read them back:
 * Dropout's forward pass ran at 0.49-0.57 of a copy's speed, bound by that separate pass.
 *
 * Lane j's numbers are exactly crema_rng_u32's from a generator seeded (key, 16 c + j) (the
 * multiplications by 5 and 9 as shifts and adds, which wrap the same way), on every CPU: the
 * same integer arithmetic on sixteen lanes in one 512-bit register (AVX-512) or on two halves
 * of eight (crema_rng8, other CPUs). Runs do not depend on the thread count. */
#ifndef CREMA_BASE_RNG16_H
#define CREMA_BASE_RNG16_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>

/* Elements per run: 256 steps of the sixteen generators. */
#define CREMA_RNG16_RUN 4096

typedef uint32_t crema_u32x16 __attribute__((vector_size(64)));
/* Only inline functions and pointers carry it: it never crosses a function's ABI. */
#pragma GCC diagnostic ignored "-Wpsabi"

typedef struct crema_rng16 {
  crema_u32x16 s[4]; /* word w of lane j's state in s[w][j] */
} crema_rng16;

/* Lane j as crema_rng_seed(key, first + j). */
void crema_rng16_seed(crema_rng16 *g, uint64_t key, uint64_t first);

/* One step of the generators in s (four words of their state, lanes side by side), as a
 * macro for both widths below; the multiplications by 5 and 9 are shifts and adds. */
#define CREMA_RNG_LANES_STEP(s, draw)                                                                        \
  do {                                                                                                       \
    const __typeof__(s[1]) five_ = s[1] + (s[1] << 2);                                                       \
    const __typeof__(s[1]) rot_ = (five_ << 7) | (five_ >> 25); /* one VPROLD where the CPU has it */        \
    draw = rot_ + (rot_ << 3);                                                                               \
    const __typeof__(s[1]) shifted_ = s[1] << 9;                                                             \
    s[2] ^= s[0];                                                                                            \
    s[3] ^= s[1];                                                                                            \
    s[1] ^= s[2];                                                                                            \
    s[0] ^= s[3];                                                                                            \
    s[2] ^= shifted_;                                                                                        \
    s[3] = (s[3] << 11) | (s[3] >> 21);                                                                      \
  } while (0)

/* The next number of every lane, for code built for AVX-512 (CREMA_V16_TARGET), where the
 * sixteen lanes are one register. */
static inline __attribute__((always_inline)) crema_u32x16 crema_rng16_next(crema_rng16 *g) {
  crema_u32x16 draw;
  CREMA_RNG_LANES_STEP(g->s, draw);
  return draw;
}

/* The same generators as two halves of eight lanes (lanes 0-7, 8-15), for code built for
 * AVX2 or less: gcc keeps a sixteen-lane vector in memory there, lane by lane. */
typedef uint32_t crema_u32x8 __attribute__((vector_size(32)));
typedef struct crema_rng8 {
  crema_u32x8 s[4];
} crema_rng8;

static inline __attribute__((always_inline)) void crema_rng16_halves(const crema_rng16 *g, crema_rng8 h[2]) {
  for (int w = 0; w < 4; w++) {
    memcpy(&h[0].s[w], &g->s[w], sizeof h[0].s[w]);
    memcpy(&h[1].s[w], (const char *)&g->s[w] + sizeof h[0].s[w], sizeof h[1].s[w]);
  }
}

static inline __attribute__((always_inline)) crema_u32x8 crema_rng8_next(crema_rng8 *h) {
  crema_u32x8 draw;
  CREMA_RNG_LANES_STEP(h->s, draw);
  return draw;
}

/* The next sixteen numbers as an array, lane j's in d[j]: for a run's last partial group,
 * which its caller takes element by element. From the sixteen-lane state, or from its two
 * halves (the same numbers). */
static inline __attribute__((always_inline)) void crema_rng16_next_array(crema_rng16 *g, uint32_t d[16]) {
  const crema_u32x16 v = crema_rng16_next(g);
  memcpy(d, &v, sizeof v);
}

static inline __attribute__((always_inline)) void crema_rng8_next_array(crema_rng8 h[2], uint32_t d[16]) {
  const crema_u32x8 lo = crema_rng8_next(&h[0]), hi = crema_rng8_next(&h[1]);
  memcpy(d, &lo, sizeof lo);
  memcpy(d + 8, &hi, sizeof hi);
}

/* Elements [begin, begin + count) of a pass, count <= CREMA_RNG16_RUN and begin a multiple of
 * it, with g seeded for their run: fn draws crema_rng16_next(g) once per sixteen elements
 * (a last partial group takes the first lanes of its draw). */
typedef void (*crema_rng16_run_fn)(void *ctx, crema_rng16 *g, size_t begin, size_t count);
/* fn for every run of [0, n) with its generators seeded from key, runs on the threads at once
 * when parallel; the numbers do not depend on how. fn16, when not NULL, is a copy of fn built
 * for AVX-512 (CREMA_V16_TARGET): it runs instead where the CPU has it and `wide` is set. */
void crema_rng16_runs(uint64_t key, size_t n, bool parallel, crema_rng16_run_fn fn, crema_rng16_run_fn fn16,
                      bool wide, void *ctx);

#endif
