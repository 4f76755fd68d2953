/* Growable buffers, whole-file I/O and the clock. */
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "canopy/buf.h"

cnp_status cnp_buf_reserve(cnp_buf *buf, size_t extra)
{
    if (buf->cap - buf->len >= extra)
        return CNP_OK;
    size_t need = buf->len + extra;
    if (need < buf->len)
        return CNP_ERR_NOMEM;
    size_t cap = buf->cap ? buf->cap : 256;
    while (cap < need)
        cap = cap > SIZE_MAX / 2 ? need : cap * 2;
    uint8_t *p = realloc(buf->data, cap);
    if (!p)
        return CNP_ERR_NOMEM;
    buf->data = p;
    buf->cap = cap;
    return CNP_OK;
}

cnp_status cnp_buf_append(cnp_buf *buf, const void *data, size_t len)
{
    if (len == 0)
        return CNP_OK;
    cnp_status result = cnp_buf_reserve(buf, len);
    if (result != CNP_OK)
        return result;
    memcpy(buf->data + buf->len, data, len);
    buf->len += len;
    return CNP_OK;
}

cnp_status cnp_buf_printf(cnp_buf *buf, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    int n = vsnprintf(NULL, 0, fmt, ap);
    va_end(ap);
    if (n < 0)
        return CNP_ERR_INVALID;
    /* +1 for vsnprintf's terminator, which is not counted in len. */
    cnp_status result = cnp_buf_reserve(buf, (size_t)n + 1);
    if (result != CNP_OK)
        return result;
    va_start(ap, fmt);
    vsnprintf((char *)buf->data + buf->len, (size_t)n + 1, fmt, ap);
    va_end(ap);
    buf->len += (size_t)n;
    return CNP_OK;
}

void cnp_buf_free(cnp_buf *buf)
{
    if (!buf)
        return;
    free(buf->data);
    buf->data = NULL;
    buf->len = buf->cap = 0;
}

cnp_status cnp_file_read(const char *path, size_t max_bytes, cnp_buf *buf, cnp_err *err)
{
    cnp_status result = CNP_OK;
    FILE *f = fopen(path, "rb");
    if (!f) {
        cnp_err_set(err, "%s: %s", path, strerror(errno));
        return errno == ENOENT ? CNP_ERR_NOTFOUND : CNP_ERR_IO;
    }
    for (;;) {
        if ((result = cnp_buf_reserve(buf, 65536)) != CNP_OK) {
            cnp_err_set(err, "%s: out of memory", path);
            goto out;
        }
        size_t n = fread(buf->data + buf->len, 1, 65536, f);
        buf->len += n;
        if (max_bytes && buf->len > max_bytes) {
            cnp_err_set(err, "%s: larger than the limit of %zu bytes", path, max_bytes);
            result = CNP_ERR_LIMIT;
            goto out;
        }
        if (n < 65536) {
            if (ferror(f)) {
                cnp_err_set(err, "%s: read error: %s", path, strerror(errno));
                result = CNP_ERR_IO;
            }
            break;
        }
    }
out:
    fclose(f);
    return result;
}

cnp_status cnp_file_write(const char *path, const void *data, size_t len, cnp_err *err)
{
    char tmp[4096];
    if (snprintf(tmp, sizeof tmp, "%s.tmp.%ld", path, (long)getpid()) >= (int)sizeof tmp) {
        cnp_err_set(err, "%s: path too long", path);
        return CNP_ERR_INVALID;
    }
    int fd = open(tmp, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
    if (fd < 0) {
        cnp_err_set(err, "%s: %s", tmp, strerror(errno));
        return CNP_ERR_IO;
    }
    const uint8_t *p = data;
    size_t left = len;
    while (left > 0) {
        ssize_t n = write(fd, p, left);
        if (n < 0) {
            if (errno == EINTR)
                continue;
            cnp_err_set(err, "%s: write: %s", tmp, strerror(errno));
            close(fd);
            unlink(tmp);
            return CNP_ERR_IO;
        }
        p += n;
        left -= (size_t)n;
    }
    if (close(fd) != 0 || rename(tmp, path) != 0) {
        cnp_err_set(err, "%s: %s", path, strerror(errno));
        unlink(tmp);
        return CNP_ERR_IO;
    }
    return CNP_OK;
}

double cnp_now(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec * 1e-9;
}

static int cmp_double(const void *a, const void *b)
{
    double x = *(const double *)a, y = *(const double *)b;
    return x < y ? -1 : x > y;
}

double cnp_median(double *v, int n)
{
    qsort(v, (size_t)n, sizeof *v, cmp_double);
    return n % 2 ? v[n / 2] : 0.5 * (v[n / 2 - 1] + v[n / 2]);
}
