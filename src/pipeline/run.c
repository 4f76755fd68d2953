/* The wiring: one thread per stage, queues between them, at most
 * max_chunks chunks between the source and the acknowledgement, and the
 * pixel budget between decode and encode.
 *
 *   source -> q_fetch -> fetch -> q_decode -> decode (slices) -> q_device
 *          -> device -> q_encode -> encode -> q_write -> sink write
 *          -> q_commit -> commit + acknowledge + report */
#include <stdio.h>
#include <string.h>
#include <unistd.h>

#include "canopy/log.h"
#include "canopy/metrics.h"
#include "pipeline/pl_internal.h"

bool pl_cancelled(const pl_ctx *x)
{
    return x->hooks && x->hooks->cancel && *x->hooks->cancel;
}

void pl_set_fatal(pl_ctx *x)
{
    atomic_store(&x->fatal, true);
    pthread_mutex_lock(&x->slots_lock);
    pthread_cond_broadcast(&x->slots_cond);
    pthread_mutex_unlock(&x->slots_lock);
}

void pl_ctx_init(pl_ctx *x, const char *mode, const pl_hooks *hooks, const pl_stage_params *sp,
                 int max_chunks, uint64_t budget_pixels)
{
    memset(x, 0, sizeof *x);
    x->mode = mode;
    x->hooks = hooks;
    x->sp = *sp;
    x->max_chunks = max_chunks > 0 ? max_chunks : 1;
    budget_init(&x->budget, budget_pixels);
    pl_queue *qs[] = {&x->q_fetch, &x->q_decode, &x->q_device, &x->q_encode, &x->q_write,
                      &x->q_commit};
    for (size_t i = 0; i < sizeof qs / sizeof qs[0]; i++)
        queue_init(qs[i]);
    pthread_mutex_init(&x->slots_lock, NULL);
    pthread_cond_init(&x->slots_cond, NULL);
    atomic_store(&x->total, -1);
}

void pl_ctx_destroy(pl_ctx *x)
{
    pl_queue *qs[] = {&x->q_fetch, &x->q_decode, &x->q_device, &x->q_encode, &x->q_write,
                      &x->q_commit};
    for (size_t i = 0; i < sizeof qs / sizeof qs[0]; i++)
        queue_destroy(qs[i]);
    pthread_mutex_destroy(&x->slots_lock);
    pthread_cond_destroy(&x->slots_cond);
    budget_destroy(&x->budget);
}

void pl_counts_get(pl_ctx *x, pl_counts *c)
{
    memset(c, 0, sizeof *c);
    c->ok = atomic_load(&x->n_ok);
    c->failed = atomic_load(&x->n_failed);
    c->retried = atomic_load(&x->n_retried);
    c->pending = atomic_load(&x->pending);
    c->trees = atomic_load(&x->n_trees);
    c->total = atomic_load(&x->total);
    c->mpix = (double)atomic_load(&x->n_kpix) / 1e3;
    c->windows_done = atomic_load(&x->win_done);
    c->windows_total = atomic_load(&x->win_total);
    c->elapsed_s = x->start > 0 ? cnp_now() - x->start : 0.0;
}

/* ---- back-pressure: chunks in flight ------------------------------------ */

static bool slot_acquire(pl_ctx *x)
{
    pthread_mutex_lock(&x->slots_lock);
    while (x->inflight >= x->max_chunks && !atomic_load(&x->fatal))
        pthread_cond_wait(&x->slots_cond, &x->slots_lock);
    bool ok = !atomic_load(&x->fatal);
    if (ok)
        x->inflight++;
    cnp_metrics_set(x->metrics, "canopy_chunks_in_flight", NULL, x->inflight);
    pthread_mutex_unlock(&x->slots_lock);
    return ok;
}

static void slot_release(pl_ctx *x)
{
    pthread_mutex_lock(&x->slots_lock);
    x->inflight--;
    cnp_metrics_set(x->metrics, "canopy_chunks_in_flight", NULL, x->inflight);
    pthread_cond_broadcast(&x->slots_cond);
    pthread_mutex_unlock(&x->slots_lock);
}

/* ---- stage threads ------------------------------------------------------ */

