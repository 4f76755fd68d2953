/* S3 operations as engine ops: GetObject, HeadObject, PutObject,
 * ListObjectsV2, CreateBucket, DeleteObject, and the XML of the answers
 * (expat), the multipart ones' included. A put's body is memory or the head
 * of a file, opened once per put: a single PutObject's op owns the
 * descriptor; a put larger than [aws] multipart_threshold goes to
 * s3_multipart.c, where the upload's parts share it. */
#include <ctype.h>
#include <limits.h>
#include <errno.h>
#include <fcntl.h>
#include <sys/stat.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#include <strings.h>

#include <expat.h>

#include "aws/aws_internal.h"
#include "canopy/log.h"
#include "canopy/s3.h"

/* ---- a small expat walker: element start/end with parent and text ---------- */

typedef struct xml_walk {
    void (*on_start)(void *ud, const char *name);
    void (*on_end)(void *ud, const char *parent, const char *name, const char *text);
    void *ud;
    cnp_buf text;
    char stack[8][64];
    int depth;
    bool nomem;
} xml_walk;

static void XMLCALL xw_start(void *p, const XML_Char *name, const XML_Char **attrs)
{
    xml_walk *w = p;
    if (w->depth < 8)
        snprintf(w->stack[w->depth], sizeof w->stack[0], "%s", name);
    w->depth++;
    w->text.len = 0;
    if (w->on_start)
        w->on_start(w->ud, name);
}

static void XMLCALL xw_end(void *p, const XML_Char *name)
{
    xml_walk *w = p;
    if (cnp_buf_append(&w->text, "", 1) != CNP_OK) {
        w->nomem = true;
        return;
    }
    w->depth--;
    const char *parent = w->depth >= 1 && w->depth <= 8 ? w->stack[w->depth - 1] : "";
    if (w->on_end)
        w->on_end(w->ud, parent, name, (const char *)w->text.data);
    w->text.len = 0;
}

static void XMLCALL xw_text(void *p, const XML_Char *s, int len)
{
    xml_walk *w = p;
    if (cnp_buf_append(&w->text, s, (size_t)len) != CNP_OK)
        w->nomem = true;
}

static cnp_status xml_walk_run(xml_walk *w, const void *doc, size_t len)
{
    XML_Parser p = XML_ParserCreate("UTF-8");
    if (!p)
        return CNP_ERR_NOMEM;
    XML_SetUserData(p, w);
    XML_SetElementHandler(p, xw_start, xw_end);
    XML_SetCharacterDataHandler(p, xw_text);
    enum XML_Status st = len > INT_MAX ? XML_STATUS_ERROR
                                       : XML_Parse(p, doc ? (const char *)doc : "", (int)len, 1);
    XML_ParserFree(p);
    cnp_buf_free(&w->text);
    if (w->nomem)
        return CNP_ERR_NOMEM;
    return st == XML_STATUS_OK ? CNP_OK : CNP_ERR_FORMAT;
}

/* ---- addressing -------------------------------------------------------------- */

static bool dns_compatible(const char *bucket)
{
    size_t n = strlen(bucket);
    if (n < 3 || n > 63)
        return false;
    for (size_t i = 0; i < n; i++) {
        char c = bucket[i];
        if (!(islower((unsigned char)c) || isdigit((unsigned char)c) || c == '-'))
            return false; /* dots break TLS wildcard certificates */
    }
    return bucket[0] != '-' && bucket[n - 1] != '-';
}

/* Builds an op aimed at bucket/key (key NULL: the bucket itself); what names
 * the call in errors. */
