/* SQS (JSON 1.0 protocol) against moto with signature checking on: batch
 * send split by 10, attributes, receive counts, change visibility, delete
 * with per-entry failures, FIFO deduplication, a dead-letter queue after
 * maxReceiveCount, long polling that returns as soon as a message arrives. */
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "aws_test.h"
#include "canopy/sqs.h"

static char g_prefix[64];

static void make_queue(aws_client *c, const char *suffix, const aws_kvlist *attrs, char *url,
                       size_t len)
{
    char name[128];
    snprintf(name, sizeof name, "%s-%s", g_prefix, suffix);
    aws_result r;
    CHECK_MSG(sqs_queue_create(c, name, attrs, url, len, &r) == CNP_OK, "%s", r.err.msg);
    char again[512];
    CHECK(sqs_queue_url(c, name, again, sizeof again, &r) == CNP_OK);
    CHECK_MSG(strcmp(again, url) == 0, "%s vs %s", again, url);
}

/* Receives until n messages arrived or a receive returns none. */
static size_t receive_all(aws_client *c, const char *url, size_t n, sqs_message_list *all)
{
    memset(all, 0, sizeof *all);
    all->items = calloc(n + 10, sizeof *all->items);
    for (int round = 0; round < 20 && all->n < n; round++) {
        sqs_message_list got;
        aws_result r;
        CHECK_MSG(sqs_receive(c, url, 10, 1, 30, NULL, &got, &r) == CNP_OK, "%s", r.err.msg);
        if (got.n == 0) {
            sqs_message_list_free(&got);
            break;
        }
        for (size_t i = 0; i < got.n && all->n < n + 10; i++)
            all->items[all->n++] = got.items[i];
        free(got.items);
    }
    return all->n;
}

