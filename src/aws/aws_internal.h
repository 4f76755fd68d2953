/* Internals shared by the aws module's files: the request object the engine
 * drives, the signer, URI encoding and the credential cache. */
#ifndef CANOPY_AWS_INTERNAL_H
#define CANOPY_AWS_INTERNAL_H

#include <curl/curl.h>
#include <pthread.h>
#include <sys/types.h>

#include "canopy/aws.h"
#include "canopy/buf.h"
#include "canopy/s3.h"
#include "canopy/sqs.h"

#define AWS_MOD "aws"

enum aws_retry_mode { AWS_RETRY_STANDARD = 0, AWS_RETRY_LEGACY, AWS_RETRY_ADAPTIVE };

typedef struct aws_endpoint {
    char scheme[8];      /* "http" | "https" */
    char authority[256]; /* host[:port] as in the URL */
    char host[256];      /* host alone */
    bool custom;         /* configured, not derived from the region */
} aws_endpoint;

struct aws_client {
    cnp_aws_config aws;        /* [aws], copied; never changes */
    char region[CNP_STR_SHORT];
    aws_endpoint s3;
    aws_endpoint sqs;
    char s3_url[300];
    char sqs_url[300];
    int backoff_base_ms;
    char cainfo[CNP_STR_LONG];   /* CA bundle in effect; "": the system store */
    enum aws_retry_mode retry_mode;
    /* adaptive retry mode: a token bucket that throttling responses slow
     * down (multiplicative decrease) and successes speed up again (additive
     * increase); off until the first throttling response. */
    pthread_mutex_t rate_lock;
    bool rate_on;
    double rate;                 /* tokens (request starts) per second */
    double tokens;
    double rate_at;              /* cnp_now() of the last refill */
    const volatile int *cancel;
    /* DNS and TLS sessions are shared under locks (curl allows that);
     * connections are not: curl's connection cache must not be used by two
     * threads at once, so each batch drives its own multi handle. */
    CURLSH *share;
    pthread_mutex_t share_locks[CURL_LOCK_DATA_LAST];
    /* Multi handles (each with its connection cache) that no batch holds,
     * most recently returned first: the next batch, on any thread, takes one
     * and reuses its kept-alive connections. */
    pthread_mutex_t pool_lock;
    struct aws_multi_slot *idle_multis;
    size_t n_idle_multis;
    /* The credential cache. cred_lock is never held across a network call:
     * a resolution runs with resolving set and the lock released; callers
     * that have no usable credentials wait on cred_cond for it. */
    pthread_mutex_t cred_lock;
    pthread_cond_t cred_cond;
    aws_credentials creds;
    bool have_creds;
    bool resolving;            /* a resolution (foreground or background) runs */
    bool refresher_started;    /* `refresher` is to be joined */
    pthread_t refresher;       /* background refresh ahead of expiry */
    time_t refresh_fail_at;    /* last failed background refresh, 0: none */
    time_t cred_fail_at;       /* last failed foreground resolution, 0: none */
    cnp_status cred_fail_status;
    cnp_err cred_fail_err;
};

typedef struct aws_op aws_op;
typedef void (*aws_op_done_fn)(aws_op *op);

/* One HTTP request the engine sends, retries and completes. Built by s3.c,
 * s3_multipart.c and sqs.c, owned by its batch after aws_batch_submit();
 * http_op.c builds, signs and feeds it, http.c sends it. */
