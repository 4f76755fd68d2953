/* AWS error answers in each form the services use, read by aws_error_parse:
 * S3 XML, query-protocol XML (STS, SQS; also with <Errors> as moto's SQS
 * answers a bad signature), the SQS JSON protocol (__type, message, and the
 * x-amzn-query-error header), x-amzn-errortype with an empty body, and
 * bodies that are not an error document. Before, only <Error> at the root
 * was read, so SQS's and STS's codes were lost ("HTTP 403 Forbidden").
 * Also the other answer parsers on bad bodies, with what tests/fuzz found. */
#include <limits.h>
#include <stdio.h>
#include <string.h>

#include "aws/aws_internal.h"
#include "testutil.h"

static aws_error_info parse(const char *body, const aws_kvlist *headers)
{
    aws_error_info e;
    aws_error_parse(body, strlen(body), headers, &e);
    return e;
}

static void test_s3_xml(void)
{
    aws_error_info e = parse(
        "<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n<Error><Code>SignatureDoesNotMatch</Code>"
        "<Message>The request signature we calculated does not match the signature you "
        "provided. Check your key and signing method.</Message>"
        "<AWSAccessKeyId>AKIDEXAMPLE</AWSAccessKeyId><StringToSign>AWS4-HMAC-SHA256\n"
        "20261201T000000Z</StringToSign><RequestId>4442587FB7D0A2F9</RequestId>"
        "<HostId>abc</HostId></Error>",
        NULL);
    CHECK_MSG(strcmp(e.code, "SignatureDoesNotMatch") == 0, "%s", e.code);
    CHECK_MSG(strncmp(e.message, "The request signature we calculated", 35) == 0, "%s",
              e.message);
    CHECK(strcmp(e.request_id, "4442587FB7D0A2F9") == 0);
    CHECK(!strstr(e.message, "AWS4-HMAC-SHA256"));
}

static void test_query_xml(void)
{
    /* SQS query protocol. */
    aws_error_info e = parse(
        "<ErrorResponse xmlns=\"http://queue.amazonaws.com/doc/2012-11-05/\"><Error>"
        "<Type>Sender</Type><Code>AWS.SimpleQueueService.NonExistentQueue</Code>"
        "<Message>The specified queue does not exist for this wsdl version.</Message>"
        "<Detail/></Error><RequestId>42d59b56-7407-4c4a-be0f-4c88daeea257</RequestId>"
        "</ErrorResponse>",
        NULL);
    CHECK_MSG(strcmp(e.code, "AWS.SimpleQueueService.NonExistentQueue") == 0, "%s", e.code);
    CHECK(strcmp(e.message, "The specified queue does not exist for this wsdl version.") == 0);
    CHECK(strcmp(e.request_id, "42d59b56-7407-4c4a-be0f-4c88daeea257") == 0);

    /* STS. */
    e = parse("<ErrorResponse xmlns=\"https://sts.amazonaws.com/doc/2011-06-15/\">\n  <Error>\n"
              "    <Type>Sender</Type>\n    <Code>InvalidClientTokenId</Code>\n"
              "    <Message>The security token included in the request is invalid.</Message>\n"
              "  </Error>\n  <RequestId>c6104cbe-af31-11e0-8154-cbc7ccf896c7</RequestId>\n"
              "</ErrorResponse>\n",
              NULL);
    CHECK_MSG(strcmp(e.code, "InvalidClientTokenId") == 0, "%s", e.code);
    CHECK(strcmp(e.message, "The security token included in the request is invalid.") == 0);
    CHECK(strcmp(e.request_id, "c6104cbe-af31-11e0-8154-cbc7ccf896c7") == 0);

    /* What moto's SQS answers a wrong secret key with: <Errors> around. */
    e = parse("<?xml version=\"1.0\" encoding=\"utf-8\"?>\n<ErrorResponse><Errors><Error>"
              "<Code>SignatureDoesNotMatch</Code><Message>The request signature we calculated "
              "does not match the signature you provided.</Message><Type>Sender</Type></Error>"
              "</Errors></ErrorResponse>",
              NULL);
    CHECK_MSG(strcmp(e.code, "SignatureDoesNotMatch") == 0, "%s", e.code);
    CHECK(strncmp(e.message, "The request signature", 21) == 0);
}

