/* The aws client: region, endpoints, the curl share (DNS, TLS sessions) and
 * the pool of multi handles whose connection caches batches take in turn,
 * resolved once from the [aws] section and the standard AWS_* variables. */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "aws/aws_internal.h"
#include "canopy/log.h"

static pthread_once_t curl_once = PTHREAD_ONCE_INIT;

static void curl_global(void)
{
    curl_global_init(CURL_GLOBAL_DEFAULT);
}

static void share_lock(CURL *h, curl_lock_data data, curl_lock_access access, void *userp)
{
    aws_client *c = userp;
    pthread_mutex_lock(&c->share_locks[data]);
}

static void share_unlock(CURL *h, curl_lock_data data, void *userp)
{
    aws_client *c = userp;
    pthread_mutex_unlock(&c->share_locks[data]);
}

/* Idle multi handles kept beyond this are cleaned up (their connections
 * closed); one per thread that runs batches at the same time is enough. */
#define MAX_IDLE_MULTIS 32

struct aws_multi_slot {
    CURLM *multi;
    struct aws_multi_slot *next;
};

CURLM *aws_client_multi_take(aws_client *client)
{
    pthread_mutex_lock(&client->pool_lock);
    struct aws_multi_slot *slot = client->idle_multis;
    if (slot) {
        client->idle_multis = slot->next;
        client->n_idle_multis--;
    }
    pthread_mutex_unlock(&client->pool_lock);
    if (slot) {
        CURLM *m = slot->multi;
        free(slot);
        return m;
    }
    CURLM *m = curl_multi_init();
    if (m)
        curl_multi_setopt(m, CURLMOPT_MAXCONNECTS, (long)client->aws.max_connections);
    return m;
}

void aws_client_multi_give(aws_client *client, CURLM *multi)
{
    if (!multi)
        return;
    struct aws_multi_slot *slot = malloc(sizeof *slot);
    pthread_mutex_lock(&client->pool_lock);
    bool keep = slot && client->n_idle_multis < MAX_IDLE_MULTIS;
    if (keep) {
        slot->multi = multi;
        slot->next = client->idle_multis;
        client->idle_multis = slot;
        client->n_idle_multis++;
    }
    pthread_mutex_unlock(&client->pool_lock);
    if (!keep) {
        free(slot);
        curl_multi_cleanup(multi);
    }
}

cnp_status aws_endpoint_parse(const char *url, aws_endpoint *ep, cnp_err *err)
{
    memset(ep, 0, sizeof *ep);
    const char *sep = strstr(url, "://");
    if (!sep || (size_t)(sep - url) >= sizeof ep->scheme) {
        cnp_err_set(err, "endpoint '%s': expected http://host[:port] or https://host[:port]", url);
        return CNP_ERR_CONFIG;
    }
    snprintf(ep->scheme, sizeof ep->scheme, "%.*s", (int)(sep - url), url);
    for (char *p = ep->scheme; *p; p++)
        *p = (char)(*p >= 'A' && *p <= 'Z' ? *p + 32 : *p);
    if (strcmp(ep->scheme, "http") != 0 && strcmp(ep->scheme, "https") != 0) {
        cnp_err_set(err, "endpoint '%s': scheme must be http or https", url);
        return CNP_ERR_CONFIG;
    }
    const char *a = sep + 3;
    size_t alen = strcspn(a, "/?#");
    if (alen == 0 || alen >= sizeof ep->authority) {
        cnp_err_set(err, "endpoint '%s': missing or too long host", url);
        return CNP_ERR_CONFIG;
    }
    snprintf(ep->authority, sizeof ep->authority, "%.*s", (int)alen, a);
    /* Drop a default port: SigV4's host header must match what curl sends. */
    size_t n = strlen(ep->authority);
    if ((strcmp(ep->scheme, "http") == 0 && n > 3 && strcmp(ep->authority + n - 3, ":80") == 0) ||
        (strcmp(ep->scheme, "https") == 0 && n > 4 && strcmp(ep->authority + n - 4, ":443") == 0))
        *strrchr(ep->authority, ':') = '\0';
    snprintf(ep->host, sizeof ep->host, "%s", ep->authority);
    if (ep->host[0] == '[') {
        char *close = strchr(ep->host, ']');
        if (close)
            close[1] = '\0';
    } else {
        char *colon = strchr(ep->host, ':');
        if (colon)
            *colon = '\0';
    }
    return CNP_OK;
}

