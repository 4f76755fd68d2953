/* S3 against moto with signature checking on: put/get/head with metadata,
 * size cap, 404, awkward keys, 2,500 keys uploaded concurrently and listed
 * across pages, a 100 MiB multipart round trip, file bodies (single and
 * multipart; a missing or too short file), a wrong secret. */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "aws_test.h"
#include "canopy/s3.h"

static char g_bucket[64];

static void test_put_get_head(aws_client *c)
{
    cnp_err err = {{0}};
    const char *data = "hello, canopy";
    aws_kvlist meta = {0};
    aws_kvlist_add(&meta, "scan-id", "scan 42");
    aws_kvlist_add(&meta, "Address-Id", "a-7");
    s3_put put = {.bucket = g_bucket, .key = "plain/hello.txt", .data = data,
                  .len = strlen(data), .content_type = "text/plain", .metadata = &meta};
    s3_put_result pr;
    CHECK_MSG(s3_object_put(c, &put, &pr, &err) == CNP_OK, "%s", err.msg);
    CHECK(pr.etag[0] && pr.parts == 0 && pr.result.attempts == 1);
    aws_kvlist_free(&meta);

    s3_object o;
    CHECK_MSG(s3_object_get(c, g_bucket, "plain/hello.txt", 1024, &o, &err) == CNP_OK, "%s",
              err.msg);
    CHECK(o.body.len == strlen(data) && memcmp(o.body.data, data, o.body.len) == 0);
    CHECK(o.size == (int64_t)strlen(data));
    CHECK_MSG(strcmp(o.etag, pr.etag) == 0, "%s vs %s", o.etag, pr.etag);
    CHECK(strncmp(o.content_type, "text/plain", 10) == 0);
    const char *sid = aws_kvlist_get(&o.metadata, "scan-id");
    CHECK_MSG(sid && strcmp(sid, "scan 42") == 0, "%s", sid ? sid : "(none)");
    CHECK(aws_kvlist_get(&o.metadata, "address-id") != NULL);
    s3_object_free(&o);

    CHECK(s3_object_head(c, g_bucket, "plain/hello.txt", &o, &err) == CNP_OK);
    CHECK(o.size == (int64_t)strlen(data) && o.body.len == 0 && strcmp(o.etag, pr.etag) == 0);
    CHECK(aws_kvlist_get(&o.metadata, "scan-id") != NULL);
    s3_object_free(&o);

    /* The size cap aborts with CNP_ERR_LIMIT. */
    CHECK(s3_object_get(c, g_bucket, "plain/hello.txt", 5, &o, &err) == CNP_ERR_LIMIT);
    CHECK(o.body.len == 0);
    s3_object_free(&o);

    /* A missing key is NOTFOUND after exactly one attempt, with the code. */
    CHECK(s3_object_get(c, g_bucket, "plain/missing.txt", 0, &o, &err) == CNP_ERR_NOTFOUND);
    CHECK(o.result.attempts == 1 && o.result.http_status == 404);
    CHECK_MSG(strcmp(o.result.code, "NoSuchKey") == 0, "%s", o.result.code);
    CHECK_MSG(strstr(err.msg, "plain/missing.txt") && strstr(err.msg, "404"), "%s", err.msg);
    s3_object_free(&o);
    CHECK(s3_object_head(c, g_bucket, "plain/missing.txt", &o, &err) == CNP_ERR_NOTFOUND);
    s3_object_free(&o);
    CHECK(s3_object_get(c, "no-such-bucket-canopy-x", "k", 0, &o, &err) == CNP_ERR_NOTFOUND);
    s3_object_free(&o);

    CHECK(s3_object_delete(c, g_bucket, "plain/hello.txt", &err) == CNP_OK);
    CHECK(s3_object_head(c, g_bucket, "plain/hello.txt", &o, &err) == CNP_ERR_NOTFOUND);
    s3_object_free(&o);
}

