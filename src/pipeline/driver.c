/* The batch driver: sources (SQS, S3 listing), the staged pipeline, the
 * acknowledgement rules, the heartbeat and progress. See canopy/driver.h. */
#include <math.h>
#include <pthread.h>
#include <signal.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <unistd.h>

#include <cjson/cJSON.h>
#include <openssl/evp.h>

#include "canopy/driver.h"
#include "canopy/log.h"
#include "canopy/message.h"
#include "canopy/pipeline.h"
#include "canopy/pool.h"
#include "canopy/s3.h"
#include "canopy/sqs.h"
#include "canopy/store.h"
#include "cli/commands.h"

/* ---- signals ----------------------------------------------------------- */

static volatile sig_atomic_t g_stop;

static void on_signal(int sig)
{
    if (g_stop) {
        static const char msg[] = "canopy: second signal, exiting without acknowledging\n";
        ssize_t ignored = write(2, msg, sizeof msg - 1);
        (void)ignored;
        _exit(CNP_EXIT_FATAL);
    }
    g_stop = sig;
}

void drv_signals_install(void)
{
    struct sigaction sa;
    memset(&sa, 0, sizeof sa);
    sa.sa_handler = on_signal;
    sigemptyset(&sa.sa_mask);
    sigaction(SIGTERM, &sa, NULL);
    sigaction(SIGINT, &sa, NULL);
    signal(SIGPIPE, SIG_IGN);
}

bool drv_stop_requested(void)
{
    return g_stop != 0;
}

/* ---- chunks and work items --------------------------------------------- */

enum work_state { WS_PENDING = 0, WS_OK, WS_PERMANENT, WS_TRANSIENT };

struct work {
    int msg;                /* index into chunk->msgs, -1 without a message */
    const msg_item *item;   /* what the message said (NULL for reprocess) */
    char *bucket, *key;     /* owned */
    char *list_etag;        /* reprocess: etag from the listing */
    s3_object obj;
    cnp_image img;
    pipe_result res;
    pipe_outputs outs;
    char *out_key[3];       /* mask, overlay, trees */
    s3_put_result put[3];
    enum work_state state;
    char error[CNP_ERR_MSG_MAX];
    double t_download, t_decode, t_device, t_encode, t_upload; /* ms */
    char image_id[40];
    pg_tree *trees;
};

struct cmsg {
    sqs_message m;
    msg_parsed parsed;
};

struct chunk {
    size_t seq;
    struct cmsg *msgs;
    size_t nmsgs;
    struct work *works;
    size_t nworks;
    double last_extend;
    struct chunk *next;     /* stage queue link */
    struct chunk *reg_next; /* in-flight registry link */
};

struct queue {
    pthread_mutex_t lock;
    pthread_cond_t cond;
    struct chunk *head, *tail;
    bool closed;
};

static void queue_init(struct queue *q)
{
    pthread_mutex_init(&q->lock, NULL);
    pthread_cond_init(&q->cond, NULL);
    q->head = q->tail = NULL;
    q->closed = false;
}

static void queue_push(struct queue *q, struct chunk *c)
{
    pthread_mutex_lock(&q->lock);
    c->next = NULL;
    if (q->tail)
        q->tail->next = c;
    else
        q->head = c;
    q->tail = c;
    pthread_cond_signal(&q->cond);
    pthread_mutex_unlock(&q->lock);
}

static void queue_close(struct queue *q)
{
    pthread_mutex_lock(&q->lock);
    q->closed = true;
    pthread_cond_broadcast(&q->cond);
    pthread_mutex_unlock(&q->lock);
}

/* Blocks until a chunk arrives; NULL once the queue is closed and empty. */
static struct chunk *queue_pop(struct queue *q)
{
    pthread_mutex_lock(&q->lock);
    while (!q->head && !q->closed)
        pthread_cond_wait(&q->cond, &q->lock);
    struct chunk *c = q->head;
    if (c) {
        q->head = c->next;
        if (!q->head)
            q->tail = NULL;
    }
    pthread_mutex_unlock(&q->lock);
    return c;
}

struct progress {
    atomic_llong done, failed, retried, trees, kpix;
    atomic_llong total; /* -1: unknown */
    double start;
};

struct drv {
    const cnp_config *cfg;
    const drv_options *opt;
    const char *mode;
    aws_client *aws;
    pg_store *db;
    det_model *model;
    pipe_device *dev;
    cnp_pool *pool;
    const char *model_version;
    int64_t run_id;
    bool has_queue; /* messages to acknowledge */
    bool fifo_out;
    struct queue q_fetch, q_decode, q_device, q_output;
    pthread_mutex_t slots_lock;
    pthread_cond_t slots_cond;
    int inflight;
    pthread_mutex_t reg_lock;
    struct chunk *registry;
    atomic_bool finished;
    atomic_bool fatal;
    struct progress prog;
    size_t next_seq;
};

static void work_fail(struct work *w, cnp_status st, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));

/* Records a failure; transient ones leave the message for redelivery. */
static void work_fail(struct work *w, cnp_status st, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(w->error, sizeof w->error, fmt, ap);
    va_end(ap);
    switch (st) {
    case CNP_ERR_INVALID:
    case CNP_ERR_FORMAT:
    case CNP_ERR_LIMIT:
    case CNP_ERR_NOTFOUND:
    case CNP_ERR_REMOTE:
        w->state = WS_PERMANENT;
        break;
    default: /* network, credentials, device, database, memory: try again later */
        w->state = WS_TRANSIENT;
        break;
    }
}

static void work_free(struct work *w)
{
    free(w->bucket);
    free(w->key);
    free(w->list_etag);
    s3_object_free(&w->obj);
    cnp_image_free(&w->img);
    pipe_result_free(&w->res);
    pipe_outputs_free(&w->outs);
    for (int i = 0; i < 3; i++)
        free(w->out_key[i]);
    free(w->trees);
}

static void chunk_free(struct chunk *c)
{
    if (!c)
        return;
    for (size_t i = 0; i < c->nworks; i++)
        work_free(&c->works[i]);
    free(c->works);
    for (size_t i = 0; i < c->nmsgs; i++)
        msg_parsed_free(&c->msgs[i].parsed);
    if (c->nmsgs) {
        /* Hand the messages back to the list type that knows how to free them. */
        sqs_message *ms = malloc(c->nmsgs * sizeof *ms);
        if (ms) {
            for (size_t i = 0; i < c->nmsgs; i++)
                ms[i] = c->msgs[i].m;
            sqs_message_list l = {.items = ms, .n = c->nmsgs};
            sqs_message_list_free(&l);
        }
    }
    free(c->msgs);
    free(c);
}

