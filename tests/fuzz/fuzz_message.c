/* Fuzz target: SQS message bodies (msg_parse) and S3 event key decoding.
 *
 * Invariants: no crash or leak; a parse gives exactly one of images (at least
 * one item, each with a non-empty bucket and key), ignore (no items) or
 * invalid (no items, a reason); a decoded key is never longer than the
 * encoded one, and encoding it again then decoding gives it back. */
#include "canopy/message.h"
#include "fuzz_util.h"

/* Percent-encodes every byte that is not unreserved (RFC 3986). */
static char *encode(const char *s)
{
    static const char hex[] = "0123456789ABCDEF";
    size_t n = strlen(s);
    char *out = malloc(3 * n + 1), *o = out;
    FUZZ_CHECK(out != NULL);
    for (; *s; s++) {
        unsigned char c = (unsigned char)*s;
        if ((c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') ||
            c == '-' || c == '_' || c == '.' || c == '~' || c == '/') {
            *o++ = (char)c;
        } else {
            *o++ = '%';
            *o++ = hex[c >> 4];
            *o++ = hex[c & 15];
        }
    }
    *o = '\0';
    return out;
}

static void check_key_decode(const char *in)
{
    char *k = msg_key_decode(in);
    if (!k)
        return;
    FUZZ_CHECK(strlen(k) <= strlen(in));
    char *again = encode(k);
    char *back = msg_key_decode(again);
    FUZZ_CHECK(back != NULL && strcmp(back, k) == 0);
    free(back);
    free(again);
    free(k);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    char *body = fuzz_strdup(data, size);
    msg_parsed m;
    cnp_status st = msg_parse(body, &m);
    FUZZ_CHECK(st == CNP_OK || st == CNP_ERR_NOMEM);
    if (st == CNP_OK) {
        switch (m.kind) {
        case MSG_IMAGES:
            FUZZ_CHECK(m.n >= 1 && m.items != NULL);
            for (size_t i = 0; i < m.n; i++) {
                const msg_item *it = &m.items[i];
                FUZZ_CHECK(it->bucket && it->bucket[0]);
                FUZZ_CHECK(it->key && it->key[0]);
                FUZZ_CHECK(it->n_tree_types == 0 || it->tree_types != NULL);
                for (size_t t = 0; t < it->n_tree_types; t++)
                    FUZZ_CHECK(it->tree_types[t] != NULL);
            }
            break;
        case MSG_IGNORE:
            FUZZ_CHECK(m.n == 0 && m.items == NULL);
            break;
        case MSG_INVALID:
            FUZZ_CHECK(m.n == 0 && m.items == NULL);
            FUZZ_CHECK(m.reason[0] != '\0' && fuzz_terminated(m.reason, sizeof m.reason));
            break;
        default:
            FUZZ_CHECK(!"unknown message kind");
        }
    }
    msg_parsed_free(&m);
    check_key_decode(body);
    free(body);
    return 0;
}
