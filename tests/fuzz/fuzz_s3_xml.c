/* Fuzz target: the XML answers canopy reads from S3 and STS:
 * ListObjectsV2 (s3_list_parse), CreateMultipartUpload (s3_upload_id_parse),
 * CompleteMultipartUpload (s3_complete_parse) and AssumeRoleWithWebIdentity
 * (aws_sts_parse), all on the same bytes.
 *
 * Invariants: no crash or leak; every listed entry has a key; a page that is
 * not truncated has no continuation token; fixed-size fields stay
 * terminated; a listing that parses, written back as XML, parses to the same
 * keys, sizes and truncation. */
#include <inttypes.h>

#include "aws/aws_internal.h"
#include "canopy/buf.h"
#include "fuzz_util.h"

/* Appends s with the five XML entities and CR escaped (expat turns a raw CR
 * into LF, so it must travel as a character reference). */
static void xml_escape(cnp_buf *b, const char *s)
{
    for (; *s; s++) {
        cnp_status st;
        switch (*s) {
        case '<': st = cnp_buf_printf(b, "&lt;"); break;
        case '>': st = cnp_buf_printf(b, "&gt;"); break;
        case '&': st = cnp_buf_printf(b, "&amp;"); break;
        case '"': st = cnp_buf_printf(b, "&quot;"); break;
        case '\r': st = cnp_buf_printf(b, "&#13;"); break;
        default: st = cnp_buf_append(b, s, 1);
        }
        FUZZ_CHECK(st == CNP_OK);
    }
}

static void check_list(const uint8_t *data, size_t size)
{
    s3_list_page page = {0};
    cnp_status st = s3_list_parse(data, size, &page);
    FUZZ_CHECK(st == CNP_OK || st == CNP_ERR_FORMAT || st == CNP_ERR_NOMEM);
    FUZZ_CHECK(page.truncated || page.next_token == NULL);
    if (st != CNP_OK) {
        s3_list_page_free(&page);
        return;
    }
    cnp_buf xml = {0};
    FUZZ_CHECK(cnp_buf_printf(&xml, "<ListBucketResult><IsTruncated>%s</IsTruncated>",
                              page.truncated ? "true" : "false") == CNP_OK);
    for (size_t i = 0; i < page.n; i++) {
        const s3_list_entry *e = &page.entries[i];
        FUZZ_CHECK(e->key != NULL);
        FUZZ_CHECK(fuzz_terminated(e->etag, sizeof e->etag));
        FUZZ_CHECK(fuzz_terminated(e->last_modified, sizeof e->last_modified));
        FUZZ_CHECK(cnp_buf_printf(&xml, "<Contents><Key>") == CNP_OK);
        xml_escape(&xml, e->key);
        FUZZ_CHECK(cnp_buf_printf(&xml, "</Key><Size>%" PRId64 "</Size></Contents>",
                                  (int64_t)e->size) == CNP_OK);
    }
    FUZZ_CHECK(cnp_buf_printf(&xml, "</ListBucketResult>") == CNP_OK);
    s3_list_page again = {0};
    st = s3_list_parse(xml.data, xml.len, &again);
    if (st != CNP_OK)
        fprintf(stderr, "written back: %.*s\n", (int)xml.len, (const char *)xml.data);
    FUZZ_CHECK(st == CNP_OK);
    FUZZ_CHECK(again.n == page.n && again.truncated == page.truncated);
    for (size_t i = 0; i < page.n; i++) {
        FUZZ_CHECK(strcmp(again.entries[i].key, page.entries[i].key) == 0);
        FUZZ_CHECK(again.entries[i].size == page.entries[i].size);
    }
    s3_list_page_free(&again);
    cnp_buf_free(&xml);
    s3_list_page_free(&page);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    check_list(data, size);

    char *upload_id = NULL;
    cnp_status st = s3_upload_id_parse(data, size, &upload_id);
    FUZZ_CHECK(st == CNP_OK || upload_id == NULL);
    free(upload_id);

    s3_complete_answer ca;
    s3_complete_parse(data, size, &ca);
    FUZZ_CHECK(fuzz_terminated(ca.etag, sizeof ca.etag));
    FUZZ_CHECK(fuzz_terminated(ca.code, sizeof ca.code));
    FUZZ_CHECK(fuzz_terminated(ca.message, sizeof ca.message));

    aws_sts_answer sts;
    aws_sts_parse(data, size, &sts);
    FUZZ_CHECK(fuzz_terminated(sts.akid, sizeof sts.akid));
    FUZZ_CHECK(fuzz_terminated(sts.secret, sizeof sts.secret));
    FUZZ_CHECK(fuzz_terminated(sts.token, sizeof sts.token));
    FUZZ_CHECK(fuzz_terminated(sts.expiration, sizeof sts.expiration));
    FUZZ_CHECK(fuzz_terminated(sts.code, sizeof sts.code));
    FUZZ_CHECK(fuzz_terminated(sts.message, sizeof sts.message));
    (void)aws_parse_iso8601(sts.expiration);
    return 0;
}
