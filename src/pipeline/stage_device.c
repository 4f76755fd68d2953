/* Stage: device. Binarization and detection of each decoded image on the
 * one OpenCL queue, in order. */
#include "pipeline/pl_internal.h"

void stage_device_job(pl_ctx *x, pl_chunk *c, size_t begin, size_t end)
{
    for (size_t i = begin; i < end; i++) {
        pl_item *it = &c->items[i];
        if (it->state != ITEM_DECODED)
            continue;
        cnp_err err;
        double t0 = cnp_now();
        cnp_status st = pipe_device_process(x->dev, &it->img, &it->res, &err);
        it->t_device = (cnp_now() - t0) * 1e3;
        if (st != CNP_OK)
            item_fail(it, st, "%s: %s", it->name, err.msg);
        else
            item_advance(it, ITEM_PROCESSED);
    }
}
