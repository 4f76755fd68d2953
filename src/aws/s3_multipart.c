/* S3 multipart uploads: CreateMultipartUpload, then every part at once
 * (UploadPart; a slice of memory, or a region of the put's file read with
 * pread), then CompleteMultipartUpload, or AbortMultipartUpload after any
 * failure. The state the upload's ops share (mp_upload) is counted and
 * freed, closing the file, with the last of them. s3.c sends single puts
 * and parses the answers. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "aws/aws_internal.h"
#include "canopy/log.h"
#include "canopy/s3.h"

/* State shared by the ops of one multipart upload; freed with the last op. */
typedef struct mp_upload {
    int refs;
    aws_client *client;
    char *bucket;
    char *key;
    const uint8_t *data;
    int fd;             /* >= 0: the body is the head of this file instead */
    char *file;         /* its name, for errors */
    size_t len;
    size_t part_size;
    int nparts;
    int outstanding;
    char *upload_id;
    char (*etags)[128];
    bool failed;
    s3_put_result *out;
    aws_result first_error;
    char *content_type;
    aws_kvlist metadata;
} mp_upload;

typedef struct mp_part_ctx {
    mp_upload *mp;
    int part;   /* 1-based */
} mp_part_ctx;

static void mp_unref(void *p)
{
    mp_upload *mp = p;
    if (--mp->refs > 0)
        return;
    free(mp->bucket);
    free(mp->key);
    free(mp->upload_id);
    free(mp->etags);
    free(mp->content_type);
    aws_kvlist_free(&mp->metadata);
    if (mp->fd >= 0)
        close(mp->fd);
    free(mp->file);
    free(mp);
}

static void part_ctx_free(void *p)
{
    mp_part_ctx *pc = p;
    mp_unref(pc->mp);
    free(pc);
}

static void mp_fail(mp_upload *mp, const aws_result *r)
{
    if (!mp->failed) {
        mp->failed = true;
        mp->first_error = *r;
    }
}

/* Sets the caller's result: the first failure, or the completion r; attempts
 * count every request of the upload. */
static void mp_finish(aws_batch *b, mp_upload *mp, const aws_result *r)
{
    int attempts = mp->out->result.attempts + (r ? r->attempts : 0);
    mp->out->result = mp->failed || !r ? mp->first_error : *r;
    mp->out->result.attempts = attempts;
    aws_batch_notify(b, mp->out);
}

/* Hands op to the batch holding one more reference to mp (dropped with
 * the op); done runs with its outcome. */
static void mp_submit(aws_batch *b, mp_upload *mp, aws_op *op, aws_op_done_fn done)
{
    mp->refs++;
    op->ctx = mp;
    op->ctx_free = mp_unref;
    op->done = done;
    aws_batch_submit(b, op);
}

static void abort_done(aws_op *op)
{
    mp_upload *mp = op->ctx;
    if (op->result->status != CNP_OK)
        LOG_WARN(AWS_MOD, "abort of multipart upload s3://%s/%s failed: %s", mp->bucket, mp->key,
                 op->result->err.msg);
    mp_finish(op->batch, mp, op->result);
}

static void mp_submit_abort(aws_batch *b, mp_upload *mp)
{
    aws_kvlist q = {0};
    aws_op *op = NULL;
    if (aws_kvlist_add(&q, "uploadId", mp->upload_id) == CNP_OK)
        op = s3_op(mp->client, "DELETE", "AbortMultipartUpload", mp->bucket, mp->key, &q);
    aws_kvlist_free(&q);
    if (!op) {
        mp_finish(b, mp, NULL);
        return;
    }
    mp_submit(b, mp, op, abort_done);
}