static struct work *chunk_add_work(struct chunk *c, int msg, const char *bucket, const char *key)
{
    struct work *grown = realloc(c->works, (c->nworks + 1) * sizeof *grown);
    if (!grown)
        return NULL;
    c->works = grown;
    struct work *w = &grown[c->nworks];
    memset(w, 0, sizeof *w);
    w->msg = msg;
    w->bucket = strdup(bucket);
    w->key = strdup(key);
    if (!w->bucket || !w->key) {
        free(w->bucket);
        free(w->key);
        return NULL;
    }
    c->nworks++;
    return w;
}

/* ---- slots (back-pressure) and the in-flight registry ------------------ */

static bool slot_acquire(struct drv *d)
{
    pthread_mutex_lock(&d->slots_lock);
    while (d->inflight >= d->cfg->batch.max_chunks_in_flight && !atomic_load(&d->fatal))
        pthread_cond_wait(&d->slots_cond, &d->slots_lock);
    bool ok = !atomic_load(&d->fatal);
    if (ok)
        d->inflight++;
    pthread_mutex_unlock(&d->slots_lock);
    return ok;
}

static void slot_release(struct drv *d)
{
    pthread_mutex_lock(&d->slots_lock);
    d->inflight--;
    pthread_cond_broadcast(&d->slots_cond);
    pthread_mutex_unlock(&d->slots_lock);
}

static void registry_add(struct drv *d, struct chunk *c)
{
    pthread_mutex_lock(&d->reg_lock);
    c->last_extend = cnp_now();
    c->reg_next = d->registry;
    d->registry = c;
    pthread_mutex_unlock(&d->reg_lock);
}

static void registry_remove(struct drv *d, struct chunk *c)
{
    pthread_mutex_lock(&d->reg_lock);
    for (struct chunk **p = &d->registry; *p; p = &(*p)->reg_next) {
        if (*p == c) {
            *p = c->reg_next;
            break;
        }
    }
    pthread_mutex_unlock(&d->reg_lock);
}

/* Sets the visibility of messages (handles) to timeouts, 10 per call. */
static void change_visibility(struct drv *d, const char **handles, const int *timeouts, size_t n)
{
    for (size_t off = 0; off < n; off += SQS_BATCH_MAX) {
        size_t k = n - off < SQS_BATCH_MAX ? n - off : SQS_BATCH_MAX;
        sqs_entry_result er[SQS_BATCH_MAX];
        aws_result ar;
        if (sqs_change_visibility_batch(d->aws, d->cfg->input.queue_url, handles + off,
                                        timeouts + off, k, er, &ar) != CNP_OK)
            LOG_WARN("drain", "ChangeMessageVisibilityBatch: %s", ar.err.msg);
    }
}

/* Extends the visibility of every message of chunks in flight whose last
 * extension is older than a third of the visibility timeout. */
static void *heartbeat(void *arg)
{
    struct drv *d = arg;
    int vis = d->cfg->batch.visibility_timeout;
    double every = vis / 3.0 < 1.0 ? 1.0 : vis / 3.0;
    while (!atomic_load(&d->finished)) {
        usleep(250000);
        const char *handles[4096];
        int timeouts[4096];
        char *owned[4096];
        size_t n = 0;
        double now = cnp_now();
        pthread_mutex_lock(&d->reg_lock);
        for (struct chunk *c = d->registry; c; c = c->reg_next) {
            if (now - c->last_extend < every)
                continue;
            c->last_extend = now;
            for (size_t i = 0; i < c->nmsgs && n < 4096; i++) {
                owned[n] = strdup(c->msgs[i].m.receipt_handle);
                if (!owned[n])
                    continue;
                handles[n] = owned[n];
                timeouts[n] = vis;
                n++;
            }
        }
        pthread_mutex_unlock(&d->reg_lock);
        if (n) {
            LOG_DEBUG("drain", "heartbeat: extending %zu messages by %d s", n, vis);
            change_visibility(d, handles, timeouts, n);
        }
        for (size_t i = 0; i < n; i++)
            free(owned[i]);
    }
    return NULL;
}

/* ---- progress ---------------------------------------------------------- */

static void progress_line(struct drv *d, char *out, size_t len)
{
    struct progress *p = &d->prog;
    double secs = cnp_now() - p->start;
    long long done = atomic_load(&p->done), failed = atomic_load(&p->failed);
    long long total = atomic_load(&p->total);
    double rate = secs > 0 ? (double)(done + failed) / secs : 0.0;
    double mpix = (double)atomic_load(&p->kpix) / 1e3;
    char eta[32] = "";
    if (total > 0 && rate > 0) {
        double left = (double)(total - done - failed) / rate;
        snprintf(eta, sizeof eta, ", ETA %.0f s", left > 0 ? left : 0.0);
    }
    char totals[32] = "";
    if (total >= 0)
        snprintf(totals, sizeof totals, "/%lld", total);
    snprintf(out, len, "%lld%s images, %.1f images/s, %.2f MPix/s, %lld trees, %lld failed, %lld retried%s",
             done + failed, totals, rate, secs > 0 ? mpix / secs : 0.0,
             (long long)atomic_load(&p->trees), failed, (long long)atomic_load(&p->retried), eta);
}

static void *progress_thread(void *arg)
{
    struct drv *d = arg;
    const char *mode = d->cfg->log.progress;
    bool tty = isatty(2) && !cnp_log_is_json();
    if (strcmp(mode, "off") == 0)
        return NULL;
    bool live = tty && (strcmp(mode, "auto") == 0 || strcmp(mode, "on") == 0);
    double last_log = cnp_now();
    while (!atomic_load(&d->finished)) {
        usleep(live ? 500000 : 250000);
        char line[256];
        if (live) {
            progress_line(d, line, sizeof line);
            fprintf(stderr, "\r\033[K%s", line);
            fflush(stderr);
        } else if (cnp_now() - last_log >= 10.0) {
            last_log = cnp_now();
            progress_line(d, line, sizeof line);
            LOG_INFO(d->mode, "progress: %s", line);
        }
    }
    if (live)
        fprintf(stderr, "\r\033[K");
    return NULL;
}

/* ---- stage: fetch ------------------------------------------------------ */

struct stage_ctx {
    struct drv *d;
    struct chunk *c;
};

