/* Error buffers and status names. */
#include <stdio.h>
#include <string.h>

#include "canopy/status.h"

void cnp_err_vset(cnp_err *err, const char *fmt, va_list ap)
{
    if (!err)
        return;
    vsnprintf(err->msg, sizeof err->msg, fmt, ap);
}

void cnp_err_set(cnp_err *err, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    cnp_err_vset(err, fmt, ap);
    va_end(ap);
}

void cnp_err_prefix(cnp_err *err, const char *fmt, ...)
{
    if (!err)
        return;
    char prefix[CNP_ERR_MSG_MAX];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(prefix, sizeof prefix, fmt, ap);
    va_end(ap);
    size_t plen = strlen(prefix);
    size_t mlen = strnlen(err->msg, sizeof err->msg - 1);
    /* Room for "prefix: " in front of the message, truncating its tail. */
    if (plen + 2 >= sizeof err->msg)
        plen = sizeof err->msg - 3;
    if (plen + 2 + mlen >= sizeof err->msg)
        mlen = sizeof err->msg - 1 - plen - 2;
    memmove(err->msg + plen + 2, err->msg, mlen);
    memcpy(err->msg, prefix, plen);
    err->msg[plen] = ':';
    err->msg[plen + 1] = ' ';
    err->msg[plen + 2 + mlen] = '\0';
}

const char *cnp_status_name(cnp_status status)
{
    switch (status) {
    case CNP_OK: return "ok";
    case CNP_ERR_INVALID: return "invalid";
    case CNP_ERR_NOMEM: return "out of memory";
    case CNP_ERR_IO: return "io";
    case CNP_ERR_FORMAT: return "format";
    case CNP_ERR_LIMIT: return "limit";
    case CNP_ERR_NOTFOUND: return "not found";
    case CNP_ERR_OPENCL: return "opencl";
    case CNP_ERR_TRANSIENT: return "transient";
    case CNP_ERR_REMOTE: return "remote";
    case CNP_ERR_AUTH: return "auth";
    case CNP_ERR_CONFIG: return "config";
    case CNP_ERR_INTERNAL: return "internal";
    }
    return "unknown";
}
