/* One request (aws_op): name/value lists, building the op and its target
 * (canonical query), its body from memory or a region of a file, read with
 * pread as curl sends it (and streamed through SHA-256 once for the
 * signature) so that a large upload is never held whole, signing it, and
 * the curl callbacks that take its response: headers, and a body kept in
 * memory (preallocated from Content-Length) or spilled to a temporary file.
 * The engine that sends and retries ops is http.c. */
#include <ctype.h>
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <time.h>
#include <unistd.h>

#include "aws/aws_internal.h"

#define ERROR_BODY_MAX (64 * 1024)
/* The most memory a Content-Length header reserves before the body comes. */
#define PREALLOC_MAX (64LL * 1024 * 1024)

/* ---- name/value lists ---------------------------------------------------- */

cnp_status aws_kvlist_add(aws_kvlist *list, const char *name, const char *value)
{
    if (list->n == list->cap) {
        size_t cap = list->cap ? list->cap * 2 : 8;
        aws_kv *items = realloc(list->items, cap * sizeof *items);
        if (!items)
            return CNP_ERR_NOMEM;
        list->items = items;
        list->cap = cap;
    }
    char *n = strdup(name);
    char *v = strdup(value ? value : "");
    if (!n || !v) {
        free(n);
        free(v);
        return CNP_ERR_NOMEM;
    }
    list->items[list->n].name = n;
    list->items[list->n].value = v;
    list->n++;
    return CNP_OK;
}

const char *aws_kvlist_get(const aws_kvlist *list, const char *name)
{
    for (size_t i = 0; list && i < list->n; i++)
        if (strcasecmp(list->items[i].name, name) == 0)
            return list->items[i].value;
    return NULL;
}

void aws_kvlist_free(aws_kvlist *list)
{
    if (!list)
        return;
    for (size_t i = 0; i < list->n; i++) {
        free(list->items[i].name);
        free(list->items[i].value);
    }
    free(list->items);
    list->items = NULL;
    list->n = list->cap = 0;
}

/* ---- ops --------------------------------------------------------------- */

aws_op *aws_op_new(const char *service, const char *method, const char *what)
{
    aws_op *op = calloc(1, sizeof *op);
    if (!op)
        return NULL;
    op->service = service;
    snprintf(op->method, sizeof op->method, "%s", method);
    op->what_owned = strdup(what ? what : method);
    if (!op->what_owned) {
        free(op);
        return NULL;
    }
    op->what = op->what_owned;
    op->spill_fd = -1;
    op->body_fd = -1; /* calloc's 0 would be stdin */
    aws_sha256_hex(NULL, 0, op->payload_hash);
    return op;
}

void aws_op_free(aws_op *op)
{
    if (!op)
        return;
    if (op->easy)
        curl_easy_cleanup(op->easy);
    curl_slist_free_all(op->slist);
    free(op->what_owned);
    free(op->url);
    free(op->authority);
    free(op->canon_path);
    free(op->canon_query);
    aws_kvlist_free(&op->headers);
    cnp_buf_free(&op->body_owned);
    if (op->body_fd_owned && op->body_fd >= 0)
        close(op->body_fd);
    free(op->body_path);
    aws_kvlist_free(&op->resp_headers);
    cnp_buf_free(&op->resp_body);
    aws_op_spill_discard(op);
    if (op->ctx_free)
        op->ctx_free(op->ctx);
    free(op);
}

typedef struct qpair {
    char *k;
    char *v;
} qpair;

static int cmp_qpair(const void *a, const void *b)
{
    const qpair *x = a, *y = b;
    int c = strcmp(x->k, y->k);
    return c ? c : strcmp(x->v, y->v);
}

/* Canonical query: names and values encoded, sorted by name then value,
 * "name=" for empty values. The URL sends exactly this string. */