static const char *AWKWARD[] = {
    "awk/with space.png",
    "awk/plus+sign.png",
    "awk/percent%20literal%.png",
    "awk/unicode/\xc3\xa4\xc3\xb6\xc3\xbc/\xe6\xa8\xb9\xe6\x9c\xa8.png",
    "awk/deep/a/b/c/d/e/f/g/h/i/j/k.png",
    "awk/sym!$&'()*,;=:@.png",
    "awk/tilde~under_score-dash.png",
    "awk/query?x=1&y=2#frag.png",
    "awk/double//slash.png",
};
#define N_AWKWARD (sizeof AWKWARD / sizeof AWKWARD[0])

static void test_awkward_keys(aws_client *c)
{
    cnp_err err = {{0}};
    aws_batch *b = NULL;
    CHECK(aws_batch_create(c, &b, &err) == CNP_OK);
    s3_put_result pr[N_AWKWARD];
    for (size_t i = 0; i < N_AWKWARD; i++) {
        s3_put put = {.bucket = g_bucket, .key = AWKWARD[i], .data = AWKWARD[i],
                      .len = strlen(AWKWARD[i])};
        CHECK(s3_batch_put(b, &put, &pr[i]) == CNP_OK);
    }
    CHECK(aws_batch_run(b, &err) == CNP_OK);
    for (size_t i = 0; i < N_AWKWARD; i++)
        CHECK_MSG(pr[i].result.status == CNP_OK, "%s", pr[i].result.err.msg);
    s3_object o[N_AWKWARD];
    for (size_t i = 0; i < N_AWKWARD; i++)
        CHECK(s3_batch_get(b, g_bucket, AWKWARD[i], 0, &o[i]) == CNP_OK);
    CHECK(aws_batch_run(b, &err) == CNP_OK);
    for (size_t i = 0; i < N_AWKWARD; i++) {
        CHECK_MSG(o[i].result.status == CNP_OK, "%s", o[i].result.err.msg);
        CHECK_MSG(o[i].body.len == strlen(AWKWARD[i]) &&
                      memcmp(o[i].body.data, AWKWARD[i], o[i].body.len) == 0,
                  "key %s", AWKWARD[i]);
        s3_object_free(&o[i]);
    }
    aws_batch_free(b);

    s3_list_page page;
    CHECK(s3_list_objects(c, g_bucket, "awk/", NULL, NULL, 0, &page, &err) == CNP_OK);
    CHECK_MSG(page.n == N_AWKWARD, "%zu", page.n);
    for (size_t i = 0; i < N_AWKWARD; i++) {
        bool found = false;
        for (size_t k = 0; k < page.n; k++)
            found |= strcmp(page.entries[k].key, AWKWARD[i]) == 0;
        CHECK_MSG(found, "listing lacks '%s'", AWKWARD[i]);
    }
    s3_list_page_free(&page);
}

#define MANY 2500

