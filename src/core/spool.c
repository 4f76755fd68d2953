/* Outputs in memory up to a limit, then in a temporary file (spool.h). */
#include <errno.h>
#include <fcntl.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "canopy/spool.h"

/* Bytes buffered in front of the file: writes reach it in pieces this large. */
enum { SPOOL_CHUNK = 1 << 20 };

void cnp_spool_init(cnp_spool *s, const char *dir, uint64_t limit)
{
    memset(s, 0, sizeof *s);
    s->dir = dir;
    s->limit = limit;
    s->fd = -1;
}

static const char *spool_dir(const cnp_spool *s)
{
    if (s->dir && s->dir[0])
        return s->dir;
    const char *t = getenv("TMPDIR");
    return t && t[0] ? t : "/tmp";
}

cnp_status cnp_spool_temp_name(const cnp_spool *s, const char *suffix, char *path, size_t size,
                               cnp_err *err)
{
    const char *dir = spool_dir(s);
    int slen = (int)strlen(suffix ? suffix : "");
    if (snprintf(path, size, "%s/.canopy-spool-XXXXXX%s", dir, suffix ? suffix : "") >=
        (int)size) {
        cnp_err_set(err, "%s: directory name too long for a temporary file", dir);
        return CNP_ERR_INVALID;
    }
    int fd = mkstemps(path, slen);
    if (fd < 0) {
        cnp_err_set(err, "%s: cannot create a temporary file: %s", dir, strerror(errno));
        path[0] = '\0';
        return CNP_ERR_IO;
    }
    close(fd);
    return CNP_OK;
}

static cnp_status write_all(int fd, const char *path, const uint8_t *p, size_t len, cnp_err *err)
{
    while (len > 0) {
        ssize_t n = write(fd, p, len);
        if (n < 0 && errno == EINTR)
            continue;
        if (n <= 0) {
            cnp_err_set(err, "%s: write: %s", path, n < 0 ? strerror(errno) : "no progress");
            return CNP_ERR_IO;
        }
        p += n;
        len -= (size_t)n;
    }
    return CNP_OK;
}

/* Moves the buffered bytes to the file, creating it on first use. */
static cnp_status spill(cnp_spool *s, cnp_err *err)
{
    if (!cnp_spool_in_file(s)) {
        cnp_status st = cnp_spool_temp_name(s, NULL, s->path, sizeof s->path, err);
        if (st != CNP_OK)
            return st;
        if ((s->fd = open(s->path, O_WRONLY | O_TRUNC | O_CLOEXEC)) < 0) {
            cnp_err_set(err, "%s: %s", s->path, strerror(errno));
            unlink(s->path);
            s->path[0] = '\0';
            return CNP_ERR_IO;
        }
    }
    cnp_status st = write_all(s->fd, s->path, s->buf.data, s->buf.len, err);
    if (st != CNP_OK)
        return st;
    s->in_file += s->buf.len;
    s->buf.len = 0;
    return CNP_OK;
}

/* After bytes were added: spill when the buffer is past its bound (the
 * limit while in memory, a chunk once in a file). */
static cnp_status after_add(cnp_spool *s, cnp_err *err)
{
    if (cnp_spool_in_file(s))
        return s->buf.len >= SPOOL_CHUNK ? spill(s, err) : CNP_OK;
    if (s->limit && s->buf.len > s->limit) {
        cnp_status st = spill(s, err);
        /* The file takes chunks from now on: the buffer need not stay large. */
        if (st == CNP_OK)
            cnp_buf_free(&s->buf);
        return st;
    }
    return CNP_OK;
}

cnp_status cnp_spool_write(cnp_spool *s, const void *data, size_t len, cnp_err *err)
{
    if (cnp_buf_append(&s->buf, data, len) != CNP_OK) {
        cnp_err_set(err, "out of memory for %zu bytes of output", len);
        return CNP_ERR_NOMEM;
    }
    return after_add(s, err);
}

cnp_status cnp_spool_printf(cnp_spool *s, cnp_err *err, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    int n = vsnprintf(NULL, 0, fmt, ap);
    va_end(ap);
    if (n < 0) {
        cnp_err_set(err, "output formatting failed");
        return CNP_ERR_INVALID;
    }
    if (cnp_buf_reserve(&s->buf, (size_t)n + 1) != CNP_OK) {
        cnp_err_set(err, "out of memory for %d bytes of output", n);
        return CNP_ERR_NOMEM;
    }
    va_start(ap, fmt);
    vsnprintf((char *)s->buf.data + s->buf.len, (size_t)n + 1, fmt, ap);
    va_end(ap);
    s->buf.len += (size_t)n;
    return after_add(s, err);
}

