/* The pipeline's pure logic: item state transitions, failure classes, the
 * acknowledgement decision, backoff, output names, the heartbeat's handle
 * collection (no cap), the pixel budget and the stage queues. */
#include <pthread.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "pipeline/sources.h"
#include "testutil.h"

static void test_transitions(void)
{
    /* The main line, one step at a time, ending acknowledged. */
    for (item_state s = ITEM_RECEIVED; s < ITEM_ACKNOWLEDGED; s++) {
        CHECK_MSG(item_transition_ok(s, s + 1), "%s -> next", item_state_name(s));
        if (s + 2 <= ITEM_ACKNOWLEDGED)
            CHECK_MSG(!item_transition_ok(s, s + 2), "%s skips a state", item_state_name(s));
        CHECK_MSG(!item_transition_ok(s + 1, s), "%s goes back", item_state_name(s + 1));
        CHECK(item_transition_ok(s, ITEM_FAILED_TRANSIENT));
    }
    /* A permanent failure only before the commit; it may turn transient when
     * its row could not be committed. */
    CHECK(item_transition_ok(ITEM_UPLOADED, ITEM_FAILED_PERMANENT));
    CHECK(!item_transition_ok(ITEM_COMMITTED, ITEM_FAILED_PERMANENT));
    CHECK(item_transition_ok(ITEM_FAILED_PERMANENT, ITEM_FAILED_TRANSIENT));
    CHECK(!item_transition_ok(ITEM_FAILED_PERMANENT, ITEM_COMMITTED));
    /* The ends are ends. */
    CHECK(!item_transition_ok(ITEM_ACKNOWLEDGED, ITEM_FAILED_TRANSIENT));
    CHECK(!item_transition_ok(ITEM_FAILED_TRANSIENT, ITEM_FAILED_PERMANENT));
    CHECK(!item_transition_ok(ITEM_FAILED_TRANSIENT, ITEM_ACKNOWLEDGED));
    CHECK(strcmp(item_state_name(ITEM_ACKNOWLEDGED), "acknowledged") == 0);
    CHECK(strcmp(item_state_name(ITEM_FAILED_PERMANENT), "failed-permanent") == 0);
}

static void test_fail_classes(void)
{
    cnp_status permanent[] = {CNP_ERR_INVALID, CNP_ERR_FORMAT, CNP_ERR_LIMIT, CNP_ERR_NOTFOUND,
                              CNP_ERR_REMOTE};
    cnp_status transient[] = {CNP_ERR_NOMEM, CNP_ERR_TRANSIENT, CNP_ERR_OPENCL, CNP_ERR_AUTH,
                              CNP_ERR_IO, CNP_ERR_INTERNAL};
    for (size_t i = 0; i < sizeof permanent / sizeof *permanent; i++)
        CHECK(item_fail_state(permanent[i]) == ITEM_FAILED_PERMANENT);
    for (size_t i = 0; i < sizeof transient / sizeof *transient; i++)
        CHECK(item_fail_state(transient[i]) == ITEM_FAILED_TRANSIENT);

    pl_item it = {.state = ITEM_DECODED, .name = "x"};
    item_fail(&it, CNP_ERR_FORMAT, "bad %d", 1);
    CHECK(it.state == ITEM_FAILED_PERMANENT && strcmp(it.error, "bad 1") == 0);
    item_fail(&it, CNP_ERR_TRANSIENT, "commit: down");
    CHECK(it.state == ITEM_FAILED_TRANSIENT && strcmp(it.error, "commit: down") == 0);
    item_fail(&it, CNP_ERR_FORMAT, "later");
    CHECK(it.state == ITEM_FAILED_TRANSIENT && strcmp(it.error, "commit: down") == 0);
    /* A permanent reason after the commit cannot undo it: transient. */
    pl_item done = {.state = ITEM_COMMITTED, .name = "y"};
    item_fail(&done, CNP_ERR_FORMAT, "late");
    CHECK(done.state == ITEM_FAILED_TRANSIENT);
}

/* The defect this guards: an item that never reached the end (an upload
 * skipped for lack of memory) must keep its message. */
static void test_deletable(void)
{
    pl_chunk c = {0};
    pl_item items[4] = {
        {.ack = 0, .state = ITEM_COMMITTED},
        {.ack = 0, .state = ITEM_FAILED_PERMANENT},
        {.ack = 1, .state = ITEM_COMMITTED},
        {.ack = 1, .state = ITEM_ENCODED}, /* never uploaded */
    };
    c.items = items;
    c.nitems = 4;
    c.nacks = 3; /* message 2 has no items (ignored event) */
    CHECK(pl_message_deletable(&c, 0, true));
    CHECK(!pl_message_deletable(&c, 1, true));
    CHECK(pl_message_deletable(&c, 2, true));
    CHECK(!pl_message_deletable(&c, 0, false));
    items[3].state = ITEM_FAILED_TRANSIENT;
    CHECK(!pl_message_deletable(&c, 1, true));
}