static void test_many_keys(aws_client *c)
{
    cnp_err err = {{0}};
    char (*keys)[64] = calloc(MANY, sizeof *keys);
    s3_put_result *pr = calloc(MANY, sizeof *pr);
    aws_batch *b = NULL;
    CHECK(aws_batch_create(c, &b, &err) == CNP_OK);
    for (int i = 0; i < MANY; i++) {
        snprintf(keys[i], sizeof keys[i], "many/obj-%05d.txt", i);
        s3_put put = {.bucket = g_bucket, .key = keys[i], .data = keys[i], .len = strlen(keys[i])};
        CHECK(s3_batch_put(b, &put, &pr[i]) == CNP_OK);
    }
    double t0 = cnp_now();
    CHECK(aws_batch_pending(b) == MANY);
    CHECK(aws_batch_run(b, &err) == CNP_OK);
    fprintf(stderr, "uploaded %d objects in %.2f s\n", MANY, cnp_now() - t0);
    aws_batch_stats st;
    aws_batch_get_stats(b, &st);
    fprintf(stderr, "%llu requests, %llu retries, %llu connections\n",
            (unsigned long long)st.requests, (unsigned long long)st.retries,
            (unsigned long long)st.connections);
    /* (moto's werkzeug server closes every connection, so no reuse here:
     * test_aws_retry checks reuse against a keep-alive server.) */
    CHECK(st.requests >= MANY);
    int ok = 0;
    for (int i = 0; i < MANY; i++)
        ok += pr[i].result.status == CNP_OK;
    CHECK_MSG(ok == MANY, "%d of %d uploads succeeded (first error: %s)", ok, MANY,
              pr[0].result.err.msg);
    aws_batch_free(b);

    /* Pages of 1000 with continuation tokens, in key order. */
    int seen = 0, pages = 0;
    char *token = NULL;
    do {
        s3_list_page page;
        CHECK_MSG(s3_list_objects(c, g_bucket, "many/", NULL, token, 1000, &page, &err) == CNP_OK,
                  "%s", err.msg);
        free(token);
        token = page.next_token ? strdup(page.next_token) : NULL;
        pages++;
        for (size_t k = 0; k < page.n && seen < MANY; k++, seen++)
            CHECK_MSG(strcmp(page.entries[k].key, keys[seen]) == 0, "%s != %s",
                      page.entries[k].key, keys[seen]);
        CHECK(page.n == 0 || page.entries[0].size == 18);
        s3_list_page_free(&page);
    } while (token && pages < 10);
    CHECK_MSG(seen == MANY && pages == 3, "seen %d in %d pages", seen, pages);

    /* start-after skips the first 2,400. */
    s3_list_page page;
    CHECK(s3_list_objects(c, g_bucket, "many/", keys[2399], NULL, 0, &page, &err) == CNP_OK);
    CHECK_MSG(page.n == 100 && !page.truncated, "%zu", page.n);
    if (page.n)
        CHECK(strcmp(page.entries[0].key, keys[2400]) == 0);
    s3_list_page_free(&page);

    /* 32 concurrent downloads in one batch. */
    CHECK(aws_batch_create(c, &b, &err) == CNP_OK);
    s3_object objs[32];
    for (int i = 0; i < 32; i++)
        s3_batch_get(b, g_bucket, keys[i * 70], 1 << 20, &objs[i]);
    CHECK(aws_batch_run(b, &err) == CNP_OK);
    for (int i = 0; i < 32; i++) {
        CHECK(objs[i].result.status == CNP_OK && objs[i].body.len == strlen(keys[i * 70]) &&
              memcmp(objs[i].body.data, keys[i * 70], objs[i].body.len) == 0);
        s3_object_free(&objs[i]);
    }
    aws_batch_free(b);
    free(keys);
    free(pr);
}

/* len (a multiple of 8) bytes of xorshift noise; NULL without memory. */
static uint8_t *noise(size_t len)
{
    uint8_t *data = malloc(len);
    uint64_t x = 0x9E3779B97F4A7C15ULL;
    for (size_t i = 0; data && i < len; i += 8) {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        memcpy(data + i, &x, 8);
    }
    return data;
}

static void test_multipart(aws_client *c)
{
    cnp_err err = {{0}};
    size_t len = 100u << 20;
    uint8_t *data = noise(len);
    CHECK_FATAL(data);
    aws_kvlist meta = {0};
    aws_kvlist_add(&meta, "kind", "multipart");
    s3_put put = {.bucket = g_bucket, .key = "big/100MiB.bin", .data = data, .len = len,
                  .content_type = "application/x-test", .metadata = &meta};
    s3_put_result pr;
    double t0 = cnp_now();
    CHECK_MSG(s3_object_put(c, &put, &pr, &err) == CNP_OK, "%s", err.msg);
    fprintf(stderr, "multipart upload of 100 MiB in %.2f s, etag %s\n", cnp_now() - t0, pr.etag);
    aws_kvlist_free(&meta);
    /* 100 MiB in 16 MiB parts: 7 parts, ETag "<md5>-7". */
    CHECK_MSG(pr.parts == 7, "%d parts", pr.parts);
    const char *dash = strrchr(pr.etag, '-');
    CHECK_MSG(dash && strcmp(dash, "-7") == 0, "etag %s", pr.etag);

    s3_object o;
    CHECK_MSG(s3_object_get(c, g_bucket, "big/100MiB.bin", (int64_t)len, &o, &err) == CNP_OK, "%s",
              err.msg);
    CHECK(o.body.len == len && memcmp(o.body.data, data, len) == 0);
    CHECK_MSG(strcmp(o.etag, pr.etag) == 0, "%s vs %s", o.etag, pr.etag);
    CHECK(aws_kvlist_get(&o.metadata, "kind") != NULL);
    s3_object_free(&o);
    /* One byte under the size: the cap refuses it from Content-Length. */
    CHECK(s3_object_get(c, g_bucket, "big/100MiB.bin", (int64_t)len - 1, &o, &err) ==
          CNP_ERR_LIMIT);
    s3_object_free(&o);
    /* moto keeps objects in memory and the stack serves several runs. */
    CHECK(s3_object_delete(c, g_bucket, "big/100MiB.bin", &err) == CNP_OK);
    free(data);
}