static aws_op *s3_op_what(aws_client *c, const char *method, const char *what,
                          const char *bucket, const char *key, const aws_kvlist *query)
{
    aws_op *op = aws_op_new("s3", method, what);
    if (!op)
        return NULL;
    bool path_style = c->s3.custom || !dns_compatible(bucket);
    char authority[400];
    snprintf(authority, sizeof authority, "%s.%s", bucket, c->s3.authority);
    cnp_buf path = {0};
    cnp_status result = CNP_OK;
    if (path_style) {
        result = cnp_buf_append(&path, "/", 1);
        if (result == CNP_OK)
            result = aws_uri_encode(&path, bucket, strlen(bucket), false);
    }
    if (result == CNP_OK)
        result = cnp_buf_append(&path, "/", 1);
    if (result == CNP_OK && key)
        result = aws_uri_encode(&path, key, strlen(key), true);
    if (result == CNP_OK)
        result = cnp_buf_append(&path, "", 1);
    if (result == CNP_OK)
        result = aws_op_set_target(op, &c->s3, path_style ? NULL : authority,
                                   (const char *)path.data, query);
    cnp_buf_free(&path);
    if (result != CNP_OK) {
        aws_op_free(op);
        return NULL;
    }
    return op;
}

aws_op *s3_op(aws_client *c, const char *method, const char *opname, const char *bucket,
              const char *key, const aws_kvlist *query)
{
    char what[600];
    snprintf(what, sizeof what, "%s s3://%s/%.400s", opname, bucket, key ? key : "");
    return s3_op_what(c, method, what, bucket, key, query);
}

void s3_copy_etag(char *dst, size_t len, const char *etag)
{
    if (!etag) {
        dst[0] = '\0';
        return;
    }
    size_t n = strlen(etag);
    if (n >= 2 && etag[0] == '"' && etag[n - 1] == '"')
        snprintf(dst, len, "%.*s", (int)(n - 2), etag + 1);
    else
        snprintf(dst, len, "%s", etag);
}

cnp_status s3_add_metadata_headers(aws_op *op, const char *content_type,
                                   const aws_kvlist *metadata)
{
    cnp_status result = aws_kvlist_add(&op->headers, "content-type",
                                       content_type ? content_type : "application/octet-stream");
    for (size_t i = 0; metadata && i < metadata->n && result == CNP_OK; i++) {
        char name[256];
        snprintf(name, sizeof name, "x-amz-meta-%s", metadata->items[i].name);
        for (char *p = name; *p; p++)
            *p = (char)tolower((unsigned char)*p);
        result = aws_kvlist_add(&op->headers, name, metadata->items[i].value);
    }
    return result;
}

/* Hands op to the batch for a caller's out: the outcome goes to r (in out),
 * done reads the answer into out, and out is announced when complete. */
static void submit_for(aws_batch *batch, aws_op *op, aws_result *r, void *out,
                       aws_op_done_fn done)
{
    op->result = r;
    op->ctx = out;
    op->done = done;
    op->user_out = out;
    aws_batch_submit(batch, op);
}

/* ---- GetObject / HeadObject ---------------------------------------------------- */

void s3_object_free(s3_object *obj)
{
    if (!obj)
        return;
    cnp_buf_free(&obj->body);
    aws_kvlist_free(&obj->metadata);
    if (obj->spill_path[0]) {
        unlink(obj->spill_path);
        obj->spill_path[0] = '\0';
    }
}

static void object_done(aws_op *op)
{
    s3_object *o = op->ctx;
    if (o->result.status != CNP_OK)
        return;
    const aws_kvlist *h = &op->resp_headers;
    const char *cl = aws_kvlist_get(h, "content-length");
    o->size = cl ? strtoll(cl, NULL, 10) : (int64_t)op->resp_body.len;
    s3_copy_etag(o->etag, sizeof o->etag, aws_kvlist_get(h, "etag"));
    const char *ct = aws_kvlist_get(h, "content-type");
    snprintf(o->content_type, sizeof o->content_type, "%s", ct ? ct : "");
    const char *lm = aws_kvlist_get(h, "last-modified");
    snprintf(o->last_modified, sizeof o->last_modified, "%s", lm ? lm : "");
    for (size_t i = 0; i < h->n; i++) {
        if (strncmp(h->items[i].name, "x-amz-meta-", 11) == 0 &&
            aws_kvlist_add(&o->metadata, h->items[i].name + 11, h->items[i].value) != CNP_OK) {
            o->result.status = CNP_ERR_NOMEM;
            return;
        }
    }
    if (!op->head && op->spill_fd >= 0) { /* the body is in a temporary file: take it */
        if (close(op->spill_fd) != 0) {
            o->result.status = CNP_ERR_IO;
            cnp_err_set(&o->result.err, "%s: closing %s: %s", op->what, op->spill_path,
                        strerror(errno));
            unlink(op->spill_path);
        } else {
            snprintf(o->spill_path, sizeof o->spill_path, "%s", op->spill_path);
            o->size = op->spill_len;
        }
        op->spill_fd = -1;
    } else if (!op->head) {
        o->body = op->resp_body;
        memset(&op->resp_body, 0, sizeof op->resp_body);
    }
}