static void test_standard(aws_client *c)
{
    char url[512];
    make_queue(c, "std", NULL, url, sizeof url);

    enum { N = 25 };
    sqs_send_entry e[N + 1];
    char bodies[N][32];
    aws_kvlist attrs = {0};
    aws_kvlist_add(&attrs, "scan_id", "s-1");
    for (int i = 0; i < N; i++) {
        snprintf(bodies[i], sizeof bodies[i], "{\"n\": %d}", i);
        e[i] = (sqs_send_entry){.body = bodies[i], .attributes = &attrs};
    }
    /* One entry over 256 KiB fails alone, without a request. */
    char *huge = malloc(300 * 1024);
    memset(huge, 'x', 300 * 1024 - 1);
    huge[300 * 1024 - 1] = '\0';
    e[N] = (sqs_send_entry){.body = huge};
    sqs_entry_result res[N + 1];
    aws_result r;
    CHECK_MSG(sqs_send_batch(c, url, e, N + 1, res, &r) == CNP_OK, "%s", r.err.msg);
    for (int i = 0; i < N; i++)
        CHECK_MSG(res[i].status == CNP_OK && res[i].message_id[0], "%d: %s", i, res[i].message);
    CHECK(res[N].status == CNP_ERR_LIMIT);
    CHECK_MSG(r.attempts == 3, "%d requests for 25 entries", r.attempts);
    free(huge);
    aws_kvlist_free(&attrs);

    aws_kvlist qa = {0};
    CHECK(sqs_queue_attributes(c, url, &qa, &r) == CNP_OK);
    const char *count = aws_kvlist_get(&qa, "ApproximateNumberOfMessages");
    CHECK_MSG(count && atoi(count) == N, "%s", count ? count : "(none)");
    CHECK(aws_kvlist_get(&qa, "QueueArn") != NULL);
    aws_kvlist_free(&qa);

    sqs_message_list all;
    CHECK_MSG(receive_all(c, url, N, &all) == N, "%zu", all.n);
    bool seen[N] = {false};
    for (size_t i = 0; i < all.n; i++) {
        sqs_message *m = &all.items[i];
        int n = -1;
        sscanf(m->body, "{\"n\": %d}", &n);
        if (n >= 0 && n < N)
            seen[n] = true;
        CHECK(m->receive_count == 1);
        CHECK(aws_kvlist_get(&m->attributes, "SentTimestamp") != NULL);
        CHECK(m->n_msg_attrs == 1 && strcmp(m->msg_attrs[0].name, "scan_id") == 0 &&
              strcmp(m->msg_attrs[0].value, "s-1") == 0 &&
              strcmp(m->msg_attrs[0].data_type, "String") == 0);
    }
    for (int i = 0; i < N; i++)
        CHECK_MSG(seen[i], "message %d not received", i);

    /* Make the first 3 visible again: they come back with receive count 2. */
    const char *handles[N + 1];
    int zero[3] = {0, 0, 0};
    for (size_t i = 0; i < all.n; i++)
        handles[i] = all.items[i].receipt_handle;
    CHECK(sqs_change_visibility_batch(c, url, handles, zero, 3, res, &r) == CNP_OK);
    for (int i = 0; i < 3; i++)
        CHECK_MSG(res[i].status == CNP_OK, "%s", res[i].message);
    sqs_message_list again;
    CHECK(receive_all(c, url, 3, &again) == 3);
    for (size_t i = 0; i < again.n; i++)
        CHECK_MSG(again.items[i].receive_count == 2, "%d", again.items[i].receive_count);

    /* Delete everything (new handles for the 3), plus one bogus handle. */
    const char *del[N + 1];
    for (size_t i = 0; i < 3; i++)
        del[i] = again.items[i].receipt_handle;
    for (size_t i = 3; i < N; i++)
        del[i] = handles[i];
    del[N] = "not-a-receipt-handle";
    CHECK(sqs_delete_batch(c, url, del, N + 1, res, &r) == CNP_OK);
    int ok = 0;
    for (int i = 0; i < N; i++)
        ok += res[i].status == CNP_OK;
    CHECK_MSG(ok == N, "%d deleted", ok);
    CHECK_MSG(res[N].status != CNP_OK && res[N].code[0], "bogus handle: %d %s",
              (int)res[N].status, res[N].code);
    sqs_message_list_free(&again);
    sqs_message_list_free(&all);

    sqs_message_list none;
    CHECK(sqs_receive(c, url, 10, 0, -1, NULL, &none, &r) == CNP_OK && none.n == 0);
    sqs_message_list_free(&none);
    CHECK(sqs_queue_delete(c, url, &r) == CNP_OK);
}

/* Five 100 KiB messages: the 256 KiB request limit splits them 2 + 2 + 1. */
static void test_size_split(aws_client *c)
{
    char url[512];
    make_queue(c, "big", NULL, url, sizeof url);
    enum { N = 5, SIZE = 100 * 1024 };
    char *bodies[N];
    sqs_send_entry e[N];
    for (int i = 0; i < N; i++) {
        bodies[i] = malloc(SIZE + 1);
        memset(bodies[i], 'a' + i, SIZE);
        bodies[i][SIZE] = '\0';
        e[i] = (sqs_send_entry){.body = bodies[i]};
    }
    sqs_entry_result res[N];
    aws_result r;
    CHECK_MSG(sqs_send_batch(c, url, e, N, res, &r) == CNP_OK, "%s", r.err.msg);
    for (int i = 0; i < N; i++)
        CHECK_MSG(res[i].status == CNP_OK, "%d: %s %s", i, res[i].code, res[i].message);
    CHECK_MSG(r.attempts == 3, "%d requests", r.attempts);
    sqs_message_list all;
    CHECK(receive_all(c, url, N, &all) == N);
    for (size_t i = 0; i < all.n; i++)
        CHECK(strlen(all.items[i].body) == SIZE);
    sqs_message_list_free(&all);
    for (int i = 0; i < N; i++)
        free(bodies[i]);
    CHECK(sqs_queue_delete(c, url, &r) == CNP_OK);
}

