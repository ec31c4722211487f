/* xoshiro256** (Blackman & Vigna) seeded with splitmix64; Box-Muller normals.
 * Fast enough for dropout masks over a few million elements per step. */
#include "nn/rng.h"

#include <math.h>

static uint64_t splitmix64(uint64_t *x) {
  uint64_t z = (*x += 0x9e3779b97f4a7c15ULL);
  z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ULL;
  z = (z ^ (z >> 27)) * 0x94d049bb133111ebULL;
  return z ^ (z >> 31);
}

static inline uint64_t rotl(uint64_t x, int k) { return (x << k) | (x >> (64 - k)); }

void rng_init(ft_rng *r, uint64_t seed) {
  uint64_t x = seed;
  for (int i = 0; i < 4; i++) r->s[i] = splitmix64(&x);
  r->has_spare = 0;
}

uint64_t rng_u64(ft_rng *r) {
  uint64_t *s = r->s;
  uint64_t result = rotl(s[1] * 5, 7) * 9;
  uint64_t t = s[1] << 17;
  s[2] ^= s[0];
  s[3] ^= s[1];
  s[1] ^= s[2];
  s[0] ^= s[3];
  s[2] ^= t;
  s[3] = rotl(s[3], 45);
  return result;
}

float rng_uniform(ft_rng *r) { return (float)(rng_u64(r) >> 40) * (1.0f / 16777216.0f); }

float rng_normal(ft_rng *r) {
  if (r->has_spare) {
    r->has_spare = 0;
    return r->spare;
  }
  /* u1 in (0,1] so the log is finite */
  double u1 = ((double)(rng_u64(r) >> 11) + 1.0) * (1.0 / 9007199254740992.0);
  double u2 = (double)(rng_u64(r) >> 11) * (1.0 / 9007199254740992.0);
  double rad = sqrt(-2.0 * log(u1)), a = 6.283185307179586 * u2;
  r->spare = (float)(rad * sin(a));
  r->has_spare = 1;
  return (float)(rad * cos(a));
}

uint64_t rng_mix(uint64_t seed, uint64_t stream) {
  uint64_t x = seed;
  uint64_t a = splitmix64(&x);
  x = a ^ stream;
  return splitmix64(&x);
}

uint64_t rng_hash(const char *s) {
  uint64_t h = 0xcbf29ce484222325ULL;
  for (; *s; s++) h = (h ^ (unsigned char)*s) * 0x100000001b3ULL;
  return h;
}
