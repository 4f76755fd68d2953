/* Stage: device. Binarization and detection of each decoded image on the
 * compute queue, in order, the next image's upload started first on the
 * copy queue (pipe_device_stage) so that it overlaps; then nodata pixels
 * are taken out of the results: never canopy, never a tree, not part of
 * canopy_cover. */
#include "canopy/log.h"
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

/* A device that failed every image of consecutive slices is lost (a GPU
 * fault, CL_OUT_OF_RESOURCES): retrying its images only burns their
 * receives, so the run ends and the supervisor restarts the process. */
static void device_health(pl_ctx *x, size_t tried, size_t device_failed)
{
    if (!x->health || !pl_health_device_result(x->health, tried, device_failed))
        return;
    if (!atomic_load(&x->fatal))
        LOG_ERROR(x->mode, "the OpenCL device failed every image of consecutive slices: "
                           "taking it as lost; finishing what is in hand and exiting 1");
    pl_set_fatal(x);
}

/* The next item processed whole after item i, or NULL: its upload can
 * start while item i is processed. */
static const cnp_image *next_whole(pl_chunk *c, size_t i, size_t end)
{
    for (size_t j = i + 1; j < end; j++) {
        const pl_item *n = &c->items[j];
        if (n->state == ITEM_DECODED)
            return n->raster ? NULL : &n->img;
    }
    return NULL;
}

void stage_device_job(pl_ctx *x, pl_chunk *c, size_t begin, size_t end)
{
    size_t tried = 0, device_failed = 0;
    for (size_t i = begin; i < end; i++) {
        pl_item *it = &c->items[i];
        if (it->state != ITEM_DECODED)
            continue;
        cnp_err err;
        const cnp_image *next = next_whole(c, i, end);
        /* A failed staging only loses the overlap: the item uploads itself. */
        if (next && pipe_device_stage(x->dev, next, &err) != CNP_OK)
            LOG_DEBUG(x->mode, "staging the next image: %s", err.msg);
        double t0 = cnp_now();
        pipe_outputs_init(&it->outs, x->sp.spool_dir, (uint64_t)x->sp.out_spill_bytes);
        cnp_status st = it->raster ? stage_window_item(x, it, &err)
                                   : pipe_device_process(x->dev, &it->img, &it->res, &err);
        it->t_device = (cnp_now() - t0) * 1e3;
        if (st != CNP_OK && !it->raster)
            cnp_err_prefix(&err, "%s", it->name);
        tried++;
        if (st != CNP_OK) {
            device_failed += st == CNP_ERR_OPENCL;
            item_fail(it, st, "%s", err.msg);
            continue;
        }
        if (it->nodata && !it->raster)
            apply_nodata(&it->img, &it->res, it->nodata);
        item_advance(it, ITEM_PROCESSED);
    }
    /* The items' pixels are freed once encoded: nothing staged may be
     * taken for a later image at the same address. */
    pipe_device_unstage(x->dev);
    device_health(x, tried, device_failed);
}
