/* The engine's retries against tests/aws/fake_server.py: 503 SlowDown,
 * throttling and connection resets are retried until they succeed (the
 * server's own hit count is checked); a 404 and a 403 are not retried; the
 * attempt limit ends in CNP_ERR_TRANSIENT; bodies, in memory or read from a
 * file, are re-sent intact; a file that shrinks under a put fails it; a body
 * without Content-Length is cut at the size cap. */
#include <pthread.h>
#include <stdlib.h>
#include <stdio.h>
#include <string.h>
#include <unistd.h>

#include "aws/aws_internal.h"
#include "aws_test.h"
#include "canopy/s3.h"

static fake_server g_fs;

/* Defaults, pointed at the fake server with static test credentials. */
static void fake_config(cnp_config *cfg)
{
    cnp_config_defaults(cfg);
    snprintf(cfg->aws.endpoint_url, sizeof cfg->aws.endpoint_url, "%s", g_fs.url);
    snprintf(cfg->aws.region, sizeof cfg->aws.region, "us-east-1");
    snprintf(cfg->aws.access_key_id, sizeof cfg->aws.access_key_id, "AKIDTEST");
    snprintf(cfg->aws.secret_access_key, sizeof cfg->aws.secret_access_key, "secret");
}

static aws_client *make_client(int max_attempts)
{
    cnp_config cfg;
    fake_config(&cfg);
    cfg.aws.max_attempts = max_attempts;
    aws_client *c = NULL;
    cnp_err err;
    if (aws_client_create(&cfg.aws, &c, &err) != CNP_OK) {
        fprintf(stderr, "%s\n", err.msg);
        return NULL;
    }
    aws_client_set_backoff_base_ms(c, 10);
    return c;
}

static cnp_status get(aws_client *c, const char *path, cnp_buf *body, aws_result *r)
{
    char url[512];
    snprintf(url, sizeof url, "%s%s", g_fs.url, path);
    body->len = 0;
    cnp_status st = aws_request_raw(c, "s3", "GET", url, NULL, 0, body, r);
    cnp_buf_append(body, "", 1);
    return st;
}

static void test_retried(aws_client *c)
{
    cnp_buf body = {0};
    aws_result r;
    CHECK_MSG(get(c, "/flaky503/2/a", &body, &r) == CNP_OK, "%s", r.err.msg);
    CHECK_MSG(r.attempts == 3, "%d attempts", r.attempts);
    CHECK(strncmp((char *)body.data, "attempt 3 ", 10) == 0);
    CHECK(fake_server_count(&g_fs, "/flaky503/2/a") == 3);

    /* A fresh client: on a reused connection curl itself re-sends once when
     * the connection turns out dead, which would hide one of our attempts. */
    aws_client *fresh = make_client(5);
    CHECK_MSG(get(fresh, "/reset/2/b", &body, &r) == CNP_OK, "%s", r.err.msg);
    CHECK_MSG(r.attempts == 3, "%d attempts", r.attempts);
    CHECK(fake_server_count(&g_fs, "/reset/2/b") == 3);
    aws_client_free(fresh);

    CHECK_MSG(get(c, "/throttle/1/c", &body, &r) == CNP_OK, "%s", r.err.msg);
    CHECK(r.attempts == 2 && fake_server_count(&g_fs, "/throttle/1/c") == 2);

    /* A PUT body is sent again, whole, on every attempt. */
    char url[512];
    snprintf(url, sizeof url, "%s/flaky503/1/put", g_fs.url);
    const char *payload = "payload that must arrive intact on the retry";
    char hash[65];
    aws_sha256_hex(payload, strlen(payload), hash);
    body.len = 0;
    CHECK(aws_request_raw(c, "s3", "PUT", url, payload, strlen(payload), &body, &r) == CNP_OK);
    cnp_buf_append(&body, "", 1);
    CHECK(r.attempts == 2);
    CHECK_MSG(strstr((char *)body.data, hash) != NULL, "%s", (char *)body.data);
    cnp_buf_free(&body);
}

