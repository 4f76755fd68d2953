/* Minimal test helpers: CHECK macros that report file:line and count
 * failures, and the stack-availability rule shared by integration tests. */
#ifndef CANOPY_TESTS_TESTUTIL_H
#define CANOPY_TESTS_TESTUTIL_H

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static int g_failures;

#define CHECK(cond)                                                                \
    do {                                                                           \
        if (!(cond)) {                                                             \
            fprintf(stderr, "%s:%d: CHECK failed: %s\n", __FILE__, __LINE__, #cond); \
            g_failures++;                                                          \
        }                                                                          \
    } while (0)

#define CHECK_MSG(cond, ...)                                                       \
    do {                                                                           \
        if (!(cond)) {                                                             \
            fprintf(stderr, "%s:%d: CHECK failed: %s: ", __FILE__, __LINE__, #cond); \
            fprintf(stderr, __VA_ARGS__);                                          \
            fputc('\n', stderr);                                                   \
            g_failures++;                                                          \
        }                                                                          \
    } while (0)

/* Exit code for main: 0 when every check passed. */
#define TEST_RESULT()                                                              \
    (g_failures ? (fprintf(stderr, "%d check(s) failed\n", g_failures), 1) : 0)

/* Returns 77 (skip) when the OpenCL device is missing, unless required. */
static inline int test_skip_or_fail(const char *why)
{
    const char *req = getenv("CANOPY_TEST_REQUIRE_STACK");
    fprintf(stderr, "%s\n", why);
    return req && strcmp(req, "1") == 0 ? 1 : 77;
}

#endif
