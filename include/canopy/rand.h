/* Non-cryptographic random numbers for jitter (retry backoff, poll spread).
 *
 * Each thread has its own generator, seeded from the operating system
 * (getrandom(), else /dev/urandom, else clock and thread id) on its first
 * use and again in a child after fork(), so that workers started together,
 * or restarted together, do not back off in lockstep as they would with an
 * unseeded rand(). Not for secrets. Thread-safe; no locks. */
#ifndef CANOPY_RAND_H
#define CANOPY_RAND_H

#include <stdbool.h>
#include <stdint.h>

/* The next 32 random bits from the calling thread's generator. */
uint32_t cnp_rand_u32(void);

/* Uniform in [0, 1). */
double cnp_rand_unit(void);

/* Uniform in [0, max) for max > 0; 0 when max <= 0. For "sleep base plus
 * up to max ms" style jitter. */
int cnp_jitter(int max);

/* A seed from the operating system's entropy source; false when only the
 * clock-and-thread-id fallback was available. For tests and for callers
 * that keep a generator of their own. */
bool cnp_rand_os_seed(uint64_t *seed);

#endif
