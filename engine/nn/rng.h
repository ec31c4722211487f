/* A small seeded random number generator for the engine: xoshiro256** seeded
 * through splitmix64, with uniform and normal (Box-Muller) draws. Used for
 * weight initialisation and dropout masks, where runs must be reproducible
 * from one 64-bit seed; it is not for anything cryptographic. */
#ifndef FT_RNG_H
#define FT_RNG_H
#include <stdint.h>

typedef struct {
  uint64_t s[4];
  float spare; /* the second normal of the last Box-Muller pair */
  int has_spare;
} ft_rng;

void rng_init(ft_rng *r, uint64_t seed);
uint64_t rng_u64(ft_rng *r);
float rng_uniform(ft_rng *r); /* [0,1), 24 random bits */
float rng_normal(ft_rng *r);  /* N(0,1) */
/* A well-mixed seed derived from a seed and a stream id (splitmix64 of both). */
uint64_t rng_mix(uint64_t seed, uint64_t stream);
/* A stream id from a string (FNV-1a), e.g. a tensor name. */
uint64_t rng_hash(const char *s);
#endif