static void decode_one(void *arg, size_t i)
{
    struct stage_ctx *x = arg;
    struct work *w = &x->c->works[i];
    if (w->state != WS_PENDING)
        return;
    char name[2048];
    snprintf(name, sizeof name, "s3://%s/%s", w->bucket, w->key);
    cnp_err err;
    double t0 = cnp_now();
    cnp_status st = img_png_decode(w->obj.body.data, w->obj.body.len, name,
                                   (uint64_t)x->d->cfg->limits.max_pixels, &w->img, &err);
    w->t_decode = (cnp_now() - t0) * 1e3;
    cnp_buf_free(&w->obj.body);
    if (st != CNP_OK)
        work_fail(w, st, "%s", err.msg);
}

static void stage_fetch_chunk(struct drv *d, aws_batch *batch, struct chunk *c)
{
    double t0 = cnp_now();
    size_t queued = 0;
    for (size_t i = 0; i < c->nworks; i++) {
        struct work *w = &c->works[i];
        if (w->state != WS_PENDING)
            continue;
        s3_batch_get(batch, w->bucket, w->key, d->cfg->input.max_object_bytes, &w->obj);
        queued++;
    }
    cnp_err err;
    if (queued && aws_batch_run(batch, &err) != CNP_OK) {
        for (size_t i = 0; i < c->nworks; i++)
            if (c->works[i].state == WS_PENDING)
                work_fail(&c->works[i], CNP_ERR_TRANSIENT, "download engine: %s", err.msg);
    }
    double ms = (cnp_now() - t0) * 1e3;
    for (size_t i = 0; i < c->nworks; i++) {
        struct work *w = &c->works[i];
        if (w->state != WS_PENDING)
            continue;
        w->t_download = ms;
        if (w->obj.result.status != CNP_OK)
            work_fail(w, w->obj.result.status, "%s", w->obj.result.err.msg);
    }
}

/* Each transferring stage owns one aws_batch. When it cannot be made the run
 * is marked fatal and the stage passes chunks on with their images failed
 * transiently, so nothing is acknowledged. */
static aws_batch *stage_batch(struct drv *d)
{
    aws_batch *batch = NULL;
    cnp_err err;
    if (aws_batch_create(d->aws, &batch, &err) != CNP_OK) {
        LOG_ERROR(d->mode, "%s", err.msg);
        atomic_store(&d->fatal, true);
        return NULL;
    }
    return batch;
}

static void *stage_fetch(void *arg)
{
    struct drv *d = arg;
    aws_batch *batch = stage_batch(d);
    struct chunk *c;
    while ((c = queue_pop(&d->q_fetch)) != NULL) {
        if (batch)
            stage_fetch_chunk(d, batch, c);
        else
            for (size_t i = 0; i < c->nworks; i++)
                if (c->works[i].state == WS_PENDING)
                    work_fail(&c->works[i], CNP_ERR_TRANSIENT, "no download engine");
        queue_push(&d->q_decode, c);
    }
    aws_batch_free(batch);
    queue_close(&d->q_decode);
    return NULL;
}

/* ---- stage: decode ----------------------------------------------------- */

/* Its own stage, so the next chunk downloads while this one decodes. */
static void *stage_decode(void *arg)
{
    struct drv *d = arg;
    struct chunk *c;
    while ((c = queue_pop(&d->q_decode)) != NULL) {
        struct stage_ctx x = {.d = d, .c = c};
        cnp_pool_for(d->pool, c->nworks, decode_one, &x);
        queue_push(&d->q_device, c);
    }
    queue_close(&d->q_device);
    return NULL;
}

/* ---- stage: device ----------------------------------------------------- */

static void *stage_device(void *arg)
{
    struct drv *d = arg;
    struct chunk *c;
    while ((c = queue_pop(&d->q_device)) != NULL) {
        for (size_t i = 0; i < c->nworks; i++) {
            struct work *w = &c->works[i];
            if (w->state != WS_PENDING)
                continue;
            cnp_err err;
            double t0 = cnp_now();
            cnp_status st = pipe_device_process(d->dev, &w->img, &w->res, &err);
            w->t_device = (cnp_now() - t0) * 1e3;
            if (st != CNP_OK)
                work_fail(w, st, "s3://%s/%s: %s", w->bucket, w->key, err.msg);
        }
        queue_push(&d->q_output, c);
    }
    queue_close(&d->q_output);
    return NULL;
}

/* ---- stage: output ----------------------------------------------------- */

static void encode_one(void *arg, size_t i)
{
    struct stage_ctx *e = arg;
    struct work *w = &e->c->works[i];
    if (w->state != WS_PENDING)
        return;
    cnp_err err;
    double t0 = cnp_now();
    cnp_status st = pipe_encode(e->d->cfg, &w->img, &w->res, w->key,
                                e->d->model ? e->d->model_version : NULL, &w->outs, &err);
    w->t_encode = (cnp_now() - t0) * 1e3;
    cnp_image_free(&w->img);
    free(w->res.mask);
    w->res.mask = NULL;
    if (st != CNP_OK)
        work_fail(w, st, "%s", err.msg);
}

/* Output key: [output] prefix + the input key without its extension + suffix,
 * so a/x.png and b/x.png do not collide. */
static char *output_key(const cnp_config *cfg, const char *key, const char *suffix)
{
    const char *slash = strrchr(key, '/');
    const char *dot = strrchr(key, '.');
    size_t stem = dot && (!slash || dot > slash + 1) ? (size_t)(dot - key) : strlen(key);
    size_t len = strlen(cfg->output.prefix) + stem + strlen(suffix) + 1;
    char *out = malloc(len);
    if (out)
        snprintf(out, len, "%s%.*s%s", cfg->output.prefix, (int)stem, key, suffix);
    return out;
}

/* Metadata values travel in HTTP headers: bytes outside printable ASCII (and
 * '%') are percent-encoded. */
static char *header_safe(const char *s)
{
    size_t len = strlen(s);
    char *out = malloc(3 * len + 1);
    if (!out)
        return NULL;
    size_t o = 0;
    for (size_t i = 0; i < len; i++) {
        unsigned char ch = (unsigned char)s[i];
        if (ch < 0x20 || ch > 0x7e || ch == '%') {
            snprintf(out + o, 4, "%%%02X", ch);
            o += 3;
        } else {
            out[o++] = (char)ch;
        }
    }
    out[o] = '\0';
    return out;
}

