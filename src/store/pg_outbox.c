/* The notification outbox: rows that pg_chunk_commit() wrote in a chunk's
 * transaction, sent after COMMIT and deleted once the queue took them.
 * Several workers may flush the same queue at once: FOR UPDATE SKIP LOCKED
 * hands each row to one of them, and a row is deleted in the transaction
 * that locked it, so a notification that was sent is never sent again
 * unless the process dies between the send and that COMMIT. */
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "canopy/log.h"
#include "store/pg_internal.h"

#define OUTBOX_BATCH_MAX 10

static const char select_sql[] =
    "SELECT id, body, group_id, dedup_id FROM notification_outbox\n"
    "  WHERE queue_url = $1 AND id > $2 ORDER BY id LIMIT $3 FOR UPDATE SKIP LOCKED";

static const char delete_sql[] =
    "DELETE FROM notification_outbox WHERE id = ANY ($1::bigint[])";

static const char failed_sql[] =
    "UPDATE notification_outbox o SET attempts = o.attempts + 1, last_error = f.why,\n"
    "    last_try_at = now()\n"
    "  FROM unnest($1::bigint[], $2::text[]) AS f(id, why) WHERE o.id = f.id";

/* The array literals of the sent ids, and of the failed ids with their reasons. */
typedef struct batch_arrays {
    cnp_buf sent, failed, why;
} batch_arrays;

static cnp_status add_id(cnp_buf *b, int64_t id)
{
    char num[32];
    int len = snprintf(num, sizeof num, "%s%" PRId64, b->len ? "," : "{", id);
    return cnp_buf_append(b, num, (size_t)len);
}

static cnp_status close_array(cnp_buf *b)
{
    if (!b->len)
        return cnp_buf_append(b, "{}", 3);
    return cnp_buf_append(b, "}", 2);
}

static cnp_status build_arrays(const pg_outbox_msg *msgs, size_t n, const bool *sent,
                               char (*why)[256], batch_arrays *a)
{
    const char *reasons[OUTBOX_BATCH_MAX];
    size_t nf = 0;
    cnp_status st = CNP_OK;
    for (size_t i = 0; i < n && st == CNP_OK; i++) {
        st = add_id(sent[i] ? &a->sent : &a->failed, msgs[i].id);
        if (!sent[i])
            reasons[nf++] = why[i][0] ? why[i] : "not sent";
    }
    if (st == CNP_OK)
        st = close_array(&a->sent);
    if (st == CNP_OK)
        st = close_array(&a->failed);
    if (st == CNP_OK)
        st = pg_array_literal(&a->why, reasons, nf);
    if (st == CNP_OK)
        st = cnp_buf_append(&a->why, "", 1);
    return st;
}

/* One transaction: lock up to batch rows after *after, send, record. *done
 * is set when no row was left. */
static cnp_status flush_batch(pg_store *store, const char *queue_url, size_t batch,
                              pg_outbox_send_fn send, void *user, int64_t *after, bool *done,
                              pg_outbox_counts *counts, cnp_err *err)
{
    char after_s[32], limit_s[16];
    snprintf(after_s, sizeof after_s, "%" PRId64, *after);
    snprintf(limit_s, sizeof limit_s, "%zu", batch);
    const char *params[3] = {queue_url, after_s, limit_s};
    PGresult *res = NULL;
    batch_arrays a;
    memset(&a, 0, sizeof a);
    cnp_status st = pg_exec(store, "outbox begin", "BEGIN", -1, NULL, PGRES_COMMAND_OK, NULL, err);
    if (st == CNP_OK)
        st = pg_exec(store, "outbox select", select_sql, 3, params, PGRES_TUPLES_OK, &res, err);
    if (st != CNP_OK)
        goto out;
    size_t n = (size_t)PQntuples(res);
    *done = n == 0;
    if (n) {
        pg_outbox_msg msgs[OUTBOX_BATCH_MAX];
        bool sent[OUTBOX_BATCH_MAX] = {false};
        char why[OUTBOX_BATCH_MAX][256];
        for (size_t i = 0; i < n; i++) {
            int r = (int)i;
            msgs[i].id = strtoll(PQgetvalue(res, r, 0), NULL, 10);
            msgs[i].body = PQgetvalue(res, r, 1);
            msgs[i].group_id = PQgetisnull(res, r, 2) ? NULL : PQgetvalue(res, r, 2);
            msgs[i].dedup_id = PQgetisnull(res, r, 3) ? NULL : PQgetvalue(res, r, 3);
            why[i][0] = '\0';
        }
        *after = msgs[n - 1].id;
        send(user, msgs, n, sent, why);
        for (size_t i = 0; i < n; i++) {
            counts->sent += sent[i];
            counts->failed += !sent[i];
        }
        if (build_arrays(msgs, n, sent, why, &a) != CNP_OK) {
            cnp_err_set(err, "postgres: outbox: out of memory");
            st = CNP_ERR_NOMEM;
            goto out;
        }
        const char *del[1] = {(const char *)a.sent.data};
        const char *upd[2] = {(const char *)a.failed.data, (const char *)a.why.data};
        st = pg_exec(store, "outbox delete", delete_sql, 1, del, PGRES_COMMAND_OK, NULL, err);
        if (st == CNP_OK)
            st = pg_exec(store, "outbox failed", failed_sql, 2, upd, PGRES_COMMAND_OK, NULL,
                         err);
    }
    if (st == CNP_OK)
        st = pg_exec(store, "outbox commit", "COMMIT", -1, NULL, PGRES_COMMAND_OK, NULL, err);
out:
    PQclear(res);
    if (st != CNP_OK)
        pg_rollback_quietly(store);
    cnp_buf_free(&a.sent);
    cnp_buf_free(&a.failed);
    cnp_buf_free(&a.why);
    return st;
}

cnp_status pg_outbox_flush(pg_store *store, const char *queue_url, size_t batch,
                           pg_outbox_send_fn send, void *user, pg_outbox_counts *counts,
                           cnp_err *err)
{
    pg_outbox_counts local = {0, 0};
    if (!counts)
        counts = &local;
    *counts = local;
    if (batch < 1 || batch > OUTBOX_BATCH_MAX)
        batch = OUTBOX_BATCH_MAX;
    int64_t after = 0;
    for (bool done = false; !done;) {
        size_t sent = counts->sent, failed = counts->failed;
        cnp_status st = pg_conn_ensure(store, err);
        if (st == CNP_OK)
            st = flush_batch(store, queue_url, batch, send, user, &after, &done, counts, err);
        if (st != CNP_OK)
            return st;
        /* A batch of which nothing was sent: the queue is down or refuses
         * us. The rest waits for the next flush rather than costing one
         * failed request per batch now. */
        if (counts->sent == sent && counts->failed > failed)
            break;
    }
    return CNP_OK;
}

cnp_status pg_outbox_pending(pg_store *store, const char *queue_url, int64_t *n, cnp_err *err)
{
    *n = 0;
    PGresult *res = NULL;
    const char *params[1] = {queue_url};
    cnp_status st = pg_conn_ensure(store, err);
    if (st == CNP_OK)
        st = pg_exec(store, "outbox pending",
                     queue_url ? "SELECT count(*) FROM notification_outbox WHERE queue_url = $1"
                               : "SELECT count(*) FROM notification_outbox",
                     queue_url ? 1 : 0, params, PGRES_TUPLES_OK, &res, err);
    if (st == CNP_OK)
        *n = strtoll(PQgetvalue(res, 0, 0), NULL, 10);
    PQclear(res);
    return st;
}