static void test_not_retried(aws_client *c)
{
    cnp_buf body = {0};
    aws_result r;
    CHECK(get(c, "/notfound/d", &body, &r) == CNP_ERR_NOTFOUND);
    CHECK(r.attempts == 1 && r.http_status == 404);
    CHECK(strcmp(r.code, "NoSuchKey") == 0 && strcmp(r.request_id, "RID-NoSuchKey") == 0);
    CHECK_MSG(strstr(r.err.msg, "HTTP 404 NoSuchKey: The specified key does not exist."), "%s",
              r.err.msg);
    CHECK(fake_server_count(&g_fs, "/notfound/d") == 1);

    CHECK(get(c, "/forbidden/e", &body, &r) == CNP_ERR_AUTH);
    CHECK(r.attempts == 1 && r.http_status == 403 && strcmp(r.code, "AccessDenied") == 0);
    CHECK(fake_server_count(&g_fs, "/forbidden/e") == 1);

    /* The wrong region: not retried, and the error names the right one. */
    CHECK(get(c, "/wrongregion/w", &body, &r) == CNP_ERR_REMOTE);
    CHECK(r.attempts == 1 && r.http_status == 301 && strcmp(r.code, "PermanentRedirect") == 0);
    CHECK_MSG(strstr(r.err.msg, "the bucket is in eu-west-1, not us-east-1"), "%s", r.err.msg);

    /* S3 HEAD and GET through the S3 layer: same classification. */
    s3_object o;
    cnp_err err;
    CHECK(s3_object_head(c, "notfound", "f", &o, &err) == CNP_ERR_NOTFOUND);
    CHECK(o.result.attempts == 1);
    s3_object_free(&o);
    cnp_buf_free(&body);
}

static void test_exhausted(void)
{
    aws_client *c = make_client(4);
    cnp_buf body = {0};
    aws_result r;
    CHECK(get(c, "/flaky503/100/g", &body, &r) == CNP_ERR_TRANSIENT);
    CHECK(r.attempts == 4 && r.http_status == 503 && strcmp(r.code, "SlowDown") == 0);
    CHECK_MSG(strstr(r.err.msg, "after 4 attempts"), "%s", r.err.msg);
    CHECK(fake_server_count(&g_fs, "/flaky503/100/g") == 4);

    /* Nothing listens on port 1: connection refused, retried, transient. */
    double t0 = cnp_now();
    CHECK(aws_request_raw(c, "s3", "GET", "http://127.0.0.1:1/x", NULL, 0, NULL, &r) ==
          CNP_ERR_TRANSIENT);
    CHECK(r.attempts == 4 && r.http_status == 0);
    CHECK(cnp_now() - t0 < 5.0);
    cnp_buf_free(&body);
    aws_client_free(c);
}

typedef struct done_log {
    s3_object *base;
    int calls;
    int final; /* results already complete when announced */
} done_log;

static void on_done(void *ctx, void *out)
{
    done_log *log = ctx;
    s3_object *o = out;
    log->calls++;
    if (o >= log->base && o < log->base + 40 && o->result.status == CNP_OK &&
        o->result.attempts == 2 && o->body.len > 0)
        log->final++;
}

