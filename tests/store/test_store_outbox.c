/* The notification outbox (issue 20, item 6): notifications are written in
 * the chunk's transaction (or not at all), a flush sends each pending row
 * once and deletes what was sent, a refused entry stays with its reason and
 * is the only one handed out again, and four workers flushing the same
 * queue at once never send a row twice. */
#include <pthread.h>
#include <string.h>
#include <unistd.h>

#include "store/pg_internal.h"
#include "store/pgtest.h"

#define QUEUE "http://sqs.test/123456789012/out"
enum { N_IMAGES = 12, N_MANY = 200, N_WORKERS = 4 };

typedef struct sender {
    pthread_mutex_t lock;
    int seen[N_MANY * 2 + 64]; /* sends per outbox id */
    int64_t max_id;
    int refuse_mod;            /* refuse ids with id % refuse_mod == 0; 0: none */
    size_t calls, largest;
    int sleep_us;
} sender;

static void record(void *user, const pg_outbox_msg *msgs, size_t n, bool *sent,
                   char (*why)[256])
{
    sender *s = user;
    if (s->sleep_us)
        usleep((useconds_t)s->sleep_us);
    pthread_mutex_lock(&s->lock);
    s->calls++;
    if (n > s->largest)
        s->largest = n;
    for (size_t i = 0; i < n; i++) {
        int64_t id = msgs[i].id;
        CHECK(id > 0 && id < (int64_t)(sizeof s->seen / sizeof s->seen[0]), "id %lld",
              (long long)id);
        if (s->refuse_mod && id % s->refuse_mod == 0) {
            snprintf(why[i], sizeof why[i], "Throttling: slow down (id %lld)", (long long)id);
            continue;
        }
        s->seen[id]++;
        sent[i] = true;
        if (id > s->max_id)
            s->max_id = id;
    }
    pthread_mutex_unlock(&s->lock);
}

static void results(pg_image_result *r, char keys[][48], char bodies[][96], size_t n)
{
    for (size_t i = 0; i < n; i++) {
        pg_image_result_init(&r[i]);
        snprintf(keys[i], 48, "tiles/t-%03zu.png", i);
        snprintf(bodies[i], 96, "{\"key\":\"%s\",\"n\":%zu}", keys[i], i);
        r[i].bucket = "in";
        r[i].key = keys[i];
        r[i].etag = "e1";
        r[i].model_version = "m1";
        r[i].status = PG_IMAGE_OK;
        r[i].width = r[i].height = 8;
        r[i].notify_queue = QUEUE;
        r[i].notify_body = bodies[i];
        if (i % 3 == 1) {
            r[i].notify_group = "group-1";
            r[i].notify_dedup = keys[i];
        }
    }
}

static PGconn *g_killer;

/* Terminates the store's backend right before COMMIT. */
static void hook_kill(void *user)
{
    char sql[96];
    snprintf(sql, sizeof sql, "SELECT pg_terminate_backend(%d)", PQbackendPID(user));
    PQclear(PQexec(g_killer, sql));
}

