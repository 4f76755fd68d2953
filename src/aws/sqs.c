/* SQS with the AWS JSON 1.0 protocol: every call is a POST to the endpoint
 * root with X-Amz-Target: AmazonSQS.<Op> and a JSON body (cJSON). */
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cjson/cJSON.h>

#include "aws/aws_internal.h"
#include "canopy/log.h"
#include "canopy/sqs.h"

/* Builds an op for one SQS action; takes ownership of body. */
static aws_op *sqs_op(aws_client *c, const char *action, const char *queue, cJSON *body)
{
    char what[600];
    snprintf(what, sizeof what, "SQS %s %.500s", action, queue ? queue : "");
    char *json = body ? cJSON_PrintUnformatted(body) : NULL;
    cJSON_Delete(body);
    aws_op *op = json ? aws_op_new("sqs", "POST", what) : NULL;
    char target[96];
    snprintf(target, sizeof target, "AmazonSQS.%s", action);
    if (!op || aws_op_set_target(op, &c->sqs, NULL, "/", NULL) != CNP_OK ||
        aws_kvlist_add(&op->headers, "content-type", "application/x-amz-json-1.0") != CNP_OK ||
        aws_kvlist_add(&op->headers, "x-amz-target", target) != CNP_OK) {
        aws_op_free(op);
        free(json);
        return NULL;
    }
    cnp_buf b = {.data = (uint8_t *)json, .len = strlen(json), .cap = strlen(json) + 1};
    aws_op_take_body(op, &b);
    return op;
}

static cJSON *queue_body(const char *queue_url)
{
    cJSON *b = cJSON_CreateObject();
    if (b && !cJSON_AddStringToObject(b, "QueueUrl", queue_url)) {
        cJSON_Delete(b);
        return NULL;
    }
    return b;
}

static cnp_status nomem(aws_result *r, const char *what)
{
    memset(r, 0, sizeof *r);
    r->status = CNP_ERR_NOMEM;
    cnp_err_set(&r->err, "%s: out of memory", what);
    return CNP_ERR_NOMEM;
}

/* Runs op synchronously; parse (may be NULL) reads the JSON answer into out. */
typedef cnp_status (*json_reader)(const cJSON *doc, void *out);

typedef struct sync_ctx {
    json_reader read;
    void *out;
} sync_ctx;

static void sync_done(aws_op *op)
{
    sync_ctx *ctx = op->ctx;
    if (op->result->status != CNP_OK || !ctx->read)
        return;
    cJSON *doc = cJSON_ParseWithLength((const char *)op->resp_body.data, op->resp_body.len);
    cnp_status st = doc ? ctx->read(doc, ctx->out) : CNP_ERR_FORMAT;
    cJSON_Delete(doc);
    if (st != CNP_OK) {
        op->result->status = st == CNP_ERR_NOMEM ? st : CNP_ERR_REMOTE;
        cnp_err_set(&op->result->err, "%s: unexpected response", op->what);
    }
}

static cnp_status run_json(aws_client *c, aws_op *op, json_reader read, void *out,
                           aws_result *result)
{
    aws_result tmp;
    if (!result)
        result = &tmp;
    if (!op)
        return nomem(result, "SQS");
    sync_ctx ctx = {read, out};
    op->ctx = &ctx;
    op->done = sync_done;
    op->result = result;
    return aws_op_run_sync(c, op);
}

static const char *json_str(const cJSON *obj, const char *name)
{
    const cJSON *v = cJSON_GetObjectItemCaseSensitive(obj, name);
    return cJSON_IsString(v) ? v->valuestring : NULL;
}

/* ---- receive ------------------------------------------------------------------ */

void sqs_message_free(sqs_message *m)
{
    if (!m)
        return;
    free(m->message_id);
    free(m->receipt_handle);
    free(m->body);
    free(m->md5_of_body);
    aws_kvlist_free(&m->attributes);
    for (size_t k = 0; k < m->n_msg_attrs; k++) {
        free(m->msg_attrs[k].name);
        free(m->msg_attrs[k].data_type);
        free(m->msg_attrs[k].value);
    }
    free(m->msg_attrs);
    memset(m, 0, sizeof *m);
}

