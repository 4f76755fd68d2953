/* SigV4 signer against the AWS test-suite and S3 documentation vectors, and
 * the canonical URI / query encoding the engine sends. */
#include <string.h>

#include "aws/aws_internal.h"
#include "canopy/s3.h"
#include "testutil.h"

static const char *SUITE_AKID = "AKIDEXAMPLE";
static const char *SUITE_SECRET = "wJalrXUtnFEMI/K7MDENG+bPxRfiCYEXAMPLEKEY";
static const char *S3_AKID = "AKIAIOSFODNN7EXAMPLE";
static const char *S3_SECRET = "wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEY";
static const char *EMPTY = "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855";

static void check_sig(const char *name, const char *akid, const char *secret, const char *service,
                      const char *date, const char *method, const char *uri, const char *query,
                      const aws_kv *headers, size_t nh, const char *payload_hash,
                      const char *signed_headers, const char *signature)
{
    aws_sigv4_input in = {
        .access_key_id = akid, .secret_access_key = secret, .region = "us-east-1",
        .service = service, .amz_date = date, .method = method, .canonical_uri = uri,
        .canonical_query = query, .headers = headers, .n_headers = nh,
        .payload_hash = payload_hash,
    };
    char out[1024];
    CHECK(aws_sigv4_sign(&in, out, sizeof out) == CNP_OK);
    char expect[1024];
    snprintf(expect, sizeof expect,
             "AWS4-HMAC-SHA256 Credential=%s/%.8s/us-east-1/%s/aws4_request, SignedHeaders=%s, "
             "Signature=%s",
             akid, date, service, signed_headers, signature);
    CHECK_MSG(strcmp(out, expect) == 0, "%s:\n got  %s\n want %s", name, out, expect);
}

static void test_suite_vectors(void)
{
    const char *d = "20150830T123600Z";
    aws_kv h[] = {{"Host", "example.amazonaws.com"}, {"X-Amz-Date", "20150830T123600Z"}};
    check_sig("get-vanilla", SUITE_AKID, SUITE_SECRET, "service", d, "GET", "/", "", h, 2, EMPTY,
              "host;x-amz-date",
              "5fa00fa31553b73ebf1942676e86291e8372ff2a2260956d9b8aae1d763fbf31");
    check_sig("get-vanilla-query-order-key-case", SUITE_AKID, SUITE_SECRET, "service", d, "GET",
              "/", "Param1=value1&Param2=value2", h, 2, EMPTY, "host;x-amz-date",
              "b97d918cfa904a5beff61c982a1b6f458b799221646efd99d3219ec94cdf2500");
    check_sig("post-vanilla", SUITE_AKID, SUITE_SECRET, "service", d, "POST", "/", "", h, 2, EMPTY,
              "host;x-amz-date",
              "5da7c1a2acd57cee7505fc6676e4e544621c30862966e37dddb68e92efbe5d6b");
    check_sig("get-utf8", SUITE_AKID, SUITE_SECRET, "service", d, "GET", "/%E1%88%B4", "", h, 2,
              EMPTY, "host;x-amz-date",
              "8318018e0b0f223aa2bbf98705b62bb787dc9c0e678f255a891fd03141be5d85");
}

static void test_s3_doc_vectors(void)
{
    const char *d = "20130524T000000Z";
    aws_kv get[] = {{"host", "examplebucket.s3.amazonaws.com"},
                    {"range", "bytes=0-9"},
                    {"x-amz-content-sha256", (char *)EMPTY},
                    {"x-amz-date", "20130524T000000Z"}};
    check_sig("s3 get object", S3_AKID, S3_SECRET, "s3", d, "GET", "/test.txt", "", get, 4, EMPTY,
              "host;range;x-amz-content-sha256;x-amz-date",
              "f0e8bdb87c964420e857bd35b5d6ed310bd44f0170aba48dd91039c6036bdb41");

    char body_hash[65];
    aws_sha256_hex("Welcome to Amazon S3.", 21, body_hash);
    CHECK(strcmp(body_hash, "44ce7dd67c959e0d3524ffac1771dfbba87d2b6b4b4e99e42034a8b803f8b072") == 0);
    /* Header values with surrounding and repeated spaces are normalised. */
    aws_kv put[] = {{"Date", "  Fri, 24 May 2013   00:00:00 GMT "},
                    {"Host", "examplebucket.s3.amazonaws.com"},
                    {"x-amz-date", "20130524T000000Z"},
                    {"x-amz-storage-class", "REDUCED_REDUNDANCY"},
                    {"x-amz-content-sha256", body_hash}};
    cnp_buf uri = {0};
    CHECK(cnp_buf_append(&uri, "/", 1) == CNP_OK);
    CHECK(aws_uri_encode(&uri, "test$file.text", 14, true) == CNP_OK);
    CHECK(strcmp((char *)uri.data, "/test%24file.text") == 0);
    check_sig("s3 put object", S3_AKID, S3_SECRET, "s3", d, "PUT", (char *)uri.data, "", put, 5,
              body_hash, "date;host;x-amz-content-sha256;x-amz-date;x-amz-storage-class",
              "98ad721746da40c64f1a55b78f14c238d841ea1380cd77a1b5971af0ece108bd");
    cnp_buf_free(&uri);

    aws_kv bucket[] = {{"host", "examplebucket.s3.amazonaws.com"},
                       {"x-amz-content-sha256", (char *)EMPTY},
                       {"x-amz-date", "20130524T000000Z"}};
    check_sig("s3 get lifecycle", S3_AKID, S3_SECRET, "s3", d, "GET", "/", "lifecycle=", bucket, 3,
              EMPTY, "host;x-amz-content-sha256;x-amz-date",
              "fea454ca298b7da1c68078a5d1bdbfbbe0d65c699e0f91ac7a200a0136783543");
    check_sig("s3 list objects", S3_AKID, S3_SECRET, "s3", d, "GET", "/", "max-keys=2&prefix=J",
              bucket, 3, EMPTY, "host;x-amz-content-sha256;x-amz-date",
              "34b48302e7b5fa45bde8084f4b7868a86f0a534bc59db6670ed5711ef69dc6f7");
}

