#include "base/rng.h"

#include <math.h>

#ifndef M_PI
#define M_PI 3.14159265358979323846
#endif

static uint64_t splitmix64(uint64_t *x) {
  uint64_t z = (*x += 0x9E3779B97F4A7C15ull);
  z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ull;
  z = (z ^ (z >> 27)) * 0x94D049BB133111EBull;
  return z ^ (z >> 31);
}

void crema_rng_seed(crema_rng *r, uint64_t seed, uint64_t stream) {
  uint64_t x = seed ^ (stream * 0xD1B54A32D192ED03ull);
  uint64_t a = splitmix64(&x), b = splitmix64(&x);
  r->s[0] = (uint32_t)a;
  r->s[1] = (uint32_t)(a >> 32);
  r->s[2] = (uint32_t)b;
  r->s[3] = (uint32_t)(b >> 32);
  if ((r->s[0] | r->s[1] | r->s[2] | r->s[3]) == 0) r->s[0] = 1; /* all-zero state is fixed */
}

float crema_rng_uniform01(crema_rng *r) { return (float)(crema_rng_u32(r) >> 8) * (1.0f / 16777216.0f); }

float crema_rng_uniform(crema_rng *r, float a, float b) { return a + (b - a) * crema_rng_uniform01(r); }

float crema_rng_gaussian(crema_rng *r, float mean, float std) {
  /* u1 in (0, 1] so log() is finite. */
  double u1 = ((double)(crema_rng_u32(r) >> 8) + 1.0) / 16777216.0;
  double u2 = (double)(crema_rng_u32(r) >> 8) / 16777216.0;
  double z = sqrt(-2.0 * log(u1)) * cos(2.0 * M_PI * u2);
  return (float)(mean + std * z);
}

uint32_t crema_rng_below(crema_rng *r, uint32_t n) {
  uint32_t limit = UINT32_MAX - UINT32_MAX % n;
  uint32_t x;
  do x = crema_rng_u32(r);
  while (x >= limit);
  return x % n;
}

int crema_rng_bernoulli(crema_rng *r, float p) { return crema_rng_uniform01(r) < p; }

void crema_rng_save(const crema_rng *r, uint8_t out[CREMA_RNG_STATE_BYTES]) {
  for (int i = 0; i < 4; i++)
    for (int b = 0; b < 4; b++) out[i * 4 + b] = (uint8_t)(r->s[i] >> (8 * b));
}

void crema_rng_load(crema_rng *r, const uint8_t in[CREMA_RNG_STATE_BYTES]) {
  for (int i = 0; i < 4; i++) {
    r->s[i] = 0;
    for (int b = 0; b < 4; b++) r->s[i] |= (uint32_t)in[i * 4 + b] << (8 * b);
  }
}