static bool is_aws_host(const char *host)
{
    size_t n = strlen(host);
    const char *sfx[] = {".amazonaws.com", ".amazonaws.com.cn", NULL};
    for (int i = 0; sfx[i]; i++) {
        size_t m = strlen(sfx[i]);
        if (n >= m && strcasecmp(host + n - m, sfx[i]) == 0)
            return true;
    }
    return false;
}

/* Endpoint for a service: config, AWS_ENDPOINT_URL_<SVC>, AWS_ENDPOINT_URL,
 * else the regional AWS endpoint. */
static cnp_status resolve_endpoint(aws_client *c, const char *svc, const char *env_name,
                                   aws_endpoint *ep, char *url, size_t url_len, cnp_err *err)
{
    const char *custom = NULL;
    if (c->aws.endpoint_url[0])
        custom = c->aws.endpoint_url;
    else if (getenv(env_name) && getenv(env_name)[0])
        custom = getenv(env_name);
    else if (getenv("AWS_ENDPOINT_URL") && getenv("AWS_ENDPOINT_URL")[0])
        custom = getenv("AWS_ENDPOINT_URL");
    char derived[300];
    if (!custom) {
        bool cn = strncmp(c->region, "cn-", 3) == 0;
        snprintf(derived, sizeof derived, "https://%s.%s.amazonaws.com%s", svc, c->region,
                 cn ? ".cn" : "");
    }
    cnp_status result = aws_endpoint_parse(custom ? custom : derived, ep, err);
    if (result != CNP_OK)
        return result;
    ep->custom = custom != NULL;
    snprintf(url, url_len, "%s://%s", ep->scheme, ep->authority);
    if (!c->aws.verify_tls && is_aws_host(ep->host)) {
        cnp_err_set(err, "[aws] verify_tls = false is refused for the AWS endpoint %s; "
                         "it is meant for a local endpoint only", url);
        return CNP_ERR_CONFIG;
    }
    return CNP_OK;
}

static void resolve_region(aws_client *c)
{
    const char *r = NULL;
    if (c->aws.region[0])
        r = c->aws.region;
    else if (getenv("AWS_REGION") && getenv("AWS_REGION")[0])
        r = getenv("AWS_REGION");
    else if (getenv("AWS_DEFAULT_REGION") && getenv("AWS_DEFAULT_REGION")[0])
        r = getenv("AWS_DEFAULT_REGION");
    if (r) {
        snprintf(c->region, sizeof c->region, "%s", r);
        return;
    }
    const char *profile = c->aws.profile[0] ? c->aws.profile : getenv("AWS_PROFILE");
    aws_profile_region(profile && profile[0] ? profile : "default", c->region, sizeof c->region);
    if (!c->region[0])
        snprintf(c->region, sizeof c->region, "us-east-1");
}

/* max_attempts: [aws] max_attempts when set (non-zero), AWS_MAX_ATTEMPTS,
 * the profile's max_attempts, else 5. retry_mode: [aws] retry_mode,
 * AWS_RETRY_MODE, the profile's retry_mode, else standard. */
static cnp_status resolve_retries(aws_client *c, cnp_err *err)
{
    aws_profile_opts po;
    aws_profile_options(&c->aws, &po);
    const char *ma = getenv("AWS_MAX_ATTEMPTS");
    if (c->aws.max_attempts < 1 && ma && ma[0]) {
        char *end;
        long v = strtol(ma, &end, 10);
        if (*end || v < 1 || v > 50) {
            cnp_err_set(err, "AWS_MAX_ATTEMPTS '%s': expected an integer from 1 to 50", ma);
            return CNP_ERR_CONFIG;
        }
        c->aws.max_attempts = (int)v;
    }
    if (c->aws.max_attempts < 1)
        c->aws.max_attempts = po.max_attempts >= 1 ? (po.max_attempts > 50 ? 50 : po.max_attempts) : 5;
    const char *mode = c->aws.retry_mode, *from = "[aws] retry_mode";
    if (!mode[0] && getenv("AWS_RETRY_MODE") && getenv("AWS_RETRY_MODE")[0]) {
        mode = getenv("AWS_RETRY_MODE");
        from = "AWS_RETRY_MODE";
    }
    if (!mode[0]) {
        mode = po.retry_mode;
        from = "the profile's retry_mode";
    }
    if (!mode[0] || strcmp(mode, "standard") == 0)
        c->retry_mode = AWS_RETRY_STANDARD;
    else if (strcmp(mode, "legacy") == 0)
        c->retry_mode = AWS_RETRY_LEGACY;
    else if (strcmp(mode, "adaptive") == 0)
        c->retry_mode = AWS_RETRY_ADAPTIVE;
    else {
        cnp_err_set(err, "%s '%s': expected legacy, standard or adaptive", from, mode);
        return CNP_ERR_CONFIG;
    }
    return CNP_OK;
}

