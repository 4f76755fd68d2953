/* Thread pool: every index runs exactly once, with several submitters at
 * once, and nested waits do not deadlock. */
#include <pthread.h>
#include <stdatomic.h>

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

int main(void)
{
    cnp_err err;
    CHECK(cnp_pool_create(3, &g_pool, &err) == CNP_OK);
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
    CHECK_MSG(bad == 0, "%d indices ran a wrong number of times", bad);
    cnp_pool_free(g_pool);
    cnp_pool_free(NULL);
    return TEST_RESULT();
}
