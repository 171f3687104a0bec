/* The one pseudo-random generator of the engine, its tests and benchmarks: xorshift64*, small,
 * fast and reproducible from a seed (the deterministic scheduler, property tests and
 * benchmark inputs name their runs by seed). Not for anything that needs real randomness.
 * The state must not be 0. */
#ifndef KP_RNG_H
#define KP_RNG_H

#include <stdint.h>

static inline uint64_t kp_rng_next(uint64_t *state)
{
    uint64_t x = *state;
    x ^= x >> 12;
    x ^= x << 25;
    x ^= x >> 27;
    *state = x;
    return x * 0x2545f4914f6cdd1dull;
}

#endif