/* The CA bundle ([aws] ca_bundle, AWS_CA_BUNDLE, the profile's ca_bundle)
 * must be a readable file: a typo would otherwise surface as a TLS error on
 * the first request. */
static cnp_status resolve_ca_bundle(aws_client *c, cnp_err *err)
{
    aws_ca_bundle_path(&c->aws, c->cainfo, sizeof c->cainfo);
    if (!c->cainfo[0])
        return CNP_OK;
    FILE *f = fopen(c->cainfo, "r");
    if (!f) {
        cnp_err_set(err, "CA bundle '%s' (%s): %s", c->cainfo,
                    c->aws.ca_bundle[0]          ? "[aws] ca_bundle"
                    : getenv("AWS_CA_BUNDLE") && getenv("AWS_CA_BUNDLE")[0] ? "AWS_CA_BUNDLE"
                                                                            : "profile ca_bundle",
                    strerror(errno));
        return CNP_ERR_CONFIG;
    }
    fclose(f);
    return CNP_OK;
}

/* ---- adaptive retry mode: client-side rate limiting ---------------------- */

#define RATE_MIN 0.5    /* requests per second, the floor */
#define RATE_BETA 0.7   /* multiplicative decrease on throttling */
#define RATE_STEP 0.5   /* additive increase per unthrottled answer */
#define RATE_OFF 1000.0 /* above this the limiter switches itself off again */

static void rate_refill(aws_client *c, double now)
{
    c->tokens += (now - c->rate_at) * c->rate;
    if (c->tokens > c->rate)
        c->tokens = c->rate < 1 ? 1 : c->rate; /* a burst of at most one second */
    c->rate_at = now;
}

double aws_rate_acquire(aws_client *c, double now)
{
    if (c->retry_mode != AWS_RETRY_ADAPTIVE)
        return 0;
    double wait = 0;
    pthread_mutex_lock(&c->rate_lock);
    if (c->rate_on) {
        rate_refill(c, now);
        if (c->tokens >= 1)
            c->tokens -= 1;
        else
            wait = (1 - c->tokens) / c->rate;
    }
    pthread_mutex_unlock(&c->rate_lock);
    return wait;
}

void aws_rate_feedback(aws_client *c, bool throttled, double now)
{
    if (c->retry_mode != AWS_RETRY_ADAPTIVE)
        return;
    pthread_mutex_lock(&c->rate_lock);
    if (throttled) {
        if (!c->rate_on) {
            /* Start from what was just sent: the connections in flight. */
            c->rate_on = true;
            c->rate = (double)c->aws.max_connections;
            c->tokens = 0;
            c->rate_at = now;
        }
        rate_refill(c, now);
        c->rate *= RATE_BETA;
        if (c->rate < RATE_MIN)
            c->rate = RATE_MIN;
        if (c->tokens > c->rate)
            c->tokens = c->rate;
        LOG_DEBUG(AWS_MOD, "adaptive retry: throttled, sending at most %.1f requests/s", c->rate);
    } else if (c->rate_on) {
        rate_refill(c, now);
        c->rate += RATE_STEP;
        if (c->rate > RATE_OFF)
            c->rate_on = false;
    }
    pthread_mutex_unlock(&c->rate_lock);
}

