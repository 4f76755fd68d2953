/* Metrics: a fixed table of metric families, series by label, and two
 * renderings. See canopy/metrics.h. */
#include <math.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include <cjson/cJSON.h>

#include "canopy/log.h"
#include "canopy/metrics.h"

enum kind { COUNTER, GAUGE, HISTOGRAM };

static const struct family {
    const char *name, *help, *label, *emf, *unit;
    enum kind kind;
} families[] = {
    {"canopy_images_total", "Images that reached their last state, by result", "result",
     "Images", "Count", COUNTER},
    {"canopy_trees_total", "Trees detected in images processed ok", NULL, "Trees", "Count",
     COUNTER},
    {"canopy_pixels_total", "Pixels of images processed ok", NULL, "Pixels", "Count", COUNTER},
    {"canopy_bytes_in_total", "Bytes of input objects or files fetched", NULL, "BytesIn",
     "Bytes", COUNTER},
    {"canopy_bytes_out_total", "Bytes of outputs written", NULL, "BytesOut", "Bytes", COUNTER},
    {"canopy_stage_seconds", "Seconds an image spent in each stage", "stage", "StageSeconds",
     "Seconds", HISTOGRAM},
    {"canopy_db_commit_seconds", "Seconds of each chunk's database transaction", NULL,
     "DbCommitSeconds", "Seconds", HISTOGRAM},
    {"canopy_sqs_requests_total", "SQS requests, by operation", "op", "SqsRequests", "Count",
     COUNTER},
    {"canopy_s3_requests_total", "S3 HTTP attempts of the pipeline's transfers", NULL,
     "S3Requests", "Count", COUNTER},
    {"canopy_s3_retries_total", "S3 attempts retried after a failure, by class", "class",
     "S3Retries", "Count", COUNTER},
    {"canopy_chunks_in_flight", "Chunks between receipt and acknowledgement", NULL,
     "ChunksInFlight", "Count", GAUGE},
    {"canopy_pixels_in_flight", "Decoded pixels held between decode and encode", NULL,
     "PixelsInFlight", "Count", GAUGE},
    {"canopy_device_image_bytes", "Device memory of the uploaded image buffer", NULL,
     "DeviceImageBytes", "Bytes", GAUGE},
    {"canopy_device_bytes", "Device memory held by the process: every buffer of every engine",
     NULL, "DeviceBytes", "Bytes", GAUGE},
};
enum { NFAM = sizeof families / sizeof families[0] };

static const double buckets[] = {0.001, 0.01, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60};
enum { NB = sizeof buckets / sizeof buckets[0] };

struct series {
    int fam;
    char label[32];
    double value;           /* counter, gauge; histogram sum */
    uint64_t count;         /* histogram */
    uint64_t bucket[NB];    /* histogram, cumulative at render */
};

struct cnp_metrics {
    pthread_mutex_t lock;
    struct series *s;
    size_t n, cap;
};

cnp_status cnp_metrics_create(cnp_metrics **out, cnp_err *err)
{
    cnp_metrics *m = calloc(1, sizeof *m);
    if (!m) {
        cnp_err_set(err, "out of memory for metrics");
        return CNP_ERR_NOMEM;
    }
    pthread_mutex_init(&m->lock, NULL);
    *out = m;
    return CNP_OK;
}

void cnp_metrics_free(cnp_metrics *m)
{
    if (!m)
        return;
    pthread_mutex_destroy(&m->lock);
    free(m->s);
    free(m);
}

static int family(const char *name)
{
    for (int i = 0; i < NFAM; i++)
        if (strcmp(families[i].name, name) == 0)
            return i;
    return -1;
}

/* The series (name, label), created on first use; NULL when unknown or out
 * of memory. Called with the lock held. */
static struct series *series(cnp_metrics *m, const char *name, const char *label)
{
    int f = family(name);
    if (f < 0) {
        LOG_ERROR("metrics", "unknown metric %s", name);
        return NULL;
    }
    const char *l = label ? label : "";
    for (size_t i = 0; i < m->n; i++)
        if (m->s[i].fam == f && strcmp(m->s[i].label, l) == 0)
            return &m->s[i];
    if (m->n == m->cap) {
        size_t cap = m->cap ? 2 * m->cap : 32;
        struct series *grown = realloc(m->s, cap * sizeof *grown);
        if (!grown)
            return NULL;
        m->s = grown;
        m->cap = cap;
    }
    struct series *s = &m->s[m->n++];
    memset(s, 0, sizeof *s);
    s->fam = f;
    snprintf(s->label, sizeof s->label, "%s", l);
    return s;
}