static void complete_done(aws_op *op)
{
    mp_upload *mp = op->ctx;
    aws_result *r = op->result;
    if (r->status == CNP_OK) {
        /* CompleteMultipartUpload can fail inside a 200 response. */
        s3_complete_answer cp;
        s3_complete_parse(op->resp_body.data, op->resp_body.len, &cp);
        if (cp.code[0]) {
            r->status = strcmp(cp.code, "InternalError") == 0 || strcmp(cp.code, "SlowDown") == 0
                            ? CNP_ERR_TRANSIENT
                            : CNP_ERR_REMOTE;
            snprintf(r->code, sizeof r->code, "%s", cp.code);
            cnp_err_set(&r->err, "%s: %s: %s", op->what, cp.code, cp.message);
        } else {
            s3_copy_etag(mp->out->etag, sizeof mp->out->etag, cp.etag);
            mp->out->parts = mp->nparts;
        }
    }
    if (r->status != CNP_OK) {
        mp->out->result.attempts += r->attempts;
        mp_fail(mp, r);
        mp_submit_abort(op->batch, mp);
        return;
    }
    mp_finish(op->batch, mp, r);
}

static void mp_submit_complete(aws_batch *b, mp_upload *mp)
{
    cnp_buf body = {0};
    cnp_status st = cnp_buf_printf(&body, "<CompleteMultipartUpload>");
    for (int i = 0; i < mp->nparts && st == CNP_OK; i++)
        st = cnp_buf_printf(&body, "<Part><PartNumber>%d</PartNumber><ETag>\"%s\"</ETag></Part>",
                            i + 1, mp->etags[i]);
    if (st == CNP_OK)
        st = cnp_buf_printf(&body, "</CompleteMultipartUpload>");
    aws_kvlist q = {0};
    aws_op *op = NULL;
    if (st == CNP_OK && aws_kvlist_add(&q, "uploadId", mp->upload_id) == CNP_OK)
        op = s3_op(mp->client, "POST", "CompleteMultipartUpload", mp->bucket, mp->key, &q);
    aws_kvlist_free(&q);
    if (!op || aws_kvlist_add(&op->headers, "content-type", "application/xml") != CNP_OK) {
        aws_op_free(op);
        cnp_buf_free(&body);
        aws_result r = {.status = CNP_ERR_NOMEM};
        cnp_err_set(&r.err, "s3://%s/%s: out of memory", mp->bucket, mp->key);
        mp_fail(mp, &r);
        mp_submit_abort(b, mp);
        return;
    }
    aws_op_take_body(op, &body);
    mp_submit(b, mp, op, complete_done);
}

static void part_done(aws_op *op)
{
    mp_part_ctx *pc = op->ctx;
    mp_upload *mp = pc->mp;
    mp->out->result.attempts += op->result->attempts;
    if (op->result->status == CNP_OK) {
        const char *etag = aws_kvlist_get(&op->resp_headers, "etag");
        s3_copy_etag(mp->etags[pc->part - 1], sizeof mp->etags[0], etag);
        if (!etag) {
            aws_result r = *op->result;
            r.status = CNP_ERR_REMOTE;
            cnp_err_set(&r.err, "%s: response without ETag", op->what);
            mp_fail(mp, &r);
        }
    } else {
        mp_fail(mp, op->result);
    }
    if (--mp->outstanding > 0)
        return;
    if (mp->failed)
        mp_submit_abort(op->batch, mp);
    else
        mp_submit_complete(op->batch, mp);
}

/* Builds the UploadPart op for part i (0-based); NULL with fail set. */
static aws_op *mp_part_op(mp_upload *mp, int i, aws_result *fail)
{
    size_t off = (size_t)i * mp->part_size;
    size_t n = mp->len - off < mp->part_size ? mp->len - off : mp->part_size;
    aws_kvlist q = {0};
    char num[16];
    snprintf(num, sizeof num, "%d", i + 1);
    aws_op *part = NULL;
    mp_part_ctx *pc = calloc(1, sizeof *pc);
    if (pc && aws_kvlist_add(&q, "partNumber", num) == CNP_OK &&
        aws_kvlist_add(&q, "uploadId", mp->upload_id) == CNP_OK)
        part = s3_op(mp->client, "PUT", "UploadPart", mp->bucket, mp->key, &q);
    aws_kvlist_free(&q);
    if (!part) {
        free(pc);
        fail->status = CNP_ERR_NOMEM;
        cnp_err_set(&fail->err, "s3://%s/%s: out of memory", mp->bucket, mp->key);
        return NULL;
    }
    if (mp->fd < 0)
        aws_op_set_body(part, mp->data + off, n);
    else if ((fail->status = aws_op_set_body_file(part, mp->fd, false, mp->file, (int64_t)off,
                                                  n, &fail->err)) != CNP_OK) {
        aws_op_free(part);
        free(pc);
        return NULL;
    }
    pc->mp = mp;
    pc->part = i + 1;
    mp->refs++;
    part->ctx = pc;
    part->ctx_free = part_ctx_free;
    part->done = part_done;
    return part;
}