static cnp_status batch_object(aws_batch *batch, const char *bucket, const char *key,
                               int64_t max_bytes, int64_t spill_over, bool head, s3_object *out)
{
    memset(out, 0, sizeof *out);
    aws_op *op = s3_op(aws_batch_client(batch), head ? "HEAD" : "GET",
                       head ? "HeadObject" : "GetObject", bucket, key, NULL);
    if (!op) {
        out->result.status = CNP_ERR_NOMEM;
        cnp_err_set(&out->result.err, "s3://%s/%s: out of memory", bucket, key);
        return CNP_ERR_NOMEM;
    }
    op->head = head;
    op->max_bytes = head ? 0 : max_bytes;
    op->spill_over = head ? 0 : spill_over;
    submit_for(batch, op, &out->result, out, object_done);
    return CNP_OK;
}

cnp_status s3_batch_get(aws_batch *batch, const char *bucket, const char *key,
                        int64_t max_bytes, s3_object *out)
{
    return batch_object(batch, bucket, key, max_bytes, 0, false, out);
}

cnp_status s3_batch_get_spill(aws_batch *batch, const char *bucket, const char *key,
                              int64_t max_bytes, int64_t spill_over, s3_object *out)
{
    return batch_object(batch, bucket, key, max_bytes, spill_over, false, out);
}

/* Runs a one-op batch; copies the op's error to err. */
static cnp_status run_single(aws_client *client, aws_batch *b, aws_result *r, cnp_err *err)
{
    cnp_status result = aws_batch_run(b, err);
    aws_batch_free(b);
    if (result != CNP_OK)
        return result;
    if (r->status != CNP_OK && err)
        *err = r->err;
    return r->status;
}

static cnp_status object_sync(aws_client *client, const char *bucket, const char *key,
                              int64_t max_bytes, bool head, s3_object *out, cnp_err *err)
{
    aws_batch *b = NULL;
    cnp_status result = aws_batch_create(client, &b, err);
    if (result != CNP_OK)
        return result;
    result = batch_object(b, bucket, key, max_bytes, 0, head, out);
    if (result != CNP_OK) {
        aws_batch_free(b);
        return result;
    }
    return run_single(client, b, &out->result, err);
}

cnp_status s3_object_get(aws_client *client, const char *bucket, const char *key,
                         int64_t max_bytes, s3_object *out, cnp_err *err)
{
    return object_sync(client, bucket, key, max_bytes, false, out, err);
}

cnp_status s3_object_head(aws_client *client, const char *bucket, const char *key,
                          s3_object *out, cnp_err *err)
{
    return object_sync(client, bucket, key, 0, true, out, err);
}

/* ---- PutObject (multipart uploads: s3_multipart.c) ---------------------------- */

static void put_done(aws_op *op)
{
    s3_put_result *r = op->ctx;
    if (r->result.status == CNP_OK)
        s3_copy_etag(r->etag, sizeof r->etag, aws_kvlist_get(&op->resp_headers, "etag"));
}

