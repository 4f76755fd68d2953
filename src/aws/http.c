/* The HTTP engine: a batch of signed requests driven on one curl multi handle,
 * at most [aws] max_connections in flight, retried with capped exponential
 * backoff and full jitter. Each batch holds its own multi handle, and with it
 * its own connection cache, taken from the client's pool and given back when
 * the batch is freed, so consecutive batches reuse kept-alive connections
 * while batches running at once on other threads never touch them. DNS and
 * TLS sessions come from the client's CURLSH. What one request is (its
 * target, body, signature, and the callbacks that move its bytes) is in
 * http_op.c. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "aws/aws_internal.h"
#include "canopy/log.h"
#include "canopy/rand.h"

#define BACKOFF_CAP_MS 20000.0

static bool code_in(const char *code, const char *const *list);
static const char *const EXPIRED_CODES[] = {"ExpiredToken", "ExpiredTokenException",
                                            "RequestExpired", "TokenRefreshRequired", NULL};

struct aws_batch {
    aws_client *client;
    CURLM *multi;
    aws_op *head;     /* queued ops (new or waiting for a retry), FIFO */
    aws_op *tail;
    aws_op *active_ops; /* handed to curl, doubly linked */
    size_t active;    /* handed to curl */
    size_t pending;   /* queued + active */
    void (*on_done)(void *ctx, void *out);
    void *on_done_ctx;
    aws_batch_stats stats;
};

/* ---- batches ------------------------------------------------------------- */

static void active_unlink(aws_batch *b, aws_op *op);

cnp_status aws_batch_create(aws_client *client, aws_batch **out, cnp_err *err)
{
    aws_batch *b = calloc(1, sizeof *b);
    if (!b) {
        cnp_err_set(err, "aws batch: out of memory");
        return CNP_ERR_NOMEM;
    }
    b->client = client;
    b->multi = aws_client_multi_take(client);
    if (!b->multi) {
        free(b);
        cnp_err_set(err, "aws batch: curl_multi_init failed");
        return CNP_ERR_INTERNAL;
    }
    *out = b;
    return CNP_OK;
}

void aws_batch_free(aws_batch *batch)
{
    if (!batch)
        return;
    aws_op *op = batch->head;
    while (op) {
        aws_op *next = op->next;
        aws_op_free(op);
        op = next;
    }
    while (batch->active_ops) {
        op = batch->active_ops;
        active_unlink(batch, op);
        aws_op_free(op);
    }
    aws_client_multi_give(batch->client, batch->multi);
    free(batch);
}

size_t aws_batch_pending(const aws_batch *batch)
{
    return batch->pending;
}

void aws_batch_get_stats(const aws_batch *batch, aws_batch_stats *out)
{
    *out = batch->stats;
}

void aws_batch_on_done(aws_batch *batch, void (*fn)(void *ctx, void *out), void *ctx)
{
    batch->on_done = fn;
    batch->on_done_ctx = ctx;
}

void aws_batch_notify(aws_batch *batch, void *out)
{
    if (batch->on_done && out)
        batch->on_done(batch->on_done_ctx, out);
}

aws_client *aws_batch_client(aws_batch *batch)
{
    return batch->client;
}

static void queue_push(aws_batch *b, aws_op *op)
{
    op->next = NULL;
    if (b->tail)
        b->tail->next = op;
    else
        b->head = op;
    b->tail = op;
}

void aws_batch_submit(aws_batch *batch, aws_op *op)
{
    op->batch = batch;
    if (!op->result)
        op->result = &op->own_result;
    memset(op->result, 0, sizeof *op->result);
    queue_push(batch, op);
    batch->pending++;
}

/* ---- one attempt --------------------------------------------------------- */

static bool curl_code_retryable(CURLcode rc)
{
    switch (rc) {
    case CURLE_COULDNT_RESOLVE_HOST:
    case CURLE_COULDNT_RESOLVE_PROXY:
    case CURLE_COULDNT_CONNECT:
    case CURLE_OPERATION_TIMEDOUT:
    case CURLE_SEND_ERROR:
    case CURLE_RECV_ERROR:
    case CURLE_GOT_NOTHING:
    case CURLE_PARTIAL_FILE:
    case CURLE_SSL_CONNECT_ERROR:
    case CURLE_HTTP2:
    case CURLE_HTTP2_STREAM:
    case CURLE_WEIRD_SERVER_REPLY:
    case CURLE_SEND_FAIL_REWIND:
        return true;
    default:
        return false;
    }
}

