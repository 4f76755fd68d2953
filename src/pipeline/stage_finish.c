/* Stage: finish. After the sink wrote a chunk's outputs: the sink commits,
 * the source acknowledges, and each item is counted and reported by the
 * state it reached (ok only in ITEM_ACKNOWLEDGED). */
#include <string.h>

#include "canopy/log.h"
#include "pipeline/pl_internal.h"

static void report(pl_ctx *x, const pl_item *it)
{
    bool ok = it->state == ITEM_ACKNOWLEDGED;
    bool transient = !ok && it->state != ITEM_FAILED_PERMANENT;
    cnp_metrics_add(x->metrics, "canopy_images_total",
                    ok ? "ok" : transient ? "retried" : "failed", 1);
    if (ok) {
        static const char *const stage[] = {"fetch", "decode", "device", "encode", "upload"};
        const double ms[] = {it->t_fetch, it->t_decode, it->t_device, it->t_encode,
                             it->t_upload};
        for (int k = 0; k < 5; k++)
            cnp_metrics_observe(x->metrics, "canopy_stage_seconds", stage[k], ms[k] / 1e3);
        cnp_metrics_add(x->metrics, "canopy_trees_total", NULL, (double)it->res.ntrees);
        cnp_metrics_add(x->metrics, "canopy_pixels_total", NULL,
                        (double)it->res.width * it->res.height);
    }
    if (ok) {
        atomic_fetch_add(&x->n_ok, 1);
        atomic_fetch_add(&x->n_trees, (long long)it->res.ntrees);
        atomic_fetch_add(&x->n_kpix, (long long)((double)it->res.width * it->res.height / 1e3));
        LOG_INFO(x->mode, "%s: %ux%u, threshold %d, cover %.1f%%, %zu trees", it->name,
                 it->res.width, it->res.height, it->res.bin.threshold,
                 it->res.bin.canopy_cover * 100.0, it->res.ntrees);
    } else if (!transient) {
        atomic_fetch_add(&x->n_failed, 1);
        LOG_WARN(x->mode, "failed: %s", it->error);
    } else {
        atomic_fetch_add(&x->n_retried, 1);
        if (it->state != ITEM_FAILED_TRANSIENT)
            LOG_ERROR(x->mode, "%s: ended in state %s (internal error); not counted as done",
                      it->name, item_state_name(it->state));
        else
            LOG_WARN(x->mode, "will retry: %s", it->error);
    }
    if (!x->hooks || !x->hooks->on_item)
        return;
    pl_item_report r = {
        .name = it->name,
        .ok = ok,
        .transient = transient,
        .status = ok ? CNP_OK : it->fail_status,
        .error = ok ? NULL : it->error,
        .warning = it->warning,
        .width = it->res.width,
        .height = it->res.height,
        .threshold = it->res.bin.threshold,
        .canopy_cover = it->res.bin.canopy_cover,
        .ntrees = it->res.ntrees,
        .ms = it->t_fetch + it->t_decode + it->t_device + it->t_encode + it->t_upload,
    };
    x->hooks->on_item(x->hooks->ctx, &r);
}

void pl_ack_without_message(pl_ctx *x, void *self, pl_chunk *c, bool committed)
{
    (void)x;
    (void)self;
    for (size_t i = 0; i < c->nitems; i++)
        if (committed && c->items[i].state == ITEM_COMMITTED)
            item_advance(&c->items[i], ITEM_ACKNOWLEDGED);
}

void stage_finish_chunk(pl_ctx *x, pl_chunk *c)
{
    bool committed = x->sink->commit(x, x->sink_self, c);
    if (committed)
        chunk_advance(c, CHUNK_COMMITTED);
    else
        chunk_fail(c, CNP_ERR_TRANSIENT, "not committed");
    x->src->acknowledge(x, x->src_self, c, committed);
    chunk_advance(c, CHUNK_ACKNOWLEDGED);
    for (size_t i = 0; i < c->nitems; i++)
        report(x, &c->items[i]);
}
