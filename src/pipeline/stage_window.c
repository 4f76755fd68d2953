/* Stage: device, for a raster too large to hold whole (above [limits]
 * window_pixels). It is read in windows (the detector's tiles, whose own
 * regions partition the raster, or 2048-pixel blocks) and gives exactly
 * what whole-image processing gives:
 *
 *   pass 1, per window: channel values and the Otsu histogram of the pixels
 *     it owns (nodata left out), kept in a temporary file (2 bytes a pixel,
 *     on disk); the detector on the window without NMS, keeping the trees it
 *     owns; a point-sampled preview for the overlay;
 *   then: the threshold from the whole histogram, one NMS over every tree,
 *     window by window (merge_trees);
 *   pass 2, by bands of rows: the mask from the stored values, written
 *     into a tiled GeoTIFF as it goes (a temporary file the sink moves or
 *     uploads, unless [output] spill_bytes is 0).
 *
 * Memory: a window's pixels, a band of rows, the preview (at most 2048 px a
 * side) and the trees; not the raster, and not the mask. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "canopy/log.h"
#include "pipeline/pl_internal.h"

enum { PREVIEW_SIDE = 2048, BAND_ROWS = 256 };

struct window_run {
    pl_ctx *x;
    pl_item *it;
    uint32_t W, H;
    FILE *values;          /* (value, valid) per pixel, row-major */
    bin_stream bin;        /* histogram and nodata count of pass 1 */
    cnp_tree *trees;
    size_t ntrees, cap;
    cnp_image preview;
    uint32_t step;         /* preview: every step-th pixel */
    long long progress;    /* windows of pass 1, counted in the context twice */
    long long reported;    /* of those 2 * progress, counted done so far */
};

/* Counts windows done up to `done` (of 2 * progress) in the context. */
static void progress_to(struct window_run *wr, long long done)
{
    if (done > wr->reported) {
        atomic_fetch_add(&wr->x->win_done, done - wr->reported);
        wr->reported = done;
    }
}

/* Takes this raster's windows out of the context's progress. */
static void progress_end(struct window_run *wr)
{
    atomic_fetch_sub(&wr->x->win_done, wr->reported);
    atomic_fetch_sub(&wr->x->win_total, 2 * wr->progress);
    wr->reported = wr->progress = 0;
}

static bool owns(const det_tile *t, uint32_t x, uint32_t y)
{
    return (float)x >= t->own[0] && (float)x < t->own[2] && (float)y >= t->own[1] &&
           (float)y < t->own[3];
}

/* Values, histogram, nodata and preview of the pixels the window owns. */
static cnp_status take_pixels(struct window_run *wr, const det_tile *t, const uint8_t *rgba,
                              uint8_t *row, cnp_err *err)
{
    for (uint32_t y = 0; y < t->h; y++) {
        uint32_t gy = t->y0 + y, first = UINT32_MAX, last = 0;
        for (uint32_t x = 0; x < t->w; x++) {
            uint32_t gx = t->x0 + x;
            if (!owns(t, gx, gy))
                continue;
            const uint8_t *p = rgba + 4 * ((size_t)y * t->w + x);
            if (first == UINT32_MAX)
                first = x;
            last = x;
            bin_stream_put(&wr->bin, p, &row[2 * (x - first)]);
            if (wr->preview.rgba && gx % wr->step == 0 && gy % wr->step == 0) {
                uint8_t *q = wr->preview.rgba +
                             4 * ((size_t)(gy / wr->step) * wr->preview.width + gx / wr->step);
                memcpy(q, p, 3);
                q[3] = 255;
            }
        }
        if (first == UINT32_MAX)
            continue;
        size_t n = 2 * (size_t)(last - first + 1);
        off_t at = (off_t)(2 * ((size_t)gy * wr->W + t->x0 + first));
        if (pwrite(fileno(wr->values), row, n, at) != (ssize_t)n) {
            cnp_err_set(err, "%s: writing channel values to a temporary file failed",
                        wr->it->name);
            return CNP_ERR_IO;
        }
    }
    return CNP_OK;
}