/* A chunk that cannot be queued (no memory for the job) is finished at
 * once: its items fail transiently, so nothing of it is acknowledged. */
static void push_or_finish(pl_ctx *x, pl_queue *q, pl_job *j)
{
    if (queue_push(q, j->c, j->begin, j->end, j->last))
        return;
    chunk_fail(j->c, CNP_ERR_NOMEM, "out of memory");
    if (j->last) {
        stage_finish_chunk(x, j->c);
        chunk_free(j->c);
        slot_release(x);
    }
}

static void *thread_fetch(void *arg)
{
    pl_ctx *x = arg;
    pl_job j;
    while (queue_pop(&x->q_fetch, &j)) {
        x->src->fetch(x, x->src_self, j.c);
        chunk_advance(j.c, CHUNK_FETCHED);
        double bytes = 0;
        for (size_t i = 0; i < j.c->nitems; i++)
            bytes += j.c->items[i].bytes.spill_path[0] ? (double)j.c->items[i].bytes.size
                                                       : (double)j.c->items[i].bytes.body.len;
        cnp_metrics_add(x->metrics, "canopy_bytes_in_total", NULL, bytes);
        push_or_finish(x, &x->q_decode, &j);
    }
    queue_close(&x->q_decode);
    return NULL;
}

static void *thread_decode(void *arg)
{
    pl_ctx *x = arg;
    pl_job j;
    while (queue_pop(&x->q_decode, &j)) {
        pl_chunk *c = j.c;
        /* Once its last slice is pushed the chunk may be finished and freed
         * downstream at any moment: c is not touched after that. */
        size_t begin = 0, n = c->nitems;
        do {
            size_t end = begin;
            if (n)
                stage_decode_job(x, c, begin, &end);
            pl_job s = {.c = c, .begin = begin, .end = end, .last = end >= n};
            push_or_finish(x, &x->q_device, &s);
            begin = end;
        } while (begin < n);
    }
    queue_close(&x->q_device);
    return NULL;
}

static void *thread_device(void *arg)
{
    pl_ctx *x = arg;
    pl_job j;
    while (queue_pop(&x->q_device, &j)) {
        stage_device_job(x, j.c, j.begin, j.end);
        push_or_finish(x, &x->q_encode, &j);
    }
    queue_close(&x->q_encode);
    return NULL;
}

static void *thread_encode(void *arg)
{
    pl_ctx *x = arg;
    pl_job j;
    while (queue_pop(&x->q_encode, &j)) {
        stage_encode_job(x, j.c, j.begin, j.end);
        if (!j.last)
            continue;
        j.begin = 0;
        j.end = j.c->nitems;
        push_or_finish(x, &x->q_write, &j);
    }
    queue_close(&x->q_write);
    return NULL;
}

static void *thread_write(void *arg)
{
    pl_ctx *x = arg;
    pl_job j;
    while (queue_pop(&x->q_write, &j)) {
        chunk_advance(j.c, CHUNK_PROCESSED);
        x->sink->write(x, x->sink_self, j.c);
        chunk_advance(j.c, CHUNK_WRITTEN);
        push_or_finish(x, &x->q_commit, &j);
    }
    queue_close(&x->q_commit);
    return NULL;
}

static void *thread_commit(void *arg)
{
    pl_ctx *x = arg;
    pl_job j;
    while (queue_pop(&x->q_commit, &j)) {
        stage_finish_chunk(x, j.c);
        chunk_free(j.c);
        slot_release(x);
    }
    return NULL;
}

/* Gauges read at a moment, then the textfile and (JSON logs) an EMF line. */
static void metrics_flush(pl_ctx *x)
{
    if (!x->metrics)
        return;
    pthread_mutex_lock(&x->budget.lock);
    double px = (double)x->budget.used;
    pthread_mutex_unlock(&x->budget.lock);
    cnp_metrics_set(x->metrics, "canopy_pixels_in_flight", NULL, px);
    if (x->dev) {
        cnp_metrics_set(x->metrics, "canopy_device_image_bytes", NULL,
                        (double)pipe_device_image_bytes(x->dev));
        cnp_metrics_set(x->metrics, "canopy_device_bytes", NULL, (double)ocl_device_bytes());
    }
    cnp_err err;
    if (x->mcfg.textfile[0] &&
        cnp_metrics_write_textfile(x->metrics, x->mcfg.textfile, &err) != CNP_OK)
        LOG_WARN(x->mode, "metrics: %s", err.msg);
    if (cnp_log_is_json()) {
        char *emf = cnp_metrics_emf(x->metrics, x->mode);
        if (emf)
            cnp_log_raw(emf);
        free(emf);
    }
}