struct aws_op {
    aws_batch *batch;
    const char *service;       /* signing name: "s3" | "sqs" */
    const char *what;          /* for errors: "GetObject s3://b/k" (owned) */
    char *what_owned;
    char method[8];
    char *url;                 /* scheme://authority + canon_path [+ ? + canon_query] */
    char *authority;
    char *canon_path;
    char *canon_query;
    aws_kvlist headers;        /* signed request headers (lower-case names) */
    const uint8_t *body;       /* not owned unless body_owned holds it */
    size_t body_len;
    cnp_buf body_owned;
    /* A file body (aws_op_set_body_file): body_len bytes of body_fd from
     * body_file_off, read with pread as curl asks for them (body is NULL). */
    int body_fd;               /* -1: the body is in memory */
    bool body_fd_owned;        /* closed with the op */
    int64_t body_file_off;
    char *body_path;           /* names the file in errors (owned) */
    char body_err[512];        /* why reading it failed; "" while it has not */
    char payload_hash[65];
    int64_t max_bytes;         /* response body cap; 0: none */
    /* A 2xx body whose Content-Length exceeds spill_over (> 0) is streamed
     * to a temporary file (spill_fd, spill_path, spill_len bytes) instead of
     * resp_body; whoever takes the outcome takes the file (done) or it is
     * removed with the op. */
    int64_t spill_over;
    int spill_fd;              /* -1: none */
    char spill_path[512];
    int64_t spill_len;
    char spill_err[640];       /* why the file failed this attempt; "" while it has not */
    bool head;
    int min_idle_s;            /* low-speed window at least this (long polls) */
    const volatile int *cancel; /* this op alone ends "cancelled" once *cancel != 0 */
    /* response of the last attempt */
    long http_status;
    aws_kvlist resp_headers;   /* lower-case names */
    cnp_buf resp_body;
    bool limit_hit;
    aws_result *result;        /* where the outcome goes (caller's) */
    aws_result own_result;     /* used when result is NULL */
    /* engine state */
    CURL *easy;
    struct curl_slist *slist;
    size_t read_off;
    int attempt;
    bool creds_refreshed;      /* retried once after ExpiredToken */
    double not_before;
    char errbuf[CURL_ERROR_SIZE];
    aws_op_done_fn done;       /* runs once with the final outcome; may submit ops */
    void *user_out;            /* top-level result to announce via on_done, or NULL */
    void *ctx;                 /* for done */
    void (*ctx_free)(void *);  /* frees ctx with the op, or NULL */
    aws_op *next;              /* queue link */
    aws_op *aprev, *anext;     /* list of ops in curl's hands */
};

/* Allocates an op for a service; what is copied. */
aws_op *aws_op_new(const char *service, const char *method, const char *what);
void aws_op_free(aws_op *op);
/* Sets url, authority, canon_path and canon_query: path must already be
 * encoded; query is a list of raw pairs that this encodes and sorts. */
cnp_status aws_op_set_target(aws_op *op, const aws_endpoint *ep, const char *authority,
                             const char *path, const aws_kvlist *query);
/* Points the body at data (not copied; must outlive the op). */
void aws_op_set_body(aws_op *op, const void *data, size_t len);
/* Takes the buffer's storage as the body (buf is emptied). */
void aws_op_take_body(aws_op *op, cnp_buf *buf);
/* Makes the body the len bytes at offset of the file open on fd, read with
 * pread as curl sends them: fd's file position is never used, so ops may
 * share one fd, and a retry rewinds by itself. path names the file in errors
 * (copied). The payload hash streams the region through SHA-256 here. With
 * own_fd the op owns fd from this call on, even when it fails, and closes it
 * when freed; otherwise fd must stay open until the op is freed. CNP_ERR_IO
 * (err names the file and why) when the region cannot be read whole,
 * CNP_ERR_NOMEM. A read that fails while curl sends the body aborts the
 * attempt: the op ends CNP_ERR_IO, not retried. */
cnp_status aws_op_set_body_file(aws_op *op, int fd, bool own_fd, const char *path,
                                int64_t offset, size_t len, cnp_err *err);

/* ---- what the engine (http.c) asks of an op (http_op.c) at each attempt ---- */

/* Signs op with the client's current credentials and builds its curl header
 * list (op->slist); err names the op. */
cnp_status aws_op_sign(aws_op *op, cnp_err *err);
/* Opens op's temporary file for a spilled body (empties it if open);
 * false with op->spill_err set (the path and errno's reason) when it cannot. */
bool aws_op_spill_open(aws_op *op);
/* Closes and removes op's temporary file, if any (a retry, or the op's end). */
void aws_op_spill_discard(aws_op *op);
/* curl's callbacks for op (userp): response headers (which may preallocate
 * the body or start a spill), the response body, and reading and rewinding
 * the request body. */
size_t aws_op_on_header(char *data, size_t size, size_t nmemb, void *userp);
size_t aws_op_on_write(char *data, size_t size, size_t nmemb, void *userp);
size_t aws_op_on_read(char *buffer, size_t size, size_t nitems, void *userp);
int aws_op_on_seek(void *userp, curl_off_t offset, int origin);

/* Takes a multi handle for one batch's exclusive use: the most recently
 * returned idle one (its connections stay alive for reuse), else a new one.
 * NULL when curl cannot make one. Thread-safe. */
CURLM *aws_client_multi_take(aws_client *client);
/* Gives back a multi handle from aws_client_multi_take with no transfer
 * attached; it is kept for the next batch (or cleaned up past a cap). The
 * caller must not touch it afterwards. Thread-safe; accepts NULL. */
void aws_client_multi_give(aws_client *client, CURLM *multi);

