/* The rest of the AWS CLI's profile conventions: credential_process,
 * role_arn + source_profile / credential_source through STS AssumeRole
 * (against moto's STS, which checks signatures and session tokens), the CA
 * bundle ([aws] ca_bundle, AWS_CA_BUNDLE, the profile's ca_bundle) against a
 * TLS fake_server.py, and max_attempts / retry_mode from the environment and
 * the profile (fake_server.py counts the attempts). */
#include <stdio.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>

#include "aws_test.h"
#include "canopy/s3.h"

static char g_dir[256];
static char g_conf[400];

static const char *const AWS_VARS[] = {
    "AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY", "AWS_SESSION_TOKEN", "AWS_PROFILE",
    "AWS_SHARED_CREDENTIALS_FILE", "AWS_CONFIG_FILE", "AWS_REGION", "AWS_DEFAULT_REGION",
    "AWS_ENDPOINT_URL", "AWS_ENDPOINT_URL_S3", "AWS_ENDPOINT_URL_SQS", "AWS_ENDPOINT_URL_STS",
    "AWS_CONTAINER_CREDENTIALS_RELATIVE_URI", "AWS_CONTAINER_CREDENTIALS_FULL_URI",
    "AWS_WEB_IDENTITY_TOKEN_FILE", "AWS_ROLE_ARN", "AWS_CA_BUNDLE", "AWS_MAX_ATTEMPTS",
    "AWS_RETRY_MODE", NULL};

/* Saved stack settings (the moto test needs them after clean_env). */
static char g_akid[128], g_secret[128], g_endpoint[CNP_STR_LONG];

static void write_file(const char *path, const char *text)
{
    FILE *f = fopen(path, "w");
    if (f) {
        fputs(text, f);
        fclose(f);
    }
}

/* No AWS variables, HOME empty, IMDS off, AWS_CONFIG_FILE = g_conf. */
static void clean_env(cnp_config *cfg)
{
    for (int i = 0; AWS_VARS[i]; i++)
        unsetenv(AWS_VARS[i]);
    char home[300];
    snprintf(home, sizeof home, "%s/home", g_dir);
    mkdir(home, 0700);
    setenv("HOME", home, 1);
    setenv("AWS_EC2_METADATA_DISABLED", "true", 1);
    setenv("AWS_CONFIG_FILE", g_conf, 1);
    cnp_config_defaults(cfg);
}

