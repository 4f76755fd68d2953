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
#include <sys/wait.h>
#include <time.h>

#include <cjson/cJSON.h>
#include <expat.h>
#include <ini.h>

#include "aws/aws_internal.h"
#include "canopy/exit.h"
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

/* What one profile section says (credentials file, then config file). */
typedef struct profile_ctx {
    const char *profile;
    bool config_file;   /* sections are "profile NAME" there, except default */
    bool found;
    char akid[CNP_STR_SHORT];
    char secret[CNP_STR_SHORT];
    char token[CNP_STR_SECRET];
    char region[CNP_STR_SHORT];
    char role_arn[CNP_STR_SHORT * 2];
    char source_profile[CNP_STR_SHORT];
    char credential_source[64];
    char role_session_name[CNP_STR_SHORT];
    char external_id[CNP_STR_SHORT * 2];
    char duration_seconds[16];
    char credential_process[CNP_STR_LONG];
    char ca_bundle[CNP_STR_LONG];
    char max_attempts[16];
    char retry_mode[16];
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
    struct {
        const char *key;
        char *field;
        size_t cap;
    } map[] = {
        {"aws_access_key_id", p->akid, sizeof p->akid},
        {"aws_secret_access_key", p->secret, sizeof p->secret},
        {"aws_session_token", p->token, sizeof p->token},
        {"region", p->region, sizeof p->region},
        {"role_arn", p->role_arn, sizeof p->role_arn},
        {"source_profile", p->source_profile, sizeof p->source_profile},
        {"credential_source", p->credential_source, sizeof p->credential_source},
        {"role_session_name", p->role_session_name, sizeof p->role_session_name},
        {"external_id", p->external_id, sizeof p->external_id},
        {"duration_seconds", p->duration_seconds, sizeof p->duration_seconds},
        {"credential_process", p->credential_process, sizeof p->credential_process},
        {"ca_bundle", p->ca_bundle, sizeof p->ca_bundle},
        {"max_attempts", p->max_attempts, sizeof p->max_attempts},
        {"retry_mode", p->retry_mode, sizeof p->retry_mode},
    };
    for (size_t i = 0; i < sizeof map / sizeof map[0]; i++)
        if (strcmp(name, map[i].key) == 0)
            snprintf(map[i].field, map[i].cap, "%s", value);
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

/* Reads the profile from the credentials file, then the config file. */
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

/* One view of the profile: each setting from the credentials file when it
 * has it, else from the config file (as the AWS CLI merges them); the
 * static key pair is taken whole from one file. */
static void merge_profile(const char *profile, profile_ctx *m)
{
    profile_ctx *cred = malloc(sizeof *cred);
    memset(m, 0, sizeof *m);
    m->profile = profile;
    if (!cred)
        return;
    read_profile(profile, cred, m);
    m->found = m->found || cred->found;
    if (cred->akid[0]) {
        memcpy(m->akid, cred->akid, sizeof m->akid);
        memcpy(m->secret, cred->secret, sizeof m->secret);
        memcpy(m->token, cred->token, sizeof m->token);
    }
#define TAKE(f)                                                   \
    do {                                                          \
        if (cred->f[0])                                           \
            memcpy(m->f, cred->f, sizeof m->f);                   \
    } while (0)
    TAKE(role_arn);
    TAKE(source_profile);
    TAKE(credential_source);
    TAKE(role_session_name);
    TAKE(external_id);
    TAKE(duration_seconds);
    TAKE(credential_process);
#undef TAKE
    /* region, ca_bundle, max_attempts and retry_mode belong in the config
     * file; the credentials file is read for them only when it lacks them. */
    if (!m->region[0])
        memcpy(m->region, cred->region, sizeof m->region);
    explicit_bzero(cred, sizeof *cred);
    free(cred);
}

/* The profile cfg or AWS_PROFILE names, else "default"; *named tells. */
static const char *profile_name(const cnp_aws_config *cfg, bool *named)
{
    const char *n = cfg->profile[0] ? cfg->profile : env("AWS_PROFILE");
    *named = n != NULL;
    return n ? n : "default";
}

void aws_profile_options(const cnp_aws_config *cfg, aws_profile_opts *out)
{
    bool named;
    profile_ctx *m = malloc(sizeof *m);
    memset(out, 0, sizeof *out);
    if (!m)
        return;
    merge_profile(profile_name(cfg, &named), m);
    snprintf(out->region, sizeof out->region, "%s", m->region);
    snprintf(out->ca_bundle, sizeof out->ca_bundle, "%s", m->ca_bundle);
    snprintf(out->retry_mode, sizeof out->retry_mode, "%s", m->retry_mode);
    out->max_attempts = atoi(m->max_attempts);
    explicit_bzero(m, sizeof *m);
    free(m);
}

void aws_profile_region(const char *profile, char *out, size_t len)
{
    cnp_aws_config *cfg = calloc(1, sizeof *cfg);
    aws_profile_opts o;
    if (!cfg) {
        snprintf(out, len, "%s", "");
        return;
    }
    snprintf(cfg->profile, sizeof cfg->profile, "%s", profile ? profile : "default");
    aws_profile_options(cfg, &o);
    snprintf(out, len, "%s", o.region);
    free(cfg);
}

void aws_ca_bundle_path(const cnp_aws_config *cfg, char *out, size_t len)
{
    if (cfg->ca_bundle[0]) {
        snprintf(out, len, "%s", cfg->ca_bundle);
    } else if (env("AWS_CA_BUNDLE")) {
        snprintf(out, len, "%s", env("AWS_CA_BUNDLE"));
    } else {
        aws_profile_opts o;
        aws_profile_options(cfg, &o);
        snprintf(out, len, "%s", o.ca_bundle);
    }
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

/* How fetch_full talks: direct (link-local agents: no proxy, system CA
 * store) or as the client does (cfg's CA bundle and verify_tls). */
typedef struct http_opts {
    bool direct;
    const cnp_aws_config *cfg; /* NULL: defaults */
    int attempts;
} http_opts;

/* One small HTTP exchange with a metadata service or STS, retried on
 * connection errors and 5xx. headers: NULL-terminated "Name: value" lines.
 * Body is NUL-terminated. */
static cnp_status fetch_full(const char *method, const char *url, const char *const *headers,
                             const char *form, const http_opts *o, cnp_buf *body, long *status,
                             cnp_err *err)
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
    http_opts o = {.direct = true, .attempts = attempts};
    return fetch_full(method, url, headers, NULL, &o, body, status, err);
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

/* ---- profiles: credential_process and role_arn (STS AssumeRole) ------------ */

/* Runs a profile's credential_process through /bin/sh -c and reads the JSON
 * it prints (Version 1). Its stderr goes to ours, as with the AWS CLI; what
 * it prints on stdout is secret and never logged. */
static cnp_status from_process(const char *profile, const char *cmd, aws_credentials *out,
                               cnp_err *err)
{
    cnp_buf body = {0};
    cnp_status result = CNP_ERR_AUTH;
    fflush(NULL);
    FILE *p = popen(cmd, "re");
    if (!p) {
        cnp_err_set(err, "credential_process of profile '%s': cannot run it", profile);
        return CNP_ERR_AUTH;
    }
    char chunk[4096];
    size_t n;
    bool too_big = false;
    while ((n = fread(chunk, 1, sizeof chunk, p)) > 0)
        if (body.len + n > 64 * 1024 || cnp_buf_append(&body, chunk, n) != CNP_OK)
            too_big = true;
    explicit_bzero(chunk, sizeof chunk);
    int st = pclose(p);
    cJSON *j = NULL;
    if (st == -1 || !WIFEXITED(st) || WEXITSTATUS(st) != 0) {
        if (st != -1 && WIFEXITED(st))
            cnp_err_set(err, "credential_process of profile '%s' failed with exit status %d",
                        profile, WEXITSTATUS(st));
        else
            cnp_err_set(err, "credential_process of profile '%s' did not exit normally", profile);
        goto out;
    }
    if (too_big) {
        cnp_err_set(err, "credential_process of profile '%s': output larger than 64 KiB",
                    profile);
        goto out;
    }
    j = cJSON_ParseWithLength(body.data ? (const char *)body.data : "", body.len);
    const cJSON *ver = cJSON_GetObjectItemCaseSensitive(j, "Version");
    const cJSON *akid = cJSON_GetObjectItemCaseSensitive(j, "AccessKeyId");
    const cJSON *secret = cJSON_GetObjectItemCaseSensitive(j, "SecretAccessKey");
    const cJSON *token = cJSON_GetObjectItemCaseSensitive(j, "SessionToken");
    const cJSON *exp = cJSON_GetObjectItemCaseSensitive(j, "Expiration");
    time_t expiration = cJSON_IsString(exp) ? aws_parse_iso8601(exp->valuestring) : 0;
    if (!cJSON_IsObject(j))
        cnp_err_set(err, "credential_process of profile '%s': output is not a JSON object",
                    profile);
    else if (!cJSON_IsNumber(ver) || ver->valuedouble != 1)
        cnp_err_set(err, "credential_process of profile '%s': \"Version\" must be 1", profile);
    else if (!cJSON_IsString(akid) || !cJSON_IsString(secret))
        cnp_err_set(err, "credential_process of profile '%s': output lacks AccessKeyId or "
                         "SecretAccessKey", profile);
    else if (exp && !cJSON_IsNull(exp) && expiration == 0)
        cnp_err_set(err, "credential_process of profile '%s': \"Expiration\" is not an "
                         "ISO 8601 time", profile);
    else if (expiration && expiration <= time(NULL))
        cnp_err_set(err, "credential_process of profile '%s': the credentials it gave have "
                         "expired", profile);
    else if (!set_creds(out, akid->valuestring, secret->valuestring,
                        cJSON_IsString(token) ? token->valuestring : NULL, expiration, "process"))
        cnp_err_set(err, "credential_process of profile '%s': empty credentials", profile);
    else
        result = CNP_OK;
out:
    cJSON_Delete(j);
    if (body.data)
        explicit_bzero(body.data, body.cap);
    cnp_buf_free(&body);
    return result;
}

/* The STS endpoint: AWS_ENDPOINT_URL_STS, AWS_ENDPOINT_URL, else the
 * regional one. Not [aws] endpoint_url: that is S3's and SQS's (a MinIO or
 * VPC endpoint has no STS), as the README has always said. */
static void sts_url(const cnp_aws_config *cfg, const char *region, char *url, size_t len)
{
    (void)cfg;
    const char *ep = env("AWS_ENDPOINT_URL_STS") ? env("AWS_ENDPOINT_URL_STS")
                                                 : env("AWS_ENDPOINT_URL");
    if (ep)
        snprintf(url, len, "%s", ep);
    else
        snprintf(url, len, "https://sts.%s.amazonaws.com%s/", region,
                 strncmp(region, "cn-", 3) == 0 ? ".cn" : "");
}

/* The region STS calls are signed for: as the client's (config,
 * AWS_REGION, AWS_DEFAULT_REGION, the profile's), else us-east-1. */
static void sts_region(const cnp_aws_config *cfg, const char *profile_region, char *out,
                       size_t len)
{
    const char *r = cfg->region[0]              ? cfg->region
                    : env("AWS_REGION")         ? env("AWS_REGION")
                    : env("AWS_DEFAULT_REGION") ? env("AWS_DEFAULT_REGION")
                    : profile_region && profile_region[0] ? profile_region
                                                           : "us-east-1";
    snprintf(out, len, "%s", r);
}

/* STS AssumeRole for the profile's role_arn, signed (SigV4, service "sts")
 * with src, the source profile's or credential_source's credentials. */
static cnp_status assume_role(const cnp_aws_config *cfg, const profile_ctx *m,
                              const aws_credentials *src, aws_credentials *out, cnp_err *err)
{
    char region[CNP_STR_SHORT], url[CNP_STR_LONG], session[CNP_STR_SHORT];
    sts_region(cfg, m->region, region, sizeof region);
    sts_url(cfg, region, url, sizeof url);
    if (m->role_session_name[0])
        snprintf(session, sizeof session, "%s", m->role_session_name);
    else
        snprintf(session, sizeof session, "canopy-%lld", (long long)time(NULL));
    aws_endpoint ep;
    cnp_status result = aws_endpoint_parse(url, &ep, err);
    if (result != CNP_OK) {
        cnp_err_prefix(err, "profile '%s': STS", m->profile);
        return CNP_ERR_CONFIG;
    }
    const char *path = strstr(url, "://") + 3;
    path += strcspn(path, "/?#");
    char canon_path[CNP_STR_LONG];
    snprintf(canon_path, sizeof canon_path, "%.*s", (int)strcspn(path, "?#"), path);
    if (!canon_path[0])
        snprintf(canon_path, sizeof canon_path, "/");
    cnp_buf form = {0}, body = {0};
    char hash[65], amz_date[20], auth[1024];
    char h_date[40], h_token[CNP_STR_SECRET + 32] = "", h_auth[1060];
    if ((result = form_add(&form, "Action", "AssumeRole")) != CNP_OK ||
        (m->duration_seconds[0] &&
         (result = form_add(&form, "DurationSeconds", m->duration_seconds)) != CNP_OK) ||
        (m->external_id[0] && (result = form_add(&form, "ExternalId", m->external_id)) != CNP_OK) ||
        (result = form_add(&form, "RoleArn", m->role_arn)) != CNP_OK ||
        (result = form_add(&form, "RoleSessionName", session)) != CNP_OK ||
        (result = form_add(&form, "Version", "2011-06-15")) != CNP_OK ||
        (result = cnp_buf_append(&form, "", 1)) != CNP_OK)
        goto out;
    form.len--;
    aws_sha256_hex(form.data, form.len, hash);
    time_t now = time(NULL);
    struct tm tm;
    gmtime_r(&now, &tm);
    strftime(amz_date, sizeof amz_date, "%Y%m%dT%H%M%SZ", &tm);
    const char *ctype = "application/x-www-form-urlencoded; charset=utf-8";
    aws_kv hs[4] = {{"host", ep.authority}, {"x-amz-date", amz_date},
                    {"content-type", (char *)ctype},
                    {"x-amz-security-token", (char *)src->session_token}};
    aws_sigv4_input in = {
        .access_key_id = src->access_key_id,
        .secret_access_key = src->secret_access_key,
        .region = region,
        .service = "sts",
        .amz_date = amz_date,
        .method = "POST",
        .canonical_uri = canon_path,
        .canonical_query = "",
        .headers = hs,
        .n_headers = src->session_token[0] ? 4 : 3,
        .payload_hash = hash,
    };
    if (aws_sigv4_sign(&in, auth, sizeof auth) != CNP_OK) {
        cnp_err_set(err, "profile '%s': AssumeRole: signing failed", m->profile);
        result = CNP_ERR_INTERNAL;
        goto out;
    }
    snprintf(h_date, sizeof h_date, "X-Amz-Date: %s", amz_date);
    snprintf(h_auth, sizeof h_auth, "Authorization: %s", auth);
    if (src->session_token[0])
        snprintf(h_token, sizeof h_token, "X-Amz-Security-Token: %s", src->session_token);
    char h_ctype[80];
    snprintf(h_ctype, sizeof h_ctype, "Content-Type: %s", ctype);
    const char *headers[] = {h_date, h_ctype, h_auth, h_token[0] ? h_token : NULL, NULL};
    long status = 0;
    http_opts ho = {.direct = false, .cfg = cfg, .attempts = CONTAINER_ATTEMPTS};
    result = fetch_full("POST", url, headers, (char *)form.data, &ho, &body, &status, err);
    aws_sts_answer p;
    aws_sts_parse(body.data, body.len, &p);
    if (result != CNP_OK) {
        if (p.code[0])
            cnp_err_set(err, "profile '%s': AssumeRole %s: HTTP %ld %s: %s", m->profile,
                        m->role_arn, status, p.code, p.message);
        else
            cnp_err_prefix(err, "profile '%s': AssumeRole %s", m->profile, m->role_arn);
        if (result == CNP_ERR_REMOTE)
            result = CNP_ERR_AUTH;
    } else if (!set_creds(out, p.akid, p.secret, p.token, aws_parse_iso8601(p.expiration),
                          "assume-role")) {
        cnp_err_set(err, "profile '%s': AssumeRole %s: no credentials in the response",
                    m->profile, m->role_arn);
        result = CNP_ERR_AUTH;
    }
    explicit_bzero(&p, sizeof p);
out:
    explicit_bzero(auth, sizeof auth);
    explicit_bzero(h_auth, sizeof h_auth);
    explicit_bzero(h_token, sizeof h_token);
    if (form.data)
        explicit_bzero(form.data, form.cap);
    if (body.data)
        explicit_bzero(body.data, body.cap);
    cnp_buf_free(&form);
    cnp_buf_free(&body);
    return result;
}

#define MAX_ROLE_CHAIN 8

/* Credentials of a role profile's source: credential_source (Environment,
 * Ec2InstanceMetadata, EcsContainer) or source_profile, resolved in turn. */
static cnp_status profile_resolve(const cnp_aws_config *cfg, const char *name, bool named,
                                  const char **chain, int depth, aws_credentials *out,
                                  cnp_err *err);

static cnp_status role_source(const cnp_aws_config *cfg, const profile_ctx *m,
                              const char **chain, int depth, aws_credentials *src, cnp_err *err)
{
    if (m->source_profile[0] && m->credential_source[0]) {
        cnp_err_set(err, "profile '%s': role_arn with both source_profile and "
                         "credential_source", m->profile);
        return CNP_ERR_CONFIG;
    }
    if (m->credential_source[0]) {
        cnp_status result = CNP_ERR_NOTFOUND;
        if (strcmp(m->credential_source, "Environment") == 0) {
            if (set_creds(src, env("AWS_ACCESS_KEY_ID"), env("AWS_SECRET_ACCESS_KEY"),
                          env("AWS_SESSION_TOKEN"), 0, "env"))
                return CNP_OK;
        } else if (strcmp(m->credential_source, "Ec2InstanceMetadata") == 0) {
            result = from_imds(src, err);
        } else if (strcmp(m->credential_source, "EcsContainer") == 0) {
            result = from_container(src, err);
        } else {
            cnp_err_set(err, "profile '%s': credential_source '%s' is not one of Environment, "
                             "Ec2InstanceMetadata, EcsContainer", m->profile,
                        m->credential_source);
            return CNP_ERR_CONFIG;
        }
        if (result == CNP_ERR_NOTFOUND) {
            cnp_err_set(err, "profile '%s': credential_source %s has no credentials",
                        m->profile, m->credential_source);
            result = CNP_ERR_AUTH;
        } else if (result != CNP_OK) {
            cnp_err_prefix(err, "profile '%s': credential_source %s", m->profile,
                           m->credential_source);
        }
        return result;
    }
    if (!m->source_profile[0]) {
        cnp_err_set(err, "profile '%s': role_arn needs source_profile or credential_source",
                    m->profile);
        return CNP_ERR_CONFIG;
    }
    if (strcmp(m->source_profile, m->profile) == 0) {
        /* A profile may be its own source: its static keys assume its role. */
        if (set_creds(src, m->akid, m->secret, m->token, 0, "profile"))
            return CNP_OK;
        cnp_err_set(err, "profile '%s' is its own source_profile but has no static keys",
                    m->profile);
        return CNP_ERR_CONFIG;
    }
    for (int i = 0; i < depth; i++)
        if (strcmp(chain[i], m->source_profile) == 0) {
            char loop[512] = "";
            for (int k = i; k < depth; k++)
                snprintf(loop + strlen(loop), sizeof loop - strlen(loop), "%s -> ", chain[k]);
            cnp_err_set(err, "source_profile loop: %s%s", loop, m->source_profile);
            return CNP_ERR_CONFIG;
        }
    if (depth >= MAX_ROLE_CHAIN) {
        cnp_err_set(err, "profile '%s': more than %d chained source_profile roles", m->profile,
                    MAX_ROLE_CHAIN);
        return CNP_ERR_CONFIG;
    }
    return profile_resolve(cfg, m->source_profile, true, chain, depth, src, err);
}

/* A profile's credentials: role_arn (assumed with its source's), else its
 * static keys, else its credential_process. chain[0 .. depth) are the
 * profiles that led here (loop detection). */
static cnp_status profile_resolve(const cnp_aws_config *cfg, const char *name, bool named,
                                  const char **chain, int depth, aws_credentials *out,
                                  cnp_err *err)
{
    profile_ctx *m = malloc(sizeof *m);
    aws_credentials src;
    cnp_status result = CNP_ERR_NOTFOUND;
    if (!m)
        return CNP_ERR_NOMEM;
    merge_profile(name, m);
    chain[depth] = name;
    if (!m->found) {
        if (named)
            cnp_err_set(err, "AWS profile '%s' not found in the shared credentials or config "
                             "file", name);
        result = named ? CNP_ERR_CONFIG : CNP_ERR_NOTFOUND;
    } else if (m->role_arn[0]) {
        result = role_source(cfg, m, chain, depth + 1, &src, err);
        if (result == CNP_OK)
            result = assume_role(cfg, m, &src, out, err);
        explicit_bzero(&src, sizeof src);
    } else if (set_creds(out, m->akid, m->secret, m->token, 0, "profile")) {
        result = CNP_OK;
    } else if (m->credential_process[0]) {
        result = from_process(name, m->credential_process, out, err);
    } else if (depth > 0) {
        cnp_err_set(err, "source_profile '%s' has no credentials (keys, role_arn or "
                         "credential_process)", name);
        result = CNP_ERR_CONFIG;
    }
    explicit_bzero(m, sizeof *m);
    free(m);
    return result;
}

cnp_status aws_profile_credentials(const cnp_aws_config *cfg, aws_credentials *out,
                                   cnp_err *err)
{
    bool named;
    const char *chain[MAX_ROLE_CHAIN + 2];
    const char *name = profile_name(cfg, &named);
    return profile_resolve(cfg, name, named, chain, 0, out, err);
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
    aws_profile_opts po;
    aws_profile_options(cfg, &po);
    char region[CNP_STR_SHORT], url[CNP_STR_LONG];
    sts_region(cfg, po.region, region, sizeof region);
    sts_url(cfg, region, url, sizeof url);
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
    http_opts ho = {.direct = false, .cfg = cfg, .attempts = CONTAINER_ATTEMPTS};
    result = fetch_full("POST", url, NULL, (char *)form.data, &ho, &body, &status, err);
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
    bool named;
    cnp_err_set(err, "no AWS credentials found; canopy looked in: 1. [aws] access_key_id and "
                     "secret_access_key; 2. AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY; "
                     "3. web identity (AWS_WEB_IDENTITY_TOKEN_FILE and AWS_ROLE_ARN); "
                     "4. profile '%s' of the shared files (~/.aws/credentials, ~/.aws/config: "
                     "keys, role_arn, credential_process); 5. container credentials "
                     "(AWS_CONTAINER_CREDENTIALS_RELATIVE_URI or _FULL_URI); 6. EC2 instance "
                     "metadata (IMDSv2)%s",
                profile_name(cfg, &named),
                env("AWS_EC2_METADATA_DISABLED") &&
                        strcasecmp(env("AWS_EC2_METADATA_DISABLED"), "true") == 0
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

int aws_exit_code(cnp_status status)
{
    return status == CNP_ERR_CONFIG ? CNP_EXIT_USAGE : CNP_EXIT_FATAL;
}
