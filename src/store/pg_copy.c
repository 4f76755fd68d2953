/* COPY ... FROM STDIN text-format encoding, array literals, UTF-8 checks.
 *
 * Text format: columns separated by tab, rows ended by newline, \N is NULL;
 * backslash, tab, newline and carriage return inside a value must be written
 * as \\, \t, \n, \r (everything else, UTF-8 included, travels as is). */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "store/pg_internal.h"

static void copy_raw(pg_copy *c, const void *data, size_t len)
{
    if (c->nomem)
        return;
    if (cnp_buf_append(&c->buf, data, len) != CNP_OK)
        c->nomem = true;
}

/* Appends s with COPY escapes; runs of plain bytes are copied in one go. */
static void copy_escaped(pg_copy *c, const char *s)
{
    const char *run = s;
    for (const char *p = s; *p; p++) {
        const char *esc = NULL;
        switch (*p) {
        case '\\': esc = "\\\\"; break;
        case '\t': esc = "\\t"; break;
        case '\n': esc = "\\n"; break;
        case '\r': esc = "\\r"; break;
        default: continue;
        }
        copy_raw(c, run, (size_t)(p - run));
        copy_raw(c, esc, 2);
        run = p + 1;
    }
    copy_raw(c, run, strlen(run));
}

void pg_copy_null(pg_copy *c)
{
    copy_raw(c, "\\N\t", 3);
}

void pg_copy_str(pg_copy *c, const char *s)
{
    if (!s) {
        pg_copy_null(c);
        return;
    }
    char *clean = NULL;
    if (!pg_utf8_valid(s)) {
        /* The server refuses the whole COPY for one bad byte: one bad key
         * must not block a chunk forever, so store it with U+FFFD. */
        if (!(clean = pg_utf8_sanitize(s))) {
            c->nomem = true;
            return;
        }
        c->sanitized++;
        s = clean;
    }
    copy_escaped(c, s);
    copy_raw(c, "\t", 1);
    free(clean);
}

void pg_copy_int(pg_copy *c, int64_t v)
{
    char tmp[32];
    int len = snprintf(tmp, sizeof tmp, "%lld\t", (long long)v);
    copy_raw(c, tmp, (size_t)len);
}

/* Writes v with enough digits to come back bit-exact in the column type:
 * 9 significant digits for float4, 17 for float8. */
static void copy_float(pg_copy *c, double v, int digits)
{
    if (isnan(v)) {
        pg_copy_null(c);
        return;
    }
    char tmp[48];
    int len;
    if (isinf(v))
        len = snprintf(tmp, sizeof tmp, "%s\t", v > 0 ? "Infinity" : "-Infinity");
    else
        len = snprintf(tmp, sizeof tmp, "%.*g\t", digits, v);
    copy_raw(c, tmp, (size_t)len);
}

void pg_copy_real(pg_copy *c, double v)
{
    copy_float(c, v, 9);
}

void pg_copy_double(pg_copy *c, double v)
{
    copy_float(c, v, 17);
}

void pg_copy_double_array(pg_copy *c, const double *v, size_t n)
{
    if (!v) {
        pg_copy_null(c);
        return;
    }
    /* Digits, signs, dots, 'e' and commas need no COPY escapes. */
    copy_raw(c, "{", 1);
    for (size_t i = 0; i < n; i++) {
        char tmp[40];
        int len = isfinite(v[i]) ? snprintf(tmp, sizeof tmp, "%s%.17g", i ? "," : "", v[i])
                                 : snprintf(tmp, sizeof tmp, "%sNULL", i ? "," : "");
        copy_raw(c, tmp, (size_t)len);
    }
    copy_raw(c, "}\t", 2);
}

void pg_copy_text_array(pg_copy *c, const char *const *items, size_t n)
{
    if (!items) {
        pg_copy_null(c);
        return;
    }
    /* The array literal is itself a text value: build it, then COPY-escape it
     * (so a backslash in an element becomes \\ in the literal, \\\\ on the wire). */
    cnp_buf lit = {0};
    if (pg_array_literal(&lit, items, n) != CNP_OK || cnp_buf_append(&lit, "", 1) != CNP_OK) {
        c->nomem = true;
        cnp_buf_free(&lit);
        return;
    }
    pg_copy_str(c, (const char *)lit.data);
    cnp_buf_free(&lit);
}