cnp_status aws_client_create(const cnp_aws_config *aws, aws_client **out, cnp_err *err)
{
    pthread_once(&curl_once, curl_global);
    aws_client *c = calloc(1, sizeof *c);
    if (!c) {
        cnp_err_set(err, "aws client: out of memory");
        return CNP_ERR_NOMEM;
    }
    c->aws = *aws;
    if (c->aws.max_connections < 1)
        c->aws.max_connections = 1;
    if (c->aws.connect_timeout < 1)
        c->aws.connect_timeout = 10;
    if (c->aws.request_timeout < 1)
        c->aws.request_timeout = 60;
    if (c->aws.multipart_part_size < 5 << 20)
        c->aws.multipart_part_size = 5 << 20;
    if (c->aws.multipart_threshold < c->aws.multipart_part_size)
        c->aws.multipart_threshold = c->aws.multipart_part_size;
    c->backoff_base_ms = 100;
    for (int i = 0; i < CURL_LOCK_DATA_LAST; i++)
        pthread_mutex_init(&c->share_locks[i], NULL);
    pthread_mutex_init(&c->cred_lock, NULL);
    pthread_cond_init(&c->cred_cond, NULL);
    pthread_mutex_init(&c->pool_lock, NULL);
    pthread_mutex_init(&c->rate_lock, NULL);
    resolve_region(c);
    cnp_status result = resolve_retries(c, err);
    if (result == CNP_OK)
        result = resolve_ca_bundle(c, err);
    if (result == CNP_OK)
        result = resolve_endpoint(c, "s3", "AWS_ENDPOINT_URL_S3", &c->s3, c->s3_url,
                                         sizeof c->s3_url, err);
    if (result == CNP_OK)
        result = resolve_endpoint(c, "sqs", "AWS_ENDPOINT_URL_SQS", &c->sqs, c->sqs_url,
                                  sizeof c->sqs_url, err);
    if (result != CNP_OK)
        goto fail;
    c->share = curl_share_init();
    if (!c->share) {
        cnp_err_set(err, "aws client: curl_share_init failed");
        result = CNP_ERR_INTERNAL;
        goto fail;
    }
    curl_share_setopt(c->share, CURLSHOPT_LOCKFUNC, share_lock);
    curl_share_setopt(c->share, CURLSHOPT_UNLOCKFUNC, share_unlock);
    curl_share_setopt(c->share, CURLSHOPT_USERDATA, c);
    curl_share_setopt(c->share, CURLSHOPT_SHARE, CURL_LOCK_DATA_DNS);
    curl_share_setopt(c->share, CURLSHOPT_SHARE, CURL_LOCK_DATA_SSL_SESSION);
    LOG_DEBUG(AWS_MOD, "region %s, s3 %s%s, sqs %s", c->region, c->s3_url,
              c->s3.custom ? " (path-style)" : "", c->sqs_url);
    *out = c;
    return CNP_OK;
fail:
    aws_client_free(c);
    return result;
}

void aws_client_free(aws_client *client)
{
    if (!client)
        return;
    /* A background credential refresh may still be running. */
    if (client->refresher_started)
        pthread_join(client->refresher, NULL);
    while (client->idle_multis) {
        struct aws_multi_slot *slot = client->idle_multis;
        client->idle_multis = slot->next;
        curl_multi_cleanup(slot->multi);
        free(slot);
    }
    /* After the multi handles: their easy handles may still point at it. */
    if (client->share)
        curl_share_cleanup(client->share);
    for (int i = 0; i < CURL_LOCK_DATA_LAST; i++)
        pthread_mutex_destroy(&client->share_locks[i]);
    pthread_mutex_destroy(&client->cred_lock);
    pthread_cond_destroy(&client->cred_cond);
    pthread_mutex_destroy(&client->pool_lock);
    pthread_mutex_destroy(&client->rate_lock);
    explicit_bzero(&client->creds, sizeof client->creds);
    explicit_bzero(&client->aws, sizeof client->aws);
    free(client);
}

const char *aws_client_region(const aws_client *client)
{
    return client->region;
}

const char *aws_client_endpoint(const aws_client *client, const char *service)
{
    return strcmp(service, "sqs") == 0 ? client->sqs_url : client->s3_url;
}

void aws_client_set_backoff_base_ms(aws_client *client, int ms)
{
    client->backoff_base_ms = ms > 0 ? ms : 1;
}

void aws_client_set_cancel_flag(aws_client *client, const volatile int *flag)
{
    client->cancel = flag;
}
