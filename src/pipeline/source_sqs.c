/* Source: SQS. Receives chunks of messages (long poll for the first, short
 * polls to fill), turns them into items, extends the visibility of chunks in
 * flight (heartbeat) and, after the sink's commit, deletes the messages whose
 * items all ended or backs off the others. */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "canopy/log.h"
#include "canopy/rand.h"
#include "canopy/sqs.h"
#include "pipeline/sources.h"

/* A message this worker left for redelivery, until it deletes it. */
struct pending {
    char *message_id;
    double due; /* when it becomes visible again */
};

struct pl_sqs_source {
    aws_client *aws;
    pl_sqs_params p;
    aws_batch *fetch_batch;     /* used by the fetch thread only */
    /* When the queue was first found empty since the last message (0: it
     * has not been, since). Idle time counts from an empty ReceiveMessage,
     * never from the last message: time the source spends held back by
     * chunks in flight is not idle. */
    double empty_since, last_ok;
    bool last_failed;           /* the latest ReceiveMessage failed: not "idle" */
    int64_t received;
    /* Chunks in flight. reg_lock guards the list; hb_lock is held for a
     * whole heartbeat round (list copy and ChangeMessageVisibility calls), so
     * that removing a chunk waits for a round in progress: once removed, no
     * late extension can overwrite its backoff. */
    pthread_mutex_t reg_lock, hb_lock;
    pl_chunk *registry;
    pthread_t hb;
    bool hb_started;
    atomic_bool hb_stop;
    pthread_mutex_t pend_lock;
    struct pending *pend;
    size_t npend, pend_cap;
    pl_ctx *x;                  /* for pending counts; set by next_chunk */
};

/* ---- the chunk's messages ------------------------------------------------- */

#define SQ(c) ((pl_sqs_chunk *)(c)->src_state)

static void sqs_chunk_free(void *state)
{
    pl_sqs_chunk *q = state;
    for (size_t i = 0; i < q->n; i++) {
        msg_parsed_free(&q->msgs[i].parsed);
        sqs_message_free(&q->msgs[i].m);
    }
    free(q->msgs);
    free(q);
}

pl_sqs_chunk *pl_sqs_chunk_of(pl_chunk *c)
{
    if (!c->src_state) {
        if (!(c->src_state = calloc(1, sizeof(pl_sqs_chunk))))
            return NULL;
        c->src_state_free = sqs_chunk_free;
    }
    return c->src_state;
}

/* Messages in the chunk. */
static size_t sqs_n(const pl_chunk *c)
{
    const pl_sqs_chunk *q = c->src_state;
    return q ? q->n : 0;
}

/* ---- pending retries ------------------------------------------------------ */

static void pending_add(pl_sqs_source *s, const char *id, double due)
{
    pthread_mutex_lock(&s->pend_lock);
    for (size_t i = 0; i < s->npend; i++) {
        if (strcmp(s->pend[i].message_id, id) == 0) {
            s->pend[i].due = due;
            goto out;
        }
    }
    if (s->npend == s->pend_cap) {
        size_t cap = s->pend_cap ? 2 * s->pend_cap : 64;
        struct pending *grown = realloc(s->pend, cap * sizeof *grown);
        if (!grown)
            goto out; /* only the exit code's knowledge of it is lost */
        s->pend = grown;
        s->pend_cap = cap;
    }
    if ((s->pend[s->npend].message_id = strdup(id)) != NULL)
        s->pend[s->npend++].due = due;
out:
    if (s->x)
        atomic_store(&s->x->pending, (long long)s->npend);
    pthread_mutex_unlock(&s->pend_lock);
}

static void pending_remove(pl_sqs_source *s, const char *id)
{
    pthread_mutex_lock(&s->pend_lock);
    for (size_t i = 0; i < s->npend; i++) {
        if (strcmp(s->pend[i].message_id, id) == 0) {
            free(s->pend[i].message_id);
            s->pend[i] = s->pend[--s->npend];
            break;
        }
    }
    if (s->x)
        atomic_store(&s->x->pending, (long long)s->npend);
    pthread_mutex_unlock(&s->pend_lock);
}

/* The latest time until which drain keeps waiting for its own retries:
 * those due back within the idle window are waited for (plus a few seconds
 * to receive them); a retry due later is left to a later run, and drain
 * then exits CNP_EXIT_PENDING. Growing backoffs make this bounded: a
 * message that keeps failing soon has a backoff beyond the window. */
