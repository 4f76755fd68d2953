/* Check macros of the detector tests: tests/testutil.h's, plus REQUIRE, a
 * named result line; and the start of a test on the OpenCL device
 * (tests/devutil.h). */
#ifndef CANOPY_TEST_DETECT_COMMON_H
#define CANOPY_TEST_DETECT_COMMON_H

#include <math.h>
#include <stdlib.h>

#include "canopy/config.h"
#include "canopy/detect.h"
#include "canopy/gpu.h"
#include "devutil.h"
#include "testutil.h"

#define REQUIRE(cond)                                                                \
    do {                                                                             \
        if (!(cond)) {                                                               \
            fprintf(stderr, "%s:%d: REQUIRE failed: %s\n", __FILE__, __LINE__, #cond); \
            exit(1);                                                                 \
        }                                                                            \
    } while (0)

static inline int test_result(const char *name)
{
    if (g_failures) {
        fprintf(stderr, "%s: %d failure(s)\n", name, g_failures);
        return 1;
    }
    printf("%s: ok\n", name);
    return 0;
}

/* Trees of p that q has too (centre within pos, score within score_tol). */
static inline size_t trees_found_in(const cnp_tree *p, size_t np, const cnp_tree *q, size_t nq,
                                    float pos, float score_tol)
{
    size_t found = 0;
    for (size_t i = 0; i < np; i++)
        for (size_t k = 0; k < nq; k++)
            if (fabsf(p[i].x - q[k].x) < pos && fabsf(p[i].y - q[k].y) < pos &&
                fabsf(p[i].score - q[k].score) < score_tol) {
                found++;
                break;
            }
    return found;
}

#endif