static void test_batch(aws_client *c)
{
    enum { N = 40 };
    aws_batch *b = NULL;
    cnp_err err;
    CHECK(aws_batch_create(c, &b, &err) == CNP_OK);
    s3_object o[N];
    char key[N][32];
    done_log log = {o, 0, 0};
    aws_batch_on_done(b, on_done, &log);
    for (int i = 0; i < N; i++) {
        snprintf(key[i], sizeof key[i], "batch%d", i);
        /* bucket "flaky503", key "1/batchN": one 503 each, then success. */
        char k[48];
        snprintf(k, sizeof k, "1/%s", key[i]);
        CHECK(s3_batch_get(b, "flaky503", k, 0, &o[i]) == CNP_OK);
    }
    CHECK(aws_batch_run(b, &err) == CNP_OK);
    CHECK(aws_batch_pending(b) == 0);
    int ok = 0;
    for (int i = 0; i < N; i++) {
        ok += o[i].result.status == CNP_OK && o[i].result.attempts == 2;
        s3_object_free(&o[i]);
    }
    CHECK_MSG(ok == N, "%d of %d", ok, N);
    CHECK_MSG(log.calls == N && log.final == N, "%d calls, %d final", log.calls, log.final);
    aws_batch_stats st;
    aws_batch_get_stats(b, &st);
    CHECK_MSG(st.requests == 2 * N && st.retries == N, "%llu requests, %llu retries",
              (unsigned long long)st.requests, (unsigned long long)st.retries);
    /* 503 SlowDown is S3 throttling. */
    CHECK_MSG(st.retries_by_class[AWS_RETRY_THROTTLE] == (uint64_t)N &&
                  st.retries_by_class[AWS_RETRY_SERVER] == 0 &&
                  st.retries_by_class[AWS_RETRY_NETWORK] == 0,
              "by class: throttle %llu, server %llu, network %llu",
              (unsigned long long)st.retries_by_class[AWS_RETRY_THROTTLE],
              (unsigned long long)st.retries_by_class[AWS_RETRY_SERVER],
              (unsigned long long)st.retries_by_class[AWS_RETRY_NETWORK]);
    aws_batch_free(b);

    /* No Content-Length: the cap applies to the received bytes. */
    s3_object s;
    CHECK(s3_object_get(c, "stream", "100000", 50000, &s, &err) == CNP_ERR_LIMIT);
    CHECK(s.result.attempts == 1);
    s3_object_free(&s);
    CHECK(s3_object_get(c, "stream", "100000", 100000, &s, &err) == CNP_OK);
    CHECK(s.body.len == 100000);
    s3_object_free(&s);
}

/* Points $TMPDIR at dir; returns the old value (malloc'd, or NULL when it
 * was unset) for tmpdir_restore, which puts it back and frees it. */
static char *tmpdir_set(const char *dir)
{
    const char *old = getenv("TMPDIR");
    char *saved = old ? strdup(old) : NULL;
    setenv("TMPDIR", dir, 1);
    return saved;
}

static void tmpdir_restore(char *saved)
{
    if (saved)
        setenv("TMPDIR", saved, 1);
    else
        unsetenv("TMPDIR");
    free(saved);
}

/* s3_batch_get_spill: a body above the spill size streams to a temporary
 * file in $TMPDIR, a retry after a transfer cut halfway starts the file
 * afresh (the right bytes, not the first half twice), a smaller body stays
 * in memory, and a failed or freed object leaves no file behind. */