/* Puts the first len bytes of file and the same bytes from memory: both
 * succeed in parts pieces (0: a single PutObject) with one etag, and a GET
 * gives back exactly those bytes. */
static void check_file_put(aws_client *c, const char *file, const uint8_t *data, size_t len,
                           int parts)
{
    cnp_err err = {{0}};
    s3_put fput = {.bucket = g_bucket, .key = "file/from-file", .len = len, .file = file};
    s3_put mput = {.bucket = g_bucket, .key = "file/from-memory", .data = data, .len = len};
    s3_put_result fr, mr;
    CHECK(s3_object_put(c, &fput, &fr, &err) == CNP_OK, "%s", err.msg);
    CHECK(s3_object_put(c, &mput, &mr, &err) == CNP_OK, "%s", err.msg);
    CHECK(fr.parts == parts && mr.parts == parts, "%d and %d parts", fr.parts, mr.parts);
    CHECK(fr.etag[0] && strcmp(fr.etag, mr.etag) == 0, "file %s, memory %s", fr.etag, mr.etag);
    char suffix[16];
    snprintf(suffix, sizeof suffix, "-%d", parts);
    const char *dash = strrchr(fr.etag, '-');
    CHECK(parts ? dash && strcmp(dash, suffix) == 0 : !dash, "etag %s", fr.etag);
    s3_object o;
    CHECK(s3_object_get(c, g_bucket, "file/from-file", 0, &o, &err) == CNP_OK, "%s", err.msg);
    CHECK(o.body.len == len && memcmp(o.body.data, data, len) == 0,
          "%zu bytes back, not the %zu put, or other bytes", o.body.len, len);
    CHECK(strcmp(o.etag, fr.etag) == 0, "%s vs %s", o.etag, fr.etag);
    s3_object_free(&o);
    CHECK(s3_object_delete(c, g_bucket, "file/from-file", &err) == CNP_OK);
    CHECK(s3_object_delete(c, g_bucket, "file/from-memory", &err) == CNP_OK);
}

/* A put of file fails before any request with CNP_ERR_IO, the message
 * naming the file and saying why (why). */
static void check_file_put_fails(aws_client *c, const char *file, size_t len, const char *why)
{
    cnp_err err = {{0}};
    s3_put put = {.bucket = g_bucket, .key = "file/never", .len = len, .file = file};
    s3_put_result pr;
    CHECK(s3_object_put(c, &put, &pr, &err) == CNP_ERR_IO, "%s", err.msg);
    CHECK(pr.result.status == CNP_ERR_IO && pr.result.attempts == 0);
    CHECK(strstr(err.msg, file) && strstr(err.msg, why) && strstr(err.msg, "file/never"), "%s",
          err.msg);
}

/* File bodies, on a client with 5 MiB parts: the head of a longer file put
 * as one PutObject and as a 3-part upload comes back byte for byte; a
 * missing file and one shorter than len fail at once; nothing leaks a
 * descriptor. */
