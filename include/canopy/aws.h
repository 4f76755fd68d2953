/* AWS client core: credentials chain, region and endpoints, and a concurrent
 * HTTP engine on curl's multi interface with SigV4 signing and retries.
 *
 * One aws_client per process (thread-safe: credentials are cached and
 * refreshed in the background; DNS and TLS sessions are shared; each running
 * batch has a connection cache of its own, taken from the client's pool, so
 * consecutive batches reuse connections and concurrent ones never share one).
 * Work is submitted to an aws_batch: the caller adds N operations (see s3.h and
 * sqs.h), then aws_batch_run() drives them from the calling thread, at most
 * [aws] max_connections at once, retrying transient failures with capped
 * exponential backoff and full jitter. Each operation has its own result.
 * An aws_batch is used by one thread at a time; several threads may each run
 * their own batch on the same client. Secrets never reach the log. */
#ifndef CANOPY_AWS_H
#define CANOPY_AWS_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <time.h>

#include "canopy/buf.h"
#include "canopy/config.h"
#include "canopy/status.h"

typedef struct aws_client aws_client;
typedef struct aws_batch aws_batch;

/* A name/value pair list (S3 metadata, SQS attributes). Strings are owned by
 * the list; names keep the case they were added with. */
typedef struct aws_kv {
    char *name;
    char *value;
} aws_kv;

typedef struct aws_kvlist {
    aws_kv *items;
    size_t n;
    size_t cap;
} aws_kvlist;

/* Appends copies of name and value (value NULL: empty string). */
cnp_status aws_kvlist_add(aws_kvlist *list, const char *name, const char *value);
/* Value of the first item whose name matches case-insensitively, or NULL. */
const char *aws_kvlist_get(const aws_kvlist *list, const char *name);
/* Frees every item and resets the list; accepts NULL. */
void aws_kvlist_free(aws_kvlist *list);

/* Outcome of one AWS call (after retries). status is CNP_OK,
 * CNP_ERR_NOTFOUND (404, NoSuchKey, NoSuchBucket, QueueDoesNotExist),
 * CNP_ERR_AUTH (401/403, signature, expired token), CNP_ERR_REMOTE (other 4xx),
 * CNP_ERR_LIMIT (response larger than the cap), CNP_ERR_TRANSIENT (network,
 * 5xx, throttling after the last attempt), CNP_ERR_CONFIG (TLS verification)
 * or CNP_ERR_NOMEM. err holds one line naming the operation and the reason. */
typedef struct aws_result {
    cnp_status status;
    long http_status;     /* 0 when no response arrived */
    int attempts;         /* HTTP attempts made, including the first */
    char code[96];        /* AWS error code ("NoSuchKey"), empty on success */
    char request_id[96];
    cnp_err err;
} aws_result;

/* Static credentials as resolved by the chain. expiration 0: never expires.
 * source names the provider ("config", "env", "web-identity", "profile",
 * "container", "imds") for logs; the other fields are secret. */
typedef struct aws_credentials {
    char access_key_id[CNP_STR_SHORT];
    char secret_access_key[CNP_STR_SHORT];
    char session_token[CNP_STR_SECRET];
    time_t expiration;
    char source[32];
} aws_credentials;

/* Creates a client from the [aws] section (copied): resolves the region (config, AWS_REGION,
 * AWS_DEFAULT_REGION, profile, else us-east-1) and the S3 and SQS endpoints
 * (config endpoint_url, AWS_ENDPOINT_URL_S3 / _SQS, AWS_ENDPOINT_URL, else
 * AWS). Credentials are resolved lazily on first use. Refuses verify_tls =
 * false for an AWS endpoint. */
cnp_status aws_client_create(const cnp_aws_config *aws, aws_client **out, cnp_err *err);
void aws_client_free(aws_client *client);

/* Resolves the credentials now (as the first request would), so that a
 * command can stop before any work: CNP_ERR_CONFIG for a named profile that
 * does not exist or a malformed role profile (exit 2), CNP_ERR_AUTH when no
 * source has credentials (exit 1; err lists the six sources), or the
 * provider's error. */
cnp_status aws_client_check_credentials(aws_client *client, cnp_err *err);

const char *aws_client_region(const aws_client *client);
/* Endpoint base URL ("https://s3.us-east-1.amazonaws.com") for "s3" or "sqs". */
const char *aws_client_endpoint(const aws_client *client, const char *service);

/* Current credentials, cached. From 5 minutes before they expire a
 * background thread fetches new ones while callers keep getting the current
 * ones at once; a caller waits only when there are none yet or they are
 * within a minute of expiry (concurrent callers then share one resolution).
 * Thread-safe; never holds a lock across a network call. Fails with
 * CNP_ERR_AUTH when no provider has any. */
