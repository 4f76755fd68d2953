/* Synthetic aerial-like test images: deterministic crowns on soil, with
 * noise, for tests and benchmarks that need sizes the real data lacks. */
#ifndef CANOPY_SYNTH_H
#define CANOPY_SYNTH_H

#include <stdint.h>

#include "canopy/image.h"
#include "canopy/status.h"

/* Allocates img and fills it: soil-coloured noise with `crowns` green discs
 * of radius 8..30 px. Same seed, same pixels. */
cnp_status synth_aerial(cnp_image *img, uint32_t width, uint32_t height, uint32_t crowns,
                        uint64_t seed, cnp_err *err);

/* xorshift64*: a small deterministic generator for tests and benches. */
static inline uint64_t synth_rand(uint64_t *state)
{
    uint64_t x = *state;
    x ^= x >> 12;
    x ^= x << 25;
    x ^= x >> 27;
    *state = x;
    return x * 0x2545F4914F6CDD1DULL;
}

#endif
