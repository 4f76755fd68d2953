/* Fuzz target: AWS error answers (aws_error_parse): S3 XML, query XML (STS,
 * SQS), JSON, and the x-amzn-* headers. The input is "headers\n\nbody" when
 * it holds a blank line (each header line "name: value"), else a body alone.
 *
 * Invariants: no crash or leak; code, message and request id stay terminated
 * inside their buffers and hold no control characters (they go into one-line
 * errors and logs). */
#include "aws/aws_internal.h"
#include "fuzz_util.h"

static void check_one_line(const char *s, size_t cap)
{
    FUZZ_CHECK(fuzz_terminated(s, cap));
    for (; *s; s++)
        FUZZ_CHECK((unsigned char)*s >= 0x20 && *s != 0x7f);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    aws_kvlist headers = {0};
    const uint8_t *body = data;
    size_t body_len = size;
    const uint8_t *blank = NULL;
    for (size_t i = 0; i + 1 < size; i++)
        if (data[i] == '\n' && data[i + 1] == '\n') {
            blank = data + i;
            break;
        }
    if (blank) {
        char *head = fuzz_strdup(data, (size_t)(blank - data));
        for (char *line = strtok(head, "\n"); line; line = strtok(NULL, "\n")) {
            char *colon = strchr(line, ':');
            if (!colon)
                continue;
            *colon = '\0';
            const char *v = colon + 1;
            while (*v == ' ')
                v++;
            FUZZ_CHECK(aws_kvlist_add(&headers, line, v) == CNP_OK);
        }
        free(head);
        body = blank + 2;
        body_len = size - (size_t)(body - data);
    }
    aws_error_info info;
    aws_error_parse(body, body_len, blank ? &headers : NULL, &info);
    check_one_line(info.code, sizeof info.code);
    check_one_line(info.message, sizeof info.message);
    check_one_line(info.request_id, sizeof info.request_id);
    aws_kvlist_free(&headers);
    return 0;
}
