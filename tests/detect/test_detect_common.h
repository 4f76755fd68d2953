/* Minimal check macros shared by the detector tests. */
#ifndef CANOPY_TEST_DETECT_COMMON_H
#define CANOPY_TEST_DETECT_COMMON_H

#include <stdio.h>
#include <stdlib.h>

static int g_failures;

#define CHECK(cond)                                                                  \
    do {                                                                             \
        if (!(cond)) {                                                               \
            fprintf(stderr, "%s:%d: CHECK failed: %s\n", __FILE__, __LINE__, #cond); \
            g_failures++;                                                            \
        }                                                                            \
    } while (0)

#define CHECK_MSG(cond, ...)                                                         \
    do {                                                                             \
        if (!(cond)) {                                                               \
            fprintf(stderr, "%s:%d: CHECK failed: %s: ", __FILE__, __LINE__, #cond);  \
            fprintf(stderr, __VA_ARGS__);                                            \
            fputc('\n', stderr);                                                     \
            g_failures++;                                                            \
        }                                                                            \
    } while (0)

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

/* 77 (skipped) when a required environment (OpenCL device) is missing,
 * unless CANOPY_TEST_REQUIRE_STACK=1 makes that a failure. */
static inline int test_skip_or_fail_detect(const char *why)
{
    const char *req = getenv("CANOPY_TEST_REQUIRE_STACK");
    fprintf(stderr, "%s\n", why);
    return req && req[0] == '1' ? 1 : 77;
}

#endif