static void test_backoff(void)
{
    CHECK(pl_backoff_seconds(5, 0, 0) == 5);
    CHECK(pl_backoff_seconds(5, 1, 0) == 5);
    CHECK(pl_backoff_seconds(5, 2, 0) == 10);
    CHECK(pl_backoff_seconds(5, 3, 2) == 22);
    CHECK(pl_backoff_seconds(5, 8, 0) == 640);
    /* The documented cap is reached, not stopped short of at 640 s. */
    CHECK(pl_backoff_seconds(5, 9, 0) == 900);
    CHECK(pl_backoff_seconds(5, 100, 0) == 900);
    CHECK(pl_backoff_seconds(5, 1 << 30, 2) == 902);
    /* A configured base: 1, 2, 4, 8 s for the first receives. */
    CHECK(pl_backoff_seconds(1, 1, 0) == 1);
    CHECK(pl_backoff_seconds(1, 4, 0) == 8);
    CHECK(pl_backoff_seconds(1, 100, 1) == 901);
    CHECK(pl_backoff_seconds(900, 3, 0) == 900);
    for (unsigned j = 0; j < 10; j++) {
        int s = pl_backoff_seconds(5, 1, j);
        CHECK(s >= 5 && s <= 7);
    }
}

static void check_stem(const char *prefix, const char *key, const char *want)
{
    char *got = pl_output_stem(prefix, key);
    CHECK_MSG(got && strcmp(got, want) == 0, "stem(%s, %s) = %s, want %s", prefix, key,
              got ? got : "(null)", want);
    free(got);
}

static void test_names(void)
{
    check_stem("out/", "a/x.png", "out/a/x");
    check_stem("", "x.png", "x");
    check_stem("p/", "x", "p/x");
    check_stem("", "a.b/c", "a.b/c");
    check_stem("", "a/.hidden", "a/.hidden");
    check_stem("", ".png", ".png");
    check_stem("", "x.tar.gz", "x.tar");
    char *h = pl_header_safe("a b%\xc3\xa9");
    CHECK(h && strcmp(h, "a b%25%C3%A9") == 0);
    free(h);
    char u1[40], u2[40], u3[40];
    pl_image_uuid("b", "k", "e", u1);
    pl_image_uuid("b", "k", "e", u2);
    pl_image_uuid("b", "k", "f", u3);
    CHECK(strcmp(u1, u2) == 0 && strcmp(u1, u3) != 0 && strlen(u1) == 36 && u1[14] == '5');
}

/* More handles than the old fixed 4096 array held: every one is extended;
 * only the entries that succeeded count as extended, the others are due
 * again at once; collected chunks are busy until settled. */
static void test_heartbeat_collect(void)
{
    enum { CHUNKS = 3, PER = 2000 };
    pl_chunk c[CHUNKS];
#define M(k) (((pl_sqs_chunk *)c[k].src_state)->msgs)
    memset(c, 0, sizeof c);
    for (int k = 0; k < CHUNKS; k++) {
        pl_sqs_chunk *q = pl_sqs_chunk_of(&c[k]);
        CHECK_FATAL(q != NULL);
        q->msgs = calloc(PER, sizeof *q->msgs);
        for (int i = 0; i < PER; i++) {
            q->msgs[i].m.receipt_handle = (char *)"h";
            q->msgs[i].extended_at = k == 1 ? 95 : 0; /* chunk 1: 5 s ago, not due */
        }
        q->n = PER;
        c[k].reg_next = k + 1 < CHUNKS ? &c[k + 1] : NULL;
    }
    pl_hb_entry *e = NULL;
    size_t n = pl_heartbeat_collect(&c[0], 100.0, 10.0, &e);
    CHECK_MSG(n == 2 * PER, "collected %zu", n);
    CHECK(c[0].hb_busy == PER && c[1].hb_busy == 0 && c[2].hb_busy == PER);
    /* Nothing counts as extended before its answer. */
    CHECK(M(0)[0].extended_at == 0);
    bool *ok = calloc(n, sizeof *ok);
    for (size_t i = 0; i < n; i++)
        ok[i] = !(e[i].c == &c[2] && e[i].m == 7); /* one entry refused */
    pl_heartbeat_settle(e, n, ok, 100.0);
    CHECK(c[0].hb_busy == 0 && c[2].hb_busy == 0);
    CHECK(M(0)[0].extended_at == 100.0 && M(2)[6].extended_at == 100.0);
    CHECK(M(2)[7].extended_at == 0, "a refused entry counted as extended");
    free(e);
    free(ok);
    n = pl_heartbeat_collect(&c[0], 100.25, 10.0, &e);
    CHECK(n == 1 && e[0].c == &c[2] && e[0].m == 7, "only the refused entry is due: %zu", n);
    bool yes = true;
    pl_heartbeat_settle(e, n, &yes, 100.25);
    free(e);
    n = pl_heartbeat_collect(&c[0], 200.0, 10.0, &e);
    CHECK(n == 3 * PER);
    ok = calloc(n, sizeof *ok);
    pl_heartbeat_settle(e, n, ok, 200.0);
    free(ok);
    free(e);
    for (int k = 0; k < CHUNKS; k++) { /* not chunk_free: the handles are literals */
        free(((pl_sqs_chunk *)c[k].src_state)->msgs);
        free(c[k].src_state);
    }
#undef M
}

