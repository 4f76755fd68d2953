/* Thread pool: every index runs exactly once, with several submitters at
 * once, and nested waits (cnp_pool_for called from inside a task, two and
 * three levels deep, while other threads submit too) finish without
 * deadlock. An alarm turns a deadlock into a failure instead of a hang. */
#include <pthread.h>
#include <stdatomic.h>
#include <unistd.h>

#include "canopy/pool.h"
#include "testutil.h"

#define N 10007

static cnp_pool *g_pool;

struct counts {
    atomic_int hits[N];
};

static void hit(void *arg, size_t i)
{
    struct counts *c = arg;
    atomic_fetch_add(&c->hits[i], 1);
}

static void *submitter(void *arg)
{
    struct counts *c = arg;
    for (int round = 0; round < 5; round++)
        cnp_pool_for(g_pool, N, hit, c);
    return NULL;
}

/* Nested jobs: OUTER tasks each run MIDDLE tasks, each of which runs INNER
 * leaf tasks; every leaf (o, m, i) must run exactly once. */
#define OUTER 24
#define MIDDLE 9
#define INNER 31

struct nested {
    atomic_int leaves[OUTER][MIDDLE][INNER];
    atomic_int middles_done[OUTER]; /* middles whose leaves had all run when waited for */
    int depth;                      /* 2: outer -> leaves; 3: outer -> middle -> leaves */
};

struct nested_task {
    struct nested *n;
    size_t outer, middle;
};

static void leaf(void *arg, size_t i)
{
    struct nested_task *t = arg;
    if (i % 8 == 0)
        usleep(100); /* slow enough that a wait returning early would be seen */
    atomic_fetch_add(&t->n->leaves[t->outer][t->middle][i], 1);
}

/* Runs the leaves of (outer, middle) as a nested job; counts the middle as
 * done when every leaf had run by the time the wait returned. */
static void run_leaves(struct nested_task *t)
{
    cnp_pool_for(g_pool, INNER, leaf, t);
    int complete = 1;
    for (size_t i = 0; i < INNER; i++)
        complete &= atomic_load(&t->n->leaves[t->outer][t->middle][i]) == 1;
    if (complete)
        atomic_fetch_add(&t->n->middles_done[t->outer], 1);
}

static void middle(void *arg, size_t m)
{
    struct nested_task *parent = arg;
    struct nested_task t = {.n = parent->n, .outer = parent->outer, .middle = m};
    run_leaves(&t);
}

static void outer(void *arg, size_t o)
{
    struct nested *n = arg;
    struct nested_task t = {.n = n, .outer = o};
    if (n->depth == 3) {
        cnp_pool_for(g_pool, MIDDLE, middle, &t);
        return;
    }
    for (size_t m = 0; m < MIDDLE; m++) {
        t.middle = m;
        run_leaves(&t);
    }
}

static void *nested_submitter(void *arg)
{
    cnp_pool_for(g_pool, OUTER, outer, arg);
    return NULL;
}

/* Runs `submitters` nested jobs of `depth` levels at once (from as many
 * threads) and checks every leaf ran exactly once. */
static void test_nested(int depth, int submitters)
{
    static struct nested runs[3];
    pthread_t t[3];
    for (int s = 0; s < submitters; s++) {
        memset(&runs[s], 0, sizeof runs[s]);
        runs[s].depth = depth;
        CHECK_FATAL(pthread_create(&t[s], NULL, nested_submitter, &runs[s]) == 0);
    }
    for (int s = 0; s < submitters; s++)
        pthread_join(t[s], NULL);
    for (int s = 0; s < submitters; s++) {
        int bad = 0, early = 0;
        for (size_t o = 0; o < OUTER; o++) {
            early += atomic_load(&runs[s].middles_done[o]) != MIDDLE;
            for (size_t m = 0; m < MIDDLE; m++)
                for (size_t i = 0; i < INNER; i++)
                    bad += atomic_load(&runs[s].leaves[o][m][i]) != 1;
        }
        CHECK(bad == 0, "depth %d, submitter %d: %d leaves ran a wrong number of times", depth,
              s, bad);
        CHECK(early == 0, "depth %d, submitter %d: %d nested waits returned early", depth, s,
              early);
    }
}

int main(void)
{
    /* A deadlock would hang until ctest's timeout; SIGALRM ends it now. */
    alarm(120);
    cnp_err err;
    CHECK_FATAL(cnp_pool_create(3, &g_pool, &err) == CNP_OK, "%s", err.msg);
    CHECK(cnp_pool_threads(g_pool) == 3);
    static struct counts a, b, c;
    cnp_pool_for(g_pool, N, hit, &a);
    for (size_t i = 0; i < N; i++)
        CHECK(atomic_load(&a.hits[i]) == 1);
    cnp_pool_for(g_pool, 0, hit, &a); /* nothing to do */
    pthread_t t1, t2;
    pthread_create(&t1, NULL, submitter, &b);
    pthread_create(&t2, NULL, submitter, &c);
    pthread_join(t1, NULL);
    pthread_join(t2, NULL);
    int bad = 0;
    for (size_t i = 0; i < N; i++)
        bad += atomic_load(&b.hits[i]) != 5 || atomic_load(&c.hits[i]) != 5;
    CHECK(bad == 0, "%d indices ran a wrong number of times", bad);
    test_nested(2, 1);
    test_nested(3, 1);
    test_nested(3, 3); /* nested jobs from three threads at once */
    cnp_pool_free(g_pool);
    cnp_pool_free(NULL);
    return TEST_RESULT();
}
