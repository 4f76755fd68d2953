/* Masking libpq connection strings for logs and `config show`: the values of
 * password and sslpassword, in keyword=value form and in URIs, become
 * ******** (cnp_conninfo_mask, declared in canopy/config.h). */
#include <ctype.h>
#include <stdbool.h>
#include <stdio.h>
#include <string.h>
#include <strings.h>

#include "canopy/config.h"

/* True for the conninfo keywords whose value is a secret. */
static bool conninfo_secret_key(const char *name, size_t len)
{
    return (len == 8 && strncasecmp(name, "password", 8) == 0) ||
           (len == 11 && strncasecmp(name, "sslpassword", 11) == 0);
}

/* Masks a URI conninfo: postgresql://user:SECRET@host/db?password=SECRET&... */
static void conninfo_mask_uri(const char *in, size_t scheme_len, char *out, size_t len)
{
    size_t used = 0;
#define PUT(p, n)                                                                   \
    do {                                                                            \
        size_t n_ = (n);                                                            \
        if (used + n_ >= len)                                                       \
            n_ = len - 1 - used;                                                    \
        memcpy(out + used, (p), n_);                                                \
        used += n_;                                                                 \
    } while (0)
    const char *q = strchr(in, '?');
    const char *end_auth = q ? q : in + strlen(in);
    const char *at = NULL;
    for (const char *c = in + scheme_len; c < end_auth; c++)
        if (*c == '@')
            at = c;
    const char *p = in;
    if (at) {
        const char *colon = memchr(in + scheme_len, ':', (size_t)(at - (in + scheme_len)));
        if (colon) {
            PUT(p, (size_t)(colon + 1 - p));
            PUT("********", 8);
            p = at;
        }
    }
    PUT(p, (size_t)(end_auth - p));
    p = end_auth;
    while (*p) { /* '?' or '&', then name=value */
        PUT(p, 1);
        p++;
        size_t seg = strcspn(p, "&");
        const char *eq = memchr(p, '=', seg);
        if (eq && conninfo_secret_key(p, (size_t)(eq - p))) {
            PUT(p, (size_t)(eq + 1 - p));
            PUT("********", 8);
        } else {
            PUT(p, seg);
        }
        p += seg;
    }
    out[used] = '\0';
#undef PUT
}

void cnp_conninfo_mask(const char *in, char *out, size_t len)
{
    if (len == 0)
        return;
    size_t scheme = strncmp(in, "postgresql://", 13) == 0 ? 13
                    : strncmp(in, "postgres://", 11) == 0 ? 11 : 0;
    if (scheme) {
        conninfo_mask_uri(in, scheme, out, len);
        return;
    }
    /* keyword = value pairs; a value is 'quoted' (with \' and \\) or runs to
     * the next white space (with \ escapes). */
    size_t used = 0;
    const char *p = in;
    while (*p && used + 1 < len) {
        if (isspace((unsigned char)*p)) {
            out[used++] = *p++;
            continue;
        }
        const char *name = p;
        while (*p && *p != '=' && !isspace((unsigned char)*p))
            p++;
        size_t name_len = (size_t)(p - name);
        bool secret = conninfo_secret_key(name, name_len);
        const char *vstart = p;
        while (*p && (isspace((unsigned char)*p) || *p == '=')) /* " = " */
            p++;
        const char *v = p;
        if (*p == '\'') {
            for (p++; *p && *p != '\''; p++)
                if (*p == '\\' && p[1])
                    p++;
            if (*p == '\'')
                p++;
        } else {
            for (; *p && !isspace((unsigned char)*p); p++)
                if (*p == '\\' && p[1])
                    p++;
        }
        int n = snprintf(out + used, len - used, "%.*s%.*s%.*s", (int)name_len, name,
                         (int)(v - vstart), vstart, secret ? 8 : (int)(p - v),
                         secret ? "********" : v);
        used += n < 0 ? 0 : (size_t)n;
        if (used >= len)
            used = len - 1;
    }
    out[used] = '\0';
}