/* Images are counted once: an image retried and then done in the same run
 * is ok, not ok and retried ("396 images: 300 ok, 96 retried" for 300). */
static void test_tally(void)
{
    pl_tally t;
    pl_tally_init(&t);
    long long ok, failed, retried;
    pl_tally_add(&t, "s3://b/a.png", PL_TALLY_RETRIED);
    pl_tally_add(&t, "s3://b/a.png", PL_TALLY_RETRIED);
    pl_tally_add(&t, "s3://b/b.png", PL_TALLY_RETRIED);
    pl_tally_get(&t, &ok, &failed, &retried);
    CHECK(ok == 0 && failed == 0 && retried == 2, "%lld %lld %lld", ok, failed, retried);
    pl_tally_add(&t, "s3://b/a.png", PL_TALLY_OK);
    pl_tally_add(&t, "s3://b/b.png", PL_TALLY_FAILED);
    pl_tally_add(&t, "s3://b/c.png", PL_TALLY_OK);
    pl_tally_get(&t, &ok, &failed, &retried);
    CHECK(ok == 2 && failed == 1 && retried == 0, "%lld %lld %lld", ok, failed, retried);
    /* Many names: the set grows and still finds each one. */
    char name[32];
    for (int i = 0; i < 1000; i++) {
        snprintf(name, sizeof name, "img-%d", i);
        pl_tally_add(&t, name, PL_TALLY_RETRIED);
    }
    for (int i = 0; i < 1000; i += 2) {
        snprintf(name, sizeof name, "img-%d", i);
        pl_tally_add(&t, name, PL_TALLY_RETRIED);
        pl_tally_add(&t, name, PL_TALLY_OK);
    }
    pl_tally_get(&t, &ok, &failed, &retried);
    CHECK(ok == 502 && failed == 1 && retried == 500, "%lld %lld %lld", ok, failed, retried);
    pl_tally_destroy(&t);
}

struct waiter {
    pl_budget *b;
    int done;
};

static void *budget_waiter(void *arg)
{
    struct waiter *w = arg;
    budget_acquire(w->b, 60);
    w->done = 1;
    return NULL;
}

static void test_budget(void)
{
    pl_budget b;
    budget_init(&b, 100);
    CHECK(budget_try_acquire(&b, 60));
    CHECK(!budget_try_acquire(&b, 50));
    CHECK(budget_try_acquire(&b, 40));
    struct waiter w = {.b = &b};
    pthread_t t;
    CHECK(pthread_create(&t, NULL, budget_waiter, &w) == 0);
    usleep(50000);
    CHECK(w.done == 0); /* 100 used: it waits */
    budget_release(&b, 60);
    pthread_join(t, NULL);
    CHECK(w.done == 1 && b.used == 100);
    budget_release(&b, 100);
    /* Larger than the whole budget: let in alone, never deadlocked. */
    CHECK(budget_try_acquire(&b, 500));
    CHECK(!budget_try_acquire(&b, 1));
    budget_release(&b, 500);
    CHECK(b.used == 0 && b.peak == 500);
    budget_destroy(&b);
}

/* Out of memory for a slice's job (injected): only that slice fails, its
 * budget comes back, and a chunk's last slice is never refused. */
