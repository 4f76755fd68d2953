/* Internals shared by the credential provider's files: credentials.c (the
 * chain and the cache), credentials_profile.c (the shared files) and
 * credentials_remote.c (container, instance metadata, STS). */
#ifndef CANOPY_AWS_CREDENTIALS_INTERNAL_H
#define CANOPY_AWS_CREDENTIALS_INTERNAL_H

#include "aws/aws_internal.h"

/* Attempts at the container agent and at STS (the agent is retried as the
 * SDKs retry it). */
#define AWS_CONTAINER_ATTEMPTS 3

/* The environment variable's value; NULL when it is unset or empty. */
const char *aws_env(const char *name);

/* Fills out (zeroed first) and says true; false, out untouched, when akid or
 * secret is NULL or empty. token may be NULL; expiration 0: never. */
bool aws_creds_set(aws_credentials *out, const char *akid, const char *secret,
                   const char *token, time_t expiration, const char *source);

/* How aws_creds_fetch talks: direct (link-local agents: no proxy, system CA
 * store) or as the client does (cfg's CA bundle and verify_tls). */
typedef struct aws_creds_fetch_opts {
    bool direct;
    const cnp_aws_config *cfg; /* NULL: defaults */
    int attempts;
} aws_creds_fetch_opts;

/* One small HTTP exchange with a metadata service or STS, retried on
 * connection errors and 5xx; form (may be NULL) is sent as the body of a
 * method other than GET. headers: NULL-terminated "Name: value" lines. Body
 * is NUL-terminated. */
cnp_status aws_creds_fetch(const char *method, const char *url, const char *const *headers,
                           const char *form, const aws_creds_fetch_opts *o, cnp_buf *body,
                           long *status, cnp_err *err);

/* Appends "&name=value" to a form body, the value form-encoded. */
cnp_status aws_form_add(cnp_buf *form, const char *name, const char *value);

/* The STS endpoint: AWS_ENDPOINT_URL_STS, AWS_ENDPOINT_URL, else the
 * region's. */
void aws_sts_url(const cnp_aws_config *cfg, const char *region, char *url, size_t len);
/* The region STS calls are signed for: the client's, else profile_region,
 * else us-east-1. */
void aws_sts_region(const cnp_aws_config *cfg, const char *profile_region, char *out,
                    size_t len);

/* The sources of the chain. Each answers CNP_ERR_NOTFOUND when it is not
 * configured (its variables unset), else CNP_OK or the error (err says
 * why). */
cnp_status aws_creds_from_container(aws_credentials *out, cnp_err *err);
cnp_status aws_creds_from_imds(aws_credentials *out, cnp_err *err);
cnp_status aws_creds_from_web_identity(const cnp_aws_config *cfg, aws_credentials *out,
                                       cnp_err *err);

/* The profile cfg or AWS_PROFILE names, else "default"; *named tells. */
const char *aws_profile_name(const cnp_aws_config *cfg, bool *named);

#endif