/* The window's trees whose centre it owns and stands on valid pixels. */
static cnp_status take_trees(struct window_run *wr, const det_tile *t, const uint8_t *rgba,
                             cnp_err *err)
{
    cnp_tree *found = NULL;
    size_t n = 0;
    cnp_status result = pipe_device_detect_window(wr->x->dev, rgba, t->w, t->h, &found, &n, err);
    for (size_t i = 0; result == CNP_OK && i < n; i++) {
        cnp_tree tr = found[i];
        det_tree_shift(&tr, t->x0, t->y0);
        /* A crown belongs to the tile owning its centre; a box model's boxes
         * are all kept and merged across patches (DeepForest's mosaic). */
        if (!tr.boxed &&
            !(tr.x >= t->own[0] && tr.x < t->own[2] && tr.y >= t->own[1] && tr.y < t->own[3]))
            continue;
        long px = (long)found[i].x, py = (long)found[i].y;
        if (px < 0 || py < 0 || px >= (long)t->w || py >= (long)t->h ||
            rgba[4 * ((size_t)py * t->w + (size_t)px) + 3] == 0)
            continue; /* nodata: no tree */
        if (wr->ntrees == wr->cap) {
            size_t cap = wr->cap ? 2 * wr->cap : 1024;
            cnp_tree *grown = realloc(wr->trees, cap * sizeof *grown);
            if (!grown) {
                cnp_err_set(err, "%s: out of memory for trees", wr->it->name);
                result = CNP_ERR_NOMEM;
                break;
            }
            wr->trees = grown;
            wr->cap = cap;
        }
        wr->trees[wr->ntrees++] = tr;
    }
    free(found);
    return result;
}

cnp_status stage_window_plan(const pl_ctx *x, uint32_t W, uint32_t H, det_tile **tiles,
                             size_t *nt, size_t *max, cnp_err *err)
{
    cnp_status result = pipe_device_windows(x->dev, W, H, tiles, nt, err);
    *max = 0;
    for (size_t i = 0; result == CNP_OK && i < *nt; i++)
        if ((size_t)(*tiles)[i].w * (*tiles)[i].h > *max)
            *max = (size_t)(*tiles)[i].w * (*tiles)[i].h;
    return result;
}

static cnp_status pass1(struct window_run *wr, cnp_err *err)
{
    det_tile *tiles = NULL;
    size_t nt = 0, max = 0;
    cnp_status result = stage_window_plan(wr->x, wr->W, wr->H, &tiles, &nt, &max, err);
    if (result != CNP_OK)
        return result;
    uint8_t *rgba = malloc(4 * (max ? max : 1));
    uint8_t *row = malloc(2 * (size_t)wr->W);
    bool detect = pipe_device_has_detector(wr->x->dev);
    if (!rgba || !row) {
        cnp_err_set(err, "%s: out of memory for a window", wr->it->name);
        result = CNP_ERR_NOMEM;
    }
    /* Progress: each window counts once in pass 1, and the mask's bands
     * once more in pass 2 (counted there as windows of the same area). */
    wr->progress = (long long)nt;
    atomic_fetch_add(&wr->x->win_total, 2 * wr->progress);
    for (size_t i = 0; result == CNP_OK && i < nt; i++) {
        const det_tile *t = &tiles[i];
        if (i > 0)
            progress_to(wr, (long long)i);
        if ((result = img_raster_read(wr->it->raster, t->x0, t->y0, t->w, t->h, rgba, NULL,
                                      err)) != CNP_OK ||
            (result = take_pixels(wr, t, rgba, row, err)) != CNP_OK)
            break;
        if (detect)
            result = take_trees(wr, t, rgba, err);
    }
    free(rgba);
    free(row);
    free(tiles);
    return result;
}

/* The mask from the stored values, band by band, into the GeoTIFF. */
static cnp_status pass2(struct window_run *wr, int threshold, uint64_t *fg, cnp_err *err)
{
    img_mask_writer *mw = NULL;
    char path[4096] = "";
    size_t band = (size_t)wr->W * BAND_ROWS;
    uint8_t *vals = malloc(2 * band), *mask = malloc(band);
    cnp_status result = CNP_ERR_NOMEM;
    cnp_spool *dest = &wr->it->outs.out[PIPE_OUT_MASK_TIF];
    if (!vals || !mask) {
        cnp_err_set(err, "%s: out of memory for a band of the mask", wr->it->name);
        goto out;
    }
    /* Into a temporary file the sink moves or uploads, unless outputs stay
     * in memory ([output] spill_bytes = 0). */
    if (dest->limit &&
        (result = cnp_spool_temp_name(dest, ".tif", path, sizeof path, err)) != CNP_OK)
        goto out;
    if ((result = img_mask_writer_open(wr->W, wr->H, wr->it->geo.valid ? &wr->it->geo : NULL,
                                       path[0] ? path : NULL, &mw, err)) != CNP_OK)
        goto out;
    *fg = 0;
    for (uint32_t y = 0; y < wr->H; y += BAND_ROWS) {
        uint32_t h = wr->H - y < BAND_ROWS ? wr->H - y : BAND_ROWS;
        size_t n = (size_t)wr->W * h;
        if (pread(fileno(wr->values), vals, 2 * n, (off_t)(2 * (size_t)y * wr->W)) !=
            (ssize_t)(2 * n)) {
            cnp_err_set(err, "%s: reading channel values back failed", wr->it->name);
            result = CNP_ERR_IO;
            goto out;
        }
        *fg += bin_stream_mask(threshold, vals, n, IMG_MASK_NODATA, mask);
        if ((result = img_mask_writer_put(mw, 0, y, wr->W, h, mask, err)) != CNP_OK)
            goto out;
        progress_to(wr, wr->progress + wr->progress * (long long)(y + h) / (long long)wr->H);
    }
    result = img_mask_writer_finish(mw, &dest->buf, err);
    mw = NULL;
    if (result == CNP_OK && path[0] && (result = cnp_spool_adopt(dest, path, err)) == CNP_OK)
        path[0] = '\0';
out:
    img_mask_writer_free(mw);
    if (path[0])
        unlink(path);
    free(vals);
    free(mask);
    return result;
}

