/* Fetch from S3, for the SQS and listing sources: every RECEIVED item of a
 * chunk is downloaded concurrently through one aws_batch (one connection
 * cache), owned by the fetch thread. */
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

void pl_fetch_s3(pl_ctx *x, aws_batch *batch, pl_chunk *c)
{
    double t0 = cnp_now();
    size_t queued = 0;
    for (size_t i = 0; i < c->nitems; i++) {
        pl_item *it = &c->items[i];
        if (it->state != ITEM_RECEIVED)
            continue;
        s3_batch_get_spill(batch, it->bucket, it->key, x->sp.max_object_bytes,
                           x->sp.spill_bytes, &it->obj);
        queued++;
    }
    cnp_err err;
    bool engine_ok = !queued || pl_batch_run(x, batch, &err) == CNP_OK;
    double ms = (cnp_now() - t0) * 1e3;
    for (size_t i = 0; i < c->nitems; i++) {
        pl_item *it = &c->items[i];
        if (it->state != ITEM_RECEIVED)
            continue;
        it->t_fetch = ms;
        if (!engine_ok)
            item_fail(it, CNP_ERR_TRANSIENT, "%s: download engine: %s", it->name, err.msg);
        else if (it->obj.result.status != CNP_OK)
            item_fail(it, it->obj.result.status, "%s", it->obj.result.err.msg);
        else
            item_advance(it, ITEM_FETCHED);
    }
}