/* Progress about every 0.4 s to the caller; metrics every interval. */
static void *thread_progress(void *arg)
{
    pl_ctx *x = arg;
    double last = cnp_now();
    int every = x->mcfg.interval_seconds > 0 ? x->mcfg.interval_seconds : 15;
    while (!atomic_load(&x->finished)) {
        usleep(400000);
        if (x->hooks && x->hooks->on_progress) {
            pl_counts c;
            pl_counts_get(x, &c);
            x->hooks->on_progress(x->hooks->ctx, &c);
        }
        if (cnp_now() - last >= every) {
            last = cnp_now();
            metrics_flush(x);
        }
    }
    return NULL;
}

/* ---- the source loop ----------------------------------------------------- */

static void run_source(pl_ctx *x)
{
    while (!atomic_load(&x->fatal)) {
        if (!slot_acquire(x))
            break;
        pl_chunk *c = calloc(1, sizeof *c);
        if (!c) {
            slot_release(x);
            LOG_ERROR(x->mode, "out of memory for a chunk");
            pl_set_fatal(x);
            break;
        }
        c->seq = ++x->next_seq;
        if (!x->src->next_chunk(x, x->src_self, c)) {
            chunk_free(c);
            slot_release(x);
            break;
        }
        LOG_DEBUG(x->mode, "chunk %zu: %zu messages, %zu items", c->seq, c->nacks, c->nitems);
        pl_job j = {.c = c, .begin = 0, .end = c->nitems, .last = true};
        push_or_finish(x, &x->q_fetch, &j);
    }
}

int pl_ctx_run(pl_ctx *x, pl_counts *counts)
{
    void *(*const fns[])(void *) = {thread_fetch, thread_decode, thread_device,
                                    thread_encode, thread_write, thread_commit};
    enum { NSTAGES = sizeof fns / sizeof fns[0] };
    pthread_t th[NSTAGES], prog;
    int started = 0;
    bool prog_started = false;
    x->start = cnp_now();
    for (; started < NSTAGES; started++) {
        if (pthread_create(&th[started], NULL, fns[started], x) != 0) {
            LOG_ERROR(x->mode, "cannot start the pipeline's threads");
            pl_set_fatal(x);
            break;
        }
    }
    if (started == NSTAGES) {
        if ((x->hooks && x->hooks->on_progress) || x->metrics)
            prog_started = pthread_create(&prog, NULL, thread_progress, x) == 0;
        run_source(x);
    }
    /* Closing the first queue lets every stage drain and close the next. A
     * stage that did not start is stood in for by closing its input. */
    queue_close(&x->q_fetch);
    if (started < NSTAGES) {
        pl_queue *qs[] = {&x->q_fetch, &x->q_decode, &x->q_device, &x->q_encode, &x->q_write,
                          &x->q_commit};
        for (int i = started; i < NSTAGES; i++)
            queue_close(qs[i]);
    }
    for (int i = 0; i < started; i++)
        pthread_join(th[i], NULL);
    atomic_store(&x->finished, true);
    if (prog_started)
        pthread_join(prog, NULL);
    pl_counts c;
    pl_counts_get(x, &c);
    if (counts)
        *counts = c;
    LOG_DEBUG(x->mode, "decoded pixels in flight peaked at %.2f MPix (budget %.2f MPix)",
              (double)x->budget.peak / 1e6, (double)x->budget.cap / 1e6);
    metrics_flush(x);
    if (atomic_load(&x->fatal))
        return CNP_EXIT_FATAL;
    if (c.pending > 0)
        return CNP_EXIT_PENDING;
    if (c.failed || (c.retried && !x->redelivers))
        return CNP_EXIT_PARTIAL;
    return CNP_EXIT_OK;
}
