/* The credential chain, regions and endpoints: configuration, environment,
 * shared files with profiles, container credentials (relative and full URI
 * with token or token file), IMDSv2, refresh before expiry, the session token
 * on the wire, and "no credentials" as a clear CNP_ERR_AUTH. IMDS and the
 * container endpoint are tests/aws/fake_server.py. */
#include <pthread.h>
#include <stdio.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>

#include "aws_test.h"

static fake_server g_fs;
static char g_dir[256];

static const char *const AWS_VARS[] = {
    "AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY", "AWS_SESSION_TOKEN", "AWS_PROFILE",
    "AWS_SHARED_CREDENTIALS_FILE", "AWS_CONFIG_FILE", "AWS_REGION", "AWS_DEFAULT_REGION",
    "AWS_ENDPOINT_URL", "AWS_ENDPOINT_URL_S3", "AWS_ENDPOINT_URL_SQS",
    "AWS_CONTAINER_CREDENTIALS_RELATIVE_URI", "AWS_CONTAINER_CREDENTIALS_FULL_URI",
    "AWS_CONTAINER_AUTHORIZATION_TOKEN", "AWS_CONTAINER_AUTHORIZATION_TOKEN_FILE",
    "CANOPY_CONTAINER_CREDENTIALS_BASE", "AWS_EC2_METADATA_SERVICE_ENDPOINT",
    "AWS_WEB_IDENTITY_TOKEN_FILE", "AWS_ROLE_ARN", "AWS_ROLE_SESSION_NAME", "AWS_ENDPOINT_URL_STS",
    NULL};

/* A clean environment: no AWS variables, HOME an empty directory, IMDS off. */
static void clean_env(cnp_config *cfg)
{
    for (int i = 0; AWS_VARS[i]; i++)
        unsetenv(AWS_VARS[i]);
    char home[300];
    snprintf(home, sizeof home, "%s/emptyhome", g_dir);
    mkdir(home, 0700);
    setenv("HOME", home, 1);
    setenv("AWS_EC2_METADATA_DISABLED", "true", 1);
    cnp_config_defaults(cfg);
}

static void write_file(const char *path, const char *text)
{
    FILE *f = fopen(path, "w");
    if (f) {
        fputs(text, f);
        fclose(f);
    }
}

/* Polls the client's credentials until the access key differs from old. */
static bool wait_for_new_key(aws_client *c, const char *old, double timeout_s)
{
    double t0 = cnp_now();
    while (cnp_now() - t0 < timeout_s) {
        aws_credentials cr;
        cnp_err err;
        if (aws_client_credentials(c, &cr, &err) == CNP_OK && strcmp(cr.access_key_id, old) != 0)
            return true;
        nanosleep(&(struct timespec){0, 50000000L}, NULL);
    }
    return false;
}

static void test_static(void)
{
    cnp_config cfg;
    aws_credentials cr;
    cnp_err err = {{0}};
    clean_env(&cfg);
    CHECK(aws_credentials_resolve(&cfg.aws, &cr, &err) == CNP_ERR_AUTH);
    CHECK_MSG(strstr(err.msg, "no AWS credentials"), "%s", err.msg);

    setenv("AWS_ACCESS_KEY_ID", "AKIDENV", 1);
    setenv("AWS_SECRET_ACCESS_KEY", "secret-env", 1);
    setenv("AWS_SESSION_TOKEN", "token-env", 1);
    CHECK(aws_credentials_resolve(&cfg.aws, &cr, &err) == CNP_OK);
    CHECK(strcmp(cr.source, "env") == 0 && strcmp(cr.access_key_id, "AKIDENV") == 0 &&
          strcmp(cr.session_token, "token-env") == 0 && cr.expiration == 0);

    /* Configuration comes first. */
    snprintf(cfg.aws.access_key_id, sizeof cfg.aws.access_key_id, "AKIDCFG");
    snprintf(cfg.aws.secret_access_key, sizeof cfg.aws.secret_access_key, "secret-cfg");
    CHECK(aws_credentials_resolve(&cfg.aws, &cr, &err) == CNP_OK);
    CHECK(strcmp(cr.source, "config") == 0 && strcmp(cr.access_key_id, "AKIDCFG") == 0 &&
          cr.session_token[0] == '\0');
}

