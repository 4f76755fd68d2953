/* The credential provider chain, in the order the AWS SDKs use:
 * configuration, environment, web identity (EKS IRSA), shared files
 * (profile), container credentials
 * (ECS / Batch / EKS pod identity), EC2 instance metadata (IMDSv2).
 * Temporary credentials are cached; from 5 minutes before expiry a
 * background thread fetches new ones while requests keep signing with the
 * current ones. Only a caller with no usable credentials (none yet, or
 * within a minute of expiry) waits for a resolution, and then for one only:
 * concurrent callers wait for the same resolution. */
#include <ctype.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <time.h>

#include <cjson/cJSON.h>
#include <expat.h>
#include <ini.h>

#include "aws/aws_internal.h"
#include "canopy/log.h"

#define REFRESH_BEFORE_S 300
/* Closer than this to expiry, credentials are not used: callers wait. */
#define EXPIRY_MARGIN_S 60
/* After a failed background refresh, try again this much later. */
#define REFRESH_RETRY_S 30
/* As the SDKs: the container agent is retried, instance metadata is not
 * (off EC2 it only delays the "no credentials" error). */
#define CONTAINER_ATTEMPTS 3
#define IMDS_ATTEMPTS 2
/* After the chain found nothing, answer from that result this long. */
#define NEGATIVE_CACHE_S 5

static const char *env(const char *name)
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