static void image_uuid(const char *bucket, const char *key, const char *etag, char out[40])
{
    unsigned char md[EVP_MAX_MD_SIZE];
    unsigned int len = 0;
    EVP_MD_CTX *h = EVP_MD_CTX_new();
    EVP_DigestInit_ex(h, EVP_sha256(), NULL);
    EVP_DigestUpdate(h, bucket, strlen(bucket) + 1);
    EVP_DigestUpdate(h, key, strlen(key) + 1);
    EVP_DigestUpdate(h, etag, strlen(etag) + 1);
    EVP_DigestFinal_ex(h, md, &len);
    EVP_MD_CTX_free(h);
    md[6] = (unsigned char)((md[6] & 0x0f) | 0x50); /* name-based, like a v5 UUID */
    md[8] = (unsigned char)((md[8] & 0x3f) | 0x80);
    snprintf(out, 40, "%02x%02x%02x%02x-%02x%02x-%02x%02x-%02x%02x-%02x%02x%02x%02x%02x%02x",
             md[0], md[1], md[2], md[3], md[4], md[5], md[6], md[7], md[8], md[9], md[10],
             md[11], md[12], md[13], md[14], md[15]);
}

static const char *work_etag(const struct work *w)
{
    if (w->obj.etag[0])
        return w->obj.etag;
    if (w->list_etag)
        return w->list_etag;
    return "";
}

static const char *meta_or_msg(const struct work *w, const char *from_msg, const char *meta)
{
    if (from_msg && from_msg[0])
        return from_msg;
    return aws_kvlist_get(&w->obj.metadata, meta);
}

static void upload_outputs(struct drv *d, aws_batch *batch, struct chunk *c)
{
    static const char *const suffix[3] = {".mask.png", ".overlay.png", ".trees.json"};
    static const char *const ctype[3] = {"image/png", "image/png", "application/json"};
    aws_kvlist *meta = calloc(c->nworks ? c->nworks : 1, sizeof *meta);
    double t0 = cnp_now();
    size_t queued = 0;
    for (size_t i = 0; i < c->nworks && meta; i++) {
        struct work *w = &c->works[i];
        if (w->state != WS_PENDING)
            continue;
        char *src = header_safe(w->key);
        bool ok = src && aws_kvlist_add(&meta[i], "source-key", src) == CNP_OK &&
                  aws_kvlist_add(&meta[i], "source-etag", work_etag(w)) == CNP_OK &&
                  aws_kvlist_add(&meta[i], "model-version", d->model_version) == CNP_OK;
        free(src);
        const cnp_buf *data[3] = {&w->outs.mask_png, &w->outs.overlay_png, &w->outs.trees_json};
        for (int k = 0; k < 3 && ok; k++) {
            if (data[k]->len == 0)
                continue;
            if (!(w->out_key[k] = output_key(d->cfg, w->key, suffix[k]))) {
                ok = false;
                break;
            }
            s3_put put = {.bucket = d->cfg->output.bucket, .key = w->out_key[k],
                          .data = data[k]->data, .len = data[k]->len,
                          .content_type = ctype[k], .metadata = &meta[i]};
            s3_batch_put(batch, &put, &w->put[k]);
            queued++;
        }
        if (!ok)
            work_fail(w, CNP_ERR_NOMEM, "out of memory preparing uploads");
    }
    cnp_err err;
    bool engine_ok = !queued || aws_batch_run(batch, &err) == CNP_OK;
    double ms = (cnp_now() - t0) * 1e3;
    for (size_t i = 0; i < c->nworks; i++) {
        struct work *w = &c->works[i];
        if (w->state != WS_PENDING)
            continue;
        w->t_upload = ms;
        if (!engine_ok) {
            work_fail(w, CNP_ERR_TRANSIENT, "upload engine: %s", err.msg);
            continue;
        }
        for (int k = 0; k < 3; k++) {
            if (w->out_key[k] && w->put[k].result.status != CNP_OK) {
                /* Our own bucket refusing a write is not the image's fault. */
                work_fail(w, CNP_ERR_TRANSIENT, "s3://%s/%s: %s", d->cfg->output.bucket,
                          w->out_key[k], w->put[k].result.err.msg);
                break;
            }
        }
        pipe_outputs_free(&w->outs);
    }
    for (size_t i = 0; meta && i < c->nworks; i++)
        aws_kvlist_free(&meta[i]);
    free(meta);
}

/* Builds the rows of the chunk: processed and permanently failed images. */
static pg_image_result *chunk_rows(struct drv *d, struct chunk *c, size_t *n)
{
    pg_image_result *rows = calloc(c->nworks ? c->nworks : 1, sizeof *rows);
    *n = 0;
    if (!rows)
        return NULL;
    for (size_t i = 0; i < c->nworks; i++) {
        struct work *w = &c->works[i];
        if (w->state == WS_TRANSIENT)
            continue;
        const msg_item *it = w->item;
        pg_image_result *r = &rows[(*n)++];
        pg_image_result_init(r);
        r->bucket = w->bucket;
        r->key = w->key;
        r->etag = work_etag(w);
        r->model_version = d->model_version;
        image_uuid(w->bucket, w->key, work_etag(w), w->image_id);
        r->image_id = it && it->image_id ? it->image_id : w->image_id;
        r->scan_id = meta_or_msg(w, it ? it->scan_id : NULL, "scan-id");
        r->address_id = meta_or_msg(w, it ? it->address_id : NULL, "address-id");
        if (it && it->tree_types) {
            r->tree_types = (const char *const *)it->tree_types;
            r->n_tree_types = it->n_tree_types;
        }
        r->download_ms = w->t_download;
        r->decode_ms = w->t_decode;
        if (w->state == WS_PERMANENT) {
            r->status = PG_IMAGE_FAILED;
            r->error = w->error;
            continue;
        }
        r->status = PG_IMAGE_OK;
        r->width = (int)w->res.width;
        r->height = (int)w->res.height;
        r->threshold = w->res.bin.threshold >= 0 ? (double)w->res.bin.threshold : NAN;
        r->canopy_cover = w->res.bin.canopy_cover;
        r->mask_key = w->out_key[0];
        r->overlay_key = w->out_key[1];
        r->trees_key = w->out_key[2];
        r->device_ms = w->t_device;
        r->encode_ms = w->t_encode;
        r->upload_ms = w->t_upload;
        if (w->res.ntrees) {
            w->trees = calloc(w->res.ntrees, sizeof *w->trees);
            if (w->trees) {
                for (size_t k = 0; k < w->res.ntrees; k++) {
                    w->trees[k].x = w->res.trees[k].x;
                    w->trees[k].y = w->res.trees[k].y;
                    w->trees[k].radius = w->res.trees[k].radius;
                    w->trees[k].score = w->res.trees[k].score;
                }
                r->trees = w->trees;
                r->n_trees = w->res.ntrees;
            }
        }
    }
    return rows;
}