static double pending_wait_until(pl_sqs_source *s, double now)
{
    double until = 0, window = s->p.idle_exit_seconds;
    pthread_mutex_lock(&s->pend_lock);
    for (size_t i = 0; i < s->npend; i++) {
        double due = s->pend[i].due;
        if (due <= now + window && due + 3.0 > until)
            until = due + 3.0;
    }
    pthread_mutex_unlock(&s->pend_lock);
    return until;
}

/* ---- visibility and heartbeat ------------------------------------------- */

/* Sets the visibility of messages (handles) to timeouts, 10 per call. */
static void change_visibility(pl_sqs_source *s, const char **handles, const int *timeouts,
                              size_t n)
{
    for (size_t off = 0; off < n; off += SQS_BATCH_MAX) {
        size_t k = n - off < SQS_BATCH_MAX ? n - off : SQS_BATCH_MAX;
        sqs_entry_result er[SQS_BATCH_MAX];
        aws_result ar;
        cnp_metrics_add(s->p.metrics, "canopy_sqs_requests_total",
                        "change_message_visibility_batch", 1);
        if (sqs_change_visibility_batch(s->aws, s->p.queue_url, handles + off, timeouts + off, k,
                                        er, &ar) != CNP_OK)
            LOG_WARN("drain", "ChangeMessageVisibilityBatch: %s", ar.err.msg);
    }
}

size_t pl_heartbeat_collect(pl_chunk *registry, double now, double every, const char ***out)
{
    size_t n = 0, cap = 0;
    const char **handles = NULL;
    for (pl_chunk *c = registry; c; c = c->reg_next) {
        if (now - c->last_extend < every)
            continue;
        if (n + sqs_n(c) > cap) {
            size_t ncap = cap ? 2 * cap : 64;
            while (ncap < n + sqs_n(c))
                ncap *= 2;
            const char **grown = realloc(handles, ncap * sizeof *grown);
            if (!grown) {
                free(handles);
                *out = NULL;
                return (size_t)-1;
            }
            handles = grown;
            cap = ncap;
        }
        c->last_extend = now;
        for (size_t i = 0; i < sqs_n(c); i++)
            handles[n++] = SQ(c)->msgs[i].m.receipt_handle;
    }
    *out = handles;
    return n;
}

/* Every quarter second: extends every message of chunks whose last
 * extension is older than a third of the visibility timeout. */
static void *heartbeat(void *arg)
{
    pl_sqs_source *s = arg;
    int vis = s->p.visibility_timeout;
    double every = vis / 3.0 < 1.0 ? 1.0 : vis / 3.0;
    while (!atomic_load(&s->hb_stop)) {
        usleep(250000);
        pthread_mutex_lock(&s->hb_lock);
        pthread_mutex_lock(&s->reg_lock);
        const char **handles = NULL;
        size_t n = pl_heartbeat_collect(s->registry, cnp_now(), every, &handles);
        pthread_mutex_unlock(&s->reg_lock);
        if (n == (size_t)-1) {
            LOG_WARN("drain", "heartbeat: out of memory; trying again");
        } else if (n) {
            int *timeouts = malloc(n * sizeof *timeouts);
            if (timeouts) {
                for (size_t i = 0; i < n; i++)
                    timeouts[i] = vis;
                LOG_DEBUG("drain", "heartbeat: extending %zu messages by %d s", n, vis);
                change_visibility(s, handles, timeouts, n);
            }
            free(timeouts);
        }
        free(handles);
        pthread_mutex_unlock(&s->hb_lock);
    }
    return NULL;
}

static void registry_add(pl_sqs_source *s, pl_chunk *c)
{
    pthread_mutex_lock(&s->reg_lock);
    c->last_extend = cnp_now();
    c->reg_next = s->registry;
    s->registry = c;
    pthread_mutex_unlock(&s->reg_lock);
}

void pl_sqs_source_track(pl_sqs_source *s, pl_chunk *c)
{
    registry_add(s, c);
}

/* Waits for a heartbeat round in progress, so no extension of c is sent
 * after this returns. */