static void test_spill(aws_client *c)
{
    char dir[] = "/tmp/canopy-test-spill-XXXXXX";
    if (!mkdtemp(dir)) {
        CHECK(!"mkdtemp");
        return;
    }
    char *saved = tmpdir_set(dir);
    aws_batch *b = NULL;
    cnp_err err;
    CHECK(aws_batch_create(c, &b, &err) == CNP_OK);
    if (!b)
        return;
    s3_object big, small, missing;
    CHECK(s3_batch_get_spill(b, "cut", "1/100000/spill", 0, 1000, &big) == CNP_OK);
    CHECK(s3_batch_get_spill(b, "cut", "0/500/small", 0, 1000, &small) == CNP_OK);
    CHECK(s3_batch_get_spill(b, "notfound", "spill", 0, 1000, &missing) == CNP_OK);
    CHECK(aws_batch_run(b, &err) == CNP_OK);
    aws_batch_free(b);
    CHECK(big.result.status == CNP_OK && big.result.attempts == 2, "status %d, %d attempts: %s",
          big.result.status, big.result.attempts, big.result.err.msg);
    CHECK(big.body.len == 0 && big.spill_path[0] && big.size == 100000,
          "body %zu, spill '%s', size %lld", big.body.len, big.spill_path,
          (long long)big.size);
    cnp_buf f = {0};
    CHECK(big.spill_path[0] && strncmp(big.spill_path, dir, strlen(dir)) == 0 &&
          cnp_file_read(big.spill_path, 0, &f, &err) == CNP_OK);
    bool same = f.len == 100000;
    for (size_t i = 0; same && i < f.len; i++)
        same = f.data[i] == (uint8_t)(i % 251);
    CHECK(same, "the spilled file has %zu bytes, not the object's 100000", f.len);
    cnp_buf_free(&f);
    CHECK(small.result.status == CNP_OK && small.body.len == 500 && !small.spill_path[0]);
    CHECK(missing.result.status == CNP_ERR_NOTFOUND && !missing.spill_path[0]);
    char path[600];
    snprintf(path, sizeof path, "%s", big.spill_path);
    s3_object_free(&big);
    s3_object_free(&small);
    s3_object_free(&missing);
    CHECK(access(path, F_OK) != 0, "%s is left after s3_object_free", path);
    char cmd[700];
    snprintf(cmd, sizeof cmd, "rmdir %s", dir); /* fails unless empty */
    CHECK(system(cmd) == 0, "files left in %s", dir);
    tmpdir_restore(saved);
}

/* A spilled download whose temporary file cannot be made (here $TMPDIR does
 * not exist; in production a full or unwritable disk) is our fault, not the
 * object's: retried, then CNP_ERR_TRANSIENT, and the error names the path
 * and the reason rather than curl's "Failed writing header". */
static void test_spill_no_tmpdir(aws_client *c)
{
    char dir[] = "/tmp/canopy-test-spill-XXXXXX";
    if (!mkdtemp(dir)) {
        CHECK(!"mkdtemp");
        return;
    }
    char missing[64];
    snprintf(missing, sizeof missing, "%s/missing", dir);
    char *saved = tmpdir_set(missing);
    aws_batch *b = NULL;
    cnp_err err;
    s3_object big;
    CHECK(aws_batch_create(c, &b, &err) == CNP_OK);
    if (b) {
        CHECK(s3_batch_get_spill(b, "cut", "0/100000/nodir", 0, 1000, &big) == CNP_OK);
        CHECK(aws_batch_run(b, &err) == CNP_OK);
        aws_batch_free(b);
        CHECK(big.result.status == CNP_ERR_TRANSIENT && big.result.attempts == 5,
              "status %d, %d attempts: %s", big.result.status, big.result.attempts,
              big.result.err.msg);
        CHECK(fake_server_count(&g_fs, "/cut/0/100000/nodir") == 5);
        char want[128];
        snprintf(want, sizeof want, "creating %s/canopy-spill-", missing);
        CHECK(strstr(big.result.err.msg, want) &&
                  strstr(big.result.err.msg, ": No such file or directory") &&
                  strstr(big.result.err.msg, "after 5 attempts"),
              "%s", big.result.err.msg);
        CHECK(!big.spill_path[0] && big.body.len == 0);
        s3_object_free(&big);
    }
    CHECK(rmdir(dir) == 0, "files left in %s", dir);
    tmpdir_restore(saved);
}

/* A failing part aborts the multipart upload; the first error is reported. */
static void test_multipart_abort(void)
{
    cnp_config cfg;
    fake_config(&cfg);
    cfg.aws.multipart_threshold = 5 << 20;
    cfg.aws.multipart_part_size = 5 << 20;
    aws_client *c = NULL;
    cnp_err err;
    CHECK(aws_client_create(&cfg.aws, &c, &err) == CNP_OK);
    size_t len = (12 << 20) + 5;
    char *data = calloc(1, len);
    s3_put put = {.bucket = "mpfail", .key = "obj", .data = data, .len = len};
    s3_put_result pr;
    CHECK(s3_object_put(c, &put, &pr, &err) == CNP_ERR_REMOTE);
    CHECK_MSG(strcmp(pr.result.code, "InvalidPart") == 0 && strstr(err.msg, "UploadPart"), "%s",
              err.msg);
    CHECK(fake_server_count(&g_fs, "POST /mpfail/obj") == 1);
    CHECK(fake_server_count(&g_fs, "PUT /mpfail/obj") == 3);
    CHECK(fake_server_count(&g_fs, "DELETE /mpfail/obj") == 1);
    free(data);
    aws_client_free(c);
}

