/* The safetensors reader (safetensors.h): the whole file is read into
 * memory and checked before any tensor is handed out. */
#include "detect/safetensors.h"

#include <cjson/cJSON.h>
#include <math.h>
#include <openssl/evp.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "canopy/buf.h"

#define ST_MAX_FILE ((size_t)4 << 30)
#define ST_MAX_HEADER ((uint64_t)100 << 20) /* the format's own limit */
#define ST_MAX_TENSORS 100000

struct st_file {
    char path[1024];
    cnp_buf file;
    const uint8_t *data; /* first byte after the header */
    uint64_t data_len;
    st_tensor *t;
    size_t n;
    cJSON *metadata; /* detached "__metadata__" object or NULL */
};

static const struct {
    const char *name;
    int size;
} dtypes[] = {
    [ST_F32] = {"F32", 4},   [ST_F16] = {"F16", 2},         [ST_BF16] = {"BF16", 2},
    [ST_F64] = {"F64", 8},   [ST_I64] = {"I64", 8},         [ST_I32] = {"I32", 4},
    [ST_I16] = {"I16", 2},   [ST_I8] = {"I8", 1},           [ST_U8] = {"U8", 1},
    [ST_U16] = {"U16", 2},   [ST_U32] = {"U32", 4},         [ST_U64] = {"U64", 8},
    [ST_BOOL] = {"BOOL", 1}, [ST_F8_E4M3] = {"F8_E4M3", 1}, [ST_F8_E5M2] = {"F8_E5M2", 1},
};

const char *st_dtype_name(enum st_dtype d)
{
    return dtypes[d].name;
}

uint64_t st_numel(const st_tensor *t)
{
    uint64_t n = 1;
    for (int i = 0; i < t->ndim; i++)
        n *= (uint64_t)t->shape[i];
    return n;
}

static uint64_t le64(const uint8_t *p)
{
    uint64_t v = 0;
    for (int i = 7; i >= 0; i--)
        v = (v << 8) | p[i];
    return v;
}

/* A JSON number that is a non-negative integer below 2^53. */
static bool json_u64(const cJSON *it, uint64_t *v)
{
    if (!cJSON_IsNumber(it))
        return false;
    double d = it->valuedouble;
    if (!(d >= 0) || d != floor(d) || d > 9007199254740992.0)
        return false;
    *v = (uint64_t)d;
    return true;
}

/* Parses one tensor entry of the header into t. */
static cnp_status parse_entry(const char *path, const cJSON *e, st_tensor *t, cnp_err *err)
{
    if (strlen(e->string) >= sizeof t->name) {
        cnp_err_set(err, "%s: tensor name '%.40s...' longer than %d bytes", path, e->string,
                    ST_NAME_MAX - 1);
        return CNP_ERR_FORMAT;
    }
    strcpy(t->name, e->string);
    const cJSON *dt = cJSON_GetObjectItemCaseSensitive(e, "dtype");
    const cJSON *shape = cJSON_GetObjectItemCaseSensitive(e, "shape");
    const cJSON *offs = cJSON_GetObjectItemCaseSensitive(e, "data_offsets");
    if (!cJSON_IsObject(e) || !cJSON_IsString(dt) || !cJSON_IsArray(shape) ||
        !cJSON_IsArray(offs)) {
        cnp_err_set(err, "%s: tensor %s: header entry needs dtype, shape and data_offsets",
                    path, t->name);
        return CNP_ERR_FORMAT;
    }
    size_t k = 0;
    while (k < sizeof dtypes / sizeof dtypes[0] && strcmp(dtypes[k].name, dt->valuestring))
        k++;
    if (k == sizeof dtypes / sizeof dtypes[0]) {
        cnp_err_set(err, "%s: tensor %s: unknown dtype \"%s\"", path, t->name, dt->valuestring);
        return CNP_ERR_FORMAT;
    }
    t->dtype = (enum st_dtype)k;
    int nd = cJSON_GetArraySize(shape);
    if (nd > ST_MAX_DIMS) {
        cnp_err_set(err, "%s: tensor %s: %d dimensions (at most %d)", path, t->name, nd,
                    ST_MAX_DIMS);
        return CNP_ERR_FORMAT;
    }
    t->ndim = nd;
    uint64_t elems = 1;
    for (int i = 0; i < nd; i++) {
        uint64_t v;
        if (!json_u64(cJSON_GetArrayItem(shape, i), &v) || v > ((uint64_t)1 << 40)) {
            cnp_err_set(err, "%s: tensor %s: shape[%d] is not a dimension", path, t->name, i);
            return CNP_ERR_FORMAT;
        }
        t->shape[i] = (int64_t)v;
        if (v && elems > ((uint64_t)1 << 50) / v) {
            cnp_err_set(err, "%s: tensor %s: shape too large", path, t->name);
            return CNP_ERR_FORMAT;
        }
        elems *= v;
    }
    if (cJSON_GetArraySize(offs) != 2 || !json_u64(cJSON_GetArrayItem(offs, 0), &t->begin) ||
        !json_u64(cJSON_GetArrayItem(offs, 1), &t->end) || t->end < t->begin) {
        cnp_err_set(err, "%s: tensor %s: data_offsets must be [begin, end] with begin <= end",
                    path, t->name);
        return CNP_ERR_FORMAT;
    }
    uint64_t want = elems * (uint64_t)dtypes[k].size;
    if (t->end - t->begin != want) {
        cnp_err_set(err,
                    "%s: tensor %s: data_offsets span %llu bytes, shape and dtype %s need "
                    "%llu",
                    path, t->name, (unsigned long long)(t->end - t->begin), dt->valuestring,
                    (unsigned long long)want);
        return CNP_ERR_FORMAT;
    }
    return CNP_OK;
}