static cnp_status canonical_query(const aws_kvlist *query, char **out)
{
    cnp_status result = CNP_OK;
    cnp_buf b = {0};
    size_t n = query ? query->n : 0;
    qpair *ps = calloc(n ? n : 1, sizeof *ps);
    if (!ps)
        return CNP_ERR_NOMEM;
    for (size_t i = 0; i < n; i++) {
        cnp_buf k = {0}, v = {0};
        const aws_kv *kv = &query->items[i];
        if (aws_uri_encode(&k, kv->name, strlen(kv->name), false) != CNP_OK ||
            aws_uri_encode(&v, kv->value, strlen(kv->value), false) != CNP_OK) {
            cnp_buf_free(&k);
            cnp_buf_free(&v);
            result = CNP_ERR_NOMEM;
            goto out;
        }
        ps[i].k = (char *)k.data;
        ps[i].v = (char *)v.data;
    }
    qsort(ps, n, sizeof *ps, cmp_qpair);
    result = cnp_buf_append(&b, "", 1);
    b.len = 0;
    for (size_t i = 0; i < n && result == CNP_OK; i++)
        result = cnp_buf_printf(&b, "%s%s=%s", i ? "&" : "", ps[i].k, ps[i].v);
    if (result == CNP_OK) {
        *out = (char *)b.data;
        b.data = NULL;
    }
out:
    for (size_t i = 0; i < n; i++) {
        free(ps[i].k);
        free(ps[i].v);
    }
    free(ps);
    cnp_buf_free(&b);
    return result;
}

cnp_status aws_op_set_target(aws_op *op, const aws_endpoint *ep, const char *authority,
                             const char *path, const aws_kvlist *query)
{
    const char *auth = authority ? authority : ep->authority;
    op->authority = strdup(auth);
    op->canon_path = strdup(path);
    if (!op->authority || !op->canon_path)
        return CNP_ERR_NOMEM;
    cnp_status result = canonical_query(query, &op->canon_query);
    if (result != CNP_OK)
        return result;
    cnp_buf url = {0};
    result = cnp_buf_printf(&url, "%s://%s%s%s%s", ep->scheme, auth, path,
                            op->canon_query[0] ? "?" : "", op->canon_query);
    if (result != CNP_OK) {
        cnp_buf_free(&url);
        return result;
    }
    op->url = (char *)url.data;
    return CNP_OK;
}

/* ---- request bodies: memory or a region of a file ------------------------- */

void aws_op_set_body(aws_op *op, const void *data, size_t len)
{
    op->body = data;
    op->body_len = len;
    aws_sha256_hex(data, len, op->payload_hash);
}

void aws_op_take_body(aws_op *op, cnp_buf *buf)
{
    op->body_owned = *buf;
    memset(buf, 0, sizeof *buf);
    aws_op_set_body(op, op->body_owned.data, op->body_owned.len);
}

/* Copies up to cap bytes of the body from read_off into buf and advances
 * read_off: how many (0 at the end), or -1 when the body's file cannot be
 * read (body_err says why). Both curl's reads and the payload hash go
 * through here, so they see the same bytes. */
static ssize_t body_read(void *userp, void *buf, size_t cap)
{
    aws_op *op = userp;
    size_t left = op->body_len - op->read_off;
    size_t n = left < cap ? left : cap;
    if (n == 0)
        return 0;
    if (op->body_fd < 0) {
        memcpy(buf, op->body + op->read_off, n);
        op->read_off += n;
        return (ssize_t)n;
    }
    int64_t at = op->body_file_off + (int64_t)op->read_off;
    ssize_t got;
    do
        got = pread(op->body_fd, buf, n, (off_t)at);
    while (got < 0 && errno == EINTR);
    if (got < 0) {
        snprintf(op->body_err, sizeof op->body_err, "reading %.400s: %s", op->body_path,
                 strerror(errno));
        return -1;
    }
    if (got == 0) { /* the file shrank since it was opened */
        snprintf(op->body_err, sizeof op->body_err,
                 "reading %.400s: the file ends at byte %lld, before byte %lld", op->body_path,
                 (long long)at, (long long)(op->body_file_off + (int64_t)op->body_len));
        return -1;
    }
    op->read_off += (size_t)got;
    return got;
}

cnp_status aws_op_set_body_file(aws_op *op, int fd, bool own_fd, const char *path,
                                int64_t offset, size_t len, cnp_err *err)
{
    op->body_fd = fd;
    op->body_fd_owned = own_fd;
    op->body_file_off = offset;
    op->body = NULL;
    op->body_len = len;
    free(op->body_path);
    if (!(op->body_path = strdup(path))) {
        cnp_err_set(err, "%s: out of memory", op->what);
        return CNP_ERR_NOMEM;
    }
    op->read_off = 0;
    bool hashed = aws_sha256_hex_read(body_read, op, op->payload_hash);
    op->read_off = 0;
    if (hashed)
        return CNP_OK;
    if (!op->body_err[0]) {
        cnp_err_set(err, "%s: out of memory hashing %s", op->what, path);
        return CNP_ERR_NOMEM;
    }
    cnp_err_set(err, "%s: %s", op->what, op->body_err);
    return CNP_ERR_IO;
}

