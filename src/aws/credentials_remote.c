/* Credential sources reached over HTTP: the container agent (ECS / Batch /
 * EKS pod identity), EC2 instance metadata (IMDSv2) and STS
 * AssumeRoleWithWebIdentity (EKS IRSA); with them the small HTTP exchange,
 * the STS answer parser, form encoding and STS endpoint that the shared
 * files' role_arn (credentials_profile.c) uses too. */
#include <ctype.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <time.h>

#include <cjson/cJSON.h>
#include <expat.h>

#include "aws/credentials_internal.h"

/* As the SDKs: instance metadata is not retried (off EC2 it only delays the
 * "no credentials" error); the container agent is (AWS_CONTAINER_ATTEMPTS). */
#define IMDS_ATTEMPTS 2

/* ---- metadata endpoints ------------------------------------------------------ */

static size_t fetch_write(char *data, size_t size, size_t nmemb, void *userp)
{
    cnp_buf *b = userp;
    size_t n = size * nmemb;
    if (b->len + n > 64 * 1024 || cnp_buf_append(b, data, n) != CNP_OK)
        return 0;
    return n;
}

/* One small HTTP exchange with a metadata service or STS, retried on
 * connection errors and 5xx. headers: NULL-terminated "Name: value" lines.
 * Body is NUL-terminated. */