static void test_profiles(void)
{
    cnp_config cfg;
    aws_credentials cr;
    cnp_err err = {{0}};
    clean_env(&cfg);
    char path[400], conf[400];
    snprintf(path, sizeof path, "%s/credentials", g_dir);
    snprintf(conf, sizeof conf, "%s/config", g_dir);
    write_file(path, "[default]\naws_access_key_id = AKIDDEFAULT\n"
                     "aws_secret_access_key = secret-default\n\n"
                     "[work]\naws_access_key_id=AKIDWORK\naws_secret_access_key=secret-work\n"
                     "aws_session_token = token-work\n");
    write_file(conf, "[default]\nregion = us-west-2\n\n[profile work]\nregion = eu-west-2\n\n"
                     "[profile cfgonly]\naws_access_key_id = AKIDCFGONLY\n"
                     "aws_secret_access_key = secret-cfgonly\nregion = ap-south-1\n");
    setenv("AWS_SHARED_CREDENTIALS_FILE", path, 1);
    setenv("AWS_CONFIG_FILE", conf, 1);

    CHECK(aws_credentials_resolve(&cfg.aws, &cr, &err) == CNP_OK);
    CHECK(strcmp(cr.source, "profile") == 0 && strcmp(cr.access_key_id, "AKIDDEFAULT") == 0);

    setenv("AWS_PROFILE", "work", 1);
    CHECK(aws_credentials_resolve(&cfg.aws, &cr, &err) == CNP_OK);
    CHECK(strcmp(cr.access_key_id, "AKIDWORK") == 0 && strcmp(cr.session_token, "token-work") == 0);
    aws_client *c = NULL;
    CHECK(aws_client_create(&cfg.aws, &c, &err) == CNP_OK);
    CHECK_MSG(strcmp(aws_client_region(c), "eu-west-2") == 0, "%s", aws_client_region(c));
    CHECK(strcmp(aws_client_endpoint(c, "s3"), "https://s3.eu-west-2.amazonaws.com") == 0);
    CHECK(strcmp(aws_client_endpoint(c, "sqs"), "https://sqs.eu-west-2.amazonaws.com") == 0);
    aws_client_free(c);

    /* [aws] profile beats AWS_PROFILE; keys may live in the config file. */
    snprintf(cfg.aws.profile, sizeof cfg.aws.profile, "cfgonly");
    CHECK(aws_credentials_resolve(&cfg.aws, &cr, &err) == CNP_OK);
    CHECK(strcmp(cr.access_key_id, "AKIDCFGONLY") == 0);

    snprintf(cfg.aws.profile, sizeof cfg.aws.profile, "missing");
    CHECK(aws_credentials_resolve(&cfg.aws, &cr, &err) == CNP_ERR_CONFIG);
    CHECK_MSG(strstr(err.msg, "'missing'"), "%s", err.msg);

    /* ~/.aws through HOME when the variables are unset. */
    clean_env(&cfg);
    char home[300], dotaws[340], file[400];
    snprintf(home, sizeof home, "%s/home", g_dir);
    snprintf(dotaws, sizeof dotaws, "%s/.aws", home);
    mkdir(home, 0700);
    mkdir(dotaws, 0700);
    snprintf(file, sizeof file, "%s/credentials", dotaws);
    write_file(file, "[default]\naws_access_key_id = AKIDHOME\naws_secret_access_key = s\n");
    snprintf(file, sizeof file, "%s/config", dotaws);
    write_file(file, "[default]\nregion = sa-east-1\n");
    setenv("HOME", home, 1);
    CHECK(aws_credentials_resolve(&cfg.aws, &cr, &err) == CNP_OK);
    CHECK(strcmp(cr.access_key_id, "AKIDHOME") == 0);
    CHECK(aws_client_create(&cfg.aws, &c, &err) == CNP_OK);
    CHECK(strcmp(aws_client_region(c), "sa-east-1") == 0);
    aws_client_free(c);
    /* AWS_REGION beats the profile; the config key beats both. */
    setenv("AWS_REGION", "eu-central-1", 1);
    CHECK(aws_client_create(&cfg.aws, &c, &err) == CNP_OK);
    CHECK(strcmp(aws_client_region(c), "eu-central-1") == 0);
    aws_client_free(c);
    snprintf(cfg.aws.region, sizeof cfg.aws.region, "cn-north-1");
    CHECK(aws_client_create(&cfg.aws, &c, &err) == CNP_OK);
    CHECK(strcmp(aws_client_endpoint(c, "s3"), "https://s3.cn-north-1.amazonaws.com.cn") == 0);
    aws_client_free(c);
}

