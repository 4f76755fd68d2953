/* Check macros of the detector tests: tests/testutil.h's, plus REQUIRE and a
 * named result line. */
#ifndef CANOPY_TEST_DETECT_COMMON_H
#define CANOPY_TEST_DETECT_COMMON_H

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

#endif
