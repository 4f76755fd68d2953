/* Sink: S3 + PostgreSQL + output queue. Uploads each encoded item's outputs
 * concurrently, commits the chunk's rows in one transaction together with
 * one notification per image (the outbox), then sends the pending
 * notifications and deletes those SQS took. */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cjson/cJSON.h>
#include <openssl/evp.h>

#include "canopy/log.h"
#include "canopy/sqs.h"
#include "pipeline/sources.h"

struct pl_cloud_sink {
    aws_client *aws;
    pg_store *db;
    pl_cloud_params p;
    cnp_metrics *metrics;  /* of the run; NULL: none */
    bool fifo_out;
    aws_batch *batch;      /* used by the write thread only */
};

static const char *item_etag(const pl_item *it)
{
    return it->etag ? it->etag : "";
}

/* Queues the upload of output k of an item. */
static void put_output(pl_cloud_sink *s, pl_item *it, int k, aws_kvlist *meta,
                       s3_put_result *result)
{
    const cnp_spool *data = &it->outs.out[k];
    bool file = cnp_spool_in_file(data);
    s3_put put = {.bucket = s->p.bucket, .key = it->out_name[k],
                  .data = file ? NULL : data->buf.data, .file = file ? data->path : NULL,
                  .len = (size_t)cnp_spool_size(data), .content_type = pipe_out_content_type[k],
                  .metadata = meta};
    s3_batch_put(s->batch, &put, result);
}

/* How the uploads of a chunk went: CNP_OK when every output of every
 * encoded item was stored, CNP_ERR_INTERNAL when some were and some were not,
 * else (nothing stored: the bucket is down) the first failure's status. */
static cnp_status upload_outcome(const pl_chunk *c, const s3_put_result *put, cnp_err *err)
{
    size_t stored = 0, failed = 0;
    cnp_status first = CNP_OK;
    for (size_t i = 0; i < c->nitems; i++) {
        const pl_item *it = &c->items[i];
        for (int k = 0; it->state == ITEM_ENCODED && k < PIPE_OUT_COUNT; k++) {
            if (!it->out_name[k])
                continue;
            const aws_result *r = &put[i * PIPE_OUT_COUNT + k].result;
            if (r->status == CNP_OK) {
                stored++;
            } else if (failed++ == 0) {
                first = r->status;
                cnp_err_set(err, "s3://%s: %s", it->out_name[k], r->err.msg);
            }
        }
    }
    if (!failed)
        return CNP_OK;
    return stored ? CNP_ERR_INTERNAL : first;
}

/* Queues the uploads of one item; false without memory. */
static bool queue_uploads(const pl_ctx *x, pl_cloud_sink *s, pl_item *it, aws_kvlist *meta,
                          s3_put_result *put_result)
{
    const char *model_version = x->sp.model_version;
    char *src = pl_header_safe(it->key);
    bool ok = src && aws_kvlist_add(meta, "source-key", src) == CNP_OK &&
              aws_kvlist_add(meta, "source-etag", item_etag(it)) == CNP_OK &&
              aws_kvlist_add(meta, "model-version", model_version) == CNP_OK;
    free(src);
    if (!ok || !(it->out_stem = pl_output_stem(s->p.prefix, it->key)))
        return false;
    for (int k = 0; k < PIPE_OUT_COUNT; k++) {
        const cnp_spool *data = &it->outs.out[k];
        uint64_t size = cnp_spool_size(data);
        if (size == 0)
            continue;
        if (!(it->out_name[k] = pl_join(it->out_stem, pipe_out_suffix[k])))
            return false;
        /* A spooled output is read from its file as it is sent. */
        bool file = cnp_spool_in_file(data);
        if (file)
            LOG_DEBUG(x->mode, "s3://%s/%s: %llu bytes, from a temporary file", s->p.bucket,
                      it->out_name[k], (unsigned long long)size);
        put_output(s, it, k, meta, &put_result[k]);
    }
    return true;
}