static void test_endpoints(void)
{
    cnp_config cfg;
    cnp_err err = {{0}};
    aws_client *c = NULL;
    clean_env(&cfg);
    setenv("AWS_ENDPOINT_URL", "http://127.0.0.1:9000", 1);
    setenv("AWS_ENDPOINT_URL_SQS", "http://localhost:9324/", 1);
    CHECK(aws_client_create(&cfg.aws, &c, &err) == CNP_OK);
    CHECK(strcmp(aws_client_region(c), "us-east-1") == 0);
    CHECK(strcmp(aws_client_endpoint(c, "s3"), "http://127.0.0.1:9000") == 0);
    CHECK(strcmp(aws_client_endpoint(c, "sqs"), "http://localhost:9324") == 0);
    aws_client_free(c);
    snprintf(cfg.aws.endpoint_url, sizeof cfg.aws.endpoint_url, "https://minio.local:9443");
    CHECK(aws_client_create(&cfg.aws, &c, &err) == CNP_OK);
    CHECK(strcmp(aws_client_endpoint(c, "sqs"), "https://minio.local:9443") == 0);
    aws_client_free(c);
    /* verify_tls = false: fine for a custom endpoint, refused for AWS. */
    cfg.aws.verify_tls = false;
    CHECK(aws_client_create(&cfg.aws, &c, &err) == CNP_OK);
    aws_client_free(c);
    clean_env(&cfg);
    cfg.aws.verify_tls = false;
    CHECK(aws_client_create(&cfg.aws, &c, &err) == CNP_ERR_CONFIG);
    CHECK_MSG(strstr(err.msg, "verify_tls"), "%s", err.msg);
    snprintf(cfg.aws.endpoint_url, sizeof cfg.aws.endpoint_url, "s3.example.com");
    cfg.aws.verify_tls = true;
    CHECK(aws_client_create(&cfg.aws, &c, &err) == CNP_ERR_CONFIG);
}

static void test_container(void)
{
    cnp_config cfg;
    aws_credentials cr;
    cnp_err err = {{0}};
    clean_env(&cfg);
    setenv("CANOPY_CONTAINER_CREDENTIALS_BASE", g_fs.url, 1);
    setenv("AWS_CONTAINER_CREDENTIALS_RELATIVE_URI", "/creds/3600", 1);
    CHECK_MSG(aws_credentials_resolve(&cfg.aws, &cr, &err) == CNP_OK, "%s", err.msg);
    CHECK(strcmp(cr.source, "container") == 0 && strncmp(cr.access_key_id, "ASIACONT", 8) == 0 &&
          strncmp(cr.session_token, "cont-token-", 11) == 0);
    time_t now = time(NULL);
    CHECK_MSG(cr.expiration > now + 3500 && cr.expiration <= now + 3601, "%lld",
              (long long)(cr.expiration - now));

    /* Full URI with a token file, then with the token variable, then wrong. */
    unsetenv("AWS_CONTAINER_CREDENTIALS_RELATIVE_URI");
    char url[200], tok[400];
    snprintf(url, sizeof url, "%s/auth-creds/3600", g_fs.url);
    setenv("AWS_CONTAINER_CREDENTIALS_FULL_URI", url, 1);
    snprintf(tok, sizeof tok, "%s/token", g_dir);
    write_file(tok, "test-auth-token\n");
    setenv("AWS_CONTAINER_AUTHORIZATION_TOKEN_FILE", tok, 1);
    CHECK_MSG(aws_credentials_resolve(&cfg.aws, &cr, &err) == CNP_OK, "%s", err.msg);
    CHECK(strcmp(cr.source, "container") == 0);
    unsetenv("AWS_CONTAINER_AUTHORIZATION_TOKEN_FILE");
    setenv("AWS_CONTAINER_AUTHORIZATION_TOKEN", "test-auth-token", 1);
    CHECK(aws_credentials_resolve(&cfg.aws, &cr, &err) == CNP_OK);
    setenv("AWS_CONTAINER_AUTHORIZATION_TOKEN", "wrong", 1);
    CHECK(aws_credentials_resolve(&cfg.aws, &cr, &err) == CNP_ERR_AUTH);
    CHECK_MSG(strstr(err.msg, "401"), "%s", err.msg);
    /* Plain http to a remote host is refused. */
    setenv("AWS_CONTAINER_CREDENTIALS_FULL_URI", "http://198.51.100.7/creds", 1);
    CHECK(aws_credentials_resolve(&cfg.aws, &cr, &err) == CNP_ERR_CONFIG);
}

