/* The SQS source's acknowledgement against a heartbeat in progress: a chunk
 * whose message must back off is taken out of the heartbeat's reach before
 * the backoff is set, so an extension already on its way can never land
 * after the backoff and undo it (the message would come back late, or be
 * redelivered to another worker while still counted as retried here).
 *
 * The local fake server (tests/aws/fake_server.py) answers the heartbeat's
 * ChangeMessageVisibilityBatch 1.5 s late and logs the visibility changes
 * in the order it answered them: the backoff must be the last. */
#include <pthread.h>

#include "../aws/aws_test.h"
#include "pipeline/sources.h"

static fake_server g_fs;

static size_t collect(char *d, size_t s, size_t n, void *u)
{
    cnp_buf_append(u, d, s * n);
    return s * n;
}

/* The server's visibility log, as text. */
static char *vislog(void)
{
    char url[128];
    snprintf(url, sizeof url, "%s/_vislog", g_fs.url);
    CURL *e = curl_easy_init();
    cnp_buf b = {0};
    curl_easy_setopt(e, CURLOPT_URL, url);
    curl_easy_setopt(e, CURLOPT_WRITEFUNCTION, collect);
    curl_easy_setopt(e, CURLOPT_WRITEDATA, &b);
    bool ok = curl_easy_perform(e) == CURLE_OK && cnp_buf_append(&b, "", 1) == CNP_OK;
    curl_easy_cleanup(e);
    if (!ok)
        cnp_buf_free(&b);
    return (char *)b.data;
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
    snprintf(queue, sizeof queue, "%s/123456789012/ack-order", g_fs.url);
    /* A 3 s visibility: the heartbeat extends a chunk every second. */
    pl_sqs_params p = {.queue_url = queue, .chunk_size = 10, .wait_seconds = 0,
                       .visibility_timeout = 3, .idle_exit_seconds = 1,
                       .unreachable_exit_seconds = 10};
    CHECK_FATAL(pl_sqs_source_create(aws, &p, &src, &err) == CNP_OK, "%s", err.msg);
    CHECK(fake_server_get(&g_fs, "/_set?vis_delay_for=3&vis_delay_ms=1500") >= 0);
    CHECK_FATAL(pl_sqs_source_start(src));

    /* One message whose only item failed transiently: it must back off. */
    pl_chunk *c = calloc(1, sizeof *c);
    pl_sqs_chunk *q = pl_sqs_chunk_of(c);
    CHECK_FATAL(q != NULL);
    q->msgs = calloc(1, sizeof *q->msgs);
    q->n = 1;
    q->msgs[0].m.message_id = strdup("m-1");
    q->msgs[0].m.receipt_handle = strdup("rh-1");
    q->msgs[0].m.receive_count = 1;
    pl_item *it = chunk_add_item(c, 0, "bucket", "key.png", NULL);
    CHECK_FATAL(it != NULL);
    item_fail(it, CNP_ERR_TRANSIENT, "database down");
    pl_sqs_source_track(src, c);

    /* The heartbeat sends its extension after ~1 s; the server holds it 1.5 s.
     * Acknowledge while it is on its way. */
    usleep(1400000);
    pl_ctx x;
    memset(&x, 0, sizeof x);
    x.mode = "test";
    pl_source_sqs_ops.acknowledge(&x, src, c, true);
    usleep(2500000); /* every answer is in */
    char *log = vislog();
    if (!log) {
        CHECK(!"the fake server's visibility log could not be read");
        return TEST_RESULT();
    }
    fprintf(stderr, "visibility changes, in the order answered: %s\n", log);
    /* [3, 5..7] (an extension, then the backoff), never ending with 3. */
    const char *last = strrchr(log, ',');
    int last_vis = atoi(last ? last + 1 : log + 1);
    CHECK(strncmp(log, "[3", 2) == 0);
    CHECK_MSG(last_vis >= 5 && last_vis <= 7, "the last visibility set was %d, not the backoff: "
                                              "an extension landed after it", last_vis);
    free(log);
    pl_sqs_source_free(src);
    chunk_free(c);
    aws_client_free(aws);
    fake_server_stop(&g_fs);
    return TEST_RESULT();
}
