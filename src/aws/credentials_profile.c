/* Credentials and settings from the shared files (~/.aws/credentials and
 * ~/.aws/config, or AWS_SHARED_CREDENTIALS_FILE and AWS_CONFIG_FILE): the
 * selected profile's region, CA bundle and retry settings, and its
 * credentials: static keys, credential_process, or role_arn assumed with STS
 * AssumeRole from a source_profile (chained) or a credential_source. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <time.h>

#include <cjson/cJSON.h>
#include <ini.h>

#include "aws/credentials_internal.h"

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
    const char *v = aws_env(env_name);
    if (v)
        snprintf(out, len, "%s", v);
    else if (aws_env("HOME"))
        snprintf(out, len, "%s/.aws/%s", aws_env("HOME"), file);
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
const char *aws_profile_name(const cnp_aws_config *cfg, bool *named)
{
    const char *n = cfg->profile[0] ? cfg->profile : aws_env("AWS_PROFILE");
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
    merge_profile(aws_profile_name(cfg, &named), m);
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
    } else if (aws_env("AWS_CA_BUNDLE")) {
        snprintf(out, len, "%s", aws_env("AWS_CA_BUNDLE"));
    } else {
        aws_profile_opts o;
        aws_profile_options(cfg, &o);
        snprintf(out, len, "%s", o.ca_bundle);
    }
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
    else if (!aws_creds_set(out, akid->valuestring, secret->valuestring,
                            cJSON_IsString(token) ? token->valuestring : NULL, expiration,
                            "process"))
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

/* STS AssumeRole for the profile's role_arn, signed (SigV4, service "sts")
 * with src, the source profile's or credential_source's credentials. */
static cnp_status assume_role(const cnp_aws_config *cfg, const profile_ctx *m,
                              const aws_credentials *src, aws_credentials *out, cnp_err *err)
{
    char region[CNP_STR_SHORT], url[CNP_STR_LONG], session[CNP_STR_SHORT];
    aws_sts_region(cfg, m->region, region, sizeof region);
    aws_sts_url(cfg, region, url, sizeof url);
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
    if ((result = aws_form_add(&form, "Action", "AssumeRole")) != CNP_OK ||
        (m->duration_seconds[0] &&
         (result = aws_form_add(&form, "DurationSeconds", m->duration_seconds)) != CNP_OK) ||
        (m->external_id[0] &&
         (result = aws_form_add(&form, "ExternalId", m->external_id)) != CNP_OK) ||
        (result = aws_form_add(&form, "RoleArn", m->role_arn)) != CNP_OK ||
        (result = aws_form_add(&form, "RoleSessionName", session)) != CNP_OK ||
        (result = aws_form_add(&form, "Version", "2011-06-15")) != CNP_OK ||
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
    aws_creds_fetch_opts ho = {.direct = false, .cfg = cfg, .attempts = AWS_CONTAINER_ATTEMPTS};
    result = aws_creds_fetch("POST", url, headers, (char *)form.data, &ho, &body, &status, err);
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
    } else if (!aws_creds_set(out, p.akid, p.secret, p.token, aws_parse_iso8601(p.expiration),
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
            if (aws_creds_set(src, aws_env("AWS_ACCESS_KEY_ID"), aws_env("AWS_SECRET_ACCESS_KEY"),
                              aws_env("AWS_SESSION_TOKEN"), 0, "env"))
                return CNP_OK;
        } else if (strcmp(m->credential_source, "Ec2InstanceMetadata") == 0) {
            result = aws_creds_from_imds(src, err);
        } else if (strcmp(m->credential_source, "EcsContainer") == 0) {
            result = aws_creds_from_container(src, err);
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
        if (aws_creds_set(src, m->akid, m->secret, m->token, 0, "profile"))
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
    } else if (aws_creds_set(out, m->akid, m->secret, m->token, 0, "profile")) {
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
    const char *name = aws_profile_name(cfg, &named);
    return profile_resolve(cfg, name, named, chain, 0, out, err);
}
