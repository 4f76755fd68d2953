/* Test helpers: the one check macro every test uses, and the
 * stack-availability rule shared by integration tests.
 *
 *   CHECK(cond);                      CHECK(cond, "fmt", args...);
 *   CHECK_FATAL(cond);                CHECK_FATAL(cond, "fmt", args...);
 *
 * A failed CHECK prints "file:line: CHECK failed: cond: message", counts the
 * failure and goes on; TEST_RESULT() turns the count into main's exit code.
 * CHECK_FATAL is the same check for a step the rest of the test cannot do
 * without (a NULL handle, a missing database): it exits 1 at once, which also
 * runs atexit handlers such as the store tests' database cleanup.
 *
 * The count is per translation unit: a helper in another .c file (pgtest.c)
 * must use CHECK_FATAL. The message must start with a string literal (it is
 * pasted after ": "), so printf-style arguments are checked by the compiler.
 * CHECK(cond) with no message relies on empty variadic arguments, standard
 * since C23 and accepted by GCC and Clang in C11 mode. */
#ifndef CANOPY_TESTS_TESTUTIL_H
#define CANOPY_TESTS_TESTUTIL_H

#include <pthread.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static int g_failures;

/* Reports one failed check; fmt starts with ": " (a message that is only
 * that is no message). Exits 1 when fatal, else counts the failure. */
static inline void __attribute__((format(printf, 5, 6)))
test_check_failed(const char *file, int line, int fatal, const char *cond, const char *fmt, ...)
{
    char msg[4096];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(msg, sizeof msg, fmt, ap);
    va_end(ap);
    fprintf(stderr, "%s:%d: %s failed: %s%s\n", file, line, fatal ? "CHECK_FATAL" : "CHECK",
            cond, strcmp(msg, ": ") == 0 ? "" : msg);
    if (fatal) {
        fflush(NULL);
        exit(1);
    }
    g_failures++;
}

#define CHECK(cond, ...)                                                                \
    do {                                                                                \
        if (!(cond))                                                                    \
            test_check_failed(__FILE__, __LINE__, 0, #cond, ": " __VA_ARGS__);         \
    } while (0)

#define CHECK_FATAL(cond, ...)                                                          \
    do {                                                                                \
        if (!(cond))                                                                    \
            test_check_failed(__FILE__, __LINE__, 1, #cond, ": " __VA_ARGS__);         \
    } while (0)

/* The former name of CHECK with a message; kept so older tests compile. */
#define CHECK_MSG CHECK

/* Exit code for main: 0 when every check passed. */
#define TEST_RESULT()                                                              \
    (g_failures ? (fprintf(stderr, "%d check(s) failed\n", g_failures), 1) : 0)

/* Runs fn on each of the n items (size bytes apart from items) on a thread
 * of its own, all at once, and joins them. A thread that cannot be started
 * is a failed check and none after it is started (with a barrier the caller
 * then must not wait for them); returns how many ran. n is at most 64. */
static inline int test_threads_run(void *(*fn)(void *), void *items, size_t size, int n)
{
    enum { MAX_THREADS = 64 };
    pthread_t th[MAX_THREADS];
    CHECK(n <= MAX_THREADS, "%d threads, at most %d", n, MAX_THREADS);
    int started = 0;
    while (started < n && started < MAX_THREADS) {
        int rc = pthread_create(&th[started], NULL, fn, (char *)items + (size_t)started * size);
        if (rc != 0) {
            CHECK(rc == 0, "pthread_create: %d", rc);
            break;
        }
        started++;
    }
    for (int i = 0; i < started; i++)
        pthread_join(th[i], NULL);
    return started;
}

/* Returns 77 (skip) when the OpenCL device is missing, unless required. */
static inline int test_skip_or_fail(const char *why)
{
    const char *req = getenv("CANOPY_TEST_REQUIRE_STACK");
    fprintf(stderr, "%s\n", why);
    return req && strcmp(req, "1") == 0 ? 1 : 77;
}

#endif