static bool set_creds(aws_credentials *out, const char *akid, const char *secret,
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

/* ---- shared files ---------------------------------------------------------- */

typedef struct profile_ctx {
    const char *profile;
    bool config_file;   /* sections are "profile NAME" there, except default */
    bool found;
    char akid[CNP_STR_SHORT];
    char secret[CNP_STR_SHORT];
    char token[CNP_STR_SECRET];
    char region[CNP_STR_SHORT];
} profile_ctx;

static bool section_matches(const profile_ctx *p, const char *section)
{
    if (strcmp(section, p->profile) == 0)
        return !p->config_file || strcmp(p->profile, "default") == 0;
    if (p->config_file && strncmp(section, "profile ", 8) == 0) {
        const char *name = section + 8;
        while (*name == ' ')
            name++;
        return strcmp(name, p->profile) == 0;
    }
    return false;
}

static int on_ini(void *user, const char *section, const char *name, const char *value)
{
    profile_ctx *p = user;
    if (!section_matches(p, section))
        return 1;
    p->found = true;
    if (strcmp(name, "aws_access_key_id") == 0)
        snprintf(p->akid, sizeof p->akid, "%s", value);
    else if (strcmp(name, "aws_secret_access_key") == 0)
        snprintf(p->secret, sizeof p->secret, "%s", value);
    else if (strcmp(name, "aws_session_token") == 0)
        snprintf(p->token, sizeof p->token, "%s", value);
    else if (strcmp(name, "region") == 0)
        snprintf(p->region, sizeof p->region, "%s", value);
    return 1;
}

static void shared_path(char *out, size_t len, const char *env_name, const char *file)
{
    const char *v = env(env_name);
    if (v)
        snprintf(out, len, "%s", v);
    else if (env("HOME"))
        snprintf(out, len, "%s/.aws/%s", env("HOME"), file);
    else
        out[0] = '\0';
}

/* Reads the profile from the credentials file, then the config file (the
 * credentials file wins for keys in both). */
static void read_profile(const char *profile, profile_ctx *cred, profile_ctx *conf)
{
    char path[CNP_STR_LONG];
    memset(cred, 0, sizeof *cred);
    memset(conf, 0, sizeof *conf);
    cred->profile = conf->profile = profile;
    conf->config_file = true;
    shared_path(path, sizeof path, "AWS_SHARED_CREDENTIALS_FILE", "credentials");
    if (path[0])
        ini_parse(path, on_ini, cred);
    shared_path(path, sizeof path, "AWS_CONFIG_FILE", "config");
    if (path[0])
        ini_parse(path, on_ini, conf);
}

void aws_profile_region(const char *profile, char *out, size_t len)
{
    profile_ctx cred, conf;
    read_profile(profile ? profile : "default", &cred, &conf);
    snprintf(out, len, "%s", conf.region[0] ? conf.region : cred.region);
    explicit_bzero(&cred, sizeof cred);
    explicit_bzero(&conf, sizeof conf);
}

cnp_status aws_profile_credentials(const cnp_aws_config *cfg, aws_credentials *out,
                                   cnp_err *err)
{
    const char *named = cfg->profile[0] ? cfg->profile : env("AWS_PROFILE");
    const char *profile = named ? named : "default";
    profile_ctx cred, conf;
    read_profile(profile, &cred, &conf);
    cnp_status result = CNP_ERR_NOTFOUND;
    const profile_ctx *src = cred.akid[0] ? &cred : &conf;
    if (set_creds(out, src->akid, src->secret, src->token, 0, "profile")) {
        result = CNP_OK;
    } else if (named && !cred.found && !conf.found) {
        cnp_err_set(err, "AWS profile '%s' not found in the shared credentials or config file",
                    profile);
        result = CNP_ERR_CONFIG;
    }
    explicit_bzero(&cred, sizeof cred);
    explicit_bzero(&conf, sizeof conf);
    return result;
}

/* ---- metadata endpoints ------------------------------------------------------ */

static size_t fetch_write(char *data, size_t size, size_t nmemb, void *userp)
{
    cnp_buf *b = userp;
    size_t n = size * nmemb;
    if (b->len + n > 64 * 1024 || cnp_buf_append(b, data, n) != CNP_OK)
        return 0;
    return n;
}

/* One small HTTP exchange with a metadata service, retried on connection
 * errors and 5xx. Body is NUL-terminated. */
static cnp_status fetch_full(const char *method, const char *url, const char *header1,
                             const char *header2, const char *form, bool direct, int attempts,
                             cnp_buf *body, long *status, cnp_err *err)
{
    cnp_status result = CNP_ERR_TRANSIENT;
    struct curl_slist *h = NULL, *t;
    if (header1 && (t = curl_slist_append(h, header1)))
        h = t;
    if (header2 && (t = curl_slist_append(h, header2)))
        h = t;
    CURL *e = curl_easy_init();
    if (!e) {
        curl_slist_free_all(h);
        return CNP_ERR_INTERNAL;
    }
    for (int attempt = 1; attempt <= attempts; attempt++) {
        body->len = 0;
        curl_easy_reset(e);
        curl_easy_setopt(e, CURLOPT_URL, url);
        curl_easy_setopt(e, CURLOPT_NOSIGNAL, 1L);
        /* Link-local agents are never reached through an HTTP proxy. */
        if (direct)
            curl_easy_setopt(e, CURLOPT_NOPROXY, "*");
        curl_easy_setopt(e, CURLOPT_CONNECTTIMEOUT_MS, 1000L);
        curl_easy_setopt(e, CURLOPT_TIMEOUT_MS, 5000L);
        curl_easy_setopt(e, CURLOPT_HTTPHEADER, h);
        curl_easy_setopt(e, CURLOPT_WRITEFUNCTION, fetch_write);
        curl_easy_setopt(e, CURLOPT_WRITEDATA, body);
        if (strcmp(method, "GET") != 0) {
            /* curl labels POSTFIELDS application/x-www-form-urlencoded. */
            curl_easy_setopt(e, CURLOPT_CUSTOMREQUEST, method);
            curl_easy_setopt(e, CURLOPT_POSTFIELDSIZE, form ? (long)strlen(form) : 0L);
            curl_easy_setopt(e, CURLOPT_POSTFIELDS, form ? form : "");
        }
        CURLcode rc = curl_easy_perform(e);
        *status = 0;
        curl_easy_getinfo(e, CURLINFO_RESPONSE_CODE, status);
        if (rc == CURLE_OK && *status < 500) {
            result = cnp_buf_append(body, "", 1);
            body->len--;
            if (result != CNP_OK)
                break;
            if (*status / 100 != 2) {
                cnp_err_set(err, "%s %s: HTTP %ld", method, url, *status);
                result = *status == 401 || *status == 403 ? CNP_ERR_AUTH : CNP_ERR_REMOTE;
            }
            break;
        }
        if (rc != CURLE_OK)
            cnp_err_set(err, "%s %s: %s", method, url, curl_easy_strerror(rc));
        else
            cnp_err_set(err, "%s %s: HTTP %ld", method, url, *status);
        result = CNP_ERR_TRANSIENT;
        if (attempt < attempts)
            nanosleep(&(struct timespec){0, 100000000L * attempt}, NULL);
    }
    curl_easy_cleanup(e);
    curl_slist_free_all(h);
    return result;
}

/* A metadata-service exchange: direct, no body. */
static cnp_status fetch(const char *method, const char *url, const char *header1,
                        const char *header2, int attempts, cnp_buf *body, long *status,
                        cnp_err *err)
{
    return fetch_full(method, url, header1, header2, NULL, true, attempts, body, status, err);
}

/* Parses the credentials JSON both metadata services answer. */
cnp_status aws_creds_json_parse(const void *body, size_t len, const char *source,
                                const char *what, aws_credentials *out, cnp_err *err)
{
    cJSON *j = cJSON_ParseWithLength(body ? (const char *)body : "", len);
    cnp_status result = CNP_ERR_AUTH;
    if (!j) {
        cnp_err_set(err, "%s: credentials response is not JSON", what);
        return result;
    }
    const cJSON *code = cJSON_GetObjectItemCaseSensitive(j, "Code");
    const cJSON *akid = cJSON_GetObjectItemCaseSensitive(j, "AccessKeyId");
    const cJSON *secret = cJSON_GetObjectItemCaseSensitive(j, "SecretAccessKey");
    const cJSON *token = cJSON_GetObjectItemCaseSensitive(j, "Token");
    const cJSON *exp = cJSON_GetObjectItemCaseSensitive(j, "Expiration");
    if (cJSON_IsString(code) && strcmp(code->valuestring, "Success") != 0) {
        cnp_err_set(err, "%s: credentials status %s", what, code->valuestring);
    } else if (!cJSON_IsString(akid) || !cJSON_IsString(secret)) {
        cnp_err_set(err, "%s: credentials response lacks AccessKeyId/SecretAccessKey", what);
    } else if (set_creds(out, akid->valuestring, secret->valuestring,
                         cJSON_IsString(token) ? token->valuestring : NULL,
                         cJSON_IsString(exp) ? aws_parse_iso8601(exp->valuestring) : 0, source)) {
        result = CNP_OK;
    } else {
        cnp_err_set(err, "%s: empty credentials", what);
    }
    cJSON_Delete(j);
    return result;
}

/* Full URIs over plain HTTP are only trusted on loopback or the ECS/EKS
 * link-local agents, as the SDKs do. */
static bool full_uri_allowed(const char *url)
{
    aws_endpoint ep;
    if (aws_endpoint_parse(url, &ep, NULL) != CNP_OK)
        return false;
    if (strcmp(ep.scheme, "https") == 0)
        return true;
    const char *ok[] = {"localhost", "169.254.170.2", "169.254.170.23", "[fd00:ec2::23]",
                        "[::1]", NULL};
    for (int i = 0; ok[i]; i++)
        if (strcasecmp(ep.host, ok[i]) == 0)
            return true;
    return strncmp(ep.host, "127.", 4) == 0;
}

static cnp_status from_container(aws_credentials *out, cnp_err *err)
{
    const char *rel = env("AWS_CONTAINER_CREDENTIALS_RELATIVE_URI");
    const char *full = env("AWS_CONTAINER_CREDENTIALS_FULL_URI");
    if (!rel && !full)
        return CNP_ERR_NOTFOUND;
    char url[CNP_STR_LONG];
    char auth[CNP_STR_SECRET + 32] = "";
    if (rel) {
        /* CANOPY_CONTAINER_CREDENTIALS_BASE replaces the ECS agent address
         * (tests point it at a local server). */
        const char *base = env("CANOPY_CONTAINER_CREDENTIALS_BASE");
        snprintf(url, sizeof url, "%s%s", base ? base : "http://169.254.170.2", rel);
    } else {
        snprintf(url, sizeof url, "%s", full);
        if (!full_uri_allowed(url)) {
            cnp_err_set(err, "AWS_CONTAINER_CREDENTIALS_FULL_URI %s: plain http is allowed "
                             "only for loopback and the ECS/EKS agent addresses", url);
            return CNP_ERR_CONFIG;
        }
        const char *file = env("AWS_CONTAINER_AUTHORIZATION_TOKEN_FILE");
        const char *token = env("AWS_CONTAINER_AUTHORIZATION_TOKEN");
        cnp_buf tb = {0};
        if (file) {
            cnp_status st = cnp_file_read(file, 16384, &tb, err);
            if (st != CNP_OK) {
                cnp_err_prefix(err, "AWS_CONTAINER_AUTHORIZATION_TOKEN_FILE");
                return CNP_ERR_CONFIG;
            }
            while (tb.len && isspace(tb.data[tb.len - 1]))
                tb.len--;
            snprintf(auth, sizeof auth, "Authorization: %.*s", (int)tb.len, (char *)tb.data);
            explicit_bzero(tb.data, tb.cap);
            cnp_buf_free(&tb);
        } else if (token) {
            snprintf(auth, sizeof auth, "Authorization: %s", token);
        }
    }
    cnp_buf body = {0};
    long status = 0;
    cnp_status result =
        fetch("GET", url, auth[0] ? auth : NULL, NULL, CONTAINER_ATTEMPTS, &body, &status, err);
    if (result == CNP_OK)
        result = aws_creds_json_parse(body.data, body.len, "container", url, out, err);
    else
        cnp_err_prefix(err, "container credentials");
    explicit_bzero(auth, sizeof auth);
    if (body.data)
        explicit_bzero(body.data, body.cap);
    cnp_buf_free(&body);
    return result;
}

static cnp_status from_imds(aws_credentials *out, cnp_err *err)
{
    const char *disabled = env("AWS_EC2_METADATA_DISABLED");
    if (disabled && strcasecmp(disabled, "true") == 0)
        return CNP_ERR_NOTFOUND;
    const char *base = env("AWS_EC2_METADATA_SERVICE_ENDPOINT");
    if (!base)
        base = "http://169.254.169.254";
    size_t bl = strlen(base);
    const char *slash = bl && base[bl - 1] == '/' ? "" : "/";
    char url[CNP_STR_LONG];
    cnp_buf body = {0};
    long status = 0;
    char token_hdr[1200] = "";
    snprintf(url, sizeof url, "%s%slatest/api/token", base, slash);
    cnp_status result = fetch("PUT", url, "X-aws-ec2-metadata-token-ttl-seconds: 21600", NULL,
                              IMDS_ATTEMPTS, &body, &status, err);
    if (result != CNP_OK) {
        cnp_err_prefix(err, "instance metadata (IMDSv2) token");
        goto out;
    }
    snprintf(token_hdr, sizeof token_hdr, "X-aws-ec2-metadata-token: %s", (char *)body.data);
    snprintf(url, sizeof url, "%s%slatest/meta-data/iam/security-credentials/", base, slash);
    result = fetch("GET", url, token_hdr, NULL, IMDS_ATTEMPTS, &body, &status, err);
    if (result != CNP_OK) {
        cnp_err_prefix(err, "instance metadata role");
        goto out;
    }
    char role[256];
    snprintf(role, sizeof role, "%.*s", (int)strcspn((char *)body.data, "\r\n"), (char *)body.data);
    if (!role[0]) {
        cnp_err_set(err, "instance metadata: no IAM role attached to this instance");
        result = CNP_ERR_AUTH;
        goto out;
    }
    snprintf(url, sizeof url, "%s%slatest/meta-data/iam/security-credentials/%s", base, slash,
             role);
    result = fetch("GET", url, token_hdr, NULL, IMDS_ATTEMPTS, &body, &status, err);
    if (result == CNP_OK)
        result = aws_creds_json_parse(body.data, body.len, "imds", url, out, err);
out:
    explicit_bzero(token_hdr, sizeof token_hdr);
    if (body.data)
        explicit_bzero(body.data, body.cap);
    cnp_buf_free(&body);
    return result;
}

/* ---- web identity (EKS IRSA) ---------------------------------------------------- */

typedef struct sts_parse {
    char *field;
    size_t cap;
    size_t len;
    aws_sts_answer *a;
} sts_parse;

static void XMLCALL sts_start(void *ud, const XML_Char *name, const XML_Char **attrs)
{
    sts_parse *p = ud;
    aws_sts_answer *a = p->a;
    struct {
        const char *name;
        char *field;
        size_t cap;
    } map[] = {{"AccessKeyId", a->akid, sizeof a->akid},
               {"SecretAccessKey", a->secret, sizeof a->secret},
               {"SessionToken", a->token, sizeof a->token},
               {"Expiration", a->expiration, sizeof a->expiration},
               {"Code", a->code, sizeof a->code},
               {"Message", a->message, sizeof a->message}};
    p->field = NULL;
    for (size_t i = 0; i < sizeof map / sizeof map[0]; i++)
        if (strcmp(name, map[i].name) == 0) {
            p->field = map[i].field;
            p->cap = map[i].cap;
            p->len = 0;
            p->field[0] = '\0';
        }
}

static void XMLCALL sts_end(void *ud, const XML_Char *name)
{
    ((sts_parse *)ud)->field = NULL;
}

static void XMLCALL sts_text(void *ud, const XML_Char *s, int len)
{
    sts_parse *p = ud;
    if (!p->field)
        return;
    size_t n = (size_t)len < p->cap - 1 - p->len ? (size_t)len : p->cap - 1 - p->len;
    memcpy(p->field + p->len, s, n);
    p->len += n;
    p->field[p->len] = '\0';
}

void aws_sts_parse(const void *body, size_t len, aws_sts_answer *out)
{
    memset(out, 0, sizeof *out);
    sts_parse p = {.a = out};
    XML_Parser xp = len && len <= INT_MAX ? XML_ParserCreate("UTF-8") : NULL;
    if (!xp)
        return;
    XML_SetUserData(xp, &p);
    XML_SetElementHandler(xp, sts_start, sts_end);
    XML_SetCharacterDataHandler(xp, sts_text);
    XML_Parse(xp, (const char *)body, (int)len, 1);
    XML_ParserFree(xp);
}

/* Appends "&name=value", the value form-encoded. */
static cnp_status form_add(cnp_buf *form, const char *name, const char *value)
{
    cnp_status result = cnp_buf_printf(form, "%s%s=", form->len ? "&" : "", name);
    if (result == CNP_OK)
        result = aws_uri_encode(form, value, strlen(value), false);
    return result;
}

/* AssumeRoleWithWebIdentity with the token from AWS_WEB_IDENTITY_TOKEN_FILE
 * for AWS_ROLE_ARN (the variables EKS sets for IAM roles for service
 * accounts). The call is unsigned; the token file is re-read on every
 * refresh because the kubelet rotates it. */
static cnp_status from_web_identity(const cnp_aws_config *cfg, aws_credentials *out, cnp_err *err)
{
    const char *file = env("AWS_WEB_IDENTITY_TOKEN_FILE");
    const char *role = env("AWS_ROLE_ARN");
    if (!file || !role)
        return CNP_ERR_NOTFOUND;
    char session[64];
    snprintf(session, sizeof session, "%s",
             env("AWS_ROLE_SESSION_NAME") ? env("AWS_ROLE_SESSION_NAME") : "canopy");
    const char *region = cfg->region[0] ? cfg->region
                         : env("AWS_REGION")   ? env("AWS_REGION")
                         : env("AWS_DEFAULT_REGION") ? env("AWS_DEFAULT_REGION")
                                                     : "us-east-1";
    char url[CNP_STR_LONG];
    const char *ep = env("AWS_ENDPOINT_URL_STS") ? env("AWS_ENDPOINT_URL_STS")
                                                 : env("AWS_ENDPOINT_URL");
    if (ep)
        snprintf(url, sizeof url, "%s", ep);
    else
        snprintf(url, sizeof url, "https://sts.%s.amazonaws.com%s/", region,
                 strncmp(region, "cn-", 3) == 0 ? ".cn" : "");
    cnp_buf token = {0}, form = {0}, body = {0};
    cnp_status result = cnp_file_read(file, 64 * 1024, &token, err);
    if (result != CNP_OK) {
        cnp_err_prefix(err, "AWS_WEB_IDENTITY_TOKEN_FILE");
        result = CNP_ERR_AUTH;
        goto out;
    }
    while (token.len && isspace(token.data[token.len - 1]))
        token.len--;
    if ((result = cnp_buf_append(&token, "", 1)) != CNP_OK ||
        (result = form_add(&form, "Action", "AssumeRoleWithWebIdentity")) != CNP_OK ||
        (result = form_add(&form, "RoleArn", role)) != CNP_OK ||
        (result = form_add(&form, "RoleSessionName", session)) != CNP_OK ||
        (result = form_add(&form, "Version", "2011-06-15")) != CNP_OK ||
        (result = form_add(&form, "WebIdentityToken", (char *)token.data)) != CNP_OK)
        goto out;
    long status = 0;
    result = fetch_full("POST", url, NULL, NULL, (char *)form.data, false, CONTAINER_ATTEMPTS,
                        &body, &status, err);
    aws_sts_answer p;
    aws_sts_parse(body.data, body.len, &p);
    if (result != CNP_OK) {
        if (p.code[0])
            cnp_err_set(err, "AssumeRoleWithWebIdentity %s: HTTP %ld %s: %s", role, status, p.code,
                        p.message);
        else
            cnp_err_prefix(err, "AssumeRoleWithWebIdentity %s", role);
        if (result == CNP_ERR_REMOTE)
            result = CNP_ERR_AUTH;
    } else if (!set_creds(out, p.akid, p.secret, p.token, aws_parse_iso8601(p.expiration),
                          "web-identity")) {
        cnp_err_set(err, "AssumeRoleWithWebIdentity %s: no credentials in the response", role);
        result = CNP_ERR_AUTH;
    }
    explicit_bzero(&p, sizeof p);
out:
    if (token.data)
        explicit_bzero(token.data, token.cap);
    if (form.data)
        explicit_bzero(form.data, form.cap);
    if (body.data)
        explicit_bzero(body.data, body.cap);
    cnp_buf_free(&token);
    cnp_buf_free(&form);
    cnp_buf_free(&body);
    return result;
}

/* ---- the chain --------------------------------------------------------------- */

cnp_status aws_credentials_resolve(const cnp_aws_config *cfg, aws_credentials *out, cnp_err *err)
{
    if (set_creds(out, cfg->access_key_id, cfg->secret_access_key,
                  cfg->session_token, 0, "config"))
        return CNP_OK;
    if (set_creds(out, env("AWS_ACCESS_KEY_ID"), env("AWS_SECRET_ACCESS_KEY"),
                  env("AWS_SESSION_TOKEN"), 0, "env"))
        return CNP_OK;
    cnp_status result = from_web_identity(cfg, out, err);
    if (result != CNP_ERR_NOTFOUND)
        return result;
    result = aws_profile_credentials(cfg, out, err);
    if (result != CNP_ERR_NOTFOUND)
        return result;
    result = from_container(out, err);
    if (result != CNP_ERR_NOTFOUND)
        return result;
    result = from_imds(out, err);
    if (result == CNP_OK)
        return result;
    if (result != CNP_ERR_NOTFOUND && env("AWS_EC2_METADATA_SERVICE_ENDPOINT"))
        return result; /* explicitly configured: its error is the useful one */
    cnp_err_set(err, "no AWS credentials found: set [aws] access_key_id/secret_access_key, "
                     "AWS_ACCESS_KEY_ID/AWS_SECRET_ACCESS_KEY, a profile in "
                     "~/.aws/credentials, or run with container or instance credentials");
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