static void test_file_put(const cnp_config *base)
{
    cnp_config cfg = *base;
    cfg.aws.multipart_threshold = 5 << 20;
    cfg.aws.multipart_part_size = 5 << 20;
    size_t flen = (12u << 20) + 4096;
    uint8_t *data = noise(flen);
    char path[] = "/tmp/canopy-test-put-XXXXXX";
    int fd = mkstemp(path);
    CHECK_FATAL(data && fd >= 0);
    close(fd);
    cnp_err err = {{0}};
    CHECK_FATAL(cnp_file_write(path, data, flen, &err) == CNP_OK, "%s", err.msg);
    int fds = aws_test_open_fds();
    aws_client *c = NULL;
    CHECK_FATAL(aws_client_create(&cfg.aws, &c, &err) == CNP_OK, "%s", err.msg);
    check_file_put(c, path, data, (1u << 20) + 3, 0);
    check_file_put(c, path, data, (12u << 20) + 5, 3);
    char missing[64];
    snprintf(missing, sizeof missing, "/tmp/canopy-test-no-such-file-%d", (int)getpid());
    check_file_put_fails(c, missing, 10, "No such file or directory");
    check_file_put_fails(c, path, flen + 1, "fewer than"); /* a multipart upload */
    CHECK(cnp_file_write(path, "abc", 3, &err) == CNP_OK, "%s", err.msg);
    check_file_put_fails(c, path, 4, "fewer than"); /* a single PutObject */
    aws_client_free(c);
    CHECK(aws_test_open_fds() == fds, "%d descriptors open, %d before", aws_test_open_fds(), fds);
    unlink(path);
    free(data);
}

static void test_wrong_secret(const cnp_config *base)
{
    cnp_config cfg = *base;
    const char *secret = "wrong-secret-7d2e0b";
    snprintf(cfg.aws.access_key_id, sizeof cfg.aws.access_key_id, "%s",
             getenv("AWS_ACCESS_KEY_ID"));
    snprintf(cfg.aws.secret_access_key, sizeof cfg.aws.secret_access_key, "%s", secret);
    aws_client *c = NULL;
    cnp_err err = {{0}};
    CHECK(aws_client_create(&cfg.aws, &c, &err) == CNP_OK);
    s3_put put = {.bucket = g_bucket, .key = "x", .data = "x", .len = 1};
    s3_put_result pr;
    CHECK(s3_object_put(c, &put, &pr, &err) == CNP_ERR_AUTH);
    CHECK(pr.result.http_status == 403 && pr.result.attempts == 1);
    CHECK_MSG(strstr(err.msg, "HTTP 403 SignatureDoesNotMatch: The request signature"), "%s",
              err.msg);
    CHECK_MSG(!strstr(err.msg, secret), "%s", err.msg);
    /* A GET: the same code and message, from the S3 XML error body. */
    s3_object o;
    CHECK(s3_object_get(c, g_bucket, "x", 0, &o, &err) == CNP_ERR_AUTH);
    CHECK_MSG(strcmp(o.result.code, "SignatureDoesNotMatch") == 0 &&
                  strstr(err.msg, "HTTP 403 SignatureDoesNotMatch: The request signature"),
              "%s", err.msg);
    CHECK_MSG(!strstr(err.msg, secret), "%s", err.msg);
    s3_object_free(&o);
    aws_client_free(c);
}

/* Temporary credentials from STS AssumeRole (created through boto3 in
 * $CANOPY_PYTHON): moto checks X-Amz-Security-Token, so a request signed
 * with them works and one with a wrong token is refused. */