static void test_queue_nomem(void)
{
    pl_queue q;
    pl_chunk a = {.seq = 1};
    pl_job j;
    queue_init(&q);
    queue_fail_pushes(2);
    CHECK(!queue_push(&q, &a, 0, 2, false));
    CHECK(queue_push(&q, &a, 2, 4, true), "the last slice was refused");
    CHECK(!queue_push(&q, &a, 4, 6, false));
    CHECK(queue_push(&q, &a, 6, 8, false), "the injection outlived its count");
    queue_close(&q);
    CHECK(queue_pop(&q, &j) && j.begin == 2 && j.last && j.embedded);
    CHECK(queue_pop(&q, &j) && j.begin == 6 && !j.last && !j.embedded);
    CHECK(!queue_pop(&q, &j));
    queue_destroy(&q);

    pl_ctx x;
    pl_stage_params sp;
    memset(&sp, 0, sizeof sp);
    pl_ctx_init(&x, "test", NULL, &sp, 1, 100);
    pl_chunk *c = calloc(1, sizeof *c);
    for (int i = 0; i < 4; i++) {
        char key[16];
        snprintf(key, sizeof key, "k%d.png", i);
        pl_item *it = chunk_add_item(c, -1, "b", key, NULL);
        CHECK_FATAL(it != NULL);
        item_advance(it, ITEM_FETCHED);
        item_advance(it, ITEM_DECODED);
        CHECK(budget_try_acquire(&x.budget, 25));
        it->budget = 25;
    }
    /* Slice [0, 2) is on the device; slice [2, 4) could not be queued. */
    pl_slice_fail(&x, c, 2, 4);
    CHECK(c->items[0].state == ITEM_DECODED && c->items[1].state == ITEM_DECODED,
          "items of another slice were failed");
    CHECK(c->items[2].state == ITEM_FAILED_TRANSIENT && c->items[3].state == ITEM_FAILED_TRANSIENT);
    CHECK(x.budget.used == 50, "budget held: %llu", (unsigned long long)x.budget.used);
    CHECK(budget_try_acquire(&x.budget, 50), "the failed slice's budget was not returned");
    chunk_free(c);
    pl_ctx_destroy(&x);
}

static void test_queue(void)
{
    pl_queue q;
    pl_chunk a = {.seq = 1}, b = {.seq = 2};
    pl_job j;
    queue_init(&q);
    CHECK(queue_push(&q, &a, 0, 3, false));
    CHECK(queue_push(&q, &a, 3, 5, true));
    CHECK(queue_push(&q, &b, 0, 0, true));
    queue_close(&q);
    CHECK(queue_pop(&q, &j) && j.c == &a && j.begin == 0 && j.end == 3 && !j.last);
    CHECK(queue_pop(&q, &j) && j.c == &a && j.begin == 3 && j.end == 5 && j.last);
    CHECK(queue_pop(&q, &j) && j.c == &b && j.last);
    CHECK(!queue_pop(&q, &j));
    queue_destroy(&q);
}

/* A chunk moves one step at a time; a skipped step is refused; the one
 * error path fails every item not already failed transiently (a permanent
 * failure turns transient, its first reason kept otherwise) and the chunk
 * stays failed. */
static void test_chunk_states(void)
{
    pl_chunk c = {0};
    pl_item items[3] = {
        {.name = "a", .state = ITEM_UPLOADED},
        {.name = "b", .state = ITEM_FAILED_PERMANENT},
        {.name = "c", .state = ITEM_FAILED_TRANSIENT, .error = "first"},
    };
    c.items = items;
    c.nitems = 3;
    CHECK(c.state == CHUNK_RECEIVED);
    chunk_advance(&c, CHUNK_FETCHED);
    CHECK(c.state == CHUNK_FETCHED);
    chunk_advance(&c, CHUNK_WRITTEN); /* skips processed */
    CHECK(c.state == CHUNK_FETCHED);
    chunk_advance(&c, CHUNK_PROCESSED);
    chunk_advance(&c, CHUNK_WRITTEN);
    CHECK(c.state == CHUNK_WRITTEN);
    chunk_fail(&c, CNP_ERR_TRANSIENT, "not committed");
    CHECK(c.state == CHUNK_FAILED);
    CHECK(items[0].state == ITEM_FAILED_TRANSIENT && strcmp(items[0].error, "a: not committed") == 0);
    CHECK(items[1].state == ITEM_FAILED_TRANSIENT);
    CHECK(strcmp(items[2].error, "first") == 0);
    chunk_advance(&c, CHUNK_COMMITTED);
    CHECK(c.state == CHUNK_FAILED);
    CHECK(strcmp(chunk_state_name(CHUNK_ACKNOWLEDGED), "acknowledged") == 0);
}

int main(void)
{
    test_chunk_states();
    test_transitions();
    test_fail_classes();
    test_deletable();
    test_backoff();
    test_tally();
    test_names();
    test_heartbeat_collect();
    test_budget();
    test_queue();
    test_queue_nomem();
    return TEST_RESULT();
}
