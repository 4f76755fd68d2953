/* Fetch from S3, for the SQS and listing sources: every RECEIVED item of a
 * chunk is downloaded concurrently through one aws_batch (one connection
 * cache), owned by the fetch thread. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "pipeline/pl_internal.h"
#include "pipeline/sources.h"

cnp_status pl_batch_run(pl_ctx *x, aws_batch *batch, cnp_err *err)
{
    aws_batch_stats before, after;
    aws_batch_get_stats(batch, &before);
    cnp_status result = aws_batch_run(batch, err);
    aws_batch_get_stats(batch, &after);
    cnp_metrics_add(x->metrics, "canopy_s3_requests_total", NULL,
                    (double)(after.requests - before.requests));
    for (int k = 0; k < AWS_RETRY_CLASSES; k++)
        if (after.retries_by_class[k] > before.retries_by_class[k])
            cnp_metrics_add(x->metrics, "canopy_s3_retries_total", aws_retry_class_name[k],
                            (double)(after.retries_by_class[k] - before.retries_by_class[k]));
    return result;
}

/* Moves what the item needs out of a fetched object: the bytes (the
 * temporary file too: the item now removes it), the etag and the two
 * metadata ids; false without memory. */
static bool take_object(pl_item *it, s3_object *obj)
{
    it->bytes.body = obj->body;
    obj->body = (cnp_buf){0};
    snprintf(it->bytes.spill_path, sizeof it->bytes.spill_path, "%s", obj->spill_path);
    obj->spill_path[0] = '\0';
    it->bytes.size = obj->size;
    const char *scan = aws_kvlist_get(&obj->metadata, "scan-id");
    const char *address = aws_kvlist_get(&obj->metadata, "address-id");
    if (obj->etag[0]) {
        free(it->etag);
        if (!(it->etag = strdup(obj->etag)))
            return false;
    }
    return (!scan || (it->scan_id = strdup(scan))) &&
           (!address || (it->address_id = strdup(address)));
}

void pl_fetch_s3(pl_ctx *x, aws_batch *batch, pl_chunk *c)
{
    double t0 = cnp_now();
    size_t queued = 0;
    /* The S3 results live here, not in the items (source-neutral). */
    s3_object *objs = calloc(c->nitems ? c->nitems : 1, sizeof *objs);
    for (size_t i = 0; objs && i < c->nitems; i++) {
        pl_item *it = &c->items[i];
        if (it->state != ITEM_RECEIVED)
            continue;
        s3_batch_get_spill(batch, it->bucket, it->key, x->sp.max_object_bytes,
                           x->sp.spill_bytes, &objs[i]);
        queued++;
    }
    cnp_err err;
    bool engine_ok = objs && (!queued || pl_batch_run(x, batch, &err) == CNP_OK);
    if (!objs)
        cnp_err_set(&err, "out of memory for %zu downloads", c->nitems);
    double ms = (cnp_now() - t0) * 1e3;
    for (size_t i = 0; i < c->nitems; i++) {
        pl_item *it = &c->items[i];
        if (it->state != ITEM_RECEIVED)
            continue;
        it->t_fetch = ms;
        if (!engine_ok)
            item_fail(it, CNP_ERR_TRANSIENT, "%s: download engine: %s", it->name, err.msg);
        else if (objs[i].result.status != CNP_OK)
            item_fail(it, objs[i].result.status, "%s", objs[i].result.err.msg);
        else if (!take_object(it, &objs[i]))
            item_fail(it, CNP_ERR_NOMEM, "%s: out of memory", it->name);
        else
            item_advance(it, ITEM_FETCHED);
    }
    for (size_t i = 0; objs && i < c->nitems; i++)
        s3_object_free(&objs[i]);
    free(objs);
}
