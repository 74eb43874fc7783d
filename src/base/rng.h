/* rng.h -- crema's one random number generator: reproducible, seedable, serializable.
 *
 * xoshiro128** with a splitmix64 seeder. Every object that draws random numbers (a filler
 * call, a Dropout layer, a data transformer, the solver) owns its own crema_rng, seeded from
 * the solver's random_seed and the owner's position in the net, so one random_seed gives the
 * same run always, and the whole state (16 bytes) can be stored in a solverstate for an
 * exact resume. Not thread-safe: one generator per thread of use. */
#ifndef CREMA_BASE_RNG_H
#define CREMA_BASE_RNG_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

typedef struct crema_rng {
  uint32_t s[4];
} crema_rng;

#define CREMA_RNG_STATE_BYTES 16

/* Seeds from a 64-bit seed and a stream id (different streams give independent sequences). */
void crema_rng_seed(crema_rng *r, uint64_t seed, uint64_t stream);
/* Inline: some callers draw one number per element. */
static inline uint32_t crema_rng_rotl(uint32_t x, int k) { return (x << k) | (x >> (32 - k)); }
static inline uint32_t crema_rng_u32(crema_rng *r) {
  uint32_t *s = r->s;
  uint32_t result = crema_rng_rotl(s[1] * 5, 7) * 9;
  uint32_t t = s[1] << 9;
  s[2] ^= s[0];
  s[3] ^= s[1];
  s[1] ^= s[2];
  s[0] ^= s[3];
  s[2] ^= t;
  s[3] = crema_rng_rotl(s[3], 11);
  return result;
}
/* Two draws as one 64-bit value (high word first), e.g. a key for per-chunk streams. */
static inline uint64_t crema_rng_u64(crema_rng *r) {
  uint64_t hi = crema_rng_u32(r);
  return hi << 32 | crema_rng_u32(r);
}
/* Eight generators side by side: `steps` numbers from each of r[0..7], generator k's to
 * out[k * steps .. k * steps + steps - 1], the same numbers crema_rng_u32 would give each in
 * turn. With AVX2 and steps a multiple of 8, the eight run in one register's lanes, about
 * eight times faster (rng_x8.c): for passes that draw per element from chunk generators
 * (the uniform filler; Dropout and RReLU draw from lane generators instead, rng16.h). */
void crema_rng_u32_x8(crema_rng r[8], uint32_t *out, size_t steps);
/* One draw per element of [0, n), independent of the thread count: chunk c (elements
 * [c * chunk, (c + 1) * chunk), the last one shorter) draws from its own generator seeded
 * (key, c), in order. fn gets them in consecutive pieces: draws[i] for element begin + i,
 * i < count, pieces of different chunks possibly at once on different threads (parallel).
 * Eight whole chunks run side by side (crema_rng_u32_x8) when chunk is a multiple of 512; up
 * to 4096 elements each, each chunk's draws are then made first and handed to fn whole. */
typedef void (*crema_rng_draws_fn)(void *ctx, const uint32_t *draws, size_t begin, size_t count);
void crema_rng_chunked(uint64_t key, size_t n, size_t chunk, bool parallel, crema_rng_draws_fn fn, void *ctx);
/* Uniform in [0, 1). */
float crema_rng_uniform01(crema_rng *r);
/* Uniform in [a, b). */
float crema_rng_uniform(crema_rng *r, float a, float b);
/* Normal(mean, std) by Box-Muller. */
float crema_rng_gaussian(crema_rng *r, float mean, float std);
/* Uniform integer in [0, n); n > 0. Unbiased (rejection). */
uint32_t crema_rng_below(crema_rng *r, uint32_t n);
/* 1 with probability p. */
int crema_rng_bernoulli(crema_rng *r, float p);

/* State to/from 16 little-endian bytes. */
void crema_rng_save(const crema_rng *r, uint8_t out[CREMA_RNG_STATE_BYTES]);
void crema_rng_load(crema_rng *r, const uint8_t in[CREMA_RNG_STATE_BYTES]);

#endif