/* Queues the upload of outputs that failed, for the health gate's probe:
 * the bucket is back when one of them is stored. */
struct upload_try {
    pl_ctx *x;
    pl_cloud_sink *s;
    pl_chunk *c;
    aws_kvlist *meta;
    s3_put_result *put; /* PIPE_OUT_COUNT per item */
};

static cnp_status upload_again(void *arg, cnp_err *err)
{
    struct upload_try *t = arg;
    pl_chunk *c = t->c;
    for (size_t i = 0; i < c->nitems; i++) {
        pl_item *it = &c->items[i];
        for (int k = 0; it->state == ITEM_ENCODED && k < PIPE_OUT_COUNT; k++)
            if (it->out_name[k] && t->put[i * PIPE_OUT_COUNT + k].result.status != CNP_OK)
                put_output(t->s, it, k, &t->meta[i], &t->put[i * PIPE_OUT_COUNT + k]);
    }
    cnp_status st = pl_batch_run(t->x, t->s->batch, err);
    if (st != CNP_OK)
        return st;
    st = upload_outcome(c, t->put, err);
    return st == CNP_ERR_INTERNAL ? CNP_OK : st;
}

static void cloud_write(pl_ctx *x, void *self, pl_chunk *c)
{
    pl_cloud_sink *s = self;
    aws_kvlist *meta = calloc(c->nitems ? c->nitems : 1, sizeof *meta);
    /* The uploads' results, PIPE_OUT_COUNT per item: the sink's, not the item's. */
    s3_put_result *put = calloc(c->nitems ? c->nitems * PIPE_OUT_COUNT : 1, sizeof *put);
    double t0 = cnp_now();
    size_t queued = 0;
    for (size_t i = 0; i < c->nitems; i++) {
        pl_item *it = &c->items[i];
        if (it->state != ITEM_ENCODED)
            continue;
        if (!meta || !put || !queue_uploads(x, s, it, &meta[i], &put[i * PIPE_OUT_COUNT])) {
            item_fail(it, CNP_ERR_NOMEM, "%s: out of memory preparing uploads", it->name);
            continue;
        }
        queued++;
    }
    cnp_err err;
    bool engine_ok = !queued || pl_batch_run(x, s->batch, &err) == CNP_OK;
    cnp_err first;
    cnp_status st = engine_ok && queued ? upload_outcome(c, put, &first) : CNP_OK;
    /* Nothing of the chunk could be stored: the bucket is down, not an
     * image. Ride it out with the chunk in hand, the uploads as the probe. */
    if (st != CNP_OK && st != CNP_ERR_INTERNAL && meta && put && x->health &&
        pl_dependency_failure(st)) {
        struct upload_try t = {.x = x, .s = s, .c = c, .meta = meta, .put = put};
        cnp_err last;
        pl_health_ride_out(x->health, "the output bucket", &first, upload_again, &t, &last);
    }
    double ms = (cnp_now() - t0) * 1e3;
    for (size_t i = 0; i < c->nitems; i++) {
        pl_item *it = &c->items[i];
        if (it->state != ITEM_ENCODED)
            continue;
        it->t_upload = ms;
        bool ok = engine_ok;
        if (!engine_ok)
            item_fail(it, CNP_ERR_TRANSIENT, "upload engine: %s", err.msg);
        for (int k = 0; k < PIPE_OUT_COUNT && ok; k++) {
            const s3_put_result *pr = &put[i * PIPE_OUT_COUNT + k];
            if (it->out_name[k] && pr->result.status != CNP_OK) {
                /* Our own bucket refusing a write is not the image's fault. */
                item_fail(it, CNP_ERR_TRANSIENT, "s3://%s/%s: %s", s->p.bucket, it->out_name[k],
                          pr->result.err.msg);
                ok = false;
            }
        }
        if (ok) {
            for (int k = 0; k < PIPE_OUT_COUNT; k++)
                cnp_metrics_add(x->metrics, "canopy_bytes_out_total", NULL,
                                (double)cnp_spool_size(&it->outs.out[k]));
            item_advance(it, ITEM_UPLOADED);
        }
        pipe_outputs_free(&it->outs);
    }
    for (size_t i = 0; meta && i < c->nitems; i++)
        aws_kvlist_free(&meta[i]);
    free(meta);
    free(put);
}