void sqs_message_list_free(sqs_message_list *list)
{
    if (!list)
        return;
    for (size_t i = 0; i < list->n; i++)
        sqs_message_free(&list->items[i]);
    free(list->items);
    list->items = NULL;
    list->n = 0;
}

static char *dup_or_empty(const char *s)
{
    return strdup(s ? s : "");
}

static cnp_status read_message(const cJSON *jm, sqs_message *m)
{
    m->message_id = dup_or_empty(json_str(jm, "MessageId"));
    m->receipt_handle = dup_or_empty(json_str(jm, "ReceiptHandle"));
    m->body = dup_or_empty(json_str(jm, "Body"));
    m->md5_of_body = dup_or_empty(json_str(jm, "MD5OfBody"));
    if (!m->message_id || !m->receipt_handle || !m->body || !m->md5_of_body)
        return CNP_ERR_NOMEM;
    /* Only an object's members have names: an array here is no attribute. */
    const cJSON *attrs = cJSON_GetObjectItemCaseSensitive(jm, "Attributes");
    if (!cJSON_IsObject(attrs))
        attrs = NULL;
    const cJSON *a;
    cJSON_ArrayForEach(a, attrs)
    {
        if (cJSON_IsString(a) && aws_kvlist_add(&m->attributes, a->string, a->valuestring) != CNP_OK)
            return CNP_ERR_NOMEM;
    }
    const char *rc = aws_kvlist_get(&m->attributes, "ApproximateReceiveCount");
    long count = rc ? strtol(rc, NULL, 10) : 0; /* atoi is undefined past INT_MAX */
    m->receive_count = count < 0 ? 0 : count > INT_MAX ? INT_MAX : (int)count;
    const cJSON *mattrs = cJSON_GetObjectItemCaseSensitive(jm, "MessageAttributes");
    int n = cJSON_IsObject(mattrs) ? cJSON_GetArraySize(mattrs) : 0;
    if (n > 0 && !(m->msg_attrs = calloc((size_t)n, sizeof *m->msg_attrs)))
        return CNP_ERR_NOMEM;
    const cJSON *each = n > 0 ? mattrs : NULL;
    cJSON_ArrayForEach(a, each)
    {
        sqs_msg_attr *ma = &m->msg_attrs[m->n_msg_attrs++];
        const char *v = json_str(a, "StringValue");
        ma->name = strdup(a->string);
        ma->data_type = dup_or_empty(json_str(a, "DataType"));
        ma->value = dup_or_empty(v ? v : json_str(a, "BinaryValue"));
        if (!ma->name || !ma->data_type || !ma->value)
            return CNP_ERR_NOMEM;
    }
    return CNP_OK;
}

static cnp_status read_messages(const cJSON *doc, void *out)
{
    sqs_message_list *list = out;
    const cJSON *msgs = cJSON_GetObjectItemCaseSensitive(doc, "Messages");
    int n = cJSON_IsArray(msgs) ? cJSON_GetArraySize(msgs) : 0;
    if (n == 0)
        return CNP_OK;
    list->items = calloc((size_t)n, sizeof *list->items);
    if (!list->items)
        return CNP_ERR_NOMEM;
    const cJSON *jm;
    cJSON_ArrayForEach(jm, msgs)
    {
        cnp_status st = read_message(jm, &list->items[list->n++]);
        if (st != CNP_OK)
            return st;
    }
    return CNP_OK;
}

cnp_status sqs_receive_parse(const void *body, size_t len, sqs_message_list *out)
{
    memset(out, 0, sizeof *out);
    cJSON *doc = cJSON_ParseWithLength(body ? (const char *)body : "", len);
    if (!doc)
        return CNP_ERR_FORMAT;
    cnp_status st = read_messages(doc, out);
    cJSON_Delete(doc);
    return st;
}

