/* The queues between stages and the in-flight pixel budget. */
#include <stdlib.h>

#include "pipeline/pl_internal.h"

void queue_init(pl_queue *q)
{
    pthread_mutex_init(&q->lock, NULL);
    pthread_cond_init(&q->cond, NULL);
    q->head = q->tail = NULL;
    q->closed = false;
}

void queue_destroy(pl_queue *q)
{
    pthread_mutex_destroy(&q->lock);
    pthread_cond_destroy(&q->cond);
}

static atomic_int g_fail_pushes;

void queue_fail_pushes(int n)
{
    atomic_store(&g_fail_pushes, n);
}

bool queue_push(pl_queue *q, pl_chunk *c, size_t begin, size_t end, bool last)
{
    pl_job *j;
    if (last) {
        /* One last job per chunk exists at a time (it is copied out when
         * popped before it is pushed on), so the chunk's node serves all. */
        j = &c->last_job;
    } else if (atomic_load(&g_fail_pushes) > 0 && atomic_fetch_sub(&g_fail_pushes, 1) > 0) {
        return false;
    } else if (!(j = malloc(sizeof *j))) {
        return false;
    }
    *j = (pl_job){.c = c, .begin = begin, .end = end, .last = last, .embedded = last};
    pthread_mutex_lock(&q->lock);
    if (q->tail)
        q->tail->next = j;
    else
        q->head = j;
    q->tail = j;
    pthread_cond_signal(&q->cond);
    pthread_mutex_unlock(&q->lock);
    return true;
}

void queue_close(pl_queue *q)
{
    pthread_mutex_lock(&q->lock);
    q->closed = true;
    pthread_cond_broadcast(&q->cond);
    pthread_mutex_unlock(&q->lock);
}

bool queue_pop(pl_queue *q, pl_job *out)
{
    pthread_mutex_lock(&q->lock);
    while (!q->head && !q->closed)
        pthread_cond_wait(&q->cond, &q->lock);
    pl_job *j = q->head;
    if (j) {
        q->head = j->next;
        if (!q->head)
            q->tail = NULL;
    }
    pthread_mutex_unlock(&q->lock);
    if (!j)
        return false;
    *out = *j;
    out->next = NULL;
    if (!out->embedded)
        free(j);
    return true;
}

void budget_init(pl_budget *b, uint64_t cap)
{
    pthread_mutex_init(&b->lock, NULL);
    pthread_cond_init(&b->cond, NULL);
    b->cap = cap ? cap : 1;
    b->used = b->peak = 0;
}

void budget_destroy(pl_budget *b)
{
    pthread_mutex_destroy(&b->lock);
    pthread_cond_destroy(&b->cond);
}

static bool budget_fits(const pl_budget *b, uint64_t want)
{
    /* An image larger than the whole budget goes through alone. */
    return b->used == 0 || b->used + want <= b->cap;
}

static void budget_take(pl_budget *b, uint64_t want)
{
    b->used += want;
    if (b->used > b->peak)
        b->peak = b->used;
}

void budget_acquire(pl_budget *b, uint64_t want)
{
    pthread_mutex_lock(&b->lock);
    while (!budget_fits(b, want))
        pthread_cond_wait(&b->cond, &b->lock);
    budget_take(b, want);
    pthread_mutex_unlock(&b->lock);
}

bool budget_try_acquire(pl_budget *b, uint64_t want)
{
    pthread_mutex_lock(&b->lock);
    bool ok = budget_fits(b, want);
    if (ok)
        budget_take(b, want);
    pthread_mutex_unlock(&b->lock);
    return ok;
}

void budget_release(pl_budget *b, uint64_t n)
{
    if (!n)
        return;
    pthread_mutex_lock(&b->lock);
    b->used = n > b->used ? 0 : b->used - n;
    pthread_cond_broadcast(&b->cond);
    pthread_mutex_unlock(&b->lock);
}