cnp_status aws_creds_fetch(const char *method, const char *url, const char *const *headers,
                           const char *form, const aws_creds_fetch_opts *o, cnp_buf *body,
                           long *status, cnp_err *err)
{
    cnp_status result = CNP_ERR_TRANSIENT;
    struct curl_slist *h = NULL, *t;
    for (int i = 0; headers && headers[i]; i++)
        if ((t = curl_slist_append(h, headers[i])))
            h = t;
    char cainfo[CNP_STR_LONG] = "";
    bool verify = true;
    if (!o->direct && o->cfg) {
        aws_ca_bundle_path(o->cfg, cainfo, sizeof cainfo);
        verify = o->cfg->verify_tls || strstr(url, ".amazonaws.com") != NULL;
    }
    CURL *e = curl_easy_init();
    if (!e) {
        curl_slist_free_all(h);
        return CNP_ERR_INTERNAL;
    }
    for (int attempt = 1; attempt <= o->attempts; attempt++) {
        body->len = 0;
        curl_easy_reset(e);
        curl_easy_setopt(e, CURLOPT_URL, url);
        curl_easy_setopt(e, CURLOPT_NOSIGNAL, 1L);
        /* Link-local agents are never reached through an HTTP proxy. */
        if (o->direct)
            curl_easy_setopt(e, CURLOPT_NOPROXY, "*");
        if (cainfo[0])
            curl_easy_setopt(e, CURLOPT_CAINFO, cainfo);
        curl_easy_setopt(e, CURLOPT_SSL_VERIFYPEER, verify ? 1L : 0L);
        curl_easy_setopt(e, CURLOPT_SSL_VERIFYHOST, verify ? 2L : 0L);
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
        if (attempt < o->attempts)
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
    const char *headers[] = {header1 ? header1 : header2, header1 ? header2 : NULL, NULL};
    aws_creds_fetch_opts o = {.direct = true, .attempts = attempts};
    return aws_creds_fetch(method, url, headers, NULL, &o, body, status, err);
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
    } else if (aws_creds_set(out, akid->valuestring, secret->valuestring,
                             cJSON_IsString(token) ? token->valuestring : NULL,
                             cJSON_IsString(exp) ? aws_parse_iso8601(exp->valuestring) : 0,
                             source)) {
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

cnp_status aws_creds_from_container(aws_credentials *out, cnp_err *err)
{
    const char *rel = aws_env("AWS_CONTAINER_CREDENTIALS_RELATIVE_URI");
    const char *full = aws_env("AWS_CONTAINER_CREDENTIALS_FULL_URI");
    if (!rel && !full)
        return CNP_ERR_NOTFOUND;
    char url[CNP_STR_LONG];
    char auth[CNP_STR_SECRET + 32] = "";
    if (rel) {
        /* CANOPY_CONTAINER_CREDENTIALS_BASE replaces the ECS agent address
         * (tests point it at a local server). */
        const char *base = aws_env("CANOPY_CONTAINER_CREDENTIALS_BASE");
        snprintf(url, sizeof url, "%s%s", base ? base : "http://169.254.170.2", rel);
    } else {
        snprintf(url, sizeof url, "%s", full);
        if (!full_uri_allowed(url)) {
            cnp_err_set(err, "AWS_CONTAINER_CREDENTIALS_FULL_URI %s: plain http is allowed "
                             "only for loopback and the ECS/EKS agent addresses", url);
            return CNP_ERR_CONFIG;
        }
        const char *file = aws_env("AWS_CONTAINER_AUTHORIZATION_TOKEN_FILE");
        const char *token = aws_env("AWS_CONTAINER_AUTHORIZATION_TOKEN");
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
        fetch("GET", url, auth[0] ? auth : NULL, NULL, AWS_CONTAINER_ATTEMPTS, &body, &status, err);
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

cnp_status aws_creds_from_imds(aws_credentials *out, cnp_err *err)
{
    const char *disabled = aws_env("AWS_EC2_METADATA_DISABLED");
    if (disabled && strcasecmp(disabled, "true") == 0)
        return CNP_ERR_NOTFOUND;
    const char *base = aws_env("AWS_EC2_METADATA_SERVICE_ENDPOINT");
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

/* ---- STS: answers, forms, endpoint; web identity (EKS IRSA) ------------------ */

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
cnp_status aws_form_add(cnp_buf *form, const char *name, const char *value)
{
    cnp_status result = cnp_buf_printf(form, "%s%s=", form->len ? "&" : "", name);
    if (result == CNP_OK)
        result = aws_uri_encode(form, value, strlen(value), false);
    return result;
}

/* The STS endpoint: AWS_ENDPOINT_URL_STS, AWS_ENDPOINT_URL, else the
 * regional one. Not [aws] endpoint_url: that is S3's and SQS's (a MinIO or
 * VPC endpoint has no STS), as the README has always said. */
void aws_sts_url(const cnp_aws_config *cfg, const char *region, char *url, size_t len)
{
    (void)cfg;
    const char *ep = aws_env("AWS_ENDPOINT_URL_STS") ? aws_env("AWS_ENDPOINT_URL_STS")
                                                     : aws_env("AWS_ENDPOINT_URL");
    if (ep)
        snprintf(url, len, "%s", ep);
    else
        snprintf(url, len, "https://sts.%s.amazonaws.com%s/", region,
                 strncmp(region, "cn-", 3) == 0 ? ".cn" : "");
}

/* The region STS calls are signed for: as the client's (config,
 * AWS_REGION, AWS_DEFAULT_REGION, the profile's), else us-east-1. */
void aws_sts_region(const cnp_aws_config *cfg, const char *profile_region, char *out,
                    size_t len)
{
    const char *r = cfg->region[0]                  ? cfg->region
                    : aws_env("AWS_REGION")         ? aws_env("AWS_REGION")
                    : aws_env("AWS_DEFAULT_REGION") ? aws_env("AWS_DEFAULT_REGION")
                    : profile_region && profile_region[0] ? profile_region
                                                           : "us-east-1";
    snprintf(out, len, "%s", r);
}

/* AssumeRoleWithWebIdentity with the token from AWS_WEB_IDENTITY_TOKEN_FILE
 * for AWS_ROLE_ARN (the variables EKS sets for IAM roles for service
 * accounts). The call is unsigned; the token file is re-read on every
 * refresh because the kubelet rotates it. */
cnp_status aws_creds_from_web_identity(const cnp_aws_config *cfg, aws_credentials *out,
                                       cnp_err *err)
{
    const char *file = aws_env("AWS_WEB_IDENTITY_TOKEN_FILE");
    const char *role = aws_env("AWS_ROLE_ARN");
    if (!file || !role)
        return CNP_ERR_NOTFOUND;
    char session[64];
    snprintf(session, sizeof session, "%s",
             aws_env("AWS_ROLE_SESSION_NAME") ? aws_env("AWS_ROLE_SESSION_NAME") : "canopy");
    aws_profile_opts po;
    aws_profile_options(cfg, &po);
    char region[CNP_STR_SHORT], url[CNP_STR_LONG];
    aws_sts_region(cfg, po.region, region, sizeof region);
    aws_sts_url(cfg, region, url, sizeof url);
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
        (result = aws_form_add(&form, "Action", "AssumeRoleWithWebIdentity")) != CNP_OK ||
        (result = aws_form_add(&form, "RoleArn", role)) != CNP_OK ||
        (result = aws_form_add(&form, "RoleSessionName", session)) != CNP_OK ||
        (result = aws_form_add(&form, "Version", "2011-06-15")) != CNP_OK ||
        (result = aws_form_add(&form, "WebIdentityToken", (char *)token.data)) != CNP_OK)
        goto out;
    long status = 0;
    aws_creds_fetch_opts ho = {.direct = false, .cfg = cfg, .attempts = AWS_CONTAINER_ATTEMPTS};
    result = aws_creds_fetch("POST", url, NULL, (char *)form.data, &ho, &body, &status, err);
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
    } else if (!aws_creds_set(out, p.akid, p.secret, p.token, aws_parse_iso8601(p.expiration),
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