cnp_status sqs_receive(aws_client *client, const char *queue_url, int max, int wait_seconds,
                       int visibility_timeout, const volatile int *cancel,
                       sqs_message_list *out, aws_result *result)
{
    memset(out, 0, sizeof *out);
    max = max < 1 ? 1 : max > 10 ? 10 : max;
    wait_seconds = wait_seconds < 0 ? 0 : wait_seconds > 20 ? 20 : wait_seconds;
    cJSON *b = queue_body(queue_url);
    cJSON *all = cJSON_CreateStringArray((const char *[]){"All"}, 1);
    cJSON *all2 = cJSON_CreateStringArray((const char *[]){"All"}, 1);
    cJSON *all3 = cJSON_CreateStringArray((const char *[]){"All"}, 1);
    bool ok = b && all && all2 && all3 && cJSON_AddNumberToObject(b, "MaxNumberOfMessages", max) &&
              cJSON_AddNumberToObject(b, "WaitTimeSeconds", wait_seconds) &&
              (visibility_timeout < 0 ||
               cJSON_AddNumberToObject(b, "VisibilityTimeout", visibility_timeout));
    if (ok) {
        cJSON_AddItemToObject(b, "AttributeNames", all);
        cJSON_AddItemToObject(b, "MessageSystemAttributeNames", all2);
        cJSON_AddItemToObject(b, "MessageAttributeNames", all3);
        all = all2 = all3 = NULL;
    }
    cJSON_Delete(all);
    cJSON_Delete(all2);
    cJSON_Delete(all3);
    if (!ok) {
        cJSON_Delete(b);
        b = NULL;
    }
    aws_op *op = b ? sqs_op(client, "ReceiveMessage", queue_url, b) : NULL;
    if (op) {
        op->min_idle_s = wait_seconds + 15; /* a long poll is silent until it answers */
        op->cancel = cancel;
    }
    cnp_status st = run_json(client, op, read_messages, out, result);
    if (st != CNP_OK)
        sqs_message_list_free(out);
    return st;
}

/* ---- batch calls with per-entry results ------------------------------------------- */

typedef struct entry_batch_ctx {
    sqs_entry_result *results; /* the caller's array, indexed by entry */
    size_t first;
    size_t count;
    aws_result *overall;       /* first request failure; attempts summed */
} entry_batch_ctx;

static cnp_status status_for_code(const char *code, bool sender_fault)
{
    if (strstr(code, "Throttl") || strcmp(code, "InternalError") == 0 || !sender_fault)
        return CNP_ERR_TRANSIENT;
    if (strcmp(code, "ReceiptHandleIsInvalid") == 0 || strcmp(code, "InvalidReceiptHandle") == 0)
        return CNP_ERR_NOTFOUND;
    return CNP_ERR_REMOTE;
}

/* The result slot of a response entry, by its "Id" (our index), cleared;
 * NULL when the Id is not one of this request's entries. */
static sqs_entry_result *entry_for(const entry_batch_ctx *ctx, const cJSON *e)
{
    const char *id = json_str(e, "Id");
    size_t idx = id ? strtoul(id, NULL, 10) : (size_t)-1;
    if (idx < ctx->first || idx >= ctx->first + ctx->count)
        return NULL;
    sqs_entry_result *er = &ctx->results[idx];
    memset(er, 0, sizeof *er);
    return er;
}

/* Fills the context's results from a parsed batch answer. */
static void read_entries(const cJSON *doc, const entry_batch_ctx *ctx)
{
    /* Entries neither listed as successful nor failed count as failed. */
    for (size_t i = ctx->first; i < ctx->first + ctx->count; i++) {
        ctx->results[i].status = CNP_ERR_REMOTE;
        snprintf(ctx->results[i].message, sizeof ctx->results[i].message,
                 "entry missing from the response");
    }
    const cJSON *e;
    cJSON_ArrayForEach(e, cJSON_GetObjectItemCaseSensitive(doc, "Successful"))
    {
        sqs_entry_result *er = entry_for(ctx, e);
        if (!er)
            continue;
        const char *mid = json_str(e, "MessageId");
        snprintf(er->message_id, sizeof er->message_id, "%s", mid ? mid : "");
    }
    cJSON_ArrayForEach(e, cJSON_GetObjectItemCaseSensitive(doc, "Failed"))
    {
        sqs_entry_result *er = entry_for(ctx, e);
        if (!er)
            continue;
        const char *code = json_str(e, "Code");
        const char *msg = json_str(e, "Message");
        er->sender_fault = cJSON_IsTrue(cJSON_GetObjectItemCaseSensitive(e, "SenderFault"));
        snprintf(er->code, sizeof er->code, "%s", code ? code : "");
        snprintf(er->message, sizeof er->message, "%s", msg ? msg : "");
        er->status = status_for_code(er->code, er->sender_fault);
    }
}