static const char *meta_or_msg(const char *from_msg, const char *from_object)
{
    if (from_msg && from_msg[0])
        return from_msg;
    return from_object;
}

/* The trees of an item as rows; NULL without trees or memory. */
static pg_tree *tree_rows(const pl_item *it, const det_model *m, const det_model *cls)
{
    if (!it->res.ntrees)
        return NULL;
    pg_tree *t = calloc(it->res.ntrees, sizeof *t);
    for (size_t k = 0; t && k < it->res.ntrees; k++) {
        const cnp_tree *tr = &it->res.trees[k];
        t[k].x = tr->x;
        t[k].y = tr->y;
        t[k].radius = tr->radius;
        t[k].score = tr->score;
        t[k].label = tr->boxed ? det_model_label(m, tr->label) : NULL;
        det_box b = pipe_tree_box(tr, it->res.width, it->res.height);
        t[k].xmin = b.x0;
        t[k].ymin = b.y0;
        t[k].xmax = b.x1;
        t[k].ymax = b.y1;
        t[k].type = tr->typed ? det_model_type_name(cls, tr->type) : NULL;
        t[k].type_score = tr->type_score;
        if (!it->trees_geo)
            continue;
        const pipe_geo_tree *g = &it->trees_geo[k];
        t[k].georef = true;
        t[k].map_x = g->map_x;
        t[k].map_y = g->map_y;
        t[k].lon = g->lon;
        t[k].lat = g->lat;
        t[k].radius_m = g->radius_m;
        memcpy(t[k].box_map, g->box_map, sizeof t[k].box_map);
    }
    return t;
}

/* Fills the row of an uploaded or permanently failed item; false without
 * memory. */
static bool item_row(const pl_ctx *x, pl_item *it, pg_image_result *r, pg_tree **trees)
{
    const msg_item *mi = it->meta;
    pg_image_result_init(r);
    r->bucket = it->bucket;
    r->key = it->key;
    r->etag = item_etag(it);
    r->model_version = x->sp.model_version;
    pl_image_uuid(it->bucket, it->key, item_etag(it), it->image_id);
    r->image_id = mi && mi->image_id ? mi->image_id : it->image_id;
    r->scan_id = meta_or_msg(mi ? mi->scan_id : NULL, it->scan_id);
    r->address_id = meta_or_msg(mi ? mi->address_id : NULL, it->address_id);
    if (mi && mi->tree_types) {
        r->tree_types = (const char *const *)mi->tree_types;
        r->n_tree_types = mi->n_tree_types;
    }
    r->download_ms = it->t_fetch;
    r->decode_ms = it->t_decode;
    if (it->state == ITEM_FAILED_PERMANENT) {
        r->status = PG_IMAGE_FAILED;
        r->error = it->error;
        return true;
    }
    r->status = PG_IMAGE_OK;
    r->width = (int)it->res.width;
    r->height = (int)it->res.height;
    r->threshold = it->res.bin.threshold >= 0 ? (double)it->res.bin.threshold : NAN;
    r->canopy_cover = it->res.bin.canopy_cover;
    r->mask_key = it->out_name[PIPE_OUT_MASK_PNG] ? it->out_name[PIPE_OUT_MASK_PNG]
                                                  : it->out_name[PIPE_OUT_MASK_TIF];
    r->overlay_key = it->out_name[PIPE_OUT_OVERLAY];
    r->trees_key = it->out_name[PIPE_OUT_TREES_JSON];
    r->device_ms = it->t_device;
    r->encode_ms = it->t_encode;
    r->upload_ms = it->t_upload;
    double n = (double)it->res.width * it->res.height;
    r->nodata_fraction = n > 0 ? (double)it->nodata / n : 0.0;
    if (it->geo.valid) {
        r->georef = true;
        r->epsg = it->geo.epsg;
        r->crs_wkt = it->geo.wkt;
        memcpy(r->geotransform, it->geo.gt, sizeof r->geotransform);
        memcpy(r->footprint, it->footprint, sizeof r->footprint);
    }
    if (x->sp.classifier) { /* freed with the rows (cloud_commit) */
        if (!(r->type_counts = pipe_type_counts_json(x->sp.classifier, it->res.trees,
                                                     it->res.ntrees)))
            return false;
        r->classifier_version = det_model_version(x->sp.classifier);
        r->tree_count = (int64_t)pipe_tree_count(x->sp.classifier, it->res.trees,
                                                 it->res.ntrees, r->tree_types, r->n_tree_types,
                                                 x->sp.types);
    }
    if (it->res.ntrees && !(*trees = tree_rows(it, x->sp.model, x->sp.classifier))) {
        free((char *)r->type_counts);
        r->type_counts = NULL;
        return false;
    }
    r->trees = *trees;
    r->n_trees = it->res.ntrees;
    return true;
}