static void test_credential_process(void)
{
    cnp_config cfg;
    aws_credentials cr;
    cnp_err err = {{0}};
    clean_env(&cfg);
    char ok[400], bad[400], fail[400], old[400], text[4096];
    snprintf(ok, sizeof ok, "%s/creds-ok.sh", g_dir);
    snprintf(bad, sizeof bad, "%s/creds-bad.sh", g_dir);
    snprintf(fail, sizeof fail, "%s/creds-fail.sh", g_dir);
    snprintf(old, sizeof old, "%s/creds-old.sh", g_dir);
    write_file(ok, "#!/bin/sh\necho \"$1\" >> \"$0.calls\"\n"
                   "exp=$(date -u -d '+1 hour' +%Y-%m-%dT%H:%M:%SZ)\n"
                   "printf '{\"Version\": 1, \"AccessKeyId\": \"AKIDPROC\", "
                   "\"SecretAccessKey\": \"proc-secret-xyz\", \"SessionToken\": \"proc-token\", "
                   "\"Expiration\": \"%s\"}' \"$exp\"\n");
    write_file(bad, "#!/bin/sh\necho 'not json proc-secret-xyz'\n");
    write_file(fail, "#!/bin/sh\necho 'some diagnostics' >&2\nexit 3\n");
    write_file(old, "#!/bin/sh\necho '{\"Version\": 1, \"AccessKeyId\": \"A\", "
                    "\"SecretAccessKey\": \"proc-secret-xyz\", "
                    "\"Expiration\": \"2001-01-01T00:00:00Z\"}'\n");
    chmod(ok, 0700);
    chmod(bad, 0700);
    chmod(fail, 0700);
    chmod(old, 0700);
    snprintf(text, sizeof text,
             "[profile proc]\ncredential_process = %s arg1\n\n"
             "[profile procbad]\ncredential_process = %s\n\n"
             "[profile procfail]\ncredential_process = %s\n\n"
             "[profile procold]\ncredential_process = %s\n",
             ok, bad, fail, old);
    write_file(g_conf, text);

    snprintf(cfg.aws.profile, sizeof cfg.aws.profile, "proc");
    CHECK(aws_credentials_resolve(&cfg.aws, &cr, &err) == CNP_OK, "%s", err.msg);
    CHECK(strcmp(cr.source, "process") == 0 && strcmp(cr.access_key_id, "AKIDPROC") == 0 &&
          strcmp(cr.secret_access_key, "proc-secret-xyz") == 0 &&
          strcmp(cr.session_token, "proc-token") == 0);
    time_t now = time(NULL);
    CHECK(cr.expiration > now + 3500 && cr.expiration <= now + 3601);

    struct {
        const char *profile, *reason;
    } bads[] = {{"procbad", "not a JSON object"},
                {"procfail", "exit status 3"},
                {"procold", "expired"}};
    for (size_t i = 0; i < sizeof bads / sizeof bads[0]; i++) {
        snprintf(cfg.aws.profile, sizeof cfg.aws.profile, "%s", bads[i].profile);
        err.msg[0] = '\0';
        CHECK(aws_credentials_resolve(&cfg.aws, &cr, &err) == CNP_ERR_AUTH, "%s", bads[i].profile);
        char named[160];
        snprintf(named, sizeof named, "profile '%s'", bads[i].profile);
        CHECK(strstr(err.msg, named) && strstr(err.msg, bads[i].reason), "%s", err.msg);
        CHECK(!strstr(err.msg, "proc-secret-xyz"), "secret in the message: %s", err.msg);
    }
}

/* Role profiles that cannot work are configuration errors. */
static void test_role_config_errors(void)
{
    cnp_config cfg;
    aws_credentials cr;
    cnp_err err = {{0}};
    clean_env(&cfg);
    write_file(g_conf, "[profile loopa]\nrole_arn = arn:aws:iam::123456789012:role/a\n"
                       "source_profile = loopb\n\n"
                       "[profile loopb]\nrole_arn = arn:aws:iam::123456789012:role/b\n"
                       "source_profile = loopa\n\n"
                       "[profile nosource]\nrole_arn = arn:aws:iam::123456789012:role/c\n\n"
                       "[profile badsource]\nrole_arn = arn:aws:iam::123456789012:role/d\n"
                       "credential_source = Floppy\n\n"
                       "[profile ghost]\nrole_arn = arn:aws:iam::123456789012:role/e\n"
                       "source_profile = nowhere\n\n"
                       "[profile envsrc]\nrole_arn = arn:aws:iam::123456789012:role/f\n"
                       "credential_source = Environment\n");
    struct {
        const char *profile, *reason;
        cnp_status st;
    } cases[] = {{"loopa", "source_profile loop: loopa -> loopb -> loopa", CNP_ERR_CONFIG},
                 {"nosource", "needs source_profile or credential_source", CNP_ERR_CONFIG},
                 {"badsource", "'Floppy' is not one of", CNP_ERR_CONFIG},
                 {"ghost", "AWS profile 'nowhere' not found", CNP_ERR_CONFIG},
                 {"envsrc", "credential_source Environment has no credentials", CNP_ERR_AUTH}};
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        snprintf(cfg.aws.profile, sizeof cfg.aws.profile, "%s", cases[i].profile);
        err.msg[0] = '\0';
        cnp_status st = aws_credentials_resolve(&cfg.aws, &cr, &err);
        CHECK(st == cases[i].st && strstr(err.msg, cases[i].reason), "%s: %s: %s",
              cases[i].profile, cnp_status_name(st), err.msg);
    }
}