static void test_json(void)
{
    aws_kvlist h = {0};
    aws_kvlist_add(&h, "x-amzn-query-error", "AWS.SimpleQueueService.NonExistentQueue;Sender");
    aws_kvlist_add(&h, "x-amzn-requestid", "REQ-JSON-1");
    aws_error_info e = parse("{\"__type\": \"com.amazonaws.sqs#QueueDoesNotExist\", "
                             "\"message\": \"The specified queue does not exist.\"}",
                             &h);
    CHECK_MSG(strcmp(e.code, "QueueDoesNotExist") == 0, "%s", e.code);
    CHECK(strcmp(e.message, "The specified queue does not exist.") == 0);
    CHECK(strcmp(e.request_id, "REQ-JSON-1") == 0);

    /* No code in the body: the query-compatible header names it. */
    e = parse("{\"message\": \"Queue gone\"}", &h);
    CHECK_MSG(strcmp(e.code, "AWS.SimpleQueueService.NonExistentQueue") == 0, "%s", e.code);
    aws_kvlist_free(&h);

    /* "Message" with a capital, a coral type with a URL suffix. */
    e = parse("  {\"__type\":\"com.amazon.coral.service#UnrecognizedClientException:"
              "http://internal.amazon.com/coral/com.amazon.coral.service/\","
              "\"Message\":\"The security token included in the request is invalid.\"}",
              NULL);
    CHECK_MSG(strcmp(e.code, "UnrecognizedClientException") == 0, "%s", e.code);
    CHECK(strcmp(e.message, "The security token included in the request is invalid.") == 0);

    /* Empty body, code in x-amzn-errortype. */
    aws_kvlist_add(&h, "x-amzn-errortype", "AccessDeniedException:http://internal.amazon.com/");
    e = parse("", &h);
    CHECK_MSG(strcmp(e.code, "AccessDeniedException") == 0, "%s", e.code);
    aws_kvlist_free(&h);
}

static void test_not_errors(void)
{
    aws_kvlist h = {0};
    aws_kvlist_add(&h, "x-amz-request-id", "REQ-HTML");
    aws_error_info e = parse("<html><body><h1>502 Bad Gateway</h1></body></html>", &h);
    CHECK(e.code[0] == '\0' && e.message[0] == '\0' && strcmp(e.request_id, "REQ-HTML") == 0);
    e = parse("not json {", NULL);
    CHECK(e.code[0] == '\0' && e.message[0] == '\0');
    e = parse("<Error><Code>Trunc", NULL);
    CHECK(e.code[0] == '\0' || strcmp(e.code, "Trunc") == 0);
    /* Only the first <Error>'s code, and a message made one line. */
    e = parse("<Error><Code>First</Code><Message>line one\nline two</Message></Error>", NULL);
    CHECK(strcmp(e.code, "First") == 0 && strcmp(e.message, "line one line two") == 0);
    aws_kvlist_free(&h);
}

/* Answers shaped wrong: "Attributes" as an array has members without names
 * (aws_kvlist_add got a NULL name and crashed; found by fuzz_sqs_json). */
static void test_answers_shaped_wrong(void)
{
    const char *body = "{\"Messages\":[{\"MessageId\":\"m\",\"Attributes\":"
                       "[\"ApproximateReceiveCount\"]}]}";
    sqs_message_list list;
    CHECK(sqs_receive_parse(body, strlen(body), &list) == CNP_OK);
    CHECK(list.n == 1 && list.items[0].attributes.n == 0 &&
          strcmp(list.items[0].message_id, "m") == 0 && list.items[0].receive_count == 0);
    sqs_message_list_free(&list);
    body = "{\"Messages\":[{\"Attributes\":{\"ApproximateReceiveCount\":\"99999999999\"}}]}";
    CHECK(sqs_receive_parse(body, strlen(body), &list) == CNP_OK);
    CHECK(list.n == 1 && list.items[0].receive_count == INT_MAX);
    sqs_message_list_free(&list);
    CHECK(sqs_receive_parse("nope", 4, &list) == CNP_ERR_FORMAT && list.n == 0);

    aws_kvlist attrs = {0};
    body = "{\"Attributes\":[\"VisibilityTimeout\"]}";
    CHECK(sqs_attributes_parse(body, strlen(body), &attrs) == CNP_OK && attrs.n == 0);
    aws_kvlist_free(&attrs);

    s3_list_page page = {0};
    body = "<ListBucketResult><Contents><Size>3</Size></Contents></ListBucketResult>";
    CHECK(s3_list_parse(body, strlen(body), &page) == CNP_ERR_FORMAT); /* no Key */
    s3_list_page_free(&page);
}

int main(void)
{
    test_answers_shaped_wrong();
    test_s3_xml();
    test_query_xml();
    test_json();
    test_not_errors();
    return TEST_RESULT();
}