void pg_copy_eol(pg_copy *c)
{
    if (c->nomem)
        return;
    if (c->buf.len > 0 && c->buf.data[c->buf.len - 1] == '\t')
        c->buf.data[c->buf.len - 1] = '\n';
    else
        copy_raw(c, "\n", 1);
}

void pg_copy_free(pg_copy *c)
{
    if (!c)
        return;
    cnp_buf_free(&c->buf);
    c->nomem = false;
}

cnp_status pg_array_literal(cnp_buf *out, const char *const *items, size_t n)
{
    cnp_status result = cnp_buf_append(out, "{", 1);
    for (size_t i = 0; i < n && result == CNP_OK; i++) {
        if (i > 0)
            result = cnp_buf_append(out, ",", 1);
        if (result != CNP_OK)
            break;
        if (!items[i]) {
            result = cnp_buf_append(out, "NULL", 4);
            continue;
        }
        /* Always quote: protects commas, braces, blanks and the word NULL. */
        result = cnp_buf_append(out, "\"", 1);
        const char *run = items[i];
        for (const char *p = items[i]; *p && result == CNP_OK; p++) {
            if (*p != '"' && *p != '\\')
                continue;
            result = cnp_buf_append(out, run, (size_t)(p - run));
            if (result == CNP_OK)
                result = cnp_buf_append(out, "\\", 1);
            run = p;
        }
        if (result == CNP_OK)
            result = cnp_buf_append(out, run, strlen(run));
        if (result == CNP_OK)
            result = cnp_buf_append(out, "\"", 1);
    }
    if (result == CNP_OK)
        result = cnp_buf_append(out, "}", 1);
    return result;
}

/* Length of the well-formed UTF-8 sequence at p (1..4), or 0 when the bytes
 * there are not one (stray continuation, truncated, overlong, surrogate,
 * beyond U+10FFFF). p must not point at the terminating NUL. */
static size_t utf8_seq_len(const unsigned char *p)
{
    unsigned char b = *p;
    size_t need;
    unsigned int cp;
    if (b < 0x80)
        return 1;
    if ((b & 0xE0) == 0xC0) {
        need = 1;
        cp = b & 0x1F;
    } else if ((b & 0xF0) == 0xE0) {
        need = 2;
        cp = b & 0x0F;
    } else if ((b & 0xF8) == 0xF0) {
        need = 3;
        cp = b & 0x07;
    } else {
        return 0;
    }
    for (size_t i = 1; i <= need; i++) {
        if ((p[i] & 0xC0) != 0x80)
            return 0; /* also stops at the terminating NUL */
        cp = (cp << 6) | (p[i] & 0x3F);
    }
    static const unsigned int min_cp[4] = {0, 0x80, 0x800, 0x10000};
    if (cp < min_cp[need] || (cp >= 0xD800 && cp <= 0xDFFF) || cp > 0x10FFFF)
        return 0;
    return need + 1;
}

bool pg_utf8_valid(const char *s)
{
    const unsigned char *p = (const unsigned char *)s;
    while (*p) {
        size_t n = utf8_seq_len(p);
        if (!n)
            return false;
        p += n;
    }
    return true;
}

char *pg_utf8_sanitize(const char *s)
{
    /* Each bad byte becomes 3 bytes at most. */
    size_t len = strlen(s);
    char *out = malloc(len * 3 + 1);
    if (!out)
        return NULL;
    const unsigned char *p = (const unsigned char *)s;
    char *w = out;
    while (*p) {
        size_t n = utf8_seq_len(p);
        if (n) {
            memcpy(w, p, n);
            w += n;
            p += n;
        } else {
            memcpy(w, "\xEF\xBF\xBD", 3); /* U+FFFD REPLACEMENT CHARACTER */
            w += 3;
            p++;
        }
    }
    *w = '\0';
    return out;
}