static void test_imds(void)
{
    cnp_config cfg;
    aws_credentials cr;
    cnp_err err = {{0}};
    clean_env(&cfg);
    unsetenv("AWS_EC2_METADATA_DISABLED");
    setenv("AWS_EC2_METADATA_SERVICE_ENDPOINT", g_fs.url, 1);
    const char *role = "/latest/meta-data/iam/security-credentials/canopy-role";
    CHECK_MSG(aws_credentials_resolve(&cfg.aws, &cr, &err) == CNP_OK, "%s", err.msg);
    CHECK(strcmp(cr.source, "imds") == 0 && strncmp(cr.access_key_id, "ASIAIMDS", 8) == 0 &&
          strncmp(cr.session_token, "imds-token-", 11) == 0 && cr.expiration > time(NULL));
    CHECK(fake_server_count(&g_fs, "/latest/api/token") == 1);
    CHECK(fake_server_count(&g_fs, "/latest/meta-data/iam/security-credentials/") == 1);
    CHECK(fake_server_count(&g_fs, role) == 1);

    /* A client caches credentials far from expiry... */
    aws_client *c = NULL;
    CHECK(aws_client_create(&cfg.aws, &c, &err) == CNP_OK);
    CHECK(aws_client_credentials(c, &cr, &err) == CNP_OK);
    CHECK(aws_client_credentials(c, &cr, &err) == CNP_OK);
    CHECK(fake_server_count(&g_fs, role) == 2);
    aws_client_free(c);

    /* ...and refetches those expiring within 5 minutes in the background:
     * the next use still gets the current ones, a later one the new ones. */
    fake_server_get(&g_fs, "/_set?imds_ttl=120");
    CHECK(aws_client_create(&cfg.aws, &c, &err) == CNP_OK);
    aws_credentials first, second;
    CHECK(aws_client_credentials(c, &first, &err) == CNP_OK);
    CHECK(aws_client_credentials(c, &second, &err) == CNP_OK);
    CHECK(strcmp(first.access_key_id, second.access_key_id) == 0);
    CHECK_MSG(wait_for_new_key(c, first.access_key_id, 5.0), "still %s", first.access_key_id);
    CHECK(fake_server_count(&g_fs, role) >= 4);
    aws_client_free(c);
    fake_server_get(&g_fs, "/_set?imds_ttl=3600");

    /* A bad endpoint is an error that says so. */
    setenv("AWS_EC2_METADATA_SERVICE_ENDPOINT", "http://127.0.0.1:1", 1);
    CHECK(aws_credentials_resolve(&cfg.aws, &cr, &err) != CNP_OK);
    CHECK_MSG(strstr(err.msg, "IMDSv2"), "%s", err.msg);
}

/* EKS IRSA: the token file is exchanged at STS for role credentials. */
static void test_web_identity(void)
{
    cnp_config cfg;
    aws_credentials cr;
    cnp_err err = {{0}};
    clean_env(&cfg);
    char tok[400], sts[200];
    snprintf(tok, sizeof tok, "%s/web-token", g_dir);
    write_file(tok, "test-web-identity-token\n");
    snprintf(sts, sizeof sts, "%s/sts", g_fs.url);
    setenv("AWS_WEB_IDENTITY_TOKEN_FILE", tok, 1);
    setenv("AWS_ROLE_ARN", "arn:aws:iam::123456789012:role/canopy-worker", 1);
    setenv("AWS_ENDPOINT_URL_STS", sts, 1);
    CHECK_MSG(aws_credentials_resolve(&cfg.aws, &cr, &err) == CNP_OK, "%s", err.msg);
    CHECK(strcmp(cr.source, "web-identity") == 0 && strncmp(cr.access_key_id, "ASIAWEB", 7) == 0 &&
          strncmp(cr.session_token, "web-token-", 10) == 0);
    time_t now = time(NULL);
    CHECK(cr.expiration > now + 3500 && cr.expiration <= now + 3601);
    CHECK(fake_server_count(&g_fs, "POST /sts") == 1);

    /* It comes after the environment, before the shared files. */
    setenv("AWS_ACCESS_KEY_ID", "AKIDENV", 1);
    setenv("AWS_SECRET_ACCESS_KEY", "secret-env", 1);
    CHECK(aws_credentials_resolve(&cfg.aws, &cr, &err) == CNP_OK && strcmp(cr.source, "env") == 0);
    unsetenv("AWS_ACCESS_KEY_ID");
    unsetenv("AWS_SECRET_ACCESS_KEY");

    write_file(tok, "some-other-token");
    CHECK(aws_credentials_resolve(&cfg.aws, &cr, &err) == CNP_ERR_AUTH);
    CHECK_MSG(strstr(err.msg, "InvalidIdentityToken"), "%s", err.msg);
    unlink(tok);
    CHECK(aws_credentials_resolve(&cfg.aws, &cr, &err) == CNP_ERR_AUTH);
    CHECK_MSG(strstr(err.msg, "AWS_WEB_IDENTITY_TOKEN_FILE"), "%s", err.msg);
}