/* A put whose body is read from a file (the head of it, from a fresh client
 * so that descriptors can be counted): a 500 is retried and both attempts
 * send exactly the file's first len bytes; a file cut short after the put
 * was queued aborts the transfer with CNP_ERR_IO naming the file, without
 * a retry; no descriptor is left open. */
static void test_file_body(void)
{
    enum { FLEN = 300000, LEN = 200000 };
    char path[] = "/tmp/canopy-test-body-XXXXXX";
    int fd = mkstemp(path);
    CHECK_FATAL(fd >= 0);
    close(fd);
    uint8_t *data = malloc(FLEN);
    CHECK_FATAL(data);
    for (size_t i = 0; i < FLEN; i++)
        data[i] = (uint8_t)(i * 7 % 253);
    cnp_err err;
    CHECK_FATAL(cnp_file_write(path, data, FLEN, &err) == CNP_OK, "%s", err.msg);
    int fds = aws_test_open_fds();
    aws_client *c = make_client(5);
    CHECK_FATAL(c);

    s3_put put = {.bucket = "flaky500", .key = "1/file", .len = LEN, .file = path};
    s3_put_result pr;
    CHECK(s3_object_put(c, &put, &pr, &err) == CNP_OK, "%s", err.msg);
    CHECK(pr.result.attempts == 2, "%d attempts", pr.result.attempts);
    char hash[65], want[200];
    aws_sha256_hex(data, LEN, hash);
    snprintf(want, sizeof want, "%s %s", hash, hash);
    cnp_buf seen = {0};
    CHECK(fake_server_hashes(&g_fs, "/flaky500/1/file", &seen));
    CHECK(seen.data && strcmp((char *)seen.data, want) == 0, "the server saw %s",
          seen.data ? (char *)seen.data : "nothing");
    cnp_buf_free(&seen);

    aws_batch *b = NULL;
    CHECK_FATAL(aws_batch_create(c, &b, &err) == CNP_OK);
    put.key = "0/shrinks";
    CHECK(s3_batch_put(b, &put, &pr) == CNP_OK);
    CHECK(truncate(path, 1000) == 0);
    CHECK(aws_batch_run(b, &err) == CNP_OK);
    aws_batch_free(b);
    CHECK(pr.result.status == CNP_ERR_IO && pr.result.attempts == 1, "status %d, %d attempts",
          pr.result.status, pr.result.attempts);
    CHECK(strstr(pr.result.err.msg, path) && strstr(pr.result.err.msg, "ends at byte 1000"),
          "%s", pr.result.err.msg);
    aws_client_free(c);
    CHECK(aws_test_open_fds() == fds, "%d descriptors open, %d before", aws_test_open_fds(), fds);
    unlink(path);
    free(data);
}

/* ExpiredToken drops the cached credentials and retries with fresh ones. */
static void test_expired_token(aws_client *c)
{
    cnp_buf body = {0};
    aws_result r;
    CHECK_MSG(get(c, "/expired/1/a", &body, &r) == CNP_OK, "%s", r.err.msg);
    CHECK(r.attempts == 2 && fake_server_count(&g_fs, "/expired/1/a") == 2);
    CHECK(get(c, "/expired/5/b", &body, &r) == CNP_ERR_AUTH);
    CHECK(r.attempts == 2 && strcmp(r.code, "ExpiredToken") == 0);
    cnp_buf_free(&body);
}

typedef struct canceller {
    volatile int *flag;
} canceller;