/* Announces a top-level result through the batch's on_done callback. */
void aws_batch_notify(aws_batch *batch, void *out);

/* Hands op to the batch (ownership moves). */
void aws_batch_submit(aws_batch *batch, aws_op *op);
aws_client *aws_batch_client(aws_batch *batch);

/* Runs one op synchronously on a private batch; returns its status. */
cnp_status aws_op_run_sync(aws_client *client, aws_op *op);

/* RFC 3986 encoding with upper-case hex; keep_slash leaves '/' alone. */
cnp_status aws_uri_encode(cnp_buf *out, const char *s, size_t len, bool keep_slash);

/* Lower-case hex SHA-256 of data into out[65]. */
void aws_sha256_hex(const void *data, size_t len, char out[65]);
/* Lower-case hex SHA-256 into out[65] of the bytes fill(ctx, buf, cap) gives
 * until it returns 0, asked for in 1 MiB chunks: a body is hashed without
 * being held whole. false when fill returns < 0 or memory runs out (out is
 * then untouched). */
bool aws_sha256_hex_read(ssize_t (*fill)(void *ctx, void *buf, size_t cap), void *ctx,
                         char out[65]);

typedef struct aws_sigv4_input {
    const char *access_key_id;
    const char *secret_access_key;
    const char *region;
    const char *service;
    const char *amz_date;        /* YYYYMMDDTHHMMSSZ */
    const char *method;
    const char *canonical_uri;   /* already encoded */
    const char *canonical_query; /* already sorted and encoded, "" if none */
    const aws_kv *headers;       /* every header to sign, any case */
    size_t n_headers;
    const char *payload_hash;    /* hex SHA-256 of the body */
} aws_sigv4_input;

/* Computes the Authorization header value (without "Authorization: ").
 * Header names are lower-cased and sorted, values trimmed with inner runs
 * of spaces collapsed. */
cnp_status aws_sigv4_sign(const aws_sigv4_input *in, char *out, size_t len);

/* Parses an endpoint URL ("http://127.0.0.1:5000"); CNP_ERR_CONFIG if bad. */
cnp_status aws_endpoint_parse(const char *url, aws_endpoint *ep, cnp_err *err);

/* What an AWS error answer says. Messages are the service's own text
 * (never a secret), made one line. */
typedef struct aws_error_info {
    char code[96];         /* "SignatureDoesNotMatch", "QueueDoesNotExist"; "" if none */
    char message[512];
    char request_id[96];
} aws_error_info;

/* Reads an error answer in any form the services use: S3 XML
 * (<Error><Code>, <Message>), query-protocol XML as STS and SQS answer
 * (<ErrorResponse><Error>..., also with <Errors> around the <Error>), JSON
 * ({"__type": "com.amazonaws.sqs#QueueDoesNotExist", "message": ...}), and
 * the x-amzn-errortype / x-amzn-query-error headers when the body names no
 * code; the request id from the body or the x-amz(n)-request-id header.
 * headers may be NULL (names lower-case). Fields not found stay empty. */
void aws_error_parse(const void *body, size_t len, const aws_kvlist *headers,
                     aws_error_info *out);

/* Sets result from an error response (status, body, headers) and decides
 * whether it is worth retrying. */
bool aws_classify_response(aws_op *op);

/* adaptive retry mode: seconds to wait before the next attempt may start
 * (0: start now, a token taken); always 0 in the other modes. */
double aws_rate_acquire(aws_client *client, double now);
/* adaptive retry mode: an attempt ended throttled (true) or not. */
void aws_rate_feedback(aws_client *client, bool throttled, double now);

/* Forgets the cached credentials: the next use resolves them again. */
void aws_client_drop_credentials(aws_client *client);

/* ISO 8601 "2026-11-22T08:00:00Z" to time_t; 0 when unparsable. */
time_t aws_parse_iso8601(const char *s);


/* ---- S3: shared by s3.c and s3_multipart.c ------------------------------------ */

/* An op for bucket/key (key NULL: the bucket itself), named in errors
 * "opname s3://bucket/key"; query may be NULL. NULL when out of memory. */
aws_op *s3_op(aws_client *c, const char *method, const char *opname, const char *bucket,
              const char *key, const aws_kvlist *query);
/* Copies etag into dst without the quotes around it; "" for NULL. */
void s3_copy_etag(char *dst, size_t len, const char *etag);
/* Adds op's content-type (application/octet-stream for NULL) and an
 * x-amz-meta-<name> header, the name lower-cased, per metadata pair. */
