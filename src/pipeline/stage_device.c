/* Stage: device. Binarization and detection of each decoded image on the
 * one OpenCL queue, in order; then nodata pixels are taken out of the
 * results: never canopy, never a tree, not part of canopy_cover. */
#include "pipeline/pl_internal.h"

/* Clears the mask at nodata (alpha 0), recounts the cover over valid pixels
 * and drops trees whose centre is nodata. */
static void apply_nodata(const cnp_image *img, pipe_result *r, uint64_t nodata)
{
    size_t n = (size_t)img->width * img->height, fg = 0;
    for (size_t i = 0; i < n; i++) {
        if (img->rgba[4 * i + 3] == 0)
            r->mask[i] = 0;
        fg += r->mask[i] != 0;
    }
    r->bin.foreground = fg;
    r->bin.canopy_cover = n > nodata ? (double)fg / (double)(n - nodata) : 0.0;
    size_t kept = 0;
    for (size_t i = 0; i < r->ntrees; i++) {
        long x = (long)r->trees[i].x, y = (long)r->trees[i].y;
        bool inside = x >= 0 && y >= 0 && x < (long)img->width && y < (long)img->height;
        if (inside && img->rgba[4 * ((size_t)y * img->width + (size_t)x) + 3] != 0)
            r->trees[kept++] = r->trees[i];
    }
    r->ntrees = kept;
}

void stage_device_job(pl_ctx *x, pl_chunk *c, size_t begin, size_t end)
{
    for (size_t i = begin; i < end; i++) {
        pl_item *it = &c->items[i];
        if (it->state != ITEM_DECODED)
            continue;
        cnp_err err;
        double t0 = cnp_now();
        pipe_outputs_init(&it->outs, x->sp.spool_dir, (uint64_t)x->sp.out_spill_bytes);
        cnp_status st = it->raster ? stage_window_item(x, it, &err)
                                   : pipe_device_process(x->dev, &it->img, &it->res, &err);
        it->t_device = (cnp_now() - t0) * 1e3;
        if (st != CNP_OK && !it->raster)
            cnp_err_prefix(&err, "%s", it->name);
        if (st != CNP_OK) {
            item_fail(it, st, "%s", err.msg);
            continue;
        }
        if (it->nodata && !it->raster)
            apply_nodata(&it->img, &it->res, it->nodata);
        item_advance(it, ITEM_PROCESSED);
    }
}