static char *notification(struct drv *d, const struct work *w, const pg_image_result *r)
{
    cJSON *o = cJSON_CreateObject();
    cJSON_AddStringToObject(o, "image_id", r->image_id);
    cJSON_AddStringToObject(o, "bucket", w->bucket);
    cJSON_AddStringToObject(o, "key", w->key);
    cJSON_AddStringToObject(o, "etag", r->etag);
    cJSON_AddStringToObject(o, "model_version", d->model_version);
    cJSON_AddNumberToObject(o, "tree_count", (double)w->res.ntrees);
    cJSON_AddNumberToObject(o, "canopy_cover", round(w->res.bin.canopy_cover * 1e4) / 1e4);
    cJSON_AddStringToObject(o, "output_bucket", d->cfg->output.bucket);
    cJSON_AddStringToObject(o, "mask_key", w->out_key[0] ? w->out_key[0] : "");
    if (w->out_key[1])
        cJSON_AddStringToObject(o, "overlay_key", w->out_key[1]);
    else
        cJSON_AddNullToObject(o, "overlay_key");
    cJSON_AddStringToObject(o, "trees_key", w->out_key[2] ? w->out_key[2] : "");
    if (r->scan_id)
        cJSON_AddStringToObject(o, "scan_id", r->scan_id);
    if (r->address_id)
        cJSON_AddStringToObject(o, "address_id", r->address_id);
    char *text = cJSON_PrintUnformatted(o);
    cJSON_Delete(o);
    return text;
}

static void dedup_id(const struct drv *d, const struct work *w, const char *etag, char out[65])
{
    unsigned char md[EVP_MAX_MD_SIZE];
    unsigned int len = 0;
    EVP_MD_CTX *h = EVP_MD_CTX_new();
    EVP_DigestInit_ex(h, EVP_sha256(), NULL);
    const char *parts[] = {w->bucket, w->key, etag, d->model_version};
    for (int i = 0; i < 4; i++)
        EVP_DigestUpdate(h, parts[i], strlen(parts[i]) + 1);
    EVP_DigestFinal_ex(h, md, &len);
    EVP_MD_CTX_free(h);
    for (int i = 0; i < 32; i++)
        snprintf(out + 2 * i, 3, "%02x", md[i]);
}

/* Sends one notification per processed image; an image whose notification
 * could not be sent is marked transient so its message is redelivered. */
static void notify(struct drv *d, struct chunk *c, const pg_image_result *rows, size_t nrows)
{
    if (!d->cfg->output.queue_url[0])
        return;
    size_t cap = nrows ? nrows : 1;
    sqs_send_entry *entries = calloc(cap, sizeof *entries);
    char **bodies = calloc(cap, sizeof *bodies);
    char (*dedup)[65] = calloc(cap, sizeof *dedup);
    struct work **who = calloc(cap, sizeof *who);
    size_t n = 0;
    for (size_t i = 0, r = 0; entries && bodies && dedup && who && i < c->nworks; i++) {
        struct work *w = &c->works[i];
        if (w->state == WS_TRANSIENT)
            continue;
        const pg_image_result *row = &rows[r++];
        if (w->state != WS_PENDING)
            continue;
        if (!(bodies[n] = notification(d, w, row)))
            continue;
        entries[n].body = bodies[n];
        if (d->fifo_out) {
            dedup_id(d, w, row->etag, dedup[n]);
            entries[n].group_id = row->image_id;
            entries[n].dedup_id = dedup[n];
        }
        who[n++] = w;
    }
    for (size_t off = 0; off < n; off += SQS_BATCH_MAX) {
        size_t k = n - off < SQS_BATCH_MAX ? n - off : SQS_BATCH_MAX;
        sqs_entry_result er[SQS_BATCH_MAX];
        aws_result ar;
        cnp_status st = sqs_send_batch(d->aws, d->cfg->output.queue_url, entries + off, k, er, &ar);
        for (size_t j = 0; j < k; j++) {
            cnp_status est = st != CNP_OK ? st : er[j].status;
            if (est != CNP_OK)
                work_fail(who[off + j], CNP_ERR_TRANSIENT, "notification to %s: %s",
                          d->cfg->output.queue_url, st != CNP_OK ? ar.err.msg : er[j].message);
        }
    }
    for (size_t i = 0; bodies && i < n; i++)
        cJSON_free(bodies[i]);
    free(entries);
    free(bodies);
    free(dedup);
    free(who);
}

/* Backoff for a message that failed transiently: grows with its receive
 * count, capped at 15 minutes, with jitter. */
static int backoff_seconds(int receive_count)
{
    int shift = receive_count > 1 ? receive_count - 1 : 0;
    if (shift > 7)
        shift = 7;
    int s = 5 << shift;
    if (s > 900)
        s = 900;
    return s + rand() % 3;
}

/* Deletes the messages whose images all ended (processed or permanently
 * failed) and were committed; sets a backoff on the others. */
static void acknowledge(struct drv *d, struct chunk *c, bool committed)
{
    const char **del = calloc(c->nmsgs ? c->nmsgs : 1, sizeof *del);
    const char **retry = calloc(c->nmsgs ? c->nmsgs : 1, sizeof *retry);
    int *timeouts = calloc(c->nmsgs ? c->nmsgs : 1, sizeof *timeouts);
    size_t ndel = 0, nretry = 0;
    if (!del || !retry || !timeouts)
        goto out;
    for (size_t m = 0; m < c->nmsgs; m++) {
        bool transient = !committed;
        for (size_t i = 0; i < c->nworks && !transient; i++)
            if (c->works[i].msg == (int)m && c->works[i].state == WS_TRANSIENT)
                transient = true;
        if (transient) {
            retry[nretry] = c->msgs[m].m.receipt_handle;
            timeouts[nretry++] = backoff_seconds(c->msgs[m].m.receive_count);
        } else {
            del[ndel++] = c->msgs[m].m.receipt_handle;
        }
    }
    for (size_t off = 0; off < ndel; off += SQS_BATCH_MAX) {
        size_t k = ndel - off < SQS_BATCH_MAX ? ndel - off : SQS_BATCH_MAX;
        sqs_entry_result er[SQS_BATCH_MAX];
        aws_result ar;
        if (sqs_delete_batch(d->aws, d->cfg->input.queue_url, del + off, k, er, &ar) != CNP_OK) {
            LOG_WARN(d->mode, "DeleteMessageBatch: %s (the messages will be redelivered; "
                              "their results are already committed)", ar.err.msg);
            continue;
        }
        for (size_t j = 0; j < k; j++)
            if (er[j].status != CNP_OK)
                LOG_WARN(d->mode, "delete of a message failed: %s %s", er[j].code, er[j].message);
    }
    if (nretry) {
        LOG_INFO(d->mode, "chunk %zu: %zu message(s) left for redelivery with backoff", c->seq, nretry);
        change_visibility(d, retry, timeouts, nretry);
    }
out:
    free(del);
    free(retry);
    free(timeouts);
}

