/* DeepForest's tiled prediction: patch plan and mosaic (patches.h). */
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "detect/patches.h"

/* slidingwindow.generateForSize along one axis: offsets of patches of
 * `side` over `extent`. offs has room for extent + 1 entries. */
static size_t axis_offsets(uint32_t extent, uint32_t side, double overlap, uint32_t *offs)
{
    uint32_t ov = (uint32_t)floor((double)side * overlap);
    uint32_t step = side - ov;
    uint32_t last = extent - side;
    size_t n = 0;
    for (uint64_t o = 0; o <= last; o += step)
        offs[n++] = (uint32_t)o;
    if (n == 0 || offs[n - 1] != last)
        offs[n++] = last;
    return n;
}

/* Where patch i's share of the axis starts: the middle of its overlap with
 * patch i - 1 (0 for the first), so the shares partition the axis. */
static uint32_t own_lo(const uint32_t *offs, size_t i, uint32_t side)
{
    if (i == 0)
        return 0;
    uint32_t prev_end = offs[i - 1] + side;
    return offs[i] < prev_end ? offs[i] + (prev_end - offs[i]) / 2 : offs[i];
}

cnp_status det_patches_plan(uint32_t w, uint32_t h, int patch_size, double overlap,
                            det_tile **out, size_t *n, cnp_err *err)
{
    *out = NULL;
    *n = 0;
    if (patch_size < 1 || !(overlap >= 0.0 && overlap < 1.0)) {
        cnp_err_set(err, "patches: patch size %d or overlap %g out of range (>= 1, [0, 1))",
                    patch_size, overlap);
        return CNP_ERR_INVALID;
    }
    if (w == 0 || h == 0)
        return CNP_OK;
    uint32_t sx = (uint32_t)patch_size < w ? (uint32_t)patch_size : w;
    uint32_t sy = (uint32_t)patch_size < h ? (uint32_t)patch_size : h;
    if ((uint32_t)floor((double)sx * overlap) >= sx || (uint32_t)floor((double)sy * overlap) >= sy) {
        cnp_err_set(err, "patches: overlap %g leaves no step for %ux%u patches", overlap, sx, sy);
        return CNP_ERR_INVALID;
    }
    uint32_t *xs = malloc(((size_t)w + 1) * sizeof *xs);
    uint32_t *ys = malloc(((size_t)h + 1) * sizeof *ys);
    det_tile *t = NULL;
    size_t nx = 0, ny = 0;
    if (xs && ys) {
        nx = axis_offsets(w, sx, overlap, xs);
        ny = axis_offsets(h, sy, overlap, ys);
        t = calloc(nx * ny, sizeof *t);
    }
    if (!t) {
        free(xs);
        free(ys);
        cnp_err_set(err, "patches: out of memory planning a %ux%u image", w, h);
        return CNP_ERR_NOMEM;
    }
    size_t k = 0;
    for (size_t i = 0; i < nx; i++)
        for (size_t j = 0; j < ny; j++, k++) {
            t[k] = (det_tile){.x0 = xs[i], .y0 = ys[j], .w = sx, .h = sy};
            t[k].own[0] = (float)own_lo(xs, i, sx);
            t[k].own[1] = (float)own_lo(ys, j, sy);
            t[k].own[2] = (float)(i + 1 < nx ? own_lo(xs, i + 1, sx) : w);
            t[k].own[3] = (float)(j + 1 < ny ? own_lo(ys, j + 1, sy) : h);
        }
    free(xs);
    free(ys);
    *out = t;
    *n = k;
    return CNP_OK;
}

void det_detections_shift(det_detection *d, size_t n, uint32_t dx, uint32_t dy)
{
    /* shapely's translate adds in double; astype(int) truncates toward 0. */
    for (size_t i = 0; i < n; i++) {
        d[i].x0 = (float)(long long)((double)d[i].x0 + dx);
        d[i].y0 = (float)(long long)((double)d[i].y0 + dy);
        d[i].x1 = (float)(long long)((double)d[i].x1 + dx);
        d[i].y1 = (float)(long long)((double)d[i].y1 + dy);
    }
}

cnp_status det_detections_nms(det_detection *d, size_t *n, float iou, cnp_err *err)
{
    if (*n < 2 || iou >= 1.0f)
        return CNP_OK;
    det_box *boxes = malloc(*n * sizeof *boxes);
    float *scores = malloc(*n * sizeof *scores);
    uint32_t *keep = malloc(*n * sizeof *keep);
    det_detection *kept = malloc(*n * sizeof *kept);
    cnp_status result = CNP_ERR_NOMEM;
    size_t nk = 0;
    if (boxes && scores && keep && kept) {
        for (size_t i = 0; i < *n; i++) {
            boxes[i] = (det_box){d[i].x0, d[i].y0, d[i].x1, d[i].y1};
            scores[i] = d[i].score;
        }
        /* det_nms's result, window by window (a mosaic has many boxes). */
        result = det_nms_contain_local(boxes, scores, NULL, *n, iou, 1.0f, 0.0f, keep, &nk, err);
        if (result == CNP_OK) {
            for (size_t i = 0; i < nk; i++)
                kept[i] = d[keep[i]];
            memcpy(d, kept, nk * sizeof *kept);
            *n = nk;
        }
    } else {
        cnp_err_set(err, "patches: out of memory for NMS over %zu boxes", *n);
    }
    free(boxes);
    free(scores);
    free(keep);
    free(kept);
    return result;
}