size_t aws_op_on_read(char *buffer, size_t size, size_t nitems, void *userp)
{
    ssize_t n = body_read(userp, buffer, size * nitems);
    return n < 0 ? CURL_READFUNC_ABORT : (size_t)n;
}

int aws_op_on_seek(void *userp, curl_off_t offset, int origin)
{
    aws_op *op = userp;
    if (origin != SEEK_SET || offset < 0 || (size_t)offset > op->body_len)
        return CURL_SEEKFUNC_CANTSEEK;
    op->read_off = (size_t)offset;
    return CURL_SEEKFUNC_OK;
}

/* ---- the response: headers, and the body in memory or spilled ------------- */

void aws_op_spill_discard(aws_op *op)
{
    if (op->spill_fd >= 0) {
        close(op->spill_fd);
        unlink(op->spill_path);
        op->spill_fd = -1;
    }
    op->spill_len = 0;
}

/* Opens (or, when a second response of the same attempt spills, empties)
 * the op's temporary file for a body larger than spill_over:
 * $TMPDIR (else /tmp)/canopy-spill-XXXXXX. */
bool aws_op_spill_open(aws_op *op)
{
    if (op->spill_fd >= 0) {
        op->spill_len = 0;
        if (ftruncate(op->spill_fd, 0) == 0 && lseek(op->spill_fd, 0, SEEK_SET) == 0)
            return true;
        snprintf(op->spill_err, sizeof op->spill_err, "emptying %.500s: %.100s", op->spill_path,
                 strerror(errno));
        return false;
    }
    const char *dir = getenv("TMPDIR");
    snprintf(op->spill_path, sizeof op->spill_path, "%s/canopy-spill-XXXXXX",
             dir && dir[0] ? dir : "/tmp");
    op->spill_fd = mkstemp(op->spill_path);
    if (op->spill_fd < 0) {
        snprintf(op->spill_err, sizeof op->spill_err, "creating %.500s: %.100s", op->spill_path,
                 strerror(errno));
        return false;
    }
    op->spill_len = 0;
    return true;
}

size_t aws_op_on_header(char *data, size_t size, size_t nmemb, void *userp)
{
    aws_op *op = userp;
    size_t n = size * nmemb;
    if (n >= 5 && strncmp(data, "HTTP/", 5) == 0) {
        /* A new status line (after 100 Continue, say) starts a new response. */
        const char *sp = memchr(data, ' ', n);
        op->http_status = sp ? strtol(sp + 1, NULL, 10) : 0;
        aws_kvlist_free(&op->resp_headers);
        return n;
    }
    const char *colon = memchr(data, ':', n);
    if (!colon)
        return n;
    char name[128];
    size_t nl = (size_t)(colon - data);
    if (nl >= sizeof name)
        return n;
    for (size_t i = 0; i < nl; i++)
        name[i] = (char)tolower((unsigned char)data[i]);
    name[nl] = '\0';
    const char *v = colon + 1;
    size_t vl = n - nl - 1;
    while (vl && (*v == ' ' || *v == '\t'))
        v++, vl--;
    while (vl && (v[vl - 1] == '\r' || v[vl - 1] == '\n' || v[vl - 1] == ' '))
        vl--;
    char *value = strndup(v, vl);
    if (!value)
        return 0;
    cnp_status st = aws_kvlist_add(&op->resp_headers, name, value);
    free(value);
    if (st != CNP_OK)
        return 0;
    if (op->http_status / 100 == 2 && !op->head && strcmp(name, "content-length") == 0) {
        long long len = strtoll(aws_kvlist_get(&op->resp_headers, name), NULL, 10);
        if (op->max_bytes > 0 && len > op->max_bytes) {
            op->limit_hit = true;
            return 0; /* aborts the transfer before the body */
        }
        if (op->spill_over > 0 && len > op->spill_over)
            return aws_op_spill_open(op) ? n : 0;
        /* One allocation for the whole body instead of doublings. The
         * Content-Length is the server's claim: past the op's own cap (GetObject:
         * [input] max_object_bytes) it was refused above; an op without a cap
         * reserves at most PREALLOC_MAX on its word alone, and a body that
         * really is larger grows as its bytes arrive. */
        long long want = len;
        if (op->max_bytes <= 0 && want > PREALLOC_MAX)
            want = PREALLOC_MAX;
        if (want >= (1LL << 30))
            want = 0; /* 1 GiB and more: grown as it comes, as before */
        if (want > 0 && cnp_buf_reserve(&op->resp_body, (size_t)want + 1) != CNP_OK)
            return 0;
    }
    return n;
}

