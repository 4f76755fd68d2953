/* The SQS source's heartbeat, one round at a time on the test's clock
 * (pl_sqs_source_heartbeat_tick; no thread, no sleeps between rounds),
 * against the local fake server (tests/aws/fake_server.py):
 *
 *  - a message counts as extended only when its entry succeeded; an entry
 *    the service refused is sent again at the next tick, alone;
 *  - no lock is held across the network: while a round waits on a slow
 *    answer, a chunk that is not in that round is acknowledged at once. */
#include <pthread.h>

#include "../aws/aws_test.h"
#include "pipeline/sources.h"

/* The SQS messages of chunk c. */
#define MSGS(c) (((pl_sqs_chunk *)(c)->src_state)->msgs)

static fake_server g_fs;

static int vislog_len(void)
{
    char url[128];
    snprintf(url, sizeof url, "%s/_vislog", g_fs.url);
    CURL *e = curl_easy_init();
    FILE *f = tmpfile();
    curl_easy_setopt(e, CURLOPT_URL, url);
    curl_easy_setopt(e, CURLOPT_WRITEDATA, f);
    int n = -1;
    if (curl_easy_perform(e) == CURLE_OK) {
        rewind(f);
        n = 0;
        int ch, any = 0;
        while ((ch = fgetc(f)) != EOF) {
            n += ch == ',';
            any |= ch >= '0' && ch <= '9';
        }
        n = any ? n + 1 : 0;
    }
    fclose(f);
    curl_easy_cleanup(e);
    return n;
}

static pl_chunk *chunk(const char *const *handles, size_t n)
{
    pl_chunk *c = calloc(1, sizeof *c);
    CHECK_FATAL(c != NULL);
    pl_sqs_chunk *q = pl_sqs_chunk_of(c);
    CHECK_FATAL(q != NULL);
    q->msgs = calloc(n, sizeof *q->msgs);
    q->n = n;
    for (size_t i = 0; i < n; i++) {
        char id[32];
        snprintf(id, sizeof id, "m-%s", handles[i]);
        MSGS(c)[i].m.message_id = strdup(id);
        MSGS(c)[i].m.receipt_handle = strdup(handles[i]);
        MSGS(c)[i].m.receive_count = 1;
    }
    return c;
}

struct round {
    pl_sqs_source *s;
    double now;
};

static void *tick_thread(void *arg)
{
    struct round *r = arg;
    pl_sqs_source_heartbeat_tick(r->s, r->now);
    return NULL;
}

int main(void)
{
    if (!fake_server_start(&g_fs))
        return test_skip_or_fail("python3 (tests/aws/fake_server.py) is not available");
    cnp_config cfg;
    cnp_config_defaults(&cfg);
    snprintf(cfg.aws.endpoint_url, sizeof cfg.aws.endpoint_url, "%s", g_fs.url);
    snprintf(cfg.aws.region, sizeof cfg.aws.region, "us-east-1");
    snprintf(cfg.aws.access_key_id, sizeof cfg.aws.access_key_id, "AKIDTEST");
    snprintf(cfg.aws.secret_access_key, sizeof cfg.aws.secret_access_key, "secret");
    aws_client *aws = NULL;
    pl_sqs_source *src = NULL;
    cnp_err err;
    CHECK_FATAL(aws_client_create(&cfg.aws, &aws, &err) == CNP_OK, "%s", err.msg);
    char queue[160];
    snprintf(queue, sizeof queue, "%s/123456789012/heartbeat", g_fs.url);
    /* 30 s visibility: a message is due every 10 s. */
    pl_sqs_params p = {.queue_url = queue, .chunk_size = 10, .wait_seconds = 0,
                       .visibility_timeout = 30, .idle_exit_seconds = 1,
                       .unreachable_exit_seconds = 10};
    CHECK_FATAL(pl_sqs_source_create(aws, &p, &src, &err) == CNP_OK, "%s", err.msg);

    static const char *const h[] = {"rh-1", "rh-2-fail"};
    pl_chunk *c = chunk(h, 2);
    pl_sqs_source_track(src, c);
    double t = MSGS(c)[0].extended_at;
    CHECK(fake_server_get(&g_fs, "/_set?vis_fail=1") >= 0);

    pl_sqs_source_heartbeat_tick(src, t + 5);
    CHECK(vislog_len() == 0, "extended before it was due");
    pl_sqs_source_heartbeat_tick(src, t + 10);
    CHECK(vislog_len() == 1);
    CHECK(MSGS(c)[0].extended_at == t + 10, "the entry that succeeded is extended");
    CHECK(MSGS(c)[1].extended_at == t, "a refused entry counted as extended");
    /* The refused entry goes again at the next tick, alone; still refused. */
    pl_sqs_source_heartbeat_tick(src, t + 10.25);
    CHECK(vislog_len() == 2);
    CHECK(MSGS(c)[1].extended_at == t);
    CHECK(fake_server_get(&g_fs, "/_set?vis_fail=0") >= 0);
    pl_sqs_source_heartbeat_tick(src, t + 10.5);
    CHECK(vislog_len() == 3);
    CHECK(MSGS(c)[1].extended_at == t + 10.5);
    CHECK(MSGS(c)[0].extended_at == t + 10, "sent again though not due");
    pl_sqs_source_heartbeat_tick(src, t + 11);
    CHECK(vislog_len() == 3, "sent again though nothing was due");

    /* A round held 1.5 s by the server; meanwhile another chunk, not in
     * it, is acknowledged (deleted): that must not wait for the round. */
    CHECK(fake_server_get(&g_fs, "/_set?vis_delay_for=30&vis_delay_ms=1500") >= 0);
    struct round r = {.s = src, .now = t + 30};
    pthread_t th;
    CHECK_FATAL(pthread_create(&th, NULL, tick_thread, &r) == 0);
    usleep(300000); /* the round is on the network */
    static const char *const h2[] = {"rh-3"};
    pl_chunk *c2 = chunk(h2, 1);
    pl_item *it = chunk_add_item(c2, 0, "bucket", "key.png", NULL);
    CHECK_FATAL(it != NULL);
    item_advance(it, ITEM_FETCHED);
    item_advance(it, ITEM_DECODED);
    item_advance(it, ITEM_PROCESSED);
    item_advance(it, ITEM_ENCODED);
    item_advance(it, ITEM_UPLOADED);
    item_advance(it, ITEM_COMMITTED);
    pl_sqs_source_track(src, c2);
    pl_ctx x;
    memset(&x, 0, sizeof x);
    x.mode = "test";
    double t0 = cnp_now();
    pl_source_sqs_ops.acknowledge(&x, src, c2, true);
    double took = cnp_now() - t0;
    CHECK(took < 1.0, "acknowledging a chunk outside the round waited %.2f s for it", took);
    CHECK(it->state == ITEM_ACKNOWLEDGED);
    pthread_join(th, NULL);
    CHECK(MSGS(c)[0].extended_at == t + 30 && MSGS(c)[1].extended_at == t + 30);

    pl_sqs_source_free(src);
    chunk_free(c);
    chunk_free(c2);
    aws_client_free(aws);
    fake_server_stop(&g_fs);
    return TEST_RESULT();
}
