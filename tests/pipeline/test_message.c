/* Input message parsing: S3 events (direct, SNS-wrapped, URL-encoded keys,
 * several records, test events, deletions), the earlier system's JSON, and
 * the reasons given for anything else. */
#include "canopy/message.h"
#include "testutil.h"

static void test_key_decode(void)
{
    char *k = msg_key_decode("odd+dir/my+tree%2B1%C3%A9.png");
    CHECK(k && strcmp(k, "odd dir/my tree+1\xC3\xA9.png") == 0);
    free(k);
    CHECK(msg_key_decode("bad%2") == NULL);
    CHECK(msg_key_decode("bad%zz") == NULL);
    CHECK(msg_key_decode("nul%00.png") == NULL); /* would cut the key to "nul" */
    k = msg_key_decode("plain/key.png");
    CHECK(k && strcmp(k, "plain/key.png") == 0);
    free(k);
}

static void test_s3_event(void)
{
    msg_parsed m;
    const char *ev =
        "{\"Records\":[{\"eventSource\":\"aws:s3\",\"eventName\":\"ObjectCreated:Put\","
        "\"s3\":{\"bucket\":{\"name\":\"b1\"},\"object\":{\"key\":\"a/x+y%25.png\",\"eTag\":\"abc\"}}},"
        "{\"eventSource\":\"aws:s3\",\"eventName\":\"ObjectRemoved:Delete\","
        "\"s3\":{\"bucket\":{\"name\":\"b1\"},\"object\":{\"key\":\"gone.png\"}}},"
        "{\"eventSource\":\"aws:s3\",\"eventName\":\"ObjectCreated:CompleteMultipartUpload\","
        "\"s3\":{\"bucket\":{\"name\":\"b2\"},\"object\":{\"key\":\"big.png\"}}}]}";
    CHECK(msg_parse(ev, &m) == CNP_OK);
    CHECK(m.kind == MSG_IMAGES && m.n == 2);
    if (m.n == 2) {
        CHECK(strcmp(m.items[0].bucket, "b1") == 0 && strcmp(m.items[0].key, "a/x y%.png") == 0);
        CHECK(m.items[0].etag && strcmp(m.items[0].etag, "abc") == 0);
        CHECK(strcmp(m.items[1].bucket, "b2") == 0 && strcmp(m.items[1].key, "big.png") == 0);
        CHECK(m.items[1].etag == NULL && m.items[1].scan_id == NULL);
    }
    msg_parsed_free(&m);
}

static void test_sns_wrapped(void)
{
    msg_parsed m;
    const char *sns =
        "{\"Type\":\"Notification\",\"MessageId\":\"1\",\"TopicArn\":\"arn:aws:sns:x\","
        "\"Message\":\"{\\\"Records\\\":[{\\\"eventName\\\":\\\"ObjectCreated:Put\\\","
        "\\\"s3\\\":{\\\"bucket\\\":{\\\"name\\\":\\\"bk\\\"},\\\"object\\\":{\\\"key\\\":"
        "\\\"k%20k.png\\\"}}}]}\"}";
    CHECK(msg_parse(sns, &m) == CNP_OK);
    CHECK(m.kind == MSG_IMAGES && m.n == 1);
    if (m.n == 1)
        CHECK(strcmp(m.items[0].key, "k k.png") == 0 && strcmp(m.items[0].bucket, "bk") == 0);
    msg_parsed_free(&m);
}

static void test_ignored(void)
{
    msg_parsed m;
    CHECK(msg_parse("{\"Service\":\"Amazon S3\",\"Event\":\"s3:TestEvent\",\"Bucket\":\"b\"}", &m) == CNP_OK);
    CHECK(m.kind == MSG_IGNORE && m.n == 0);
    msg_parsed_free(&m);
    CHECK(msg_parse("{\"Records\":[{\"eventName\":\"ObjectRemoved:Delete\",\"s3\":{\"bucket\":"
                    "{\"name\":\"b\"},\"object\":{\"key\":\"k\"}}}]}", &m) == CNP_OK);
    CHECK(m.kind == MSG_IGNORE);
    msg_parsed_free(&m);
}

