/* Start-up checks of what cannot recover by itself: a queue URL naming no
 * queue, refused credentials, a missing output bucket. A scheduled job with
 * a typo fails at once with the service's code and message instead of
 * retrying for [batch] unreachable_exit_seconds. Network failures and 5xx
 * are left to the run's own retries and unreachable exit. */
#include <string.h>

#include "canopy/log.h"
#include "pipeline/sources.h"

bool pl_aws_unrecoverable(const char *code)
{
    static const char *const codes[] = {
        "QueueDoesNotExist",       "AWS.SimpleQueueService.NonExistentQueue",
        "NonExistentQueue",        "InvalidClientTokenId",
        "SignatureDoesNotMatch",   "AccessDenied",
        "AccessDeniedException",   "InvalidAccessKeyId",
        "NoSuchBucket",            "UnrecognizedClientException",
    };
    for (size_t i = 0; code && i < sizeof codes / sizeof codes[0]; i++)
        if (strcmp(code, codes[i]) == 0)
            return true;
    return false;
}

/* GetQueueAttributes: a worker allowed only to receive may be refused it,
 * so AccessDenied here proves nothing (ReceiveMessage decides, see
 * source_sqs.c); the other codes are final. */
static cnp_status check_queue(aws_client *aws, const char *queue_url, cnp_err *err)
{
    aws_kvlist attrs = {0};
    aws_result ar;
    cnp_status st = sqs_queue_attributes(aws, queue_url, &attrs, &ar);
    aws_kvlist_free(&attrs);
    if (st == CNP_OK || !pl_aws_unrecoverable(ar.code) || strncmp(ar.code, "AccessDenied", 12) == 0)
        return CNP_OK;
    cnp_err_set(err, "[input] queue_url: %s", ar.err.msg); /* names the code */
    return st;
}

/* ListObjectsV2 of one key under the prefix: NoSuchBucket and refused
 * credentials are final; AccessDenied is not (writing needs no listing). */
static cnp_status check_bucket(aws_client *aws, const char *bucket, const char *prefix,
                               cnp_err *err)
{
    s3_list_page page = {0};
    cnp_err lerr;
    cnp_status st = s3_list_objects(aws, bucket, prefix, NULL, NULL, 1, &page, &lerr);
    const char *code = page.result.code;
    bool final = st != CNP_OK && pl_aws_unrecoverable(code) &&
                 strncmp(code, "AccessDenied", 12) != 0;
    if (final)
        cnp_err_set(err, "[output] bucket: %s", lerr.msg); /* names the code */
    s3_list_page_free(&page);
    return final ? st : CNP_OK;
}

cnp_status pl_preflight(aws_client *aws, const char *queue_url, const char *bucket,
                        const char *prefix, cnp_err *err)
{
    cnp_status st = CNP_OK;
    if (queue_url && queue_url[0])
        st = check_queue(aws, queue_url, err);
    if (st == CNP_OK && bucket && bucket[0])
        st = check_bucket(aws, bucket, prefix, err);
    return st;
}