/* SQS takes messages of at most 256 KiB: a notification whose trees would
 * make it longer goes without them (trees_key has them all). */
#define NOTIFY_MAX_BYTES (240 * 1024)

/* The trees as the notification lists them: pixel centre, radius, score,
 * box and (box models) label, as trees.json has them. */
static cJSON *notification_trees(const pl_ctx *x, const pl_item *it)
{
    cJSON *arr = cJSON_CreateArray();
    for (size_t i = 0; arr && i < it->res.ntrees; i++) {
        const cnp_tree *t = &it->res.trees[i];
        det_box b = pipe_tree_box(t, it->res.width, it->res.height);
        cJSON *o = cJSON_CreateObject();
        if (!o) {
            cJSON_Delete(arr);
            return NULL;
        }
        cJSON_AddItemToArray(arr, o);
        const char *label = t->boxed ? det_model_label(x->sp.model, t->label) : NULL;
        if (label)
            cJSON_AddStringToObject(o, "label", label);
        const char *type = t->typed ? det_model_type_name(x->sp.classifier, t->type) : NULL;
        if (type) {
            cJSON_AddStringToObject(o, "type", type);
            cJSON_AddNumberToObject(o, "type_score", round(t->type_score * 1e6) / 1e6);
        }
        cJSON_AddNumberToObject(o, "x", round(t->x * 100) / 100);
        cJSON_AddNumberToObject(o, "y", round(t->y * 100) / 100);
        cJSON_AddNumberToObject(o, "radius", round(t->radius * 100) / 100);
        cJSON_AddNumberToObject(o, "score", round(t->score * 1e4) / 1e4);
        cJSON_AddNumberToObject(o, "xmin", round(b.x0 * 100) / 100);
        cJSON_AddNumberToObject(o, "ymin", round(b.y0 * 100) / 100);
        cJSON_AddNumberToObject(o, "xmax", round(b.x1 * 100) / 100);
        cJSON_AddNumberToObject(o, "ymax", round(b.y1 * 100) / 100);
    }
    return arr;
}