static void test_session_token(const cnp_config *base)
{
    char cmd[2048];
    snprintf(cmd, sizeof cmd,
             "'%s' -c '\n"
             "import boto3, json, os\n"
             "ep = os.environ[\"AWS_ENDPOINT_URL\"]\n"
             "iam = boto3.client(\"iam\", endpoint_url=ep, region_name=\"us-east-1\")\n"
             "name = \"canopy-test-%d\"\n"
             "trust = {\"Version\": \"2012-10-17\", \"Statement\": [{\"Effect\": \"Allow\", "
             "\"Principal\": {\"AWS\": \"*\"}, \"Action\": \"sts:AssumeRole\"}]}\n"
             "allow = {\"Version\": \"2012-10-17\", \"Statement\": [{\"Effect\": \"Allow\", "
             "\"Action\": \"*\", \"Resource\": \"*\"}]}\n"
             "arn = iam.create_role(RoleName=name, "
             "AssumeRolePolicyDocument=json.dumps(trust))[\"Role\"][\"Arn\"]\n"
             "iam.put_role_policy(RoleName=name, PolicyName=\"all\", "
             "PolicyDocument=json.dumps(allow))\n"
             "sts = boto3.client(\"sts\", endpoint_url=ep, region_name=\"us-east-1\")\n"
             "c = sts.assume_role(RoleArn=arn, RoleSessionName=\"canopy\")[\"Credentials\"]\n"
             "print(c[\"AccessKeyId\"]); print(c[\"SecretAccessKey\"]); "
             "print(c[\"SessionToken\"])\n'",
             aws_test_python(), (int)getpid());
    FILE *p = popen(cmd, "r");
    char akid[128] = "", secret[128] = "", token[2048] = "";
    bool ok = p && fgets(akid, sizeof akid, p) && fgets(secret, sizeof secret, p) &&
              fgets(token, sizeof token, p);
    if (p)
        pclose(p);
    CHECK_MSG(ok, "could not assume a role through %s", aws_test_python());
    if (!ok)
        return;
    akid[strcspn(akid, "\n")] = secret[strcspn(secret, "\n")] = token[strcspn(token, "\n")] = 0;
    CHECK(strncmp(akid, "ASIA", 4) == 0);
    fprintf(stderr, "assumed a role: %.4s... with a %zu-byte session token\n", akid, strlen(token));

    cnp_config cfg = *base;
    snprintf(cfg.aws.access_key_id, sizeof cfg.aws.access_key_id, "%s", akid);
    snprintf(cfg.aws.secret_access_key, sizeof cfg.aws.secret_access_key, "%s", secret);
    snprintf(cfg.aws.session_token, sizeof cfg.aws.session_token, "%s", token);
    aws_client *c = NULL;
    cnp_err err = {{0}};
    CHECK(aws_client_create(&cfg.aws, &c, &err) == CNP_OK);
    s3_put put = {.bucket = g_bucket, .key = "sts/temp.txt", .data = "temporary", .len = 9};
    s3_put_result pr;
    CHECK_MSG(s3_object_put(c, &put, &pr, &err) == CNP_OK, "%s", err.msg);
    s3_object o;
    CHECK_MSG(s3_object_get(c, g_bucket, "sts/temp.txt", 0, &o, &err) == CNP_OK, "%s", err.msg);
    CHECK(o.body.len == 9 && memcmp(o.body.data, "temporary", 9) == 0);
    s3_object_free(&o);
    aws_client_free(c);

    snprintf(cfg.aws.session_token, sizeof cfg.aws.session_token, "not-the-token");
    CHECK(aws_client_create(&cfg.aws, &c, &err) == CNP_OK);
    CHECK(s3_object_get(c, g_bucket, "sts/temp.txt", 0, &o, &err) == CNP_ERR_AUTH);
    CHECK_MSG(strstr(err.msg, "InvalidToken") || strstr(err.msg, "403"), "%s", err.msg);
    s3_object_free(&o);
    aws_client_free(c);
}

int main(void)
{
    cnp_config cfg;
    if (!aws_test_stack_config(&cfg))
        return test_skip_or_fail("test_aws_s3: no local stack (CANOPY_TEST_STACK unset)");
    cfg.aws.multipart_threshold = 16 << 20;
    cfg.aws.multipart_part_size = 16 << 20;
    aws_client *c = NULL;
    cnp_err err = {{0}};
    if (aws_client_create(&cfg.aws, &c, &err) != CNP_OK) {
        fprintf(stderr, "%s\n", err.msg);
        return 1;
    }
    aws_test_name(g_bucket, sizeof g_bucket, "canopy-s3");
    CHECK_MSG(s3_bucket_create(c, g_bucket, &err) == CNP_OK, "%s", err.msg);
    CHECK(s3_bucket_create(c, g_bucket, &err) == CNP_OK);
    test_put_get_head(c);
    test_awkward_keys(c);
    test_many_keys(c);
    test_multipart(c);
    test_file_put(&cfg);
    test_wrong_secret(&cfg);
    test_session_token(&cfg);
    aws_client_free(c);
    return TEST_RESULT();
}