static void entries_done(aws_op *op)
{
    entry_batch_ctx *ctx = op->ctx;
    aws_result *r = op->result;
    cJSON *doc = NULL;
    if (r->status == CNP_OK) {
        doc = cJSON_ParseWithLength((const char *)op->resp_body.data, op->resp_body.len);
        if (!doc) {
            r->status = CNP_ERR_REMOTE;
            cnp_err_set(&r->err, "%s: unexpected response", op->what);
        }
    }
    if (r->status != CNP_OK) {
        for (size_t i = ctx->first; i < ctx->first + ctx->count; i++) {
            ctx->results[i].status = r->status;
            snprintf(ctx->results[i].code, sizeof ctx->results[i].code, "%s", r->code);
            snprintf(ctx->results[i].message, sizeof ctx->results[i].message, "%.250s", r->err.msg);
        }
        if (ctx->overall->status == CNP_OK) {
            int attempts = ctx->overall->attempts;
            *ctx->overall = *r;
            ctx->overall->attempts = attempts;
        }
        ctx->overall->attempts += r->attempts;
        return;
    }
    ctx->overall->attempts += r->attempts;
    read_entries(doc, ctx);
    cJSON_Delete(doc);
}

cnp_status sqs_entries_parse(const void *body, size_t len, sqs_entry_result *results,
                             size_t first, size_t count)
{
    cJSON *doc = cJSON_ParseWithLength(body ? (const char *)body : "", len);
    if (!doc)
        return CNP_ERR_FORMAT;
    aws_result overall = {0};
    entry_batch_ctx ctx = {results, first, count, &overall};
    read_entries(doc, &ctx);
    cJSON_Delete(doc);
    return CNP_OK;
}

/* Builds one entry's JSON object; *size receives its payload bytes. */
typedef cJSON *(*entry_builder)(const void *input, size_t i, size_t *size);

static cnp_status run_entry_batches(aws_client *client, const char *action,
                                    const char *queue_url, const void *input, size_t n,
                                    entry_builder build, sqs_entry_result *results,
                                    aws_result *result)
{
    aws_result tmp;
    if (!result)
        result = &tmp;
    memset(result, 0, sizeof *result);
    memset(results, 0, n * sizeof *results);
    aws_batch *batch = NULL;
    cnp_status st = aws_batch_create(client, &batch, &result->err);
    if (st != CNP_OK)
        return result->status = st;
    size_t i = 0;
    while (i < n && st == CNP_OK) {
        cJSON *body = queue_body(queue_url);
        cJSON *entries = body ? cJSON_AddArrayToObject(body, "Entries") : NULL;
        if (!entries) {
            cJSON_Delete(body);
            st = nomem(result, action);
            break;
        }
        size_t first = i, bytes = 0;
        while (i < n && i - first < SQS_BATCH_MAX) {
            size_t size = 0;
            cJSON *e = build(input, i, &size);
            if (!e) {
                st = CNP_ERR_NOMEM;
                break;
            }
            if (size > SQS_BATCH_BYTES) {
                /* Can never be sent: fail this entry alone. */
                cJSON_Delete(e);
                if (i == first) {
                    results[i].status = CNP_ERR_LIMIT;
                    snprintf(results[i].message, sizeof results[i].message,
                             "entry of %zu bytes exceeds the 256 KiB SQS limit", size);
                    i++;
                    first = i;
                    continue;
                }
                break;
            }
            if (bytes + size > SQS_BATCH_BYTES && i > first) {
                cJSON_Delete(e);
                break;
            }
            bytes += size;
            cJSON_AddItemToArray(entries, e);
            i++;
        }
        if (st != CNP_OK || i == first) {
            cJSON_Delete(body);
            if (st != CNP_OK)
                nomem(result, action);
            continue;
        }
        entry_batch_ctx *ctx = calloc(1, sizeof *ctx);
        aws_op *op = ctx ? sqs_op(client, action, queue_url, body) : (cJSON_Delete(body), NULL);
        if (!op) {
            free(ctx);
            st = nomem(result, action);
            break;
        }
        *ctx = (entry_batch_ctx){results, first, i - first, result};
        op->ctx = ctx;
        op->ctx_free = free;
        op->done = entries_done;
        aws_batch_submit(batch, op);
    }
    if (st == CNP_OK)
        st = aws_batch_run(batch, &result->err);
    aws_batch_free(batch);
    if (st != CNP_OK)
        return result->status = st;
    return result->status;
}