/* Queues a single PutObject; takes fd (-1: the body is put->data). */
static cnp_status submit_single(aws_batch *batch, const s3_put *put, int fd,
                                s3_put_result *out)
{
    aws_op *op = s3_op(aws_batch_client(batch), "PUT", "PutObject", put->bucket, put->key, NULL);
    cnp_status result = op ? CNP_OK : CNP_ERR_NOMEM;
    if (op && fd >= 0)
        result = aws_op_set_body_file(op, fd, true, put->file, 0, put->len, &out->result.err);
    else if (op)
        aws_op_set_body(op, put->data, put->len);
    else if (fd >= 0)
        close(fd);
    if (result == CNP_OK)
        result = s3_add_metadata_headers(op, put->content_type, put->metadata);
    if (result != CNP_OK) {
        aws_op_free(op);
        return result;
    }
    submit_for(batch, op, &out->result, out, put_done);
    return CNP_OK;
}

/* Opens put->file for its first put->len bytes: the descriptor, or -1 with
 * r set (CNP_ERR_IO, naming the file and why). */
static int put_file_open(const s3_put *put, aws_result *r)
{
    struct stat st;
    int fd = open(put->file, O_RDONLY | O_CLOEXEC);
    bool opened = fd >= 0 && fstat(fd, &st) == 0;
    if (opened && (uint64_t)st.st_size >= (uint64_t)put->len)
        return fd;
    r->status = CNP_ERR_IO;
    if (!opened)
        cnp_err_set(&r->err, "PutObject s3://%s/%s: opening %s: %s", put->bucket, put->key,
                    put->file, strerror(errno));
    else
        cnp_err_set(&r->err, "PutObject s3://%s/%s: %s has %lld bytes, fewer than the %zu to send",
                    put->bucket, put->key, put->file, (long long)st.st_size, put->len);
    if (fd >= 0)
        close(fd);
    return -1;
}

cnp_status s3_batch_put(aws_batch *batch, const s3_put *put, s3_put_result *out)
{
    memset(out, 0, sizeof *out);
    int fd = -1;
    if (put->file && (fd = put_file_open(put, &out->result)) < 0)
        return out->result.status;
    cnp_status result = (int64_t)put->len > aws_batch_client(batch)->aws.multipart_threshold
                            ? s3_multipart_submit(batch, put, fd, out)
                            : submit_single(batch, put, fd, out);
    if (result != CNP_OK)
        out->result.status = result;
    if (result == CNP_ERR_NOMEM)
        cnp_err_set(&out->result.err, "PutObject s3://%s/%s: out of memory", put->bucket,
                    put->key);
    return result;
}

cnp_status s3_object_put(aws_client *client, const s3_put *put, s3_put_result *out,
                         cnp_err *err)
{
    aws_batch *b = NULL;
    cnp_status result = aws_batch_create(client, &b, err);
    if (result != CNP_OK)
        return result;
    result = s3_batch_put(b, put, out);
    if (result != CNP_OK) {
        aws_batch_free(b);
        if (err)
            *err = out->result.err;
        return result;
    }
    return run_single(client, b, &out->result, err);
}

/* ---- simple bucket and object calls --------------------------------------------- */

static cnp_status simple_call(aws_client *client, aws_op *op, cnp_err *err)
{
    if (!op) {
        cnp_err_set(err, "s3: out of memory");
        return CNP_ERR_NOMEM;
    }
    aws_result r;
    op->result = &r;
    cnp_status result = aws_op_run_sync(client, op);
    if (result != CNP_OK && err)
        *err = r.err;
    return result == CNP_OK ? CNP_OK : r.status ? r.status : result;
}

cnp_status s3_object_delete(aws_client *client, const char *bucket, const char *key,
                            cnp_err *err)
{
    return simple_call(client, s3_op(client, "DELETE", "DeleteObject", bucket, key, NULL), err);
}