static void test_fifo(aws_client *c)
{
    char url[512];
    aws_kvlist attrs = {0};
    aws_kvlist_add(&attrs, "FifoQueue", "true");
    char name[128];
    snprintf(name, sizeof name, "fifo.fifo");
    make_queue(c, name, &attrs, url, sizeof url);
    aws_kvlist_free(&attrs);
    sqs_send_entry e[] = {
        {.body = "first", .group_id = "g1", .dedup_id = "d1"},
        {.body = "second", .group_id = "g1", .dedup_id = "d2"},
        {.body = "first again", .group_id = "g1", .dedup_id = "d1"}, /* deduplicated */
        {.body = "third", .group_id = "g1", .dedup_id = "d3"},
    };
    sqs_entry_result res[4];
    aws_result r;
    CHECK_MSG(sqs_send_batch(c, url, e, 4, res, &r) == CNP_OK, "%s", r.err.msg);
    for (int i = 0; i < 4; i++)
        CHECK_MSG(res[i].status == CNP_OK, "%d: %s %s", i, res[i].code, res[i].message);
    /* A later send with a used deduplication id is dropped too. */
    CHECK(sqs_send_batch(c, url, &e[1], 1, res, &r) == CNP_OK && res[0].status == CNP_OK);

    sqs_message_list got;
    CHECK(sqs_receive(c, url, 10, 1, 30, NULL, &got, &r) == CNP_OK);
    CHECK_MSG(got.n == 3, "%zu messages", got.n);
    const char *want[] = {"first", "second", "third"};
    for (size_t i = 0; i < got.n && i < 3; i++)
        CHECK_MSG(strcmp(got.items[i].body, want[i]) == 0, "%zu: %s", i, got.items[i].body);
    if (got.n)
        CHECK(aws_kvlist_get(&got.items[0].attributes, "MessageGroupId") != NULL);
    sqs_message_list_free(&got);
    CHECK(sqs_queue_delete(c, url, &r) == CNP_OK);
}

static void test_dead_letter(aws_client *c)
{
    char dlq[512], src[512];
    make_queue(c, "dlq", NULL, dlq, sizeof dlq);
    aws_kvlist qa = {0};
    aws_result r;
    CHECK(sqs_queue_attributes(c, dlq, &qa, &r) == CNP_OK);
    const char *arn = aws_kvlist_get(&qa, "QueueArn");
    char policy[700];
    snprintf(policy, sizeof policy, "{\"deadLetterTargetArn\":\"%s\",\"maxReceiveCount\":\"2\"}",
             arn ? arn : "");
    aws_kvlist attrs = {0};
    aws_kvlist_add(&attrs, "RedrivePolicy", policy);
    make_queue(c, "src", &attrs, src, sizeof src);
    aws_kvlist_free(&attrs);
    aws_kvlist_free(&qa);

    sqs_send_entry e = {.body = "poison"};
    sqs_entry_result res;
    CHECK(sqs_send_batch(c, src, &e, 1, &res, &r) == CNP_OK && res.status == CNP_OK);
    /* Received twice and never deleted (visibility 0 returns it at once). */
    for (int i = 1; i <= 2; i++) {
        sqs_message_list got;
        CHECK(sqs_receive(c, src, 1, 1, 0, NULL, &got, &r) == CNP_OK);
        CHECK_MSG(got.n == 1 && got.items[0].receive_count == i, "receive %d: n=%zu", i, got.n);
        sqs_message_list_free(&got);
    }
    sqs_message_list got;
    CHECK(sqs_receive(c, src, 1, 1, 0, NULL, &got, &r) == CNP_OK);
    CHECK_MSG(got.n == 0, "third receive from the source got %zu", got.n);
    sqs_message_list_free(&got);
    CHECK(sqs_receive(c, dlq, 1, 2, 30, NULL, &got, &r) == CNP_OK);
    CHECK_MSG(got.n == 1 && strcmp(got.items[0].body, "poison") == 0, "DLQ got %zu", got.n);
    sqs_message_list_free(&got);
    sqs_queue_delete(c, src, &r);
    sqs_queue_delete(c, dlq, &r);
}