static void registry_remove(pl_sqs_source *s, pl_chunk *c)
{
    pthread_mutex_lock(&s->hb_lock);
    pthread_mutex_lock(&s->reg_lock);
    for (pl_chunk **p = &s->registry; *p; p = &(*p)->reg_next) {
        if (*p == c) {
            *p = c->reg_next;
            break;
        }
    }
    pthread_mutex_unlock(&s->reg_lock);
    pthread_mutex_unlock(&s->hb_lock);
}

/* ---- receiving ------------------------------------------------------------ */

/* Turns the chunk's messages into items. */
static void chunk_parse(pl_ctx *x, pl_chunk *c)
{
    for (size_t m = 0; m < sqs_n(c); m++) {
        pl_msg *cm = &SQ(c)->msgs[m];
        if (msg_parse(cm->m.body ? cm->m.body : "", &cm->parsed) != CNP_OK) {
            cm->parsed.kind = MSG_INVALID;
            snprintf(cm->parsed.reason, sizeof cm->parsed.reason, "out of memory parsing");
        }
        if (cm->parsed.kind == MSG_IGNORE) {
            LOG_INFO(x->mode, "message %s: ignored (test event or no object created)",
                     cm->m.message_id);
            continue;
        }
        if (cm->parsed.kind == MSG_INVALID) {
            char key[256];
            snprintf(key, sizeof key, "sqs-message:%s", cm->m.message_id);
            pl_item *it = chunk_add_item(c, (int)m, "", key, NULL);
            if (it)
                item_fail(it, CNP_ERR_INVALID, "message %s: %s", cm->m.message_id,
                          cm->parsed.reason);
            continue;
        }
        for (size_t i = 0; i < cm->parsed.n; i++) {
            const msg_item *mi = &cm->parsed.items[i];
            pl_item *it = chunk_add_item(c, (int)m, mi->bucket, mi->key, NULL);
            if (it)
                it->meta = mi;
        }
    }
}

/* Seconds to long-poll for the first message of a chunk: never past the
 * idle deadline. */
static int poll_wait(const pl_sqs_source *s, double idle_deadline)
{
    int wait = s->p.wait_seconds;
    if (s->p.follow)
        return wait;
    double left = idle_deadline - cnp_now();
    if (left < wait)
        wait = left < 1 ? (left > 0 ? 1 : 0) : (int)ceil(left);
    return wait;
}

/* True when drain should stop waiting for messages: idle for the window
 * and none of its own retries is due back within it. */
static bool idle_over(pl_sqs_source *s, double *deadline)
{
    double now = cnp_now();
    double until = (s->empty_since > 0 ? s->empty_since : now) + s->p.idle_exit_seconds;
    double retries = pending_wait_until(s, now);
    if (retries > until)
        until = retries;
    *deadline = until;
    /* A queue that does not answer is not empty: that is the unreachable
     * exit's business. */
    return !s->p.follow && !s->last_failed && s->empty_since > 0 && now >= until;
}

/* Appends received messages to the chunk; false without memory (the
 * messages then come back after their visibility timeout). */
static bool chunk_take(pl_chunk *c, sqs_message_list *got)
{
    pl_sqs_chunk *q = pl_sqs_chunk_of(c);
    pl_msg *grown = q ? realloc(q->msgs, (q->n + got->n) * sizeof *grown) : NULL;
    if (!grown) {
        sqs_message_list_free(got);
        return false;
    }
    q->msgs = grown;
    for (size_t i = 0; i < got->n; i++) {
        memset(&q->msgs[q->n], 0, sizeof q->msgs[q->n]);
        q->msgs[q->n++].m = got->items[i];
    }
    c->nacks = q->n;
    free(got->items); /* the messages themselves now belong to the chunk */
    got->items = NULL;
    got->n = 0;
    return true;
}