/* Runs python (the stack's venv, with boto3) on a snippet; true on exit 0. */
static bool run_python(const char *code)
{
    char path[400], cmd[800];
    snprintf(path, sizeof path, "%s/snippet.py", g_dir);
    write_file(path, code);
    snprintf(cmd, sizeof cmd, "'%s' '%s'", aws_test_python(), path);
    return system(cmd) == 0;
}

/* role_arn + source_profile (and a chain of two roles) against moto's STS:
 * the assumed credentials sign S3 and SQS calls that moto accepts, and moto
 * refuses the session token once it is altered. */
static void test_assume_role_moto(void)
{
    cnp_config cfg;
    cnp_err err = {{0}};
    if (!g_endpoint[0]) {
        fprintf(stderr, "test_assume_role_moto: no stack, skipped\n");
        CHECK(!getenv("CANOPY_TEST_REQUIRE_STACK"), "the stack is required");
        return;
    }
    char role[64], code[4096];
    aws_test_name(role, sizeof role, "canopy-role");
    snprintf(code, sizeof code,
             "import boto3, json\n"
             "iam = boto3.client('iam', region_name='us-east-1', endpoint_url='%s',"
             " aws_access_key_id='%s', aws_secret_access_key='%s')\n"
             "trust = {'Version': '2012-10-17', 'Statement': [{'Effect': 'Allow',"
             " 'Principal': {'AWS': '*'}, 'Action': 'sts:AssumeRole'}]}\n"
             "iam.create_role(RoleName='%s', AssumeRolePolicyDocument=json.dumps(trust))\n"
             "iam.put_role_policy(RoleName='%s', PolicyName='all', PolicyDocument=json.dumps("
             "{'Version': '2012-10-17', 'Statement': [{'Effect': 'Allow', 'Action': '*',"
             " 'Resource': '*'}]}))\n",
             g_endpoint, g_akid, g_secret, role, role);
    CHECK_FATAL(run_python(code), "creating the IAM role in moto");
    clean_env(&cfg);
    char text[4096];
    snprintf(text, sizeof text,
             "[profile src]\naws_access_key_id = %s\naws_secret_access_key = %s\n\n"
             "[profile role]\nrole_arn = arn:aws:iam::123456789012:role/%s\n"
             "source_profile = src\nrole_session_name = canopy-test\nduration_seconds = 900\n"
             "external_id = ext-1\n\n"
             "[profile chained]\nrole_arn = arn:aws:iam::123456789012:role/%s\n"
             "source_profile = role\n\n"
             "[profile badsrc]\naws_access_key_id = %s\naws_secret_access_key = wrong\n\n"
             "[profile badrole]\nrole_arn = arn:aws:iam::123456789012:role/%s\n"
             "source_profile = badsrc\n",
             g_akid, g_secret, role, role, g_akid, role);
    write_file(g_conf, text);
    snprintf(cfg.aws.endpoint_url, sizeof cfg.aws.endpoint_url, "%s", g_endpoint);
    snprintf(cfg.aws.region, sizeof cfg.aws.region, "us-east-1");
    setenv("AWS_ENDPOINT_URL_STS", g_endpoint, 1);
    const char *profiles[] = {"role", "chained"};
    for (int i = 0; i < 2; i++) {
        snprintf(cfg.aws.profile, sizeof cfg.aws.profile, "%s", profiles[i]);
        aws_client *c = NULL;
        aws_credentials cr;
        CHECK_FATAL(aws_client_create(&cfg.aws, &c, &err) == CNP_OK, "%s", err.msg);
        CHECK(aws_client_credentials(c, &cr, &err) == CNP_OK, "%s: %s", profiles[i], err.msg);
        CHECK(strcmp(cr.source, "assume-role") == 0 && cr.session_token[0] &&
                  strcmp(cr.access_key_id, g_akid) != 0 && cr.expiration > time(NULL),
              "%s: source %s", profiles[i], cr.source);
        char bucket[64], url[CNP_STR_LONG + 80];
        aws_test_name(bucket, sizeof bucket, "canopy-assumed");
        snprintf(url, sizeof url, "%s/%s", g_endpoint, bucket);
        aws_result r;
        CHECK(aws_request_raw(c, "s3", "PUT", url, NULL, 0, NULL, &r) == CNP_OK, "%s: %s",
              profiles[i], r.err.msg);
        s3_list_page page = {0};
        CHECK(s3_list_objects(c, bucket, "", NULL, NULL, 0, &page, &err) == CNP_OK, "%s",
              err.msg);
        s3_list_page_free(&page);
        aws_client_free(c);
    }
    /* moto checks the AssumeRole signature: a wrong source secret fails. */
    aws_credentials cr;
    snprintf(cfg.aws.profile, sizeof cfg.aws.profile, "badrole");
    CHECK(aws_credentials_resolve(&cfg.aws, &cr, &err) == CNP_ERR_AUTH &&
              strstr(err.msg, "profile 'badrole': AssumeRole"),
          "%s", err.msg);
}