static void active_link(aws_batch *b, aws_op *op)
{
    op->aprev = NULL;
    op->anext = b->active_ops;
    if (b->active_ops)
        b->active_ops->aprev = op;
    b->active_ops = op;
    b->active++;
}

/* Takes op back from curl. */
static void active_unlink(aws_batch *b, aws_op *op)
{
    curl_multi_remove_handle(b->multi, op->easy);
    if (op->aprev)
        op->aprev->anext = op->anext;
    else
        b->active_ops = op->anext;
    if (op->anext)
        op->anext->aprev = op->aprev;
    op->aprev = op->anext = NULL;
    b->active--;
}

/* Prepares the easy handle for the next attempt and hands it to the multi. */
static cnp_status start_attempt(aws_batch *b, aws_op *op)
{
    const cnp_aws_config *cfg = &b->client->aws;
    op->attempt++;
    op->http_status = 0;
    op->limit_hit = false;
    op->read_off = 0;
    op->errbuf[0] = '\0';
    op->spill_err[0] = '\0';
    aws_kvlist_free(&op->resp_headers);
    op->resp_body.len = 0;
    /* A retry drops the last attempt's partial file; this attempt's header
     * callback makes a new one if its body spills, and a failure there is
     * transient like any other of our disk's. */
    aws_op_spill_discard(op);
    cnp_status result = aws_op_sign(op, &op->result->err);
    if (result != CNP_OK)
        return result;
    if (!op->easy && !(op->easy = curl_easy_init())) {
        cnp_err_set(&op->result->err, "%s: curl_easy_init failed", op->what);
        return CNP_ERR_INTERNAL;
    }
    CURL *e = op->easy;
    curl_easy_reset(e);
    curl_easy_setopt(e, CURLOPT_URL, op->url);
    curl_easy_setopt(e, CURLOPT_SHARE, b->client->share);
    curl_easy_setopt(e, CURLOPT_PRIVATE, op);
    curl_easy_setopt(e, CURLOPT_ERRORBUFFER, op->errbuf);
    curl_easy_setopt(e, CURLOPT_NOSIGNAL, 1L);
    /* Keys like "a/./b" or "a/../b" are names, not paths to normalise. */
    curl_easy_setopt(e, CURLOPT_PATH_AS_IS, 1L);
    curl_easy_setopt(e, CURLOPT_TCP_KEEPALIVE, 1L);
    /* Larger socket reads and writes than curl's 16 KiB / 64 KiB defaults:
     * fewer callbacks for multi-megabyte images. */
    curl_easy_setopt(e, CURLOPT_BUFFERSIZE, 256L * 1024);
    curl_easy_setopt(e, CURLOPT_UPLOAD_BUFFERSIZE, 256L * 1024);
    curl_easy_setopt(e, CURLOPT_CONNECTTIMEOUT, (long)cfg->connect_timeout);
    long idle = cfg->request_timeout;
    if (op->min_idle_s > idle)
        idle = op->min_idle_s;
    /* Low-speed abort rather than a total timeout: a 100 MB download may take
     * long, a stalled one may not; a long poll sends nothing for up to 20 s. */
    curl_easy_setopt(e, CURLOPT_LOW_SPEED_LIMIT, 1L);
    curl_easy_setopt(e, CURLOPT_LOW_SPEED_TIME, idle);
    if (b->client->cainfo[0])
        curl_easy_setopt(e, CURLOPT_CAINFO, b->client->cainfo);
    curl_easy_setopt(e, CURLOPT_SSL_VERIFYPEER, cfg->verify_tls ? 1L : 0L);
    curl_easy_setopt(e, CURLOPT_SSL_VERIFYHOST, cfg->verify_tls ? 2L : 0L);
    curl_easy_setopt(e, CURLOPT_HTTPHEADER, op->slist);
    curl_easy_setopt(e, CURLOPT_HEADERFUNCTION, aws_op_on_header);
    curl_easy_setopt(e, CURLOPT_HEADERDATA, op);
    curl_easy_setopt(e, CURLOPT_WRITEFUNCTION, aws_op_on_write);
    curl_easy_setopt(e, CURLOPT_WRITEDATA, op);
    if (op->head) {
        curl_easy_setopt(e, CURLOPT_NOBODY, 1L);
    } else if (strcmp(op->method, "PUT") == 0 || strcmp(op->method, "POST") == 0) {
        curl_easy_setopt(e, CURLOPT_UPLOAD, 1L);
        curl_easy_setopt(e, CURLOPT_READFUNCTION, aws_op_on_read);
        curl_easy_setopt(e, CURLOPT_READDATA, op);
        curl_easy_setopt(e, CURLOPT_SEEKFUNCTION, aws_op_on_seek);
        curl_easy_setopt(e, CURLOPT_SEEKDATA, op);
        curl_easy_setopt(e, CURLOPT_INFILESIZE_LARGE, (curl_off_t)op->body_len);
        curl_easy_setopt(e, CURLOPT_CUSTOMREQUEST, op->method);
    } else if (strcmp(op->method, "GET") != 0) {
        curl_easy_setopt(e, CURLOPT_CUSTOMREQUEST, op->method);
    }
    if (curl_multi_add_handle(b->multi, e) != CURLM_OK) {
        cnp_err_set(&op->result->err, "%s: curl_multi_add_handle failed", op->what);
        return CNP_ERR_INTERNAL;
    }
    active_link(b, op);
    LOG_DEBUG(AWS_MOD, "%s %s (attempt %d)", op->method, op->what, op->attempt);
    return CNP_OK;
}