static void create_done(aws_op *op)
{
    mp_upload *mp = op->ctx;
    aws_result *r = op->result;
    mp->out->result.attempts += r->attempts;
    if (r->status == CNP_OK) {
        if (s3_upload_id_parse(op->resp_body.data, op->resp_body.len, &mp->upload_id) !=
                CNP_OK || !mp->upload_id) {
            r->status = CNP_ERR_REMOTE;
            cnp_err_set(&r->err, "%s: no UploadId in the response", op->what);
        }
    }
    if (r->status != CNP_OK) {
        int attempts = mp->out->result.attempts;
        mp->out->result = *r;
        mp->out->result.attempts = attempts;
        aws_batch_notify(op->batch, mp->out);
        return;
    }
    mp->outstanding = mp->nparts;
    for (int i = 0; i < mp->nparts; i++) {
        aws_result fail = {0};
        aws_op *part = mp_part_op(mp, i, &fail);
        if (!part) {
            mp_fail(mp, &fail);
            /* Parts never submitted count as finished. */
            mp->outstanding -= mp->nparts - i;
            if (mp->outstanding == 0)
                mp_submit_abort(op->batch, mp);
            return;
        }
        aws_batch_submit(op->batch, part);
    }
}

/* Queues a multipart upload; takes fd (-1: the body is put->data). */
cnp_status s3_multipart_submit(aws_batch *batch, const s3_put *put, int fd,
                               s3_put_result *out)
{
    aws_client *c = aws_batch_client(batch);
    mp_upload *mp = calloc(1, sizeof *mp);
    if (!mp) {
        if (fd >= 0)
            close(fd);
        return CNP_ERR_NOMEM;
    }
    mp->refs = 1;
    mp->fd = fd;
    mp->client = c;
    mp->out = out;
    mp->data = put->data;
    mp->len = put->len;
    mp->part_size = (size_t)c->aws.multipart_part_size;
    /* S3 allows 10,000 parts: grow the part size for huge objects. */
    while ((put->len + mp->part_size - 1) / mp->part_size > 10000)
        mp->part_size *= 2;
    mp->nparts = (int)((put->len + mp->part_size - 1) / mp->part_size);
    mp->bucket = strdup(put->bucket);
    mp->key = strdup(put->key);
    mp->etags = calloc((size_t)mp->nparts, sizeof *mp->etags);
    mp->file = fd >= 0 ? strdup(put->file) : NULL;
    aws_kvlist q = {0};
    aws_op *op = NULL;
    if (mp->bucket && mp->key && mp->etags && (fd < 0 || mp->file) &&
        aws_kvlist_add(&q, "uploads", "") == CNP_OK)
        op = s3_op(c, "POST", "CreateMultipartUpload", put->bucket, put->key, &q);
    aws_kvlist_free(&q);
    if (!op || s3_add_metadata_headers(op, put->content_type, put->metadata) != CNP_OK) {
        aws_op_free(op);
        mp_unref(mp);
        return CNP_ERR_NOMEM;
    }
    op->ctx = mp;
    op->ctx_free = mp_unref;
    op->done = create_done;
    aws_batch_submit(batch, op);
    return CNP_OK;
}
