/* The .cnw container (models/FORMAT.md), both ways: reading a file image
 * (magic, format version, where the architecture JSON lies, the tensor
 * directory, the CRC-32, the float32 data of a tensor) and writing one for
 * a det_graph (det_graph_write_cnw). Every field is checked before a single
 * weight is trusted. The architecture JSON inside is crown_json.c's
 * (version 1) and graph_json.c's (version 2); model.c binds it to the
 * tensors. */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <zlib.h>

#include "canopy/buf.h"
#include "detect/detect_internal.h"

#define CNW_MAGIC "CNPYWTS\0"
#define CNW_MAX_TENSORS 4096

/* ---- reading ----------------------------------------------------------- */

/* A bounds-checked little-endian cursor over the file bytes before the CRC. */
typedef struct cnw_cursor {
    const uint8_t *data;
    size_t len, pos;
} cnw_cursor;

static bool cur_take(cnw_cursor *c, size_t n, const uint8_t **p)
{
    if (c->len - c->pos < n)
        return false;
    *p = c->data + c->pos;
    c->pos += n;
    return true;
}

static uint64_t le_read(const uint8_t *p, int n)
{
    uint64_t v = 0;
    for (int i = n - 1; i >= 0; i--)
        v = (v << 8) | p[i];
    return v;
}

static bool cur_u(cnw_cursor *c, int n, uint64_t *v)
{
    const uint8_t *p;
    if (!cur_take(c, (size_t)n, &p))
        return false;
    *v = le_read(p, n);
    return true;
}

/* Reads the tensor directory at c (after the architecture JSON). Only
 * structure and bounds here: names against the architecture come later. */