cnp_status s3_add_metadata_headers(aws_op *op, const char *content_type,
                                   const aws_kvlist *metadata);
/* Queues a multipart upload of put (s3_multipart.c); takes fd (-1: the body
 * is put->data). CNP_ERR_NOMEM when it cannot be queued (fd closed). */
cnp_status s3_multipart_submit(aws_batch *batch, const s3_put *put, int fd,
                               s3_put_result *out);

/* ---- answer parsers, separate from the transport so that they can be tested
 * and fuzzed on bytes alone (tests/fuzz). None of them trusts the body. ---- */

/* Reads a ListObjectsV2 answer into page (zeroed by the caller; free it with
 * s3_list_page_free whatever this returns). CNP_ERR_FORMAT for XML that does
 * not parse or a <Contents> without a <Key>. next_token is kept only when
 * the page says it is truncated. */
cnp_status s3_list_parse(const void *body, size_t len, s3_list_page *page);

/* The UploadId of a CreateMultipartUpload answer: *upload_id is malloc'd, or
 * NULL when the answer names none. CNP_ERR_FORMAT for XML that does not parse
 * (then *upload_id is NULL). */
cnp_status s3_upload_id_parse(const void *body, size_t len, char **upload_id);

/* What a CompleteMultipartUpload answer says: the object's ETag (quotes
 * removed), or the <Error> it may carry inside a 200. Fields not found stay
 * empty; a body that does not parse keeps what was read before the error. */
typedef struct s3_complete_answer {
    char etag[128];
    char code[96];
    char message[256];
} s3_complete_answer;
cnp_status s3_complete_parse(const void *body, size_t len, s3_complete_answer *out);

/* Reads a ReceiveMessage answer (JSON protocol) into out (zeroed here; free
 * it with sqs_message_list_free whatever this returns). CNP_ERR_FORMAT when
 * the body is not JSON. */
cnp_status sqs_receive_parse(const void *body, size_t len, sqs_message_list *out);

/* Fills results[first .. first + count) from a batch call's answer
 * ({"Successful": [...], "Failed": [...]}, entries named by their "Id", our
 * index): entries the answer does not name are failed. CNP_ERR_FORMAT when
 * the body is not JSON (results untouched). */
cnp_status sqs_entries_parse(const void *body, size_t len, sqs_entry_result *results,
                             size_t first, size_t count);

/* Reads a GetQueueAttributes answer's "Attributes" object into out. */
cnp_status sqs_attributes_parse(const void *body, size_t len, aws_kvlist *out);

/* Reads the credentials JSON that the container and instance metadata
 * services answer. CNP_ERR_AUTH (err says why) when it holds none. */
cnp_status aws_creds_json_parse(const void *body, size_t len, const char *source,
                                const char *what, aws_credentials *out, cnp_err *err);

/* What an AssumeRoleWithWebIdentity answer (STS query XML) says. Fields not
 * found stay empty, each cut to its buffer. */
typedef struct aws_sts_answer {
    char akid[CNP_STR_SHORT];
    char secret[CNP_STR_SHORT];
    char token[CNP_STR_SECRET];
    char expiration[64];
    char code[96];
    char message[256];
} aws_sts_answer;
void aws_sts_parse(const void *body, size_t len, aws_sts_answer *out);

/* Settings of the selected profile ([aws] profile, AWS_PROFILE, else
 * "default") in the shared files; empty / 0 where it has none. */
typedef struct aws_profile_opts {
    char region[CNP_STR_SHORT];
    char ca_bundle[CNP_STR_LONG];
    char retry_mode[16];
    int max_attempts;
} aws_profile_opts;
void aws_profile_options(const cnp_aws_config *cfg, aws_profile_opts *out);

/* The CA bundle in effect: [aws] ca_bundle, AWS_CA_BUNDLE, the profile's
 * ca_bundle; "" for the system store. */
void aws_ca_bundle_path(const cnp_aws_config *cfg, char *out, size_t len);

/* Credentials from the shared credentials and config files for the profile
 * that cfg or AWS_PROFILE names (else "default"): role_arn (STS AssumeRole
 * with the credentials of source_profile, chained, or credential_source),
 * static keys, or credential_process. CNP_ERR_NOTFOUND when they hold none;
 * CNP_ERR_CONFIG when a named profile is in neither file or a role profile
 * is malformed (no source, a source_profile loop); CNP_ERR_AUTH when the
 * process or STS fails. */
cnp_status aws_profile_credentials(const cnp_aws_config *cfg, aws_credentials *out,
                                   cnp_err *err);

#endif
