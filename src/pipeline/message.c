/* Parsing of input messages with cJSON. */
#include <ctype.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cjson/cJSON.h>

#include "canopy/message.h"

static int hexval(int c)
{
    if (c >= '0' && c <= '9') return c - '0';
    if (c >= 'a' && c <= 'f') return c - 'a' + 10;
    if (c >= 'A' && c <= 'F') return c - 'A' + 10;
    return -1;
}

char *msg_key_decode(const char *in)
{
    size_t len = strlen(in);
    char *out = malloc(len + 1);
    if (!out)
        return NULL;
    size_t o = 0;
    for (size_t i = 0; i < len; i++) {
        if (in[i] == '+') {
            out[o++] = ' ';
        } else if (in[i] == '%') {
            int hi = i + 2 < len ? hexval((unsigned char)in[i + 1]) : -1;
            int lo = hi >= 0 ? hexval((unsigned char)in[i + 2]) : -1;
            /* %00 would cut the key short: no S3 key holds a NUL. */
            if (hi < 0 || lo < 0 || hi * 16 + lo == 0) {
                free(out);
                return NULL;
            }
            out[o++] = (char)(hi * 16 + lo);
            i += 2;
        } else {
            out[o++] = in[i];
        }
    }
    out[o] = '\0';
    return out;
}

static char *dup_string(const cJSON *item)
{
    if (cJSON_IsString(item) && item->valuestring)
        return strdup(item->valuestring);
    if (cJSON_IsNumber(item)) {
        char buf[64];
        double v = item->valuedouble;
        /* Integers print as integers; converting a double outside long long's
         * range (1e300, inf) is undefined, so those print as doubles. */
        if (v >= -0x1p63 && v < 0x1p63 && v == (double)(long long)v)
            snprintf(buf, sizeof buf, "%lld", (long long)v);
        else
            snprintf(buf, sizeof buf, "%.17g", v);
        return strdup(buf);
    }
    return NULL;
}

static void item_free(msg_item *it)
{
    free(it->bucket);
    free(it->key);
    free(it->etag);
    free(it->image_id);
    free(it->scan_id);
    free(it->address_id);
    for (size_t i = 0; i < it->n_tree_types; i++)
        free(it->tree_types[i]);
    free(it->tree_types);
    memset(it, 0, sizeof *it);
}

void msg_parsed_free(msg_parsed *m)
{
    if (!m)
        return;
    for (size_t i = 0; i < m->n; i++)
        item_free(&m->items[i]);
    free(m->items);
    m->items = NULL;
    m->n = 0;
}

static msg_item *add_item(msg_parsed *m)
{
    msg_item *grown = realloc(m->items, (m->n + 1) * sizeof *grown);
    if (!grown)
        return NULL;
    m->items = grown;
    memset(&grown[m->n], 0, sizeof *grown);
    return &grown[m->n++];
}

static cnp_status invalid(msg_parsed *m, const char *fmt, const char *arg)
{
    msg_parsed_free(m);
    m->kind = MSG_INVALID;
    snprintf(m->reason, sizeof m->reason, fmt, arg);
    return CNP_OK;
}

/* tree_types: a JSON array of strings, or one comma-separated string. */
static cnp_status tree_types(msg_item *it, const cJSON *v)
{
    size_t n = 0;
    if (cJSON_IsArray(v))
        n = (size_t)cJSON_GetArraySize(v);
    else if (cJSON_IsString(v) && v->valuestring[0])
        for (const char *p = v->valuestring, *c; p; p = c ? c + 1 : NULL, n++)
            c = strchr(p, ',');
    else if (!cJSON_IsString(v))
        return CNP_OK;
    it->tree_types = calloc(n ? n : 1, sizeof *it->tree_types);
    if (!it->tree_types)
        return CNP_ERR_NOMEM;
    if (cJSON_IsArray(v)) {
        const cJSON *e;
        cJSON_ArrayForEach(e, v) {
            char *s = dup_string(e);
            if (s)
                it->tree_types[it->n_tree_types++] = s;
        }
        return CNP_OK;
    }
    const char *p = v->valuestring;
    for (size_t i = 0; i < n; i++) {
        const char *c = strchr(p, ',');
        size_t len = c ? (size_t)(c - p) : strlen(p);
        while (len && isspace((unsigned char)*p)) { p++; len--; }
        while (len && isspace((unsigned char)p[len - 1])) len--;
        if (!(it->tree_types[it->n_tree_types] = strndup(p, len)))
            return CNP_ERR_NOMEM;
        it->n_tree_types++;
        p = c ? c + 1 : p + len;
    }
    return CNP_OK;
}