static cnp_status read_directory(const char *path, cnw_cursor *c, size_t body_len,
                                 det_cnw_tensor **out, uint32_t *count, cnp_err *err)
{
    uint64_t n;
    if (!cur_u(c, 4, &n)) {
        cnp_err_set(err, "%s: truncated: no tensor count", path);
        return CNP_ERR_FORMAT;
    }
    if (n == 0 || n > CNW_MAX_TENSORS) {
        cnp_err_set(err, "%s: tensor count %llu out of range 1..%d", path,
                    (unsigned long long)n, CNW_MAX_TENSORS);
        return CNP_ERR_FORMAT;
    }
    det_cnw_tensor *t = calloc((size_t)n, sizeof *t);
    if (!t) {
        cnp_err_set(err, "%s: out of memory", path);
        return CNP_ERR_NOMEM;
    }
    cnp_status result = CNP_ERR_FORMAT;
    for (uint64_t i = 0; i < n; i++) {
        uint64_t name_len, dtype, ndim;
        const uint8_t *name;
        if (!cur_u(c, 2, &name_len) || !cur_take(c, (size_t)name_len, &name) ||
            !cur_u(c, 1, &dtype) || !cur_u(c, 1, &ndim)) {
            cnp_err_set(err, "%s: truncated in tensor directory entry %llu", path,
                        (unsigned long long)i);
            goto out;
        }
        if (name_len == 0 || name_len >= sizeof t[i].name) {
            cnp_err_set(err, "%s: tensor %llu: name length %llu out of range", path,
                        (unsigned long long)i, (unsigned long long)name_len);
            goto out;
        }
        memcpy(t[i].name, name, (size_t)name_len);
        for (size_t k = 0; k < name_len; k++) {
            if (name[k] < 0x20 || name[k] > 0x7e) {
                cnp_err_set(err, "%s: tensor %llu: name is not printable ASCII", path,
                            (unsigned long long)i);
                goto out;
            }
        }
        if (dtype != 1) {
            cnp_err_set(err, "%s: tensor %s: dtype %llu unsupported (1 = float32)", path,
                        t[i].name, (unsigned long long)dtype);
            goto out;
        }
        if (ndim < 1 || ndim > 4) {
            cnp_err_set(err, "%s: tensor %s: ndim %llu out of range 1..4", path, t[i].name,
                        (unsigned long long)ndim);
            goto out;
        }
        t[i].ndim = (uint32_t)ndim;
        uint64_t elems = 1;
        for (uint32_t d = 0; d < ndim; d++) {
            uint64_t v;
            if (!cur_u(c, 4, &v)) {
                cnp_err_set(err, "%s: truncated in dims of tensor %s", path, t[i].name);
                goto out;
            }
            t[i].dims[d] = (uint32_t)v;
            if (v == 0 || elems > UINT64_MAX / v / 4) {
                cnp_err_set(err, "%s: tensor %s: bad dimension %llu", path, t[i].name,
                            (unsigned long long)v);
                goto out;
            }
            elems *= v;
        }
        if (!cur_u(c, 8, &t[i].offset) || !cur_u(c, 8, &t[i].bytes)) {
            cnp_err_set(err, "%s: truncated in offsets of tensor %s", path, t[i].name);
            goto out;
        }
        if (t[i].bytes != elems * 4) {
            cnp_err_set(err, "%s: tensor %s: data_bytes %llu != 4 * %llu elements", path,
                        t[i].name, (unsigned long long)t[i].bytes,
                        (unsigned long long)elems);
            goto out;
        }
        if (t[i].offset % 16 != 0) {
            cnp_err_set(err, "%s: tensor %s: data_offset %llu not a multiple of 16", path,
                        t[i].name, (unsigned long long)t[i].offset);
            goto out;
        }
        for (uint64_t j = 0; j < i; j++) {
            if (strcmp(t[j].name, t[i].name) == 0) {
                cnp_err_set(err, "%s: tensor %s listed twice", path, t[i].name);
                goto out;
            }
        }
    }
    /* Data follows the directory, in directory order, inside the body. */
    uint64_t floor_off = c->pos;
    for (uint64_t i = 0; i < n; i++) {
        if (t[i].offset < floor_off) {
            cnp_err_set(err, "%s: tensor %s: data at %llu overlaps the %s", path,
                        t[i].name, (unsigned long long)t[i].offset,
                        i == 0 ? "directory" : "previous tensor");
            goto out;
        }
        if (t[i].offset > body_len || t[i].bytes > body_len - t[i].offset) {
            cnp_err_set(err,
                        "%s: truncated: tensor %s needs bytes %llu..%llu, file body has %zu",
                        path, t[i].name, (unsigned long long)t[i].offset,
                        (unsigned long long)(t[i].offset + t[i].bytes), body_len);
            goto out;
        }
        floor_off = t[i].offset + t[i].bytes;
    }
    *out = t;
    *count = (uint32_t)n;
    return CNP_OK;
out:
    free(t);
    return result;
}

cnp_status det_cnw_open(const char *path, const uint8_t *d, size_t len, det_cnw *f,
                        cnp_err *err)
{
    memset(f, 0, sizeof *f);
    if (len < 8 || memcmp(d, CNW_MAGIC, len < 8 ? len : 8) != 0) {
        cnp_err_set(err, "%s: %s", path,
                    len < 8 && memcmp(d, CNW_MAGIC, len) == 0 ? "truncated: no header"
                                                              : "not a .cnw file (bad magic)");
        return CNP_ERR_FORMAT;
    }
    if (len < 8 + 4 + 4 + 4) {
        cnp_err_set(err, "%s: truncated: %zu bytes", path, len);
        return CNP_ERR_FORMAT;
    }
    size_t body = len - 4;
    cnw_cursor c = {d, body, 8};
    uint64_t version = 0, arch_len = 0; /* what the messages say if a read fails */
    const uint8_t *arch;
    if (!cur_u(&c, 4, &version) ||
        (version != DET_CNW_VERSION_LAYERS && version != DET_CNW_VERSION_GRAPH)) {
        cnp_err_set(err, "%s: format version %llu unsupported (this build reads %u and %u)",
                    path, (unsigned long long)version, DET_CNW_VERSION_LAYERS,
                    DET_CNW_VERSION_GRAPH);
        return CNP_ERR_FORMAT;
    }
    if (!cur_u(&c, 4, &arch_len) || !cur_take(&c, (size_t)arch_len, &arch)) {
        cnp_err_set(err, "%s: truncated: architecture JSON of %llu bytes", path,
                    (unsigned long long)arch_len);
        return CNP_ERR_FORMAT;
    }
    cnp_status result = read_directory(path, &c, body, &f->tensors, &f->n_tensors, err);
    if (result != CNP_OK)
        return result;
    uint32_t want = (uint32_t)le_read(d + body, 4);
    uint32_t got = (uint32_t)crc32(crc32(0L, Z_NULL, 0), d, (uInt)body);
    if (want != got) {
        cnp_err_set(err, "%s: checksum mismatch (stored crc32 %08x, computed %08x)", path,
                    want, got);
        det_cnw_close(f);
        return CNP_ERR_FORMAT;
    }
    f->data = d;
    f->version = (int)version;
    f->arch = (const char *)arch;
    f->arch_len = (size_t)arch_len;
    return CNP_OK;
}