size_t aws_op_on_write(char *data, size_t size, size_t nmemb, void *userp)
{
    aws_op *op = userp;
    size_t n = size * nmemb;
    bool ok = op->http_status / 100 == 2;
    if (ok && op->spill_fd >= 0) {
        if (op->max_bytes > 0 && op->spill_len + (int64_t)n > op->max_bytes) {
            op->limit_hit = true;
            return 0;
        }
        for (size_t done = 0; done < n;) {
            ssize_t w = write(op->spill_fd, data + done, n - done);
            if (w < 0 && errno == EINTR)
                continue;
            if (w <= 0) {
                snprintf(op->spill_err, sizeof op->spill_err, "writing %.500s: %.100s",
                         op->spill_path, w < 0 ? strerror(errno) : "short write");
                return 0;
            }
            done += (size_t)w;
        }
        op->spill_len += (int64_t)n;
        return n;
    }
    if (ok && op->max_bytes > 0 && op->resp_body.len + n > (size_t)op->max_bytes) {
        op->limit_hit = true;
        return 0;
    }
    if (!ok && op->resp_body.len + n > ERROR_BODY_MAX)
        return n; /* keep the head of an error document only */
    if (cnp_buf_append(&op->resp_body, data, n) != CNP_OK)
        return 0;
    return n;
}

/* ---- signing ------------------------------------------------------------ */

static cnp_status add_header(struct curl_slist **list, const char *name, const char *value)
{
    char line[CNP_STR_SECRET + 256];
    if (value[0])
        snprintf(line, sizeof line, "%s: %s", name, value);
    else
        snprintf(line, sizeof line, "%s;", name); /* curl's form for an empty value */
    struct curl_slist *l = curl_slist_append(*list, line);
    if (!l)
        return CNP_ERR_NOMEM;
    *list = l;
    return CNP_OK;
}

/* Signs the op with the current credentials and builds the header list. */
cnp_status aws_op_sign(aws_op *op, cnp_err *err)
{
    aws_client *c = aws_batch_client(op->batch);
    aws_credentials cr;
    cnp_status result = aws_client_credentials(c, &cr, err);
    if (result != CNP_OK) {
        cnp_err_prefix(err, "%s", op->what);
        return result;
    }
    char amz_date[20];
    time_t now = time(NULL);
    struct tm tm;
    gmtime_r(&now, &tm);
    strftime(amz_date, sizeof amz_date, "%Y%m%dT%H%M%SZ", &tm);

    aws_kvlist sh = {0};
    result = aws_kvlist_add(&sh, "host", op->authority);
    if (result == CNP_OK)
        result = aws_kvlist_add(&sh, "x-amz-date", amz_date);
    if (result == CNP_OK)
        result = aws_kvlist_add(&sh, "x-amz-content-sha256", op->payload_hash);
    if (result == CNP_OK && cr.session_token[0])
        result = aws_kvlist_add(&sh, "x-amz-security-token", cr.session_token);
    for (size_t i = 0; i < op->headers.n && result == CNP_OK; i++)
        result = aws_kvlist_add(&sh, op->headers.items[i].name, op->headers.items[i].value);
    if (result != CNP_OK)
        goto out;

    char auth[1024];
    aws_sigv4_input in = {
        .access_key_id = cr.access_key_id,
        .secret_access_key = cr.secret_access_key,
        .region = c->region,
        .service = op->service,
        .amz_date = amz_date,
        .method = op->method,
        .canonical_uri = op->canon_path,
        .canonical_query = op->canon_query,
        .headers = sh.items,
        .n_headers = sh.n,
        .payload_hash = op->payload_hash,
    };
    result = aws_sigv4_sign(&in, auth, sizeof auth);
    if (result != CNP_OK) {
        cnp_err_set(err, "%s: signing failed", op->what);
        goto out;
    }
    curl_slist_free_all(op->slist);
    op->slist = NULL;
    for (size_t i = 0; i < sh.n && result == CNP_OK; i++)
        result = add_header(&op->slist, sh.items[i].name, sh.items[i].value);
    if (result == CNP_OK)
        result = add_header(&op->slist, "Authorization", auth);
    if (result == CNP_OK) {
        /* No 100-continue round trip, and no default content type from curl. */
        struct curl_slist *l = curl_slist_append(op->slist, "Expect:");
        if (l)
            op->slist = l;
        else
            result = CNP_ERR_NOMEM;
    }
out:
    explicit_bzero(&cr, sizeof cr);
    aws_kvlist_free(&sh);
    return result;
}