static int by_begin(const void *a, const void *b)
{
    const st_tensor *x = *(const st_tensor *const *)a, *y = *(const st_tensor *const *)b;
    if (x->begin != y->begin)
        return x->begin < y->begin ? -1 : 1;
    return x->end < y->end ? -1 : x->end > y->end;
}

/* Offsets: every tensor inside the data section (else the file is
 * truncated), none overlapping another, no hole between them. */
static cnp_status check_layout(st_file *f, cnp_err *err)
{
    for (size_t i = 0; i < f->n; i++) {
        if (f->t[i].end > f->data_len) {
            cnp_err_set(err,
                        "%s: truncated: tensor %s needs data bytes %llu..%llu, the file "
                        "has %llu after the header",
                        f->path, f->t[i].name, (unsigned long long)f->t[i].begin,
                        (unsigned long long)f->t[i].end, (unsigned long long)f->data_len);
            return CNP_ERR_FORMAT;
        }
    }
    const st_tensor **order = malloc((f->n ? f->n : 1) * sizeof *order);
    if (!order) {
        cnp_err_set(err, "%s: out of memory", f->path);
        return CNP_ERR_NOMEM;
    }
    for (size_t i = 0; i < f->n; i++)
        order[i] = &f->t[i];
    qsort(order, f->n, sizeof *order, by_begin);
    cnp_status result = CNP_OK;
    uint64_t pos = 0;
    for (size_t i = 0; i < f->n && result == CNP_OK; i++) {
        if (order[i]->begin < pos) {
            cnp_err_set(err, "%s: tensor %s: data_offsets overlap tensor %s", f->path,
                        order[i]->name, order[i - 1]->name);
            result = CNP_ERR_FORMAT;
        } else if (order[i]->begin > pos) {
            cnp_err_set(err, "%s: tensor %s: %llu unclaimed bytes before its data", f->path,
                        order[i]->name, (unsigned long long)(order[i]->begin - pos));
            result = CNP_ERR_FORMAT;
        }
        pos = order[i]->end;
    }
    if (result == CNP_OK && pos != f->data_len) {
        cnp_err_set(err, "%s: %llu bytes after the last tensor's data", f->path,
                    (unsigned long long)(f->data_len - pos));
        result = CNP_ERR_FORMAT;
    }
    free(order);
    return result;
}

static cnp_status parse_header(st_file *f, const char *json, size_t len, cnp_err *err)
{
    cJSON *root = cJSON_ParseWithLength(json, len);
    cnp_status result = CNP_ERR_FORMAT;
    if (!cJSON_IsObject(root)) {
        cnp_err_set(err, "%s: safetensors header is not a JSON object", f->path);
        goto out;
    }
    f->metadata = cJSON_DetachItemFromObjectCaseSensitive(root, "__metadata__");
    if (f->metadata) {
        const cJSON *it;
        bool ok = cJSON_IsObject(f->metadata);
        cJSON_ArrayForEach(it, f->metadata) ok = ok && cJSON_IsString(it);
        if (!ok) {
            cnp_err_set(err, "%s: __metadata__ must map names to strings", f->path);
            goto out;
        }
    }
    int n = cJSON_GetArraySize(root);
    if (n > ST_MAX_TENSORS) {
        cnp_err_set(err, "%s: %d tensors (at most %d)", f->path, n, ST_MAX_TENSORS);
        goto out;
    }
    f->t = calloc(n ? (size_t)n : 1, sizeof *f->t);
    if (!f->t) {
        cnp_err_set(err, "%s: out of memory", f->path);
        result = CNP_ERR_NOMEM;
        goto out;
    }
    const cJSON *e;
    cJSON_ArrayForEach(e, root)
    {
        for (size_t j = 0; j < f->n; j++) {
            if (strcmp(f->t[j].name, e->string) == 0) {
                cnp_err_set(err, "%s: tensor %s listed twice", f->path, e->string);
                goto out;
            }
        }
        if ((result = parse_entry(f->path, e, &f->t[f->n], err)) != CNP_OK)
            goto out;
        f->n++;
    }
    result = check_layout(f, err);
out:
    cJSON_Delete(root);
    return result;
}