static bool sqs_next_chunk(pl_ctx *x, void *self, pl_chunk *c)
{
    pl_sqs_source *s = self;
    s->x = x;
    while (!pl_cancelled(x) && !atomic_load(&x->fatal)) {
        if (s->p.max_messages > 0 && s->received >= s->p.max_messages)
            break;
        int want = s->p.chunk_size - (int)sqs_n(c);
        if (want > SQS_BATCH_MAX)
            want = SQS_BATCH_MAX;
        if (s->p.max_messages > 0 && s->p.max_messages - s->received < want)
            want = (int)(s->p.max_messages - s->received);
        if (want <= 0)
            break;
        double deadline = 0;
        if (sqs_n(c) == 0 && idle_over(s, &deadline)) {
            LOG_INFO(x->mode, "queue empty for %d s: finishing", s->p.idle_exit_seconds);
            break;
        }
        int wait = sqs_n(c) == 0 ? poll_wait(s, deadline) : 0;
        sqs_message_list got = {0};
        aws_result ar;
        double asked = cnp_now();
        /* A cancel ends the long poll at once, not after wait_seconds. */
        cnp_metrics_add(x->metrics, "canopy_sqs_requests_total", "receive_message", 1);
        if (sqs_receive(s->aws, s->p.queue_url, want, wait, s->p.visibility_timeout,
                        x->hooks ? x->hooks->cancel : NULL, &got, &ar) != CNP_OK) {
            if (pl_cancelled(x))
                break;
            s->last_failed = true;
            double failing = cnp_now() - s->last_ok;
            LOG_ERROR(x->mode, "ReceiveMessage: %s (no answer for %.0f s; giving up after %d s)",
                      ar.err.msg, failing, s->p.unreachable_exit_seconds);
            if (failing >= s->p.unreachable_exit_seconds) {
                LOG_ERROR(x->mode, "%s: unreachable for %.0f s ([batch] "
                                   "unreachable_exit_seconds): giving up",
                          s->p.queue_url, failing);
                pl_set_fatal(x);
                break;
            }
            sleep(failing < 10 ? 1 : 5);
            if (sqs_n(c))
                break;
            continue;
        }
        s->last_ok = cnp_now();
        s->last_failed = false;
        if (got.n == 0) {
            if (s->empty_since == 0)
                s->empty_since = asked;
            sqs_message_list_free(&got);
            if (sqs_n(c))
                break;
            continue;
        }
        size_t n = got.n;
        if (!chunk_take(c, &got))
            break;
        s->received += (int64_t)n;
        s->empty_since = 0;
        if ((int)sqs_n(c) >= s->p.chunk_size)
            break;
    }
    if (pl_cancelled(x) && sqs_n(c) == 0)
        LOG_INFO(x->mode, "signal received: finishing the chunks in flight");
    if (sqs_n(c) == 0)
        return false;
    chunk_parse(x, c);
    registry_add(s, c);
    return true;
}

/* ---- fetch and acknowledge ------------------------------------------------ */

static void sqs_fetch(pl_ctx *x, void *self, pl_chunk *c)
{
    pl_sqs_source *s = self;
    pl_fetch_s3(x, s->fetch_batch, c);
}

/* Deletes the handles, 10 per call; deleted[i] tells which succeeded. */
static void delete_messages(pl_ctx *x, pl_sqs_source *s, const char **handles, size_t n,
                            bool *deleted)
{
    for (size_t off = 0; off < n; off += SQS_BATCH_MAX) {
        size_t k = n - off < SQS_BATCH_MAX ? n - off : SQS_BATCH_MAX;
        sqs_entry_result er[SQS_BATCH_MAX];
        aws_result ar;
        cnp_metrics_add(x->metrics, "canopy_sqs_requests_total", "delete_message_batch", 1);
        if (sqs_delete_batch(s->aws, s->p.queue_url, handles + off, k, er, &ar) != CNP_OK) {
            LOG_WARN(x->mode, "DeleteMessageBatch: %s (the messages will be redelivered; "
                              "their results are already committed)", ar.err.msg);
            continue;
        }
        for (size_t j = 0; j < k; j++) {
            deleted[off + j] = er[j].status == CNP_OK;
            if (!deleted[off + j])
                LOG_WARN(x->mode, "delete of a message failed: %s %s", er[j].code,
                         er[j].message);
        }
    }
}

/* Moves the items of message m to their last state. */
static void settle_items(pl_chunk *c, size_t m, bool deleted, bool deletable)
{
    for (size_t i = 0; i < c->nitems; i++) {
        pl_item *it = &c->items[i];
        if (it->ack != (int)m || it->state != ITEM_COMMITTED)
            continue;
        if (deleted)
            item_advance(it, ITEM_ACKNOWLEDGED);
        else if (deletable)
            item_fail(it, CNP_ERR_TRANSIENT, "%s: committed, but its message could not be "
                                             "deleted: it will be redelivered", it->name);
        else
            item_fail(it, CNP_ERR_TRANSIENT, "%s: another image of its message failed; "
                                             "retried with it", it->name);
    }
}