static void *cancel_later(void *p)
{
    canceller *cn = p;
    nanosleep(&(struct timespec){0, 500000000L}, NULL);
    *cn->flag = 1;
    return NULL;
}

/* A cancel flag ends a hanging request promptly; clearing it restores work. */
static void test_cancel(aws_client *c)
{
    static volatile int flag;
    flag = 0;
    aws_client_set_cancel_flag(c, &flag);
    canceller cn = {&flag};
    pthread_t th;
    int rc = pthread_create(&th, NULL, cancel_later, &cn);
    CHECK_MSG(rc == 0, "pthread_create: %d", rc);
    if (rc != 0)
        return; /* nobody would cancel the 20 s request */
    cnp_buf body = {0};
    aws_result r;
    double t0 = cnp_now();
    CHECK(get(c, "/hang/20", &body, &r) == CNP_ERR_TRANSIENT);
    double took = cnp_now() - t0;
    pthread_join(th, NULL);
    CHECK_MSG(took < 3.0, "cancel took %.2f s", took);
    CHECK_MSG(strstr(r.err.msg, "cancelled"), "%s", r.err.msg);
    flag = 0;
    CHECK(get(c, "/flaky503/0/after-cancel", &body, &r) == CNP_OK);
    aws_client_set_cancel_flag(c, NULL);
    cnp_buf_free(&body);
}

typedef struct worker {
    aws_client *c;
    int id;
    int ok;
} worker;

static void *worker_run(void *p)
{
    worker *w = p;
    aws_batch *b = NULL;
    cnp_err err;
    if (aws_batch_create(w->c, &b, &err) != CNP_OK)
        return NULL;
    s3_object o[20];
    for (int i = 0; i < 20; i++) {
        char k[48];
        snprintf(k, sizeof k, "0/t%d-%d", w->id, i);
        s3_batch_get(b, "flaky503", k, 0, &o[i]);
    }
    if (aws_batch_run(b, &err) == CNP_OK)
        for (int i = 0; i < 20; i++)
            w->ok += o[i].result.status == CNP_OK;
    for (int i = 0; i < 20; i++)
        s3_object_free(&o[i]);
    aws_batch_free(b);
    return NULL;
}

/* Kept-alive connections are reused within a batch and by the next batch. */
static void test_reuse(void)
{
    cnp_config cfg;
    fake_config(&cfg);
    cfg.aws.max_connections = 4;
    aws_client *c = NULL;
    cnp_err err;
    CHECK(aws_client_create(&cfg.aws, &c, &err) == CNP_OK);
    for (int round = 0; round < 2; round++) {
        aws_batch *b = NULL;
        CHECK(aws_batch_create(c, &b, &err) == CNP_OK);
        enum { N = 60 };
        s3_object o[N];
        for (int i = 0; i < N; i++) {
            char k[48];
            snprintf(k, sizeof k, "0/reuse-%d-%d", round, i);
            s3_batch_get(b, "flaky503", k, 0, &o[i]);
        }
        CHECK(aws_batch_run(b, &err) == CNP_OK);
        int ok = 0;
        for (int i = 0; i < N; i++) {
            ok += o[i].result.status == CNP_OK;
            s3_object_free(&o[i]);
        }
        aws_batch_stats st;
        aws_batch_get_stats(b, &st);
        CHECK_MSG(ok == N && st.requests == N, "%d ok, %llu requests", ok,
                  (unsigned long long)st.requests);
        /* First batch: one connection per slot; second: all reused. */
        CHECK_MSG(st.connections <= (round == 0 ? 4u : 0u), "round %d: %llu connections", round,
                  (unsigned long long)st.connections);
        aws_batch_free(b);
    }
    aws_client_free(c);
}

typedef struct peer_worker {
    aws_client *c;
    aws_batch *b;
    pthread_barrier_t *start;
    int id;
    int ok;
    int ports[30];
    aws_batch_stats stats;
} peer_worker;