void det_cnw_close(det_cnw *f)
{
    free(f->tensors);
    f->tensors = NULL;
    f->n_tensors = 0;
}

const det_cnw_tensor *det_cnw_tensor_find(const det_cnw *f, const char *name)
{
    for (uint32_t i = 0; i < f->n_tensors; i++)
        if (strcmp(f->tensors[i].name, name) == 0)
            return &f->tensors[i];
    return NULL;
}

bool det_cnw_tensor_shape_ok(const char *path, const det_cnw_tensor *t, uint32_t ndim,
                             const uint32_t *dims, const char *who, cnp_err *err)
{
    bool same = t->ndim == ndim;
    for (uint32_t d = 0; same && d < ndim; d++)
        same = t->dims[d] == dims[d];
    if (same)
        return true;
    char want[64] = "", got[64] = "";
    for (uint32_t d = 0; d < ndim; d++)
        snprintf(want + strlen(want), sizeof want - strlen(want), "%s%u", d ? "," : "",
                 dims[d]);
    for (uint32_t d = 0; d < t->ndim; d++)
        snprintf(got + strlen(got), sizeof got - strlen(got), "%s%u", d ? "," : "",
                 t->dims[d]);
    cnp_err_set(err, "%s: tensor %s has shape [%s], %s needs [%s]", path, t->name, got, who,
                want);
    return false;
}

cnp_status det_cnw_tensor_copy(const char *path, const det_cnw *f, const det_cnw_tensor *t,
                               float *dst, cnp_err *err)
{
    const uint8_t *p = f->data + t->offset;
    for (uint64_t i = 0; i < t->bytes / 4; i++) {
        uint32_t u = (uint32_t)le_read(p + 4 * i, 4);
        memcpy(&dst[i], &u, 4);
        if (!isfinite(dst[i])) {
            cnp_err_set(err, "%s: tensor %s holds a non-finite value", path, t->name);
            return CNP_ERR_FORMAT;
        }
    }
    return CNP_OK;
}


/* ---- writing ----------------------------------------------------------- */

static void put_le(uint8_t *p, uint64_t v, int n)
{
    for (int i = 0; i < n; i++)
        p[i] = (uint8_t)(v >> (8 * i));
}

static cnp_status append_le(cnp_buf *b, uint64_t v, int n)
{
    uint8_t tmp[8];
    put_le(tmp, v, n);
    return cnp_buf_append(b, tmp, (size_t)n);
}

/* One tensor of the file: a node's weight or bias. */
typedef struct out_tensor {
    char name[DET_GRAPH_NAME_MAX + 8];
    int ndim;
    uint32_t dims[4];
    const float *data;
    uint64_t offset, bytes;
} out_tensor;