static char *notification(const pl_cloud_sink *s, const pl_ctx *x, const pl_item *it,
                          const pg_image_result *r)
{
    cJSON *o = cJSON_CreateObject();
    cJSON_AddStringToObject(o, "image_id", r->image_id);
    cJSON_AddStringToObject(o, "bucket", it->bucket);
    cJSON_AddStringToObject(o, "key", it->key);
    cJSON_AddStringToObject(o, "etag", r->etag);
    cJSON_AddStringToObject(o, "model_version", x->sp.model_version);
    cJSON_AddNumberToObject(o, "tree_count",
                            (double)(r->tree_count >= 0 ? (size_t)r->tree_count
                                                        : it->res.ntrees));
    cJSON *counts = r->type_counts ? cJSON_Parse(r->type_counts) : NULL;
    if (counts) {
        cJSON_AddItemToObject(o, "type_counts", counts);
        cJSON_AddStringToObject(o, "classifier_version", r->classifier_version);
    }
    if (r->tree_types) {
        cJSON *tt = cJSON_AddArrayToObject(o, "tree_types");
        for (size_t i = 0; tt && i < r->n_tree_types; i++)
            cJSON_AddItemToArray(tt, cJSON_CreateString(r->tree_types[i]));
    }
    cJSON_AddNumberToObject(o, "canopy_cover", round(it->res.bin.canopy_cover * 1e4) / 1e4);
    cJSON_AddStringToObject(o, "output_bucket", s->p.bucket);
    cJSON_AddStringToObject(o, "mask_key", r->mask_key ? r->mask_key : "");
    if (r->overlay_key)
        cJSON_AddStringToObject(o, "overlay_key", r->overlay_key);
    else
        cJSON_AddNullToObject(o, "overlay_key");
    cJSON_AddStringToObject(o, "trees_key", r->trees_key ? r->trees_key : "");
    if (it->out_name[PIPE_OUT_GEOJSON])
        cJSON_AddStringToObject(o, "geojson_key", it->out_name[PIPE_OUT_GEOJSON]);
    if (it->out_name[PIPE_OUT_GPKG])
        cJSON_AddStringToObject(o, "gpkg_key", it->out_name[PIPE_OUT_GPKG]);
    if (it->out_name[PIPE_OUT_CSV])
        cJSON_AddStringToObject(o, "csv_key", it->out_name[PIPE_OUT_CSV]);
    if (r->scan_id)
        cJSON_AddStringToObject(o, "scan_id", r->scan_id);
    if (r->address_id)
        cJSON_AddStringToObject(o, "address_id", r->address_id);
    cJSON *trees = notification_trees(x, it);
    if (trees)
        cJSON_AddItemToObject(o, "trees", trees);
    char *text = cJSON_PrintUnformatted(o);
    if (text && strlen(text) > NOTIFY_MAX_BYTES) {
        free(text);
        cJSON_DeleteItemFromObject(o, "trees");
        cJSON_AddNullToObject(o, "trees");
        text = cJSON_PrintUnformatted(o);
    }
    cJSON_Delete(o);
    return text;
}

static void dedup_id(const pl_item *it, const char *etag, const char *model, char out[65])
{
    unsigned char md[EVP_MAX_MD_SIZE];
    unsigned int len = 0;
    EVP_MD_CTX *h = EVP_MD_CTX_new();
    EVP_DigestInit_ex(h, EVP_sha256(), NULL);
    const char *parts[] = {it->bucket, it->key, etag, model};
    for (int i = 0; i < 4; i++)
        EVP_DigestUpdate(h, parts[i], strlen(parts[i]) + 1);
    EVP_DigestFinal_ex(h, md, &len);
    EVP_MD_CTX_free(h);
    for (int i = 0; i < 32; i++)
        snprintf(out + 2 * i, 3, "%02x", md[i]);
}

/* Fault injection for tests: the next n notifications are refused as if
 * SQS had failed their entries. */
static int g_fail_entries;

void pl_outbox_fail_entries(int n)
{
    __atomic_store_n(&g_fail_entries, n, __ATOMIC_SEQ_CST);
}

static bool injected_failure(void)
{
    int left = __atomic_load_n(&g_fail_entries, __ATOMIC_SEQ_CST);
    while (left > 0)
        if (__atomic_compare_exchange_n(&g_fail_entries, &left, left - 1, false,
                                        __ATOMIC_SEQ_CST, __ATOMIC_SEQ_CST))
            return true;
    return false;
}