static void entry_id(cJSON *e, size_t i)
{
    char id[24];
    snprintf(id, sizeof id, "%zu", i);
    cJSON_AddStringToObject(e, "Id", id);
}

typedef struct handles_input {
    const char *const *handles;
    const int *timeouts;
} handles_input;

static cJSON *build_handle_entry(const void *input, size_t i, size_t *size)
{
    const handles_input *in = input;
    cJSON *e = cJSON_CreateObject();
    if (!e)
        return NULL;
    entry_id(e, i);
    if (!cJSON_AddStringToObject(e, "ReceiptHandle", in->handles[i]) ||
        (in->timeouts && !cJSON_AddNumberToObject(e, "VisibilityTimeout", in->timeouts[i]))) {
        cJSON_Delete(e);
        return NULL;
    }
    *size = strlen(in->handles[i]);
    return e;
}

cnp_status sqs_delete_batch(aws_client *client, const char *queue_url,
                            const char *const *receipt_handles, size_t n,
                            sqs_entry_result *results, aws_result *result)
{
    handles_input in = {receipt_handles, NULL};
    return run_entry_batches(client, "DeleteMessageBatch", queue_url, &in, n,
                             build_handle_entry, results, result);
}

cnp_status sqs_change_visibility_batch(aws_client *client, const char *queue_url,
                                       const char *const *receipt_handles,
                                       const int *timeouts, size_t n,
                                       sqs_entry_result *results, aws_result *result)
{
    handles_input in = {receipt_handles, timeouts};
    return run_entry_batches(client, "ChangeMessageVisibilityBatch", queue_url, &in, n,
                             build_handle_entry, results, result);
}

static cJSON *build_send_entry(const void *input, size_t i, size_t *size)
{
    const sqs_send_entry *se = &((const sqs_send_entry *)input)[i];
    cJSON *e = cJSON_CreateObject();
    if (!e)
        return NULL;
    entry_id(e, i);
    bool ok = cJSON_AddStringToObject(e, "MessageBody", se->body) != NULL;
    size_t bytes = strlen(se->body);
    if (ok && se->group_id)
        ok = cJSON_AddStringToObject(e, "MessageGroupId", se->group_id) != NULL;
    if (ok && se->dedup_id)
        ok = cJSON_AddStringToObject(e, "MessageDeduplicationId", se->dedup_id) != NULL;
    if (ok && se->delay_seconds > 0)
        ok = cJSON_AddNumberToObject(e, "DelaySeconds", se->delay_seconds) != NULL;
    if (ok && se->attributes && se->attributes->n > 0) {
        cJSON *attrs = cJSON_AddObjectToObject(e, "MessageAttributes");
        ok = attrs != NULL;
        for (size_t k = 0; ok && k < se->attributes->n; k++) {
            const aws_kv *kv = &se->attributes->items[k];
            cJSON *a = cJSON_AddObjectToObject(attrs, kv->name);
            ok = a && cJSON_AddStringToObject(a, "DataType", "String") &&
                 cJSON_AddStringToObject(a, "StringValue", kv->value);
            /* SQS counts name, type and value towards the size limit. */
            bytes += strlen(kv->name) + strlen("String") + strlen(kv->value);
        }
    }
    if (!ok) {
        cJSON_Delete(e);
        return NULL;
    }
    *size = bytes;
    return e;
}