void cnp_metrics_add(cnp_metrics *m, const char *name, const char *label, double v)
{
    if (!m)
        return;
    pthread_mutex_lock(&m->lock);
    struct series *s = series(m, name, label);
    if (s)
        s->value += v;
    pthread_mutex_unlock(&m->lock);
}

void cnp_metrics_set(cnp_metrics *m, const char *name, const char *label, double v)
{
    if (!m)
        return;
    pthread_mutex_lock(&m->lock);
    struct series *s = series(m, name, label);
    if (s)
        s->value = v;
    pthread_mutex_unlock(&m->lock);
}

void cnp_metrics_observe(cnp_metrics *m, const char *name, const char *label, double v)
{
    if (!m || !isfinite(v))
        return;
    pthread_mutex_lock(&m->lock);
    struct series *s = series(m, name, label);
    if (s) {
        s->value += v;
        s->count++;
        for (int b = 0; b < NB; b++)
            if (v <= buckets[b]) {
                s->bucket[b]++;
                break;
            }
    }
    pthread_mutex_unlock(&m->lock);
}

double cnp_metrics_get(cnp_metrics *m, const char *name, const char *label)
{
    double v = 0;
    pthread_mutex_lock(&m->lock);
    int f = family(name);
    for (size_t i = 0; f >= 0 && i < m->n; i++)
        if (m->s[i].fam == f && strcmp(m->s[i].label, label ? label : "") == 0)
            v = families[f].kind == HISTOGRAM ? (double)m->s[i].count : m->s[i].value;
    pthread_mutex_unlock(&m->lock);
    return v;
}

/* `{label="value"}` (or `{label="value",le="x"}`), empty without labels. */
static void labels(char *out, size_t len, const struct family *fam, const struct series *s,
                   const char *le)
{
    bool has = fam->label && s->label[0];
    if (!has && !le)
        out[0] = '\0';
    else if (has && le)
        snprintf(out, len, "{%s=\"%s\",le=\"%s\"}", fam->label, s->label, le);
    else if (has)
        snprintf(out, len, "{%s=\"%s\"}", fam->label, s->label);
    else
        snprintf(out, len, "{le=\"%s\"}", le);
}

cnp_status cnp_metrics_prometheus(cnp_metrics *m, cnp_buf *out)
{
    cnp_status result = CNP_OK;
    pthread_mutex_lock(&m->lock);
    for (int f = 0; f < NFAM && result == CNP_OK; f++) {
        const struct family *fam = &families[f];
        bool any = false;
        for (size_t i = 0; i < m->n && result == CNP_OK; i++) {
            const struct series *s = &m->s[i];
            if (s->fam != f)
                continue;
            char lab[96];
            if (!any)
                result = cnp_buf_printf(out, "# HELP %s %s\n# TYPE %s %s\n", fam->name,
                                        fam->help, fam->name,
                                        fam->kind == COUNTER ? "counter"
                                        : fam->kind == GAUGE ? "gauge"
                                                             : "histogram");
            any = true;
            if (fam->kind != HISTOGRAM) {
                labels(lab, sizeof lab, fam, s, NULL);
                result = cnp_buf_printf(out, "%s%s %.17g\n", fam->name, lab, s->value);
                continue;
            }
            uint64_t cum = 0;
            for (int b = 0; b < NB && result == CNP_OK; b++) {
                char le[32];
                snprintf(le, sizeof le, "%g", buckets[b]);
                cum += s->bucket[b];
                labels(lab, sizeof lab, fam, s, le);
                result = cnp_buf_printf(out, "%s_bucket%s %llu\n", fam->name, lab,
                                        (unsigned long long)cum);
            }
            labels(lab, sizeof lab, fam, s, "+Inf");
            if (result == CNP_OK)
                result = cnp_buf_printf(out, "%s_bucket%s %llu\n", fam->name, lab,
                                        (unsigned long long)s->count);
            labels(lab, sizeof lab, fam, s, NULL);
            if (result == CNP_OK)
                result = cnp_buf_printf(out, "%s_sum%s %.17g\n%s_count%s %llu\n", fam->name,
                                        lab, s->value, fam->name, lab,
                                        (unsigned long long)s->count);
        }
    }
    pthread_mutex_unlock(&m->lock);
    return result;
}