typedef struct sender {
    aws_client *c;
    const char *url;
    double sent_at;
} sender;

static void *send_later(void *p)
{
    sender *s = p;
    sleep(2);
    sqs_send_entry e = {.body = "wake up"};
    sqs_entry_result res;
    aws_result r;
    s->sent_at = cnp_now();
    sqs_send_batch(s->c, s->url, &e, 1, &res, &r);
    return NULL;
}

static void test_long_poll(aws_client *c)
{
    char url[512];
    make_queue(c, "poll", NULL, url, sizeof url);
    sender s = {c, url, 0};
    pthread_t th;
    int rc = pthread_create(&th, NULL, send_later, &s);
    CHECK_MSG(rc == 0, "pthread_create: %d", rc);
    if (rc != 0)
        return; /* nothing would arrive: the 15 s poll proves nothing */
    double t0 = cnp_now();
    sqs_message_list got;
    aws_result r;
    CHECK_MSG(sqs_receive(c, url, 10, 15, 30, NULL, &got, &r) == CNP_OK, "%s", r.err.msg);
    double took = cnp_now() - t0;
    pthread_join(th, NULL);
    fprintf(stderr, "long poll returned after %.2f s\n", took);
    CHECK_MSG(got.n == 1 && strcmp(got.items[0].body, "wake up") == 0, "got %zu", got.n);
    CHECK_MSG(took >= 1.5 && took < 8.0, "long poll took %.2f s (wait 15 s)", took);
    sqs_message_list_free(&got);

    /* An empty long poll waits its full time without a low-speed abort. */
    t0 = cnp_now();
    CHECK(sqs_receive(c, url, 1, 3, 30, NULL, &got, &r) == CNP_OK && got.n == 0);
    took = cnp_now() - t0;
    CHECK_MSG(took >= 2.5, "empty long poll returned after %.2f s", took);
    sqs_message_list_free(&got);
    sqs_queue_delete(c, url, &r);
}

typedef struct poller {
    aws_client *c;
    const char *url;
    const volatile int *cancel;
    cnp_status st;
    aws_result r;
    size_t n;
    double took;
} poller;

static void *poll_once(void *p)
{
    poller *pl = p;
    sqs_message_list got;
    double t0 = cnp_now();
    pl->st = sqs_receive(pl->c, pl->url, 10, 15, 30, pl->cancel, &got, &pl->r);
    pl->took = cnp_now() - t0;
    pl->n = pl->st == CNP_OK ? got.n : 0;
    if (pl->st == CNP_OK)
        sqs_message_list_free(&got);
    return NULL;
}

/* A cancel flag ends one long poll early; the client's other requests,
 * and receives without the flag, go on. */
static void test_cancel_poll(aws_client *c)
{
    char url[512], url2[512];
    make_queue(c, "cancel", NULL, url, sizeof url);
    make_queue(c, "cancel2", NULL, url2, sizeof url2);
    volatile int flag = 0;
    poller pl = {c, url, &flag, CNP_OK, {0}, 0, 0};
    pthread_t th;
    int rc = pthread_create(&th, NULL, poll_once, &pl);
    CHECK_MSG(rc == 0, "pthread_create: %d", rc);
    if (rc != 0)
        return;
    usleep(500 * 1000);
    flag = 1;
    pthread_join(th, NULL);
    fprintf(stderr, "cancelled long poll returned after %.2f s\n", pl.took);
    CHECK_MSG(pl.st == CNP_ERR_TRANSIENT && strstr(pl.r.err.msg, "cancelled"),
              "status %d: %s", (int)pl.st, pl.r.err.msg);
    CHECK_MSG(pl.took < 5.0, "cancelled long poll took %.2f s (wait 15 s)", pl.took);

    /* Already set: ends before any request. */
    poller pre = {c, url, &flag, CNP_OK, {0}, 0, 0};
    poll_once(&pre);
    CHECK_MSG(pre.st == CNP_ERR_TRANSIENT && pre.r.attempts == 0, "status %d, %d attempts",
              (int)pre.st, pre.r.attempts);

    /* With the flag still set, the same client sends and receives (another
     * queue: the server may still be answering the abandoned poll). */
    sqs_send_entry e = {"after cancel", NULL, NULL, 0, NULL};
    sqs_entry_result res;
    aws_result r;
    CHECK_MSG(sqs_send_batch(c, url2, &e, 1, &res, &r) == CNP_OK && res.status == CNP_OK, "%s",
              r.err.msg);
    poller plain = {c, url2, NULL, CNP_OK, {0}, 0, 0};
    poll_once(&plain);
    CHECK_MSG(plain.st == CNP_OK && plain.n == 1, "status %d, %zu messages: %s", (int)plain.st,
              plain.n, plain.r.err.msg);
    sqs_queue_delete(c, url, &r);
    sqs_queue_delete(c, url2, &r);
}