cnp_status st_open(const char *path, st_file **out, cnp_err *err)
{
    *out = NULL;
    st_file *f = calloc(1, sizeof *f);
    if (!f) {
        cnp_err_set(err, "%s: out of memory", path);
        return CNP_ERR_NOMEM;
    }
    snprintf(f->path, sizeof f->path, "%s", path);
    cnp_status result = cnp_file_read(path, ST_MAX_FILE, &f->file, err);
    if (result != CNP_OK)
        goto out;
    result = CNP_ERR_FORMAT;
    if (f->file.len < 8) {
        cnp_err_set(err, "%s: truncated: %zu bytes, no safetensors header length", path,
                    f->file.len);
        goto out;
    }
    uint64_t hlen = le64(f->file.data);
    if (hlen < 2 || hlen > ST_MAX_HEADER || hlen > f->file.len - 8) {
        cnp_err_set(err,
                    "%s: not a safetensors file or truncated: header length %llu, file "
                    "has %zu bytes after the length",
                    path, (unsigned long long)hlen, f->file.len - 8);
        goto out;
    }
    if (f->file.data[8] != '{') {
        cnp_err_set(err, "%s: safetensors header does not start with '{'", path);
        goto out;
    }
    f->data = f->file.data + 8 + hlen;
    f->data_len = f->file.len - 8 - hlen;
    result = parse_header(f, (const char *)f->file.data + 8, (size_t)hlen, err);
out:
    if (result != CNP_OK) {
        st_close(f);
        return result;
    }
    *out = f;
    return CNP_OK;
}

void st_close(st_file *f)
{
    if (!f)
        return;
    cnp_buf_free(&f->file);
    cJSON_Delete(f->metadata);
    free(f->t);
    free(f);
}

const char *st_path(const st_file *f)
{
    return f->path;
}

size_t st_count(const st_file *f)
{
    return f->n;
}

const st_tensor *st_at(const st_file *f, size_t i)
{
    return i < f->n ? &f->t[i] : NULL;
}

const st_tensor *st_find(const st_file *f, const char *name)
{
    for (size_t i = 0; i < f->n; i++)
        if (strcmp(f->t[i].name, name) == 0)
            return &f->t[i];
    return NULL;
}

const char *st_metadata(const st_file *f, const char *key)
{
    const cJSON *it = cJSON_GetObjectItemCaseSensitive(f->metadata, key);
    return cJSON_IsString(it) ? it->valuestring : NULL;
}

/* IEEE half to float (exact). */
static float half_to_float(uint16_t h)
{
    int sign = h >> 15, exp = (h >> 10) & 0x1f, man = h & 0x3ff;
    float v;
    if (exp == 0)
        v = ldexpf((float)man, -24);
    else if (exp == 31)
        v = man ? NAN : INFINITY;
    else
        v = ldexpf((float)(man | 0x400), exp - 25);
    return sign ? -v : v;
}

cnp_status st_read_f64(const st_file *f, const st_tensor *t, double *dst, cnp_err *err)
{
    const uint8_t *p = f->data + t->begin;
    uint64_t n = st_numel(t);
    for (uint64_t i = 0; i < n; i++) {
        switch (t->dtype) {
        case ST_F32: {
            uint32_t u = (uint32_t)p[4 * i] | (uint32_t)p[4 * i + 1] << 8 |
                         (uint32_t)p[4 * i + 2] << 16 | (uint32_t)p[4 * i + 3] << 24;
            float v;
            memcpy(&v, &u, 4);
            dst[i] = v;
            break;
        }
        case ST_BF16: {
            uint32_t u = ((uint32_t)p[2 * i] | (uint32_t)p[2 * i + 1] << 8) << 16;
            float v;
            memcpy(&v, &u, 4);
            dst[i] = v;
            break;
        }
        case ST_F16: dst[i] = half_to_float((uint16_t)(p[2 * i] | p[2 * i + 1] << 8)); break;
        case ST_F64: {
            uint64_t u = le64(p + 8 * i);
            memcpy(&dst[i], &u, 8);
            break;
        }
        default:
            cnp_err_set(err, "%s: tensor %s: dtype %s is not floating point", f->path, t->name,
                        dtypes[t->dtype].name);
            return CNP_ERR_FORMAT;
        }
    }
    return CNP_OK;
}

void st_sha256_hex(const st_file *f, char out[65])
{
    unsigned char md[EVP_MAX_MD_SIZE];
    unsigned int len = 0;
    EVP_Digest(f->file.data, f->file.len, md, &len, EVP_sha256(), NULL);
    for (unsigned int i = 0; i < 32; i++)
        snprintf(out + 2 * i, 3, "%02x", i < len ? md[i] : 0);
    out[64] = '\0';
}