static void log_work(struct drv *d, const struct work *w)
{
    if (w->state == WS_PENDING)
        LOG_INFO(d->mode, "s3://%s/%s: %ux%u, threshold %d, cover %.1f%%, %zu trees", w->bucket,
                 w->key, w->res.width, w->res.height, w->res.bin.threshold,
                 w->res.bin.canopy_cover * 100.0, w->res.ntrees);
    else if (w->state == WS_PERMANENT)
        LOG_WARN(d->mode, "failed: %s", w->error);
    else
        LOG_WARN(d->mode, "will retry: %s", w->error);
}

static void stage_output_chunk(struct drv *d, aws_batch *batch, struct chunk *c)
{
    struct stage_ctx ectx = {.d = d, .c = c};
    cnp_pool_for(d->pool, c->nworks, encode_one, &ectx);
    upload_outputs(d, batch, c);
    size_t nrows = 0;
    pg_image_result *rows = chunk_rows(d, c, &nrows);
    cnp_err err;
    bool committed = rows && pg_chunk_commit(d->db, d->run_id, rows, nrows, &err) == CNP_OK;
    if (!rows)
        snprintf(err.msg, sizeof err.msg, "out of memory");
    if (committed) {
        notify(d, c, rows, nrows);
    } else {
        LOG_ERROR(d->mode, "chunk %zu: commit failed, nothing acknowledged: %s", c->seq, err.msg);
        for (size_t i = 0; i < c->nworks; i++)
            if (c->works[i].state != WS_TRANSIENT)
                work_fail(&c->works[i], CNP_ERR_TRANSIENT, "commit: %s", err.msg);
    }
    for (size_t i = 0; i < c->nworks; i++) {
        struct work *w = &c->works[i];
        log_work(d, w);
        if (w->state == WS_PENDING) {
            atomic_fetch_add(&d->prog.done, 1);
            atomic_fetch_add(&d->prog.trees, (long long)w->res.ntrees);
            atomic_fetch_add(&d->prog.kpix, (long long)((double)w->res.width * w->res.height / 1e3));
        } else if (w->state == WS_PERMANENT) {
            atomic_fetch_add(&d->prog.failed, 1);
        } else {
            atomic_fetch_add(&d->prog.retried, 1);
        }
    }
    free(rows);
    if (d->has_queue)
        acknowledge(d, c, committed);
}

static void *stage_output(void *arg)
{
    struct drv *d = arg;
    aws_batch *batch = stage_batch(d);
    struct chunk *c;
    while ((c = queue_pop(&d->q_output)) != NULL) {
        if (batch)
            stage_output_chunk(d, batch, c);
        registry_remove(d, c);
        chunk_free(c);
        slot_release(d);
    }
    aws_batch_free(batch);
    return NULL;
}

/* ---- set-up and the run ------------------------------------------------ */

static int drv_open(struct drv *d, const cnp_config *cfg, const drv_options *opt, const char *mode)
{
    cnp_err err;
    memset(d, 0, sizeof *d);
    d->cfg = cfg;
    d->opt = opt;
    d->mode = mode;
    atomic_store(&d->prog.total, -1);
    if (!cfg->output.bucket[0]) {
        fprintf(stderr, "canopy %s: [output] bucket is not set\n", mode);
        return CNP_EXIT_USAGE;
    }
    if (aws_client_create(cfg, &d->aws, &err) != CNP_OK)
        goto fatal;
    if (pg_store_open_config(&cfg->postgres, &d->db, &err) != CNP_OK)
        goto fatal;
    int applied = 0, version = 0;
    if (pg_store_migrate(d->db, &applied, &version, &err) != CNP_OK)
        goto fatal;
    if (applied)
        LOG_INFO(mode, "database schema migrated to version %d", version);
    if (pipe_model_load(cfg, &d->model, &err) != CNP_OK)
        goto fatal;
    d->model_version = d->model ? det_model_version(d->model) : "none";
    if (opt->dry_run) /* lists only: no device, no workers */
        return CNP_EXIT_OK;
    if (pipe_device_create(cfg, d->model, &d->dev, &err) != CNP_OK)
        goto fatal;
    if (cnp_pool_create(cfg->batch.threads, &d->pool, &err) != CNP_OK)
        goto fatal;
    size_t ql = strlen(cfg->output.queue_url);
    d->fifo_out = ql > 5 && strcmp(cfg->output.queue_url + ql - 5, ".fifo") == 0;
    LOG_INFO(mode, "%s, model %s, %d decode/encode threads", pipe_device_description(d->dev),
             d->model_version, cnp_pool_threads(d->pool));
    return CNP_EXIT_OK;
fatal:
    fprintf(stderr, "canopy %s: %s\n", mode, err.msg);
    return CNP_EXIT_FATAL;
}

static void drv_close(struct drv *d)
{
    cnp_pool_free(d->pool);
    pipe_device_free(d->dev);
    det_model_free(d->model);
    pg_store_free(d->db);
    aws_client_free(d->aws);
}

typedef void (*source_fn)(struct drv *d, void *arg);