cnp_status cnp_spool_flush(cnp_spool *s, cnp_err *err)
{
    return cnp_spool_in_file(s) && s->buf.len ? spill(s, err) : CNP_OK;
}

uint64_t cnp_spool_size(const cnp_spool *s)
{
    return s->in_file + s->buf.len;
}

/* Drops the content; keeps dir and limit. */
static void spool_reset(cnp_spool *s)
{
    if (cnp_spool_in_file(s)) {
        if (s->fd >= 0)
            close(s->fd);
        unlink(s->path);
    }
    cnp_buf_free(&s->buf);
    s->fd = -1;
    s->path[0] = '\0';
    s->in_file = 0;
}

cnp_status cnp_spool_adopt(cnp_spool *s, const char *path, cnp_err *err)
{
    struct stat st;
    if (stat(path, &st) != 0) {
        cnp_err_set(err, "%s: %s", path, strerror(errno));
        return CNP_ERR_IO;
    }
    if (strlen(path) >= sizeof s->path) {
        cnp_err_set(err, "%s: path too long", path);
        return CNP_ERR_INVALID;
    }
    spool_reset(s);
    snprintf(s->path, sizeof s->path, "%s", path);
    s->in_file = (uint64_t)st.st_size;
    return CNP_OK;
}

/* Copies the file at src to dest (another file system) through dest's own
 * temporary name, so that dest appears whole or not at all. */
static cnp_status copy_file(const char *src, const char *dest, cnp_err *err)
{
    int in = open(src, O_RDONLY | O_CLOEXEC);
    if (in < 0) {
        cnp_err_set(err, "%s: %s", src, strerror(errno));
        return CNP_ERR_IO;
    }
    char tmp[4096];
    int out = -1;
    cnp_status result = CNP_ERR_IO;
    if (snprintf(tmp, sizeof tmp, "%s.tmp.%ld", dest, (long)getpid()) >= (int)sizeof tmp)
        cnp_err_set(err, "%s: path too long", dest);
    else if ((out = open(tmp, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644)) < 0)
        cnp_err_set(err, "%s: %s", tmp, strerror(errno));
    uint8_t *chunk = out >= 0 ? malloc(SPOOL_CHUNK) : NULL;
    if (out >= 0 && !chunk) {
        cnp_err_set(err, "out of memory copying %s", src);
        result = CNP_ERR_NOMEM;
    }
    for (ssize_t n = 1; chunk && n > 0;) {
        n = read(in, chunk, SPOOL_CHUNK);
        if (n < 0 && errno == EINTR) {
            n = 1;
            continue;
        }
        if (n < 0)
            cnp_err_set(err, "%s: read: %s", src, strerror(errno));
        else if (n == 0)
            result = CNP_OK;
        else if (write_all(out, tmp, chunk, (size_t)n, err) != CNP_OK)
            n = -1;
    }
    free(chunk);
    close(in);
    if (out >= 0 && close(out) != 0 && result == CNP_OK) {
        cnp_err_set(err, "%s: %s", tmp, strerror(errno));
        result = CNP_ERR_IO;
    }
    if (result == CNP_OK && rename(tmp, dest) != 0) {
        cnp_err_set(err, "%s: %s", dest, strerror(errno));
        result = CNP_ERR_IO;
    }
    if (result != CNP_OK && out >= 0)
        unlink(tmp);
    return result;
}

cnp_status cnp_spool_save(cnp_spool *s, const char *dest, cnp_err *err)
{
    cnp_status result;
    if (!cnp_spool_in_file(s)) {
        result = cnp_file_write(dest, s->buf.data, s->buf.len, err);
    } else if ((result = cnp_spool_flush(s, err)) == CNP_OK) {
        if (s->fd >= 0)
            close(s->fd);
        s->fd = -1;
        /* Moved into place, or copied across file systems. */
        if (rename(s->path, dest) == 0)
            s->path[0] = '\0';
        else if (errno == EXDEV)
            result = copy_file(s->path, dest, err);
        else {
            cnp_err_set(err, "%s: %s", dest, strerror(errno));
            result = CNP_ERR_IO;
        }
    }
    if (result == CNP_OK)
        spool_reset(s);
    return result;
}

void cnp_spool_free(cnp_spool *s)
{
    if (s)
        spool_reset(s);
}