static void test_in_transaction(pg_store *s, PGconn *c)
{
    pg_image_result r[N_IMAGES];
    char keys[N_IMAGES][48], bodies[N_IMAGES][96];
    results(r, keys, bodies, N_IMAGES);
    /* A failed row has no notification; a duplicate version: the later wins. */
    r[4].status = PG_IMAGE_FAILED;
    r[4].error = "bad";
    r[4].notify_body = NULL;
    r[6].key = keys[5];
    cnp_err err = {{0}};
    CHECK(pg_chunk_commit(s, 0, r, N_IMAGES, &err) == CNP_OK, "commit: %s", err.msg);
    CHECK(pgt_int(c, "SELECT count(*) FROM notification_outbox") == N_IMAGES - 2,
          "outbox rows after the commit");
    char *dump = pgt_dump(c, "SELECT body, group_id, dedup_id, attempts FROM "
                             "notification_outbox WHERE body LIKE '%\"n\":_}'");
    CHECK(dump && strstr(dump, "\"n\":6}|<NULL>|<NULL>|0\n") && !strstr(dump, "\"n\":5}") &&
              !strstr(dump, "\"n\":4}"),
          "the later duplicate's notification, none for the failure: %s", dump);
    free(dump);
    dump = pgt_dump(c, "SELECT queue_url, group_id, dedup_id FROM notification_outbox "
                       "WHERE body LIKE '%t-001%'");
    CHECK(dump && !strcmp(dump, QUEUE "|group-1|tiles/t-001.png\n"), "FIFO ids: %s", dump);
    free(dump);

    /* The transaction is lost at COMMIT: neither images nor notifications. */
    long long images = pgt_int(c, "SELECT count(*) FROM images");
    for (size_t i = 0; i < N_IMAGES; i++)
        r[i].etag = "e2";
    pg_store_set_commit_hook(s, hook_kill, s->conn);
    CHECK(pg_chunk_commit(s, 0, r, N_IMAGES, &err) != CNP_OK, "commit survived its backend");
    pg_store_set_commit_hook(s, NULL, NULL);
    CHECK(pgt_int(c, "SELECT count(*) FROM images") == images, "images of the lost commit");
    CHECK(pgt_int(c, "SELECT count(*) FROM notification_outbox") == N_IMAGES - 2,
          "notifications of the lost commit");
    PQclear(PQexec(c, "DELETE FROM notification_outbox"));
}

static void test_refused_entries(pg_store *s, PGconn *c)
{
    pg_image_result r[N_IMAGES];
    char keys[N_IMAGES][48], bodies[N_IMAGES][96];
    results(r, keys, bodies, N_IMAGES);
    for (size_t i = 0; i < N_IMAGES; i++)
        r[i].etag = "e3";
    cnp_err err = {{0}};
    CHECK(pg_chunk_commit(s, 0, r, N_IMAGES, &err) == CNP_OK, "commit: %s", err.msg);
    long long first = pgt_int(c, "SELECT min(id) FROM notification_outbox");
    sender *snd = calloc(1, sizeof *snd);
    pthread_mutex_init(&snd->lock, NULL);
    snd->refuse_mod = 4;
    pg_outbox_counts n = {0, 0};
    CHECK(pg_outbox_flush(s, QUEUE, 10, record, snd, &n, &err) == CNP_OK, "flush: %s", err.msg);
    long long refused = 0;
    for (long long id = first; id < first + N_IMAGES; id++)
        refused += id % 4 == 0;
    CHECK(n.sent == N_IMAGES - (size_t)refused && n.failed == (size_t)refused,
          "sent %zu failed %zu, want %lld refused", n.sent, n.failed, refused);
    CHECK(snd->calls == 2 && snd->largest == 10, "%zu calls, largest %zu", snd->calls,
          snd->largest);
    CHECK(pgt_int(c, "SELECT count(*) FROM notification_outbox") == refused, "rows left");
    CHECK(pgt_int(c, "SELECT count(*) FROM notification_outbox WHERE attempts = 1 AND "
                     "last_error LIKE 'Throttling: slow down (id %' AND id % 4 = 0 AND "
                     "last_try_at IS NOT NULL") == refused,
          "refused rows keep their reason");
    /* Other queues' rows are not this flush's. */
    PQclear(PQexec(c, "INSERT INTO notification_outbox (queue_url, body) "
                      "VALUES ('http://other/q', 'x')"));
    /* Next flush: only the refused rows are handed out, and now taken. */
    snd->refuse_mod = 0;
    CHECK(pg_outbox_flush(s, QUEUE, 10, record, snd, &n, &err) == CNP_OK, "flush: %s", err.msg);
    CHECK(n.sent == (size_t)refused && n.failed == 0, "second flush sent %zu", n.sent);
    for (long long id = first; id < first + N_IMAGES; id++)
        CHECK(snd->seen[id] == 1, "id %lld sent %d times", id, snd->seen[id]);
    int64_t pending = -1;
    CHECK(pg_outbox_pending(s, QUEUE, &pending, &err) == CNP_OK && pending == 0,
          "pending %lld", (long long)pending);
    CHECK(pg_outbox_pending(s, NULL, &pending, &err) == CNP_OK && pending == 1,
          "pending everywhere %lld", (long long)pending);
    /* The queue refuses everything: one batch tried, the rest left for later. */
    PQclear(PQexec(c, "INSERT INTO notification_outbox (queue_url, body) "
                      "SELECT '" QUEUE "', 'down-' || g FROM generate_series(1, 35) g"));
    snd->refuse_mod = 1;
    size_t before = snd->calls;
    CHECK(pg_outbox_flush(s, QUEUE, 10, record, snd, &n, &err) == CNP_OK && n.sent == 0 &&
          n.failed == 10 && snd->calls == before + 1, "queue down: %zu sent, %zu failed, %zu "
          "calls", n.sent, n.failed, snd->calls - before);
    CHECK(pgt_int(c, "SELECT count(*) FROM notification_outbox WHERE queue_url = '" QUEUE
                     "' AND attempts = 1") == 10, "queue down: attempts counted");
    snd->refuse_mod = 0;
    CHECK(pg_outbox_flush(s, QUEUE, 10, record, snd, &n, &err) == CNP_OK && n.sent == 35,
          "queue back: %zu sent", n.sent);
    /* Nothing pending: nothing sent. */
    size_t calls = snd->calls;
    CHECK(pg_outbox_flush(s, QUEUE, 10, record, snd, &n, &err) == CNP_OK && n.sent == 0 &&
          snd->calls == calls, "an empty outbox sent something");
    PQclear(PQexec(c, "DELETE FROM notification_outbox"));
    pthread_mutex_destroy(&snd->lock);
    free(snd);
}