static void *peer_run(void *p)
{
    peer_worker *w = p;
    enum { N = 30 };
    s3_object o[N];
    for (int i = 0; i < N; i++) {
        char k[48];
        snprintf(k, sizeof k, "t%d-%d", w->id, i);
        s3_batch_get(w->b, "peer", k, 0, &o[i]);
    }
    pthread_barrier_wait(w->start); /* every batch exists and runs at once */
    cnp_err err;
    if (aws_batch_run(w->b, &err) == CNP_OK)
        for (int i = 0; i < N; i++) {
            w->ok += o[i].result.status == CNP_OK &&
                     sscanf((char *)o[i].body.data, "peer %d", &w->ports[i]) == 1;
        }
    for (int i = 0; i < N; i++)
        s3_object_free(&o[i]);
    aws_batch_get_stats(w->b, &w->stats);
    return NULL;
}

/* Batches running at once on several threads never share a connection
 * (curl's connection cache is not safe across concurrently transferring
 * threads), while each keeps its own connections alive: every request of a
 * thread arrives on one of at most max_connections client ports, and no
 * port serves two threads. With one connection cache shared through the
 * CURLSH, connections freed by one thread were picked up by another. */
static void test_threads_own_connections(void)
{
    enum { T = 4, N = 30 };
    cnp_config cfg;
    fake_config(&cfg);
    cfg.aws.max_connections = 2;
    aws_client *c = NULL;
    cnp_err err;
    CHECK(aws_client_create(&cfg.aws, &c, &err) == CNP_OK);
    pthread_barrier_t start;
    pthread_barrier_init(&start, NULL, T);
    peer_worker w[T];
    for (int i = 0; i < T; i++) {
        w[i] = (peer_worker){.c = c, .start = &start, .id = i};
        CHECK(aws_batch_create(c, &w[i].b, &err) == CNP_OK);
    }
    if (test_threads_run(peer_run, w, sizeof w[0], T) < T) {
        /* Threads at the barrier would wait forever; nothing more to check. */
        aws_client_free(c);
        return;
    }
    for (int i = 0; i < T; i++) {
        CHECK_MSG(w[i].ok == N, "thread %d: %d of %d", i, w[i].ok, N);
        CHECK_MSG(w[i].stats.connections <= 2, "thread %d opened %llu connections", i,
                  (unsigned long long)w[i].stats.connections);
        for (int j = 0; j < N; j++)
            for (int o = 0; o < T; o++)
                for (int k = 0; o != i && k < N; k++)
                    CHECK_MSG(w[i].ports[j] != w[o].ports[k],
                              "port %d carried requests of threads %d and %d", w[i].ports[j], i,
                              o);
        aws_batch_free(w[i].b);
    }
    pthread_barrier_destroy(&start);
    aws_client_free(c);
}

/* Batches on several threads share one client (credentials, DNS). */
static void test_threads(aws_client *c)
{
    enum { T = 4 };
    worker w[T];
    for (int i = 0; i < T; i++)
        w[i] = (worker){c, i, 0};
    int started = test_threads_run(worker_run, w, sizeof w[0], T);
    for (int i = 0; i < started; i++)
        CHECK_MSG(w[i].ok == 20, "thread %d: %d of 20", i, w[i].ok);
}

int main(void)
{
    if (!fake_server_start(&g_fs))
        return test_skip_or_fail("test_aws_retry: cannot start fake_server.py (python3)");
    aws_client *c = make_client(5);
    if (c) {
        test_retried(c);
        test_not_retried(c);
        test_exhausted();
        test_batch(c);
        test_spill(c);
        test_spill_no_tmpdir(c);
        test_multipart_abort();
        test_file_body();
        test_expired_token(c);
        test_cancel(c);
        test_threads(c);
        test_threads_own_connections();
        test_reuse();
        aws_client_free(c);
    } else {
        g_failures++;
    }
    fake_server_stop(&g_fs);
    return TEST_RESULT();
}