/* One NMS over the raster's trees, window by window: crowns are tested
 * only against the kept crowns of their window and its neighbours within
 * the largest crown (det_trees_nms_local), which keeps exactly what the
 * detector's merge over the whole raster keeps (every backend's crown merge
 * is det_trees_nms's, then (y, x) order) without its O(n^2) pass in one
 * work-group. Box models merge on the host already (det_box_trees_merge,
 * windowed in det_detections_nms). */
static cnp_status merge_trees(struct window_run *wr, cnp_err *err)
{
    float iou = pipe_device_merge_iou(wr->x->dev);
    bool boxed = false;
    for (size_t i = 0; i < wr->ntrees && !boxed; i++)
        boxed = wr->trees[i].boxed;
    if (boxed)
        return pipe_device_merge(wr->x->dev, wr->trees, &wr->ntrees, iou, err);
    cnp_status result = det_trees_nms_local(wr->trees, &wr->ntrees, iou, err);
    if (result == CNP_OK)
        det_trees_sort(wr->trees, wr->ntrees);
    return result;
}

cnp_status stage_window_item(pl_ctx *x, pl_item *it, cnp_err *err)
{
    struct window_run wr = {.x = x, .it = it};
    wr.W = img_raster_width(it->raster);
    wr.H = img_raster_height(it->raster);
    uint32_t side = wr.W > wr.H ? wr.W : wr.H;
    wr.step = (side + PREVIEW_SIDE - 1) / PREVIEW_SIDE;
    if (wr.step < 1)
        wr.step = 1;
    cnp_status result;
    pipe_result *r = &it->res;
    memset(r, 0, sizeof *r);
    r->width = wr.W;
    r->height = wr.H;
    r->overlay_step = wr.step;
    if ((result = bin_stream_init(&wr.bin, &x->sp.binarize, err)) == CNP_ERR_INVALID) {
        cnp_err_set(err, "%s: %ux%u is processed in windows ([limits] window_pixels), where "
                         "adaptive binarization is not available: use otsu or fixed",
                    it->name, wr.W, wr.H);
        return CNP_ERR_INVALID;
    }
    if (result != CNP_OK)
        return result;
    bool overlay = x->sp.detector && x->sp.output.overlay;
    if (overlay &&
        (result = cnp_image_alloc(&wr.preview, (wr.W + wr.step - 1) / wr.step,
                                  (wr.H + wr.step - 1) / wr.step, err)) != CNP_OK)
        return result;
    if (!(wr.values = tmpfile())) {
        cnp_err_set(err, "%s: cannot create a temporary file for its channel values",
                    it->name);
        result = CNP_ERR_IO;
        goto out;
    }
    if ((result = pass1(&wr, err)) != CNP_OK)
        goto out;
    int threshold = bin_stream_threshold(&wr.bin);
    uint64_t fg = 0;
    if ((result = pass2(&wr, threshold, &fg, err)) != CNP_OK)
        goto out;
    if (wr.ntrees && (result = merge_trees(&wr, err)) != CNP_OK)
        goto out;
    if ((result = stage_window_types(x, it, wr.trees, wr.ntrees, wr.W, wr.H, err)) != CNP_OK)
        goto out;
    uint64_t n = (uint64_t)wr.W * wr.H;
    it->nodata = wr.bin.nodata;
    r->bin.threshold = threshold;
    r->bin.foreground = fg;
    r->bin.canopy_cover = n > wr.bin.nodata ? (double)fg / (double)(n - wr.bin.nodata) : 0.0;
    r->trees = wr.trees;
    r->ntrees = wr.ntrees;
    wr.trees = NULL;
    if (overlay)
        result = pipe_overlay_encode(&x->sp.output, &wr.preview, r->trees, r->ntrees,
                                     1.0f / (float)wr.step, &it->outs.out[PIPE_OUT_OVERLAY].buf, err);
    LOG_DEBUG(x->mode, "%s: %ux%u in windows, threshold %d, %zu trees", it->name, wr.W, wr.H,
              threshold, r->ntrees);
out:
    progress_end(&wr);
    if (wr.values)
        fclose(wr.values);
    free(wr.trees);
    cnp_image_free(&wr.preview);
    return result;
}