/* A client on fake_server's URL with static credentials and no backoff. */
static aws_client *fake_client(cnp_config *cfg, const char *url)
{
    cnp_err err = {{0}};
    aws_client *c = NULL;
    snprintf(cfg->aws.endpoint_url, sizeof cfg->aws.endpoint_url, "%s", url);
    snprintf(cfg->aws.access_key_id, sizeof cfg->aws.access_key_id, "AKIDFAKE");
    snprintf(cfg->aws.secret_access_key, sizeof cfg->aws.secret_access_key, "secret-fake");
    if (aws_client_create(&cfg->aws, &c, &err) != CNP_OK) {
        fprintf(stderr, "aws_client_create: %s\n", err.msg);
        return NULL;
    }
    aws_client_set_backoff_base_ms(c, 1);
    return c;
}

/* One GET on the fake server; its attempts (0 when the client failed). */
static int get_attempts(cnp_config *cfg, const char *url, const char *path, cnp_status *st)
{
    aws_client *c = fake_client(cfg, url);
    if (!c)
        return 0;
    char full[512];
    snprintf(full, sizeof full, "%s%s", url, path);
    aws_result r;
    *st = aws_request_raw(c, "s3", "GET", full, NULL, 0, NULL, &r);
    aws_client_free(c);
    return r.attempts;
}

/* A self-signed certificate for 127.0.0.1: verified with the bundle that
 * holds it, refused without. */