/* Reports the final outcome and frees the op. */
static void complete(aws_batch *b, aws_op *op, cnp_status status)
{
    aws_result *r = op->result;
    r->status = status;
    r->attempts = op->attempt;
    r->http_status = op->http_status;
    if (!r->request_id[0]) {
        const char *rid = aws_kvlist_get(&op->resp_headers, "x-amz-request-id");
        if (!rid)
            rid = aws_kvlist_get(&op->resp_headers, "x-amzn-requestid");
        if (rid)
            snprintf(r->request_id, sizeof r->request_id, "%s", rid);
    }
    if (status == CNP_OK)
        r->err.msg[0] = '\0';
    else
        LOG_DEBUG(AWS_MOD, "%s", r->err.msg);
    b->pending--;
    if (op->done)
        op->done(op);
    aws_batch_notify(b, op->user_out);
    aws_op_free(op);
}

const char *const aws_retry_class_name[AWS_RETRY_CLASSES] = {"network", "timeout", "throttle",
                                                             "server", "other"};

static const char *const THROTTLE_CODES[] = {
    "SlowDown", "Throttling", "ThrottlingException", "ThrottledException",
    "RequestThrottledException", "TooManyRequestsException", "RequestThrottled",
    "RequestLimitExceeded", "BandwidthLimitExceeded", NULL};

/* Why a retried attempt failed (for the retry counters). */
static enum aws_retry_class retry_class(const aws_op *op, CURLcode rc)
{
    if (op->spill_err[0])
        return AWS_RETRY_OTHER; /* our disk, not the network */
    if (rc != CURLE_OK)
        return rc == CURLE_OPERATION_TIMEDOUT ? AWS_RETRY_TIMEOUT : AWS_RETRY_NETWORK;
    if (op->http_status == 429 || code_in(op->result->code, THROTTLE_CODES))
        return AWS_RETRY_THROTTLE;
    return op->http_status >= 500 ? AWS_RETRY_SERVER : AWS_RETRY_OTHER;
}