static void sqs_acknowledge(pl_ctx *x, void *self, pl_chunk *c, bool committed)
{
    pl_sqs_source *s = self;
    size_t cap = sqs_n(c) ? sqs_n(c) : 1;
    const char **del = calloc(cap, sizeof *del), **retry = calloc(cap, sizeof *retry);
    size_t *del_m = calloc(cap, sizeof *del_m);
    int *timeouts = calloc(cap, sizeof *timeouts);
    bool *deleted = calloc(cap, sizeof *deleted);
    bool *deletable = calloc(cap, sizeof *deletable);
    size_t ndel = 0, nretry = 0;
    /* Out of the heartbeat's reach before any backoff is set. */
    registry_remove(s, c);
    if (!del || !retry || !del_m || !timeouts || !deleted || !deletable) {
        LOG_ERROR(x->mode, "chunk %zu: out of memory acknowledging; its messages will be "
                           "redelivered", c->seq);
        for (size_t m = 0; m < sqs_n(c); m++)
            settle_items(c, m, false, true);
        goto out;
    }
    for (size_t m = 0; m < sqs_n(c); m++) {
        const sqs_message *msg = &SQ(c)->msgs[m].m;
        deletable[m] = pl_message_deletable(c, m, committed);
        if (deletable[m]) {
            del_m[ndel] = m;
            del[ndel++] = msg->receipt_handle;
        } else {
            retry[nretry] = msg->receipt_handle;
            timeouts[nretry] = pl_backoff_seconds(msg->receive_count, cnp_rand_u32());
            pending_add(s, msg->message_id, cnp_now() + timeouts[nretry]);
            nretry++;
        }
    }
    delete_messages(x, s, del, ndel, deleted);
    for (size_t k = 0; k < ndel; k++) {
        size_t m = del_m[k];
        if (deleted[k])
            pending_remove(s, SQ(c)->msgs[m].m.message_id);
        else
            pending_add(s, SQ(c)->msgs[m].m.message_id, cnp_now() + s->p.visibility_timeout);
        settle_items(c, m, deleted[k], true);
    }
    for (size_t m = 0; m < sqs_n(c); m++)
        if (!deletable[m])
            settle_items(c, m, false, false);
    if (nretry) {
        LOG_INFO(x->mode, "chunk %zu: %zu message(s) left for redelivery with backoff", c->seq,
                 nretry);
        change_visibility(s, retry, timeouts, nretry);
    }
out:
    free(del);
    free(retry);
    free(del_m);
    free(timeouts);
    free(deleted);
    free(deletable);
}

const pl_source_ops pl_source_sqs_ops = {
    .next_chunk = sqs_next_chunk,
    .fetch = sqs_fetch,
    .acknowledge = sqs_acknowledge,
};

/* ---- life cycle ----------------------------------------------------------- */

cnp_status pl_sqs_source_create(aws_client *aws, const pl_sqs_params *p, pl_sqs_source **out,
                                cnp_err *err)
{
    pl_sqs_source *s = calloc(1, sizeof *s);
    *out = NULL;
    if (!s) {
        cnp_err_set(err, "out of memory");
        return CNP_ERR_NOMEM;
    }
    cnp_status result = aws_batch_create(aws, &s->fetch_batch, err);
    if (result != CNP_OK) {
        free(s);
        return result;
    }
    s->aws = aws;
    s->p = *p;
    s->last_ok = cnp_now();
    pthread_mutex_init(&s->reg_lock, NULL);
    pthread_mutex_init(&s->hb_lock, NULL);
    pthread_mutex_init(&s->pend_lock, NULL);
    *out = s;
    return CNP_OK;
}

bool pl_sqs_source_start(pl_sqs_source *s)
{
    s->hb_started = pthread_create(&s->hb, NULL, heartbeat, s) == 0;
    return s->hb_started;
}

void pl_sqs_source_free(pl_sqs_source *s)
{
    if (!s)
        return;
    if (s->hb_started) {
        atomic_store(&s->hb_stop, true);
        pthread_join(s->hb, NULL);
    }
    aws_batch_free(s->fetch_batch);
    for (size_t i = 0; i < s->npend; i++)
        free(s->pend[i].message_id);
    free(s->pend);
    pthread_mutex_destroy(&s->reg_lock);
    pthread_mutex_destroy(&s->hb_lock);
    pthread_mutex_destroy(&s->pend_lock);
    free(s);
}