cnp_status s3_bucket_create(aws_client *client, const char *bucket, cnp_err *err)
{
    aws_op *op = s3_op(client, "PUT", "CreateBucket", bucket, NULL, NULL);
    if (op && strcmp(client->region, "us-east-1") != 0) {
        cnp_buf body = {0};
        if (cnp_buf_printf(&body,
                           "<CreateBucketConfiguration xmlns=\"http://s3.amazonaws.com/doc/"
                           "2006-03-01/\"><LocationConstraint>%s</LocationConstraint>"
                           "</CreateBucketConfiguration>",
                           client->region) != CNP_OK) {
            aws_op_free(op);
            return CNP_ERR_NOMEM;
        }
        aws_op_take_body(op, &body);
    }
    aws_result r;
    if (!op)
        return CNP_ERR_NOMEM;
    op->result = &r;
    cnp_status result = aws_op_run_sync(client, op);
    if (result != CNP_OK && strcmp(r.code, "BucketAlreadyOwnedByYou") == 0)
        return CNP_OK;
    if (result != CNP_OK && err)
        *err = r.err;
    return result;
}

/* ---- ListObjectsV2 ----------------------------------------------------------------- */

void s3_list_page_free(s3_list_page *page)
{
    if (!page)
        return;
    for (size_t i = 0; i < page->n; i++)
        free(page->entries[i].key);
    free(page->entries);
    free(page->next_token);
    page->entries = NULL;
    page->next_token = NULL;
    page->n = 0;
}

typedef struct list_parse {
    s3_list_page *page;
    size_t cap;
    bool nomem;
} list_parse;

static void list_start(void *ud, const char *name)
{
    list_parse *lp = ud;
    if (strcmp(name, "Contents") != 0)
        return;
    s3_list_page *pg = lp->page;
    if (pg->n == lp->cap) {
        size_t cap = lp->cap ? lp->cap * 2 : 64;
        s3_list_entry *e = realloc(pg->entries, cap * sizeof *e);
        if (!e) {
            lp->nomem = true;
            return;
        }
        pg->entries = e;
        lp->cap = cap;
    }
    memset(&pg->entries[pg->n++], 0, sizeof pg->entries[0]);
}

static void list_end(void *ud, const char *parent, const char *name, const char *text)
{
    list_parse *lp = ud;
    s3_list_page *pg = lp->page;
    if (strcmp(parent, "Contents") == 0 && pg->n > 0 && !lp->nomem) {
        s3_list_entry *e = &pg->entries[pg->n - 1];
        if (strcmp(name, "Key") == 0 && !e->key && !(e->key = strdup(text)))
            lp->nomem = true;
        else if (strcmp(name, "Size") == 0)
            e->size = strtoll(text, NULL, 10);
        else if (strcmp(name, "ETag") == 0)
            s3_copy_etag(e->etag, sizeof e->etag, text);
        else if (strcmp(name, "LastModified") == 0)
            snprintf(e->last_modified, sizeof e->last_modified, "%s", text);
    } else if (strcmp(parent, "ListBucketResult") == 0) {
        if (strcmp(name, "IsTruncated") == 0)
            pg->truncated = strcmp(text, "true") == 0;
        else if (strcmp(name, "NextContinuationToken") == 0 && !pg->next_token &&
                 !(pg->next_token = strdup(text)))
            lp->nomem = true;
    }
}

cnp_status s3_list_parse(const void *body, size_t len, s3_list_page *page)
{
    list_parse lp = {.page = page};
    xml_walk w = {.on_start = list_start, .on_end = list_end, .ud = &lp};
    cnp_status st = xml_walk_run(&w, body, len);
    if (st == CNP_OK && lp.nomem)
        st = CNP_ERR_NOMEM;
    for (size_t i = 0; st == CNP_OK && i < page->n; i++)
        if (!page->entries[i].key)
            st = CNP_ERR_FORMAT;
    if (!page->truncated) {
        free(page->next_token);
        page->next_token = NULL;
    }
    return st;
}

static void list_done(aws_op *op)
{
    s3_list_page *pg = op->ctx;
    if (pg->result.status != CNP_OK)
        return;
    cnp_status st = s3_list_parse(op->resp_body.data, op->resp_body.len, pg);
    if (st != CNP_OK) {
        pg->result.status = st == CNP_ERR_NOMEM ? st : CNP_ERR_REMOTE;
        cnp_err_set(&pg->result.err, "%s: unreadable ListObjectsV2 response", op->what);
    }
}