/* Decides what a finished attempt means: done, retry later, or failed. */
static void attempt_finished(aws_batch *b, aws_op *op, CURLcode rc)
{
    aws_result *r = op->result;
    int max_attempts = b->client->aws.max_attempts;
    bool retry = false;
    cnp_status status = CNP_OK;
    r->code[0] = '\0';
    r->request_id[0] = '\0';
    if (op->limit_hit) {
        cnp_err_set(&r->err, "%s: object larger than the %lld-byte limit", op->what,
                    (long long)op->max_bytes);
        complete(b, op, CNP_ERR_LIMIT);
        return;
    }
    if (op->body_err[0]) { /* a local file failed us: sending again would not help */
        cnp_err_set(&r->err, "%s: %s", op->what, op->body_err);
        complete(b, op, CNP_ERR_IO);
        return;
    }
    if (op->spill_err[0]) {
        /* Our disk failed the download (no temporary file, a full disk):
         * not the object's fault nor the server's, and it may pass (space
         * freed, the directory back), so retried like a network fault. curl
         * saw only a failed write ("Failed writing header"), so the reason
         * is ours to give: the path and errno's. */
        cnp_err_set(&r->err, "%s: %s", op->what, op->spill_err);
        retry = true;
        status = CNP_ERR_TRANSIENT;
    } else if (rc != CURLE_OK) {
        op->http_status = 0;
        cnp_err_set(&r->err, "%s: %s", op->what,
                    op->errbuf[0] ? op->errbuf : curl_easy_strerror(rc));
        if (rc == CURLE_PEER_FAILED_VERIFICATION || rc == CURLE_SSL_CACERT_BADFILE ||
            rc == CURLE_SSL_CERTPROBLEM) {
            status = CNP_ERR_CONFIG;
        } else if (curl_code_retryable(rc)) {
            retry = true;
            status = CNP_ERR_TRANSIENT;
        } else {
            status = CNP_ERR_REMOTE;
        }
    } else if (op->http_status / 100 != 2) {
        retry = aws_classify_response(op);
        status = retry ? CNP_ERR_TRANSIENT : r->status;
    }
    aws_rate_feedback(b->client, retry && retry_class(op, rc) == AWS_RETRY_THROTTLE, cnp_now());
    if (status == CNP_ERR_AUTH && !op->creds_refreshed && op->attempt < max_attempts &&
        code_in(r->code, EXPIRED_CODES)) {
        /* Temporary credentials ran out early (clock skew, revoked session):
         * fetch them again and retry once, at once. */
        LOG_INFO(AWS_MOD, "%s: %s, refreshing credentials", op->what, r->code);
        op->creds_refreshed = true;
        aws_client_drop_credentials(b->client);
        op->not_before = 0;
        queue_push(b, op);
        return;
    }
    if (retry && op->attempt < max_attempts) {
        double cap = b->client->backoff_base_ms * (double)(1u << (op->attempt < 20 ? op->attempt - 1 : 19));
        if (cap > BACKOFF_CAP_MS)
            cap = BACKOFF_CAP_MS;
        double delay_ms = cnp_rand_unit() * cap; /* full jitter, OS-seeded per thread */
        op->not_before = cnp_now() + delay_ms / 1000.0;
        LOG_DEBUG(AWS_MOD, "retrying %s in %.0f ms: %s", op->what, delay_ms, r->err.msg);
        b->stats.retries++;
        b->stats.retries_by_class[retry_class(op, rc)]++;
        queue_push(b, op);
        return;
    }
    if (retry)
        cnp_err_prefix(&r->err, "after %d attempts", op->attempt);
    complete(b, op, status);
}

/* Takes op, which follows prev (NULL: op is the head), out of the queue. */
static void queue_unlink(aws_batch *b, aws_op *prev, aws_op *op)
{
    if (prev)
        prev->next = op->next;
    else
        b->head = op->next;
    if (b->tail == op)
        b->tail = prev;
    op->next = NULL;
}

/* Starts queued ops that are due, up to the connection limit; returns the
 * seconds until the next delayed op is due (or 1 when none waits). */
static double start_due(aws_batch *b)
{
    double now = cnp_now();
    double wait = 1.0;
    size_t limit = (size_t)b->client->aws.max_connections;
    aws_op *prev = NULL, *op = b->head;
    while (op && b->active < limit) {
        aws_op *next = op->next;
        if (op->not_before > now) {
            if (op->not_before - now < wait)
                wait = op->not_before - now;
            prev = op;
            op = next;
            continue;
        }
        /* adaptive retry mode: the client-side rate limit, after throttling. */
        double rate_wait = aws_rate_acquire(b->client, now);
        if (rate_wait > 0) {
            b->stats.rate_limited++;
            if (rate_wait < wait)
                wait = rate_wait;
            break;
        }
        queue_unlink(b, prev, op);
        cnp_status st = start_attempt(b, op);
        if (st != CNP_OK)
            complete(b, op, st);
        op = next;
    }
    return wait;
}

static bool op_cancelled(const aws_op *op, bool all)
{
    return all || (op->cancel && *op->cancel);
}

/* Ends with "cancelled" every queued and active op (all) or those whose own
 * cancel flag is set. */
