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
    CHECK(pl_backoff_seconds(0, 0) == 5);
    CHECK(pl_backoff_seconds(1, 0) == 5);
    CHECK(pl_backoff_seconds(2, 0) == 10);
    CHECK(pl_backoff_seconds(3, 2) == 22);
    CHECK(pl_backoff_seconds(8, 0) == 640);
    CHECK(pl_backoff_seconds(100, 0) == 640);
    for (unsigned j = 0; j < 10; j++) {
        int s = pl_backoff_seconds(1, j);
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

/* More handles than the old fixed 4096 array held: every one is extended. */
static void test_heartbeat_collect(void)
{
    enum { CHUNKS = 3, PER = 2000 };
    pl_chunk c[CHUNKS];
    memset(c, 0, sizeof c);
    for (int k = 0; k < CHUNKS; k++) {
        pl_sqs_chunk *q = pl_sqs_chunk_of(&c[k]);
        CHECK_FATAL(q != NULL);
        q->msgs = calloc(PER, sizeof *q->msgs);
        for (int i = 0; i < PER; i++)
            q->msgs[i].m.receipt_handle = (char *)"h";
        q->n = PER;
        c[k].last_extend = 0;
        c[k].reg_next = k + 1 < CHUNKS ? &c[k + 1] : NULL;
    }
    c[1].last_extend = 95; /* extended 5 s ago: not due */
    const char **handles = NULL;
    size_t n = pl_heartbeat_collect(&c[0], 100.0, 10.0, &handles);
    CHECK_MSG(n == 2 * PER, "collected %zu", n);
    CHECK(c[0].last_extend == 100.0 && c[2].last_extend == 100.0 && c[1].last_extend == 95);
    free(handles);
    n = pl_heartbeat_collect(&c[0], 101.0, 10.0, &handles);
    CHECK(n == 0);
    free(handles);
    n = pl_heartbeat_collect(&c[0], 200.0, 10.0, &handles);
    CHECK(n == 3 * PER);
    free(handles);
    for (int k = 0; k < CHUNKS; k++) { /* not chunk_free: the handles are literals */
        free(((pl_sqs_chunk *)c[k].src_state)->msgs);
        free(c[k].src_state);
    }
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
    test_names();
    test_heartbeat_collect();
    test_budget();
    test_queue();
    return TEST_RESULT();
}