static void test_ca_bundle(void)
{
    cnp_config cfg;
    cnp_err err = {{0}};
    clean_env(&cfg);
    char cert[400], key[400], cmd[1400];
    snprintf(cert, sizeof cert, "%s/cert.pem", g_dir);
    snprintf(key, sizeof key, "%s/key.pem", g_dir);
    snprintf(cmd, sizeof cmd,
             "openssl req -x509 -newkey rsa:2048 -nodes -keyout '%s' -out '%s' -days 2 "
             "-subj /CN=127.0.0.1 -addext subjectAltName=IP:127.0.0.1 >/dev/null 2>&1",
             key, cert);
    CHECK_FATAL(system(cmd) == 0, "openssl req failed");
    setenv("FAKE_TLS_CERT", cert, 1);
    setenv("FAKE_TLS_KEY", key, 1);
    fake_server fs;
    bool up = fake_server_start(&fs);
    unsetenv("FAKE_TLS_CERT");
    unsetenv("FAKE_TLS_KEY");
    CHECK_FATAL(up, "cannot start the TLS fake server");
    char url[64];
    snprintf(url, sizeof url, "https://127.0.0.1:%d", fs.port);
    cnp_status st = CNP_ERR_INTERNAL;

    /* Verification stays on: without the bundle the certificate is refused. */
    get_attempts(&cfg, url, "/flaky503/0/a", &st);
    CHECK(st == CNP_ERR_CONFIG, "without a bundle: %s", cnp_status_name(st));

    snprintf(cfg.aws.ca_bundle, sizeof cfg.aws.ca_bundle, "%s", cert);
    CHECK(get_attempts(&cfg, url, "/flaky503/0/b", &st) == 1 && st == CNP_OK,
          "[aws] ca_bundle: %s", cnp_status_name(st));

    clean_env(&cfg);
    setenv("AWS_CA_BUNDLE", cert, 1);
    CHECK(get_attempts(&cfg, url, "/flaky503/0/c", &st) == 1 && st == CNP_OK,
          "AWS_CA_BUNDLE: %s", cnp_status_name(st));

    /* The profile's ca_bundle; AWS_CA_BUNDLE beats it, [aws] ca_bundle both. */
    clean_env(&cfg);
    char text[600];
    snprintf(text, sizeof text, "[default]\nca_bundle = %s\n", cert);
    write_file(g_conf, text);
    CHECK(get_attempts(&cfg, url, "/flaky503/0/d", &st) == 1 && st == CNP_OK,
          "profile ca_bundle: %s", cnp_status_name(st));
    setenv("AWS_CA_BUNDLE", "/nonexistent/env-bundle.pem", 1);
    aws_client *c = NULL;
    CHECK(aws_client_create(&cfg.aws, &c, &err) == CNP_ERR_CONFIG &&
              strstr(err.msg, "/nonexistent/env-bundle.pem") && strstr(err.msg, "AWS_CA_BUNDLE"),
          "%s", err.msg);
    snprintf(cfg.aws.ca_bundle, sizeof cfg.aws.ca_bundle, "%s", cert);
    CHECK(get_attempts(&cfg, url, "/flaky503/0/e", &st) == 1 && st == CNP_OK,
          "[aws] ca_bundle over AWS_CA_BUNDLE: %s", cnp_status_name(st));
    snprintf(cfg.aws.ca_bundle, sizeof cfg.aws.ca_bundle, "/nonexistent/key-bundle.pem");
    CHECK(aws_client_create(&cfg.aws, &c, &err) == CNP_ERR_CONFIG &&
              strstr(err.msg, "/nonexistent/key-bundle.pem") && strstr(err.msg, "[aws] ca_bundle"),
          "%s", err.msg);
    write_file(g_conf, "");
    fake_server_stop(&fs);
}