static void cancel_ops(aws_batch *b, bool all)
{
    aws_op *prev = NULL, *op = b->head;
    while (op) {
        aws_op *next = op->next;
        if (!op_cancelled(op, all)) {
            prev = op;
            op = next;
            continue;
        }
        queue_unlink(b, prev, op);
        cnp_err_set(&op->result->err, "%s: cancelled", op->what);
        complete(b, op, CNP_ERR_TRANSIENT);
        op = next;
    }
    op = b->active_ops;
    while (op) {
        aws_op *next = op->anext;
        if (op_cancelled(op, all)) {
            active_unlink(b, op);
            cnp_err_set(&op->result->err, "%s: cancelled", op->what);
            complete(b, op, CNP_ERR_TRANSIENT);
        }
        op = next;
    }
}

cnp_status aws_batch_run(aws_batch *batch, cnp_err *err)
{
    while (batch->pending > 0) {
        const volatile int *cancel = batch->client->cancel;
        if (cancel && *cancel) {
            cancel_ops(batch, true);
            continue; /* follow-ups submitted by done callbacks end the same way */
        }
        cancel_ops(batch, false);
        if (batch->pending == 0)
            break;
        double wait = start_due(batch);
        int running = 0;
        CURLMcode mc = curl_multi_perform(batch->multi, &running);
        if (mc != CURLM_OK) {
            cnp_err_set(err, "aws batch: %s", curl_multi_strerror(mc));
            return CNP_ERR_INTERNAL;
        }
        CURLMsg *msg;
        int left;
        bool finished = false;
        while ((msg = curl_multi_info_read(batch->multi, &left))) {
            if (msg->msg != CURLMSG_DONE)
                continue;
            CURL *e = msg->easy_handle;
            CURLcode rc = msg->data.result;
            aws_op *op = NULL;
            curl_easy_getinfo(e, CURLINFO_PRIVATE, (char **)&op);
            long conns = 0;
            curl_off_t up = 0, down = 0;
            curl_easy_getinfo(e, CURLINFO_NUM_CONNECTS, &conns);
            curl_easy_getinfo(e, CURLINFO_SIZE_UPLOAD_T, &up);
            curl_easy_getinfo(e, CURLINFO_SIZE_DOWNLOAD_T, &down);
            batch->stats.requests++;
            batch->stats.connections += (uint64_t)conns;
            batch->stats.bytes_sent += (uint64_t)up;
            batch->stats.bytes_received += (uint64_t)down;
            active_unlink(batch, op);
            attempt_finished(batch, op, rc);
            finished = true;
        }
        if (batch->pending == 0)
            break;
        if (finished)
            continue; /* start the next ones before sleeping */
        /* Wake for socket activity, or when the next delayed retry is due. */
        int timeout_ms = (int)(wait * 1000.0) + 1;
        if (timeout_ms > 1000)
            timeout_ms = 1000;
        mc = curl_multi_poll(batch->multi, NULL, 0, timeout_ms, NULL);
        if (mc != CURLM_OK) {
            cnp_err_set(err, "aws batch: %s", curl_multi_strerror(mc));
            return CNP_ERR_INTERNAL;
        }
    }
    return CNP_OK;
}

cnp_status aws_op_run_sync(aws_client *client, aws_op *op)
{
    aws_result tmp;
    if (!op->result)
        op->result = &tmp;
    aws_result *r = op->result;
    aws_batch *b = NULL;
    cnp_status result = aws_batch_create(client, &b, &r->err);
    if (result != CNP_OK) {
        r->status = result;
        aws_op_free(op);
        return result;
    }
    aws_batch_submit(b, op);
    result = aws_batch_run(b, &r->err);
    aws_batch_free(b);
    if (result != CNP_OK) {
        r->status = result;
        return result;
    }
    return r->status;
}

/* ---- error responses ----------------------------------------------------- */

static bool code_in(const char *code, const char *const *list)
{
    for (; *list; list++)
        if (strcmp(code, *list) == 0)
            return true;
    return false;
}

static const char *const RETRY_CODES[] = {
    "SlowDown", "RequestTimeout", "RequestTimeoutException", "Throttling",
    "ThrottlingException", "ThrottledException", "RequestThrottledException",
    "TooManyRequestsException", "RequestThrottled", "RequestLimitExceeded",
    "BandwidthLimitExceeded", "PriorRequestNotComplete", "InternalError",
    "ServiceUnavailable", "RequestTimeTooSkewed", NULL};
static const char *const NOTFOUND_CODES[] = {
    "NoSuchKey", "NoSuchBucket", "NoSuchUpload", "NotFound", "QueueDoesNotExist",
    "AWS.SimpleQueueService.NonExistentQueue", NULL};