cnp_status s3_list_objects(aws_client *client, const char *bucket, const char *prefix,
                           const char *start_after, const char *continuation, int max_keys,
                           s3_list_page *out, cnp_err *err)
{
    memset(out, 0, sizeof *out);
    aws_kvlist q = {0};
    cnp_status result = aws_kvlist_add(&q, "list-type", "2");
    char mk[16];
    snprintf(mk, sizeof mk, "%d", max_keys);
    if (result == CNP_OK && prefix && prefix[0])
        result = aws_kvlist_add(&q, "prefix", prefix);
    if (result == CNP_OK && start_after && start_after[0])
        result = aws_kvlist_add(&q, "start-after", start_after);
    if (result == CNP_OK && continuation && continuation[0])
        result = aws_kvlist_add(&q, "continuation-token", continuation);
    if (result == CNP_OK && max_keys > 0)
        result = aws_kvlist_add(&q, "max-keys", mk);
    char what[600];
    snprintf(what, sizeof what, "ListObjectsV2 s3://%s/%.400s", bucket, prefix ? prefix : "");
    aws_op *op = result == CNP_OK ? s3_op_what(client, "GET", what, bucket, NULL, &q) : NULL;
    aws_kvlist_free(&q);
    if (!op) {
        cnp_err_set(err, "ListObjectsV2 s3://%s: out of memory", bucket);
        return CNP_ERR_NOMEM;
    }
    op->result = &out->result;
    op->ctx = out;
    op->done = list_done;
    result = aws_op_run_sync(client, op);
    if (result != CNP_OK && err)
        *err = out->result.err;
    return result;
}

/* ---- multipart answers --------------------------------------------------------- */

static void complete_end(void *ud, const char *parent, const char *name, const char *text)
{
    s3_complete_answer *c = ud;
    if (strcmp(name, "ETag") == 0)
        s3_copy_etag(c->etag, sizeof c->etag, text);
    else if (strcmp(parent, "Error") == 0 && strcmp(name, "Code") == 0)
        snprintf(c->code, sizeof c->code, "%s", text);
    else if (strcmp(parent, "Error") == 0 && strcmp(name, "Message") == 0)
        snprintf(c->message, sizeof c->message, "%s", text);
}

cnp_status s3_complete_parse(const void *body, size_t len, s3_complete_answer *out)
{
    memset(out, 0, sizeof *out);
    xml_walk w = {.on_end = complete_end, .ud = out};
    return xml_walk_run(&w, body, len);
}

static void upload_id_end(void *ud, const char *parent, const char *name, const char *text)
{
    char **id = ud;
    if (strcmp(name, "UploadId") == 0 && !*id)
        *id = strdup(text);
}

cnp_status s3_upload_id_parse(const void *body, size_t len, char **upload_id)
{
    *upload_id = NULL;
    xml_walk w = {.on_end = upload_id_end, .ud = upload_id};
    cnp_status result = xml_walk_run(&w, body, len);
    if (result != CNP_OK) {
        free(*upload_id);
        *upload_id = NULL;
    }
    return result;
}

cnp_status s3_uri_parse(const char *uri, char *bucket, size_t bucket_len, char *key,
                        size_t key_len, cnp_err *err)
{
    if (strncmp(uri, "s3://", 5) != 0) {
        cnp_err_set(err, "'%s': expected s3://bucket[/key]", uri);
        return CNP_ERR_INVALID;
    }
    const char *b = uri + 5;
    size_t bl = strcspn(b, "/");
    const char *k = b[bl] == '/' ? b + bl + 1 : b + bl;
    if (bl == 0 || bl >= bucket_len || strlen(k) >= key_len) {
        cnp_err_set(err, "'%s': %s", uri, bl == 0 ? "no bucket name" : "bucket or key too long");
        return CNP_ERR_INVALID;
    }
    snprintf(bucket, bucket_len, "%.*s", (int)bl, b);
    snprintf(key, key_len, "%s", k);
    return CNP_OK;
}