/* Temporary credentials sign requests with X-Amz-Security-Token. */
static void test_token_on_wire(void)
{
    cnp_config cfg;
    cnp_err err = {{0}};
    clean_env(&cfg);
    setenv("CANOPY_CONTAINER_CREDENTIALS_BASE", g_fs.url, 1);
    setenv("AWS_CONTAINER_CREDENTIALS_RELATIVE_URI", "/creds/7200", 1);
    snprintf(cfg.aws.endpoint_url, sizeof cfg.aws.endpoint_url, "%s", g_fs.url);
    aws_client *c = NULL;
    CHECK(aws_client_create(&cfg.aws, &c, &err) == CNP_OK);
    aws_credentials cr;
    CHECK(aws_client_credentials(c, &cr, &err) == CNP_OK);
    char url[200];
    snprintf(url, sizeof url, "%s/echo-token/1", g_fs.url);
    cnp_buf body = {0};
    aws_result r;
    CHECK(aws_request_raw(c, "s3", "GET", url, NULL, 0, &body, &r) == CNP_OK);
    CHECK_MSG(body.len == strlen(cr.session_token) &&
                  memcmp(body.data, cr.session_token, body.len) == 0,
              "%.*s", (int)body.len, (char *)body.data);
    CHECK(fake_server_count(&g_fs, "/creds/7200") == 1);
    cnp_buf_free(&body);
    aws_client_free(c);

    /* No credentials anywhere: the request fails with CNP_ERR_AUTH. */
    clean_env(&cfg);
    snprintf(cfg.aws.endpoint_url, sizeof cfg.aws.endpoint_url, "%s", g_fs.url);
    CHECK(aws_client_create(&cfg.aws, &c, &err) == CNP_OK);
    CHECK(aws_request_raw(c, "s3", "GET", url, NULL, 0, NULL, &r) == CNP_ERR_AUTH);
    CHECK_MSG(strstr(r.err.msg, "no AWS credentials"), "%s", r.err.msg);
    aws_client_free(c);
}

typedef struct timed_call {
    aws_client *c;
    const char *url;
    pthread_barrier_t *start;
    cnp_status status;
    double seconds;
    aws_credentials cr;
} timed_call;

/* One signed request (or, without url, one credentials call), timed. */
static void *timed_run(void *p)
{
    timed_call *t = p;
    aws_result r;
    cnp_err err;
    pthread_barrier_wait(t->start);
    double t0 = cnp_now();
    if (t->url)
        t->status = aws_request_raw(t->c, "s3", "GET", t->url, NULL, 0, NULL, &r);
    else
        t->status = aws_client_credentials(t->c, &t->cr, &err);
    t->seconds = cnp_now() - t0;
    return NULL;
}

/* Runs n timed calls at once; false when a thread could not start. */
static bool run_timed(timed_call *calls, int n)
{
    pthread_barrier_t start;
    pthread_barrier_init(&start, NULL, (unsigned)n);
    pthread_t th[8];
    int started = 0;
    for (int i = 0; i < n; i++) {
        calls[i].start = &start;
        int rc = pthread_create(&th[i], NULL, timed_run, &calls[i]);
        CHECK_MSG(rc == 0, "pthread_create: %d", rc);
        if (rc != 0)
            break;
        started++;
    }
    if (started < n) {
        /* The started ones wait at the barrier: cannot release them cleanly. */
        fprintf(stderr, "cannot start %d threads\n", n);
        exit(1);
    }
    for (int i = 0; i < n; i++)
        pthread_join(th[i], NULL);
    pthread_barrier_destroy(&start);
    return true;
}

