/* The credential provider chain, in the order the AWS SDKs use:
 * configuration, environment, web identity (EKS IRSA), shared files
 * (profile), container credentials
 * (ECS / Batch / EKS pod identity), EC2 instance metadata (IMDSv2).
 * Temporary credentials are cached; from 5 minutes before expiry a
 * background thread fetches new ones while requests keep signing with the
 * current ones. Only a caller with no usable credentials (none yet, or
 * within a minute of expiry) waits for a resolution, and then for one only:
 * concurrent callers wait for the same resolution. The sources themselves
 * are in credentials_profile.c (the shared files) and credentials_remote.c
 * (container, instance metadata, STS web identity). */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <time.h>

#include "aws/credentials_internal.h"
#include "canopy/log.h"

#define REFRESH_BEFORE_S 300
/* Closer than this to expiry, credentials are not used: callers wait. */
#define EXPIRY_MARGIN_S 60
/* After a failed background refresh, try again this much later. */
#define REFRESH_RETRY_S 30
/* After the chain found nothing, answer from that result this long. */
#define NEGATIVE_CACHE_S 5

const char *aws_env(const char *name)
{
    const char *v = getenv(name);
    return v && v[0] ? v : NULL;
}

time_t aws_parse_iso8601(const char *s)
{
    struct tm tm = {0};
    int y, mo, d, h, mi, sec;
    if (!s || sscanf(s, "%d-%d-%dT%d:%d:%d", &y, &mo, &d, &h, &mi, &sec) != 6)
        return 0;
    /* The text comes from a metadata service or STS: out-of-range fields
     * would overflow the arithmetic below (y - 1900, the offset's seconds). */
    if (y < 1970 || y > 9999 || mo < 1 || mo > 12 || d < 1 || d > 31 || h < 0 || h > 23 ||
        mi < 0 || mi > 59 || sec < 0 || sec > 60)
        return 0;
    tm.tm_year = y - 1900;
    tm.tm_mon = mo - 1;
    tm.tm_mday = d;
    tm.tm_hour = h;
    tm.tm_min = mi;
    tm.tm_sec = sec;
    time_t t = timegm(&tm);
    /* A numeric offset ("+02:00") after the seconds and optional fraction. */
    const char *p = s + strcspn(s, "T");
    p += strspn(p, "T0123456789:.");
    int oh, om;
    if ((*p == '+' || *p == '-') && sscanf(p + 1, "%d:%d", &oh, &om) == 2) {
        if (oh < 0 || oh > 23 || om < 0 || om > 59)
            return 0;
        t += (*p == '+' ? -1 : 1) * (oh * 3600 + om * 60);
    }
    return t;
}

bool aws_creds_set(aws_credentials *out, const char *akid, const char *secret,
                   const char *token, time_t expiration, const char *source)
{
    if (!akid || !secret || !akid[0] || !secret[0])
        return false;
    memset(out, 0, sizeof *out);
    snprintf(out->access_key_id, sizeof out->access_key_id, "%s", akid);
    snprintf(out->secret_access_key, sizeof out->secret_access_key, "%s", secret);
    snprintf(out->session_token, sizeof out->session_token, "%s", token ? token : "");
    out->expiration = expiration;
    snprintf(out->source, sizeof out->source, "%s", source);
    return true;
}

/* ---- the chain --------------------------------------------------------------- */

cnp_status aws_credentials_resolve(const cnp_aws_config *cfg, aws_credentials *out, cnp_err *err)
{
    if (aws_creds_set(out, cfg->access_key_id, cfg->secret_access_key,
                      cfg->session_token, 0, "config"))
        return CNP_OK;
    if (aws_creds_set(out, aws_env("AWS_ACCESS_KEY_ID"), aws_env("AWS_SECRET_ACCESS_KEY"),
                      aws_env("AWS_SESSION_TOKEN"), 0, "env"))
        return CNP_OK;
    cnp_status result = aws_creds_from_web_identity(cfg, out, err);
    if (result != CNP_ERR_NOTFOUND)
        return result;
    result = aws_profile_credentials(cfg, out, err);
    if (result != CNP_ERR_NOTFOUND)
        return result;
    result = aws_creds_from_container(out, err);
    if (result != CNP_ERR_NOTFOUND)
        return result;
    result = aws_creds_from_imds(out, err);
    if (result == CNP_OK)
        return result;
    if (result != CNP_ERR_NOTFOUND && aws_env("AWS_EC2_METADATA_SERVICE_ENDPOINT"))
        return result; /* explicitly configured: its error is the useful one */
    bool named;
    cnp_err_set(err, "no AWS credentials found; canopy looked in: 1. [aws] access_key_id and "
                     "secret_access_key; 2. AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY; "
                     "3. web identity (AWS_WEB_IDENTITY_TOKEN_FILE and AWS_ROLE_ARN); "
                     "4. profile '%s' of the shared files (~/.aws/credentials, ~/.aws/config: "
                     "keys, role_arn, credential_process); 5. container credentials "
                     "(AWS_CONTAINER_CREDENTIALS_RELATIVE_URI or _FULL_URI); 6. EC2 instance "
                     "metadata (IMDSv2)%s",
                aws_profile_name(cfg, &named),
                aws_env("AWS_EC2_METADATA_DISABLED") &&
                        strcasecmp(aws_env("AWS_EC2_METADATA_DISABLED"), "true") == 0
                    ? ", disabled by AWS_EC2_METADATA_DISABLED" : "");
    return CNP_ERR_AUTH;
}

/* Usable: no expiry, or more than EXPIRY_MARGIN_S left (a request signed
 * now must still be valid when it arrives). Lock held. */