/* Appends one patch's detections (shifted and truncated) to *all. */
static cnp_status append_patch(det_detection **all, size_t *count, size_t *cap,
                               det_detection *found, size_t nf, const det_tile *patch,
                               cnp_err *err)
{
    if (*count + nf > *cap) {
        size_t nc = *cap ? *cap : 256;
        while (nc < *count + nf)
            nc *= 2;
        det_detection *grown = realloc(*all, nc * sizeof *grown);
        if (!grown) {
            cnp_err_set(err, "patches: out of memory for %zu boxes", *count + nf);
            return CNP_ERR_NOMEM;
        }
        *all = grown;
        *cap = nc;
    }
    det_detections_shift(found, nf, patch->x0, patch->y0);
    if (nf)
        memcpy(*all + *count, found, nf * sizeof *found);
    *count += nf;
    return CNP_OK;
}

/* The mosaic NMS over every patch's boxes, then the result. */
static cnp_status finish(det_detection *all, size_t count, float iou, det_detection **out,
                         size_t *n, cnp_status result, cnp_err *err)
{
    if (result == CNP_OK)
        result = det_detections_nms(all, &count, iou, err);
    if (result != CNP_OK) {
        free(all);
        return result;
    }
    if (count == 0) {
        free(all);
        all = NULL;
    }
    *out = all;
    *n = count;
    return CNP_OK;
}

cnp_status det_predict_tiled(uint32_t w, uint32_t h, int patch_size, double overlap, float iou,
                             det_patch_fn fn, void *ctx, det_detection **out, size_t *n,
                             cnp_err *err)
{
    *out = NULL;
    *n = 0;
    det_tile *patches = NULL;
    size_t np = 0, count = 0, cap = 0;
    det_detection *all = NULL;
    cnp_status result = det_patches_plan(w, h, patch_size, overlap, &patches, &np, err);
    for (size_t p = 0; result == CNP_OK && p < np; p++) {
        det_detection *found = NULL;
        size_t nf = 0;
        if ((result = fn(ctx, &patches[p], &found, &nf, err)) != CNP_OK)
            break;
        result = append_patch(&all, &count, &cap, found, nf, &patches[p], err);
        free(found);
    }
    free(patches);
    return finish(all, count, iou, out, n, result, err);
}

cnp_status det_predict_tiled_batch(uint32_t w, uint32_t h, int patch_size, double overlap,
                                   float iou, size_t batch, det_patch_batch_fn fn, void *ctx,
                                   det_detection **out, size_t *n, cnp_err *err)
{
    *out = NULL;
    *n = 0;
    if (batch < 1)
        batch = 1;
    det_tile *patches = NULL;
    size_t np = 0, count = 0, cap = 0;
    det_detection *all = NULL;
    cnp_status result = det_patches_plan(w, h, patch_size, overlap, &patches, &np, err);
    det_detection **found = result == CNP_OK ? calloc(batch, sizeof *found) : NULL;
    size_t *nf = result == CNP_OK ? calloc(batch, sizeof *nf) : NULL;
    if (result == CNP_OK && (!found || !nf)) {
        cnp_err_set(err, "patches: out of memory for a batch of %zu", batch);
        result = CNP_ERR_NOMEM;
    }
    for (size_t p0 = 0; result == CNP_OK && p0 < np; p0 += batch) {
        size_t nb = np - p0 < batch ? np - p0 : batch;
        if ((result = fn(ctx, &patches[p0], nb, found, nf, err)) != CNP_OK)
            break;
        for (size_t k = 0; k < nb; k++) {
            if (result == CNP_OK)
                result = append_patch(&all, &count, &cap, found[k], nf[k], &patches[p0 + k],
                                       err);
            free(found[k]);
            found[k] = NULL;
        }
    }
    free(found);
    free(nf);
    free(patches);
    return finish(all, count, iou, out, n, result, err);
}

cnp_tree det_detection_tree(const det_detection *d)
{
    return (cnp_tree){.x = (d->x0 + d->x1) * 0.5f,
                      .y = (d->y0 + d->y1) * 0.5f,
                      .radius = ((d->x1 - d->x0) + (d->y1 - d->y0)) * 0.25f,
                      .score = d->score,
                      .x0 = d->x0,
                      .y0 = d->y0,
                      .x1 = d->x1,
                      .y1 = d->y1,
                      .label = d->label,
                      .boxed = true};
}
