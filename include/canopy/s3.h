/* S3 over the aws engine: GetObject, HeadObject, PutObject (multipart above
 * [aws] multipart_threshold), ListObjectsV2, CreateBucket, DeleteObject.
 * A put's body is memory or the head of a file, which is read as it is sent
 * (never held whole); a large download can likewise spill to a file.
 *
 * Keys are byte strings (UTF-8 in practice) and round-trip exactly: the
 * engine percent-encodes every byte outside RFC 3986's unreserved set.
 * Custom endpoints use path-style addressing, AWS virtual-hosted style
 * (path-style for bucket names that are not DNS-compatible). */
#ifndef CANOPY_S3_H
#define CANOPY_S3_H

#include <stdint.h>

#include "canopy/aws.h"
#include "canopy/buf.h"

/* A downloaded or inspected object. Owns body and metadata. */
typedef struct s3_object {
    aws_result result;
    cnp_buf body;            /* GetObject only */
    int64_t size;            /* Content-Length */
    char etag[128];          /* with the quotes S3 sends stripped */
    char content_type[128];
    char last_modified[64];  /* HTTP date as sent */
    aws_kvlist metadata;     /* x-amz-meta-* without the prefix, lower-case */
    /* s3_batch_get_spill: a body larger than the spill size is in this
     * temporary file instead of body (removed by s3_object_free unless the
     * caller unlinks it first and clears the path). "" when in body. */
    char spill_path[512];
} s3_object;

/* Frees body and metadata; the struct can be reused. Accepts NULL. */
void s3_object_free(s3_object *obj);

/* A PutObject request: len bytes from data, which must stay valid until the
 * batch has run, or, when file is not NULL, the first len bytes of that
 * file (data ignored). The file is opened once when the put is queued and
 * closed when it has run; its bytes are read with pread as they are sent,
 * again on a retry, and must not change until then (the signature covers
 * them). A file that cannot be opened or has fewer than len bytes fails the
 * put at once, and one that cannot be read while sending fails it when it
 * runs: CNP_ERR_IO, the message naming the file and why. */
typedef struct s3_put {
    const char *bucket;
    const char *key;
    const void *data;
    size_t len;
    const char *file;             /* NULL: the body is data */
    const char *content_type;     /* NULL: application/octet-stream */
    const aws_kvlist *metadata;   /* NULL or names without x-amz-meta- */
} s3_put;

typedef struct s3_put_result {
    aws_result result;
    char etag[128];               /* multipart: "<md5>-<parts>" */
    int parts;                    /* 0 for a single PutObject */
} s3_put_result;

typedef struct s3_list_entry {
    char *key;
    int64_t size;
    char etag[128];
    char last_modified[40];
} s3_list_entry;

/* One ListObjectsV2 page. Owns its entries. */
typedef struct s3_list_page {
    aws_result result;
    s3_list_entry *entries;
    size_t n;
    bool truncated;
    char *next_token;             /* NULL when not truncated */
} s3_list_page;

void s3_list_page_free(s3_list_page *page);

/* Batch forms: queue the operation; out is written when aws_batch_run()
 * completes it. out must stay valid until then; it is initialised here. */
cnp_status s3_batch_get(aws_batch *batch, const char *bucket, const char *key,
                        int64_t max_bytes, s3_object *out);
/* s3_batch_get, but a body whose Content-Length exceeds spill_over bytes
 * (> 0) streams to a temporary file in $TMPDIR (else /tmp), named in
 * out->spill_path, instead of memory: a large raster is never held whole.
 * A retry starts the file afresh; a failed transfer leaves no file. */
cnp_status s3_batch_get_spill(aws_batch *batch, const char *bucket, const char *key,
                              int64_t max_bytes, int64_t spill_over, s3_object *out);
/* A put that fails before it is queued (no memory; a file that cannot be
 * opened or is too short) returns that status with out->result set, and is
 * not announced through aws_batch_on_done. */
cnp_status s3_batch_put(aws_batch *batch, const s3_put *put, s3_put_result *out);

/* GetObject into memory. max_bytes > 0 caps the body: a larger
 * Content-Length or body aborts the transfer with CNP_ERR_LIMIT. */
cnp_status s3_object_get(aws_client *client, const char *bucket, const char *key,
                         int64_t max_bytes, s3_object *out, cnp_err *err);
/* HeadObject: size, etag, content type and metadata; no body. */
cnp_status s3_object_head(aws_client *client, const char *bucket, const char *key,
                          s3_object *out, cnp_err *err);
/* PutObject, or a multipart upload (parts in parallel, aborted on failure)
 * when put->len exceeds [aws] multipart_threshold; the parts of a file body
 * share one descriptor. */
cnp_status s3_object_put(aws_client *client, const s3_put *put, s3_put_result *out,
                         cnp_err *err);
cnp_status s3_object_delete(aws_client *client, const char *bucket, const char *key,
                            cnp_err *err);

/* One page of ListObjectsV2. prefix, start_after and continuation may be NULL;
 * max_keys <= 0 means the service default (1000). */
cnp_status s3_list_objects(aws_client *client, const char *bucket, const char *prefix,
                           const char *start_after, const char *continuation, int max_keys,
                           s3_list_page *out, cnp_err *err);

/* Splits "s3://bucket/key/or/prefix" into bucket and key (key may be empty).
 * CNP_ERR_INVALID with err set when uri is not of that form or too long. */
cnp_status s3_uri_parse(const char *uri, char *bucket, size_t bucket_len, char *key,
                        size_t key_len, cnp_err *err);

/* CreateBucket in the client's region. An existing bucket owned by the caller
 * is not an error. */
cnp_status s3_bucket_create(aws_client *client, const char *bucket, cnp_err *err);

#endif