typedef struct worker {
    const char *conninfo;
    sender *snd;
    cnp_status st;
    pg_outbox_counts n;
} worker;

static void *flush_worker(void *arg)
{
    worker *w = arg;
    pg_store *s = NULL;
    cnp_err err = {{0}};
    w->st = pg_store_open(w->conninfo, &s, &err);
    if (w->st == CNP_OK)
        w->st = pg_outbox_flush(s, QUEUE, 10, record, w->snd, &w->n, &err);
    if (w->st != CNP_OK)
        fprintf(stderr, "worker: %s\n", err.msg);
    pg_store_free(s);
    return NULL;
}

static void test_workers(PGconn *c, const char *conninfo)
{
    PQclear(PQexec(c, "INSERT INTO notification_outbox (queue_url, body) "
                      "SELECT '" QUEUE "', 'many-' || g FROM generate_series(1, 200) g"));
    long long first = pgt_int(c, "SELECT min(id) FROM notification_outbox");
    CHECK_FATAL(first > 0 && first + N_MANY < (long long)(N_MANY * 2 + 64), "ids from %lld",
                first);
    sender *snd = calloc(1, sizeof *snd);
    pthread_mutex_init(&snd->lock, NULL);
    snd->sleep_us = 20000; /* a send takes a while: the workers overlap */
    worker w[N_WORKERS];
    for (int i = 0; i < N_WORKERS; i++)
        w[i] = (worker){.conninfo = conninfo, .snd = snd};
    int started = test_threads_run(flush_worker, w, sizeof w[0], N_WORKERS);
    size_t total = 0, busy = 0;
    for (int i = 0; i < started; i++) {
        CHECK(w[i].st == CNP_OK, "worker %d failed", i);
        total += w[i].n.sent;
        busy += w[i].n.sent > 0;
    }
    CHECK(total == N_MANY, "%zu sent in all", total);
    CHECK(busy >= 2, "only %zu worker(s) sent anything: no overlap", busy);
    for (long long id = first; id < first + N_MANY; id++)
        CHECK(snd->seen[id] == 1, "id %lld sent %d times", id, snd->seen[id]);
    CHECK(pgt_int(c, "SELECT count(*) FROM notification_outbox WHERE queue_url = '" QUEUE "'")
              == 0, "rows left after the workers");
    pthread_mutex_destroy(&snd->lock);
    free(snd);
}

int main(void)
{
    pgt_require_stack();
    const char *ci = pgt_db_create();
    pg_store *s = pgt_store_open(ci);
    PGconn *c = pgt_connect(ci);
    g_killer = pgt_connect(ci);
    test_in_transaction(s, c);
    test_refused_entries(s, c);
    test_workers(c, ci);
    PQfinish(g_killer);
    PQfinish(c);
    pg_store_free(s);
    return TEST_RESULT();
}