/* pg_outbox_flush()'s sender: one SendMessageBatch. */
static void send_outbox(void *user, const pg_outbox_msg *msgs, size_t n, bool *sent,
                        char (*why)[256])
{
    pl_cloud_sink *s = user;
    sqs_send_entry entries[SQS_BATCH_MAX];
    size_t pos[SQS_BATCH_MAX], k = 0;
    for (size_t i = 0; i < n && i < SQS_BATCH_MAX; i++) {
        if (injected_failure()) {
            snprintf(why[i], sizeof why[i], "injected failure (test)");
            continue;
        }
        entries[k] = (sqs_send_entry){.body = msgs[i].body, .group_id = msgs[i].group_id,
                                      .dedup_id = msgs[i].dedup_id};
        pos[k++] = i;
    }
    if (!k)
        return;
    sqs_entry_result er[SQS_BATCH_MAX];
    aws_result ar;
    cnp_status st = sqs_send_batch(s->aws, s->p.queue_url, entries, k, er, &ar);
    cnp_metrics_add(s->metrics, "canopy_sqs_requests_total", "send_message_batch", 1);
    for (size_t j = 0; j < k; j++) {
        size_t i = pos[j];
        sent[i] = st == CNP_OK && er[j].status == CNP_OK;
        if (!sent[i])
            snprintf(why[i], sizeof why[i], "%.200s", st != CNP_OK ? ar.err.msg : er[j].message);
    }
}

cnp_status pl_cloud_sink_flush(pl_cloud_sink *s, const char *mode, cnp_err *err)
{
    if (!s->p.queue_url[0])
        return CNP_OK;
    pg_outbox_counts n;
    cnp_status st = pg_outbox_flush(s->db, s->p.queue_url, SQS_BATCH_MAX, send_outbox, s, &n,
                                    err);
    if (n.failed)
        LOG_WARN(mode, "%zu notification(s) to %s not sent, kept in the outbox for later",
                 n.failed, s->p.queue_url);
    else if (n.sent)
        LOG_DEBUG(mode, "%zu notification(s) sent from the outbox", n.sent);
    return st;
}

/* The notification of each image about to be committed, for the outbox:
 * written in the chunk's transaction, sent after it (pl_cloud_sink_flush). */
static bool add_notification(pl_cloud_sink *s, const pl_ctx *x, const pl_item *it,
                             pg_image_result *r, char dedup[65])
{
    if (!s->p.queue_url[0] || it->state != ITEM_UPLOADED)
        return true;
    char *body = notification(s, x, it, r);
    if (!body)
        return false;
    r->notify_queue = s->p.queue_url;
    r->notify_body = body;
    if (s->fifo_out) {
        dedup_id(it, r->etag, x->sp.model_version, dedup);
        r->notify_group = r->image_id;
        r->notify_dedup = dedup;
    }
    return true;
}

/* One try of a chunk's transaction (also the health gate's probe). */
struct commit_try {
    pl_cloud_sink *s;
    pl_ctx *x;
    const pg_image_result *rows;
    size_t nrows;
};

static cnp_status commit_rows(void *arg, cnp_err *err)
{
    struct commit_try *t = arg;
    double t0 = cnp_now();
    cnp_status st = pg_chunk_commit(t->s->db, t->s->p.run_id, t->rows, t->nrows, err);
    cnp_metrics_observe(t->x->metrics, "canopy_db_commit_seconds", NULL, cnp_now() - t0);
    return st;
}

/* Rows for uploaded and permanently failed items; transient ones are left
 * out (their messages come back). */