static const char *const AUTH_CODES[] = {
    "AccessDenied", "SignatureDoesNotMatch", "InvalidAccessKeyId", "ExpiredToken",
    "InvalidClientTokenId", "UnrecognizedClientException", "InvalidToken",
    "MissingAuthenticationToken", "IncompleteSignature", "AuthFailure",
    "TokenRefreshRequired", "InvalidSecurity", "AccessDeniedException", NULL};

bool aws_classify_response(aws_op *op)
{
    aws_result *r = op->result;
    aws_error_info x;
    aws_error_parse(op->resp_body.data, op->resp_body.len, &op->resp_headers, &x);
    long st = op->http_status;
    if (!x.code[0])
        snprintf(x.code, sizeof x.code, "%s",
                 st == 404 ? "NotFound" : st == 403 ? "Forbidden" : st >= 500 ? "ServerError" : "HTTPError");
    snprintf(r->code, sizeof r->code, "%s", x.code);
    snprintf(r->request_id, sizeof r->request_id, "%s", x.request_id);
    cnp_err_set(&r->err, "%s: HTTP %ld %s%s%s%s%s%s", op->what, st, x.code,
                x.message[0] ? ": " : "", x.message, x.request_id[0] ? " (request id " : "",
                x.request_id, x.request_id[0] ? ")" : "");
    const char *bucket_region = aws_kvlist_get(&op->resp_headers, "x-amz-bucket-region");
    if (bucket_region && (st == 301 || st == 400) &&
        strcmp(bucket_region, op->batch->client->region) != 0) {
        /* The usual cause of S3's 301/400 here: the wrong region. */
        char hint[200];
        snprintf(hint, sizeof hint, " (the bucket is in %.60s, not %.60s: set [aws] region)",
                 bucket_region, op->batch->client->region);
        size_t used = strlen(r->err.msg);
        snprintf(r->err.msg + used, sizeof r->err.msg - used, "%s", hint);
    }
    bool retry = st >= 500 || st == 429 || code_in(x.code, RETRY_CODES) ||
                 strncmp(x.code, "Throttling", 10) == 0;
    if (retry)
        r->status = CNP_ERR_TRANSIENT;
    else if (st == 404 || code_in(x.code, NOTFOUND_CODES))
        r->status = CNP_ERR_NOTFOUND;
    else if (st == 401 || st == 403 || code_in(x.code, AUTH_CODES))
        r->status = CNP_ERR_AUTH;
    else
        r->status = CNP_ERR_REMOTE;
    return retry;
}

/* ---- raw requests ---------------------------------------------------------- */

typedef struct raw_ctx {
    cnp_buf *resp;
} raw_ctx;

static void raw_done(aws_op *op)
{
    raw_ctx *ctx = op->ctx;
    if (ctx->resp && op->resp_body.len)
        cnp_buf_append(ctx->resp, op->resp_body.data, op->resp_body.len);
}

cnp_status aws_request_raw(aws_client *client, const char *service, const char *method,
                           const char *url, const void *body, size_t body_len, cnp_buf *resp,
                           aws_result *result)
{
    aws_endpoint ep;
    cnp_status st = aws_endpoint_parse(url, &ep, &result->err);
    if (st != CNP_OK) {
        result->status = st;
        return st;
    }
    aws_op *op = aws_op_new(strcmp(service, "sqs") == 0 ? "sqs" : "s3", method, url);
    if (!op)
        return CNP_ERR_NOMEM;
    const char *after = strstr(url, "://") + 3;
    const char *path = strchr(after, '/');
    const char *q = path ? strchr(path, '?') : NULL;
    op->authority = strdup(ep.authority);
    op->canon_path = path ? strndup(path, q ? (size_t)(q - path) : strlen(path)) : strdup("/");
    op->canon_query = strdup(q ? q + 1 : "");
    op->url = strdup(url);
    raw_ctx ctx = {resp};
    op->ctx = &ctx;
    op->done = raw_done;
    op->head = strcmp(method, "HEAD") == 0;
    op->result = result;
    if (!op->authority || !op->canon_path || !op->canon_query || !op->url) {
        aws_op_free(op);
        return CNP_ERR_NOMEM;
    }
    if (body)
        aws_op_set_body(op, body, body_len);
    return aws_op_run_sync(client, op);
}