static void test_legacy(void)
{
    msg_parsed m;
    CHECK(msg_parse("{\"image_id\":\"u-1\",\"bucket\":\"in\",\"key\":\"scans/a b.png\","
                    "\"scan_id\":42,\"address_id\":\"addr\",\"tree_types\":[\"oak\",\"pine\"]}",
                    &m) == CNP_OK);
    CHECK(m.kind == MSG_IMAGES && m.n == 1);
    if (m.n == 1) {
        msg_item *it = &m.items[0];
        CHECK(strcmp(it->key, "scans/a b.png") == 0); /* not URL-decoded: a plain key */
        CHECK(strcmp(it->image_id, "u-1") == 0);
        CHECK(strcmp(it->scan_id, "42") == 0);
        CHECK(strcmp(it->address_id, "addr") == 0);
        CHECK(it->n_tree_types == 2 && strcmp(it->tree_types[1], "pine") == 0);
    }
    msg_parsed_free(&m);
    CHECK(msg_parse("{\"bucket\":\"in\",\"key\":\"k.png\",\"scan_id\":null,\"tree_types\":\"elm, ash\"}", &m) == CNP_OK);
    CHECK(m.kind == MSG_IMAGES && m.n == 1);
    if (m.n == 1) {
        CHECK(m.items[0].scan_id == NULL && m.items[0].image_id == NULL);
        CHECK(m.items[0].n_tree_types == 2 && strcmp(m.items[0].tree_types[0], "elm") == 0 &&
              strcmp(m.items[0].tree_types[1], "ash") == 0);
    }
    msg_parsed_free(&m);
    /* Numbers past long long (found by fuzz_message: the conversion was
     * undefined) print as doubles; integers stay integers. */
    CHECK(msg_parse("{\"bucket\":\"in\",\"key\":\"k.png\",\"image_id\":2e124,"
                    "\"scan_id\":-9007199254740992,\"address_id\":1e999}", &m) == CNP_OK);
    CHECK(m.kind == MSG_IMAGES && m.n == 1);
    if (m.n == 1) {
        CHECK_MSG(strcmp(m.items[0].image_id, "1.9999999999999999e+124") == 0 ||
                  strcmp(m.items[0].image_id, "2e+124") == 0, "%s", m.items[0].image_id);
        CHECK_MSG(strcmp(m.items[0].scan_id, "-9007199254740992") == 0, "%s", m.items[0].scan_id);
        CHECK_MSG(strcmp(m.items[0].address_id, "inf") == 0, "%s", m.items[0].address_id);
    }
    msg_parsed_free(&m);
}

static void expect_invalid(const char *body, const char *reason)
{
    msg_parsed m;
    CHECK(msg_parse(body, &m) == CNP_OK);
    CHECK_MSG(m.kind == MSG_INVALID && strstr(m.reason, reason), "'%s': kind %d reason '%s'",
              body, m.kind, m.reason);
    CHECK(m.n == 0);
    msg_parsed_free(&m);
}

static void test_invalid(void)
{
    expect_invalid("not json", "not JSON");
    expect_invalid("", "not JSON");
    expect_invalid("[1,2]", "not a JSON object");
    expect_invalid("{\"hello\":1}", "neither an S3 event");
    expect_invalid("{\"bucket\":\"b\"}", "no \"key\"");
    expect_invalid("{\"key\":\"k\"}", "no \"bucket\"");
    expect_invalid("{\"Records\":[{\"eventName\":\"ObjectCreated:Put\"}]}", "without eventName or s3");
    expect_invalid("{\"Records\":[{\"eventName\":\"ObjectCreated:Put\",\"s3\":{\"bucket\":{\"name\":\"b\"},"
                   "\"object\":{\"key\":\"bad%zzkey\"}}}]}", "not URL-encoded");
    expect_invalid("{\"Type\":\"Notification\",\"Message\":\"nope\"}", "Message is not JSON");
    /* Found by fuzz_message: an empty bucket name and a key decoding to "". */
    expect_invalid("{\"Records\":[{\"eventName\":\"ObjectCreated:Put\",\"s3\":{\"bucket\":{\"name\":\"\"},"
                   "\"object\":{\"key\":\"k.png\"}}}]}", "without s3.bucket.name");
    expect_invalid("{\"Records\":[{\"eventName\":\"ObjectCreated:Put\",\"s3\":{\"bucket\":{\"name\":\"b\"},"
                   "\"object\":{\"key\":\"%00.png\"}}}]}", "not URL-encoded");
}

int main(void)
{
    test_key_decode();
    test_s3_event();
    test_sns_wrapped();
    test_ignored();
    test_legacy();
    test_invalid();
    return TEST_RESULT();
}
