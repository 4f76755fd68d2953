/* Pure helpers of the pipeline: output names, ids, header encoding and the
 * acknowledgement rules. No I/O here, so the unit tests cover them all. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <openssl/evp.h>

#include "pipeline/pl_internal.h"

char *pl_output_stem(const char *prefix, const char *key)
{
    const char *slash = strrchr(key, '/');
    const char *dot = strrchr(key, '.');
    size_t stem = dot && (!slash || dot > slash + 1) ? (size_t)(dot - key) : strlen(key);
    if (dot && !slash && dot == key)
        stem = strlen(key); /* ".hidden" has no extension */
    size_t len = strlen(prefix) + stem + 1;
    char *out = malloc(len);
    if (out)
        snprintf(out, len, "%s%.*s", prefix, (int)stem, key);
    return out;
}

char *pl_join(const char *a, const char *b)
{
    size_t len = strlen(a) + strlen(b) + 1;
    char *out = malloc(len);
    if (out)
        snprintf(out, len, "%s%s", a, b);
    return out;
}

char *pl_header_safe(const char *s)
{
    size_t len = strlen(s);
    char *out = malloc(3 * len + 1);
    if (!out)
        return NULL;
    size_t o = 0;
    for (size_t i = 0; i < len; i++) {
        unsigned char ch = (unsigned char)s[i];
        if (ch < 0x20 || ch > 0x7e || ch == '%') {
            snprintf(out + o, 4, "%%%02X", ch);
            o += 3;
        } else {
            out[o++] = (char)ch;
        }
    }
    out[o] = '\0';
    return out;
}

void pl_image_uuid(const char *bucket, const char *key, const char *etag, char out[40])
{
    unsigned char md[EVP_MAX_MD_SIZE];
    unsigned int len = 0;
    EVP_MD_CTX *h = EVP_MD_CTX_new();
    EVP_DigestInit_ex(h, EVP_sha256(), NULL);
    EVP_DigestUpdate(h, bucket, strlen(bucket) + 1);
    EVP_DigestUpdate(h, key, strlen(key) + 1);
    EVP_DigestUpdate(h, etag, strlen(etag) + 1);
    EVP_DigestFinal_ex(h, md, &len);
    EVP_MD_CTX_free(h);
    md[6] = (unsigned char)((md[6] & 0x0f) | 0x50); /* name-based, like a v5 UUID */
    md[8] = (unsigned char)((md[8] & 0x3f) | 0x80);
    snprintf(out, 40, "%02x%02x%02x%02x-%02x%02x-%02x%02x-%02x%02x-%02x%02x%02x%02x%02x%02x",
             md[0], md[1], md[2], md[3], md[4], md[5], md[6], md[7], md[8], md[9], md[10],
             md[11], md[12], md[13], md[14], md[15]);
}

int pl_backoff_seconds(int receive_count, unsigned jitter)
{
    int shift = receive_count > 1 ? receive_count - 1 : 0;
    if (shift > 7)
        shift = 7;
    int s = 5 << shift;
    if (s > 900)
        s = 900;
    return s + (int)(jitter % 3);
}

bool pl_message_deletable(const pl_chunk *c, size_t m, bool committed)
{
    if (!committed)
        return false;
    for (size_t i = 0; i < c->nitems; i++) {
        const pl_item *it = &c->items[i];
        if (it->ack != (int)m)
            continue;
        if (it->state != ITEM_COMMITTED && it->state != ITEM_FAILED_PERMANENT)
            return false;
    }
    return true;
}