/* Runs the stages around `source`, which pushes chunks into q_fetch. */
static int drv_run(struct drv *d, source_fn source, void *arg)
{
    pthread_t t_fetch, t_decode, t_device, t_output, t_heart, t_prog;
    char host[256] = "unknown";
    cnp_err err;
    gethostname(host, sizeof host - 1);
    if (pg_run_begin(d->db, d->mode, host, &d->run_id, &err) != CNP_OK) {
        fprintf(stderr, "canopy %s: %s\n", d->mode, err.msg);
        return CNP_EXIT_FATAL;
    }
    queue_init(&d->q_fetch);
    queue_init(&d->q_decode);
    queue_init(&d->q_device);
    queue_init(&d->q_output);
    pthread_mutex_init(&d->slots_lock, NULL);
    pthread_cond_init(&d->slots_cond, NULL);
    pthread_mutex_init(&d->reg_lock, NULL);
    d->prog.start = cnp_now();
    pthread_create(&t_fetch, NULL, stage_fetch, d);
    pthread_create(&t_decode, NULL, stage_decode, d);
    pthread_create(&t_device, NULL, stage_device, d);
    pthread_create(&t_output, NULL, stage_output, d);
    pthread_create(&t_heart, NULL, heartbeat, d);
    pthread_create(&t_prog, NULL, progress_thread, d);

    source(d, arg);

    queue_close(&d->q_fetch);
    pthread_join(t_fetch, NULL);
    pthread_join(t_decode, NULL);
    pthread_join(t_device, NULL);
    pthread_join(t_output, NULL);
    atomic_store(&d->finished, true);
    pthread_join(t_heart, NULL);
    pthread_join(t_prog, NULL);

    long long done = atomic_load(&d->prog.done), failed = atomic_load(&d->prog.failed);
    int rc = atomic_load(&d->fatal) ? CNP_EXIT_FATAL : failed ? CNP_EXIT_PARTIAL : CNP_EXIT_OK;
    pg_run_counts counts = {.images_ok = done, .images_failed = failed,
                            .trees = atomic_load(&d->prog.trees), .exit_code = rc};
    if (pg_run_finish(d->db, d->run_id, &counts, &err) != CNP_OK)
        LOG_WARN(d->mode, "recording the end of run %lld: %s", (long long)d->run_id, err.msg);
    char line[256];
    progress_line(d, line, sizeof line);
    printf("%s: run %lld finished in %.1f s: %s%s\n", d->mode, (long long)d->run_id,
           cnp_now() - d->prog.start, line, g_stop ? " (stopped by signal)" : "");
    fflush(stdout);
    return rc;
}

/* ---- source: SQS ------------------------------------------------------- */

static struct chunk *chunk_new(struct drv *d)
{
    struct chunk *c = calloc(1, sizeof *c);
    if (c)
        c->seq = ++d->next_seq;
    return c;
}

/* Turns the chunk's messages into work items. */
static void chunk_parse(struct drv *d, struct chunk *c)
{
    for (size_t m = 0; m < c->nmsgs; m++) {
        struct cmsg *cm = &c->msgs[m];
        if (msg_parse(cm->m.body ? cm->m.body : "", &cm->parsed) != CNP_OK) {
            cm->parsed.kind = MSG_INVALID;
            snprintf(cm->parsed.reason, sizeof cm->parsed.reason, "out of memory parsing");
        }
        if (cm->parsed.kind == MSG_IGNORE) {
            LOG_INFO(d->mode, "message %s: ignored (test event or no object created)",
                     cm->m.message_id);
            continue;
        }
        if (cm->parsed.kind == MSG_INVALID) {
            char key[256];
            snprintf(key, sizeof key, "sqs-message:%s", cm->m.message_id);
            struct work *w = chunk_add_work(c, (int)m, "", key);
            if (w)
                work_fail(w, CNP_ERR_INVALID, "message %s: %s", cm->m.message_id,
                          cm->parsed.reason);
            continue;
        }
        for (size_t i = 0; i < cm->parsed.n; i++) {
            const msg_item *it = &cm->parsed.items[i];
            struct work *w = chunk_add_work(c, (int)m, it->bucket, it->key);
            if (w)
                w->item = it;
        }
    }
}

static void source_sqs(struct drv *d, void *arg)
{
    (void)arg;
    const cnp_config *cfg = d->cfg;
    double last_msg = cnp_now();
    int64_t received = 0;
    int errors = 0;
    while (!g_stop && !atomic_load(&d->fatal)) {
        if (d->opt->max_messages > 0 && received >= d->opt->max_messages)
            break;
        if (!slot_acquire(d))
            break;
        struct chunk *c = chunk_new(d);
        bool idle_exit = false;
        while (c && !g_stop && (int)c->nmsgs < cfg->batch.size) {
            int want = cfg->batch.size - (int)c->nmsgs;
            if (want > SQS_BATCH_MAX)
                want = SQS_BATCH_MAX;
            if (d->opt->max_messages > 0 && d->opt->max_messages - received < want)
                want = (int)(d->opt->max_messages - received);
            if (want <= 0)
                break;
            /* Long-poll for the first messages of a chunk, but never past the
             * idle deadline; then short polls to fill it. */
            int wait = 0;
            if (c->nmsgs == 0) {
                wait = cfg->batch.wait_seconds;
                if (!d->opt->follow) {
                    double left = cfg->batch.idle_exit_seconds - (cnp_now() - last_msg);
                    if (left < wait)
                        wait = left < 1 ? (left > 0 ? 1 : 0) : (int)ceil(left);
                }
            }
            sqs_message_list got = {0};
            aws_result ar;
            /* A signal ends the long poll at once, not after wait_seconds. */
            if (sqs_receive(d->aws, cfg->input.queue_url, want, wait, cfg->batch.visibility_timeout,
                            &g_stop, &got, &ar) != CNP_OK) {
                if (g_stop)
                    break;
                LOG_ERROR(d->mode, "ReceiveMessage: %s", ar.err.msg);
                if (ar.status != CNP_ERR_TRANSIENT && ++errors >= 3) {
                    atomic_store(&d->fatal, true);
                    break;
                }
                sleep(errors < 5 ? 1 : 5);
                if (c->nmsgs)
                    break;
                continue;
            }
            errors = 0;
            if (got.n == 0) {
                sqs_message_list_free(&got);
                if (c->nmsgs)
                    break;
                if (!d->opt->follow && cnp_now() - last_msg >= cfg->batch.idle_exit_seconds) {
                    idle_exit = true;
                    break;
                }
                continue;
            }
            struct cmsg *grown = realloc(c->msgs, (c->nmsgs + got.n) * sizeof *grown);
            if (!grown) {
                /* Not taken: they come back after the visibility timeout. */
                sqs_message_list_free(&got);
                break;
            }
            c->msgs = grown;
            for (size_t i = 0; i < got.n; i++) {
                memset(&c->msgs[c->nmsgs], 0, sizeof c->msgs[c->nmsgs]);
                c->msgs[c->nmsgs++].m = got.items[i];
            }
            received += (int64_t)got.n;
            free(got.items); /* the messages themselves now belong to the chunk */
            last_msg = cnp_now();
        }
        if (!c || c->nmsgs == 0) {
            chunk_free(c);
            slot_release(d);
            if (idle_exit || !c) {
                if (idle_exit)
                    LOG_INFO(d->mode, "queue empty for %d s: finishing", cfg->batch.idle_exit_seconds);
                break;
            }
            continue;
        }
        chunk_parse(d, c);
        LOG_DEBUG(d->mode, "chunk %zu: %zu messages, %zu images", c->seq, c->nmsgs, c->nworks);
        registry_add(d, c);
        queue_push(&d->q_fetch, c);
    }
    if (g_stop)
        LOG_INFO(d->mode, "signal received: finishing the chunks in flight");
}

