/* One status type for every module, and an error buffer the caller prints.
 *
 * Functions return cnp_status; on failure they fill a cnp_err with one line
 * that names the input and the reason ("s3://b/k: HTTP 403 AccessDenied: ...").
 * Library code never prints the error itself and never calls exit(). */
#ifndef CANOPY_STATUS_H
#define CANOPY_STATUS_H

#include <stdarg.h>
#include <stdbool.h>

typedef enum cnp_status {
    CNP_OK = 0,
    CNP_ERR_INVALID,   /* bad argument, message or input data (permanent) */
    CNP_ERR_NOMEM,
    CNP_ERR_IO,        /* local file system */
    CNP_ERR_FORMAT,    /* corrupt or unsupported data (permanent) */
    CNP_ERR_LIMIT,     /* input exceeds a configured limit (permanent) */
    CNP_ERR_NOTFOUND,  /* object, key or file does not exist (permanent) */
    CNP_ERR_OPENCL,    /* OpenCL runtime or kernel build */
    CNP_ERR_TRANSIENT, /* network, throttling, 5xx, database down: retry later */
    CNP_ERR_REMOTE,    /* non-retryable error answered by a service (4xx, SQL) */
    CNP_ERR_AUTH,      /* credentials missing, expired or refused */
    CNP_ERR_CONFIG,    /* configuration or usage */
    CNP_ERR_INTERNAL,
} cnp_status;

#define CNP_ERR_MSG_MAX 1024

typedef struct cnp_err {
    char msg[CNP_ERR_MSG_MAX];
} cnp_err;

/* Replaces err->msg with the formatted text; err may be NULL. */
void cnp_err_set(cnp_err *err, const char *fmt, ...)
    __attribute__((format(printf, 2, 3)));
void cnp_err_vset(cnp_err *err, const char *fmt, va_list ap);

/* Prefixes err->msg with the formatted text and ": " (adds context while an
 * error travels up: "OSBS_029.png: " + "IDAT: invalid distance"). */
void cnp_err_prefix(cnp_err *err, const char *fmt, ...)
    __attribute__((format(printf, 2, 3)));

/* Static name of a status ("transient", "format", ...). */
const char *cnp_status_name(cnp_status status);

/* True for failures worth retrying later (network, throttling, database). */
static inline bool cnp_status_is_transient(cnp_status s)
{
    return s == CNP_ERR_TRANSIENT;
}

#endif