/* The distinct weights of g's convs, in node order: weight, then bias. */
static int collect_tensors(const det_graph *g, out_tensor *t, const char *what, cnp_err *err)
{
    int n = 0;
    for (int i = 0; i < g->n_nodes; i++) {
        const det_node *nd = &g->nodes[i];
        if (nd->op != DET_OP_CONV)
            continue;
        bool seen = false;
        for (int j = 1; j < i && !seen; j++)
            seen = g->nodes[j].op == DET_OP_CONV && strcmp(g->nodes[j].weights, nd->weights) == 0;
        if (seen)
            continue;
        if (!nd->weight || !nd->bias) {
            cnp_err_set(err, "%s: node %s has no weights", what, nd->name);
            return -1;
        }
        snprintf(t[n].name, sizeof t[n].name, "%s.weight", nd->weights);
        t[n].ndim = 4;
        t[n].dims[0] = (uint32_t)nd->cout, t[n].dims[1] = (uint32_t)nd->cin;
        t[n].dims[2] = t[n].dims[3] = (uint32_t)nd->k;
        t[n].data = nd->weight;
        t[n].bytes = 4ull * (uint64_t)nd->cout * (uint64_t)nd->cin * (uint64_t)(nd->k * nd->k);
        n++;
        snprintf(t[n].name, sizeof t[n].name, "%s.bias", nd->weights);
        t[n].ndim = 1;
        t[n].dims[0] = (uint32_t)nd->cout;
        t[n].data = nd->bias;
        t[n].bytes = 4ull * (uint64_t)nd->cout;
        n++;
    }
    return n;
}

cnp_status det_graph_write_cnw(const det_graph *g, const char *name, const char *version,
                               cnp_buf *out, cnp_err *err)
{
    char *json = NULL;
    cnp_status result = det_graph_to_json(g, name, version, &json, err);
    if (result != CNP_OK)
        return result;
    out_tensor *t = calloc(2 * (size_t)g->n_nodes, sizeof *t);
    if (!t) {
        free(json);
        cnp_err_set(err, "graph: out of memory");
        return CNP_ERR_NOMEM;
    }
    int nt = collect_tensors(g, t, "graph", err);
    result = CNP_ERR_INVALID;
    if (nt < 0)
        goto out;
    size_t start = out->len, jl = strlen(json);
    uint64_t pos = 8 + 4 + 4 + jl + 4;
    for (int i = 0; i < nt; i++)
        pos += 2 + strlen(t[i].name) + 2 + 4 * (uint64_t)t[i].ndim + 16;
    for (int i = 0; i < nt; i++) {
        pos = (pos + 15) & ~(uint64_t)15;
        t[i].offset = pos;
        pos += t[i].bytes;
    }
    result = cnp_buf_reserve(out, (size_t)pos + 16 + 4);
    if (result != CNP_OK) {
        cnp_err_set(err, "graph: out of memory");
        goto out;
    }
    cnp_buf_append(out, CNW_MAGIC, 8);
    append_le(out, DET_CNW_VERSION_GRAPH, 4);
    append_le(out, jl, 4);
    cnp_buf_append(out, json, jl);
    append_le(out, (uint64_t)nt, 4);
    for (int i = 0; i < nt; i++) {
        size_t l = strlen(t[i].name);
        append_le(out, l, 2);
        cnp_buf_append(out, t[i].name, l);
        append_le(out, 1, 1);
        append_le(out, (uint64_t)t[i].ndim, 1);
        for (int d = 0; d < t[i].ndim; d++)
            append_le(out, t[i].dims[d], 4);
        append_le(out, t[i].offset, 8);
        append_le(out, t[i].bytes, 8);
    }
    static const uint8_t zero[16];
    for (int i = 0; i < nt; i++) {
        cnp_buf_append(out, zero, (size_t)(t[i].offset - (out->len - start)));
        for (uint64_t k = 0; k < t[i].bytes / 4; k++) {
            uint32_t u;
            memcpy(&u, &t[i].data[k], 4);
            append_le(out, u, 4);
        }
    }
    uint32_t crc = (uint32_t)crc32(crc32(0L, Z_NULL, 0), out->data + start,
                                   (uInt)(out->len - start));
    result = append_le(out, crc, 4);
out:
    free(t);
    free(json);
    return result;
}