/* The engine's canonical query must equal the vectors' forms. */
static void test_canonical_targets(void)
{
    aws_endpoint ep;
    CHECK(aws_endpoint_parse("https://examplebucket.s3.amazonaws.com:443", &ep, NULL) == CNP_OK);
    CHECK(strcmp(ep.authority, "examplebucket.s3.amazonaws.com") == 0);
    CHECK(strcmp(ep.scheme, "https") == 0);

    aws_kvlist q = {0};
    aws_kvlist_add(&q, "prefix", "J");
    aws_kvlist_add(&q, "max-keys", "2");
    aws_op *op = aws_op_new("s3", "GET", "list");
    CHECK(aws_op_set_target(op, &ep, NULL, "/", &q) == CNP_OK);
    CHECK_MSG(strcmp(op->canon_query, "max-keys=2&prefix=J") == 0, "%s", op->canon_query);
    CHECK_MSG(strcmp(op->url, "https://examplebucket.s3.amazonaws.com/?max-keys=2&prefix=J") == 0,
              "%s", op->url);
    aws_op_free(op);
    aws_kvlist_free(&q);

    aws_kvlist_add(&q, "uploads", NULL);
    aws_kvlist_add(&q, "prefix", "a b+c/\xc3\xa9%~*");
    aws_kvlist_add(&q, "Param2", "value2");
    aws_kvlist_add(&q, "Param1", "value1");
    op = aws_op_new("s3", "GET", "list");
    CHECK(aws_op_set_target(op, &ep, NULL, "/", &q) == CNP_OK);
    CHECK_MSG(strcmp(op->canon_query,
                     "Param1=value1&Param2=value2&prefix=a%20b%2Bc%2F%C3%A9%25~%2A&uploads=") == 0,
              "%s", op->canon_query);
    aws_op_free(op);
    aws_kvlist_free(&q);

    cnp_buf key = {0};
    const char *k = "deep/dir with space/a+b%c/\xe6\xa8\xb9.png";
    CHECK(aws_uri_encode(&key, k, strlen(k), true) == CNP_OK);
    CHECK_MSG(strcmp((char *)key.data, "deep/dir%20with%20space/a%2Bb%25c/%E6%A8%B9.png") == 0,
              "%s", (char *)key.data);
    cnp_buf_free(&key);

    CHECK(aws_parse_iso8601("2015-08-30T12:36:00Z") == 1440938160);
    CHECK(aws_parse_iso8601("2015-08-30T12:36:00.000Z") == 1440938160);
    CHECK(aws_parse_iso8601("2015-08-30T14:36:00+02:00") == 1440938160);
    CHECK(aws_parse_iso8601("garbage") == 0);
    /* Out-of-range fields are unparsable, not overflowed arithmetic. */
    CHECK(aws_parse_iso8601("2015-08-30T14:36:00+999999999:00") == 0);
    CHECK(aws_parse_iso8601("-2147483648-08-30T14:36:00Z") == 0);
    CHECK(aws_parse_iso8601("2015-13-30T14:36:00Z") == 0);
    CHECK(aws_endpoint_parse("ftp://x", &ep, NULL) == CNP_ERR_CONFIG);
    CHECK(aws_endpoint_parse("http://127.0.0.1:5000/", &ep, NULL) == CNP_OK);
    CHECK(strcmp(ep.authority, "127.0.0.1:5000") == 0 && strcmp(ep.host, "127.0.0.1") == 0);
}

static void test_s3_uri(void)
{
    char b[64], k[256];
    cnp_err err;
    CHECK(s3_uri_parse("s3://bucket/a/b c/", b, sizeof b, k, sizeof k, &err) == CNP_OK);
    CHECK(strcmp(b, "bucket") == 0 && strcmp(k, "a/b c/") == 0);
    CHECK(s3_uri_parse("s3://bucket", b, sizeof b, k, sizeof k, &err) == CNP_OK);
    CHECK(strcmp(b, "bucket") == 0 && k[0] == '\0');
    CHECK(s3_uri_parse("s3:///key", b, sizeof b, k, sizeof k, &err) == CNP_ERR_INVALID);
    CHECK(s3_uri_parse("http://bucket/key", b, sizeof b, k, sizeof k, &err) == CNP_ERR_INVALID);
    CHECK_MSG(strstr(err.msg, "s3://bucket"), "%s", err.msg);
}

int main(void)
{
    test_s3_uri();
    test_suite_vectors();
    test_s3_doc_vectors();
    test_canonical_targets();
    return TEST_RESULT();
}