cnp_status sqs_send_batch(aws_client *client, const char *queue_url,
                          const sqs_send_entry *entries, size_t n,
                          sqs_entry_result *results, aws_result *result)
{
    return run_entry_batches(client, "SendMessageBatch", queue_url, entries, n,
                             build_send_entry, results, result);
}

/* ---- queues ----------------------------------------------------------------- */

typedef struct url_dest {
    char *url;
    size_t len;
} url_dest;

static cnp_status read_queue_url(const cJSON *doc, void *out)
{
    url_dest *u = out;
    const char *url = json_str(doc, "QueueUrl");
    if (!url)
        return CNP_ERR_FORMAT;
    snprintf(u->url, u->len, "%s", url);
    return CNP_OK;
}

cnp_status sqs_queue_url(aws_client *client, const char *name, char *url_out, size_t len,
                         aws_result *result)
{
    cJSON *b = cJSON_CreateObject();
    if (b && !cJSON_AddStringToObject(b, "QueueName", name)) {
        cJSON_Delete(b);
        b = NULL;
    }
    url_dest u = {url_out, len};
    return run_json(client, b ? sqs_op(client, "GetQueueUrl", name, b) : NULL, read_queue_url,
                    &u, result);
}

cnp_status sqs_queue_create(aws_client *client, const char *name, const aws_kvlist *attributes,
                            char *url_out, size_t len, aws_result *result)
{
    cJSON *b = cJSON_CreateObject();
    bool ok = b && cJSON_AddStringToObject(b, "QueueName", name);
    if (ok && attributes && attributes->n) {
        cJSON *a = cJSON_AddObjectToObject(b, "Attributes");
        ok = a != NULL;
        for (size_t i = 0; ok && i < attributes->n; i++)
            ok = cJSON_AddStringToObject(a, attributes->items[i].name,
                                         attributes->items[i].value) != NULL;
    }
    if (!ok) {
        cJSON_Delete(b);
        b = NULL;
    }
    url_dest u = {url_out, len};
    return run_json(client, b ? sqs_op(client, "CreateQueue", name, b) : NULL, read_queue_url,
                    &u, result);
}

static cnp_status read_attributes(const cJSON *doc, void *out)
{
    const cJSON *attrs = cJSON_GetObjectItemCaseSensitive(doc, "Attributes");
    if (!cJSON_IsObject(attrs))
        attrs = NULL;
    const cJSON *a;
    cJSON_ArrayForEach(a, attrs)
    {
        if (cJSON_IsString(a) && aws_kvlist_add(out, a->string, a->valuestring) != CNP_OK)
            return CNP_ERR_NOMEM;
    }
    return CNP_OK;
}

cnp_status sqs_attributes_parse(const void *body, size_t len, aws_kvlist *out)
{
    cJSON *doc = cJSON_ParseWithLength(body ? (const char *)body : "", len);
    if (!doc)
        return CNP_ERR_FORMAT;
    cnp_status st = read_attributes(doc, out);
    cJSON_Delete(doc);
    return st;
}

cnp_status sqs_queue_attributes(aws_client *client, const char *queue_url, aws_kvlist *out,
                                aws_result *result)
{
    cJSON *b = queue_body(queue_url);
    cJSON *all = cJSON_CreateStringArray((const char *[]){"All"}, 1);
    if (b && all) {
        cJSON_AddItemToObject(b, "AttributeNames", all);
    } else {
        cJSON_Delete(all);
        cJSON_Delete(b);
        b = NULL;
    }
    return run_json(client, b ? sqs_op(client, "GetQueueAttributes", queue_url, b) : NULL,
                    read_attributes, out, result);
}

cnp_status sqs_queue_purge(aws_client *client, const char *queue_url, aws_result *result)
{
    cJSON *b = queue_body(queue_url);
    return run_json(client, b ? sqs_op(client, "PurgeQueue", queue_url, b) : NULL, NULL, NULL,
                    result);
}

cnp_status sqs_queue_delete(aws_client *client, const char *queue_url, aws_result *result)
{
    cJSON *b = queue_body(queue_url);
    return run_json(client, b ? sqs_op(client, "DeleteQueue", queue_url, b) : NULL, NULL, NULL,
                    result);
}
