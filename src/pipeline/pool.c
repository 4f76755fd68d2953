/* Thread pool with parallel-for jobs. Jobs sit in a list; a worker takes the
 * next index of the first job with indices left. */
#include <pthread.h>
#include <stdlib.h>
#include <unistd.h>

#include "canopy/pool.h"

struct job {
    void (*fn)(void *arg, size_t i);
    void *arg;
    size_t n;
    size_t next;      /* next index to hand out */
    size_t done;      /* indices finished */
    struct job *link; /* pending list */
    pthread_cond_t finished;
};

struct cnp_pool {
    pthread_mutex_t lock;
    pthread_cond_t work;
    struct job *head; /* jobs with indices left to hand out */
    bool stop;
    int nthreads;
    pthread_t *threads;
};

/* Takes one index from the first job that has any; caller holds the lock. */
static struct job *take(cnp_pool *p, size_t *index)
{
    struct job *j = p->head;
    if (!j)
        return NULL;
    *index = j->next++;
    if (j->next == j->n)
        p->head = j->link; /* fully handed out */
    return j;
}

static void finish(struct job *j)
{
    if (++j->done == j->n)
        pthread_cond_broadcast(&j->finished);
}

static void *worker(void *arg)
{
    cnp_pool *p = arg;
    pthread_mutex_lock(&p->lock);
    for (;;) {
        size_t i;
        struct job *j;
        while (!(j = take(p, &i)) && !p->stop)
            pthread_cond_wait(&p->work, &p->lock);
        if (!j)
            break;
        pthread_mutex_unlock(&p->lock);
        j->fn(j->arg, i);
        pthread_mutex_lock(&p->lock);
        finish(j);
    }
    pthread_mutex_unlock(&p->lock);
    return NULL;
}

cnp_status cnp_pool_create(int threads, cnp_pool **out, cnp_err *err)
{
    if (threads <= 0) {
        long cores = sysconf(_SC_NPROCESSORS_ONLN);
        threads = cores > 0 ? (int)cores : 1;
    }
    cnp_pool *p = calloc(1, sizeof *p);
    if (!p || !(p->threads = calloc((size_t)threads, sizeof *p->threads))) {
        free(p);
        cnp_err_set(err, "out of memory for a thread pool");
        return CNP_ERR_NOMEM;
    }
    pthread_mutex_init(&p->lock, NULL);
    pthread_cond_init(&p->work, NULL);
    for (; p->nthreads < threads; p->nthreads++) {
        if (pthread_create(&p->threads[p->nthreads], NULL, worker, p) != 0)
            break;
    }
    if (p->nthreads == 0) {
        cnp_pool_free(p);
        cnp_err_set(err, "cannot start pool threads");
        return CNP_ERR_INTERNAL;
    }
    *out = p;
    return CNP_OK;
}

void cnp_pool_free(cnp_pool *p)
{
    if (!p)
        return;
    pthread_mutex_lock(&p->lock);
    p->stop = true;
    pthread_cond_broadcast(&p->work);
    pthread_mutex_unlock(&p->lock);
    for (int i = 0; i < p->nthreads; i++)
        pthread_join(p->threads[i], NULL);
    pthread_cond_destroy(&p->work);
    pthread_mutex_destroy(&p->lock);
    free(p->threads);
    free(p);
}

int cnp_pool_threads(const cnp_pool *p)
{
    return p->nthreads;
}

void cnp_pool_for(cnp_pool *p, size_t n, void (*fn)(void *arg, size_t i), void *arg)
{
    if (n == 0)
        return;
    struct job j = {.fn = fn, .arg = arg, .n = n};
    pthread_cond_init(&j.finished, NULL);
    pthread_mutex_lock(&p->lock);
    struct job **tail = &p->head;
    while (*tail)
        tail = &(*tail)->link;
    *tail = &j;
    pthread_cond_broadcast(&p->work);
    /* Help with our own job until every index is handed out. */
    while (j.next < j.n) {
        size_t i = j.next++;
        if (j.next == j.n) {
            for (struct job **q = &p->head; *q; q = &(*q)->link) {
                if (*q == &j) {
                    *q = j.link;
                    break;
                }
            }
        }
        pthread_mutex_unlock(&p->lock);
        fn(arg, i);
        pthread_mutex_lock(&p->lock);
        finish(&j);
    }
    while (j.done < j.n)
        pthread_cond_wait(&j.finished, &p->lock);
    pthread_mutex_unlock(&p->lock);
    pthread_cond_destroy(&j.finished);
}