static void test_errors(aws_client *c)
{
    char url[512];
    aws_result r;
    CHECK(sqs_queue_url(c, "canopy-no-such-queue-xyz", url, sizeof url, &r) == CNP_ERR_NOTFOUND);
    CHECK_MSG(r.attempts == 1 && r.http_status == 400, "%d attempts, HTTP %ld", r.attempts,
              r.http_status);
    CHECK_MSG(strstr(r.err.msg, "QueueDoesNotExist") || strstr(r.err.msg, "NonExistentQueue"),
              "%s", r.err.msg);
}

/* A wrong secret key: moto answers 403 with a query-protocol XML error
 * (<ErrorResponse><Errors><Error>), whose code and message must reach the
 * error (before: "HTTP 403 Forbidden" and nothing else); the secret never
 * does. */
static void test_wrong_secret(const cnp_config *base)
{
    cnp_config cfg = *base;
    const char *secret = "wrong-secret-4f1c9a";
    snprintf(cfg.aws.access_key_id, sizeof cfg.aws.access_key_id, "%s",
             getenv("AWS_ACCESS_KEY_ID"));
    snprintf(cfg.aws.secret_access_key, sizeof cfg.aws.secret_access_key, "%s", secret);
    aws_client *c = NULL;
    cnp_err err = {{0}};
    CHECK(aws_client_create(&cfg.aws, &c, &err) == CNP_OK);
    char url[512];
    aws_result r;
    CHECK(sqs_queue_url(c, g_prefix, url, sizeof url, &r) == CNP_ERR_AUTH);
    CHECK_MSG(r.http_status == 403 && r.attempts == 1, "HTTP %ld, %d attempts", r.http_status,
              r.attempts);
    CHECK_MSG(strcmp(r.code, "SignatureDoesNotMatch") == 0, "code '%s'", r.code);
    CHECK_MSG(strstr(r.err.msg, "HTTP 403 SignatureDoesNotMatch: The request signature"), "%s",
              r.err.msg);
    CHECK_MSG(!strstr(r.err.msg, secret), "%s", r.err.msg);
    aws_client_free(c);
}

int main(void)
{
    cnp_config cfg;
    if (!aws_test_stack_config(&cfg))
        return test_skip_or_fail("test_aws_sqs: no local stack (CANOPY_TEST_STACK unset)");
    /* A short no-progress timeout: long polls must still get their wait. */
    cfg.aws.request_timeout = 2;
    aws_client *c = NULL;
    cnp_err err = {{0}};
    if (aws_client_create(&cfg.aws, &c, &err) != CNP_OK) {
        fprintf(stderr, "%s\n", err.msg);
        return 1;
    }
    aws_test_name(g_prefix, sizeof g_prefix, "canopy-sqs");
    test_standard(c);
    test_size_split(c);
    test_fifo(c);
    test_dead_letter(c);
    test_long_poll(c);
    test_cancel_poll(c);
    test_errors(c);
    test_wrong_secret(&cfg);
    aws_client_free(c);
    return TEST_RESULT();
}
