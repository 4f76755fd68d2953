/* A growable byte buffer (response bodies, encoded PNGs, JSON documents). */
#ifndef CANOPY_BUF_H
#define CANOPY_BUF_H

#include <stddef.h>
#include <stdint.h>

#include "canopy/status.h"

typedef struct cnp_buf {
    uint8_t *data;
    size_t len;
    size_t cap;
} cnp_buf;

/* Ensures room for `extra` more bytes; returns CNP_ERR_NOMEM on failure. */
cnp_status cnp_buf_reserve(cnp_buf *buf, size_t extra);
cnp_status cnp_buf_append(cnp_buf *buf, const void *data, size_t len);
cnp_status cnp_buf_printf(cnp_buf *buf, const char *fmt, ...)
    __attribute__((format(printf, 2, 3)));
/* Frees the storage and resets the buffer to empty; accepts NULL. */
void cnp_buf_free(cnp_buf *buf);

/* Reads a whole file into buf (appending). Fills err with "path: reason". */
cnp_status cnp_file_read(const char *path, size_t max_bytes, cnp_buf *buf, cnp_err *err);
/* Writes data to path atomically (temporary file + rename). */
cnp_status cnp_file_write(const char *path, const void *data, size_t len, cnp_err *err);

/* Monotonic clock in seconds. */
double cnp_now(void);

/* Median of v[0..n) (n > 0; the mean of the middle two when n is even).
 * Sorts v in place. */
double cnp_median(double *v, int n);

#endif
