/* The cloud sink's notifications through the outbox (issue 20, item 6), on
 * the stack's PostgreSQL and moto SQS, with SendMessageBatch entries
 * refused (pl_outbox_fail_entries): a chunk whose sends partly fail is
 * committed all the same (every item COMMITTED, so its messages are
 * acknowledged and no image is processed again), the refused
 * notifications wait in the outbox, and the next flush sends exactly those:
 * the output queue ends with each image's notification once, and the
 * images rows are not written again. */
#include "../aws/aws_test.h"
#include "pipeline/sources.h"
#include "store/pgtest.h"

enum { N_ITEMS = 13, N_REFUSED = 4 };

/* Receives everything on the queue; counts notifications per item index. */
static size_t drain_queue(aws_client *aws, const char *url, int counts[N_ITEMS])
{
    size_t total = 0;
    for (int empty = 0; empty < 2;) {
        sqs_message_list l = {0};
        aws_result ar;
        CHECK_FATAL(sqs_receive(aws, url, 10, 1, 30, NULL, &l, &ar) == CNP_OK, "%s",
                    ar.err.msg);
        empty = l.n ? 0 : empty + 1;
        for (size_t i = 0; i < l.n; i++) {
            const char *k = strstr(l.items[i].body, "\"key\":\"tiles/t-");
            int idx = k ? atoi(k + strlen("\"key\":\"tiles/t-")) : -1;
            CHECK(idx >= 0 && idx < N_ITEMS, "notification %s", l.items[i].body);
            if (idx >= 0 && idx < N_ITEMS)
                counts[idx]++;
            const char *rh = l.items[i].receipt_handle;
            sqs_entry_result er;
            sqs_delete_batch(aws, url, &rh, 1, &er, &ar);
        }
        total += l.n;
        sqs_message_list_free(&l);
    }
    return total;
}

static pl_chunk *make_chunk(void)
{
    pl_chunk *c = calloc(1, sizeof *c);
    CHECK_FATAL(c != NULL);
    for (int i = 0; i < N_ITEMS; i++) {
        char key[64];
        snprintf(key, sizeof key, "tiles/t-%03d.png", i);
        pl_item *it = chunk_add_item(c, i, "in", key, NULL);
        CHECK_FATAL(it != NULL);
        it->etag = strdup("etag-1");
        it->out_name[PIPE_OUT_MASK_PNG] = strdup(key);
        it->res.width = it->res.height = 16;
        it->state = ITEM_UPLOADED;
    }
    return c;
}

int main(void)
{
    pgt_require_stack();
    cnp_config cfg;
    if (!aws_test_stack_config(&cfg))
        return test_skip_or_fail("no local stack (moto)");
    const char *ci = pgt_db_create();
    pg_store *db = pgt_store_open(ci);
    PGconn *c = pgt_connect(ci);
    aws_client *aws = NULL;
    cnp_err err;
    CHECK_FATAL(aws_client_create(&cfg.aws, &aws, &err) == CNP_OK, "%s", err.msg);
    char name[96], url[256];
    aws_test_name(name, sizeof name, "outbox");
    aws_result ar;
    CHECK_FATAL(sqs_queue_create(aws, name, NULL, url, sizeof url, &ar) == CNP_OK, "%s",
                ar.err.msg);
    pl_cloud_params p = {.bucket = "out", .prefix = "", .queue_url = url};
    pl_cloud_sink *sink = NULL;
    CHECK_FATAL(pl_cloud_sink_create(aws, db, &p, &sink, &err) == CNP_OK, "%s", err.msg);
    pl_ctx *x = calloc(1, sizeof *x);
    CHECK_FATAL(x != NULL);
    x->mode = "test";
    x->sp.model_version = "m1";

    /* Four entries refused: the first batch of ten loses four. */
    pl_chunk *ch = make_chunk();
    pl_outbox_fail_entries(N_REFUSED);
    CHECK(pl_sink_cloud_ops.commit(x, sink, ch), "the chunk was not committed");
    for (size_t i = 0; i < ch->nitems; i++)
        CHECK(ch->items[i].state == ITEM_COMMITTED, "item %zu: %s (%s)", i,
              item_state_name(ch->items[i].state), ch->items[i].error);
    CHECK(pgt_int(c, "SELECT count(*) FROM images WHERE status = 'ok'") == N_ITEMS, "rows");
    CHECK(pgt_int(c, "SELECT count(*) FROM notification_outbox WHERE attempts = 1 AND "
                     "last_error = 'injected failure (test)'") == N_REFUSED, "outbox rows");
    int counts[N_ITEMS] = {0};
    CHECK(drain_queue(aws, url, counts) == N_ITEMS - N_REFUSED, "messages after the commit");
    char *rows = pgt_dump(c, "SELECT key, processed_at, etag FROM images ORDER BY key");

    /* The next flush (a later commit's, or the next process's at start)
     * sends the four, and only them. */
    CHECK(pl_cloud_sink_flush(sink, "test", &err) == CNP_OK, "flush: %s", err.msg);
    CHECK(pgt_int(c, "SELECT count(*) FROM notification_outbox") == 0, "outbox not empty");
    CHECK(drain_queue(aws, url, counts) == N_REFUSED, "messages after the flush");
    for (int i = 0; i < N_ITEMS; i++)
        CHECK(counts[i] == 1, "image %d notified %d times", i, counts[i]);
    char *after = pgt_dump(c, "SELECT key, processed_at, etag FROM images ORDER BY key");
    CHECK(rows && after && !strcmp(rows, after), "images rows written again");
    /* Nothing pending: a flush sends nothing. */
    CHECK(pl_cloud_sink_flush(sink, "test", &err) == CNP_OK, "flush: %s", err.msg);
    CHECK(drain_queue(aws, url, counts) == 0, "an empty outbox sent messages");
    free(rows);
    free(after);

    chunk_free(ch);
    free(x);
    pl_cloud_sink_free(sink);
    sqs_queue_delete(aws, url, &ar);
    aws_client_free(aws);
    PQfinish(c);
    pg_store_free(db);
    return TEST_RESULT();
}