static void test_retry_settings(void)
{
    cnp_config cfg;
    cnp_err err = {{0}};
    clean_env(&cfg);
    fake_server fs;
    CHECK_FATAL(fake_server_start(&fs), "cannot start fake_server.py");
    cnp_status st;
    /* Default: 5 attempts. */
    CHECK(get_attempts(&cfg, fs.url, "/flaky503/9/a", &st) == 5 && st == CNP_ERR_TRANSIENT);
    /* The profile's max_attempts, then AWS_MAX_ATTEMPTS over it, then the key. */
    write_file(g_conf, "[default]\nmax_attempts = 3\nretry_mode = standard\n");
    CHECK(get_attempts(&cfg, fs.url, "/flaky503/9/b", &st) == 3);
    setenv("AWS_MAX_ATTEMPTS", "2", 1);
    CHECK(get_attempts(&cfg, fs.url, "/flaky503/9/c", &st) == 2);
    cfg.aws.max_attempts = 4;
    CHECK(get_attempts(&cfg, fs.url, "/flaky503/9/d", &st) == 4);
    CHECK(fake_server_count(&fs, "/flaky503/9/d") == 4);
    cfg.aws.max_attempts = 0;
    setenv("AWS_MAX_ATTEMPTS", "many", 1);
    aws_client *c = NULL;
    CHECK(aws_client_create(&cfg.aws, &c, &err) == CNP_ERR_CONFIG &&
          strstr(err.msg, "AWS_MAX_ATTEMPTS"), "%s", err.msg);
    unsetenv("AWS_MAX_ATTEMPTS");

    /* retry_mode: checked wherever it comes from. */
    write_file(g_conf, "[default]\nretry_mode = eager\n");
    CHECK(aws_client_create(&cfg.aws, &c, &err) == CNP_ERR_CONFIG &&
          strstr(err.msg, "retry_mode 'eager'"), "%s", err.msg);
    setenv("AWS_RETRY_MODE", "legacy", 1);
    CHECK(get_attempts(&cfg, fs.url, "/throttle/1/e", &st) == 2 && st == CNP_OK);
    setenv("AWS_RETRY_MODE", "bogus", 1);
    snprintf(cfg.aws.retry_mode, sizeof cfg.aws.retry_mode, "standard");
    CHECK(get_attempts(&cfg, fs.url, "/throttle/1/f", &st) == 2 && st == CNP_OK);
    unsetenv("AWS_RETRY_MODE");
    write_file(g_conf, "");

    /* adaptive: after throttling, starts wait for the client-side rate
     * limit; standard never waits. */
    const char *modes[] = {"standard", "adaptive"};
    for (int m = 0; m < 2; m++) {
        snprintf(cfg.aws.retry_mode, sizeof cfg.aws.retry_mode, "%s", modes[m]);
        cfg.aws.max_connections = 4;
        c = fake_client(&cfg, fs.url);
        CHECK_FATAL(c != NULL);
        aws_batch *b = NULL;
        CHECK_FATAL(aws_batch_create(c, &b, &err) == CNP_OK);
        s3_object objs[12];
        memset(objs, 0, sizeof objs);
        char keyname[64];
        for (int i = 0; i < 12; i++) {
            snprintf(keyname, sizeof keyname, "1/%s-%d", modes[m], i);
            CHECK(s3_batch_get(b, "throttle", keyname, 0, &objs[i]) == CNP_OK);
        }
        CHECK(aws_batch_run(b, &err) == CNP_OK, "%s", err.msg);
        aws_batch_stats stats;
        aws_batch_get_stats(b, &stats);
        int ok = 0;
        for (int i = 0; i < 12; i++) {
            ok += objs[i].result.status == CNP_OK;
            s3_object_free(&objs[i]);
        }
        CHECK(ok == 12, "%s: %d of 12", modes[m], ok);
        CHECK(m == 0 ? stats.rate_limited == 0 : stats.rate_limited > 0,
              "%s: rate_limited %llu", modes[m], (unsigned long long)stats.rate_limited);
        aws_batch_free(b);
        aws_client_free(c);
    }
    fake_server_stop(&fs);
}

int main(void)
{
    snprintf(g_dir, sizeof g_dir, "/tmp/canopy-aws-profiles-XXXXXX");
    if (!mkdtemp(g_dir))
        return 1;
    snprintf(g_conf, sizeof g_conf, "%s/config", g_dir);
    cnp_config stack;
    if (aws_test_stack_config(&stack)) {
        snprintf(g_akid, sizeof g_akid, "%s", getenv("AWS_ACCESS_KEY_ID"));
        snprintf(g_secret, sizeof g_secret, "%s", getenv("AWS_SECRET_ACCESS_KEY"));
        snprintf(g_endpoint, sizeof g_endpoint, "%s", stack.aws.endpoint_url);
    }
    test_credential_process();
    test_role_config_errors();
    test_ca_bundle();
    test_retry_settings();
    test_assume_role_moto();
    char cmd[300];
    snprintf(cmd, sizeof cmd, "rm -rf '%s'", g_dir);
    if (system(cmd) != 0)
        fprintf(stderr, "could not remove %s\n", g_dir);
    return TEST_RESULT();
}
