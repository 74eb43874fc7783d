/* rng.h -- crema's one random number generator: reproducible, seedable, serializable.
 *
 * xoshiro128** with a splitmix64 seeder. Every object that draws random numbers (a filler
 * call, a Dropout layer, a data transformer, the solver) owns its own crema_rng, seeded from
 * the solver's random_seed and the owner's position in the net, so one random_seed gives the
 * same run always, and the whole state (16 bytes) can be stored in a solverstate for an
 * exact resume. Not thread-safe: one generator per thread of use. */
#ifndef CREMA_BASE_RNG_H
#define CREMA_BASE_RNG_H

#include <stdint.h>

typedef struct crema_rng {
  uint32_t s[4];
} crema_rng;

#define CREMA_RNG_STATE_BYTES 16

/* Seeds from a 64-bit seed and a stream id (different streams give independent sequences). */
void crema_rng_seed(crema_rng *r, uint64_t seed, uint64_t stream);
/* Inline: Dropout and RReLU draw one number per element. */
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