static cnp_status parse_legacy(const cJSON *doc, msg_parsed *m)
{
    const cJSON *bucket = cJSON_GetObjectItemCaseSensitive(doc, "bucket");
    const cJSON *key = cJSON_GetObjectItemCaseSensitive(doc, "key");
    if (!cJSON_IsString(bucket) || !bucket->valuestring[0])
        return invalid(m, "message has no \"bucket\" string%s", "");
    if (!cJSON_IsString(key) || !key->valuestring[0])
        return invalid(m, "message has no \"key\" string%s", "");
    msg_item *it = add_item(m);
    if (!it || !(it->bucket = strdup(bucket->valuestring)) || !(it->key = strdup(key->valuestring)))
        return CNP_ERR_NOMEM;
    it->image_id = dup_string(cJSON_GetObjectItemCaseSensitive(doc, "image_id"));
    it->scan_id = dup_string(cJSON_GetObjectItemCaseSensitive(doc, "scan_id"));
    it->address_id = dup_string(cJSON_GetObjectItemCaseSensitive(doc, "address_id"));
    const cJSON *tt = cJSON_GetObjectItemCaseSensitive(doc, "tree_types");
    if (tt && !cJSON_IsNull(tt))
        return tree_types(it, tt);
    return CNP_OK;
}

static cnp_status parse_s3_event(const cJSON *records, msg_parsed *m)
{
    const cJSON *rec;
    cJSON_ArrayForEach(rec, records) {
        const cJSON *name = cJSON_GetObjectItemCaseSensitive(rec, "eventName");
        const cJSON *s3 = cJSON_GetObjectItemCaseSensitive(rec, "s3");
        if (!cJSON_IsString(name) || !cJSON_IsObject(s3))
            return invalid(m, "S3 event record without eventName or s3%s", "");
        if (strncmp(name->valuestring, "ObjectCreated:", 14) != 0)
            continue; /* deletions and the like: nothing to process */
        const cJSON *b = cJSON_GetObjectItemCaseSensitive(
            cJSON_GetObjectItemCaseSensitive(s3, "bucket"), "name");
        const cJSON *obj = cJSON_GetObjectItemCaseSensitive(s3, "object");
        const cJSON *k = cJSON_GetObjectItemCaseSensitive(obj, "key");
        if (!cJSON_IsString(b) || !b->valuestring[0] || !cJSON_IsString(k) ||
            !k->valuestring[0])
            return invalid(m, "S3 event record without s3.bucket.name or s3.object.key%s", "");
        msg_item *it = add_item(m);
        if (!it || !(it->bucket = strdup(b->valuestring)))
            return CNP_ERR_NOMEM;
        if (!(it->key = msg_key_decode(k->valuestring)))
            return invalid(m, "S3 event key '%.200s' is not URL-encoded correctly", k->valuestring);
        const cJSON *etag = cJSON_GetObjectItemCaseSensitive(obj, "eTag");
        if (cJSON_IsString(etag) && etag->valuestring[0])
            it->etag = strdup(etag->valuestring);
    }
    if (m->n == 0)
        m->kind = MSG_IGNORE;
    return CNP_OK;
}

/* Parses a document (after SNS unwrapping, depth bounds recursion). */
static cnp_status parse_doc(const cJSON *doc, msg_parsed *m, int depth)
{
    if (!cJSON_IsObject(doc))
        return invalid(m, "message body is not a JSON object%s", "");
    const cJSON *event = cJSON_GetObjectItemCaseSensitive(doc, "Event");
    if (cJSON_IsString(event) && strcmp(event->valuestring, "s3:TestEvent") == 0) {
        m->kind = MSG_IGNORE;
        return CNP_OK;
    }
    const cJSON *type = cJSON_GetObjectItemCaseSensitive(doc, "Type");
    const cJSON *inner = cJSON_GetObjectItemCaseSensitive(doc, "Message");
    if (cJSON_IsString(type) && strcmp(type->valuestring, "Notification") == 0 &&
        cJSON_IsString(inner) && depth == 0) {
        cJSON *wrapped = cJSON_Parse(inner->valuestring);
        if (!wrapped)
            return invalid(m, "SNS notification whose Message is not JSON%s", "");
        cnp_status result = parse_doc(wrapped, m, depth + 1);
        cJSON_Delete(wrapped);
        return result;
    }
    const cJSON *records = cJSON_GetObjectItemCaseSensitive(doc, "Records");
    if (cJSON_IsArray(records))
        return parse_s3_event(records, m);
    if (cJSON_GetObjectItemCaseSensitive(doc, "bucket") ||
        cJSON_GetObjectItemCaseSensitive(doc, "key"))
        return parse_legacy(doc, m);
    return invalid(m, "message is neither an S3 event nor {\"bucket\", \"key\", ...}%s", "");
}

cnp_status msg_parse(const char *body, msg_parsed *out)
{
    memset(out, 0, sizeof *out);
    cJSON *doc = cJSON_Parse(body);
    if (!doc)
        return invalid(out, "message body is not JSON: '%.60s'", body);
    cnp_status result = parse_doc(doc, out, 0);
    cJSON_Delete(doc);
    if (result != CNP_OK)
        msg_parsed_free(out);
    return result;
}
