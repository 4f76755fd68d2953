/* The jitter generator (src/core/rand.c, used by the aws and store retry
 * loops): seeded from the OS, so two freshly started processes, two threads,
 * and a forked child each draw a different stream. An unseeded rand(), or a
 * generator with any fixed seed, fails the process checks: every restarted
 * worker would back off in lockstep. Lives with the aws tests (label "core"
 * as well) so that it needs no edit of tests/core. */
#include <pthread.h>
#include <stdio.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

#include "canopy/rand.h"
#include "testutil.h"

/* First 64 bits a fresh child process draws (the calling thread must not
 * have drawn yet when the child should look "freshly started"). */
static uint64_t child_first_draw(void)
{
    int pfd[2];
    uint64_t v = 0;
    if (pipe(pfd) != 0)
        return 0;
    pid_t pid = fork();
    if (pid == 0) {
        uint64_t mine = ((uint64_t)cnp_rand_u32() << 32) | cnp_rand_u32();
        ssize_t n = write(pfd[1], &mine, sizeof mine);
        _exit(n == (ssize_t)sizeof mine ? 0 : 1);
    }
    close(pfd[1]);
    if (pid > 0 && read(pfd[0], &v, sizeof v) != (ssize_t)sizeof v)
        v = 0;
    close(pfd[0]);
    if (pid > 0)
        waitpid(pid, NULL, 0);
    return v;
}

/* Two processes started the same way draw different numbers: the seed
 * comes from the OS, not from a constant. */
static void test_processes_differ(void)
{
    uint64_t a = child_first_draw(), b = child_first_draw();
    CHECK(a != 0 && b != 0);
    CHECK_MSG(a != b, "two fresh processes drew the same %016llx", (unsigned long long)a);
}

/* A child forked after the parent has drawn does not replay the parent. */
static void test_fork_reseeds(void)
{
    (void)cnp_rand_u32(); /* the parent's generator is now seeded */
    uint64_t child = child_first_draw();
    uint64_t parent = ((uint64_t)cnp_rand_u32() << 32) | cnp_rand_u32();
    CHECK_MSG(child != parent, "child replayed the parent's %016llx", (unsigned long long)parent);
}

static void *draw4(void *p)
{
    uint32_t *out = p;
    for (int i = 0; i < 4; i++)
        out[i] = cnp_rand_u32();
    return NULL;
}

static void test_threads_differ(void)
{
    uint32_t a[4], b[4];
    pthread_t ta, tb;
    int ra = pthread_create(&ta, NULL, draw4, a);
    int rb = pthread_create(&tb, NULL, draw4, b);
    CHECK(ra == 0 && rb == 0);
    if (ra == 0)
        pthread_join(ta, NULL);
    if (rb == 0)
        pthread_join(tb, NULL);
    if (ra == 0 && rb == 0)
        CHECK_MSG(memcmp(a, b, sizeof a) != 0, "two threads drew the same stream");
}

static void test_os_seed_and_range(void)
{
    uint64_t s1 = 0, s2 = 0;
    CHECK(cnp_rand_os_seed(&s1) && cnp_rand_os_seed(&s2));
    CHECK(s1 != s2 && s1 != 0);
    CHECK(cnp_jitter(0) == 0 && cnp_jitter(-5) == 0);
    int seen_lo = 0, seen_hi = 0, bad = 0;
    double sum = 0;
    for (int i = 0; i < 20000; i++) {
        int j = cnp_jitter(10);
        bad += j < 0 || j >= 10;
        seen_lo |= j == 0;
        seen_hi |= j == 9;
        double u = cnp_rand_unit();
        bad += u < 0.0 || u >= 1.0;
        sum += u;
    }
    CHECK_MSG(bad == 0 && seen_lo && seen_hi, "%d out of range", bad);
    CHECK_MSG(sum / 20000 > 0.45 && sum / 20000 < 0.55, "mean %.3f", sum / 20000);
}

int main(void)
{
    test_processes_differ(); /* first: this thread has not drawn yet */
    test_fork_reseeds();
    test_threads_differ();
    test_os_seed_and_range();
    return TEST_RESULT();
}