/* A slow credential service does not stall requests while the current
 * credentials are still valid: the refresh ahead of expiry runs in the
 * background. Before, it ran under the cache lock in the caller's transfer
 * loop, so every concurrent request waited the whole refresh. Without
 * usable credentials, concurrent callers wait for one shared resolution. */
static void test_slow_refresh(void)
{
    cnp_config cfg;
    cnp_err err = {{0}};
    clean_env(&cfg);
    setenv("CANOPY_CONTAINER_CREDENTIALS_BASE", g_fs.url, 1);
    /* 200 s to live: inside the 5-minute refresh window, still usable. */
    setenv("AWS_CONTAINER_CREDENTIALS_RELATIVE_URI", "/creds/200", 1);
    snprintf(cfg.aws.endpoint_url, sizeof cfg.aws.endpoint_url, "%s", g_fs.url);
    aws_client *c = NULL;
    CHECK(aws_client_create(&cfg.aws, &c, &err) == CNP_OK);
    aws_credentials first;
    CHECK_MSG(aws_client_credentials(c, &first, &err) == CNP_OK, "%s", err.msg);
    CHECK(fake_server_count(&g_fs, "/creds/200") == 1);

    fake_server_get(&g_fs, "/_set?creds_delay_ms=2000");
    char url[200];
    snprintf(url, sizeof url, "%s/flaky503/0/slow-refresh", g_fs.url);
    timed_call calls[3] = {{.c = c, .url = url}, {.c = c, .url = url}, {.c = c, .url = url}};
    run_timed(calls, 3);
    for (int i = 0; i < 3; i++) {
        CHECK(calls[i].status == CNP_OK);
        CHECK_MSG(calls[i].seconds < 1.0, "request %d waited %.2f s for the refresh", i,
                  calls[i].seconds);
    }
    /* One refresh in flight, whatever the number of callers. */
    nanosleep(&(struct timespec){0, 300000000L}, NULL);
    CHECK_MSG(fake_server_count(&g_fs, "/creds/200") == 2, "%d fetches",
              fake_server_count(&g_fs, "/creds/200"));
    CHECK_MSG(wait_for_new_key(c, first.access_key_id, 5.0), "still %s", first.access_key_id);
    fake_server_get(&g_fs, "/_set?creds_delay_ms=0");
    aws_client_free(c);

    /* No credentials yet: everyone waits, for a single slow resolution. */
    setenv("AWS_CONTAINER_CREDENTIALS_RELATIVE_URI", "/creds/3598", 1);
    CHECK(aws_client_create(&cfg.aws, &c, &err) == CNP_OK);
    fake_server_get(&g_fs, "/_set?creds_delay_ms=700");
    timed_call waits[4] = {{.c = c}, {.c = c}, {.c = c}, {.c = c}};
    run_timed(waits, 4);
    for (int i = 0; i < 4; i++) {
        CHECK(waits[i].status == CNP_OK && waits[i].seconds >= 0.5);
        CHECK(strcmp(waits[i].cr.access_key_id, waits[0].cr.access_key_id) == 0);
    }
    CHECK_MSG(fake_server_count(&g_fs, "/creds/3598") == 1, "%d fetches",
              fake_server_count(&g_fs, "/creds/3598"));
    fake_server_get(&g_fs, "/_set?creds_delay_ms=0");
    aws_client_free(c);
}

int main(void)
{
    snprintf(g_dir, sizeof g_dir, "/tmp/canopy-aws-creds-XXXXXX");
    if (!mkdtemp(g_dir))
        return 1;
    if (!fake_server_start(&g_fs))
        return test_skip_or_fail("test_aws_creds: cannot start fake_server.py (python3)");
    test_static();
    test_profiles();
    test_endpoints();
    test_container();
    test_imds();
    test_web_identity();
    test_token_on_wire();
    test_slow_refresh();
    fake_server_stop(&g_fs);
    char cmd[300];
    snprintf(cmd, sizeof cmd, "rm -rf '%s'", g_dir);
    if (system(cmd) != 0)
        fprintf(stderr, "could not remove %s\n", g_dir);
    return TEST_RESULT();
}
