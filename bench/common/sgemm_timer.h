/* A bare CLBlast SGEMM timed the way the detector engines call it: the
 * yardstick the benchmarks hold convolutions against. */
#ifndef CANOPY_BENCH_SGEMM_TIMER_H
#define CANOPY_BENCH_SGEMM_TIMER_H

#include <stddef.h>

#include "canopy/gpu.h"

/* The most repeats bench_time_sgemm takes. */
#define BENCH_SGEMM_MAX_REPEATS 64

/* Median seconds of SGEMM m x n x k (row-major, one scratch buffer made
 * once as the engines do) over `repeats` calls after one warm-up call.
 * Returns 0, or -1 when CLBlast refused it. */
int bench_time_sgemm(ocl_ctx *ctx, size_t m, size_t n, size_t k, int repeats, double *sec);

#endif