static bool creds_usable(const aws_client *c, time_t now)
{
    return c->have_creds &&
           (c->creds.expiration == 0 || now < c->creds.expiration - EXPIRY_MARGIN_S);
}

/* Far enough from expiry that no refresh is due. Lock held. */
static bool creds_fresh(const aws_client *c, time_t now)
{
    return c->creds.expiration == 0 || now < c->creds.expiration - REFRESH_BEFORE_S;
}

/* Stores fresh credentials after a successful resolution. Lock held. */
static void creds_install(aws_client *c, const aws_credentials *fresh)
{
    time_t now = time(NULL);
    c->creds = *fresh;
    c->have_creds = true;
    c->cred_fail_at = 0;
    c->refresh_fail_at = 0;
    if (fresh->expiration)
        LOG_DEBUG(AWS_MOD, "credentials from %s, expire in %lld s", fresh->source,
                  (long long)(fresh->expiration - now));
    else
        LOG_DEBUG(AWS_MOD, "credentials from %s", fresh->source);
}

/* Ends a resolution: wakes the callers waiting for it. Lock held. */
static void resolving_done(aws_client *c)
{
    c->resolving = false;
    pthread_cond_broadcast(&c->cred_cond);
}

/* The background refresher: resolves once, without the lock, and installs
 * the result; on failure the current credentials stay in use. */
static void *refresh_main(void *arg)
{
    aws_client *c = arg;
    aws_credentials fresh;
    cnp_err err = {{0}};
    cnp_status result = aws_credentials_resolve(&c->aws, &fresh, &err);
    pthread_mutex_lock(&c->cred_lock);
    if (result == CNP_OK) {
        creds_install(c, &fresh);
    } else {
        c->refresh_fail_at = time(NULL);
        LOG_WARN(AWS_MOD, "credential refresh failed, retrying in %d s: %s", REFRESH_RETRY_S,
                 err.msg);
    }
    resolving_done(c);
    pthread_mutex_unlock(&c->cred_lock);
    explicit_bzero(&fresh, sizeof fresh);
    return NULL;
}

/* Starts a background refresh unless one runs or one failed recently.
 * Lock held; never blocks on the network. */
static void refresh_start(aws_client *c, time_t now)
{
    if (c->resolving || (c->refresh_fail_at && now - c->refresh_fail_at < REFRESH_RETRY_S))
        return;
    if (c->refresher_started) {
        /* The last one has finished (resolving is clear): only reap it. */
        pthread_join(c->refresher, NULL);
        c->refresher_started = false;
    }
    int rc = pthread_create(&c->refresher, NULL, refresh_main, c);
    if (rc != 0) {
        c->refresh_fail_at = now;
        LOG_WARN(AWS_MOD, "cannot start the credential refresh thread (error %d); "
                          "retrying in %d s", rc, REFRESH_RETRY_S);
        return;
    }
    c->refresher_started = true;
    c->resolving = true;
}

/* Resolves in the calling thread (no usable credentials: it has to wait
 * anyway), with the lock released during the chain. Lock held on entry and
 * return. On failure, credentials not yet expired are still handed out. */
static cnp_status resolve_now(aws_client *c, aws_credentials *out, cnp_err *err)
{
    aws_credentials fresh;
    cnp_err e = {{0}};
    c->resolving = true;
    pthread_mutex_unlock(&c->cred_lock);
    cnp_status result = aws_credentials_resolve(&c->aws, &fresh, &e);
    pthread_mutex_lock(&c->cred_lock);
    time_t now = time(NULL);
    if (result == CNP_OK) {
        creds_install(c, &fresh);
        *out = fresh;
    } else {
        /* Many requests of a batch must not each walk the chain again. */
        c->cred_fail_at = now;
        c->cred_fail_status = result;
        c->cred_fail_err = e;
        if (c->have_creds && now < c->creds.expiration) {
            LOG_WARN(AWS_MOD, "credential refresh failed, using the current ones for %lld s: %s",
                     (long long)(c->creds.expiration - now), e.msg);
            *out = c->creds;
            result = CNP_OK;
        } else if (err) {
            *err = e;
        }
    }
    resolving_done(c);
    explicit_bzero(&fresh, sizeof fresh);
    return result;
}

cnp_status aws_client_credentials(aws_client *client, aws_credentials *out, cnp_err *err)
{
    cnp_status result = CNP_OK;
    pthread_mutex_lock(&client->cred_lock);
    for (;;) {
        time_t now = time(NULL);
        if (creds_usable(client, now)) {
            /* Still valid: sign with these now; a refresh due soon runs
             * in the background instead of stalling this transfer loop. */
            *out = client->creds;
            if (!creds_fresh(client, now))
                refresh_start(client, now);
            break;
        }
        if (client->resolving) {
            pthread_cond_wait(&client->cred_cond, &client->cred_lock);
            continue;
        }
        if (client->cred_fail_at > 0 && now - client->cred_fail_at < NEGATIVE_CACHE_S) {
            if (client->have_creds && now < client->creds.expiration) {
                *out = client->creds;
            } else {
                if (err)
                    *err = client->cred_fail_err;
                result = client->cred_fail_status;
            }
            break;
        }
        result = resolve_now(client, out, err);
        break;
    }
    pthread_mutex_unlock(&client->cred_lock);
    return result;
}

void aws_client_drop_credentials(aws_client *client)
{
    pthread_mutex_lock(&client->cred_lock);
    client->have_creds = false;
    explicit_bzero(&client->creds, sizeof client->creds);
    pthread_mutex_unlock(&client->cred_lock);
}

cnp_status aws_client_check_credentials(aws_client *client, cnp_err *err)
{
    aws_credentials cr;
    cnp_status result = aws_client_credentials(client, &cr, err);
    explicit_bzero(&cr, sizeof cr);
    return result;
}