cnp_status cnp_metrics_write_textfile(cnp_metrics *m, const char *path, cnp_err *err)
{
    cnp_buf text = {0};
    cnp_status result = cnp_metrics_prometheus(m, &text);
    size_t len = strlen(path) + 32;
    char *tmp = malloc(len);
    if (result != CNP_OK || !tmp) {
        cnp_err_set(err, "out of memory for metrics");
        result = CNP_ERR_NOMEM;
        goto out;
    }
    snprintf(tmp, len, "%s.tmp.%d", path, (int)getpid());
    if ((result = cnp_file_write(tmp, text.data, text.len, err)) != CNP_OK)
        goto out;
    if (rename(tmp, path) != 0) {
        cnp_err_set(err, "%s: cannot replace the metrics file", path);
        unlink(tmp);
        result = CNP_ERR_IO;
    }
out:
    free(tmp);
    cnp_buf_free(&text);
    return result;
}

/* "StageSeconds" + "Device" -> "StageSecondsDevice" (EMF has no labels). */
static void emf_name(char *out, size_t len, const struct family *fam, const char *label)
{
    size_t n = (size_t)snprintf(out, len, "%s", fam->emf);
    for (const char *p = label; *p && n + 1 < len; p++, n++)
        out[n] = p == label || p[-1] == '_' ? (char)(*p >= 'a' && *p <= 'z' ? *p - 32 : *p)
                                            : *p;
    out[n < len ? n : len - 1] = '\0';
    /* Drop the underscores kept above. */
    char *w = out;
    for (char *r = out; *r; r++)
        if (*r != '_')
            *w++ = *r;
    *w = '\0';
}

char *cnp_metrics_emf(cnp_metrics *m, const char *mode)
{
    cJSON *doc = cJSON_CreateObject(), *aws = cJSON_AddObjectToObject(doc, "_aws");
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    cJSON_AddNumberToObject(aws, "Timestamp", (double)ts.tv_sec * 1e3 + ts.tv_nsec / 1000000);
    cJSON *cwm = cJSON_AddArrayToObject(aws, "CloudWatchMetrics");
    cJSON *dir = cJSON_CreateObject();
    cJSON_AddItemToArray(cwm, dir);
    cJSON_AddStringToObject(dir, "Namespace", "canopy");
    cJSON *dims = cJSON_AddArrayToObject(dir, "Dimensions"), *d1 = cJSON_CreateArray();
    cJSON_AddItemToArray(dims, d1);
    cJSON_AddItemToArray(d1, cJSON_CreateString("mode"));
    cJSON *metrics = cJSON_AddArrayToObject(dir, "Metrics");
    cJSON_AddStringToObject(doc, "mode", mode);
    /* The fields every JSON log line has, so log collectors take it as one. */
    char iso[40];
    struct tm tm;
    gmtime_r(&ts.tv_sec, &tm);
    size_t k = strftime(iso, sizeof iso, "%Y-%m-%dT%H:%M:%S", &tm);
    snprintf(iso + k, sizeof iso - k, ".%03ldZ", ts.tv_nsec / 1000000);
    cJSON_AddStringToObject(doc, "ts", iso);
    cJSON_AddStringToObject(doc, "level", "info");
    cJSON_AddStringToObject(doc, "module", "metrics");
    cJSON_AddStringToObject(doc, "msg", "metrics (CloudWatch embedded metric format)");
    pthread_mutex_lock(&m->lock);
    for (size_t i = 0; i < m->n; i++) {
        const struct series *s = &m->s[i];
        const struct family *fam = &families[s->fam];
        char name[96];
        emf_name(name, sizeof name, fam, s->label);
        for (int part = 0; part < (fam->kind == HISTOGRAM ? 2 : 1); part++) {
            char full[112];
            snprintf(full, sizeof full, "%s%s", name, part ? "Count" : "");
            cJSON *def = cJSON_CreateObject();
            cJSON_AddStringToObject(def, "Name", full);
            cJSON_AddStringToObject(def, "Unit", part ? "Count" : fam->unit);
            cJSON_AddItemToArray(metrics, def);
            cJSON_AddNumberToObject(doc, full, part ? (double)s->count : s->value);
        }
    }
    pthread_mutex_unlock(&m->lock);
    char *text = cJSON_PrintUnformatted(doc);
    cJSON_Delete(doc);
    return text;
}