cnp_status aws_client_credentials(aws_client *client, aws_credentials *out, cnp_err *err);

/* Runs the provider chain once, uncached: config (aws->access_key_id),
 * environment, web identity (AWS_WEB_IDENTITY_TOKEN_FILE + AWS_ROLE_ARN),
 * shared files (profile: keys, role_arn + source_profile / credential_source
 * through STS AssumeRole, credential_process), container credentials, IMDSv2. */
cnp_status aws_credentials_resolve(const cnp_aws_config *aws, aws_credentials *out, cnp_err *err);

/* Region for a profile from the shared config file, "" when none. */
void aws_profile_region(const char *profile, char *out, size_t len);

/* A batch of operations run concurrently. Create, add operations (s3_batch_get,
 * s3_batch_put), run, read each operation's result, free. The SQS batch calls
 * (sqs.h) split their entries into requests and run those the same way. */
cnp_status aws_batch_create(aws_client *client, aws_batch **out, cnp_err *err);
/* Frees the batch and the requests it still holds; accepts NULL. Results
 * already written to the callers' structs stay theirs. */
void aws_batch_free(aws_batch *batch);
/* Runs every added operation (and the follow-up requests they create, such
 * as multipart parts) to completion. Returns CNP_OK when all completed,
 * whatever their individual results; an error only when the engine itself
 * failed. Each operation's aws_result says how it ended. The batch can be
 * reused: operations added afterwards run on the next call. */
cnp_status aws_batch_run(aws_batch *batch, cnp_err *err);
/* Operations added and not yet completed. */
size_t aws_batch_pending(const aws_batch *batch);

/* Why an attempt was retried. */
enum aws_retry_class {
    AWS_RETRY_NETWORK = 0,    /* connection refused or reset, DNS, TLS handshake */
    AWS_RETRY_TIMEOUT,        /* no progress for [aws] request_timeout */
    AWS_RETRY_THROTTLE,       /* 429, SlowDown, Throttling and the like */
    AWS_RETRY_SERVER,         /* other 5xx */
    AWS_RETRY_OTHER,          /* other retryable answers (RequestTimeout, clock skew, ...) */
    AWS_RETRY_CLASSES,
};
/* "network", "timeout", "throttle", "server", "other". */
extern const char *const aws_retry_class_name[AWS_RETRY_CLASSES];

/* Counters over the batch's life (for logs, benchmarks and tests). */
typedef struct aws_batch_stats {
    uint64_t requests;        /* HTTP attempts finished */
    uint64_t retries;         /* attempts scheduled again after a failure */
    uint64_t retries_by_class[AWS_RETRY_CLASSES]; /* the same, by enum aws_retry_class */
    uint64_t connections;     /* new connections opened (the rest reused one) */
    uint64_t bytes_sent;      /* request bodies */
    uint64_t bytes_received;  /* response bodies */
    uint64_t rate_limited;    /* times a start waited for the adaptive retry mode's rate limit */
} aws_batch_stats;

void aws_batch_get_stats(const aws_batch *batch, aws_batch_stats *out);

/* Calls fn(ctx, out) from aws_batch_run() as soon as each s3_batch_get /
 * s3_batch_put operation has its final result, out being the caller's
 * s3_object / s3_put_result (so work can start before the whole batch is
 * done). fn must not free the batch; it may add operations. */
void aws_batch_on_done(aws_batch *batch, void (*fn)(void *ctx, void *out), void *ctx);

/* Makes every batch of the client (including the synchronous calls, such as
 * a 20 s SQS long poll) stop soon after *flag becomes non-zero: transfers are
 * aborted and unfinished operations end with CNP_ERR_TRANSIENT "cancelled".
 * flag may be set from a signal handler; NULL removes it. */
void aws_client_set_cancel_flag(aws_client *client, const volatile int *flag);

/* The engine's backoff base in milliseconds (default 100; tests lower it).
 * Delay before attempt n+1 is uniform in [0, min(20 s, base * 2^n)]. */
void aws_client_set_backoff_base_ms(aws_client *client, int ms);

/* A raw signed request to an absolute URL, for tests and tools: method,
 * url (path and query as given), optional body. Retries like any call.
 * Response body appended to resp (may be NULL). */
cnp_status aws_request_raw(aws_client *client, const char *service, const char *method,
                           const char *url, const void *body, size_t body_len, cnp_buf *resp,
                           aws_result *result);

#endif