static bool cloud_commit(pl_ctx *x, void *self, pl_chunk *c)
{
    pl_cloud_sink *s = self;
    size_t cap = c->nitems ? c->nitems : 1, nrows = 0;
    pg_image_result *rows = calloc(cap, sizeof *rows);
    pg_tree **trees = calloc(cap, sizeof *trees);
    pl_item **who = calloc(cap, sizeof *who);
    char (*dedup)[65] = calloc(cap, sizeof *dedup);
    cnp_err err = {{0}};
    bool committed = false;
    if (!rows || !trees || !who || !dedup) {
        cnp_err_set(&err, "out of memory");
        goto out;
    }
    for (size_t i = 0; i < c->nitems; i++) {
        pl_item *it = &c->items[i];
        if (it->state != ITEM_UPLOADED && it->state != ITEM_FAILED_PERMANENT)
            continue;
        if (!item_row(x, it, &rows[nrows], &trees[nrows]) ||
            !add_notification(s, x, it, &rows[nrows], dedup[nrows])) {
            free(trees[nrows]);
            trees[nrows] = NULL;
            cJSON_free((void *)rows[nrows].notify_body);
            free((char *)rows[nrows].type_counts);
            memset(&rows[nrows], 0, sizeof rows[nrows]);
            item_fail(it, CNP_ERR_NOMEM, "%s: out of memory for its rows", it->name);
            continue;
        }
        who[nrows++] = it;
    }
    struct commit_try t = {.s = s, .x = x, .rows = rows, .nrows = nrows};
    cnp_status st = commit_rows(&t, &err);
    /* The whole chunk's transaction failed: the database is down, not an
     * image. Ride it out with the chunk in hand (pl_health_ride_out). */
    if (st != CNP_OK && nrows && x->health && pl_dependency_failure(st)) {
        cnp_err first = err;
        st = pl_health_ride_out(x->health, "PostgreSQL", &first, commit_rows, &t, &err);
    }
    committed = st == CNP_OK;
out:
    if (!committed) {
        LOG_ERROR(x->mode, "chunk %zu: commit failed, nothing acknowledged: %s", c->seq, err.msg);
        for (size_t i = 0; i < c->nitems; i++)
            item_fail(&c->items[i], CNP_ERR_TRANSIENT, "commit: %s", err.msg);
    } else {
        for (size_t r = 0; r < nrows; r++)
            if (who[r]->state == ITEM_UPLOADED)
                item_advance(who[r], ITEM_COMMITTED);
        /* Committed: acknowledged whatever the sends do. A notification
         * not sent stays in the outbox for the next flush. */
        cnp_err ferr;
        if (pl_cloud_sink_flush(s, x->mode, &ferr) != CNP_OK)
            LOG_WARN(x->mode, "chunk %zu: notifications kept in the outbox: %s", c->seq,
                     ferr.msg);
    }
    for (size_t r = 0; rows && r < nrows; r++)
        cJSON_free((void *)rows[r].notify_body);
    for (size_t r = 0; trees && r < nrows; r++) {
        free(trees[r]);
        free((char *)rows[r].type_counts); /* item_row's */
    }
    free(trees);
    free(rows);
    free(who);
    free(dedup);
    return committed;
}

const pl_sink_ops pl_sink_cloud_ops = {
    .write = cloud_write,
    .commit = cloud_commit,
};

cnp_status pl_cloud_sink_create(aws_client *aws, pg_store *db, const pl_cloud_params *p,
                                pl_cloud_sink **out, cnp_err *err)
{
    pl_cloud_sink *s = calloc(1, sizeof *s);
    *out = NULL;
    if (!s) {
        cnp_err_set(err, "out of memory");
        return CNP_ERR_NOMEM;
    }
    cnp_status result = aws_batch_create(aws, &s->batch, err);
    if (result != CNP_OK) {
        free(s);
        return result;
    }
    s->aws = aws;
    s->db = db;
    s->p = *p;
    s->metrics = p->metrics;
    size_t ql = strlen(p->queue_url);
    s->fifo_out = ql > 5 && strcmp(p->queue_url + ql - 5, ".fifo") == 0;
    *out = s;
    return CNP_OK;
}

void pl_cloud_sink_free(pl_cloud_sink *s)
{
    if (!s)
        return;
    aws_batch_free(s->batch);
    free(s);
}