int drv_drain(const cnp_config *cfg, const drv_options *opt)
{
    struct drv d;
    if (!cfg->input.queue_url[0]) {
        fprintf(stderr, "canopy drain: [input] queue_url is not set\n");
        return CNP_EXIT_USAGE;
    }
    int rc = drv_open(&d, cfg, opt, "drain");
    if (rc == CNP_EXIT_OK) {
        d.has_queue = true;
        aws_kvlist attrs = {0};
        aws_result ar;
        if (sqs_queue_attributes(d.aws, cfg->input.queue_url, &attrs, &ar) == CNP_OK) {
            const char *v = aws_kvlist_get(&attrs, "ApproximateNumberOfMessages");
            if (v && !opt->follow)
                atomic_store(&d.prog.total, atoll(v));
        }
        aws_kvlist_free(&attrs);
        rc = drv_run(&d, source_sqs, NULL);
    }
    drv_close(&d);
    return rc;
}

/* ---- source: S3 listing ------------------------------------------------ */

struct listing {
    const char *bucket;
    s3_list_entry *items;
    size_t n;
};

static bool is_png_key(const char *key)
{
    size_t n = strlen(key);
    return n > 4 && strcasecmp(key + n - 4, ".png") == 0;
}

static void source_listing(struct drv *d, void *arg)
{
    struct listing *l = arg;
    size_t i = 0;
    while (i < l->n && !g_stop && !atomic_load(&d->fatal)) {
        if (!slot_acquire(d))
            break;
        struct chunk *c = chunk_new(d);
        if (!c) {
            slot_release(d);
            break;
        }
        for (; i < l->n && (int)c->nworks < d->cfg->batch.size; i++) {
            struct work *w = chunk_add_work(c, -1, l->bucket, l->items[i].key);
            if (w)
                w->list_etag = strdup(l->items[i].etag);
        }
        registry_add(d, c);
        queue_push(&d->q_fetch, c);
    }
    if (g_stop)
        LOG_INFO(d->mode, "signal received: finishing the chunks in flight");
}

/* Lists every .png under the prefix; keeps those not yet processed at the
 * same etag and model version (all with --force). */
static int list_pending(struct drv *d, const char *bucket, const char *prefix, struct listing *out,
                        size_t *skipped)
{
    cnp_err err;
    char *token = NULL;
    size_t cap = 0;
    *skipped = 0;
    memset(out, 0, sizeof *out);
    out->bucket = bucket;
    for (;;) {
        s3_list_page page;
        if (s3_list_objects(d->aws, bucket, prefix, NULL, token, 1000, &page, &err) != CNP_OK) {
            fprintf(stderr, "canopy reprocess: s3://%s/%s: %s\n", bucket, prefix, err.msg);
            free(token);
            return CNP_EXIT_FATAL;
        }
        free(token);
        token = page.next_token ? strdup(page.next_token) : NULL;
        pg_image_ref *refs = calloc(page.n ? page.n : 1, sizeof *refs);
        pg_seen *seen = calloc(page.n ? page.n : 1, sizeof *seen);
        size_t nref = 0;
        for (size_t i = 0; refs && seen && i < page.n; i++) {
            if (!is_png_key(page.entries[i].key))
                continue;
            refs[nref++] = (pg_image_ref){bucket, page.entries[i].key, page.entries[i].etag,
                                          d->model_version};
        }
        if (!refs || !seen || (nref && !d->opt->force &&
                               pg_images_seen(d->db, refs, nref, seen, &err) != CNP_OK)) {
            fprintf(stderr, "canopy reprocess: %s\n", refs && seen ? err.msg : "out of memory");
            free(refs);
            free(seen);
            s3_list_page_free(&page);
            free(token);
            return CNP_EXIT_FATAL;
        }
        for (size_t i = 0, r = 0; i < page.n; i++) {
            if (!is_png_key(page.entries[i].key))
                continue;
            bool skip = !d->opt->force && seen[r] == PG_SEEN_OK;
            r++;
            if (d->opt->dry_run)
                printf("%s s3://%s/%s\n", skip ? "skip   " : "process", bucket, page.entries[i].key);
            if (skip) {
                (*skipped)++;
                continue;
            }
            if (out->n == cap) {
                cap = cap ? 2 * cap : 256;
                s3_list_entry *grown = realloc(out->items, cap * sizeof *grown);
                if (!grown)
                    break;
                out->items = grown;
            }
            out->items[out->n] = page.entries[i];
            page.entries[i].key = NULL; /* moved */
            out->n++;
        }
        free(refs);
        free(seen);
        s3_list_page_free(&page);
        if (!token)
            break;
    }
    return CNP_EXIT_OK;
}

int drv_reprocess(const cnp_config *cfg, const char *bucket, const char *prefix,
                  const drv_options *opt)
{
    struct drv d;
    struct listing l = {0};
    size_t skipped = 0;
    int rc = drv_open(&d, cfg, opt, "reprocess");
    if (rc == CNP_EXIT_OK)
        rc = list_pending(&d, bucket, prefix, &l, &skipped);
    if (rc == CNP_EXIT_OK) {
        LOG_INFO("reprocess", "s3://%s/%s: %zu to process, %zu already processed at this "
                              "etag and model version%s",
                 bucket, prefix, l.n, skipped, opt->force ? " (--force)" : "");
        if (opt->dry_run) {
            printf("dry run: %zu to process, %zu to skip\n", l.n, skipped);
        } else {
            atomic_store(&d.prog.total, (long long)l.n);
            rc = drv_run(&d, source_listing, &l);
        }
    }
    for (size_t i = 0; i < l.n; i++)
        free(l.items[i].key);
    free(l.items);
    drv_close(&d);
    return rc;
}
